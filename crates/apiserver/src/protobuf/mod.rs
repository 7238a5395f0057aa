//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send (`kubectl create namespace|configmap|
//! secret|deployment|service|job|role|token|...`, `kubectl autoscale`,
//! `kubectl auth can-i`, `kubectl certificate approve`), decoded into the JSON
//! objects the server works with.
//!
//! The wire format is `k8s\0` followed by a `runtime.Unknown` envelope
//! {typeMeta{apiVersion=1, kind=2}=1, raw=2, contentEncoding=3,
//! contentType=4}; `raw` is the object's own message.
//!
//! Message layouts and JSON facts come from `messages.json`, derived by
//! `generate.py` from Kubernetes' own sources (the generated.proto files and
//! the Go types' struct tags; see that script). The result is what Go's
//! `json.Marshal` makes of the object the server would have decoded:
//! - JSON names from the Go tags (`hostIP`, `$ref`,
//!   `x-kubernetes-preserve-unknown-fields`), inlined structs merged into
//!   their parent (Probe's handler, Volume's source, the
//!   LocalObjectReference of a ConfigMapKeySelector);
//! - Go writes every non-pointer field, set or not; a zero value of a
//!   non-pointer `omitempty` field is left out (as Go's JSON would), while
//!   pointer fields keep their zero values (`replicas: 0`,
//!   `storageClassName: ""`);
//! - Kubernetes' own JSON forms: Time (RFC 3339, seconds) and MicroTime (6
//!   fractional digits), Duration (Go's `1h2m3s`), IntOrString (a number or
//!   a string), Quantity (a string), RawExtension, FieldsV1 and
//!   apiextensions' JSON (embedded JSON), JSONSchemaPropsOr{Array,Bool,
//!   StringArray}, named lists such as ExtraValue (the bare list), bytes
//!   (base64).
//!
//! One departure from Go: values Go writes as JSON `null` (a zero Time, such
//! as a template's `creationTimestamp`) are left out.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

const REPEATED: u8 = 1;
const OMITEMPTY: u8 = 2;
const POINTER: u8 = 4;

/// One field of a message: tag, JSON name ("" = inlined), flags, kind (a
/// scalar type, a message name, or `map:` and the value's kind).
#[derive(Deserialize)]
struct Field(u32, String, u8, String);

#[derive(Deserialize)]
struct Table {
    /// "group/version" (core: "v1") → proto package.
    groups: HashMap<String, String>,
    /// Messages whose JSON is the bare list of their `items`.
    lists: HashSet<String>,
    messages: HashMap<String, Vec<Field>>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str(include_str!("messages.json")).expect("messages.json is valid")
    })
}

/// Whether a Content-Type is Kubernetes' protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/vnd.kubernetes.protobuf")
}

const MAGIC: &[u8] = b"k8s\0";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Decodes a protobuf request body into the JSON object it stands for, with
/// `apiVersion` and `kind` from the envelope.
pub fn decode_to_json(body: &[u8]) -> Result<Value, String> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf magic")?;
    let (mut api_version, mut kind) = (String::new(), String::new());
    let (mut raw, mut encoding, mut content_type): (&[u8], String, String) =
        (&[], String::new(), String::new());
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
            (3, Wire::Bytes(b)) => encoding = utf8(b)?,
            (4, Wire::Bytes(b)) => content_type = utf8(b)?,
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(format!("unsupported content encoding {encoding:?}"));
    }
    let mut obj = if content_type.is_empty() || is_protobuf(&content_type) {
        let message = message_for(&api_version, &kind)
            .ok_or_else(|| format!("no protobuf message known for {api_version}, Kind={kind}"))?;
        decode_message(raw, message)?
    } else if content_type.split(';').next().unwrap_or("").trim() == "application/json" {
        serde_json::from_slice(raw).map_err(|e| format!("embedded JSON: {e}"))?
    } else {
        return Err(format!("unsupported content type {content_type:?}"));
    };
    match &mut obj {
        Value::Object(m) => {
            m.insert("apiVersion".into(), json!(api_version));
            m.insert("kind".into(), json!(kind));
        }
        _ => return Err(format!("{api_version}, Kind={kind} is not an object")),
    }
    Ok(obj)
}

