//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send (`kubectl create namespace|configmap|
//! deployment|...`), decoded into the JSON objects the server works with.
//!
//! The wire format is `k8s\0` followed by a `runtime.Unknown` envelope
//! (typeMeta, raw); `raw` is the object's own message. Message layouts
//! (field tags and types) come from `messages.json`, derived from the
//! k8s-pb crate's generated code by `scripts/gen-protobuf-messages.py`;
//! JSON field names come from the OpenAPI schemas of the same types, so
//! the two sources stay one fact each. Kubernetes' special types are
//! mapped as their JSON forms are: Time and MicroTime as RFC 3339,
//! IntOrString as a number or a string, Quantity as a string, RawExtension
//! and FieldsV1 as embedded JSON, bytes as base64.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct Field {
    tag: u32,
    name: String,
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    repeated: bool,
    message: Option<String>,
    map: Option<[String; 2]>,
}

type Messages = HashMap<String, Vec<Field>>;

fn messages() -> &'static Messages {
    static M: OnceLock<Messages> = OnceLock::new();
    M.get_or_init(|| {
        serde_json::from_str(include_str!("messages.json")).expect("messages.json is valid")
    })
}

pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == "application/vnd.kubernetes.protobuf"
}

const MAGIC: &[u8] = b"k8s\0";

