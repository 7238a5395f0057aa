//! OpenAPI v3 (structural) schema validation and pruning, as the API
//! server applies a CRD's `openAPIV3Schema` to custom resources:
//! type, required, enum, bounds, lengths, patterns, list and map rules,
//! `x-kubernetes-int-or-string`, `x-kubernetes-preserve-unknown-fields`;
//! then unknown fields are pruned (and reported, for
//! `fieldValidation=Strict`).

use serde_json::{Map, Value};

use crate::validation::quote;

/// One validation failure, in Kubernetes' field.Error terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Validates `value` at `path` against `schema`, collecting violations.
pub fn validate(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let invalid = |out: &mut Vec<Violation>, msg: String| {
        out.push(Violation {
            reason: "FieldValueInvalid",
            field: path.to_owned(),
            message: format!("Invalid value: {}: {msg}", quote(value)),
        })
    };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            let want = schema["type"].as_str().unwrap_or("");
            invalid(
                out,
                format!("{path} in body must be of type {want}: \"null\""),
            );
        }
        return;
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = json_type(value);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && (got == "integer" || got == "string"));
        if !ok {
            invalid(
                out,
                format!("{path} in body must be of type {want}: {:?}", got),
            );
            return;
        }
    } else if int_or_string && !matches!(json_type(value), "integer" | "string") {
        invalid(
            out,
            format!(
                "{path} in body must be of type integer,string: {:?}",
                json_type(value)
            ),
        );
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(quote).collect();
            out.push(Violation {
                reason: "FieldValueNotSupported",
                field: path.to_owned(),
                message: format!(
                    "Unsupported value: {}: supported values: {}",
                    quote(value),
                    list.join(", ")
                ),
            });
        }
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let excl_min = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let excl_max = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min || (excl_min && x == min) {
                    let rel = if excl_min {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    invalid(
                        out,
                        format!("{path} in body should be {rel} {}", fmt_num(min)),
                    );
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max || (excl_max && x == max) {
                    let rel = if excl_max {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    invalid(
                        out,
                        format!("{path} in body should be {rel} {}", fmt_num(max)),
                    );
                }
            }
            if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64) {
                if m > 0.0 && (x / m).fract() != 0.0 {
                    invalid(
                        out,
                        format!("{path} in body should be a multiple of {}", fmt_num(m)),
                    );
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if len > max {
                    out.push(Violation {
                        reason: "FieldValueTooLong",
                        field: path.to_owned(),
                        message: format!("Too long: may not be more than {max} bytes"),
                    });
                }
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if len < min {
                    invalid(
                        out,
                        format!("{path} in body should be at least {min} chars long"),
                    );
                }
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        invalid(out, format!("{path} in body should match '{p}'"))
                    }
                    _ => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    out.push(Violation {
                        reason: "FieldValueTooMany",
                        field: path.to_owned(),
                        message: format!(
                            "Too many: {}: must have at most {max} items",
                            items.len()
                        ),
                    });
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    invalid(
                        out,
                        format!("{path} in body should have at least {min} items"),
                    );
                }
            }
            if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) || is_set(schema) {
                for (i, item) in items.iter().enumerate() {
                    if items[..i].contains(item) {
                        out.push(Violation {
                            reason: "FieldValueDuplicate",
                            field: format!("{path}[{i}]"),
                            message: format!("Duplicate value: {}", quote(item)),
                        });
                    }
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(map) => {
            for req in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = req.as_str() {
                    if !map.contains_key(name) {
                        out.push(Violation {
                            reason: "FieldValueRequired",
                            field: join(path, name),
                            message: "Required value".into(),
                        });
                    }
                }
            }
            if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
                if map.len() as u64 > max {
                    out.push(Violation {
                        reason: "FieldValueTooMany",
                        field: path.to_owned(),
                        message: format!("Too many: {}: must have at most {max} items", map.len()),
                    });
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, v) in map {
                if let Some(s) = props.and_then(|p| p.get(k)) {
                    validate(s, v, &join(path, k), out);
                } else if let Some(s) = additional {
                    validate(s, v, &join(path, k), out);
                }
            }
        }
        _ => {}
    }
    for combinator in ["allOf"] {
        for sub in schema
            .get(combinator)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            validate(sub, value, path, out);
        }
    }
    for (combinator, need_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(subs) = schema.get(combinator).and_then(Value::as_array) {
            let passing = subs
                .iter()
                .filter(|s| {
                    let mut v = Vec::new();
                    validate(s, value, path, &mut v);
                    v.is_empty()
                })
                .count();
            if passing == 0 || (need_one && passing > 1) {
                let what = if need_one { "oneOf" } else { "anyOf" };
                invalid(
                    out,
                    format!("{path} in body must validate {what} the schemas"),
                );
            }
        }
    }
    if let Some(not) = schema.get("not") {
        let mut v = Vec::new();
        validate(not, value, path, &mut v);
        if v.is_empty() {
            invalid(
                out,
                format!("{path} in body must not validate the schema (not)"),
            );
        }
    }
}

