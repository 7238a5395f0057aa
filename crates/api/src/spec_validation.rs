//! Validation of the spec of the common kinds, with Kubernetes' field paths
//! and messages: pod templates (containers, names, images, ports,
//! quantities), workload selectors that must match their templates,
//! services' ports.

use std::collections::HashSet;

use serde_json::Value;

use crate::validation::{invalid, is_dns1123_label, is_valid_label_value, required, Cause};

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Causes for an object of `group`/`kind` (metadata is validated elsewhere).
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    match (group, kind) {
        ("", "Pod") => pod_spec(spec, "spec", &mut out),
        ("", "PodTemplate") => template(
            obj.get("template").unwrap_or(&null),
            "template",
            None,
            &mut out,
        ),
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            let sel = spec.get("selector");
            if sel.is_none_or(Value::is_null) {
                out.push(required("spec.selector", ""));
            } else if crate::selector::from_label_selector_json(sel.unwrap())
                .is_ok_and(|s| s.is_empty())
            {
                out.push(invalid(
                    "spec.selector",
                    sel.unwrap(),
                    "empty selector is invalid for deployment",
                ));
            }
            if let Some(r) = spec
                .get("replicas")
                .and_then(Value::as_i64)
                .filter(|r| *r < 0)
            {
                out.push(invalid(
                    "spec.replicas",
                    &Value::from(r),
                    "must be greater than or equal to 0",
                ));
            }
            template(
                spec.get("template").unwrap_or(&null),
                "spec.template",
                sel,
                &mut out,
            );
        }
        ("", "ReplicationController") => {
            let sel = spec
                .get("selector")
                .map(|m| serde_json::json!({"matchLabels": m}));
            template(
                spec.get("template").unwrap_or(&null),
                "spec.template",
                sel.as_ref(),
                &mut out,
            );
        }
        ("batch", "Job") => {
            let t = spec.get("template").unwrap_or(&null);
            template(
                t,
                "spec.template",
                spec.get("selector").filter(|s| !s.is_null()),
                &mut out,
            );
            let policy = t
                .pointer("/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(policy, "OnFailure" | "Never") {
                out.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "spec.template.spec.restartPolicy".into(),
                    message: format!(
                        "Unsupported value: {policy:?}: supported values: \"OnFailure\", \"Never\""
                    ),
                });
            }
        }
        ("", "Service") => service(spec, &mut out),
        _ => {}
    }
    out
}