/// The message of a kind: `apps/v1, Deployment` → `k8s.io.api.apps.v1.Deployment`.
/// Options kinds (DeleteOptions, ...) are registered in every group version.
fn message_for(api_version: &str, kind: &str) -> Option<&'static str> {
    let t = table();
    let package = t.groups.get(api_version).map(String::as_str);
    [package, Some(META)]
        .into_iter()
        .flatten()
        .find_map(|p| t.messages.get_key_value(&format!("{p}.{kind}")))
        .map(|(k, _)| k.as_str())
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
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let b = buf
        .get(*pos..pos.saturating_add(n))
        .ok_or("truncated field")?;
    *pos += n;
    Ok(b)
}

/// The fields of one message, in wire order.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field tag out of range")?;
        let v = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(buf, &mut pos, 8)?.try_into().unwrap(),
            )),
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                Wire::Bytes(take(buf, &mut pos, len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(buf, &mut pos, 4)?.try_into().unwrap(),
            )),
            w => return Err(format!("unsupported wire type {w}")),
        };
        out.push((tag, v));
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string field is not UTF-8".to_owned())
}

fn base64(b: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

fn scalar(ty: &str, v: &Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, v) {
        ("string", Wire::Bytes(b)) => json!(utf8(b)?),
        ("bytes", Wire::Bytes(b)) => base64(b),
        ("bool", Wire::Varint(x)) => json!(*x != 0),
        ("int32", Wire::Varint(x)) => json!(*x as i32),
        ("int64", Wire::Varint(x)) => json!(*x as i64),
        ("uint32" | "uint64", Wire::Varint(x)) => json!(*x),
        ("double", Wire::Fixed64(x)) => json!(f64::from_bits(*x)),
        ("float", Wire::Fixed32(x)) => json!(f32::from_bits(*x)),
        (ty, _) => return Err(format!("unexpected wire type for a {ty} field")),
    })
}

/// The zero value of a scalar kind (a map entry without its value).
fn zero(ty: &str) -> Value {
    match ty {
        "string" | "bytes" => json!(""),
        "bool" => json!(false),
        "double" | "float" => json!(0.0),
        _ => json!(0),
    }
}

/// A packed repeated scalar field.
fn packed(ty: &str, b: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let w = match ty {
            "double" => Wire::Fixed64(u64::from_le_bytes(
                take(b, &mut pos, 8)?.try_into().unwrap(),
            )),
            "float" => Wire::Fixed32(u32::from_le_bytes(
                take(b, &mut pos, 4)?.try_into().unwrap(),
            )),
            _ => Wire::Varint(varint(b, &mut pos)?),
        };
        out.push(scalar(ty, &w)?);
    }
    Ok(out)
}

/// What Go's `json:",omitempty"` leaves out.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

/// Embedded JSON (RawExtension, FieldsV1, apiextensions' JSON): JSON, YAML
/// or a nested protobuf object; null when empty.
fn embedded(b: Option<&[u8]>) -> Result<Value, String> {
    match b {
        None | Some([]) => Ok(Value::Null),
        Some(b) if b.starts_with(MAGIC) => decode_to_json(b),
        Some(b) => serde_json::from_slice(b)
            .or_else(|e| serde_yaml_ng::from_slice(b).map_err(|_| format!("embedded JSON: {e}"))),
    }
}

