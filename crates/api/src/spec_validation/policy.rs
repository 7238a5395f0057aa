//! Policy-like kinds: HorizontalPodAutoscalers, PodDisruptionBudgets,
//! PriorityClasses, Leases, LimitRanges, ResourceQuotas; and Node updates
//! (a pod CIDR, once assigned, stays).

use serde_json::Value;

use super::{arr, at, label_selector, nonnegative, positive_int_or_percent, str_of, unset};
use crate::quantity::Quantity;
use crate::validation::{forbidden, invalid, not_supported, required, Cause};

pub(crate) fn hpa(spec: &Value, out: &mut Vec<Cause>) {
    let target = at(spec, "scaleTargetRef");
    for field in ["kind", "name"] {
        let v = str_of(target, field);
        let path = format!("spec.scaleTargetRef.{field}");
        if v.is_empty() {
            out.push(required(&path, ""));
        } else if v.contains('/') || v.contains('%') || v == "." || v == ".." {
            let detail = if v == "." || v == ".." {
                format!("may not be '{v}'")
            } else if v.contains('/') {
                "may not contain '/'".into()
            } else {
                "may not contain '%'".into()
            };
            out.push(invalid(&path, &Value::from(v), &detail));
        }
    }
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    if let Some(m) = min.filter(|m| *m < 1) {
        out.push(invalid(
            "spec.minReplicas",
            &Value::from(m),
            "must be greater than or equal to 1",
        ));
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if max < 1 {
        out.push(invalid(
            "spec.maxReplicas",
            &Value::from(max),
            "must be greater than 0",
        ));
    }
    if min.is_some_and(|m| max < m) {
        out.push(invalid(
            "spec.maxReplicas",
            &Value::from(max),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    // autoscaling/v1's single target.
    if let Some(t) = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .filter(|t| *t < 1)
    {
        out.push(invalid(
            "spec.targetCPUUtilizationPercentage",
            &Value::from(t),
            "must be greater than or equal to 1",
        ));
    }
}

pub(crate) fn pdb(spec: &Value, out: &mut Vec<Cause>) {
    let (min, max) = (spec.get("minAvailable"), spec.get("maxUnavailable"));
    if !unset(min) && !unset(max) {
        out.push(invalid(
            "spec",
            spec,
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    positive_int_or_percent(min, "spec.minAvailable", true, out);
    positive_int_or_percent(max, "spec.maxUnavailable", true, out);
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        label_selector(sel, "spec.selector", out);
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
    {
        if !matches!(p, "AlwaysAllow" | "IfHealthyBudget") {
            out.push(not_supported(
                "spec.unhealthyPodEvictionPolicy",
                &Value::from(p),
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
}

/// The highest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

pub(crate) fn priority_class(obj: &Value, out: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if name.starts_with("system-") {
        let known = match name {
            "system-node-critical" => Some(2_000_001_000),
            "system-cluster-critical" => Some(2_000_000_000),
            _ => None,
        };
        match known {
            None => out.push(forbidden(
                "metadata.name",
                "priority class names with 'system-' prefix are reserved for system use only",
            )),
            Some(v) if v != value => out.push(forbidden(
                "metadata.name",
                &format!("value of {name} PriorityClass must be {v}"),
            )),
            Some(_) => {}
        }
    } else if value > HIGHEST_USER_PRIORITY {
        out.push(forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str) {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            out.push(not_supported(
                "preemptionPolicy",
                &Value::from(p),
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
}

pub(crate) fn priority_class_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    if new.get("value") != old.get("value") {
        out.push(forbidden("value", "may not be changed in an update."));
    }
    super::immutable(new, old, "/preemptionPolicy", "preemptionPolicy", out);
}

pub(crate) fn lease(spec: &Value, out: &mut Vec<Cause>) {
    if let Some(d) = spec
        .get("leaseDurationSeconds")
        .and_then(Value::as_i64)
        .filter(|d| *d <= 0)
    {
        out.push(invalid(
            "spec.leaseDurationSeconds",
            &Value::from(d),
            "must be greater than 0",
        ));
    }
    nonnegative(spec.get("leaseTransitions"), "spec.leaseTransitions", out);
}

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Quantities of a map: parseable, not negative.
fn quantities(map: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(m) = map.as_object() else {
        return;
    };
    for (k, v) in m {
        let p = format!("{path}[{k}]");
        match quantity(v) {
            None => out.push(invalid(
                &p,
                v,
                "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
            )),
            Some(q) if q.milli < 0 => {
                out.push(invalid(&p, v, "must be greater than or equal to 0"))
            }
            Some(_) => {}
        }
    }
}

pub(crate) fn limit_range(spec: &Value, out: &mut Vec<Cause>) {
    let mut seen = Vec::new();
    for (i, l) in arr(spec, "limits").iter().enumerate() {
        let p = format!("spec.limits[{i}]");
        let ty = str_of(l, "type");
        if seen.contains(&ty) {
            out.push(Cause {
                reason: "FieldValueDuplicate",
                field: format!("{p}.type"),
                message: format!("Duplicate value: {ty:?}"),
            });
        }
        seen.push(ty);
        for f in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            quantities(at(l, f), &format!("{p}.{f}"), out);
        }
        if ty == "Pod" {
            for f in ["default", "defaultRequest"] {
                if at(l, f).as_object().is_some_and(|m| !m.is_empty()) {
                    out.push(forbidden(
                        &format!("{p}.{f}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        // min <= defaultRequest <= default <= max, per resource.
        let get = |f: &str, r: &str| l.get(f).and_then(|m| m.get(r));
        let mut resources: Vec<&String> = ["max", "min", "default", "defaultRequest"]
            .iter()
            .filter_map(|f| l.get(*f).and_then(Value::as_object))
            .flat_map(|m| m.keys())
            .collect();
        resources.sort();
        resources.dedup();
        for r in resources {
            let pairs = [
                (
                    "min",
                    "max",
                    "min value {a} is greater than max value {b}",
                    "min",
                ),
                (
                    "defaultRequest",
                    "max",
                    "default request value {a} is greater than max value {b}",
                    "defaultRequest",
                ),
                (
                    "min",
                    "defaultRequest",
                    "min value {a} is greater than default request value {b}",
                    "defaultRequest",
                ),
                (
                    "defaultRequest",
                    "default",
                    "default request value {a} is greater than default limit value {b}",
                    "defaultRequest",
                ),
                (
                    "min",
                    "default",
                    "min value {a} is greater than default value {b}",
                    "default",
                ),
                (
                    "default",
                    "max",
                    "default value {a} is greater than max value {b}",
                    "default",
                ),
            ];
            for (lo, hi, msg, at_field) in pairs {
                let (Some(a), Some(b)) = (get(lo, r), get(hi, r)) else {
                    continue;
                };
                if let (Some(qa), Some(qb)) = (quantity(a), quantity(b)) {
                    if qa.milli > qb.milli {
                        let shown = if at_field == lo { a } else { b };
                        out.push(invalid(
                            &format!("{p}.{at_field}[{r}]"),
                            &Value::from(quantity_text(shown)),
                            &msg.replace("{a}", &quantity_text(a))
                                .replace("{b}", &quantity_text(b)),
                        ));
                    }
                }
            }
        }
    }
}

/// Quota resources that count objects: their values are whole numbers.
fn counts_objects(resource: &str) -> bool {
    resource.starts_with("count/")
        || matches!(
            resource,
            "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        )
}

pub(crate) fn resource_quota(spec: &Value, out: &mut Vec<Cause>) {
    quantities(at(spec, "hard"), "spec.hard", out);
    if let Some(m) = spec.get("hard").and_then(Value::as_object) {
        for (k, v) in m {
            if counts_objects(k) && quantity(v).is_some_and(|q| q.milli % 1000 != 0) {
                out.push(invalid(&format!("spec.hard[{k}]"), v, "must be an integer"));
            }
        }
    }
    for (i, s) in arr(spec, "scopes").iter().enumerate() {
        const SCOPES: &[&str] = &[
            "BestEffort",
            "CrossNamespacePodAffinity",
            "NotBestEffort",
            "NotTerminating",
            "PriorityClass",
            "Terminating",
            "VolumeAttributesClass",
        ];
        if !s.as_str().is_some_and(|s| SCOPES.contains(&s)) {
            out.push(not_supported(&format!("spec.scopes[{i}]"), s, SCOPES));
        }
    }
}

/// ValidateNode: taints (qualified keys, label values, a known effect,
/// unique by key and effect) and pod CIDRs (valid, at most one per IP
/// family).
pub(crate) fn node(spec: &Value, out: &mut Vec<Cause>) {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = str_of(t, "key");
        if key.is_empty() {
            out.push(required(&format!("{path}.key"), ""));
        } else {
            super::label_name(key, &format!("{path}.key"), out);
        }
        if let Some(v) = t.get("value").and_then(Value::as_str) {
            for e in crate::validation::is_valid_label_value(v) {
                out.push(invalid(&format!("{path}.value"), &Value::from(v), &e));
            }
        }
        let effect = str_of(t, "effect");
        const EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
        if effect.is_empty() {
            out.push(required(&format!("{path}.effect"), ""));
        } else if !EFFECTS.contains(&effect) {
            out.push(not_supported(
                &format!("{path}.effect"),
                &Value::from(effect),
                EFFECTS,
            ));
        }
        if !seen.insert((key.to_owned(), effect.to_owned())) {
            out.push(crate::validation::Cause {
                reason: "FieldValueDuplicate",
                field: path.clone(),
                message: format!(
                    "Duplicate value: {}: taints must be unique by key and effect pair",
                    t
                ),
            });
        }
    }
    let cidrs = arr(spec, "podCIDRs");
    let mut families = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        let s = c.as_str().unwrap_or("");
        match parse_cidr(s) {
            Some(v4) => families.push(v4),
            None => out.push(invalid(
                &format!("spec.podCIDRs[{i}]"),
                &Value::from(s),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
        }
    }
    if cidrs.len() > 1
        && families.len() == cidrs.len()
        && (cidrs.len() > 2 || families[0] == families[1])
    {
        out.push(invalid(
            "spec.podCIDRs",
            &Value::Array(cidrs.to_vec()),
            "may specify no more than one CIDR for each IP family",
        ));
    }
}

/// Whether `s` is an IPv4 (Some(true)) or IPv6 (Some(false)) CIDR.
fn parse_cidr(s: &str) -> Option<bool> {
    let (ip, bits) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(ip.is_ipv4())
}

/// ValidateNodeUpdate: podCIDRs and providerID may only go from unset to
/// set.
pub(crate) fn node_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let cidrs = |v: &Value| -> Vec<String> {
        let list: Vec<String> = v
            .pointer("/spec/podCIDRs")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let single = v
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .unwrap_or("");
        if list.is_empty() && !single.is_empty() {
            vec![single.to_owned()]
        } else {
            list
        }
    };
    let (o, n) = (cidrs(old), cidrs(new));
    let detail = "node updates may not change podCIDR except from \"\" to valid";
    if !o.is_empty() {
        if o.len() != n.len() {
            out.push(forbidden("spec.podCIDRs", detail));
        } else {
            for (a, b) in o.iter().zip(&n) {
                if a != b {
                    out.push(forbidden("spec.podCIDRs", detail));
                }
            }
        }
    }
    let provider = |v: &Value| {
        v.pointer("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    if !provider(old).is_empty() && provider(old) != provider(new) {
        out.push(forbidden(
            "spec.providerID",
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, update, want};
    use serde_json::{json, Value};

    #[test]
    fn creates() {
        let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"});
        let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
            (
                "",
                "Node",
                json!({"spec": {"podCIDRs": ["10.42.0.0/24", "fd00::/64"], "taints": [
                    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                    {"key": "dedicated", "effect": "NoExecute"}]}}),
                vec![],
            ),
            (
                "",
                "Node",
                json!({"spec": {"podCIDRs": ["10.42.0.0/24", "10.43.0.0/24"], "taints": [
                    {"key": "bad key!", "effect": "Sometimes"},
                    {"key": "a", "effect": "NoSchedule"},
                    {"key": "a", "value": "b", "effect": "NoSchedule"},
                    {"key": "c"}]}}),
                vec![
                    "spec.taints[0].key Invalid",
                    "spec.taints[0].effect NotSupported",
                    "spec.taints[2] Duplicate",
                    "spec.taints[3].effect Required",
                    "spec.podCIDRs Invalid",
                ],
            ),
            (
                "",
                "Node",
                json!({"spec": {"podCIDRs": ["10.42.0.0/33"]}}),
                vec!["spec.podCIDRs[0] Invalid"],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"spec": {"scaleTargetRef": target, "minReplicas": 1, "maxReplicas": 3}}),
                vec![],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"spec": {"scaleTargetRef": {}, "minReplicas": 0, "maxReplicas": 0}}),
                vec![
                    "spec.scaleTargetRef.kind Required",
                    "spec.scaleTargetRef.name Required",
                    "spec.minReplicas Invalid",
                    "spec.maxReplicas Invalid",
                    // minReplicas 0 also needs an Object or External metric.
                    "spec.metrics Forbidden",
                ],
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                json!({"spec": {"scaleTargetRef": target, "minReplicas": 5, "maxReplicas": 3}}),
                vec!["spec.maxReplicas Invalid"],
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"spec": {"minAvailable": "50%", "selector": {"matchLabels": {"a": "b"}}}}),
                vec![],
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}}),
                vec!["spec Invalid"],
            ),
            (
                "policy",
                "PodDisruptionBudget",
                json!({"spec": {"maxUnavailable": "150%"}}),
                vec!["spec.maxUnavailable Invalid"],
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "high"}, "value": 1000}),
                vec![],
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "high"}, "value": 2_000_000_000}),
                vec!["value Forbidden"],
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "system-mine"}, "value": 1}),
                vec!["metadata.name Forbidden"],
            ),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}),
                vec![],
            ),
            (
                "coordination.k8s.io",
                "Lease",
                json!({"spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
                vec![
                    "spec.leaseDurationSeconds Invalid",
                    "spec.leaseTransitions Invalid",
                ],
            ),
            (
                "",
                "LimitRange",
                json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}, "default": {"cpu": "lots"}}]}}),
                vec![
                    "spec.limits[0].default[cpu] Invalid",
                    "spec.limits[0].min[cpu] Invalid",
                ],
            ),
            (
                "",
                "LimitRange",
                json!({"spec": {"limits": [{"type": "Pod", "default": {"cpu": "1"}}, {"type": "Pod"}]}}),
                vec![
                    "spec.limits[0].default Forbidden",
                    "spec.limits[1].type Duplicate",
                ],
            ),
            (
                "",
                "ResourceQuota",
                json!({"spec": {"hard": {"pods": "10", "cpu": "4", "memory": "-1Gi", "configmaps": "1.5"}, "scopes": ["Sometimes"]}}),
                vec![
                    "spec.hard[memory] Invalid",
                    "spec.hard[configmaps] Invalid",
                    "spec.scopes[0] NotSupported",
                ],
            ),
        ];
        for (group, kind, obj, w) in cases {
            assert_eq!(create(group, kind, &obj), want(&w), "{kind}: {obj}");
        }
    }

    #[test]
    fn updates() {
        let node = |cidr: Value| json!({"spec": {"podCIDR": cidr.get(0).cloned().unwrap_or(Value::Null), "podCIDRs": cidr}});
        let pc = |v: i64| json!({"metadata": {"name": "p"}, "value": v});
        let cases: Vec<(&str, &str, Value, Value, Vec<&str>)> = vec![
            (
                "",
                "Node",
                node(json!(["10.244.1.0/24"])),
                node(json!([])),
                vec![],
            ),
            (
                "",
                "Node",
                node(json!(["10.244.1.0/24"])),
                node(json!(["10.244.1.0/24"])),
                vec![],
            ),
            (
                "",
                "Node",
                node(json!(["10.244.2.0/24"])),
                node(json!(["10.244.1.0/24"])),
                vec!["spec.podCIDRs Forbidden"],
            ),
            ("scheduling.k8s.io", "PriorityClass", pc(5), pc(5), vec![]),
            (
                "scheduling.k8s.io",
                "PriorityClass",
                pc(6),
                pc(5),
                vec!["value Forbidden"],
            ),
        ];
        for (group, kind, new, old, w) in cases {
            assert_eq!(update(group, kind, &new, &old), want(&w), "{kind}: {new}");
        }
    }
}
