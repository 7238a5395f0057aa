//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every write records which manager set which fields, in Kubernetes'
//! FieldsV1 form (`{"f:data": {"f:color": {}}}`, list items by merge key as
//! `k:{"name":"c"}`, set items as `v:"x"`). An apply (a) conflicts when it
//! sets a field another manager owns to a different value, unless forced;
//! (b) merges its configuration into the object; (c) removes the fields the
//! same manager applied before and no longer applies, unless someone else
//! owns them. A plain update takes ownership of the fields it changes.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::smp::{list_strategy_for, ListStrategy};

/// How apply treats a list: Kubernetes' `x-kubernetes-list-type`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ListType {
    /// Replaced and owned as a whole.
    Atomic,
    /// Items merged and owned by these key fields (`listMapKeys`).
    Map(Vec<&'static str>),
    /// A set of primitives.
    Set,
}

/// The list type of the list `name` holding `items` (`top_level`: a field
/// of the object itself). Mostly the strategic-merge key, except where
/// the apply schema keys by more fields: ports by number and protocol,
/// topology spread constraints by key and action; EndpointSlice `ports`
/// (the only top-level `ports`) are atomic.
fn list_type(top_level: bool, name: &str, items: &[Value]) -> ListType {
    match name {
        "ports" if items.iter().any(|p| p.get("containerPort").is_some()) => {
            ListType::Map(vec!["containerPort", "protocol"])
        }
        "ports" if top_level => ListType::Atomic,
        "ports" => ListType::Map(vec!["port", "protocol"]),
        "topologySpreadConstraints" => ListType::Map(vec!["topologyKey", "whenUnsatisfiable"]),
        _ => match list_strategy_for(name, items) {
            ListStrategy::MergeKey(k) => ListType::Map(vec![k]),
            ListStrategy::MergePrimitives => ListType::Set,
            ListStrategy::Replace => ListType::Atomic,
        },
    }
}

/// The value a list-map key field has when an item leaves it out (the
/// schema default): only ports' protocol has one.
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| json!("TCP"))
}

