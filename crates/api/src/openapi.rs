//! The OpenAPI documents the API server publishes, as kube-apiserver does:
//! `/openapi/v3` (an index of one OpenAPI 3.0 document per group/version)
//! and `/openapi/v2` (one Swagger 2.0 document for everything).
//!
//! Schemas are k8s-openapi's for built-in kinds and the CRD's
//! `openAPIV3Schema` for custom resources, named as Kubernetes names them
//! (`io.k8s.api.core.v1.Pod`, `com.example.stable.v1.CronTab`). What
//! clients look for:
//!
//! - every kind's schema carries `x-kubernetes-group-version-kind` (a
//!   list); `kubectl explain` finds the schema by it, and client-side apply
//!   finds the schema to compute a strategic merge patch with;
//! - every resource has its REST paths, each operation carrying
//!   `x-kubernetes-group-version-kind` (one object) and
//!   `x-kubernetes-action`. kubectl's `--validate=strict` looks for a PATCH
//!   operation of the object's kind with a `fieldValidation` query
//!   parameter: found, it sends `?fieldValidation=Strict` and leaves the
//!   checks to the server. (Not found for a kind, `kubectl create` fails, so
//!   every resource gets its paths, with a permissive schema if need be.)
//! - the list fields of built-in schemas carry the list, map and patch
//!   extensions (`x-kubernetes-patch-merge-key`, `-patch-strategy`,
//!   `-list-type`, `-list-map-keys`, `-map-type`). k8s-openapi's schemas
//!   lack them; they are added from `openapi/extensions.json`, derived from
//!   the Go API types by `scripts/gen-openapi-extensions.py`. Built-in PATCH
//!   operations list `application/strategic-merge-patch+json`, so that
//!   kubectl's client-side apply computes its patches from these schemas;
//!   custom resources (no strategic merge patch) do not.
//!
//! Everything here is a pure function of its arguments; the schemas are
//! generated once per process.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

/// A served resource, as the OpenAPI documents describe it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSpec {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Kubernetes verbs: get, list, watch, create, update, patch, delete,
    /// deletecollection.
    pub verbs: Vec<String>,
    /// Subresource names: status, scale, log, exec, ... (unknown names are
    /// left out of the documents).
    pub subresources: Vec<String>,
    /// A custom resource's `openAPIV3Schema` for this version; None for
    /// built-in kinds.
    pub schema: Option<Value>,
}

const COMPONENTS: &str = "#/components/schemas/";
const DEFINITIONS: &str = "#/definitions/";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const INFO_VERSION: &str = "v1.33.0";

const GVK: &str = "x-kubernetes-group-version-kind";
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    STRATEGIC_MERGE_PATCH,
];
const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

// ---------------------------------------------------------------------------
// Schemas of the built-in kinds

/// Schema names (`io.k8s.api.core.v1.Pod`) of built-in kinds, and every
/// definition they reference, generated once.
struct Builtins {
    /// The kinds of `builtin_kinds!`: served resources.
    kinds: BTreeMap<(&'static str, &'static str, &'static str), String>,
    /// Kinds that only subresources take or return (Scale, Eviction, ...).
    others: BTreeMap<(&'static str, &'static str, &'static str), String>,
    definitions: Map<String, Value>,
}

fn builtins() -> &'static Builtins {
    static B: OnceLock<Builtins> = OnceLock::new();
    B.get_or_init(|| {
        let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
        let name_of = |r: Value| {
            r.get("$ref")
                .and_then(Value::as_str)
                .and_then(|s| s.rsplit('/').next())
                .map(str::to_owned)
        };
        let mut kinds = BTreeMap::new();
        macro_rules! collect {
            ($($group:literal $version:literal $kind:literal => $ty:ty,)*) => {
                $(
                    if let Some(name) = name_of(gen.subschema_for::<$ty>().to_value()) {
                        kinds.insert(($group, $version, $kind), name);
                    }
                )*
            };
        }
        crate::builtin_kinds!(collect);
        let mut others = BTreeMap::new();
        macro_rules! other {
            ($($group:literal $version:literal $kind:literal => $ty:ty,)*) => {
                $(
                    if let Some(name) = name_of(gen.subschema_for::<$ty>().to_value()) {
                        others.insert(($group, $version, $kind), name);
                    }
                )*
            };
        }
        other! {
            "autoscaling" "v1" "Scale" => k8s_openapi::api::autoscaling::v1::Scale,
            "policy" "v1" "Eviction" => k8s_openapi::api::policy::v1::Eviction,
            "authentication.k8s.io" "v1" "TokenRequest" => k8s_openapi::api::authentication::v1::TokenRequest,
            "" "v1" "Status" => k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
        }
        gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
        gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
        let mut definitions = gen.take_definitions(true);
        for ((group, version, kind), name) in kinds.iter().chain(&others) {
            if let Some(Value::Object(schema)) = definitions.get_mut(name) {
                schema.insert(GVK.into(), json!([gvk(group, version, kind)]));
            }
        }
        Builtins {
            kinds,
            others,
            definitions,
        }
    })
}

/// The schema name of a built-in kind.
pub fn schema_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    builtins()
        .kinds
        .iter()
        .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
        .map(|(_, n)| n.as_str())
}

