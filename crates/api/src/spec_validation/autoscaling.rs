//! autoscaling/v2 HorizontalPodAutoscaler metrics and behavior
//! (validateMetrics, validateBehavior). The spec's replica bounds and
//! scale target are checked in `policy::hpa`.
//!
//! Kubernetes defaults a behavior's missing rules and policies before it
//! validates, so only a `policies` list that is present and empty is
//! refused.

use serde_json::Value;

use super::{arr, at, str_of, unset};
use crate::quantity::Quantity;
use crate::validation::{forbidden, invalid, is_dns1123_label, not_supported, required, Cause};

const MAX_PERIOD_SECONDS: i64 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;

/// The metric source types, as Kubernetes lists them (sorted).
const SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];

pub(crate) fn hpa_metrics_and_behavior(spec: &Value, out: &mut Vec<Cause>) {
    let metrics = arr(spec, "metrics");
    for (i, m) in metrics.iter().enumerate() {
        metric(m, &format!("spec.metrics[{i}]"), out);
    }
    // minReplicas 0 (HPAScaleToZero) needs an Object or External metric;
    // without the gate `policy::hpa` already refuses it.
    if spec.get("minReplicas").and_then(Value::as_i64) == Some(0)
        && !metrics
            .iter()
            .any(|m| matches!(str_of(m, "type"), "Object" | "External"))
    {
        out.push(forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        for rules in ["scaleUp", "scaleDown"] {
            if let Some(r) = b.get(rules).filter(|r| r.is_object()) {
                scaling_rules(r, &format!("spec.behavior.{rules}"), out);
            }
        }
    }
}

/// validateMetricSpec: a known type, its source present and the only one.
fn metric(m: &Value, path: &str, out: &mut Vec<Cause>) {
    let ty = str_of(m, "type");
    let tp = format!("{path}.type");
    if ty.is_empty() {
        out.push(required(&tp, "must specify a metric source type"));
    }
    if !SOURCE_TYPES.contains(&ty) {
        out.push(not_supported(&tp, &Value::from(ty), SOURCE_TYPES));
    }
    let mut present = Vec::new();
    for field in [
        "object",
        "external",
        "pods",
        "resource",
        "containerResource",
    ] {
        let Some(src) = m.get(field).filter(|s| !s.is_null()) else {
            continue;
        };
        present.push(field);
        if present.len() == 1 {
            let sp = format!("{path}.{field}");
            match field {
                "object" => object_source(src, &sp, out),
                "external" => external_source(src, &sp, out),
                "pods" => pods_source(src, &sp, out),
                "resource" => resource_source(src, &sp, out),
                _ => container_resource_source(src, &sp, out),
            }
        }
    }
    let expected = match ty {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "External" => "external",
        "ContainerResource" => "containerResource",
        _ => {
            // Kubernetes reports an unknown type twice (its causes list
            // both; the message shows it once).
            out.push(not_supported(&tp, &Value::from(ty), SOURCE_TYPES));
            ""
        }
    };
    if !expected.is_empty() && !present.contains(&expected) {
        out.push(required(
            &format!("{path}.{expected}"),
            "must populate information for the given metric source",
        ));
    }
    if present.len() != 1 {
        for field in present.iter().filter(|f| **f != expected) {
            out.push(forbidden(
                &format!("{path}.{field}"),
                "must populate the given metric source only",
            ));
        }
    }
}

/// ValidateCrossVersionObjectReference (an Object metric's
/// describedObject).
fn object_reference(r: &Value, path: &str, out: &mut Vec<Cause>) {
    for field in ["kind", "name"] {
        let v = str_of(r, field);
        let fp = format!("{path}.{field}");
        if v.is_empty() {
            out.push(required(&fp, ""));
        } else {
            path_segment(v, &fp, out);
        }
    }
}

/// IsValidPathSegmentName.
fn path_segment(v: &str, path: &str, out: &mut Vec<Cause>) {
    if v == "." || v == ".." {
        out.push(invalid(path, &Value::from(v), &format!("may not be '{v}'")));
        return;
    }
    for c in ["/", "%"] {
        if v.contains(c) {
            out.push(invalid(
                path,
                &Value::from(v),
                &format!("may not contain '{c}'"),
            ));
        }
    }
}

fn metric_identifier(src: &Value, path: &str, out: &mut Vec<Cause>) {
    let name = src
        .pointer("/metric/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let np = format!("{path}.metric.name");
    if name.is_empty() {
        out.push(required(&np, "must specify a metric name"));
    } else {
        path_segment(name, &np, out);
    }
}

fn set(target: &Value, key: &str) -> bool {
    !unset(target.get(key))
}

fn object_source(src: &Value, path: &str, out: &mut Vec<Cause>) {
    object_reference(
        at(src, "describedObject"),
        &format!("{path}.describedObject"),
        out,
    );
    metric_identifier(src, path, out);
    let t = at(src, "target");
    metric_target(t, &format!("{path}.target"), out);
    if !set(t, "value") && !set(t, "averageValue") {
        out.push(required(
            &format!("{path}.target.averageValue"),
            "must set either a target value or averageValue",
        ));
    }
}

fn external_source(src: &Value, path: &str, out: &mut Vec<Cause>) {
    metric_identifier(src, path, out);
    let t = at(src, "target");
    metric_target(t, &format!("{path}.target"), out);
    match (set(t, "value"), set(t, "averageValue")) {
        (false, false) => out.push(required(
            &format!("{path}.target.averageValue"),
            "must set either a target value for metric or a per-pod target",
        )),
        (true, true) => out.push(forbidden(
            &format!("{path}.target.value"),
            "may not set both a target value for metric and a per-pod target",
        )),
        _ => {}
    }
}

fn pods_source(src: &Value, path: &str, out: &mut Vec<Cause>) {
    metric_identifier(src, path, out);
    let t = at(src, "target");
    metric_target(t, &format!("{path}.target"), out);
    if !set(t, "averageValue") {
        out.push(required(
            &format!("{path}.target.averageValue"),
            "must specify a positive target averageValue",
        ));
    }
}

fn resource_source(src: &Value, path: &str, out: &mut Vec<Cause>) {
    if str_of(src, "name").is_empty() {
        out.push(required(
            &format!("{path}.name"),
            "must specify a resource name",
        ));
    }
    utilization_target(src, path, out);
}

fn container_resource_source(src: &Value, path: &str, out: &mut Vec<Cause>) {
    if str_of(src, "name").is_empty() {
        out.push(required(
            &format!("{path}.name"),
            "must specify a resource name",
        ));
    }
    let container = str_of(src, "container");
    let cp = format!("{path}.container");
    if container.is_empty() {
        out.push(required(&cp, "must specify a container"));
    } else {
        for e in is_dns1123_label(container) {
            out.push(invalid(&cp, &Value::from(container), &e));
        }
    }
    utilization_target(src, path, out);
}

/// A Resource or ContainerResource target: a utilization or a raw average
/// value, one of the two.
fn utilization_target(src: &Value, path: &str, out: &mut Vec<Cause>) {
    let t = at(src, "target");
    metric_target(t, &format!("{path}.target"), out);
    match (set(t, "averageUtilization"), set(t, "averageValue")) {
        (false, false) => out.push(required(
            &format!("{path}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        )),
        (true, true) => out.push(forbidden(
            &format!("{path}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        )),
        _ => {}
    }
}

fn positive_quantity(v: &Value) -> bool {
    let q = match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    };
    q.is_some_and(|q| q.milli > 0)
}

/// validateMetricTarget.
fn metric_target(t: &Value, path: &str, out: &mut Vec<Cause>) {
    let ty = str_of(t, "type");
    let tp = format!("{path}.type");
    if ty.is_empty() {
        out.push(required(&tp, "must specify a metric target type"));
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        out.push(invalid(
            &tp,
            &Value::from(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for key in ["value", "averageValue"] {
        if let Some(v) = t.get(key).filter(|v| !v.is_null()) {
            if !positive_quantity(v) {
                out.push(invalid(&format!("{path}.{key}"), v, "must be positive"));
            }
        }
    }
    if let Some(u) = t.get("averageUtilization").and_then(Value::as_i64) {
        if u < 1 {
            out.push(invalid(
                &format!("{path}.averageUtilization"),
                &Value::from(u),
                "must be greater than 0",
            ));
        }
    }
}

/// validateScalingRules.
fn scaling_rules(r: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(w) = r.get("stabilizationWindowSeconds").and_then(Value::as_i64) {
        let wp = format!("{path}.stabilizationWindowSeconds");
        if w < 0 {
            out.push(invalid(
                &wp,
                &Value::from(w),
                "must be greater than or equal to zero",
            ));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            out.push(invalid(
                &wp,
                &Value::from(w),
                &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(p) = r.get("selectPolicy").and_then(Value::as_str) {
        if !matches!(p, "Max" | "Min" | "Disabled") {
            out.push(not_supported(
                &format!("{path}.selectPolicy"),
                &Value::from(p),
                &["Disabled", "Max", "Min"],
            ));
        }
    }
    let pp = format!("{path}.policies");
    if r.get("policies")
        .is_some_and(|p| p.as_array().is_some_and(Vec::is_empty))
    {
        out.push(required(&pp, "must specify at least one Policy"));
    }
    for (i, p) in arr(r, "policies").iter().enumerate() {
        let ip = format!("{pp}[{i}]");
        let ty = str_of(p, "type");
        if !matches!(ty, "Pods" | "Percent") {
            out.push(not_supported(
                &format!("{ip}.type"),
                &Value::from(ty),
                &["Percent", "Pods"],
            ));
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            out.push(invalid(
                &format!("{ip}.value"),
                &Value::from(value),
                "must be greater than zero",
            ));
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        let sp = format!("{ip}.periodSeconds");
        if period <= 0 {
            out.push(invalid(
                &sp,
                &Value::from(period),
                "must be greater than zero",
            ));
        }
        if period > MAX_PERIOD_SECONDS {
            out.push(invalid(
                &sp,
                &Value::from(period),
                &format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::super::validate;
    use serde_json::{json, Value};

    fn hpa(extra: Value) -> Value {
        let mut spec = json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": "h"}, "spec": spec})
    }

    #[test]
    fn metrics_and_behavior() {
        let m = "spec.metrics";
        let b = "spec.behavior";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({"metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "web"}, "metric": {"name": "hits"},
                        "target": {"type": "Value", "value": 10}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                        "target": {"type": "Utilization", "averageUtilization": 60}}}],
                  "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 1800}]},
                    "scaleDown": {"stabilizationWindowSeconds": 3600, "selectPolicy": "Disabled"}}}),
                vec![],
            ),
            (
                json!({"metrics": [{"type": "Memory"}]}),
                vec![
                    format!(r#"{m}[0].type: Unsupported value: "Memory": supported values: "ContainerResource", "External", "Object", "Pods", "Resource""#),
                    format!(r#"{m}[0].type: Unsupported value: "Memory": supported values: "ContainerResource", "External", "Object", "Pods", "Resource""#),
                ],
            ),
            (
                json!({"metrics": [{"type": "Resource"}]}),
                vec![format!("{m}[0].resource: Required value: must populate information for the given metric source")],
            ),
            (
                json!({"metrics": [{"type": "Pods",
                    "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1"}},
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 5}}}]}),
                vec![format!("{m}[0].resource: Forbidden: must populate the given metric source only")],
            ),
            (
                json!({"metrics": [{"type": "Resource", "resource": {"target": {"type": "Percent", "averageUtilization": 0}}}]}),
                vec![
                    format!("{m}[0].resource.name: Required value: must specify a resource name"),
                    format!(r#"{m}[0].resource.target.type: Invalid value: "Percent": must be either Utilization, Value, or AverageValue"#),
                    format!("{m}[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"),
                ],
            ),
            (
                json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {}}}]}),
                vec![
                    format!("{m}[0].resource.target.type: Required value: must specify a metric target type"),
                    format!(r#"{m}[0].resource.target.type: Invalid value: "": must be either Utilization, Value, or AverageValue"#),
                    format!("{m}[0].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization"),
                ],
            ),
            (
                json!({"metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50, "averageValue": "-1"}}}]}),
                vec![
                    format!(r#"{m}[0].resource.target.averageValue: Invalid value: "-1": must be positive"#),
                    format!("{m}[0].resource.target.averageValue: Forbidden: may not set both a target raw value and a target utilization"),
                ],
            ),
            (
                json!({"metrics": [{"type": "Pods", "pods": {"metric": {}, "target": {"type": "Value", "value": "0"}}}]}),
                vec![
                    format!("{m}[0].pods.metric.name: Required value: must specify a metric name"),
                    format!(r#"{m}[0].pods.target.value: Invalid value: "0": must be positive"#),
                    format!("{m}[0].pods.target.averageValue: Required value: must specify a positive target averageValue"),
                ],
            ),
            (
                json!({"metrics": [
                    {"type": "Object", "object": {"describedObject": {"name": "a/b"}, "metric": {"name": "hits"}, "target": {"type": "Value"}}},
                    {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": 1, "averageValue": 1}}}]}),
                vec![
                    format!("{m}[0].object.describedObject.kind: Required value"),
                    format!(r#"{m}[0].object.describedObject.name: Invalid value: "a/b": may not contain '/'"#),
                    format!("{m}[0].object.target.averageValue: Required value: must set either a target value or averageValue"),
                    format!("{m}[1].external.target.value: Forbidden: may not set both a target value for metric and a per-pod target"),
                ],
            ),
            (
                json!({"metrics": [{"type": "ContainerResource", "containerResource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
                vec![format!("{m}[0].containerResource.container: Required value: must specify a container")],
            ),
            (
                json!({"behavior": {"scaleUp": {"stabilizationWindowSeconds": -1, "selectPolicy": "Avg", "policies": []},
                    "scaleDown": {"stabilizationWindowSeconds": 3601,
                        "policies": [{"type": "Replicas", "value": 0, "periodSeconds": 0}, {"type": "Pods", "value": 1, "periodSeconds": 1801}]}}}),
                vec![
                    format!("{b}.scaleUp.stabilizationWindowSeconds: Invalid value: -1: must be greater than or equal to zero"),
                    format!(r#"{b}.scaleUp.selectPolicy: Unsupported value: "Avg": supported values: "Disabled", "Max", "Min""#),
                    format!("{b}.scaleUp.policies: Required value: must specify at least one Policy"),
                    format!("{b}.scaleDown.stabilizationWindowSeconds: Invalid value: 3601: must be less than or equal to 3600"),
                    format!(r#"{b}.scaleDown.policies[0].type: Unsupported value: "Replicas": supported values: "Percent", "Pods""#),
                    format!("{b}.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero"),
                    format!("{b}.scaleDown.policies[0].periodSeconds: Invalid value: 0: must be greater than zero"),
                    format!("{b}.scaleDown.policies[1].periodSeconds: Invalid value: 1801: must be less than or equal to 1800"),
                ],
            ),
            (
                json!({"minReplicas": 0, "metrics": [{"type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
                vec![
                    "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1".to_owned(),
                    format!("{m}: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas"),
                ],
            ),
        ];
        for (extra, want) in cases {
            let obj = hpa(extra.clone());
            assert_eq!(
                messages(validate("autoscaling", "HorizontalPodAutoscaler", &obj)),
                want,
                "{extra}"
            );
        }
    }
}
