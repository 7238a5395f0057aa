//! PATCH in its four flavours: JSON patch, merge patch, strategic merge
//! patch, and server-side apply.

use std::sync::Arc;

use axum::http::header;
use serde_json::Value;
use store::Store;

use crate::handler::{check_kind, served as served_fn, to_storage, Request};
use crate::object;
use crate::rest::{self, Part, Scope};
use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub fn patch_type(content_type: &str) -> ApiResult<PatchType> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

/// Applies one patch document to an object.
pub fn apply_patch(kind: PatchType, original: &Value, body: &[u8]) -> ApiResult<Value> {
    let bad =
        |e: &dyn std::fmt::Display| ApiError::bad_request(format!("error decoding patch: {e}"));
    match kind {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| {
                ApiError::invalid_patch(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(doc)
        }
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &p);
            Ok(doc)
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| bad(&e))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a strategic merge patch must be a JSON object",
                ));
            }
            crate::smp::apply(original, &p).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        PatchType::Apply => {
            let config = apply_config(body)?;
            let manager = "before-first-apply";
            crate::ssa::apply(Some(original), &config, manager, "", true)
                .map_err(|_| ApiError::bad_request("invalid apply configuration"))
        }
    }
}

impl ApiError {
    pub fn invalid_patch(message: String) -> ApiError {
        let mut e = ApiError::invalid("", "", "", Vec::new());
        e.message = message;
        e.reason = "Invalid";
        e.code = 422;
        e
    }
}

/// Patches `name`. `scope` is where it is stored (its storage version);
/// `served` the version the client patches, which the patch applies to.
pub async fn patch(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    served: &'static api::registry::Resource,
    name: &str,
    part: Part,
    req: &Request,
) -> ApiResult<Value> {
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = patch_type(ct)?;
    let res = served;
    let stored = scope.res;
    if kind == PatchType::Apply {
        if req.params.get("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        let config = apply_config(&req.body)?;
        check_kind(res, &config, res.kind)?;
        crate::typecheck::check(res, &config)?;
        let manager = req
            .params
            .get("fieldManager")
            .unwrap_or_default()
            .to_owned();
        let force = req.params.flag("force");
        let api_version = res.api_version();
        // Server-side apply creates the object when it does not exist.
        match rest::get(store, scope, name).await {
            Err(e) if e.code == 404 && part == Part::Main => {
                let mut obj = crate::ssa::apply(None, &config, &manager, &api_version, force)
                    .map_err(|c| conflict_error(res, name, &c))?;
                obj["apiVersion"] = config["apiVersion"].clone();
                obj["kind"] = config["kind"].clone();
                if object::name(&obj).is_empty() {
                    object::set_meta(&mut obj, "name", name);
                }
                let obj = to_storage(stored, obj);
                return rest::create(store, scope, obj, &req.params).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        return rest::update_with(
            store,
            scope,
            name,
            part,
            &req.params.applied(),
            move |old| {
                let converted;
                let old = if std::ptr::eq(res, stored) {
                    old
                } else {
                    converted = served_fn(res, old.clone());
                    &converted
                };
                let mut applied =
                    crate::ssa::apply(Some(old), &config, &manager, &api_version, force)
                        .map_err(|c| conflict_error(res, name, &c))?;
                object::remove_meta(&mut applied, "resourceVersion");
                Ok(to_storage(stored, applied))
            },
        )
        .await;
    }
    let body = req.body.clone();
    rest::update_with(store, scope, name, part, &req.params, move |old| {
        let converted;
        let old = if std::ptr::eq(res, stored) {
            old
        } else {
            converted = served_fn(res, old.clone());
            &converted
        };
        let mut patched = apply_patch(kind, old, &body)?;
        if kind == PatchType::Apply {
            check_kind(res, &patched, res.kind)?;
        }
        // A patch may not change identity.
        if patched.get("kind") != old.get("kind")
            || patched.get("apiVersion") != old.get("apiVersion")
        {
            check_kind(res, &patched, res.kind)?;
        }
        crate::typecheck::check(res, &patched)?;
        // Without a resourceVersion in the patch itself, a patch applies to
        // whatever is current: drop the one carried over from `old`.
        let patch_sets_rv = patch_names_rv(kind, &body);
        if !patch_sets_rv {
            object::remove_meta(&mut patched, "resourceVersion");
        }
        Ok(to_storage(stored, patched))
    })
    .await
}

fn patch_names_rv(kind: PatchType, body: &[u8]) -> bool {
    match kind {
        PatchType::Json => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|ops| {
                ops.iter()
                    .any(|op| op.get("path") == Some(&Value::from("/metadata/resourceVersion")))
            }),
        PatchType::Merge | PatchType::Strategic => {
            serde_json::from_slice::<Value>(body).ok().is_some_and(|v| {
                v.pointer("/metadata/resourceVersion")
                    .is_some_and(|r| !r.is_null())
            })
        }
        PatchType::Apply => false,
    }
}

fn apply_config(body: &[u8]) -> ApiResult<Value> {
    let config: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration must be an object",
        ));
    }
    Ok(config)
}

/// Kubernetes' apply conflict: 409 with one cause per field.
fn conflict_error(
    res: &api::registry::Resource,
    name: &str,
    conflicts: &[crate::ssa::Conflict],
) -> ApiError {
    let n = conflicts.len();
    let message = if n == 1 {
        let c = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            c.manager, c.api_version, c.path
        )
    } else {
        let mut lines = vec![format!("Apply failed with {n} conflicts:")];
        let mut managers: Vec<(&str, &str)> = conflicts
            .iter()
            .map(|c| (c.manager.as_str(), c.api_version.as_str()))
            .collect();
        managers.dedup();
        for (m, v) in managers {
            lines.push(format!("conflicts with \"{m}\" using {v}:"));
            for c in conflicts.iter().filter(|c| c.manager == m) {
                lines.push(format!("- {}", c.path));
            }
        }
        lines.join("\n")
    };
    let mut e = ApiError::conflict(res.group, res.plural, name, "");
    e.message = message;
    e.causes = conflicts
        .iter()
        .map(|c| crate::status::Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{}\" using {}", c.manager, c.api_version),
            field: c.path.clone(),
        })
        .collect();
    e
}