/// The schema name of any built-in kind the documents know, including
/// those only subresources use (Scale, Eviction, TokenRequest).
fn any_schema_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    schema_name(group, version, kind).or_else(|| {
        builtins()
            .others
            .iter()
            .find(|((g, v, k), _)| *g == group && *v == version && *k == kind)
            .map(|(_, n)| n.as_str())
    })
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

// ---------------------------------------------------------------------------
// List, map and patch extensions

/// `openapi/extensions.json`: per definition and field, the extensions
/// Kubernetes publishes; per definition, type-level ones.
fn extensions() -> &'static Value {
    static E: OnceLock<Value> = OnceLock::new();
    E.get_or_init(|| {
        serde_json::from_str(include_str!("openapi/extensions.json"))
            .expect("openapi/extensions.json is valid JSON")
    })
}

/// The list, map and patch extensions Kubernetes publishes for a field of
/// a built-in definition: `x-kubernetes-patch-merge-key`,
/// `x-kubernetes-patch-strategy` ("merge", "retainKeys", "merge,retainKeys"),
/// `x-kubernetes-list-type` ("atomic", "set", "map"),
/// `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`. For example
/// `("io.k8s.api.core.v1.PodSpec", "containers")` merges by `name`.
/// Covers the stable versions of the built-in groups.
pub fn field_extensions(definition: &str, field: &str) -> Option<&'static Map<String, Value>> {
    extensions()["fields"]
        .get(definition)?
        .get(field)?
        .as_object()
}

/// The definitions as published: k8s-openapi's plus the extensions, and a
/// `Patch` body type.
fn published() -> &'static Map<String, Value> {
    static P: OnceLock<Map<String, Value>> = OnceLock::new();
    P.get_or_init(|| {
        let mut defs = builtins().definitions.clone();
        let ext = extensions();
        for (name, fields) in ext["fields"].as_object().into_iter().flatten() {
            let Some(Value::Object(props)) = defs.get_mut(name).and_then(|d| d.get_mut("properties"))
            else {
                continue;
            };
            for (field, e) in fields.as_object().into_iter().flatten() {
                if let (Some(Value::Object(prop)), Value::Object(e)) = (props.get_mut(field), e) {
                    prop.extend(e.clone());
                }
            }
        }
        for (name, e) in ext["types"].as_object().into_iter().flatten() {
            if let (Some(Value::Object(def)), Value::Object(e)) = (defs.get_mut(name), e) {
                def.extend(e.clone());
            }
        }
        defs.insert(
            PATCH.into(),
            json!({
                "description": "A patch document, in the format its Content-Type names: JSON patch, JSON merge patch, strategic merge patch or apply configuration.",
                "type": "object",
            }),
        );
        defs
    })
}

// ---------------------------------------------------------------------------
// Documents

/// A stable digest of a document (uppercase hex), for the `hash` query of
/// the `/openapi/v3` index: it changes whenever the document does, so
/// clients may cache `/openapi/v3/...?hash=H` responses for good.
pub fn doc_hash(doc: &Value) -> String {
    // FNV-1a, 128 bits, over the serialized document.
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in serde_json::to_vec(doc).unwrap_or_default() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032X}")
}

