//! apps/v1 workloads (Deployment, ReplicaSet, StatefulSet, DaemonSet) and
//! ReplicationController: selectors that select their template, replica
//! counts, update strategies; what a StatefulSet update may change.

use serde_json::{json, Value};

use super::{
    arr, at, int_or_percent, label_selector, nonnegative, normalized, pod, positive_int_or_percent,
    str_of, unset,
};
use crate::validation::{forbidden, invalid, not_supported, required, Cause};

/// What every apps/v1 workload shares: a non-empty selector that selects
/// the template, replicas >= 0, a template whose pods restart Always.
fn workload(spec: &Value, what: &str, out: &mut Vec<Cause>) {
    let sel = spec.get("selector").filter(|s| !s.is_null());
    match sel {
        None => out.push(required("spec.selector", "")),
        Some(sel) => {
            if crate::selector::from_label_selector_json(sel).is_ok_and(|s| s.is_empty()) {
                out.push(invalid(
                    "spec.selector",
                    sel,
                    "empty selector is invalid for deployment",
                ));
            }
            label_selector(sel, "spec.selector", out);
        }
    }
    nonnegative(spec.get("replicas"), "spec.replicas", out);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out);
    nonnegative(
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
        out,
    );
    let t = at(spec, "template");
    pod::template(t, "spec.template", sel, out);
    template_restarts_always(t, what, out);
}

fn template_restarts_always(t: &Value, what: &str, out: &mut Vec<Cause>) {
    if t.is_null() {
        return;
    }
    let policy = t.pointer("/spec/restartPolicy").and_then(Value::as_str);
    if let Some(p) = policy.filter(|p| *p != "Always") {
        out.push(not_supported(
            "spec.template.spec.restartPolicy",
            &Value::from(p),
            &["Always"],
        ));
    }
    if !unset(t.pointer("/spec/activeDeadlineSeconds")) {
        out.push(forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {what} is not Supported"),
        ));
    }
}

