//! batch/v1: Jobs (counts, completion mode, template restart policy,
//! selector) and CronJobs (schedule, policies, job template); what a Job
//! update may change.

use serde_json::Value;

use super::{at, immutable, label_selector, nonnegative, normalized, pod, same, str_of, unset};
use crate::validation::{invalid, not_supported, required, Cause};

/// A Job spec at `path` (`spec`, or `spec.jobTemplate.spec` in a CronJob,
/// where the selector is not set yet).
pub(crate) fn job_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let is_job = path == "spec";
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        nonnegative(spec.get(field), &format!("{path}.{field}"), out);
    }
    let sel = spec.get("selector").filter(|s| !s.is_null());
    match sel {
        None if is_job => out.push(required(&format!("{path}.selector"), "")),
        None => {}
        Some(s) => label_selector(s, &format!("{path}.selector"), out),
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if unset(spec.get("completions")) {
                out.push(required(
                    &format!("{path}.completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        Some(m) => out.push(not_supported(
            &format!("{path}.completionMode"),
            &Value::from(m),
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(p) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        if !matches!(p, "TerminatingOrFailed" | "Failed") {
            out.push(not_supported(
                &format!("{path}.podReplacementPolicy"),
                &Value::from(p),
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let t = at(spec, "template");
    pod::template(t, &format!("{path}.template"), sel, out);
    let policy = t
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !matches!(policy, "OnFailure" | "Never") {
        out.push(not_supported(
            &format!("{path}.template.spec.restartPolicy"),
            &Value::from(policy),
            &["OnFailure", "Never"],
        ));
    }
}

/// ValidateJobUpdate: selector, completion mode, failure policies fixed;
/// completions fixed except for elastic Indexed Jobs; the template fixed
/// except scheduling directives while suspended and not yet started.
pub(crate) fn job_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    let elastic = str_of(ns, "completionMode") == "Indexed"
        && !unset(ns.get("completions"))
        && ns.get("completions") == ns.get("parallelism");
    if !elastic {
        immutable(new, old, "/spec/completions", "spec.completions", out);
    }
    immutable(new, old, "/spec/selector", "spec.selector", out);
    if !same(ns.get("template"), os.get("template")) {
        let suspended_unstarted = os.get("suspend") == Some(&Value::Bool(true))
            && unset(old.pointer("/status/startTime"));
        let scheduling_only = suspended_unstarted && {
            let strip = |t: &Value| {
                let mut t = normalized(t);
                if let Some(m) = t.as_object_mut() {
                    m.remove("metadata");
                }
                if let Some(s) = t.get_mut("spec").and_then(Value::as_object_mut) {
                    for k in ["nodeSelector", "tolerations", "affinity", "schedulingGates"] {
                        s.remove(k);
                    }
                }
                t
            };
            strip(at(ns, "template")) == strip(at(os, "template"))
        };
        if !scheduling_only {
            out.push(invalid(
                "spec.template",
                at(ns, "template"),
                "field is immutable",
            ));
        }
    }
    immutable(new, old, "/spec/completionMode", "spec.completionMode", out);
    immutable(
        new,
        old,
        "/spec/podFailurePolicy",
        "spec.podFailurePolicy",
        out,
    );
    immutable(
        new,
        old,
        "/spec/backoffLimitPerIndex",
        "spec.backoffLimitPerIndex",
        out,
    );
}

pub(crate) fn cron_job(obj: &Value, out: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.len() > 52 {
        out.push(invalid(
            "metadata.name",
            &Value::from(name),
            "must be no more than 52 characters",
        ));
    }
    let spec = at(obj, "spec");
    match spec.get("schedule").and_then(Value::as_str).unwrap_or("") {
        "" => out.push(required("spec.schedule", "")),
        schedule => {
            if schedule.contains("TZ") {
                let detail = if unset(spec.get("timeZone")) {
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
                } else {
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule"
                };
                out.push(invalid("spec.schedule", &Value::from(schedule), detail));
            } else if let Err(e) = crate::cron::parse(schedule) {
                out.push(invalid("spec.schedule", &Value::from(schedule), &e));
            }
        }
    }
    nonnegative(
        spec.get("startingDeadlineSeconds"),
        "spec.startingDeadlineSeconds",
        out,
    );
    match spec
        .get("concurrencyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "" => out.push(required("spec.concurrencyPolicy", "")),
        "Allow" | "Forbid" | "Replace" => {}
        p => out.push(not_supported(
            "spec.concurrencyPolicy",
            &Value::from(p),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(spec.get(f), &format!("spec.{f}"), out);
    }
    job_spec(
        spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null),
        "spec.jobTemplate.spec",
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, messages, update, want};
    use serde_json::{json, Value};

    fn job(extra: Value) -> Value {
        let mut spec = json!({
            "parallelism": 1, "completions": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
            "selector": {"matchLabels": {"job": "j"}},
            "template": {"metadata": {"labels": {"job": "j"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": "j"}, "spec": spec})
    }

    fn cron(name: &str, extra: Value) -> Value {
        let mut spec = json!({
            "schedule": "*/1 * * * *", "concurrencyPolicy": "Allow",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn creates() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("Job", job(json!({})), vec![]),
            (
                "Job",
                job(json!({"parallelism": -1, "backoffLimit": -2})),
                vec!["spec.parallelism Invalid", "spec.backoffLimit Invalid"],
            ),
            (
                "Job",
                job(json!({"completionMode": "Indexed", "completions": null})),
                vec!["spec.completions Required"],
            ),
            (
                "Job",
                job(json!({"completionMode": "Sometimes"})),
                vec!["spec.completionMode NotSupported"],
            ),
            (
                "Job",
                job(json!({"selector": null})),
                vec!["spec.selector Required"],
            ),
            ("CronJob", cron("c", json!({})), vec![]),
            (
                "CronJob",
                cron(
                    "c",
                    json!({"schedule": "@hourly", "startingDeadlineSeconds": -5}),
                ),
                vec!["spec.startingDeadlineSeconds Invalid"],
            ),
            (
                "CronJob",
                cron("c", json!({"schedule": ""})),
                vec!["spec.schedule Required"],
            ),
            (
                "CronJob",
                cron("c", json!({"schedule": "every minute"})),
                vec!["spec.schedule Invalid"],
            ),
            (
                "CronJob",
                cron("c", json!({"concurrencyPolicy": "Sometimes"})),
                vec!["spec.concurrencyPolicy NotSupported"],
            ),
            (
                "CronJob",
                cron(&"c".repeat(53), json!({})),
                vec!["metadata.name Invalid"],
            ),
            (
                "CronJob",
                cron(
                    "c",
                    json!({"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}}),
                ),
                vec!["spec.jobTemplate.spec.template.spec.restartPolicy NotSupported"],
            ),
        ];
        for (kind, obj, w) in cases {
            assert_eq!(create("batch", kind, &obj), want(&w), "{kind}: {obj}");
        }
        assert_eq!(
            messages(super::super::validate(
                "batch",
                "CronJob",
                &cron("c", json!({"schedule": "61 * * * *"}))
            )),
            vec![
                r#"spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61"#
            ]
        );
    }

    #[test]
    fn updates() {
        let old = job(json!({}));
        let image = |j: &mut Value| {
            j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other")
        };
        let mut suspended = job(json!({"suspend": true}));
        let mut suspended_new = suspended.clone();
        suspended_new["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        let mut changed_image = old.clone();
        image(&mut changed_image);
        let cases: Vec<(Value, &Value, Vec<&str>)> = vec![
            (
                job(json!({"suspend": true, "parallelism": 3})),
                &old,
                vec![],
            ),
            (
                job(json!({"completions": 2})),
                &old,
                vec!["spec.completions Invalid"],
            ),
            (
                job(
                    json!({"selector": {"matchLabels": {"job": "x"}}, "template": {"metadata": {"labels": {"job": "x"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}),
                ),
                &old,
                vec!["spec.selector Invalid", "spec.template Invalid"],
            ),
            (changed_image, &old, vec!["spec.template Invalid"]),
            (suspended_new.clone(), &suspended, vec![]),
        ];
        for (new, old, w) in cases {
            assert_eq!(update("batch", "Job", &new, old), want(&w), "{new}");
        }
        // Once started, a suspended Job's template is fixed too.
        suspended["status"] = json!({"startTime": "2026-01-01T00:00:00Z"});
        assert_eq!(
            update("batch", "Job", &suspended_new, &suspended),
            want(&["spec.template Invalid"])
        );
    }
}