/// `/openapi/v3`: where each group/version's document is, given the
/// documents (`(group, version, document)`, group "" for the core group):
/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=..."}, ...}}`.
/// The hash is [`doc_hash`] of the document; a server should answer a
/// request whose hash is not the current one with a redirect to the current
/// URL, and one whose hash matches with `Cache-Control: public, immutable`.
pub fn v3_root<D: Borrow<Value>>(docs: &[(String, String, D)]) -> Value {
    let mut paths = Map::new();
    for (group, version, doc) in docs {
        let p = gv_path(group, version);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", doc_hash(doc.borrow()))}),
        );
    }
    json!({"paths": paths})
}

/// The OpenAPI 3.0 document of one group/version (`/openapi/v3/api/v1`,
/// `/openapi/v3/apis/apps/v1`): the paths of `resources` that belong to it
/// and every schema they use, under `components.schemas`.
pub fn v3_group_version(group: &str, version: &str, resources: &[ResourceSpec]) -> Value {
    let specs: Vec<&ResourceSpec> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let (paths, schemas) = build(&specs);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": bearer_token()},
        },
        "security": [{"BearerToken": []}],
    })
}

/// The Swagger 2.0 document (`/openapi/v2`) of all `resources`: paths and
/// `definitions`, with the same extensions as the v3 documents. (kubectl
/// reads `/openapi/v2` only as protobuf, and only where v3 fails it.)
pub fn v2(resources: &[ResourceSpec]) -> Value {
    let specs: Vec<&ResourceSpec> = resources.iter().collect();
    let (paths, schemas) = build(&specs);
    let paths: Map<String, Value> = paths
        .into_iter()
        .map(|(p, item)| (p, path_item_v2(&item)))
        .collect();
    let definitions: Map<String, Value> = schemas
        .into_iter()
        .map(|(n, s)| (n, schema_v2(&s)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": bearer_token()},
        "security": [{"BearerToken": []}],
    })
}

fn bearer_token() -> Value {
    json!({"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication"})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("{COMPONENTS}{name}")})
}

/// A reference with a description, as Kubernetes writes it in v3.
fn described_reference(name: &str, description: &str) -> Value {
    json!({"allOf": [reference(name)], "description": description})
}

/// Schema names of resources Kubernetes does not define (custom resources,
/// kinds k8s-openapi lacks): the group's domain reversed, then version and
/// kind (`com.example.stable.v1.CronTab`).
fn custom_name(group: &str, version: &str, kind: &str) -> String {
    let domain = if group.is_empty() {
        "io.k8s.api.core".to_owned()
    } else {
        group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{domain}.{version}.{kind}")
}

fn type_meta_properties() -> [(&'static str, Value); 2] {
    [
        (
            "apiVersion",
            json!({"description": "The versioned schema of this object: group/version, or version for the core group.", "type": "string"}),
        ),
        (
            "kind",
            json!({"description": "The kind of this object, in CamelCase.", "type": "string"}),
        ),
    ]
}

/// A custom resource's schema as published: the CRD's, with the standard
/// apiVersion, kind and metadata fields and its GVK.
fn custom_schema(spec: &ResourceSpec, schema: &Value) -> Value {
    let mut s = match schema {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    s.entry("type").or_insert_with(|| json!("object"));
    if let Value::Object(props) = s.entry("properties").or_insert_with(|| json!({})) {
        for (name, p) in type_meta_properties() {
            props.entry(name).or_insert(p);
        }
        props.insert(
            "metadata".into(),
            described_reference(OBJECT_META, "Standard object's metadata."),
        );
    }
    s.insert(
        GVK.into(),
        json!([gvk(&spec.group, &spec.version, &spec.kind)]),
    );
    Value::Object(s)
}

/// The schema of a kind nothing describes: any object.
fn permissive_schema(spec: &ResourceSpec) -> Value {
    let mut props: Map<String, Value> = type_meta_properties()
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p))
        .collect();
    props.insert(
        "metadata".into(),
        described_reference(OBJECT_META, "Standard object's metadata."),
    );
    json!({
        "description": format!("{} (no schema published).", spec.kind),
        "type": "object",
        "properties": props,
        "x-kubernetes-preserve-unknown-fields": true,
        GVK: [gvk(&spec.group, &spec.version, &spec.kind)],
    })
}

/// `<Kind>List`.
fn list_schema(spec: &ResourceSpec, item: &str) -> Value {
    let mut props: Map<String, Value> = type_meta_properties()
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p))
        .collect();
    props.insert(
        "items".into(),
        json!({"description": format!("The {} objects.", spec.kind), "type": "array", "items": reference(item)}),
    );
    props.insert(
        "metadata".into(),
        described_reference(LIST_META, "Standard list metadata."),
    );
    json!({
        "description": format!("A list of {} objects.", spec.kind),
        "type": "object",
        "required": ["items"],
        "properties": props,
        GVK: [gvk(&spec.group, &spec.version, &format!("{}List", spec.kind))],
    })
}