/// Decodes a protobuf request body into the JSON object it stands for.
pub fn decode_to_json(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf magic")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (tag, v) in fields(unknown)? {
        match (tag, v) {
            (1, Wire::Bytes(tm)) => {
                for (t, v) in fields(tm)? {
                    match (t, v) {
                        (1, Wire::Bytes(b)) => api_version = utf8(b)?,
                        (2, Wire::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let message = message_for(&api_version, &kind)
        .ok_or_else(|| format!("no protobuf message known for {api_version}, Kind={kind}"))?;
    let mut obj = decode_message(raw, &message)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

/// The message name of a kind: `apps/v1, Deployment` →
/// `k8s.io.api.apps.v1.Deployment`.
fn message_for(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let candidates: Vec<String> = match group {
        "" => vec![
            format!("k8s.io.api.core.{version}.{kind}"),
            format!("k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}"),
        ],
        "meta.k8s.io" => vec![format!(
            "k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}"
        )],
        "apiextensions.k8s.io" => {
            vec![format!(
                "k8s.io.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
            )]
        }
        g => {
            let short = g
                .strip_suffix(".k8s.io")
                .unwrap_or(g)
                .split('.')
                .next()
                .unwrap_or(g);
            vec![
                format!("k8s.io.api.{short}.{version}.{kind}"),
                format!("k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}"),
            ]
        }
    };
    candidates.into_iter().find(|c| messages().contains_key(c))
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let tag = (key >> 3) as u32;
        let v = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let b = buf.get(pos..pos + 8).ok_or("truncated fixed64")?;
                pos += 8;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().unwrap()))
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let b = buf
                    .get(pos..pos + len)
                    .ok_or("truncated length-delimited field")?;
                pos += len;
                Wire::Bytes(b)
            }
            5 => {
                let b = buf.get(pos..pos + 4).ok_or("truncated fixed32")?;
                pos += 4;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().unwrap()))
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((tag, v));
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

/// JSON field names of a message, from the OpenAPI schema of its type.
fn json_name(message: &str, snake: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<(String, String), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (message.to_owned(), snake.to_owned());
    if let Some(n) = cache.lock().unwrap().get(&key) {
        return n.clone();
    }
    let norm = |s: &str| s.replace('_', "").to_ascii_lowercase();
    let definition = format!(
        "io.k8s.{}",
        message.strip_prefix("k8s.io.").unwrap_or(message)
    );
    let found = api::openapi::definition(&definition)
        .and_then(|d| d.get("properties").and_then(Value::as_object))
        .and_then(|props| props.keys().find(|k| norm(k) == norm(snake)).cloned());
    let name = found.unwrap_or_else(|| {
        // lowerCamelCase, as the generator's names come from it.
        let mut out = String::new();
        let mut upper = false;
        for c in snake.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    });
    cache.lock().unwrap().insert(key, name.clone());
    name
}

fn scalar(ty: &str, v: &Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, v) {
        ("string", Wire::Bytes(b)) => json!(utf8(b)?),
        ("bytes", Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ("bool", Wire::Varint(x)) => json!(*x != 0),
        ("int32", Wire::Varint(x)) => json!(*x as i64 as i32),
        ("int64", Wire::Varint(x)) => json!(*x as i64),
        ("uint32" | "uint64", Wire::Varint(x)) => json!(*x),
        ("double", Wire::Fixed64(x)) => json!(f64::from_bits(*x)),
        ("float", Wire::Fixed32(x)) => json!(f32::from_bits(*x)),
        (ty, _) => return Err(format!("unexpected wire type for a {ty} field")),
    })
}

fn packed(ty: &str, b: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let w = match ty {
            "double" => {
                let x = b.get(pos..pos + 8).ok_or("truncated packed field")?;
                pos += 8;
                Wire::Fixed64(u64::from_le_bytes(x.try_into().unwrap()))
            }
            "float" => {
                let x = b.get(pos..pos + 4).ok_or("truncated packed field")?;
                pos += 4;
                Wire::Fixed32(u32::from_le_bytes(x.try_into().unwrap()))
            }
            _ => Wire::Varint(varint(b, &mut pos)?),
        };
        out.push(scalar(ty, &w)?);
    }
    Ok(out)
}

fn special(message: &str, buf: &[u8]) -> Result<Option<Value>, String> {
    let f = fields(buf)?;
    let int = |tag: u32| {
        f.iter().find_map(|(t, v)| match v {
            Wire::Varint(x) if *t == tag => Some(*x as i64),
            _ => None,
        })
    };
    let bytes = |tag: u32| {
        f.iter().find_map(|(t, v)| match v {
            Wire::Bytes(b) if *t == tag => Some(*b),
            _ => None,
        })
    };
    Ok(Some(match message {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime"
            if int(1).unwrap_or(0) == 0 && int(2).unwrap_or(0) == 0 =>
        {
            // The zero time: JSON's null.
            Value::Null
        }
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let t =
                chrono::DateTime::from_timestamp(int(1).unwrap_or(0), int(2).unwrap_or(0) as u32)
                    .ok_or("time out of range")?;
            if message.ends_with("MicroTime") {
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            } else {
                json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            if int(1).unwrap_or(0) == 1 {
                json!(bytes(3).map(utf8).transpose()?.unwrap_or_default())
            } else {
                json!(int(2).unwrap_or(0) as i32)
            }
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            json!(bytes(1).map(utf8).transpose()?.unwrap_or_default())
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => match bytes(1) {
            Some(b) if !b.is_empty() => {
                serde_json::from_slice(b).map_err(|e| format!("embedded JSON: {e}"))?
            }
            _ => Value::Null,
        },
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let ns = int(1).unwrap_or(0);
            json!(format!("{}s", ns as f64 / 1e9))
        }
        _ => return Ok(None),
    }))
}

fn decode_message(buf: &[u8], message: &str) -> Result<Value, String> {
    if let Some(v) = special(message, buf)? {
        return Ok(v);
    }
    let layout = messages()
        .get(message)
        .ok_or_else(|| format!("unknown message {message}"))?;
    let mut out = Map::new();
    for (tag, v) in fields(buf)? {
        let Some(f) = layout.iter().find(|f| f.tag == tag) else {
            continue;
        };
        let name = json_name(message, &f.name);
        if let Some([_, value_ty]) = &f.map {
            let Wire::Bytes(entry) = v else {
                return Err(format!("{message}.{name}: bad map entry"));
            };
            let mut key = String::new();
            let mut value = Value::Null;
            for (t, ev) in fields(entry)? {
                match t {
                    1 => {
                        key = match ev {
                            Wire::Bytes(b) => utf8(b)?,
                            _ => String::new(),
                        }
                    }
                    2 => {
                        value = match (value_ty.as_str(), &f.message, ev) {
                            ("message", Some(m), Wire::Bytes(b)) => decode_message(b, m)?,
                            (ty, _, ev) => scalar(ty, &ev)?,
                        }
                    }
                    _ => {}
                }
            }
            let slot = out.entry(name).or_insert_with(|| json!({}));
            if let Value::Object(m) = slot {
                m.insert(key, value);
            }
            continue;
        }
        let ty = f.ty.as_deref().unwrap_or("");
        let values = match (ty, &f.message, v) {
            ("message", Some(m), Wire::Bytes(b)) => vec![decode_message(b, m)?],
            (ty, _, Wire::Bytes(b)) if f.repeated && !matches!(ty, "string" | "bytes") => {
                packed(ty, b)?
            }
            (ty, _, v) => vec![scalar(ty, &v)?],
        };
        if f.repeated {
            let slot = out.entry(name).or_insert_with(|| json!([]));
            if let Value::Array(a) = slot {
                a.extend(values);
            }
        } else if let Some(v) = values.into_iter().last() {
            // Go's protobuf marshalling writes unset (non-pointer) strings
            // and times as empty values, which its JSON leaves out.
            if v.is_null() || v == Value::String(String::new()) {
                continue;
            }
            out.insert(name, v);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