fn template(t: &Value, path: &str, selector: Option<&Value>, out: &mut Vec<Cause>) {
    if t.is_null() || t.as_object().is_some_and(|m| m.is_empty()) {
        out.push(required(&format!("{path}.spec.containers"), ""));
        return;
    }
    if let Some(sel) = selector {
        if let Ok(s) = crate::selector::from_label_selector_json(sel) {
            let labels = t.pointer("/metadata/labels");
            if !s.is_empty() && !s.matches_value(labels) {
                let shown = labels.cloned().unwrap_or(Value::Object(Default::default()));
                out.push(invalid(
                    &format!("{path}.metadata.labels"),
                    &shown,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    pod_spec(
        t.get("spec").unwrap_or(&Value::Null),
        &format!("{path}.spec"),
        out,
    );
}

fn pod_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        out.push(required(&format!("{path}.containers"), ""));
    }
    let mut names = HashSet::new();
    for (key, list) in [
        ("initContainers", arr(spec, "initContainers")),
        ("containers", containers),
    ] {
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{path}.{key}[{i}]");
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                out.push(required(&format!("{cp}.name"), ""));
            } else {
                for e in is_dns1123_label(name) {
                    out.push(invalid(&format!("{cp}.name"), &Value::from(name), &e));
                }
                if !names.insert(name.to_owned()) {
                    out.push(Cause {
                        reason: "FieldValueDuplicate",
                        field: format!("{cp}.name"),
                        message: format!("Duplicate value: {name:?}"),
                    });
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|s| s.trim().is_empty())
            {
                out.push(required(&format!("{cp}.image"), ""));
            }
            for (j, p) in arr(c, "ports").iter().enumerate() {
                port_number(
                    p.get("containerPort"),
                    &format!("{cp}.ports[{j}].containerPort"),
                    true,
                    out,
                );
                port_number(
                    p.get("hostPort"),
                    &format!("{cp}.ports[{j}].hostPort"),
                    false,
                    out,
                );
            }
            for set in ["requests", "limits"] {
                if let Some(m) = c
                    .pointer(&format!("/resources/{set}"))
                    .and_then(Value::as_object)
                {
                    for (res, q) in m {
                        if !is_quantity(q) {
                            out.push(invalid(
                                &format!("{cp}.resources.{set}[{res}]"),
                                q,
                                "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(p, "Always" | "OnFailure" | "Never") {
            out.push(Cause {
                reason: "FieldValueNotSupported",
                field: format!("{path}.restartPolicy"),
                message: format!("Unsupported value: {p:?}: supported values: \"Always\", \"OnFailure\", \"Never\""),
            });
        }
    }
    if let Some(labels) = spec.get("nodeSelector").and_then(Value::as_object) {
        for (k, v) in labels {
            for e in is_valid_label_value(v.as_str().unwrap_or("")) {
                out.push(invalid(
                    &format!("{path}.nodeSelector"),
                    v,
                    &format!("{k}: {e}"),
                ));
            }
        }
    }
}

fn port_number(v: Option<&Value>, path: &str, required_field: bool, out: &mut Vec<Cause>) {
    match v.and_then(Value::as_i64) {
        None if required_field => out.push(required(path, "")),
        None => {}
        Some(0) if !required_field => {}
        Some(p) if !(1..=65535).contains(&p) => out.push(invalid(
            path,
            &Value::from(p),
            "must be between 1 and 65535, inclusive",
        )),
        Some(_) => {}
    }
}

/// Kubernetes' quantity syntax: a number with an optional SI/binary suffix
/// or exponent (`100m`, `1.5Gi`, `2e3`).
pub fn is_quantity(v: &Value) -> bool {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(_) => return true,
        _ => return false,
    };
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        e if e.starts_with(['e', 'E']) => {
            let rest = e[1..].strip_prefix(['+', '-']).unwrap_or(&e[1..]);
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

fn service(spec: &Value, out: &mut Vec<Cause>) {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        out.push(Cause {
            reason: "FieldValueNotSupported",
            field: "spec.type".into(),
            message: format!("Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
        });
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = arr(spec, "ports");
    if ports.is_empty() && ty != "ExternalName" && !headless {
        out.push(required("spec.ports", ""));
    }
    let mut seen = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        port_number(p.get("port"), &format!("spec.ports[{i}].port"), true, out);
        if ports.len() > 1
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            out.push(required(&format!("spec.ports[{i}].name"), ""));
        }
        let key = (p.get("port").cloned(), p.get("protocol").cloned());
        if !seen.insert(format!("{key:?}")) {
            out.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("spec.ports[{i}]"),
                message: format!(
                    "Duplicate value: {}",
                    serde_json::json!({"port": key.0, "protocol": key.1})
                ),
            });
        }
    }
    if ty == "ExternalName"
        && spec
            .get("externalName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        out.push(required("spec.externalName", ""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(labels: Value, containers: Value) -> Value {
        json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}})
    }

    #[test]
    fn cases() {
        let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
            ("apps", "Deployment", deploy(json!({"app": "web"}), json!([{"name": "c", "image": "i"}])), vec![]),
            (
                "apps",
                "Deployment",
                deploy(json!({"app": "other"}), json!([{"name": "c", "image": "i"}])),
                vec![r#"spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not match template `labels`"#],
            ),
            (
                "apps",
                "Deployment",
                deploy(json!({"app": "web"}), json!([{"name": "c"}, {"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}])),
                vec![
                    "spec.template.spec.containers[0].image: Required value",
                    r#"spec.template.spec.containers[1].name: Duplicate value: "c""#,
                    "spec.template.spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ],
            ),
            ("", "Pod", json!({"spec": {}}), vec!["spec.containers: Required value"]),
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "Bad_Name", "image": "i", "resources": {"limits": {"cpu": "lots"}}}]}}),
                vec![
                    "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
                ],
            ),
            (
                "batch",
                "Job",
                json!({"spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}),
                vec![r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#],
            ),
            ("", "Service", json!({"spec": {"type": "ClusterIP"}}), vec!["spec.ports: Required value"]),
            ("", "Service", json!({"spec": {"clusterIP": "None"}}), vec![]),
            (
                "",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 0}]}}),
                vec![
                    "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[1].name: Required value",
                ],
            ),
        ];
        for (group, kind, obj, want) in cases {
            let got: Vec<String> = validate(group, kind, &obj)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            assert_eq!(got, want, "{kind}: {obj}");
        }
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "2e3", "+1", "0.5", "64Mi", "1E-3"] {
            assert!(is_quantity(&json!(ok)), "{ok}");
        }
        for bad in ["lots", "1.2.3", "", "Gi", "1Gb", "1e"] {
            assert!(!is_quantity(&json!(bad)), "{bad}");
        }
    }
}