/// The paths of `specs` and every schema they reference (v3 form).
fn build(specs: &[&ResourceSpec]) -> (Map<String, Value>, Map<String, Value>) {
    let defs = published();
    let mut schemas = Map::new();
    let mut paths = Map::new();
    for spec in specs {
        // The kind's schema, and whether the server takes strategic merge
        // patches for it (built-in kinds, whose schemas say how lists merge).
        let (name, builtin) = match (
            &spec.schema,
            schema_name(&spec.group, &spec.version, &spec.kind),
        ) {
            (Some(custom), _) => {
                let name = custom_name(&spec.group, &spec.version, &spec.kind);
                schemas.insert(name.clone(), custom_schema(spec, custom));
                (name, false)
            }
            (None, Some(name)) => (name.to_owned(), true),
            (None, None) => {
                let name = custom_name(&spec.group, &spec.version, &spec.kind);
                schemas.insert(name.clone(), permissive_schema(spec));
                (name, false)
            }
        };
        let list_name = format!("{name}List");
        if !schemas.contains_key(&list_name) && !defs.contains_key(&list_name) {
            schemas.insert(list_name.clone(), list_schema(spec, &name));
        }
        resource_paths(spec, &name, &list_name, builtin, &mut paths);
    }
    // Every definition the paths and schemas reference.
    let mut needed = Vec::new();
    collect_refs(&Value::Object(paths.clone()), &mut needed);
    collect_refs(&Value::Object(schemas.clone()), &mut needed);
    while let Some(name) = needed.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        if let Some(def) = defs.get(&name) {
            collect_refs(def, &mut needed);
            schemas.insert(name, def.clone());
        }
    }
    (paths, schemas)
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

// ---------------------------------------------------------------------------
// Paths and operations (v3 form; v2 is derived from it)

fn param(name: &str, location: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": location, "description": description, "schema": {"type": ty, "uniqueItems": true}});
    if location == "path" {
        p["required"] = json!(true);
    }
    p
}

fn pretty_param() -> Value {
    param(
        "pretty",
        "query",
        "string",
        "If 'true', the output is indented.",
    )
}

fn write_params() -> Vec<Value> {
    vec![
        param("dryRun", "query", "string", "If present (the only valid value is All), the request is processed in full but nothing is persisted."),
        param("fieldManager", "query", "string", "The name of the actor making these changes, recorded in managedFields. Required for apply patches."),
        param("fieldValidation", "query", "string", "What the server does with unknown or duplicate fields in the object: Ignore (drop them), Warn (drop them with a warning; the default) or Strict (fail the request)."),
    ]
}

fn patch_params() -> Vec<Value> {
    let mut p = write_params();
    p.push(param(
        "force",
        "query",
        "boolean",
        "For apply patches: take ownership of fields that other managers own instead of failing with a conflict.",
    ));
    p
}

fn list_params() -> Vec<Value> {
    vec![
        param(
            "allowWatchBookmarks",
            "query",
            "boolean",
            "With watch: ask for BOOKMARK events.",
        ),
        param(
            "continue",
            "query",
            "string",
            "The continue token of the previous chunk of a list.",
        ),
        param(
            "fieldSelector",
            "query",
            "string",
            "Only objects whose fields match, e.g. metadata.name=x.",
        ),
        param(
            "labelSelector",
            "query",
            "string",
            "Only objects whose labels match.",
        ),
        param(
            "limit",
            "query",
            "integer",
            "At most this many objects; the list's metadata.continue fetches the rest.",
        ),
        param(
            "resourceVersion",
            "query",
            "string",
            "The resource version the list or watch starts from.",
        ),
        param(
            "resourceVersionMatch",
            "query",
            "string",
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
        ),
        param(
            "sendInitialEvents",
            "query",
            "boolean",
            "With watch: send the current objects first, then a bookmark.",
        ),
        param(
            "timeoutSeconds",
            "query",
            "integer",
            "End the list or watch after this many seconds.",
        ),
        param(
            "watch",
            "query",
            "boolean",
            "Watch for changes instead of listing.",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        param("dryRun", "query", "string", "If present (the only valid value is All), the request is processed in full but nothing is persisted."),
        param("gracePeriodSeconds", "query", "integer", "Seconds before the object is deleted; 0 deletes at once."),
        param("ignoreStoreReadErrorWithClusterBreakingPotential", "query", "boolean", "Delete an object that cannot be read from storage."),
        param("orphanDependents", "query", "boolean", "Deprecated: use propagationPolicy."),
        param("propagationPolicy", "query", "string", "What happens to dependents: Orphan, Background or Foreground."),
    ]
}

fn content(types: &[&str], schema: &Value) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": schema})))
            .collect(),
    )
}

