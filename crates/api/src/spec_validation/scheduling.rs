//! Scheduling directives of a pod spec: node and pod (anti-)affinity
//! (validateAffinity), tolerations (ValidateTolerations) and topology
//! spread constraints (validateTopologySpreadConstraints).

use std::collections::HashSet;

use serde_json::Value;

use super::{arr, label_name, label_selector, str_of, unset};
use crate::validation::{
    duplicate, forbidden, invalid, is_dns1123_label, is_dns1123_subdomain, is_valid_label_value,
    not_supported, required, Cause,
};

pub(crate) fn affinity(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(a) = spec.get("affinity").filter(|a| a.is_object()) else {
        return;
    };
    let ap = format!("{path}.affinity");
    if let Some(na) = a.get("nodeAffinity").filter(|n| n.is_object()) {
        node_affinity(na, &format!("{ap}.nodeAffinity"), out);
    }
    for key in ["podAffinity", "podAntiAffinity"] {
        if let Some(pa) = a.get(key).filter(|p| p.is_object()) {
            pod_affinity(pa, &format!("{ap}.{key}"), out);
        }
    }
}

const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";

fn node_affinity(na: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(sel) = na.get(REQUIRED).filter(|s| !s.is_null()) {
        let tp = format!("{path}.{REQUIRED}.nodeSelectorTerms");
        let terms = arr(sel, "nodeSelectorTerms");
        if terms.is_empty() {
            out.push(required(&tp, "must have at least one node selector term"));
        }
        for (i, term) in terms.iter().enumerate() {
            node_selector_term(term, &format!("{tp}[{i}]"), false, out);
        }
    }
    for (i, t) in arr(na, PREFERRED).iter().enumerate() {
        let tp = format!("{path}.{PREFERRED}[{i}]");
        weight(t, &tp, out);
        // Preferred terms may name label values no node has yet.
        node_selector_term(
            t.get("preference").unwrap_or(&Value::Null),
            &format!("{tp}.preference"),
            true,
            out,
        );
    }
}

fn weight(t: &Value, path: &str, out: &mut Vec<Cause>) {
    let w = t.get("weight").and_then(Value::as_i64).unwrap_or(0);
    if !(1..=100).contains(&w) {
        out.push(invalid(
            &format!("{path}.weight"),
            &Value::from(w),
            "must be in the range 1-100",
        ));
    }
}