pub(crate) fn deployment(spec: &Value, out: &mut Vec<Cause>) {
    workload(spec, "ReplicaSet", out);
    let strategy = at(spec, "strategy");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match str_of(strategy, "type") {
        "Recreate" => {
            if ru.is_some() {
                out.push(forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => out.push(required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let p = "spec.strategy.rollingUpdate";
                positive_int_or_percent(
                    ru.get("maxUnavailable"),
                    &format!("{p}.maxUnavailable"),
                    false,
                    out,
                );
                positive_int_or_percent(ru.get("maxSurge"), &format!("{p}.maxSurge"), false, out);
                let value = |k: &str| ru.get(k).and_then(int_or_percent).unwrap_or(0);
                if value("maxUnavailable") == 0 && value("maxSurge") == 0 {
                    out.push(invalid(
                        &format!("{p}.maxUnavailable"),
                        at(ru, "maxUnavailable"),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if let Some(v) = ru.get("maxUnavailable").filter(|v| v.is_string()) {
                    if int_or_percent(v).is_some_and(|n| n > 100) {
                        out.push(invalid(
                            &format!("{p}.maxUnavailable"),
                            v,
                            "must not be greater than 100%",
                        ));
                    }
                }
            }
        },
        _ => out.push(not_supported(
            "spec.strategy",
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let Some(p) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        nonnegative(
            spec.get("progressDeadlineSeconds"),
            "spec.progressDeadlineSeconds",
            out,
        );
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if p <= min_ready {
            out.push(invalid(
                "spec.progressDeadlineSeconds",
                &Value::from(p),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

pub(crate) fn replica_set(spec: &Value, out: &mut Vec<Cause>) {
    workload(spec, "ReplicaSet", out);
}

pub(crate) fn stateful_set(spec: &Value, out: &mut Vec<Cause>) {
    workload(spec, "StatefulSet", out);
    if let Some(p) = spec.get("podManagementPolicy").and_then(Value::as_str) {
        if !matches!(p, "OrderedReady" | "Parallel") {
            out.push(not_supported(
                "spec.podManagementPolicy",
                &Value::from(p),
                &["OrderedReady", "Parallel"],
            ));
        }
    }
    let strategy = at(spec, "updateStrategy");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match str_of(strategy, "type") {
        "" if !strategy.is_null() => out.push(required("spec.updateStrategy", "")),
        "" => {}
        "OnDelete" => {
            if let Some(ru) = ru {
                out.push(invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = ru {
                let p = "spec.updateStrategy.rollingUpdate";
                nonnegative(ru.get("partition"), &format!("{p}.partition"), out);
                positive_int_or_percent(
                    ru.get("maxUnavailable"),
                    &format!("{p}.maxUnavailable"),
                    true,
                    out,
                );
            }
        }
        _ => out.push(invalid(
            "spec.updateStrategy",
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(start) = spec.pointer("/ordinals/start") {
        nonnegative(Some(start), "spec.ordinals.start", out);
    }
    for (i, t) in arr(spec, "volumeClaimTemplates").iter().enumerate() {
        let name = t
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let p = format!("spec.volumeClaimTemplates[{i}]");
        if name.is_empty() {
            out.push(required(&format!("{p}.metadata.name"), ""));
        }
        super::storage::pvc_spec(at(t, "spec"), &format!("{p}.spec"), out);
    }
}

/// ValidateStatefulSetUpdate.
pub(crate) fn stateful_set_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let strip = |spec: &Value| {
        let mut s = normalized(spec);
        if let Some(m) = s.as_object_mut() {
            for k in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(k);
            }
        }
        s
    };
    if strip(at(new, "spec")) != strip(at(old, "spec")) {
        out.push(forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
    }
}

pub(crate) fn daemon_set(spec: &Value, out: &mut Vec<Cause>) {
    workload(spec, "DaemonSet", out);
    let strategy = at(spec, "updateStrategy");
    match str_of(strategy, "type") {
        "OnDelete" | "" => {}
        "RollingUpdate" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                let p = "spec.updateStrategy.rollingUpdate";
                positive_int_or_percent(
                    ru.get("maxUnavailable"),
                    &format!("{p}.maxUnavailable"),
                    true,
                    out,
                );
                positive_int_or_percent(ru.get("maxSurge"), &format!("{p}.maxSurge"), true, out);
                let value = |k: &str| ru.get(k).and_then(int_or_percent).unwrap_or(0);
                match (value("maxUnavailable") != 0, value("maxSurge") != 0) {
                    (true, true) => out.push(invalid(
                        &format!("{p}.maxSurge"),
                        at(ru, "maxSurge"),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => out.push(required(
                        &format!("{p}.maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    )),
                    _ => {}
                }
            }
        }
        other => out.push(not_supported(
            "spec.updateStrategy",
            &Value::from(other),
            &["RollingUpdate", "OnDelete"],
        )),
    }
}

pub(crate) fn replication_controller(spec: &Value, out: &mut Vec<Cause>) {
    let sel = spec
        .get("selector")
        .filter(|s| !s.is_null())
        .map(|m| json!({ "matchLabels": m }));
    if let Some(s) = &sel {
        label_selector(s, "spec", out);
    }
    nonnegative(spec.get("replicas"), "spec.replicas", out);
    nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds", out);
    let t = at(spec, "template");
    pod::template(t, "spec.template", sel.as_ref(), out);
    template_restarts_always(t, "ReplicationController", out);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, update, want};
    use serde_json::{json, Value};

    fn workload(extra: Value) -> Value {
        let mut spec = json!({
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"spec": spec})
    }

    #[test]
    fn creates() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "Deployment",
                workload(
                    json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}),
                ),
                vec![],
            ),
            (
                "Deployment",
                workload(
                    json!({"replicas": -1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
                ),
                vec![
                    "spec.replicas Invalid",
                    "spec.strategy.rollingUpdate.maxUnavailable Invalid",
                ],
            ),
            (
                "Deployment",
                workload(
                    json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}),
                ),
                vec!["spec.strategy.rollingUpdate Forbidden"],
            ),
            (
                "Deployment",
                workload(json!({"strategy": {"type": "Sideways"}})),
                vec!["spec.strategy NotSupported"],
            ),
            (
                "Deployment",
                workload(
                    json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x", "maxUnavailable": "120%"}}}),
                ),
                vec![
                    "spec.strategy.rollingUpdate.maxSurge Invalid",
                    "spec.strategy.rollingUpdate.maxUnavailable Invalid",
                ],
            ),
            (
                "Deployment",
                workload(
                    json!({"strategy": {"type": "Recreate"}, "minReadySeconds": 10, "progressDeadlineSeconds": 5}),
                ),
                vec!["spec.progressDeadlineSeconds Invalid"],
            ),
            (
                "Deployment",
                workload(json!({"selector": null, "strategy": {"type": "Recreate"}})),
                vec!["spec.selector Required"],
            ),
            (
                "Deployment",
                workload(
                    json!({"strategy": {"type": "Recreate"}, "selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                ),
                vec!["spec.selector.matchExpressions[0].values Required"],
            ),
            (
                "ReplicaSet",
                workload(
                    json!({"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}),
                ),
                vec!["spec.template.spec.restartPolicy NotSupported"],
            ),
            (
                "StatefulSet",
                workload(
                    json!({"podManagementPolicy": "Random", "updateStrategy": {"type": "OnDelete", "rollingUpdate": {"partition": 1}}}),
                ),
                vec![
                    "spec.podManagementPolicy NotSupported",
                    "spec.updateStrategy.rollingUpdate Invalid",
                ],
            ),
            (
                "StatefulSet",
                workload(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": -1}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}),
                ),
                vec![
                    "spec.updateStrategy.rollingUpdate.partition Invalid",
                    "spec.volumeClaimTemplates[0].spec.resources[storage] Required",
                ],
            ),
            (
                "DaemonSet",
                workload(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}}),
                ),
                vec!["spec.updateStrategy.rollingUpdate.maxSurge Invalid"],
            ),
            (
                "DaemonSet",
                workload(
                    json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
                ),
                vec!["spec.updateStrategy.rollingUpdate.maxUnavailable Required"],
            ),
            (
                "DaemonSet",
                workload(json!({"updateStrategy": {"type": "Never"}})),
                vec!["spec.updateStrategy NotSupported"],
            ),
        ];
        for (kind, obj, w) in cases {
            assert_eq!(create("apps", kind, &obj), want(&w), "{kind}: {obj}");
        }
    }

    #[test]
    fn updates() {
        let old = workload(json!({"serviceName": "web"}));
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "Deployment",
                workload(json!({"serviceName": "web", "replicas": 5})),
                vec![],
            ),
            (
                "Deployment",
                workload(json!({"serviceName": "web", "selector": {"matchLabels": {"app": "x"}}})),
                vec!["spec.selector Invalid"],
            ),
            (
                "ReplicaSet",
                workload(json!({"serviceName": "web", "selector": {"matchLabels": {"app": "x"}}})),
                vec!["spec.selector Invalid"],
            ),
            (
                "DaemonSet",
                workload(json!({"serviceName": "web", "selector": {"matchLabels": {"app": "x"}}})),
                vec!["spec.selector Invalid"],
            ),
            (
                "StatefulSet",
                workload(
                    json!({"serviceName": "web", "replicas": 3, "minReadySeconds": 5,
                "updateStrategy": {"type": "OnDelete"}}),
                ),
                vec![],
            ),
            (
                "StatefulSet",
                workload(json!({"serviceName": "other"})),
                vec!["spec Forbidden"],
            ),
            (
                "StatefulSet",
                workload(
                    json!({"serviceName": "web", "volumeClaimTemplates": [{"metadata": {"name": "d"}}]}),
                ),
                vec!["spec Forbidden"],
            ),
        ];
        for (kind, new, w) in cases {
            assert_eq!(update("apps", kind, &new, &old), want(&w), "{kind}: {new}");
        }
    }
}