fn is_set(schema: &Value) -> bool {
    schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set")
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// Removes fields the schema does not know, returning their paths. At the
/// root of an object, `apiVersion`, `kind` and `metadata` are always kept.
pub fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    if schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        && schema.get("properties").is_none()
        && schema.get("additionalProperties").is_none()
        && schema.get("items").is_none()
    {
        return;
    }
    let embedded = schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    match value {
        Value::Object(map) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let keep_meta =
                    (root || embedded) && matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
                let child_path = join(path, &k);
                if let Some(s) = props.and_then(|p| p.get(&k)) {
                    if let Some(v) = map.get_mut(&k) {
                        prune(s, v, &child_path, false, pruned);
                    }
                } else if let Some(s) = additional.filter(|a| a.is_object()) {
                    if let Some(v) = map.get_mut(&k) {
                        prune(s, v, &child_path, false, pruned);
                    }
                } else if additional == Some(&Value::Bool(true)) || preserve || keep_meta {
                } else {
                    map.remove(&k);
                    pruned.push(child_path);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(s, item, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// Applies `default`s from the schema to absent fields (structural
/// defaulting, as CRDs get).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if !map.contains_key(k) {
                        if let Some(d) = s.get("default") {
                            map.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(k) {
                        apply_defaults(s, v);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    apply_defaults(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|i| apply_defaults(s, i));
            }
        }
        _ => {}
    }
}

/// An empty object, for callers that need a schema that accepts anything.
pub fn any_object() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), "object".into());
    m.insert("x-kubernetes-preserve-unknown-fields".into(), true.into());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "string", "enum": ["small", "large"]},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                        "port": {"x-kubernetes-int-or-string": true},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    #[test]
    fn validation_cases() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"spec": {"size": "small"}}), vec![]),
            (json!({"spec": {}}), vec!["spec.size: Required value"]),
            (
                json!({"spec": {"size": "huge"}}),
                vec![r#"spec.size: Unsupported value: "huge": supported values: "small", "large""#],
            ),
            (
                json!({"spec": {"size": "small", "replicas": "three"}}),
                vec![r#"spec.replicas: Invalid value: "three": spec.replicas in body must be of type integer: "string""#],
            ),
            (
                json!({"spec": {"size": "small", "replicas": 11}}),
                vec!["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"],
            ),
            (
                json!({"spec": {"size": "small", "name": "abcdef"}}),
                vec!["spec.name: Too long: may not be more than 5 bytes"],
            ),
            (
                json!({"spec": {"size": "small", "name": "AB"}}),
                vec![r#"spec.name: Invalid value: "AB": spec.name in body should match '^[a-z]+$'"#],
            ),
            (json!({"spec": {"size": "small", "port": 80}}), vec![]),
            (json!({"spec": {"size": "small", "port": "http"}}), vec![]),
            (
                json!({"spec": {"size": "small", "port": true}}),
                vec![r#"spec.port: Invalid value: true: spec.port in body must be of type integer,string: "boolean""#],
            ),
            (
                json!({"spec": {"size": "small", "tags": ["a", "a"]}}),
                vec![r#"spec.tags[1]: Duplicate value: "a""#],
            ),
            (
                json!({"spec": {"size": "small", "labels": {"a": 1}}}),
                vec![r#"spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: "integer""#],
            ),
        ];
        for (obj, want) in cases {
            let mut out = Vec::new();
            validate(&widget_schema(), &obj, "", &mut out);
            let got: Vec<String> = out
                .iter()
                .map(|v| format!("{}: {}", v.field, v.message))
                .collect();
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn pruning_and_defaults() {
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": "small", "bogus": 1, "free": {"anything": {"goes": true}}, "labels": {"a": "b"}},
            "extra": "x"
        });
        let mut pruned = Vec::new();
        prune(&widget_schema(), &mut obj, "", true, &mut pruned);
        assert_eq!(pruned, vec!["extra", "spec.bogus"]);
        assert_eq!(obj["spec"]["free"]["anything"]["goes"], true);
        assert_eq!(obj["metadata"]["name"], "w");
        apply_defaults(&widget_schema(), &mut obj);
        assert_eq!(obj["spec"]["replicas"], 1);
    }
}
