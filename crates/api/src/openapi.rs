//! OpenAPI v3 documents (`/openapi/v3` and one per group/version) built
//! from the k8s-openapi schemas of the built-in kinds and from CRD schemas,
//! as kube-apiserver publishes them: each kind's schema carries
//! `x-kubernetes-group-version-kind`, each resource has its REST paths, and
//! PATCH operations take `fieldValidation` (kubectl looks for exactly that
//! to leave unknown-field checks to the server).
//!
//! The PATCH request bodies do not list strategic-merge-patch: the
//! k8s-openapi schemas lack the patch merge keys, and kubectl then uses
//! its compiled-in types (which have them) for client-side apply.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

use crate::registry::Resource;

/// A served resource and, for a custom resource, its schema.
pub struct ResourceSpec<'a> {
    pub res: &'a Resource,
    pub schema: Option<&'a Value>,
}

/// Schema names (`io.k8s.api.core.v1.Pod`) of built-in kinds, and every
/// definition they reference, generated once.
struct Builtins {
    kinds: BTreeMap<(&'static str, &'static str, &'static str), String>,
    definitions: Map<String, Value>,
}

fn builtins() -> &'static Builtins {
    static B: OnceLock<Builtins> = OnceLock::new();
    B.get_or_init(|| {
        let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
        let mut kinds = BTreeMap::new();
        macro_rules! collect {
            ($($group:literal $version:literal $kind:literal => $ty:ty,)*) => {
                $(
                    let r = gen.subschema_for::<$ty>();
                    if let Some(name) = r.get("$ref").and_then(Value::as_str).and_then(|s| s.rsplit('/').next()) {
                        kinds.insert(($group, $version, $kind), name.to_owned());
                    }
                )*
            };
        }
        crate::builtin_kinds!(collect);
        let mut definitions = gen.take_definitions(true);
        for ((group, version, kind), name) in &kinds {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                schema.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "version": version, "kind": kind}]),
                );
            }
        }
        Builtins { kinds, definitions }
    })
}

/// A schema definition by its OpenAPI name (`io.k8s.api.core.v1.Pod`).
pub fn definition(name: &str) -> Option<&'static Value> {
    builtins().definitions.get(name)
}

/// The schema name of a built-in kind.
pub fn schema_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    builtins()
        .kinds
        .iter()
        .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
        .map(|(_, n)| n.as_str())
}

/// The built-in kind's schema with every `$ref` inlined (recursive types are
/// cut off as "anything"), for validating objects against it.
pub fn resolved_schema(group: &str, version: &str, kind: &str) -> Option<Arc<Value>> {
    let name = schema_name(group, version, kind)?;
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(name) {
        return Some(v.clone());
    }
    let defs = &builtins().definitions;
    let resolved = Arc::new(inline(&defs[name], defs, &mut vec![name.to_owned()]));
    cache
        .lock()
        .unwrap()
        .insert(name.to_owned(), resolved.clone());
    Some(resolved)
}

fn inline(schema: &Value, defs: &Map<String, Value>, stack: &mut Vec<String>) -> Value {
    match schema {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                let name = r.rsplit('/').next().unwrap_or("").to_owned();
                if stack.contains(&name) || stack.len() > 24 {
                    return json!({"x-kubernetes-preserve-unknown-fields": true});
                }
                let Some(target) = defs.get(&name) else {
                    return json!({});
                };
                stack.push(name);
                let out = inline(target, defs, stack);
                stack.pop();
                return out;
            }
            // `{"allOf": [{"$ref": ...}], "description": ...}` is a reference
            // with a description: fold it into the referenced schema.
            if let Some([only]) = m.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
                if let Value::Object(mut target) = inline(only, defs, stack) {
                    for (k, v) in m.iter().filter(|(k, _)| *k != "allOf") {
                        target
                            .entry(k.clone())
                            .or_insert_with(|| inline(v, defs, stack));
                    }
                    return Value::Object(target);
                }
            }
            let mut out: Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), inline(v, defs, stack)))
                .collect();
            // Free-form built-in types (FieldsV1, RawExtension, JSON) are
            // objects with no declared fields: keep what they hold.
            if out.get("type").and_then(Value::as_str) == Some("object")
                && !out.contains_key("properties")
                && !out.contains_key("additionalProperties")
            {
                out.insert(
                    "x-kubernetes-preserve-unknown-fields".into(),
                    Value::Bool(true),
                );
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| inline(v, defs, stack)).collect()),
        other => other.clone(),
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn hash(v: &Value) -> String {
    // FNV-1a over the serialized document: stable across runs.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in serde_json::to_vec(v).unwrap_or_default() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// `/openapi/v3`: where each group/version document is.
pub fn v3_root(docs: &[(String, String, Value)]) -> Value {
    let mut paths = Map::new();
    for (group, version, doc) in docs {
        let p = gv_path(group, version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(doc))}),
        );
    }
    json!({"paths": paths})
}

