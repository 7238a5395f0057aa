//! Discovery: /api, /apis (legacy and aggregated apidiscovery.k8s.io/v2),
//! /api/v1 and /apis/{group}/{version} resource lists, /version.

use api::registry::{self, Resource};

use crate::registry::Registry;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::handler::json_response;
use crate::status::ApiError;

/// Which aggregated discovery version the client accepts, if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

fn aggregated_response(version: &str, items: Vec<Value>) -> Response {
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"),
        )],
        serde_json::to_vec(&body).unwrap(),
    )
        .into_response()
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0+rkube",
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, goarch()),
    })
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn api(reg: &Registry, headers: &HeaderMap) -> Response {
    if let Some(v) = aggregated(headers) {
        return aggregated_response(v, vec![group_item(reg, &core_group(reg))]);
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
    )
}

fn core_group(reg: &Registry) -> registry::Group {
    reg.groups()
        .into_iter()
        .find(|g| g.name.is_empty())
        .expect("the core group is registered")
}

pub fn apis(reg: &Registry, headers: &HeaderMap) -> Response {
    let groups: Vec<registry::Group> = reg
        .groups()
        .into_iter()
        .filter(|g| !g.name.is_empty())
        .collect();
    if let Some(v) = aggregated(headers) {
        return aggregated_response(v, groups.iter().map(|g| group_item(reg, g)).collect());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": groups.iter().map(api_group).collect::<Vec<_>>(),
        }),
    )
}

fn api_group(g: &registry::Group) -> Value {
    json!({
        "name": g.name,
        "versions": g.versions.iter().map(|v| json!({"groupVersion": format!("{}/{v}", g.name), "version": v})).collect::<Vec<_>>(),
        "preferredVersion": {"groupVersion": format!("{}/{}", g.name, g.preferred), "version": g.preferred},
    })
}

pub fn group(reg: &Registry, name: &str) -> Response {
    match reg
        .groups()
        .into_iter()
        .find(|g| g.name == name && !name.is_empty())
    {
        Some(g) => {
            let mut body = api_group(&g);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &body)
        }
        None => ApiError::path_not_found().into_response(),
    }
}

fn resources_of(reg: &Registry, group: &str, version: &str) -> Vec<&'static Resource> {
    reg.all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