/// An item's key (its key fields, defaults filled in), or None when it
/// lacks a key field that has no default.
fn item_key(keys: &[&str], item: &Value) -> Option<Map<String, Value>> {
    keys.iter()
        .map(|k| {
            let v = item.get(*k).cloned().or_else(|| key_default(k))?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Whether `item` is the one `key` names.
fn key_matches(key: &Map<String, Value>, item: &Value) -> bool {
    key.iter()
        .all(|(k, v)| item.get(k).cloned().or_else(|| key_default(k)).as_ref() == Some(v))
}

/// The keys of every item, when every item has one.
fn keyed<'a>(keys: &[&str], items: &'a [Value]) -> Option<Vec<(Map<String, Value>, &'a Value)>> {
    items
        .iter()
        .map(|i| Some((item_key(keys, i)?, i)))
        .collect()
}

/// Merges an apply configuration into the live object: maps field by
/// field, list-maps item by key, sets by union, everything else replaced;
/// a null in the configuration removes the field.
fn merge(base: &Value, config: &Value, name: &str, path: &mut Path) -> Value {
    match (base, config) {
        (Value::Object(b), Value::Object(c)) => {
            let mut out = b.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let merged = match out.get(k) {
                    Some(bv) => {
                        path.push(El::Field(k.clone()));
                        let m = merge(bv, cv, k, path);
                        path.pop();
                        m
                    }
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(b), Value::Array(c)) => match list_type(path.len() == 1, name, c) {
            ListType::Map(keys) => match (keyed(&keys, b), keyed(&keys, c)) {
                (Some(bk), Some(ck)) => {
                    let mut out: Vec<Value> = bk
                        .iter()
                        .map(|(key, bi)| match ck.iter().find(|(k, _)| k == key) {
                            Some((k, ci)) => {
                                path.push(El::Key(Value::Object(k.clone()).to_string()));
                                let m = merge(bi, ci, "", path);
                                path.pop();
                                m
                            }
                            None => (*bi).clone(),
                        })
                        .collect();
                    out.extend(
                        ck.iter()
                            .filter(|(k, _)| !bk.iter().any(|(bkey, _)| bkey == k))
                            .map(|(_, ci)| (*ci).clone()),
                    );
                    Value::Array(out)
                }
                _ => config.clone(),
            },
            ListType::Set => {
                let mut out = b.clone();
                out.extend(c.iter().filter(|v| !b.contains(v)).cloned());
                Value::Array(out)
            }
            ListType::Atomic => config.clone(),
        },
        _ => config.clone(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum El {
    Field(String),
    /// A list item by its merge key: the key fields as JSON.
    Key(String),
    /// A set item: the value as JSON.
    Val(String),
}

pub type Path = Vec<El>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata fields the server owns; they are never tracked.
const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "generateName",
    "selfLink",
];

/// The leaf fields an object (or apply configuration) sets.
pub fn fields_of(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta
                        .iter()
                        .filter(|(mk, _)| !UNTRACKED_META.contains(&mk.as_str()))
                    {
                        walk(
                            mk,
                            mv,
                            vec![El::Field("metadata".into()), El::Field(mk.clone())],
                            &mut out,
                        );
                    }
                }
                continue;
            }
            walk(k, v, vec![El::Field(k.clone())], &mut out);
        }
    }
    out
}

fn walk(name: &str, v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(El::Field(k.clone()));
                walk(k, child, p, out);
            }
        }
        Value::Array(items) => match list_type(path.len() == 1, name, items) {
            ListType::Map(keys) if keyed(&keys, items).is_some() => {
                for (key, item) in keyed(&keys, items).into_iter().flatten() {
                    let mut p = path.clone();
                    p.push(El::Key(Value::Object(key).to_string()));
                    out.insert(p.clone());
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            let mut q = p.clone();
                            q.push(El::Field(k.clone()));
                            walk(k, child, q, out);
                        }
                    }
                }
            }
            ListType::Set => {
                for item in items {
                    let mut p = path.clone();
                    p.push(El::Val(item.to_string()));
                    out.insert(p);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// `encode(&fields_of(obj))` in one walk, without the intermediate set:
/// what a create records (there is no old object to compare with).
pub fn fields_v1_of(obj: &Value) -> Value {
    fn child(node: &mut Map<String, Value>, key: String) -> &mut Map<String, Value> {
        node.entry(key)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("fieldsV1 nodes are objects")
    }
    fn walk_v1(name: &str, v: &Value, top: bool, node: &mut Map<String, Value>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    walk_v1(k, c, false, child(node, format!("f:{k}")));
                }
            }
            Value::Array(items) => match list_type(top, name, items) {
                ListType::Map(keys) if keyed(&keys, items).is_some() => {
                    for (key, item) in keyed(&keys, items).into_iter().flatten() {
                        let n = child(node, format!("k:{}", Value::Object(key)));
                        n.insert(".".into(), Value::Object(Map::new()));
                        for (k, c) in item.as_object().into_iter().flatten() {
                            walk_v1(k, c, false, child(n, format!("f:{k}")));
                        }
                    }
                }
                ListType::Set => {
                    for item in items {
                        child(node, format!("v:{item}"));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    let mut root = Map::new();
    for (k, v) in obj.as_object().into_iter().flatten() {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        if k == "metadata" {
            let mut meta = Map::new();
            for (mk, mv) in v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(mk, _)| !UNTRACKED_META.contains(&mk.as_str()))
            {
                walk_v1(mk, mv, false, child(&mut meta, format!("f:{mk}")));
            }
            if !meta.is_empty() {
                root.insert("f:metadata".into(), Value::Object(meta));
            }
            continue;
        }
        walk_v1(k, v, true, child(&mut root, format!("f:{k}")));
    }
    Value::Object(root)
}

/// FieldsV1 JSON of a set.
pub fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, el) in path.iter().enumerate() {
            let key = match el {
                El::Field(f) => format!("f:{f}"),
                El::Key(k) => format!("k:{k}"),
                El::Val(v) => format!("v:{v}"),
            };
            let child = node.entry(key).or_insert_with(|| json!({}));
            node = child.as_object_mut().expect("fieldsV1 nodes are objects");
            if i == path.len() - 1 && matches!(el, El::Key(_)) {
                node.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// The set a FieldsV1 value describes.
pub fn decode(fields: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    fn go(node: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = node.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let el = if let Some(f) = k.strip_prefix("f:") {
                El::Field(f.to_owned())
            } else if let Some(key) = k.strip_prefix("k:") {
                El::Key(key.to_owned())
            } else if let Some(v) = k.strip_prefix("v:") {
                El::Val(v.to_owned())
            } else {
                continue;
            };
            path.push(el);
            go(child, path, out);
            path.pop();
        }
    }
    go(fields, &mut Vec::new(), &mut out);
    out
}

/// The value at a path, if present.
pub fn get<'a>(obj: &'a Value, path: &[El]) -> Option<&'a Value> {
    let mut cur = obj;
    for el in path {
        cur = match el {
            El::Field(f) => cur.get(f)?,
            El::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| key_matches(&key, item))?
            }
            El::Val(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|item| **item == want)?
            }
        };
    }
    Some(cur)
}

