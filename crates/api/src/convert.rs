//! Conversion between the served versions of one kind.
//!
//! Objects of a kind served in several versions are stored in one version
//! (the storage version) and converted on the way in and out, as the
//! Kubernetes API server does. Most kinds here are served in one version;
//! for them, and for custom resources (conversion strategy `None`),
//! converting only rewrites `apiVersion`.
//!
//! autoscaling/v1 HorizontalPodAutoscaler knows only a CPU utilization
//! target. What it cannot express of a v2 object (other metrics, their
//! current values, conditions, behavior) travels in annotations, so that a
//! v1 client's read-modify-write keeps it, exactly as Kubernetes does.

use serde_json::{json, Map, Value};

/// v1 annotations holding the parts of a v2 HorizontalPodAutoscaler that v1
/// has no field for.
pub const HPA_METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const HPA_CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const HPA_CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const HPA_BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The version objects of this built-in kind are stored in, when it is not
/// simply the version they were written in.
pub fn storage_version(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("autoscaling", "HorizontalPodAutoscaler") => Some("v2"),
        _ => None,
    }
}

/// `obj` (of any served version of its kind) in version `to`.
pub fn convert(mut obj: Value, group: &str, to: &str) -> Value {
    let api_version = if group.is_empty() {
        to.to_owned()
    } else {
        format!("{group}/{to}")
    };
    let from = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if from != api_version && group == "autoscaling" && kind == "HorizontalPodAutoscaler" {
        match (from.as_str(), to) {
            ("autoscaling/v2", "v1") => obj = hpa::v2_to_v1(obj),
            ("autoscaling/v1", "v2") => obj = hpa::v1_to_v2(obj),
            _ => {}
        }
    }
    if let Some(m) = obj.as_object_mut() {
        if m.contains_key("apiVersion") || !from.is_empty() {
            m.insert("apiVersion".into(), Value::from(api_version));
        }
    }
    obj
}

mod hpa {
    use super::*;

    fn take(m: &mut Map<String, Value>, k: &str) -> Option<Value> {
        m.remove(k).filter(|v| !v.is_null())
    }

    fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
        let meta = obj
            .as_object_mut()
            .expect("an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        let a = meta
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert_with(|| json!({}));
        if !a.is_object() {
            *a = json!({});
        }
        a.as_object_mut().unwrap()
    }

