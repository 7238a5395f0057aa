//! PATCH in its four flavours: JSON patch, merge patch, strategic merge
//! patch, and server-side apply.

use std::sync::Arc;

use axum::http::header;
use serde_json::Value;
use store::Store;

use crate::handler::{check_kind, Request};
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
            let p: Value = serde_yaml_ng::from_slice(body).map_err(|e| bad(&e))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding YAML: the apply configuration must be an object",
                ));
            }
            crate::smp::apply(original, &p).map_err(|e| ApiError::bad_request(e.to_string()))
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

pub async fn patch(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
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
    let res = scope.res;
    if kind == PatchType::Apply {
        if req.params.get("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager to be set",
            ));
        }
        // Server-side apply creates the object when it does not exist.
        match rest::get(store, scope, name).await {
            Err(e) if e.code == 404 && part == Part::Main => {
                let obj: Value = serde_yaml_ng::from_slice(&req.body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                check_kind(res, &obj, res.kind)?;
                crate::typecheck::check(res, &obj)?;
                let mut obj = obj;
                if object::name(&obj).is_empty() {
                    object::set_meta(&mut obj, "name", name);
                }
                return rest::create(store, scope, obj, &req.params).await;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let body = req.body.clone();
    rest::update_with(store, scope, name, part, &req.params, move |old| {
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
        Ok(patched)
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