/// Whether `a` and `b` agree at `path`: a list item's key node only says
/// the item exists (its fields are paths of their own); anything else
/// compares by value.
fn same_at(a: &Value, b: &Value, path: &[El]) -> bool {
    match path.last() {
        Some(El::Key(_)) => get(a, path).is_some() == get(b, path).is_some(),
        _ => get(a, path) == get(b, path),
    }
}

/// Removes the value at a path (a field, a keyed item, a set item).
pub fn remove(obj: &mut Value, path: &[El]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for el in parent_path {
        let next = match el {
            El::Field(f) => cur.get_mut(f),
            El::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                cur.as_array_mut()
                    .and_then(|a| a.iter_mut().find(|item| key_matches(&key, item)))
            }
            El::Val(_) => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last {
        El::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        El::Key(k) => {
            if let (Ok(key), Some(a)) = (
                serde_json::from_str::<Map<String, Value>>(k),
                cur.as_array_mut(),
            ) {
                a.retain(|item| !key_matches(&key, item));
            }
        }
        El::Val(v) => {
            if let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut()) {
                a.retain(|item| *item != want);
            }
        }
    }
}

/// `.data.color`, `.spec.containers[name="c"].image` — as Kubernetes
/// prints paths in conflict messages.
pub fn display(path: &[El]) -> String {
    let mut s = String::new();
    for el in path {
        match el {
            El::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            El::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(kk, kv)| format!("{kk}={kv}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            El::Val(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Managed {
                    manager: e["manager"].as_str().unwrap_or("").to_owned(),
                    operation: e["operation"].as_str().unwrap_or("").to_owned(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_owned(),
                    time: e["time"].as_str().unwrap_or("").to_owned(),
                    subresource: e["subresource"].as_str().unwrap_or("").to_owned(),
                    fields: decode(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": encode(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn entry<'a>(
    entries: &'a mut Vec<Managed>,
    manager: &str,
    operation: &str,
    api_version: &str,
    sub: &str,
) -> &'a mut Managed {
    let pos = entries
        .iter()
        .position(|e| e.manager == manager && e.operation == operation && e.subresource == sub);
    let i = match pos {
        Some(i) => i,
        None => {
            entries.push(Managed {
                manager: manager.to_owned(),
                operation: operation.to_owned(),
                api_version: api_version.to_owned(),
                time: String::new(),
                subresource: sub.to_owned(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[i];
    e.time = crate::object::now_rfc3339();
    e.api_version = api_version.to_owned();
    e
}

/// Records an update (create, PUT, non-apply PATCH) by `manager`: it owns
/// the fields it changed; fields that are gone are owned by no one.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    sub: &str,
) {
    let Some(old) = old else {
        // A create: the creator owns every field it set.
        let fields = fields_v1_of(new);
        let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if fields.as_object().is_some_and(Map::is_empty) {
            meta.remove("managedFields");
            return;
        }
        let mut e = json!({
            "manager": manager, "operation": "Update", "apiVersion": api_version,
            "time": crate::object::now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields,
        });
        if !sub.is_empty() {
            e["subresource"] = json!(sub);
        }
        meta.insert("managedFields".into(), Value::Array(vec![e]));
        return;
    };
    let old = Some(old);
    let mut entries = old.map(read_managed).unwrap_or_default();
    let now = fields_of(new);
    let changed: FieldSet = now
        .iter()
        .filter(|p| old.is_none_or(|o| !same_at(o, new, p)))
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| now.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        entry(&mut entries, manager, "Update", api_version, sub)
            .fields
            .extend(changed);
    }
    write_managed(new, &entries);
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: String,
}

/// Applies `config` by `manager` to `old` (None: the object is new).
pub fn apply(
    old: Option<&Value>,
    config: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let base = old.cloned().unwrap_or_else(|| json!({}));
    let mut entries = old.map(read_managed).unwrap_or_default();
    let applied = fields_of(config);
    let mut conflicts = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        for p in applied.intersection(&e.fields) {
            if !same_at(&base, config, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    api_version: e.api_version.clone(),
                    path: display(p),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut merged = merge(&base, config, "", &mut Vec::new());
    // Fields this manager applied before and no longer applies go, unless
    // another manager owns them too.
    let previous: FieldSet = entries
        .iter()
        .filter(|e| e.manager == manager && e.operation == "Apply")
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in previous.difference(&applied) {
        let shared = entries
            .iter()
            .any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p));
        if !shared {
            remove(&mut merged, p);
        }
    }
    if force {
        for e in entries
            .iter_mut()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
        {
            let taken: Vec<Path> = e
                .fields
                .intersection(&applied)
                .filter(|p| !same_at(&base, config, p))
                .cloned()
                .collect();
            for p in taken {
                e.fields.remove(&p);
            }
        }
    }
    entry(&mut entries, manager, "Apply", api_version, "").fields = applied;
    if let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    write_managed(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_walk_fields_v1_equals_the_set_encoded() {
        let objects = [
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "uid": "u", "labels": {"a": "1", "b": ""}, "annotations": {},
                             "finalizers": ["x", "y"], "ownerReferences": [{"uid": "o1", "kind": "RS", "name": "r"}]},
                "spec": {"containers": [
                    {"name": "c", "image": "i", "args": ["1", "2"], "env": [{"name": "A", "value": "1"}],
                     "ports": [{"containerPort": 80, "protocol": "TCP"}], "resources": {}},
                    {"name": "d", "image": "j"}],
                    "tolerations": [{"key": "k", "operator": "Exists"}], "nodeSelector": {"z": "1"}},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "generateName": "x"}}),
            json!({"apiVersion": "v1", "kind": "List", "items": [1, 2], "data": {"k": null}}),
        ];
        for obj in objects {
            assert_eq!(fields_v1_of(&obj), encode(&fields_of(&obj)), "{obj}");
        }
        let mut created = json!({"metadata": {"name": "n", "labels": {"a": "b"}}});
        record_update(None, &mut created, "kubectl", "v1", "");
        let entries = read_managed(&created);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].fields, fields_of(&created));
        let mut bare = json!({"metadata": {"name": "n", "managedFields": [{"manager": "x"}]}});
        record_update(None, &mut bare, "kubectl", "v1", "");
        assert!(bare["metadata"].get("managedFields").is_none(), "{bare}");
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "c", "image": "i", "args": ["1", "2"]}]}});
        let set = fields_of(&obj);
        let v1 = encode(&set);
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"x\"": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}}})
        );
        assert_eq!(decode(&v1), set);
        assert_eq!(
            display(&[
                El::Field("spec".into()),
                El::Field("containers".into()),
                El::Key(r#"{"name":"c"}"#.into()),
                El::Field("image".into())
            ]),
            r#".spec.containers[name="c"].image"#
        );
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let cfg = |color: &str, extra: bool| {
            let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"color": color}});
            if extra {
                v["data"]["size"] = json!("L");
            }
            v
        };
        // A applies color+size; B updates color; A re-applies a different color.
        let a1 = apply(None, &cfg("blue", true), "a", "v1", false).unwrap();
        let mut b = a1.clone();
        b["data"]["color"] = json!("red");
        record_update(Some(&a1), &mut b, "b", "v1", "");
        let managers: Vec<(String, String)> = read_managed(&b)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect();
        assert_eq!(
            managers,
            [
                ("a".to_owned(), "Apply".to_owned()),
                ("b".to_owned(), "Update".to_owned())
            ]
        );
        let err = apply(Some(&b), &cfg("green", true), "a", "v1", false).unwrap_err();
        assert_eq!(
            err,
            [Conflict {
                manager: "b".into(),
                api_version: "v1".into(),
                path: ".data.color".into()
            }]
        );
        // Same value as the other owner: no conflict, shared ownership.
        assert!(apply(Some(&b), &cfg("red", true), "a", "v1", false).is_ok());
        // Forced: A takes color; dropping size from the config removes it.
        let forced = apply(Some(&b), &cfg("green", false), "a", "v1", true).unwrap();
        assert_eq!(forced["data"], json!({"color": "green"}));
        let owners: Vec<String> = read_managed(&forced)
            .into_iter()
            .map(|e| e.manager)
            .collect();
        assert_eq!(owners, ["a"]);
    }

    #[test]
    fn ports_are_keyed_by_number_and_protocol() {
        let svc = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"},
                   "spec": {"ports": ports}})
        };
        // 53/UDP and 53/TCP are two items, the protocol defaulting to TCP.
        let applied = apply(
            None,
            &svc(json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}])),
            "a",
            "v1",
            false,
        )
        .unwrap();
        assert_eq!(
            applied["spec"]["ports"].as_array().unwrap().len(),
            2,
            "{applied}"
        );
        let owned = &read_managed(&applied)[0].fields;
        for key in [
            r#"{"port":53,"protocol":"UDP"}"#,
            r#"{"port":53,"protocol":"TCP"}"#,
        ] {
            let path = vec![
                El::Field("spec".into()),
                El::Field("ports".into()),
                El::Key(key.into()),
            ];
            assert!(owned.contains(&path), "{key} not in {owned:?}");
        }
        // The live object has the default filled in; re-applying without it
        // matches the same item (no duplicate, no conflict with the defaulter).
        let mut live = applied.clone();
        live["spec"]["ports"][1]["protocol"] = json!("TCP");
        record_update(Some(&applied), &mut live, "defaulter", "v1", "");
        let again = apply(
            Some(&live),
            &svc(json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "targetPort": 5353}])),
            "a",
            "v1",
            false,
        )
        .unwrap();
        assert_eq!(
            again["spec"]["ports"],
            json!([{"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353}])
        );
        // Dropping the UDP port (and targetPort) from the config removes
        // them; the protocol the defaulter owns stays.
        let dropped = apply(
            Some(&again),
            &svc(json!([{"name": "dns-tcp", "port": 53}])),
            "a",
            "v1",
            false,
        )
        .unwrap();
        assert_eq!(
            dropped["spec"]["ports"],
            json!([{"name": "dns-tcp", "port": 53, "protocol": "TCP"}])
        );

        // Container ports by containerPort+protocol; EndpointSlice ports atomic.
        let pod = json!({"spec": {"containers": [{"name": "c", "ports": [
            {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}]}]}});
        let v1 = fields_v1_of(&pod);
        let ports = &v1["f:spec"]["f:containers"][r#"k:{"name":"c"}"#]["f:ports"];
        assert!(
            ports
                .get(r#"k:{"containerPort":53,"protocol":"UDP"}"#)
                .is_some(),
            "{v1}"
        );
        assert!(
            ports
                .get(r#"k:{"containerPort":53,"protocol":"TCP"}"#)
                .is_some(),
            "{v1}"
        );
        let slice = json!({"addressType": "IPv4", "ports": [{"port": 53, "protocol": "UDP"}]});
        assert_eq!(
            fields_v1_of(&slice),
            json!({"f:addressType": {}, "f:ports": {}})
        );
        assert_eq!(fields_v1_of(&slice), encode(&fields_of(&slice)));
    }
}