/// ValidateNodeSelectorTerm: matchExpressions on labels, matchFields on
/// `metadata.name` only.
fn node_selector_term(term: &Value, path: &str, any_value: bool, out: &mut Vec<Cause>) {
    for (j, r) in arr(term, "matchExpressions").iter().enumerate() {
        let rp = format!("{path}.matchExpressions[{j}]");
        let values = arr(r, "values");
        let vp = format!("{rp}.values");
        match str_of(r, "operator") {
            "In" | "NotIn" if values.is_empty() => out.push(required(
                &vp,
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(forbidden(
                &vp,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Gt" | "Lt" if values.len() != 1 => out.push(required(
                &vp,
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => out.push(invalid(
                &format!("{rp}.operator"),
                &Value::from(op),
                "not a valid selector operator",
            )),
        }
        label_name(str_of(r, "key"), &format!("{rp}.key"), out);
        if !any_value {
            for (k, v) in values.iter().enumerate() {
                for e in is_valid_label_value(v.as_str().unwrap_or("")) {
                    out.push(invalid(&format!("{vp}[{k}]"), v, &e));
                }
            }
        }
    }
    for (j, r) in arr(term, "matchFields").iter().enumerate() {
        let rp = format!("{path}.matchFields[{j}]");
        let values = arr(r, "values");
        match str_of(r, "operator") {
            "In" | "NotIn" => {
                if values.len() != 1 {
                    out.push(required(
                        &format!("{rp}.values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            op => out.push(invalid(
                &format!("{rp}.operator"),
                &Value::from(op),
                "not a valid selector operator",
            )),
        }
        let key = str_of(r, "key");
        if key != "metadata.name" {
            out.push(invalid(
                &format!("{rp}.key"),
                &Value::from(key),
                "not a valid field selector key",
            ));
        } else {
            for (k, v) in values.iter().enumerate() {
                for e in is_dns1123_subdomain(v.as_str().unwrap_or("")) {
                    out.push(invalid(&format!("{rp}.values[{k}]"), v, &e));
                }
            }
        }
    }
}

fn pod_affinity(pa: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, t) in arr(pa, REQUIRED).iter().enumerate() {
        pod_affinity_term(t, &format!("{path}.{REQUIRED}[{i}]"), out);
    }
    for (i, t) in arr(pa, PREFERRED).iter().enumerate() {
        let tp = format!("{path}.{PREFERRED}[{i}]");
        weight(t, &tp, out);
        pod_affinity_term(
            t.get("podAffinityTerm").unwrap_or(&Value::Null),
            &format!("{tp}.podAffinityTerm"),
            out,
        );
    }
}

fn pod_affinity_term(t: &Value, path: &str, out: &mut Vec<Cause>) {
    let selector = t.get("labelSelector").filter(|s| !s.is_null());
    if let Some(s) = selector {
        label_selector(s, &format!("{path}.labelSelector"), out);
    }
    if let Some(s) = t.get("namespaceSelector").filter(|s| !s.is_null()) {
        label_selector(s, &format!("{path}.namespaceSelector"), out);
    }
    for ns in arr(t, "namespaces") {
        // Kubernetes names the field `namespace` here.
        for e in is_dns1123_label(ns.as_str().unwrap_or("")) {
            out.push(invalid(&format!("{path}.namespace"), ns, &e));
        }
    }
    let keys =
        |k: &str| -> Vec<&str> { arr(t, k).iter().map(|v| v.as_str().unwrap_or("")).collect() };
    let (matching, mismatching) = (keys("matchLabelKeys"), keys("mismatchLabelKeys"));
    for (field, list) in [
        ("matchLabelKeys", &matching),
        ("mismatchLabelKeys", &mismatching),
    ] {
        if list.is_empty() {
            continue;
        }
        let fp = format!("{path}.{field}");
        if selector.is_none() {
            out.push(forbidden(
                &fp,
                "must not be specified when labelSelector is not set",
            ));
            continue;
        }
        for (i, k) in list.iter().enumerate() {
            label_name(k, &format!("{fp}[{i}]"), out);
        }
    }
    for (i, k) in matching.iter().enumerate() {
        if mismatching.contains(k) {
            out.push(invalid(
                &format!("{path}.matchLabelKeys[{i}]"),
                &Value::from(*k),
                "exists in both matchLabelKeys and mismatchLabelKeys",
            ));
        }
    }
    let key = str_of(t, "topologyKey");
    let kp = format!("{path}.topologyKey");
    if key.is_empty() {
        out.push(required(&kp, "can not be empty"));
    }
    label_name(key, &kp, out);
}

/// ValidateTolerations.
pub(crate) fn tolerations(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        let tp = format!("{path}.tolerations[{i}]");
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !key.is_empty() {
            label_name(key, &format!("{tp}.key"), out);
        }
        let op_path = format!("{tp}.operator");
        if key.is_empty() && op != "Exists" {
            out.push(invalid(
                &op_path,
                &Value::from(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if !unset(t.get("tolerationSeconds")) && effect != "NoExecute" {
            out.push(invalid(
                &format!("{tp}.effect"),
                &Value::from(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let errs = is_valid_label_value(value);
                if !errs.is_empty() {
                    out.push(invalid(&op_path, &Value::from(value), &errs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    out.push(invalid(
                        &op_path,
                        &Value::from(value),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => out.push(not_supported(
                &op_path,
                &Value::from(other),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            out.push(not_supported(
                &format!("{tp}.effect"),
                &Value::from(effect),
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

/// validateTopologySpreadConstraints.
pub(crate) fn topology_spread(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let constraints = arr(spec, "topologySpreadConstraints");
    for (i, c) in constraints.iter().enumerate() {
        let cp = format!("{path}.topologySpreadConstraints[{i}]");
        let skew = c.get("maxSkew").and_then(Value::as_i64).unwrap_or(0);
        if skew <= 0 {
            out.push(invalid(
                &format!("{cp}.maxSkew"),
                &Value::from(skew),
                "must be greater than zero",
            ));
        }
        let key = str_of(c, "topologyKey");
        if key.is_empty() {
            out.push(required(&format!("{cp}.topologyKey"), "can not be empty"));
        }
        let action = str_of(c, "whenUnsatisfiable");
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            out.push(not_supported(
                &format!("{cp}.whenUnsatisfiable"),
                &Value::from(action),
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        if constraints[i + 1..]
            .iter()
            .any(|o| str_of(o, "topologyKey") == key && str_of(o, "whenUnsatisfiable") == action)
        {
            out.push(duplicate(
                &format!("{cp}.{{topologyKey, whenUnsatisfiable}}"),
                &Value::from(format!("{{{key}, {action}}}")),
            ));
        }
        if let Some(min) = c.get("minDomains").filter(|m| !m.is_null()) {
            let mp = format!("{cp}.minDomains");
            if min.as_i64().unwrap_or(0) <= 0 {
                out.push(invalid(&mp, min, "must be greater than zero"));
            }
            if action != "DoNotSchedule" {
                out.push(invalid(
                    &mp,
                    min,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        for policy in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(p) = c.get(policy).and_then(Value::as_str) {
                if !matches!(p, "Honor" | "Ignore") {
                    out.push(not_supported(
                        &format!("{cp}.{policy}"),
                        &Value::from(p),
                        &["Honor", "Ignore"],
                    ));
                }
            }
        }
        let selector = c.get("labelSelector").filter(|s| !s.is_null());
        let keys = arr(c, "matchLabelKeys");
        if !keys.is_empty() {
            let kp = format!("{cp}.matchLabelKeys");
            let mut selector_keys: HashSet<&str> = HashSet::new();
            match selector {
                Some(s) => {
                    if let Some(m) = s.get("matchLabels").and_then(Value::as_object) {
                        selector_keys.extend(m.keys().map(String::as_str));
                    }
                    for e in arr(s, "matchExpressions") {
                        selector_keys.insert(str_of(e, "key"));
                    }
                }
                None => out.push(forbidden(
                    &kp,
                    "must not be specified when labelSelector is not set",
                )),
            }
            for (j, k) in keys.iter().enumerate() {
                let k = k.as_str().unwrap_or("");
                label_name(k, &format!("{kp}[{j}]"), out);
                if selector_keys.contains(k) {
                    out.push(invalid(
                        &format!("{kp}[{j}]"),
                        &Value::from(k),
                        "exists in both matchLabelKeys and labelSelector",
                    ));
                }
            }
        }
        if let Some(s) = selector {
            label_selector(s, &format!("{cp}.labelSelector"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::super::validate;
    use serde_json::{json, Value};

    /// A Deployment whose pod template spec has `extra` merged in: the
    /// rules hold in every template as in pods.
    fn deployment(extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": spec}}})
    }

    const S: &str = "spec.template.spec";
    const NA: &str = "spec.template.spec.affinity.nodeAffinity";
    const REQ: &str = "requiredDuringSchedulingIgnoredDuringExecution";
    const PREF: &str = "preferredDuringSchedulingIgnoredDuringExecution";

    #[test]
    fn affinity() {
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({"affinity": {
                    "nodeAffinity": {
                        REQ: {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                            {"key": "cpus", "operator": "Gt", "values": ["4"]},
                            {"key": "gpu", "operator": "DoesNotExist"}],
                            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-1"]}]}]},
                        PREF: [{"weight": 100, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["any value!"]}]}}]},
                    "podAntiAffinity": {
                        REQ: [{"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname",
                            "matchLabelKeys": ["pod-template-hash"], "namespaces": ["default"]}],
                        PREF: [{"weight": 1, "podAffinityTerm": {"topologyKey": "zone", "namespaceSelector": {}}}]}}}),
                vec![],
            ),
            (
                json!({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": []}}}}),
                vec![format!("{NA}.{REQ}.nodeSelectorTerms: Required value: must have at least one node selector term")],
            ),
            (
                json!({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "zone", "operator": "Near", "values": ["a"]},
                    {"key": "zone", "operator": "In"},
                    {"key": "zone", "operator": "Exists", "values": ["a"]},
                    {"key": "cpus", "operator": "Lt", "values": ["1", "2"]},
                    {"key": "bad key", "operator": "In", "values": ["-bad-"]}]}]}}}}),
                vec![
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator"#),
                    format!("{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
                    format!("{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[2].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
                    format!("{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[3].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[4].key: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#),
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchExpressions[4].values[0]: Invalid value: "-bad-": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#),
                ],
            ),
            (
                json!({"affinity": {"nodeAffinity": {REQ: {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.labels", "operator": "In", "values": ["a"]},
                    {"key": "metadata.name", "operator": "Exists"},
                    {"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
                    {"key": "metadata.name", "operator": "In", "values": ["Node_1"]}]}]}}}}),
                vec![
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchFields[0].key: Invalid value: "metadata.labels": not a valid field selector key"#),
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchFields[1].operator: Invalid value: "Exists": not a valid selector operator"#),
                    format!("{NA}.{REQ}.nodeSelectorTerms[0].matchFields[2].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"),
                    format!(r#"{NA}.{REQ}.nodeSelectorTerms[0].matchFields[3].values[0]: Invalid value: "Node_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#),
                ],
            ),
            (
                json!({"affinity": {"nodeAffinity": {PREF: [{"weight": 0, "preference": {}}, {"weight": 101, "preference": {}}]}}}),
                vec![
                    format!("{NA}.{PREF}[0].weight: Invalid value: 0: must be in the range 1-100"),
                    format!("{NA}.{PREF}[1].weight: Invalid value: 101: must be in the range 1-100"),
                ],
            ),
            (
                json!({"affinity": {"podAffinity": {REQ: [{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["a"]}]}}]}}}),
                vec![
                    format!(r#"{S}.affinity.podAffinity.{REQ}[0].labelSelector.matchExpressions[0].operator: Invalid value: "Equals": not a valid selector operator"#),
                    format!("{S}.affinity.podAffinity.{REQ}[0].topologyKey: Required value: can not be empty"),
                    format!(r#"{S}.affinity.podAffinity.{REQ}[0].topologyKey: Invalid value: "": name part must be non-empty"#),
                    format!(r#"{S}.affinity.podAffinity.{REQ}[0].topologyKey: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#),
                ],
            ),
            (
                json!({"affinity": {"podAntiAffinity": {PREF: [{"weight": 200, "podAffinityTerm": {"topologyKey": "zone",
                    "namespaces": ["Bad_NS"], "matchLabelKeys": ["app"], "mismatchLabelKeys": ["app"]}}]}}}),
                vec![
                    format!("{S}.affinity.podAntiAffinity.{PREF}[0].weight: Invalid value: 200: must be in the range 1-100"),
                    format!(r#"{S}.affinity.podAntiAffinity.{PREF}[0].podAffinityTerm.namespace: Invalid value: "Bad_NS": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#),
                    format!("{S}.affinity.podAntiAffinity.{PREF}[0].podAffinityTerm.matchLabelKeys: Forbidden: must not be specified when labelSelector is not set"),
                    format!("{S}.affinity.podAntiAffinity.{PREF}[0].podAffinityTerm.mismatchLabelKeys: Forbidden: must not be specified when labelSelector is not set"),
                    format!(r#"{S}.affinity.podAntiAffinity.{PREF}[0].podAffinityTerm.matchLabelKeys[0]: Invalid value: "app": exists in both matchLabelKeys and mismatchLabelKeys"#),
                ],
            ),
        ];
        for (extra, want) in cases {
            let obj = deployment(extra.clone());
            assert_eq!(
                messages(validate("apps", "Deployment", &obj)),
                want,
                "{extra}"
            );
        }
    }

    #[test]
    fn tolerations_and_spread() {
        let t = "spec.template.spec.tolerations";
        let c = "spec.template.spec.topologySpreadConstraints";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({"tolerations": [
                    {"operator": "Exists"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}],
                  "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
                     "labelSelector": {"matchLabels": {"app": "a"}}, "matchLabelKeys": ["pod-template-hash"],
                     "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore"},
                    {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]}),
                vec![],
            ),
            (
                json!({"tolerations": [
                    {"key": "k", "operator": "Exists", "value": "v"},
                    {"operator": "Equal", "value": "v"},
                    {"key": "k", "value": "v", "effect": "NoSchedule", "tolerationSeconds": 10},
                    {"key": "k", "operator": "Like"},
                    {"key": "k", "operator": "Exists", "effect": "Sometimes"},
                    {"key": "bad key", "value": "-v-"}]}),
                vec![
                    format!(r#"{t}[0].operator: Invalid value: "v": value must be empty when `operator` is 'Exists'"#),
                    format!(r#"{t}[1].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, which means "match all values and all keys""#),
                    format!(r#"{t}[2].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#),
                    format!(r#"{t}[3].operator: Unsupported value: "Like": supported values: "Equal", "Exists""#),
                    format!(r#"{t}[4].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#),
                    format!(r#"{t}[5].key: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#),
                    format!(r#"{t}[5].operator: Invalid value: "-v-": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#),
                ],
            ),
            (
                json!({"topologySpreadConstraints": [{"whenUnsatisfiable": "Never"}]}),
                vec![
                    format!("{c}[0].maxSkew: Invalid value: 0: must be greater than zero"),
                    format!("{c}[0].topologyKey: Required value: can not be empty"),
                    format!(r#"{c}[0].whenUnsatisfiable: Unsupported value: "Never": supported values: "DoNotSchedule", "ScheduleAnyway""#),
                ],
            ),
            (
                json!({"topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 0},
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "nodeAffinityPolicy": "Always"},
                    {"maxSkew": 1, "topologyKey": "host", "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["app"]},
                    {"maxSkew": 1, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["app"],
                     "labelSelector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In"}]}}]}),
                vec![
                    format!(r#"{c}[0].{{topologyKey, whenUnsatisfiable}}: Duplicate value: "{{zone, ScheduleAnyway}}""#),
                    format!("{c}[0].minDomains: Invalid value: 0: must be greater than zero"),
                    format!("{c}[0].minDomains: Invalid value: 0: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway"),
                    format!(r#"{c}[1].nodeAffinityPolicy: Unsupported value: "Always": supported values: "Honor", "Ignore""#),
                    format!("{c}[2].matchLabelKeys: Forbidden: must not be specified when labelSelector is not set"),
                    format!(r#"{c}[3].matchLabelKeys[0]: Invalid value: "app": exists in both matchLabelKeys and labelSelector"#),
                    format!("{c}[3].labelSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
                ],
            ),
        ];
        for (extra, want) in cases {
            let obj = deployment(extra.clone());
            assert_eq!(
                messages(validate("apps", "Deployment", &obj)),
                want,
                "{extra}"
            );
        }
    }
}