struct OpSpec<'a> {
    method: &'a str,
    action: &'static str,
    description: String,
    gvk: Value,
    params: Vec<Value>,
    /// The request body: schema and content types.
    body: Option<(Value, Vec<&'static str>)>,
    /// Response codes with a body of `response` (in `produces`).
    codes: &'static [&'static str],
    response: Value,
    produces: &'static [&'static str],
}

/// Names and tags as Kubernetes forms them: `patchCoreV1NamespacedPod`,
/// tag `core_v1`.
struct Naming {
    group: String,
    version: String,
    tag: String,
}

impl Naming {
    fn new(group: &str, version: &str) -> Naming {
        let short = group.strip_suffix(".k8s.io").unwrap_or(group);
        let parts: Vec<String> = if group.is_empty() {
            vec!["Core".into()]
        } else {
            short
                .split(['.', '-'])
                .filter(|p| !p.is_empty())
                .map(capitalize)
                .collect()
        };
        let joined = parts.concat();
        let mut tag = joined.clone();
        if let Some(first) = tag.get(..1) {
            tag = first.to_ascii_lowercase() + &tag[1..];
        }
        Naming {
            group: joined,
            version: capitalize(version),
            tag: format!("{tag}_{version}"),
        }
    }

    fn op_id(&self, verb: &str, namespaced: bool, kind: &str, suffix: &str) -> String {
        format!(
            "{verb}{}{}{}{kind}{suffix}",
            self.group,
            self.version,
            if namespaced { "Namespaced" } else { "" }
        )
    }

