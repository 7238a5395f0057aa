//! ConfigMaps and Secrets: keys, total size, the keys each Secret type
//! needs; `immutable: true` and a Secret's type on update.

use base64::Engine;
use serde_json::Value;

use super::same;
use crate::validation::{forbidden, invalid, regex_error, required, too_long, Cause};

/// Kubernetes' limit on a ConfigMap's or Secret's data (1 MiB).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// IsConfigMapKey.
pub fn config_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if key.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errs.push("must not be '.'".into()),
        ".." => errs.push("must not be '..'".into()),
        k if k.starts_with("..") => errs.push("must not start with '..'".into()),
        _ => {}
    }
    errs
}

fn entries(obj: &Value, field: &str) -> Vec<(String, Value)> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn decoded(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|_| s.as_bytes().to_vec())
}

pub(crate) fn config_map(obj: &Value, out: &mut Vec<Cause>) {
    let binary = entries(obj, "binaryData");
    let mut total = 0;
    for (key, value) in entries(obj, "data") {
        let path = format!("data[{key}]");
        for e in config_key_errors(&key) {
            out.push(invalid(&path, &Value::from(key.as_str()), &e));
        }
        if binary.iter().any(|(k, _)| *k == key) {
            out.push(invalid(
                &path,
                &Value::from(key.as_str()),
                "duplicate of key present in binaryData",
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    for (key, value) in &binary {
        for e in config_key_errors(key) {
            out.push(invalid(
                &format!("binaryData[{key}]"),
                &Value::from(key.as_str()),
                &e,
            ));
        }
        total += decoded(value).len();
    }
    if total > MAX_DATA_SIZE {
        out.push(too_long("[]", MAX_DATA_SIZE));
    }
}

pub(crate) fn secret(obj: &Value, out: &mut Vec<Cause>) {
    let data = entries(obj, "data");
    let string_data = entries(obj, "stringData");
    let mut total = 0;
    for (key, value) in &data {
        for e in config_key_errors(key) {
            out.push(invalid(
                &format!("data[{key}]"),
                &Value::from(key.as_str()),
                &e,
            ));
        }
        total += decoded(value).len();
    }
    for (key, value) in &string_data {
        for e in config_key_errors(key) {
            out.push(invalid(
                &format!("stringData[{key}]"),
                &Value::from(key.as_str()),
                &e,
            ));
        }
        total += value.as_str().map_or(0, str::len);
    }
    if total > MAX_DATA_SIZE {
        out.push(too_long("data", MAX_DATA_SIZE));
    }
    let value = |key: &str| -> Option<Vec<u8>> {
        string_data
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str().unwrap_or("").as_bytes().to_vec())
            .or_else(|| data.iter().find(|(k, _)| k == key).map(|(_, v)| decoded(v)))
    };
    let key_path = |key: &str| format!("data[{key}]");
    let json_config = |key: &str, out: &mut Vec<Cause>| match value(key) {
        None => out.push(required(&key_path(key), "")),
        Some(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes) {
                out.push(invalid(
                    &key_path(key),
                    &Value::from("<secret contents redacted>"),
                    &e.to_string(),
                ));
            }
        }
    };
    match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let name = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                out.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_config(".dockercfg", out),
        "kubernetes.io/dockerconfigjson" => json_config(".dockerconfigjson", out),
        "kubernetes.io/basic-auth"
            if value("username").is_none() && value("password").is_none() =>
        {
            out.push(required(&key_path("username"), ""));
            out.push(required(&key_path("password"), ""));
        }
        "kubernetes.io/ssh-auth" if value("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
            out.push(required(&key_path("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if value(key).is_none() {
                    out.push(required(&key_path(key), ""));
                }
            }
        }
        _ => {}
    }
}

/// Data (and `immutable` itself) may not change once `immutable` is true.
fn immutable_data(new: &Value, old: &Value, fields: &[&str], out: &mut Vec<Cause>) {
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    if new.get("immutable") != Some(&Value::Bool(true)) {
        out.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        if !same(new.get(*f), old.get(*f)) {
            out.push(forbidden(f, "field is immutable when `immutable` is set"));
        }
    }
}

pub(crate) fn config_map_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    immutable_data(new, old, &["data", "binaryData"], out);
}

pub(crate) fn secret_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    super::immutable(new, old, "/type", "type", out);
    immutable_data(new, old, &["data"], out);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, messages, update, want};
    use serde_json::{json, Value};

    #[test]
    fn config_maps() {
        let big = "x".repeat(super::MAX_DATA_SIZE + 1);
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"data": {"key.name": "v", "KEY_NAME": "v", "key-name": "v"}}),
                vec![],
            ),
            (
                json!({"data": {"bad key": "v", "..x": "v"}}),
                vec!["data[..x] Invalid", "data[bad key] Invalid"],
            ),
            (
                json!({"data": {"a": "v"}, "binaryData": {"a": "dg=="}}),
                vec!["data[a] Invalid"],
            ),
            (json!({"data": {"a": big}}), vec!["[] TooLong"]),
        ];
        for (obj, w) in cases {
            assert_eq!(create("", "ConfigMap", &obj), want(&w), "{obj}");
        }
        assert_eq!(
            messages(super::super::validate(
                "",
                "ConfigMap",
                &json!({"data": {"a b": "v"}})
            )),
            vec![
                r#"data[a b]: Invalid value: "a b": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#
            ]
        );
    }

    #[test]
    fn secrets() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"type": "Opaque", "data": {"a": "dg=="}}), vec![]),
            (
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "dg=="}}),
                vec!["data[tls.key] Required"],
            ),
            (
                json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "c", "tls.key": "k"}}),
                vec![],
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {}}),
                vec!["data[.dockerconfigjson] Required"],
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
                vec!["data[.dockerconfigjson] Invalid"],
            ),
            (
                json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}}),
                vec![],
            ),
            (
                json!({"type": "kubernetes.io/basic-auth", "data": {}}),
                vec!["data[username] Required", "data[password] Required"],
            ),
            (
                json!({"type": "kubernetes.io/basic-auth", "stringData": {"password": "p"}}),
                vec![],
            ),
            (
                json!({"type": "kubernetes.io/ssh-auth", "data": {}}),
                vec!["data[ssh-privatekey] Required"],
            ),
            (
                json!({"type": "kubernetes.io/service-account-token"}),
                vec!["metadata.annotations[kubernetes.io/service-account.name] Required"],
            ),
            (
                json!({"type": "kubernetes.io/service-account-token", "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}),
                vec![],
            ),
            (
                json!({"data": {"bad/key": "dg=="}}),
                vec!["data[bad/key] Invalid"],
            ),
        ];
        for (obj, w) in cases {
            assert_eq!(create("", "Secret", &obj), want(&w), "{obj}");
        }
    }

    #[test]
    fn updates() {
        let frozen = json!({"immutable": true, "data": {"a": "1"}});
        let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
            (
                "ConfigMap",
                json!({"data": {"a": "2"}}),
                json!({"data": {"a": "1"}}),
                vec![],
            ),
            (
                "ConfigMap",
                json!({"immutable": true, "data": {"a": "1"}}),
                frozen.clone(),
                vec![],
            ),
            (
                "ConfigMap",
                json!({"immutable": true, "data": {"a": "2"}}),
                frozen.clone(),
                vec!["data Forbidden"],
            ),
            (
                "ConfigMap",
                json!({"immutable": false, "data": {"a": "1"}}),
                frozen.clone(),
                vec!["immutable Forbidden"],
            ),
            (
                "Secret",
                json!({"type": "Opaque", "immutable": true, "data": {"a": "2"}}),
                json!({"type": "Opaque", "immutable": true, "data": {"a": "1"}}),
                vec!["data Forbidden"],
            ),
            (
                "Secret",
                json!({"type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}}),
                json!({"type": "Opaque", "data": {"username": "dQ=="}}),
                vec!["type Invalid"],
            ),
        ];
        for (kind, new, old, w) in cases {
            assert_eq!(update("", kind, &new, &old), want(&w), "{kind}: {new}");
        }
    }
}
