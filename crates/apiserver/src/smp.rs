//! Strategic merge patch, as kubectl sends it: a merge patch where lists of
//! objects with a merge key (containers by `name`, ports by
//! `containerPort`, ...) merge element by element, and the directives
//! `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<list>`
//! and `$deleteFromPrimitiveList/<list>` say what merging cannot.
//!
//! The merge keys come from a table of the Kubernetes API's
//! `patchMergeKey` tags, looked up by the list's field name (the names are
//! unambiguous across the built-in types).

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// Replace the whole list (the default, atomic lists).
    Replace,
    /// Merge objects by this key.
    MergeKey(&'static str),
    /// A set of primitives: union.
    MergePrimitives,
}

fn list_strategy(field: &str) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "hostAliasesByName"
        | "secrets"
        | "readinessGates"
        | "schedulingGates" => match field {
            "readinessGates" => MergeKey("conditionType"),
            _ => MergeKey("name"),
        },
        "volumeMounts" => MergeKey("mountPath"),
        "volumeDevices" => MergeKey("devicePath"),
        "conditions" => MergeKey("type"),
        "ownerReferences" => MergeKey("uid"),
        "hostAliases" => MergeKey("ip"),
        "topologySpreadConstraints" => MergeKey("topologyKey"),
        "finalizers" => MergePrimitives,
        _ => Replace,
    }
}

/// How the list `field` holding `items` merges (ports depend on which kind
/// of port they are).
pub(crate) fn list_strategy_for(field: &str, items: &[Value]) -> ListStrategy {
    match field {
        "ports" => ListStrategy::MergeKey(ports_key(items)),
        _ => list_strategy(field),
    }
}

/// Port lists merge by containerPort (containers) or port (services).
fn ports_key(items: &[Value]) -> &'static str {
    if items.iter().any(|p| p.get("containerPort").is_some()) {
        "containerPort"
    } else {
        "port"
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmpError {
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// Applies a strategic merge patch to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, SmpError> {
    match (original, patch) {
        (_, Value::Object(p)) => {
            let base = match original {
                Value::Object(o) => o.clone(),
                _ => Map::new(),
            };
            Ok(Value::Object(merge_map(base, p)?))
        }
        (_, other) => Ok(other.clone()),
    }
}

fn merge_map(
    mut base: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, SmpError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut out = patch.clone();
            out.remove("$patch");
            return Ok(strip_directives(out));
        }
        Some("delete") => return Ok(Map::new()),
        Some("merge") | None => {}
        Some(other) => return Err(SmpError::Invalid(format!("unknown patch type: {other}"))),
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| SmpError::Invalid("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        base.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, pv) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove: Vec<&Value> = pv
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if let Some(Value::Array(items)) = base.get_mut(list) {
                items.retain(|v| !remove.contains(&v));
            }
            continue;
        }
        if pv.is_null() {
            base.remove(key);
            continue;
        }
        let merged = match (base.remove(key), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p)?),
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p)?),
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(key, o, p)?),
            (None, Value::Array(p)) => Value::Array(merge_list(key, Vec::new(), p)?),
            (_, other) => other.clone(),
        };
        base.insert(key.clone(), merged);
    }
    // $setElementOrder fixes the order of merged lists.
    for (key, order) in patch {
        if let Some(list) = key.strip_prefix("$setElementOrder/") {
            if let (Some(Value::Array(items)), Some(order)) = (base.get_mut(list), order.as_array())
            {
                reorder(list, items, order);
            }
        }
    }
    Ok(base)
}

fn strip_directives(mut m: Map<String, Value>) -> Map<String, Value> {
    m.retain(|k, _| !k.starts_with('$'));
    m
}

fn merge_list(field: &str, base: Vec<Value>, patch: &[Value]) -> Result<Vec<Value>, SmpError> {
    // A `{"$patch": "replace"}` element replaces the whole list.
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|v| v.get("$patch").is_none())
            .cloned()
            .collect());
    }
    let all: Vec<Value> = base.iter().chain(patch).cloned().collect();
    let strategy = list_strategy_for(field, &all);
    match strategy {
        ListStrategy::Replace => Ok(patch.to_vec()),
        ListStrategy::MergePrimitives => {
            let mut out = base;
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::MergeKey(mk) => {
            if patch.iter().any(|v| !v.is_object()) {
                // Not a list of objects after all: treat as atomic.
                return Ok(patch.to_vec());
            }
            let mut out = base;
            for p in patch {
                let pm = p.as_object().expect("checked above");
                let key = pm.get(mk).cloned();
                let directive = pm.get("$patch").and_then(Value::as_str);
                let pos = key
                    .as_ref()
                    .and_then(|k| out.iter().position(|o| o.get(mk) == Some(k)));
                match (directive, pos) {
                    (Some("delete"), Some(i)) => {
                        out.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        let o = match out[i].take() {
                            Value::Object(o) => o,
                            _ => Map::new(),
                        };
                        out[i] = Value::Object(merge_map(o, pm)?);
                    }
                    (_, None) => out.push(Value::Object(merge_map(Map::new(), pm)?)),
                }
            }
            Ok(out)
        }
    }
}

fn reorder(field: &str, items: &mut [Value], order: &[Value]) {
    let key = match field {
        "ports" => ports_key(items),
        _ => match list_strategy(field) {
            ListStrategy::MergeKey(k) => k,
            _ => {
                // Primitive list: order by position in `order`.
                let pos = |v: &Value| order.iter().position(|o| o == v).unwrap_or(usize::MAX);
                items.sort_by_key(pos);
                return;
            }
        },
    };
    let pos = |v: &Value| {
        order
            .iter()
            .position(|o| o.get(key).is_some() && o.get(key) == v.get(key))
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(pos);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cases() {
        let cases = vec![
            (
                "plain merge and null deletes",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"b": null, "c": "3"}}}),
                json!({"metadata": {"labels": {"a": "1", "c": "3"}}}),
            ),
            (
                "containers merge by name",
                json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "y:2"}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}}),
            ),
            (
                "delete an element by merge key",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
                json!({"spec": {"containers": [{"name": "b"}]}}),
            ),
            (
                "replace a map",
                json!({"spec": {"selector": {"a": "1", "b": "2"}}}),
                json!({"spec": {"selector": {"$patch": "replace", "c": "3"}}}),
                json!({"spec": {"selector": {"c": "3"}}}),
            ),
            (
                "atomic lists are replaced",
                json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
            ),
            (
                "ports by containerPort",
                json!({"ports": [{"containerPort": 80, "name": "http"}]}),
                json!({"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}]}),
                json!({"ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}]}),
            ),
            (
                "setElementOrder",
                json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}),
                json!({"$setElementOrder/env": [{"name": "B"}, {"name": "A"}], "env": [{"name": "A", "value": "9"}]}),
                json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}]}),
            ),
            (
                "retainKeys drops the other union members",
                json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}),
                json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}),
                json!({"strategy": {"type": "Recreate"}}),
            ),
            (
                "finalizers union and deleteFromPrimitiveList",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
            ),
            (
                "list replace directive",
                json!({"volumes": [{"name": "a"}, {"name": "b"}]}),
                json!({"volumes": [{"name": "c"}, {"$patch": "replace"}]}),
                json!({"volumes": [{"name": "c"}]}),
            ),
        ];
        for (name, original, patch, want) in cases {
            assert_eq!(apply(&original, &patch).unwrap(), want, "{name}");
        }
    }
}