fn param(name: &str, location: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn json_content(schema: Value) -> Value {
    json!({
        "application/json": {"schema": schema.clone()},
        "application/yaml": {"schema": schema.clone()},
        "application/vnd.kubernetes.protobuf": {"schema": schema},
    })
}

/// One group/version's OpenAPI v3 document.
pub fn v3_group_version(resources: &[ResourceSpec<'_>]) -> Value {
    let b = builtins();
    let mut schemas = Map::new();
    let mut paths = Map::new();
    let mut needed: Vec<String> = Vec::new();
    for spec in resources {
        let r = spec.res;
        let schema_ref = match (spec.schema, schema_name(r.group, r.version, r.kind)) {
            (Some(custom), _) => {
                let name = format!("{}.{}.{}", reverse_domain(r.group), r.version, r.kind);
                let mut s = custom.clone();
                if let Value::Object(m) = &mut s {
                    m.insert(
                        "x-kubernetes-group-version-kind".into(),
                        json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
                    );
                    let props = m.entry("properties").or_insert_with(|| json!({}));
                    if let Value::Object(p) = props {
                        p.entry("apiVersion").or_insert(json!({"type": "string"}));
                        p.entry("kind").or_insert(json!({"type": "string"}));
                        p.insert("metadata".into(), json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}));
                    }
                }
                needed.push("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into());
                schemas.insert(name.clone(), s);
                name
            }
            (None, Some(name)) => {
                needed.push(name.to_owned());
                name.to_owned()
            }
            (None, None) => continue,
        };
        let obj = json!({"$ref": format!("#/components/schemas/{schema_ref}")});
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = format!("/{}", gv_path(r.group, r.version));
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        let mut common = vec![param(
            "pretty",
            "query",
            "string",
            "If 'true', then the output is pretty printed.",
        )];
        if r.namespaced {
            common.push(json!({"name": "namespace", "in": "path", "required": true, "description": "object name and auth scope, such as for teams and projects", "schema": {"type": "string", "uniqueItems": true}}));
        }
        let write_params = vec![
            param("dryRun", "query", "string", "When present, indicates that modifications should not be persisted."),
            param("fieldManager", "query", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
            param("fieldValidation", "query", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
        ];
        let op = |verb: &str, action: &str, body: Option<Value>, extra: Vec<Value>| -> Value {
            let mut o = json!({
                "operationId": format!("{verb}{}{}", r.kind, if r.namespaced { "Namespaced" } else { "" }),
                "tags": [gv_path(r.group, r.version).replace('/', "_")],
                "parameters": extra,
                "responses": {"200": {"description": "OK", "content": json_content(obj.clone())}, "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            });
            if let Some(b) = body {
                o["requestBody"] = json!({"content": b, "required": true});
            }
            o
        };
        let list_schema = json!({"type": "object", "properties": {"items": {"type": "array", "items": obj.clone()}}});
        let mut coll = Map::new();
        coll.insert("parameters".into(), Value::Array(common.clone()));
        if r.verbs.contains(&"list") {
            let mut get = op("list", "list", None, vec![]);
            get["responses"]["200"]["content"] = json_content(list_schema.clone());
            coll.insert("get".into(), get);
        }
        if r.verbs.contains(&"create") {
            coll.insert(
                "post".into(),
                op(
                    "create",
                    "post",
                    Some(json_content(obj.clone())),
                    write_params.clone(),
                ),
            );
        }
        if r.verbs.contains(&"deletecollection") {
            coll.insert(
                "delete".into(),
                op("deletecollection", "deletecollection", None, vec![]),
            );
        }
        paths.insert(collection, Value::Object(coll));

        let mut it = Map::new();
        let mut item_params = common.clone();
        item_params.push(json!({"name": "name", "in": "path", "required": true, "description": format!("name of the {}", r.kind), "schema": {"type": "string", "uniqueItems": true}}));
        it.insert("parameters".into(), Value::Array(item_params));
        if r.verbs.contains(&"get") {
            it.insert("get".into(), op("read", "get", None, vec![]));
        }
        if r.verbs.contains(&"update") {
            it.insert(
                "put".into(),
                op(
                    "replace",
                    "put",
                    Some(json_content(obj.clone())),
                    write_params.clone(),
                ),
            );
        }
        if r.verbs.contains(&"patch") {
            let patch_body = json!({
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
            });
            let mut extra = write_params.clone();
            extra.push(param(
                "force",
                "query",
                "boolean",
                "Force is going to \"force\" Apply requests.",
            ));
            it.insert(
                "patch".into(),
                op("patch", "patch", Some(patch_body), extra),
            );
        }
        if r.verbs.contains(&"delete") {
            it.insert("delete".into(), op("delete", "delete", None, vec![]));
        }
        paths.insert(item, Value::Object(it));
    }
    // Every definition reachable from what this document uses.
    while let Some(name) = needed.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        if let Some(def) = b.definitions.get(&name) {
            collect_refs(def, &mut needed);
            schemas.insert(name, def.clone());
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                out.push(r.rsplit('/').next().unwrap_or("").to_owned());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn reverse_domain(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_what_kubectl_looks_for() {
        let pods = crate::registry::find("", "v1", "pods").unwrap();
        let doc = v3_group_version(&[ResourceSpec {
            res: pods,
            schema: None,
        }]);
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        // Every $ref resolves inside the document.
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for r in refs {
            assert!(
                doc["components"]["schemas"].get(&r).is_some(),
                "dangling $ref {r}"
            );
        }
        let root = v3_root(&[("".into(), "v1".into(), doc)]);
        assert!(root["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/api/v1?hash="));
    }

    #[test]
    fn resolved_schemas_find_unknown_fields() {
        let schema = resolved_schema("apps", "v1", "Deployment").unwrap();
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "bogus": 1},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}}}});
        let mut pruned = Vec::new();
        crate::schema::prune(&schema, &mut obj, "", false, &mut pruned);
        assert_eq!(
            pruned,
            vec![
                "metadata.bogus",
                "spec.template.spec.containers[0].imagePolicy"
            ]
        );
    }
}