    /// `deleteCoreV1CollectionNamespacedPod`.
    fn collection_op_id(&self, namespaced: bool, kind: &str) -> String {
        format!(
            "delete{}{}Collection{}{kind}",
            self.group,
            self.version,
            if namespaced { "Namespaced" } else { "" }
        )
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn operation(op: OpSpec<'_>, op_id: String, tag: &str) -> Value {
    let mut responses = Map::new();
    for code in op.codes {
        let description = match *code {
            "200" => "OK",
            "201" => "Created",
            "202" => "Accepted",
            _ => "",
        };
        responses.insert(
            code.to_string(),
            json!({"description": description, "content": content(op.produces, &op.response)}),
        );
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    let mut o = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": op_id,
        "parameters": op.params,
        "responses": responses,
        "x-kubernetes-action": op.action,
        GVK: op.gvk,
    });
    if let Some((schema, types)) = op.body {
        o["requestBody"] = json!({"content": content(&types, &schema), "required": true});
    }
    o
}

/// Adds the paths of one resource: collection, item, subresources.
fn resource_paths(
    spec: &ResourceSpec,
    schema: &str,
    list_schema: &str,
    builtin: bool,
    paths: &mut Map<String, Value>,
) {
    let naming = Naming::new(&spec.group, &spec.version);
    let ns = spec.namespaced;
    let kind = spec.kind.as_str();
    let has = |verb: &str| spec.verbs.iter().any(|v| v == verb);
    let this_gvk = gvk(&spec.group, &spec.version, kind);
    let obj = reference(schema);
    let patch_types: Vec<&'static str> = PATCH_TYPES
        .iter()
        .copied()
        .filter(|t| builtin || *t != STRATEGIC_MERGE_PATCH)
        .collect();

    let base = format!("/{}", gv_path(&spec.group, &spec.version));
    let collection = if ns {
        format!("{base}/namespaces/{{namespace}}/{}", spec.plural)
    } else {
        format!("{base}/{}", spec.plural)
    };
    let item = format!("{collection}/{{name}}");
    let namespace_param = param(
        "namespace",
        "path",
        "string",
        "The namespace the objects are in.",
    );
    let name_param = |what: &str| {
        param(
            "name",
            "path",
            "string",
            &format!("The name of the {what}."),
        )
    };
    let mut path_item = |path: &str, params: Vec<Value>, ops: Vec<(OpSpec<'_>, String)>| {
        if ops.is_empty() {
            return;
        }
        let mut p = Map::new();
        for (op, id) in ops {
            let method = op.method;
            p.insert(method.into(), operation(op, id, &naming.tag));
        }
        p.insert("parameters".into(), Value::Array(params));
        paths.insert(path.to_owned(), Value::Object(p));
    };
    let list_of = |what: &str| OpSpec {
        method: "get",
        action: "list",
        description: format!("list or watch objects of kind {what}"),
        gvk: this_gvk.clone(),
        params: list_params(),
        body: None,
        codes: &["200"],
        response: reference(list_schema),
        produces: LIST_RESPONSE_TYPES,
    };

    // The collection.
    let mut ops = Vec::new();
    if has("list") {
        ops.push((list_of(kind), naming.op_id("list", ns, kind, "")));
    }
    if has("create") {
        ops.push((
            OpSpec {
                method: "post",
                action: "post",
                description: format!("create a {kind}"),
                gvk: this_gvk.clone(),
                params: write_params(),
                body: Some((obj.clone(), vec!["*/*"])),
                codes: &["200", "201", "202"],
                response: obj.clone(),
                produces: RESPONSE_TYPES,
            },
            naming.op_id("create", ns, kind, ""),
        ));
    }
    if has("deletecollection") {
        let mut params = list_params();
        params.extend(delete_params());
        params.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        params.dedup_by(|a, b| a["name"] == b["name"]);
        ops.push((
            OpSpec {
                method: "delete",
                action: "deletecollection",
                description: format!("delete a collection of {kind}"),
                gvk: this_gvk.clone(),
                params,
                body: Some((reference(DELETE_OPTIONS), vec!["*/*"])),
                codes: &["200"],
                response: reference(STATUS),
                produces: RESPONSE_TYPES,
            },
            naming.collection_op_id(ns, kind),
        ));
    }
    let mut params = vec![pretty_param()];
    if ns {
        params.insert(0, namespace_param.clone());
    }
    path_item(&collection, params, ops);

    // All namespaces.
    if ns && has("list") {
        path_item(
            &format!("{base}/{}", spec.plural),
            vec![pretty_param()],
            vec![(
                list_of(kind),
                naming.op_id("list", false, kind, "ForAllNamespaces"),
            )],
        );
    }

    // One object.
    let item_ops =
        |target: &str, target_gvk: &Value, suffix: &str, what: &str, methods: &[&str]| {
            let target_obj = reference(target);
            let mut ops = Vec::new();
            for m in methods {
                let (method, verb, action) = match *m {
                    "get" => ("get", "read", "get"),
                    "update" => ("put", "replace", "put"),
                    "patch" => ("patch", "patch", "patch"),
                    "delete" => ("delete", "delete", "delete"),
                    _ => continue,
                };
                let op = match *m {
                    "get" => OpSpec {
                        method,
                        action,
                        description: format!("read {what}"),
                        gvk: target_gvk.clone(),
                        params: vec![],
                        body: None,
                        codes: &["200"],
                        response: target_obj.clone(),
                        produces: RESPONSE_TYPES,
                    },
                    "update" => OpSpec {
                        method,
                        action,
                        description: format!("replace {what}"),
                        gvk: target_gvk.clone(),
                        params: write_params(),
                        body: Some((target_obj.clone(), vec!["*/*"])),
                        codes: &["200", "201"],
                        response: target_obj.clone(),
                        produces: RESPONSE_TYPES,
                    },
                    "patch" => OpSpec {
                        method,
                        action,
                        description: format!("partially update {what}"),
                        gvk: target_gvk.clone(),
                        params: patch_params(),
                        body: Some((reference(PATCH), patch_types.clone())),
                        codes: &["200", "201"],
                        response: target_obj.clone(),
                        produces: RESPONSE_TYPES,
                    },
                    _ => OpSpec {
                        method,
                        action,
                        description: format!("delete {what}"),
                        gvk: target_gvk.clone(),
                        params: delete_params(),
                        body: Some((reference(DELETE_OPTIONS), vec!["*/*"])),
                        codes: &["200", "202"],
                        response: reference(STATUS),
                        produces: RESPONSE_TYPES,
                    },
                };
                let id = naming.op_id(verb, ns, kind, suffix);
                ops.push((op, id));
            }
            ops
        };
    let item_params = |what: &str| {
        let mut p = vec![name_param(what), pretty_param()];
        if ns {
            p.insert(1, namespace_param.clone());
        }
        p
    };
    let methods: Vec<&str> = ["get", "update", "patch", "delete"]
        .into_iter()
        .filter(|m| has(m))
        .collect();
    path_item(
        &item,
        item_params(kind),
        item_ops(
            schema,
            &this_gvk,
            "",
            &format!("the specified {kind}"),
            &methods,
        ),
    );

    // Subresources.
    for sub in &spec.subresources {
        let path = format!("{item}/{sub}");
        let suffix = match sub.as_str() {
            "ephemeralcontainers" => "EphemeralContainers".to_owned(),
            _ => capitalize(sub),
        };
        match sub.as_str() {
            "status" | "ephemeralcontainers" | "resize" => {
                let what = format!("{sub} of the specified {kind}");
                path_item(
                    &path,
                    item_params(kind),
                    item_ops(
                        schema,
                        &this_gvk,
                        &suffix,
                        &what,
                        &["get", "update", "patch"],
                    ),
                );
            }
            "scale" => {
                let Some(scale) = any_schema_name("autoscaling", "v1", "Scale") else {
                    continue;
                };
                path_item(
                    &path,
                    item_params("Scale"),
                    item_ops(
                        scale,
                        &gvk("autoscaling", "v1", "Scale"),
                        &suffix,
                        &format!("scale of the specified {kind}"),
                        &["get", "update", "patch"],
                    ),
                );
            }
            "finalize" => path_item(
                &path,
                item_params(kind),
                item_ops(
                    schema,
                    &this_gvk,
                    &suffix,
                    &format!("finalize of the specified {kind}"),
                    &["update"],
                ),
            ),
            "binding" | "eviction" | "token" => {
                let (g, v, k) = match sub.as_str() {
                    "binding" => ("", "v1", "Binding"),
                    "eviction" => ("policy", "v1", "Eviction"),
                    _ => ("authentication.k8s.io", "v1", "TokenRequest"),
                };
                let Some(target) = any_schema_name(g, v, k) else {
                    continue;
                };
                let target = reference(target);
                path_item(
                    &path,
                    item_params(kind),
                    vec![(
                        OpSpec {
                            method: "post",
                            action: "post",
                            description: format!("create {sub} of a {kind}"),
                            gvk: gvk(g, v, k),
                            params: write_params(),
                            body: Some((target.clone(), vec!["*/*"])),
                            codes: &["200", "201", "202"],
                            response: target,
                            produces: RESPONSE_TYPES,
                        },
                        naming.op_id("create", ns, kind, &suffix),
                    )],
                );
            }
            "log" => path_item(
                &path,
                item_params(kind),
                vec![(
                    OpSpec {
                        method: "get",
                        action: "get",
                        description: format!("read log of the specified {kind}"),
                        gvk: this_gvk.clone(),
                        params: [
                            "container",
                            "follow",
                            "insecureSkipTLSVerifyBackend",
                            "limitBytes",
                            "previous",
                            "sinceSeconds",
                            "stream",
                            "tailLines",
                            "timestamps",
                        ]
                        .iter()
                        .map(|n| {
                            let ty = match *n {
                                "follow"
                                | "insecureSkipTLSVerifyBackend"
                                | "previous"
                                | "timestamps" => "boolean",
                                "limitBytes" | "sinceSeconds" | "tailLines" => "integer",
                                _ => "string",
                            };
                            param(n, "query", ty, &format!("The log's {n}."))
                        })
                        .collect(),
                        body: None,
                        codes: &["200"],
                        response: json!({"type": "string"}),
                        produces: &[
                            "text/plain",
                            "application/json",
                            "application/yaml",
                            "application/vnd.kubernetes.protobuf",
                        ],
                    },
                    naming.op_id("read", ns, kind, &suffix),
                )],
            ),
            "exec" | "attach" | "portforward" | "proxy" => {
                let options = match sub.as_str() {
                    "exec" => "ExecOptions",
                    "attach" => "AttachOptions",
                    "portforward" => "PortForwardOptions",
                    _ => "ProxyOptions",
                };
                let methods: &[(&str, &str)] = if sub == "proxy" {
                    &[
                        ("get", "Get"),
                        ("post", "Post"),
                        ("put", "Put"),
                        ("delete", "Delete"),
                    ]
                } else {
                    &[("get", "Get"), ("post", "Post")]
                };
                let ops = methods
                    .iter()
                    .map(|(method, m)| {
                        (
                            OpSpec {
                                method,
                                action: "connect",
                                description: format!(
                                    "connect {method} requests to {sub} of {kind}"
                                ),
                                gvk: gvk(&spec.group, &spec.version, &format!("{kind}{options}")),
                                params: vec![],
                                body: None,
                                codes: &["200"],
                                response: json!({"type": "string"}),
                                produces: &["*/*"],
                            },
                            naming.op_id(&format!("connect{m}"), ns, kind, &suffix),
                        )
                    })
                    .collect();
                path_item(&path, item_params(kind), ops);
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Swagger 2.0 forms

/// A v3 schema in v2 form: references under `#/definitions/`, a
/// reference with siblings as `$ref` beside them, no `nullable`.
fn schema_v2(s: &Value) -> Value {
    match s {
        Value::Object(m) => {
            let mut out = Map::new();
            if let Some([Value::Object(only)]) =
                m.get("allOf").and_then(Value::as_array).map(Vec::as_slice)
            {
                if only.len() == 1 && only.contains_key("$ref") {
                    for (k, v) in m.iter().filter(|(k, _)| *k != "allOf") {
                        out.insert(k.clone(), schema_v2(v));
                    }
                    out.insert("$ref".into(), schema_v2(&only["$ref"]));
                    return Value::Object(out);
                }
            }
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("nullable", _) => {}
                    ("$ref", Value::String(r)) => {
                        out.insert(k.clone(), json!(r.replacen(COMPONENTS, DEFINITIONS, 1)));
                    }
                    _ => {
                        out.insert(k.clone(), schema_v2(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema_v2).collect()),
        Value::String(r) if r.starts_with(COMPONENTS) => {
            json!(r.replacen(COMPONENTS, DEFINITIONS, 1))
        }
        other => other.clone(),
    }
}

fn param_v2(p: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in p.as_object().into_iter().flatten() {
        if k == "schema" {
            for (sk, sv) in v.as_object().into_iter().flatten() {
                out.insert(sk.clone(), sv.clone());
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn path_item_v2(item: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in item.as_object().into_iter().flatten() {
        if k == "parameters" {
            out.insert(
                k.clone(),
                Value::Array(v.as_array().into_iter().flatten().map(param_v2).collect()),
            );
        } else {
            out.insert(k.clone(), operation_v2(v));
        }
    }
    Value::Object(out)
}

fn operation_v2(op: &Value) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(param_v2)
        .collect();
    let mut consumes: Vec<Value> = vec![json!("*/*")];
    if let Some(body) = op.get("requestBody") {
        let types = body["content"].as_object().cloned().unwrap_or_default();
        consumes = types.keys().map(|t| json!(t)).collect();
        if let Some((_, first)) = types.iter().next() {
            params.insert(
                0,
                json!({"name": "body", "in": "body", "required": true, "schema": schema_v2(&first["schema"])}),
            );
        }
    }
    let mut produces = BTreeSet::new();
    let mut responses = Map::new();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = json!({"description": r["description"]});
        if let Some(c) = r.get("content").and_then(Value::as_object) {
            produces.extend(c.keys().cloned());
            if let Some((_, first)) = c.iter().next() {
                resp["schema"] = schema_v2(&first["schema"]);
            }
        }
        responses.insert(code.clone(), resp);
    }
    for (k, v) in op.as_object().into_iter().flatten() {
        match k.as_str() {
            "parameters" | "requestBody" | "responses" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("consumes".into(), Value::Array(consumes));
    out.insert(
        "produces".into(),
        Value::Array(produces.into_iter().map(Value::String).collect()),
    );
    out.insert("schemes".into(), json!(["https"]));
    out.insert("parameters".into(), Value::Array(params));
    out.insert("responses".into(), Value::Object(responses));
    Value::Object(out)
}

#[cfg(test)]
mod tests;
