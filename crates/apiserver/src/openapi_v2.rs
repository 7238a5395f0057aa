//! `/openapi/v2`: the Swagger 2.0 document of every served resource. kubectl
//! asks for it as protobuf (gnostic's `openapi.v2.Document`) when the v3
//! documents cannot answer, e.g. to validate the items of a `List`; other
//! clients get JSON. Encoded by hand from the JSON document: the document's
//! info and definitions (paths are left out: clients read schemas, by
//! their `x-kubernetes-group-version-kind`).

use serde_json::Value;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(buf, field, 2);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        bytes(buf, field, s.as_bytes());
    }
}

fn message(buf: &mut Vec<u8>, field: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    bytes(buf, field, &inner);
}

fn boolean(buf: &mut Vec<u8>, field: u32, b: bool) {
    if b {
        key(buf, field, 0);
        varint(buf, 1);
    }
}

fn int64(buf: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        key(buf, field, 0);
        varint(buf, v as u64);
    }
}

fn double(buf: &mut Vec<u8>, field: u32, v: f64) {
    key(buf, field, 1);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// An `Any` holding a value as YAML (JSON is YAML), as gnostic keeps
/// defaults, enums and vendor extensions.
fn any(buf: &mut Vec<u8>, field: u32, v: &Value) {
    message(buf, field, |m| string(m, 2, &v.to_string()));
}

fn named_any(buf: &mut Vec<u8>, field: u32, name: &str, v: &Value) {
    message(buf, field, |m| {
        string(m, 1, name);
        any(m, 2, v);
    });
}

/// openapi.v2.Schema from a JSON schema.
fn schema(buf: &mut Vec<u8>, s: &Value) {
    let Some(o) = s.as_object() else { return };
    let str_of = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
    string(buf, 1, str_of("$ref"));
    string(buf, 2, str_of("format"));
    string(buf, 3, str_of("title"));
    string(buf, 4, str_of("description"));
    if let Some(d) = o.get("default") {
        any(buf, 5, d);
    }
    if let Some(v) = o.get("multipleOf").and_then(Value::as_f64) {
        double(buf, 6, v);
    }
    if let Some(v) = o.get("maximum").and_then(Value::as_f64) {
        double(buf, 7, v);
    }
    boolean(
        buf,
        8,
        o.get("exclusiveMaximum")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    if let Some(v) = o.get("minimum").and_then(Value::as_f64) {
        double(buf, 9, v);
    }
    boolean(
        buf,
        10,
        o.get("exclusiveMinimum")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    for (k, field) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        int64(buf, field, o.get(k).and_then(Value::as_i64).unwrap_or(0));
    }
    string(buf, 13, str_of("pattern"));
    boolean(
        buf,
        16,
        o.get("uniqueItems")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    for r in o
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            bytes(buf, 19, r.as_bytes());
        }
    }
    for e in o
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        any(buf, 20, e);
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => message(buf, 21, |m| {
            key(m, 2, 0);
            varint(m, u64::from(*b));
        }),
        Some(ap @ Value::Object(_)) => message(buf, 21, |m| message(m, 1, |s| schema(s, ap))),
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => message(buf, 22, |m| bytes(m, 1, t.as_bytes())),
        Some(Value::Array(ts)) => message(buf, 22, |m| {
            for t in ts.iter().filter_map(Value::as_str) {
                bytes(m, 1, t.as_bytes());
            }
        }),
        _ => {}
    }
    match o.get("items") {
        Some(items @ Value::Object(_)) => message(buf, 23, |m| message(m, 1, |s| schema(s, items))),
        Some(Value::Array(all)) => message(buf, 23, |m| {
            for i in all {
                message(m, 1, |s| schema(s, i));
            }
        }),
        _ => {}
    }
    for a in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message(buf, 24, |m| schema(m, a));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        message(buf, 25, |m| {
            for (name, p) in props {
                message(m, 1, |n| {
                    string(n, 1, name);
                    message(n, 2, |s| schema(s, p));
                });
            }
        });
    }
    boolean(
        buf,
        27,
        o.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
    );
    for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
        named_any(buf, 31, k, v);
    }
}

/// The protobuf form of a Swagger 2.0 JSON document.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    string(&mut buf, 1, doc["swagger"].as_str().unwrap_or("2.0"));
    message(&mut buf, 2, |m| {
        string(m, 1, doc["info"]["title"].as_str().unwrap_or(""));
        string(m, 2, doc["info"]["version"].as_str().unwrap_or(""));
    });
    if let Some(defs) = doc["definitions"].as_object() {
        message(&mut buf, 9, |m| {
            for (name, s) in defs {
                message(m, 1, |n| {
                    string(n, 1, name);
                    message(n, 2, |sm| schema(sm, s));
                });
            }
        });
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal reader of what `encode` writes: (field, wire, payload).
    fn fields(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        fn read_varint(b: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return v;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let k = read_varint(&mut b);
            let (field, wire) = ((k >> 3) as u32, (k & 7) as u8);
            match wire {
                0 => {
                    let v = read_varint(&mut b);
                    out.push((field, v.to_le_bytes().to_vec()));
                }
                1 => {
                    out.push((field, b[..8].to_vec()));
                    b = &b[8..];
                }
                2 => {
                    let n = read_varint(&mut b) as usize;
                    out.push((field, b[..n].to_vec()));
                    b = &b[n..];
                }
                _ => panic!("wire type {wire}"),
            }
        }
        out
    }

    #[test]
    fn documents_encode_definitions_with_extensions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "definitions": {
                "io.k8s.api.core.v1.ConfigMap": {
                    "type": "object",
                    "required": ["metadata"],
                    "properties": {
                        "data": {"type": "object", "additionalProperties": {"type": "string"}},
                        "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
                    },
                    "x-kubernetes-group-version-kind": [{"group": "", "kind": "ConfigMap", "version": "v1"}]
                }
            }
        });
        let top = fields(&encode(&doc));
        assert_eq!(top[0], (1, b"2.0".to_vec()));
        let info = fields(&top[1].1);
        assert_eq!(
            info,
            vec![(1, b"Kubernetes".to_vec()), (2, b"v1.33.0".to_vec())]
        );
        assert_eq!(top[2].0, 9);
        let named = fields(&fields(&top[2].1)[0].1);
        assert_eq!(named[0], (1, b"io.k8s.api.core.v1.ConfigMap".to_vec()));
        let schema = fields(&named[1].1);
        let by = |f: u32| {
            schema
                .iter()
                .filter(|(n, _)| *n == f)
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(by(19), vec![b"metadata".to_vec()]);
        assert_eq!(fields(&by(22)[0]), vec![(1, b"object".to_vec())]);
        let props = fields(&by(25)[0]);
        assert_eq!(props.len(), 2);
        let ext = fields(&by(31)[0]);
        assert_eq!(ext[0], (1, b"x-kubernetes-group-version-kind".to_vec()));
        let yaml = fields(&ext[1].1);
        assert_eq!(yaml[0].0, 2);
        let value: Value = serde_json::from_slice(&yaml[0].1).unwrap();
        assert_eq!(value[0]["kind"], "ConfigMap");
    }
}