    /// Drops an emptied annotations map, as Go's omitempty would.
    fn tidy_annotations(obj: &mut Value) {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            if meta
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                meta.remove("annotations");
            }
        }
    }

    fn set_annotation(obj: &mut Value, k: &str, v: &Value) {
        annotations(obj).insert(k.into(), Value::from(v.to_string()));
    }

    /// Removes an annotation holding JSON and returns what it holds.
    fn take_annotation(obj: &mut Value, k: &str) -> Option<Value> {
        let raw = obj
            .get_mut("metadata")?
            .get_mut("annotations")?
            .as_object_mut()?
            .remove(k)?;
        serde_json::from_str(raw.as_str()?).ok()
    }

    fn is_cpu_utilization(m: &Value) -> bool {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["target"]["type"] == "Utilization"
            && m["resource"]["target"]["averageUtilization"].is_number()
    }

    fn is_cpu_current(m: &Value) -> bool {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["current"]["averageUtilization"].is_number()
    }

    /// Copies the keys of `from` that are set into `to` under new names.
    fn put(to: &mut Map<String, Value>, pairs: &[(&str, &Value)]) {
        for (k, v) in pairs {
            if !v.is_null() {
                to.insert((*k).into(), (*v).clone());
            }
        }
    }

    // ---- v2 -> v1 ----

    pub fn v2_to_v1(mut obj: Value) -> Value {
        let mut spec = obj
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut out_spec = Map::new();
        for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            if let Some(v) = take(&mut spec, k) {
                out_spec.insert(k.into(), v);
            }
        }
        let metrics = take(&mut spec, "metrics")
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default();
        let mut others = Vec::new();
        for m in metrics {
            if !out_spec.contains_key("targetCPUUtilizationPercentage") && is_cpu_utilization(&m) {
                out_spec.insert(
                    "targetCPUUtilizationPercentage".into(),
                    m["resource"]["target"]["averageUtilization"].clone(),
                );
            } else {
                others.push(metric_spec_to_v1(&m));
            }
        }
        if !others.is_empty() {
            set_annotation(&mut obj, HPA_METRICS, &Value::Array(others));
        }
        if let Some(b) = take(&mut spec, "behavior") {
            set_annotation(&mut obj, HPA_BEHAVIOR, &b);
        }
        obj["spec"] = Value::Object(out_spec);

        if let Some(mut status) = obj
            .get_mut("status")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
        {
            let mut out = Map::new();
            for k in [
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ] {
                if let Some(v) = take(&mut status, k) {
                    out.insert(k.into(), v);
                }
            }
            let current = take(&mut status, "currentMetrics")
                .and_then(|m| m.as_array().cloned())
                .unwrap_or_default();
            let mut others = Vec::new();
            for m in current {
                if !out.contains_key("currentCPUUtilizationPercentage") && is_cpu_current(&m) {
                    out.insert(
                        "currentCPUUtilizationPercentage".into(),
                        m["resource"]["current"]["averageUtilization"].clone(),
                    );
                } else {
                    others.push(metric_status_to_v1(&m));
                }
            }
            if !others.is_empty() {
                set_annotation(&mut obj, HPA_CURRENT_METRICS, &Value::Array(others));
            }
            if let Some(c) = take(&mut status, "conditions")
                .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
            {
                set_annotation(&mut obj, HPA_CONDITIONS, &c);
            }
            obj["status"] = Value::Object(out);
        }
        tidy_annotations(&mut obj);
        obj
    }

    /// A v2 MetricTarget as v1's value fields: (value, averageValue,
    /// averageUtilization).
    fn target(t: &Value) -> (&Value, &Value, &Value) {
        (&t["value"], &t["averageValue"], &t["averageUtilization"])
    }

    fn metric_spec_to_v1(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or_default();
        let mut out = Map::new();
        out.insert("type".into(), Value::from(ty));
        match ty {
            "Object" => {
                let s = &m["object"];
                let (value, avg, _) = target(&s["target"]);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("target", &s["describedObject"]),
                        ("metricName", &s["metric"]["name"]),
                        ("targetValue", value),
                        ("selector", &s["metric"]["selector"]),
                        ("averageValue", avg),
                    ],
                );
                out.insert("object".into(), Value::Object(o));
            }
            "Pods" => {
                let s = &m["pods"];
                let (_, avg, _) = target(&s["target"]);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("metricName", &s["metric"]["name"]),
                        ("targetAverageValue", avg),
                        ("selector", &s["metric"]["selector"]),
                    ],
                );
                out.insert("pods".into(), Value::Object(o));
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let s = &m[key];
                let (_, avg, util) = target(&s["target"]);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("name", &s["name"]),
                        ("targetAverageUtilization", util),
                        ("targetAverageValue", avg),
                        ("container", &s["container"]),
                    ],
                );
                out.insert(key.into(), Value::Object(o));
            }
            "External" => {
                let s = &m["external"];
                let (value, avg, _) = target(&s["target"]);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("metricName", &s["metric"]["name"]),
                        ("metricSelector", &s["metric"]["selector"]),
                        ("targetValue", value),
                        ("targetAverageValue", avg),
                    ],
                );
                out.insert("external".into(), Value::Object(o));
            }
            _ => return m.clone(),
        }
        Value::Object(out)
    }

    fn metric_status_to_v1(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or_default();
        let mut out = Map::new();
        out.insert("type".into(), Value::from(ty));
        let current = |s: &Value| -> (Value, Value, Value) {
            let c = &s["current"];
            (
                c["value"].clone(),
                c["averageValue"].clone(),
                c["averageUtilization"].clone(),
            )
        };
        match ty {
            "Object" => {
                let s = &m["object"];
                let (value, avg, _) = current(s);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("target", &s["describedObject"]),
                        ("metricName", &s["metric"]["name"]),
                        ("currentValue", &value),
                        ("selector", &s["metric"]["selector"]),
                        ("averageValue", &avg),
                    ],
                );
                out.insert("object".into(), Value::Object(o));
            }
            "Pods" => {
                let s = &m["pods"];
                let (_, avg, _) = current(s);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("metricName", &s["metric"]["name"]),
                        ("currentAverageValue", &avg),
                        ("selector", &s["metric"]["selector"]),
                    ],
                );
                out.insert("pods".into(), Value::Object(o));
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let s = &m[key];
                let (_, avg, util) = current(s);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("name", &s["name"]),
                        ("currentAverageUtilization", &util),
                        ("currentAverageValue", &avg),
                        ("container", &s["container"]),
                    ],
                );
                out.insert(key.into(), Value::Object(o));
            }
            "External" => {
                let s = &m["external"];
                let (value, avg, _) = current(s);
                let mut o = Map::new();
                put(
                    &mut o,
                    &[
                        ("metricName", &s["metric"]["name"]),
                        ("metricSelector", &s["metric"]["selector"]),
                        ("currentValue", &value),
                        ("currentAverageValue", &avg),
                    ],
                );
                out.insert("external".into(), Value::Object(o));
            }
            _ => return m.clone(),
        }
        Value::Object(out)
    }

    // ---- v1 -> v2 ----

    pub fn v1_to_v2(mut obj: Value) -> Value {
        let others = take_annotation(&mut obj, HPA_METRICS);
        let current_others = take_annotation(&mut obj, HPA_CURRENT_METRICS);
        let conditions = take_annotation(&mut obj, HPA_CONDITIONS);
        let behavior = take_annotation(&mut obj, HPA_BEHAVIOR);
        tidy_annotations(&mut obj);

        let mut spec = obj
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut out_spec = Map::new();
        for k in ["scaleTargetRef", "minReplicas", "maxReplicas"] {
            if let Some(v) = take(&mut spec, k) {
                out_spec.insert(k.into(), v);
            }
        }
        let mut metrics = Vec::new();
        if let Some(cpu) = take(&mut spec, "targetCPUUtilizationPercentage") {
            metrics.push(json!({
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu}},
            }));
        }
        for m in others
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            metrics.push(metric_spec_to_v2(m));
        }
        if !metrics.is_empty() {
            out_spec.insert("metrics".into(), Value::Array(metrics));
        }
        if let Some(b) = behavior {
            out_spec.insert("behavior".into(), b);
        }
        obj["spec"] = Value::Object(out_spec);

        let status = obj
            .get_mut("status")
            .and_then(Value::as_object_mut)
            .map(std::mem::take);
        if status.is_some() || current_others.is_some() || conditions.is_some() {
            let mut status = status.unwrap_or_default();
            let mut out = Map::new();
            for k in [
                "observedGeneration",
                "lastScaleTime",
                "currentReplicas",
                "desiredReplicas",
            ] {
                if let Some(v) = take(&mut status, k) {
                    out.insert(k.into(), v);
                }
            }
            let mut current = Vec::new();
            if let Some(cpu) = take(&mut status, "currentCPUUtilizationPercentage") {
                current.push(json!({
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": cpu}},
                }));
            }
            for m in current_others
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                current.push(metric_status_to_v2(m));
            }
            if !current.is_empty() {
                out.insert("currentMetrics".into(), Value::Array(current));
            }
            if let Some(c) = conditions {
                out.insert("conditions".into(), c);
            }
            obj["status"] = Value::Object(out);
        }
        obj
    }

    fn metric(name: &Value, selector: &Value) -> Value {
        let mut m = Map::new();
        put(&mut m, &[("name", name), ("selector", selector)]);
        Value::Object(m)
    }

    /// A v2 MetricTarget from v1's fields; `prefer` names the type used when
    /// several are set (v1 allowed only one meaningful combination each).
    fn metric_target(value: &Value, avg: &Value, util: &Value) -> Value {
        if !util.is_null() {
            json!({"type": "Utilization", "averageUtilization": util})
        } else if !avg.is_null() {
            json!({"type": "AverageValue", "averageValue": avg})
        } else {
            json!({"type": "Value", "value": value})
        }
    }

    fn metric_spec_to_v2(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or_default();
        let null = Value::Null;
        match ty {
            "Object" => {
                let s = &m["object"];
                json!({"type": ty, "object": {
                    "describedObject": s["target"],
                    "metric": metric(&s["metricName"], &s["selector"]),
                    "target": metric_target(&s["targetValue"], &s["averageValue"], &null),
                }})
            }
            "Pods" => {
                let s = &m["pods"];
                json!({"type": ty, "pods": {
                    "metric": metric(&s["metricName"], &s["selector"]),
                    "target": metric_target(&null, &s["targetAverageValue"], &null),
                }})
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let s = &m[key];
                let mut o = Map::new();
                put(
                    &mut o,
                    &[("name", &s["name"]), ("container", &s["container"])],
                );
                o.insert(
                    "target".into(),
                    metric_target(
                        &null,
                        &s["targetAverageValue"],
                        &s["targetAverageUtilization"],
                    ),
                );
                json!({"type": ty, key: o})
            }
            "External" => {
                let s = &m["external"];
                json!({"type": ty, "external": {
                    "metric": metric(&s["metricName"], &s["metricSelector"]),
                    "target": metric_target(&s["targetValue"], &s["targetAverageValue"], &null),
                }})
            }
            _ => m.clone(),
        }
    }

    fn metric_value_status(value: &Value, avg: &Value, util: &Value) -> Value {
        let mut c = Map::new();
        put(
            &mut c,
            &[
                ("value", value),
                ("averageValue", avg),
                ("averageUtilization", util),
            ],
        );
        Value::Object(c)
    }

    fn metric_status_to_v2(m: &Value) -> Value {
        let ty = m["type"].as_str().unwrap_or_default();
        let null = Value::Null;
        match ty {
            "Object" => {
                let s = &m["object"];
                json!({"type": ty, "object": {
                    "describedObject": s["target"],
                    "metric": metric(&s["metricName"], &s["selector"]),
                    "current": metric_value_status(&s["currentValue"], &s["averageValue"], &null),
                }})
            }
            "Pods" => {
                let s = &m["pods"];
                json!({"type": ty, "pods": {
                    "metric": metric(&s["metricName"], &s["selector"]),
                    "current": metric_value_status(&null, &s["currentAverageValue"], &null),
                }})
            }
            "Resource" | "ContainerResource" => {
                let key = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let s = &m[key];
                let mut o = Map::new();
                put(
                    &mut o,
                    &[("name", &s["name"]), ("container", &s["container"])],
                );
                o.insert(
                    "current".into(),
                    metric_value_status(
                        &null,
                        &s["currentAverageValue"],
                        &s["currentAverageUtilization"],
                    ),
                );
                json!({"type": ty, key: o})
            }
            "External" => {
                let s = &m["external"];
                json!({"type": ty, "external": {
                    "metric": metric(&s["metricName"], &s["metricSelector"]),
                    "current": metric_value_status(&s["currentValue"], &s["currentAverageValue"], &null),
                }})
            }
            _ => m.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
