//! Subresources other than status: scale, binding, eviction. (status is
//! handled by the generic storage; the streaming ones — log, exec, attach,
//! portforward — by `streaming`, before the body is read; proxy is not
//! served yet.)

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::handler::{decode_body, json_response, Request};
use crate::object;
use crate::rest::{self, Part, Scope};
use crate::status::{ApiError, ApiResult};
use crate::State;

pub async fn serve(
    state: &Arc<State>,
    scope: Scope<'_>,
    name: &str,
    sub: &str,
    req: &Request,
) -> ApiResult<Response> {
    let res = scope.res;
    if !res.subresources.iter().any(|s| s.name == sub) {
        return Err(ApiError::path_not_found());
    }
    match (sub, &req.method) {
        ("scale", &Method::GET) => {
            let obj = rest::get(&state.store, scope, name).await?;
            Ok(json_response(StatusCode::OK, &to_scale(&obj)))
        }
        ("scale", &Method::PUT | &Method::PATCH) => {
            let patched_scale = |old: &Value| -> ApiResult<Value> {
                let scale = requested(req, &to_scale(old))?;
                let replicas = scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        vec![crate::status::Cause {
                            reason: "FieldValueInvalid".into(),
                            message: format!(
                                "Invalid value: {replicas}: must be greater than or equal to 0"
                            ),
                            field: "spec.replicas".into(),
                        }],
                    ));
                }
                if let Some(rv) =
                    object::meta_str(&scale, "resourceVersion").filter(|r| !r.is_empty())
                {
                    if Some(rv) != object::meta_str(old, "resourceVersion") {
                        return Err(ApiError::stale(res.group, res.plural, name));
                    }
                }
                let mut new = old.clone();
                new["spec"]["replicas"] = json!(replicas);
                object::remove_meta(&mut new, "resourceVersion");
                Ok(new)
            };
            let updated = rest::update_with(
                &state.store,
                scope,
                name,
                Part::Main,
                &req.params,
                patched_scale,
            )
            .await?;
            Ok(json_response(StatusCode::OK, &to_scale(&updated)))
        }
        ("resize", &Method::GET) => {
            let obj = rest::get(&state.store, scope, name).await?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        // In-place resize: the pod with its containers' resources changed
        // (only those), which its node's agent then applies.
        ("resize", &Method::PUT | &Method::PATCH) => {
            let mut params = req.params.clone();
            params.set_internal(rest::RESIZE, "true");
            let updated =
                rest::update_with(&state.store, scope, name, Part::Resize, &params, |old| {
                    requested(req, old)
                })
                .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("ephemeralcontainers", &Method::GET) => {
            let obj = rest::get(&state.store, scope, name).await?;
            Ok(json_response(StatusCode::OK, &obj))
        }
        // `kubectl debug`: the pod with its ephemeral containers changed
        // (only those; what else the body changes is ignored).
        ("ephemeralcontainers", &Method::PUT | &Method::PATCH) => {
            let updated = rest::update_with(
                &state.store,
                scope,
                name,
                Part::EphemeralContainers,
                &req.params,
                |old| {
                    let mut new = requested(req, old)?;
                    crate::defaults::apply(res, &mut new);
                    Ok(new)
                },
            )
            .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("binding", &Method::POST) => {
            let binding = decode_body(&req.headers, &req.body)?;
            let node = binding
                .pointer("/target/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if node.is_empty() {
                return Err(ApiError::invalid(
                    "",
                    "Binding",
                    name,
                    vec![crate::status::Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value".into(),
                        field: "target.name".into(),
                    }],
                ));
            }
            bind(state, scope, name, &node).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        ("finalize", &Method::PUT) => {
            // Only spec.finalizers changes through finalize.
            let body = decode_body(&req.headers, &req.body)?;
            let finalizers = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let updated =
                rest::update_with(&state.store, scope, name, Part::Main, &req.params, |old| {
                    let mut next = old.clone();
                    next["spec"]["finalizers"] = finalizers.clone();
                    object::remove_meta(&mut next, "resourceVersion");
                    Ok(next)
                })
                .await?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        ("token", &Method::POST) => {
            let sa = rest::get(&state.store, scope, name).await?;
            let mut request = decode_body(&req.headers, &req.body)?;
            let issuer = state
                .authn
                .service_account_issuer()
                .ok_or_else(|| ApiError::internal("no service account signing key configured"))?;
            let seconds = request
                .pointer("/spec/expirationSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(3600);
            if seconds < 600 {
                return Err(ApiError::invalid(
                    "authentication.k8s.io",
                    "TokenRequest",
                    name,
                    vec![crate::status::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
                        field: "spec.expirationSeconds".into(),
                    }],
                ));
            }
            let audiences: Vec<String> = request
                .pointer("/spec/audiences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let claims = crate::sa_token::Claims {
                namespace: scope.namespace.unwrap_or_default().to_owned(),
                name: name.to_owned(),
                uid: object::meta_str(&sa, "uid").unwrap_or_default().to_owned(),
                audiences: audiences.clone(),
            };
            let now = chrono::Utc::now();
            let token = issuer
                .issue(&claims, seconds, now.timestamp())
                .map_err(ApiError::internal)?;
            let exp = (now + chrono::Duration::seconds(seconds))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let audiences = if audiences.is_empty() {
                vec![crate::sa_token::ISSUER.to_owned()]
            } else {
                audiences
            };
            request["apiVersion"] = json!("authentication.k8s.io/v1");
            request["kind"] = json!("TokenRequest");
            request["spec"]["audiences"] = json!(audiences);
            request["spec"]["expirationSeconds"] = json!(seconds);
            request["status"] = json!({"token": token, "expirationTimestamp": exp});
            Ok(json_response(StatusCode::CREATED, &request))
        }
        ("eviction", &Method::POST) => {
            let eviction = decode_body(&req.headers, &req.body)?;
            evict(state, scope, name, &eviction).await?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

/// What a PUT or PATCH of a subresource asks for: the body, or the
/// patch applied to `current`.
fn requested(req: &Request, current: &Value) -> ApiResult<Value> {
    if req.method == Method::PUT {
        return decode_body(&req.headers, &req.body);
    }
    let kind = crate::patch::patch_type(
        req.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )?;
    crate::patch::apply_patch(kind, current, &req.body)
}

/// policy/v1 Eviction: deletes the pod unless that would break its
/// PodDisruptionBudget (429), counting the disruption in the budget's status.
async fn evict(
    state: &Arc<State>,
    scope: Scope<'_>,
    name: &str,
    eviction: &Value,
) -> ApiResult<()> {
    let pod = rest::get(&state.store, scope, name).await?;
    let ns = scope.namespace.unwrap_or_default();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let terminal = matches!(phase, "Succeeded" | "Failed") || object::is_deleting(&pod);
    if !terminal {
        let pdb_res = api::registry::find("policy", "v1", "poddisruptionbudgets")
            .expect("PDBs are registered");
        let pdb_scope = Scope {
            res: pdb_res,
            namespace: Some(ns),
            schema: None,
        };
        let labels = object::meta(&pod).get("labels");
        let page = rest::list(
            &state.store,
            pdb_scope,
            &rest::Params::default(),
            &|pdb: &Value| {
                pdb.pointer("/spec/selector")
                    .and_then(|s| api::selector::from_label_selector_json(s).ok())
                    .is_some_and(|s| !s.is_empty() && s.matches_value(labels))
            },
        )
        .await?;
        match page.items.as_slice() {
            [] => {}
            [pdb] => {
                let pdb_name = object::name(pdb).to_owned();
                let pod_name = name.to_owned();
                rest::update_with(&state.store, pdb_scope, &pdb_name, Part::Status, &rest::Params::default(), |cur| {
                    let allowed = cur.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
                    if allowed <= 0 {
                        let healthy = cur.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                        let desired = cur.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                        let mut e = ApiError::too_many_requests(
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                        );
                        e.causes = vec![crate::status::Cause {
                            reason: "DisruptionBudget".into(),
                            message: format!(
                                "The disruption budget {} needs {desired} healthy pods and has {healthy} currently",
                                object::name(cur)
                            ),
                            field: String::new(),
                        }];
                        return Err(e);
                    }
                    let mut next = cur.clone();
                    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
                    next["status"]["disruptedPods"][&pod_name] = json!(object::now_rfc3339());
                    object::remove_meta(&mut next, "resourceVersion");
                    Ok(next)
                })
                .await?;
            }
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ))
            }
        }
    }
    let body = eviction
        .get("deleteOptions")
        .map(|o| o.to_string())
        .unwrap_or_default();
    let opts = rest::DeleteOptions::parse(body.as_bytes(), &rest::Params::default())?;
    rest::delete(&state.store, scope, name, &opts).await?;
    Ok(())
}

/// Sets spec.nodeName once, as pods/binding does.
async fn bind(state: &Arc<State>, scope: Scope<'_>, name: &str, node: &str) -> ApiResult<()> {
    let key = scope.key(name);
    for _ in 0..8 {
        let kv = rest::current(&state.store, scope, name).await?;
        let mut pod = rest::decode(&kv)?;
        if object::is_deleting(&pod) {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        if let Some(current) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is already assigned to node \"{current}\""),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        let conditions = pod["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut conditions: Vec<Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "PodScheduled")
            .collect();
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()}));
        pod["status"]["conditions"] = json!(conditions);
        match state
            .store
            .update(&key, rest::encode(&pod), kv.mod_revision)
            .await
        {
            Ok(_) => return Ok(()),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(scope.store_err(name)(e)),
        }
    }
    Err(ApiError::stale("", "pods", name))
}

/// The autoscaling/v1 Scale view of a scalable object.
fn to_scale(obj: &Value) -> Value {
    let meta = object::meta(obj);
    // The selector in its string form (matchLabels and matchExpressions;
    // ReplicationControllers have a plain map).
    let selector = match obj.pointer("/spec/selector") {
        Some(sel) if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() => {
            api::selector::from_label_selector_json(sel)
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        Some(sel) => api::selector::from_label_selector_json(&json!({"matchLabels": sel}))
            .map(|s| s.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}