/// The APIResourceList of one group/version, or None if it is not served.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Response {
    let resources = resources_of(reg, group, version);
    if resources.is_empty() {
        return ApiError::path_not_found().into_response();
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let mut list = Vec::new();
    for r in resources {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group || s.version != r.version {
                sub["group"] = json!(s.group);
                sub["version"] = json!(s.version);
            }
            list.push(sub);
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

fn group_item(reg: &Registry, g: &registry::Group) -> Value {
    // The preferred version first, as Kubernetes orders them.
    let mut versions: Vec<&str> = g.versions.to_vec();
    versions.sort_by_key(|v| *v != g.preferred);
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let resources: Vec<Value> = resources_of(reg, g.name, v)
                .into_iter()
                .map(|r| {
                    let mut entry = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        entry["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        entry["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        entry["subresources"] = r
                            .subresources
                            .iter()
                            .map(|s| {
                                json!({
                                    "subresource": s.name,
                                    "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                                    "verbs": s.verbs,
                                })
                            })
                            .collect();
                    }
                    entry
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut item = json!({"metadata": {"creationTimestamp": null}, "versions": versions});
    if !g.name.is_empty() {
        item["metadata"]["name"] = json!(g.name);
    }
    item
}

/// The OpenAPI v3 document of one group/version, built-in and custom
/// resources alike.
fn openapi_doc(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources = resources_of(reg, group, version);
    if resources.is_empty() {
        return None;
    }
    let customs: Vec<Option<crate::registry::CustomVersion>> = resources
        .iter()
        .map(|r| reg.custom(r.group, r.version, r.plural))
        .collect();
    let specs: Vec<api::openapi::ResourceSpec> = resources
        .iter()
        .zip(customs)
        .map(|(r, c)| api::openapi::ResourceSpec {
            group: r.group.to_owned(),
            version: r.version.to_owned(),
            kind: r.kind.to_owned(),
            plural: r.plural.to_owned(),
            namespaced: r.namespaced,
            verbs: r.verbs.iter().map(|v| v.to_string()).collect(),
            subresources: r.subresources.iter().map(|s| s.name.to_owned()).collect(),
            schema: c.and_then(|c| c.schema).filter(|s| !s.is_null()),
        })
        .collect();
    // Building a document walks every schema it uses (tens of ms for
    // core/v1); the same resources give the same document, so it is kept
    // until they change (a CRD added, changed or removed).
    type Cache = std::collections::HashMap<
        (String, String),
        (Vec<api::openapi::ResourceSpec>, std::sync::Arc<Value>),
    >;
    static DOCS: std::sync::OnceLock<std::sync::Mutex<Cache>> = std::sync::OnceLock::new();
    let cache = DOCS.get_or_init(Default::default);
    let key = (group.to_owned(), version.to_owned());
    if let Some((cached_specs, doc)) = cache.lock().unwrap().get(&key) {
        if *cached_specs == specs {
            return Some(Value::clone(doc));
        }
    }
    let doc = std::sync::Arc::new(api::openapi::v3_group_version(group, version, &specs));
    cache.lock().unwrap().insert(key, (specs, doc.clone()));
    Some(Value::clone(&doc))
}

/// `/openapi/v2`: every served resource in one Swagger 2.0 document,
/// as protobuf when the client asks for it (kubectl does), else JSON.
pub fn openapi_v2(reg: &Registry, headers: &axum::http::HeaderMap) -> Response {
    let specs: Vec<api::openapi::ResourceSpec> = reg
        .all()
        .into_iter()
        .map(|r| {
            let c = reg.custom(r.group, r.version, r.plural);
            api::openapi::ResourceSpec {
                group: r.group.to_owned(),
                version: r.version.to_owned(),
                kind: r.kind.to_owned(),
                plural: r.plural.to_owned(),
                namespaced: r.namespaced,
                verbs: r.verbs.iter().map(|v| v.to_string()).collect(),
                subresources: r.subresources.iter().map(|s| s.name.to_owned()).collect(),
                schema: c.and_then(|c| c.schema).filter(|s| !s.is_null()),
            }
        })
        .collect();
    type Cache = (
        Vec<api::openapi::ResourceSpec>,
        std::sync::Arc<(Vec<u8>, Vec<u8>)>,
    );
    static DOC: std::sync::Mutex<Option<Cache>> = std::sync::Mutex::new(None);
    let cached = {
        let guard = DOC.lock().unwrap();
        guard
            .as_ref()
            .filter(|(s, _)| *s == specs)
            .map(|(_, d)| d.clone())
    };
    let doc = match cached {
        Some(d) => d,
        None => {
            let json = api::openapi::v2(&specs);
            let d = std::sync::Arc::new((
                serde_json::to_vec(&json).unwrap_or_default(),
                crate::openapi_v2::encode(&json),
            ));
            *DOC.lock().unwrap() = Some((specs, d.clone()));
            d
        }
    };
    let wants_protobuf = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    if wants_protobuf {
        (
            StatusCode::OK,
            // The media type clients ask with is not a valid Content-Type
            // (Go's mime parser rejects the '@'); Kubernetes answers with
            // octet-stream too.
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            doc.1.clone(),
        )
            .into_response()
    } else {
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            doc.0.clone(),
        )
            .into_response()
    }
}

/// `/openapi/v3` and `/openapi/v3/{api/v1|apis/G/V}`.
pub fn openapi_v3(reg: &Registry, rest: &[&str]) -> Response {
    match rest {
        [] => {
            let mut docs = Vec::new();
            for g in reg.groups() {
                for v in &g.versions {
                    if let Some(doc) = openapi_doc(reg, g.name, v) {
                        docs.push((g.name.to_owned(), v.to_string(), doc));
                    }
                }
            }
            json_response(StatusCode::OK, &api::openapi::v3_root(&docs))
        }
        ["api", version] => match openapi_doc(reg, "", version) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => ApiError::path_not_found().into_response(),
        },
        ["apis", group, version] => match openapi_doc(reg, group, version) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => ApiError::path_not_found().into_response(),
        },
        _ => ApiError::path_not_found().into_response(),
    }
}