/// Go's `time.Duration.String()`: "1h2m3.5s", "1.5ms", "0s".
fn go_duration(ns: i64) -> String {
    fn frac(u: u64, prec: u32) -> (String, u64) {
        let p = 10u64.pow(prec);
        let f = u % p;
        let s = if f == 0 {
            String::new()
        } else {
            let digits = format!("{f:0width$}", width = prec as usize);
            format!(".{}", digits.trim_end_matches('0'))
        };
        (s, u / p)
    }
    let u = ns.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    let body = if u < 1_000_000_000 {
        let (unit, prec) = match u {
            0..1_000 => ("ns", 0),
            1_000..1_000_000 => ("µs", 3),
            _ => ("ms", 6),
        };
        let (f, int) = frac(u, prec);
        format!("{int}{f}{unit}")
    } else {
        let (f, secs) = frac(u, 9);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}{f}s")
        } else if m > 0 {
            format!("{m}m{s}{f}s")
        } else {
            format!("{s}{f}s")
        }
    };
    if ns < 0 {
        format!("-{body}")
    } else {
        body
    }
}

/// Messages with their own JSON forms; None for ordinary messages.
fn special(message: &str, buf: &[u8]) -> Result<Option<Value>, String> {
    let (package, name) = message.rsplit_once('.').unwrap_or(("", message));
    let apiextensions = package.starts_with("k8s.io.apiextensions_apiserver.");
    let known = matches!(
        (package, name),
        (META, "Time" | "MicroTime" | "Duration" | "FieldsV1")
            | ("k8s.io.apimachinery.pkg.runtime", "RawExtension")
            | ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString")
            | ("k8s.io.apimachinery.pkg.api.resource", "Quantity")
    ) || apiextensions
        && matches!(
            name,
            "JSON"
                | "JSONSchemaPropsOrArray"
                | "JSONSchemaPropsOrBool"
                | "JSONSchemaPropsOrStringArray"
        );
    if !known {
        return Ok(None);
    }
    let f = fields(buf)?;
    let int = |tag: u32| {
        f.iter().rev().find_map(|(t, v)| match v {
            Wire::Varint(x) if *t == tag => Some(*x as i64),
            _ => None,
        })
    };
    let bytes = |tag: u32| {
        f.iter().rev().find_map(|(t, v)| match v {
            Wire::Bytes(b) if *t == tag => Some(*b),
            _ => None,
        })
    };
    let all = |tag: u32| {
        f.iter().filter_map(move |(t, v)| match v {
            Wire::Bytes(b) if *t == tag => Some(*b),
            _ => None,
        })
    };
    let schema = |tag: u32| -> Result<Option<Value>, String> {
        bytes(tag)
            .map(|b| decode_message(b, &format!("{package}.JSONSchemaProps")))
            .transpose()
    };
    Ok(Some(match name {
        // Go marshals a zero Time as no bytes at all; JSON's null.
        "Time" | "MicroTime" if buf.is_empty() => Value::Null,
        "Time" => {
            // As Go's Time.Unmarshal: the seconds only.
            let t = chrono::DateTime::from_timestamp(int(1).unwrap_or(0), 0)
                .ok_or("time out of range")?;
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        "MicroTime" => {
            let nanos = u32::try_from(int(2).unwrap_or(0)).map_err(|_| "nanos out of range")?;
            let t = chrono::DateTime::from_timestamp(int(1).unwrap_or(0), nanos / 1000 * 1000)
                .ok_or("time out of range")?;
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        }
        "Duration" => json!(go_duration(int(1).unwrap_or(0))),
        "IntOrString" if int(1) == Some(1) => {
            json!(bytes(3).map(utf8).transpose()?.unwrap_or_default())
        }
        "IntOrString" => json!(int(2).unwrap_or(0) as i32),
        "Quantity" => json!(bytes(1).map(utf8).transpose()?.unwrap_or_default()),
        "RawExtension" | "FieldsV1" | "JSON" => embedded(bytes(1))?,
        "JSONSchemaPropsOrArray" => {
            let schemas = all(2)
                .map(|b| decode_message(b, &format!("{package}.JSONSchemaProps")))
                .collect::<Result<Vec<_>, _>>()?;
            if schemas.is_empty() {
                schema(1)?.unwrap_or(Value::Null)
            } else {
                Value::Array(schemas)
            }
        }
        "JSONSchemaPropsOrBool" => match schema(2)? {
            Some(s) => s,
            None => json!(int(1).unwrap_or(0) != 0),
        },
        "JSONSchemaPropsOrStringArray" => {
            let property = all(2).map(utf8).collect::<Result<Vec<_>, _>>()?;
            if property.is_empty() {
                schema(1)?.unwrap_or(Value::Null)
            } else {
                json!(property)
            }
        }
        _ => unreachable!("a special message"),
    }))
}

/// One value of a field of kind `kind` (not a map).
fn value_of(kind: &str, v: Wire<'_>) -> Result<Vec<Value>, String> {
    Ok(match v {
        Wire::Bytes(b) if table().messages.contains_key(kind) => vec![decode_message(b, kind)?],
        Wire::Bytes(b) if !matches!(kind, "string" | "bytes") => packed(kind, b)?,
        v => vec![scalar(kind, &v)?],
    })
}

fn decode_message(buf: &[u8], message: &str) -> Result<Value, String> {
    if let Some(v) = special(message, buf)? {
        return Ok(v);
    }
    let t = table();
    let layout = t
        .messages
        .get(message)
        .ok_or_else(|| format!("unknown message {message}"))?;
    if t.lists.contains(message) {
        let mut items = Vec::new();
        for (tag, v) in fields(buf)? {
            if let (Some(f), Wire::Bytes(b)) = (layout.iter().find(|f| f.0 == tag), v) {
                items.push(match f.3.as_str() {
                    "string" => json!(utf8(b)?),
                    kind => decode_message(b, kind)?,
                });
            }
        }
        return Ok(Value::Array(items));
    }
    // Field values by position in the layout, in wire order; a later
    // occurrence of a singular field wins, as in protobuf.
    let mut values: Vec<Option<Value>> = vec![None; layout.len()];
    for (tag, v) in fields(buf)? {
        // Unknown fields (a newer Kubernetes) are skipped.
        let Some(i) = layout.iter().position(|f| f.0 == tag) else {
            continue;
        };
        let Field(_, name, flags, kind) = &layout[i];
        if let Some(value_kind) = kind.strip_prefix("map:") {
            let Wire::Bytes(entry) = v else {
                return Err(format!("{message}.{name}: a map entry is not a message"));
            };
            let (mut key, mut value) = (String::new(), None);
            for (t, ev) in fields(entry)? {
                match (t, ev) {
                    (1, Wire::Bytes(b)) => key = utf8(b)?,
                    (2, ev) => value = value_of(value_kind, ev)?.pop(),
                    _ => {}
                }
            }
            let value = match value {
                Some(v) => v,
                None if t.messages.contains_key(value_kind) => decode_message(&[], value_kind)?,
                None => zero(value_kind),
            };
            let slot = values[i].get_or_insert_with(|| json!({}));
            if let Value::Object(m) = slot {
                m.insert(key, value);
            }
        } else if flags & REPEATED != 0 {
            let slot = values[i].get_or_insert_with(|| json!([]));
            if let Value::Array(a) = slot {
                a.extend(value_of(kind, v)?);
            }
        } else {
            values[i] = value_of(kind, v)?.pop();
        }
    }
    let mut out = Map::new();
    for (Field(_, name, flags, _), value) in layout.iter().zip(values) {
        let Some(value) = value else { continue };
        if value.is_null()
            || (flags & (REPEATED | POINTER) == 0 && flags & OMITEMPTY != 0 && is_empty(&value))
        {
            continue;
        }
        if name.is_empty() {
            // An inlined struct: its fields are the parent's.
            if let Value::Object(inner) = value {
                out.extend(inner);
            }
        } else {
            out.insert(name.clone(), value);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests;
