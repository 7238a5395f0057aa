//! Request dispatch: path → resource, verb → REST storage, and content
//! negotiation (JSON, YAML bodies; JSON or Table answers).

use std::sync::Arc;

use api::registry::Resource;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::auth::User;
use crate::object;
use crate::registry::CustomVersion;
use crate::request::RequestInfo;
use crate::rest::{self, DeleteOptions, Params, Part, Scope};
use crate::status::{ApiError, ApiResult};
use crate::{patch, watch, State};

/// Largest request body accepted (Kubernetes' limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub struct Request {
    pub method: Method,
    pub info: RequestInfo,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: User,
}

/// How the client wants objects back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Object,
    Table(api::table::IncludeObject),
}

pub fn output(headers: &HeaderMap, params: &Params) -> Output {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first acceptable media type wins; kubectl lists Table first.
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") {
            if p.contains("g=meta.k8s.io") {
                let include = match params.get("includeObject") {
                    Some("None") => api::table::IncludeObject::None,
                    Some("Object") => api::table::IncludeObject::Object,
                    _ => api::table::IncludeObject::Metadata,
                };
                return Output::Table(include);
            }
            continue;
        }
        if p.starts_with("application/json") || p.starts_with("*/*") || p.is_empty() {
            return Output::Object;
        }
    }
    Output::Object
}

pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(body).expect("JSON values serialize"),
    )
        .into_response()
}

/// Decodes a request body (JSON or YAML) into an object.
fn is_service(res: &Resource) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

/// Creates an object; a Service first gets its ClusterIP and node ports
/// (released again if the create fails).
pub async fn create_with_allocations(
    state: &Arc<State>,
    scope: Scope<'_>,
    mut obj: Value,
    params: &Params,
) -> ApiResult<Value> {
    let mut held = Vec::new();
    if let (true, Some(cidr), false) =
        (is_service(scope.res), state.service_cidr, params.dry_run()?)
    {
        if let Some(ns) = scope.namespace {
            object::set_meta(&mut obj, "namespace", ns);
        }
        crate::defaults::apply(scope.res, &mut obj);
        held = crate::alloc::allocate(&state.store, cidr, &mut obj).await?;
    }
    if scope.res.group.is_empty() && scope.res.kind == "Pod" {
        if let Some(ns) = scope.namespace {
            if let Err(why) =
                crate::serviceaccount_admission::admit(&state.store, ns, &mut obj).await
            {
                let name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: {why}"
                )));
            }
        }
    }
    match rest::create(&state.store, scope, obj, params).await {
        Ok(created) => Ok(created),
        Err(e) => {
            crate::alloc::release(&state.store, &held).await;
            Err(e)
        }
    }
}

/// A deleted Service gives its addresses and ports back.
async fn release_if_gone(state: &Arc<State>, scope: Scope<'_>, obj: &Value, opts: &DeleteOptions) {
    if !is_service(scope.res) || opts.dry_run {
        return;
    }
    if let Ok(None) = state.store.get(&scope.key(object::name(obj))).await {
        crate::alloc::release(&state.store, &crate::alloc::held(obj)).await;
    }
}

/// A DELETE's body as JSON (kubectl's typed clients send DeleteOptions as
/// protobuf).
fn delete_body(req: &Request) -> ApiResult<Vec<u8>> {
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::protobuf::is_protobuf(ct) && !req.body.is_empty() {
        Ok(decode_body(&req.headers, &req.body)?
            .to_string()
            .into_bytes())
    } else {
        Ok(req.body.to_vec())
    }
}

/// Under `fieldValidation=Strict`, a JSON body with a key twice is a 400.
fn strict_duplicates(params: &Params, body: &[u8]) -> ApiResult<()> {
    if params.get("fieldValidation") != Some("Strict") {
        return Ok(());
    }
    let dups = crate::duplicates::find(body);
    if dups.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = dups
        .iter()
        .map(|d| format!("duplicate field \"{d}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "strict decoding error: {}",
        list.join(", ")
    )))
}

pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode_to_json(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode protobuf body: {e}")))?,
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| {
                ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
            })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: the body is not a JSON object",
        ));
    }
    Ok(value)
}

/// Fills a body's missing apiVersion and kind from the endpoint, as
/// Kubernetes' decoder defaults them (clients such as the Python one send
/// bodies without them).
pub fn default_kind(res: &Resource, obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get("kind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            m.insert("kind".into(), Value::from(res.kind));
        }
        if m.get("apiVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            m.insert("apiVersion".into(), Value::from(res.api_version()));
        }
    }
}

/// Checks that a body's apiVersion and kind are the endpoint's.
pub fn check_kind(res: &Resource, obj: &Value, what: &str) -> ApiResult<()> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'Kind' is missing in '{}'",
            truncate(&obj.to_string(), 200)
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Object 'apiVersion' is missing in '{}'",
            truncate(&obj.to_string(), 200)
        )));
    }
    if api_version != res.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if kind != what {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({what})"
        )));
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub async fn handle(state: Arc<State>, req: Request) -> Response {
    tracing::debug!(user = %req.user.name, method = %req.method, info = ?req.info, "request");
    let result = dispatch(&state, &req).await;
    match result {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(state: &Arc<State>, req: &Request) -> ApiResult<Response> {
    let info = &req.info;
    let res = state
        .registry
        .find(&info.group, &info.version, &info.resource)
        .ok_or_else(ApiError::path_not_found)?;
    if info.namespace.is_some() && !res.namespaced {
        return Err(ApiError::path_not_found());
    }
    if info.subresource.is_none() {
        let verb = match (&req.method, info.name.is_some()) {
            (&Method::GET, false) if req.params.flag("watch") => "watch",
            (&Method::GET, false) => "list",
            (&Method::GET, true) => "get",
            (&Method::POST, false) => "create",
            (&Method::PUT, true) => "update",
            (&Method::PATCH, true) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "",
        };
        if !res.verbs.contains(&verb) {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
    }
    if crate::resource_metrics::is_metrics(res) {
        let out = output(&req.headers, &req.params);
        return crate::resource_metrics::serve(state, req, res, out).await;
    }
    let custom = state
        .registry
        .custom(&info.group, &info.version, &info.resource);
    let schema = custom.as_ref().and_then(|c| c.schema.as_ref());
    // Reads and writes go to the storage version; what the client sends is
    // converted to it and what it gets back to the version it asked for.
    let stored = storage_resource(state, res);
    let scope = Scope {
        res: stored,
        namespace: info.namespace.as_deref(),
        schema,
    };
    let out = output(&req.headers, &req.params);
    let store = &state.store;
    let name = info.name.as_deref();
    match (&req.method, name, info.subresource.as_deref()) {
        (&Method::GET, None, None) => {
            if req.params.flag("watch") {
                return watch::serve(
                    state.clone(),
                    scope_owned(res, info),
                    custom.clone(),
                    req.params.clone(),
                    out,
                )
                .await;
            }
            let filter = selectors(res, &req.params)?;
            let mut page = if req.params.get("resourceVersion") == Some("0")
                && req.params.get("continue").is_none()
            {
                // "Any version": served from the watch cache, whole (as
                // Kubernetes does, limit does not apply).
                let cache = state
                    .caches
                    .get(store, &api::registry::storage_prefix(res, None));
                let (objects, revision) = cache.snapshot(&scope.prefix()).await;
                if let Output::Object = out {
                    let items = objects
                        .iter()
                        .filter(|o| filter(o))
                        .map(|o| served_ref(res, o));
                    return Ok((
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        rest::list_json(res, items, revision, None),
                    )
                        .into_response());
                }
                let items = objects
                    .iter()
                    .filter(|o| filter(o))
                    .map(|o| (**o).clone())
                    .collect();
                rest::ListPage {
                    items,
                    revision,
                    continue_token: None,
                    remaining: None,
                }
            } else {
                // Read from the store, with the objects the watch cache
                // holds at the same revision taken from it.
                let cache = state
                    .caches
                    .get(store, &api::registry::storage_prefix(res, None));
                let shared =
                    rest::list_shared(store, scope, &req.params, &|o| filter(o), Some(&cache))
                        .await?;
                if let Output::Object = out {
                    let items = shared.items.iter().map(|o| served_ref(res, o));
                    return Ok((
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, "application/json")],
                        rest::list_json(
                            res,
                            items,
                            shared.revision,
                            shared.continue_token.as_deref(),
                        ),
                    )
                        .into_response());
                }
                rest::ListPage {
                    items: shared.items.iter().map(|o| (**o).clone()).collect(),
                    revision: shared.revision,
                    continue_token: shared.continue_token,
                    remaining: shared.remaining,
                }
            };
            page.items = served_all(res, page.items);
            Ok(match out {
                Output::Table(include) => {
                    let mut meta = json!({"resourceVersion": page.revision.to_string()});
                    if let Some(c) = &page.continue_token {
                        meta["continue"] = json!(c);
                    }
                    json_response(
                        StatusCode::OK,
                        &make_table(res, custom.as_ref(), &page.items, include, meta),
                    )
                }
                Output::Object => json_response(StatusCode::OK, &rest::list_object(res, page)),
            })
        }
        (&Method::GET, Some(name), None) => {
            let obj = rest::get(store, scope, name).await?;
            Ok(respond(StatusCode::OK, res, custom.as_ref(), obj, out))
        }
        (&Method::POST, None, None) if crate::reviews::is_review(res) => {
            let mut obj = decode_body(&req.headers, &req.body)?;
            default_kind(res, &mut obj);
            check_kind(res, &obj, res.kind)?;
            let answered = crate::reviews::answer(state, res, obj, &req.user).await;
            Ok(json_response(StatusCode::CREATED, &answered))
        }
        (&Method::POST, None, None) => {
            if res.namespaced && info.namespace.is_none() {
                return Err(ApiError::path_not_found());
            }
            let mut obj = decode_body(&req.headers, &req.body)?;
            strict_duplicates(&req.params, &req.body)?;
            default_kind(res, &mut obj);
            check_kind(res, &obj, res.kind)?;
            crate::typecheck::check(res, &obj)?;
            let obj = to_storage(stored, obj);
            let created = create_with_allocations(state, scope, obj, &req.params).await?;
            Ok(respond(
                StatusCode::CREATED,
                res,
                custom.as_ref(),
                created,
                out,
            ))
        }
        (&Method::PUT, Some(name), None | Some("status")) => {
            let part = part_of(info)?;
            let mut obj = decode_body(&req.headers, &req.body)?;
            strict_duplicates(&req.params, &req.body)?;
            default_kind(res, &mut obj);
            check_kind(res, &obj, res.kind)?;
            crate::typecheck::check(res, &obj)?;
            let obj = to_storage(stored, obj);
            let updated = rest::update(store, scope, name, obj, part, &req.params).await?;
            Ok(respond(StatusCode::OK, res, custom.as_ref(), updated, out))
        }
        (&Method::PATCH, Some(name), None | Some("status")) => {
            let part = part_of(info)?;
            let updated = patch::patch(store, scope, res, name, part, req).await?;
            Ok(respond(StatusCode::OK, res, custom.as_ref(), updated, out))
        }
        (&Method::GET, Some(name), Some("status")) => {
            let obj = rest::get(store, scope, name).await?;
            Ok(respond(StatusCode::OK, res, custom.as_ref(), obj, out))
        }
        (&Method::DELETE, Some(name), None) => {
            let opts = DeleteOptions::parse(&delete_body(req)?, &req.params)?;
            let obj = rest::delete(store, scope, name, &opts).await?;
            release_if_gone(state, scope, &obj, &opts).await;
            Ok(respond(StatusCode::OK, res, None, obj, Output::Object))
        }
        (&Method::DELETE, None, None) => {
            let opts = DeleteOptions::parse(&delete_body(req)?, &req.params)?;
            let filter = selectors(res, &req.params)?;
            let mut params = req.params.clone();
            params.0.remove("limit");
            params.0.remove("continue");
            let page = rest::list(store, scope, &params, &|o| filter(o)).await?;
            let mut deleted = Vec::new();
            for item in page.items {
                let ns = object::namespace(&item).map(str::to_owned);
                let item_scope = Scope {
                    res,
                    namespace: ns.as_deref(),
                    schema,
                };
                match rest::delete(store, item_scope, object::name(&item), &opts).await {
                    Ok(obj) => {
                        release_if_gone(state, item_scope, &obj, &opts).await;
                        deleted.push(obj)
                    }
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            let list = rest::list_object(
                res,
                rest::ListPage {
                    items: served_all(res, deleted),
                    revision: page.revision,
                    continue_token: None,
                    remaining: None,
                },
            );
            Ok(json_response(StatusCode::OK, &list))
        }
        (_, Some(name), Some(sub)) => crate::subresource::serve(state, scope, name, sub, req).await,
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

fn part_of(info: &RequestInfo) -> ApiResult<Part> {
    Ok(match info.subresource.as_deref() {
        None => Part::Main,
        Some("status") => Part::Status,
        Some(_) => return Err(ApiError::path_not_found()),
    })
}

/// An owned copy of the scope for handlers that outlive the request.
pub struct OwnedScope {
    pub res: &'static Resource,
    pub namespace: Option<String>,
}

impl OwnedScope {
    pub fn scope(&self) -> Scope<'_> {
        Scope {
            res: self.res,
            namespace: self.namespace.as_deref(),
            schema: None,
        }
    }
}

fn scope_owned(res: &'static Resource, info: &RequestInfo) -> OwnedScope {
    OwnedScope {
        res,
        namespace: info.namespace.clone(),
    }
}

/// A Table of objects: the kind's printer, or a CRD's printer columns.
pub fn make_table(
    res: &Resource,
    custom: Option<&CustomVersion>,
    objs: &[Value],
    include: api::table::IncludeObject,
    meta: Value,
) -> Value {
    let now = chrono::Utc::now();
    match custom {
        Some(c) => api::table::custom_table(&c.printer_columns, objs, now, include, meta),
        None => api::table::table(res.group, res.kind, objs, now, include, meta),
    }
}

/// The resource objects of `res` are stored as: its kind's storage
/// version when that is another one.
pub fn storage_resource(state: &State, res: &'static Resource) -> &'static Resource {
    api::convert::storage_version(res.group, res.kind)
        .filter(|v| *v != res.version)
        .and_then(|v| state.registry.find(res.group, v, res.plural))
        .unwrap_or(res)
}

/// Whether `obj` says it is in `res`'s group/version.
pub fn in_version(obj: &Value, res: &Resource) -> bool {
    let Some(av) = obj.get("apiVersion").and_then(Value::as_str) else {
        return false;
    };
    match av.split_once('/') {
        Some((g, v)) => g == res.group && v == res.version,
        None => res.group.is_empty() && av == res.version,
    }
}

/// An object of `res`'s kind in the version `res` serves (other objects,
/// such as a Scale or a Status, pass unchanged).
pub fn served(res: &Resource, obj: Value) -> Value {
    if in_version(&obj, res) || obj.get("kind").and_then(Value::as_str) != Some(res.kind) {
        return obj;
    }
    api::convert::convert(obj, res.group, res.version)
}

/// [`served`] of a borrowed object: copied only when it must be converted.
fn served_ref<'a>(res: &Resource, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
    if in_version(obj, res) || obj.get("kind").and_then(Value::as_str) != Some(res.kind) {
        std::borrow::Cow::Borrowed(obj)
    } else {
        std::borrow::Cow::Owned(api::convert::convert(obj.clone(), res.group, res.version))
    }
}

pub fn served_all(res: &Resource, objs: Vec<Value>) -> Vec<Value> {
    objs.into_iter().map(|o| served(res, o)).collect()
}

/// A client's object (already checked against the version it was sent to)
/// in the storage version.
pub fn to_storage(stored: &Resource, obj: Value) -> Value {
    served(stored, obj)
}

/// One object in the form the client asked for.
pub fn respond(
    code: StatusCode,
    res: &Resource,
    custom: Option<&CustomVersion>,
    obj: Value,
    out: Output,
) -> Response {
    let obj = served(res, obj);
    match out {
        Output::Object => json_response(code, &obj),
        Output::Table(include) => {
            let rv = object::meta_str(&obj, "resourceVersion")
                .unwrap_or("")
                .to_owned();
            let table = make_table(
                res,
                custom,
                std::slice::from_ref(&obj),
                include,
                json!({"resourceVersion": rv}),
            );
            json_response(code, &table)
        }
    }
}

/// The label and field selectors of a list or watch, as one predicate.
pub fn selectors(
    res: &'static Resource,
    params: &Params,
) -> ApiResult<impl Fn(&Value) -> bool + Send + Sync + 'static> {
    let labels = match params.get("labelSelector") {
        Some(s) => Some(
            api::selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let fields = match params.get("fieldSelector") {
        Some(s) => {
            let sel = api::fields::FieldSelector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
            api::fields::check_supported(res, &sel).map_err(ApiError::bad_request)?;
            Some(sel)
        }
        None => None,
    };
    Ok(move |obj: &Value| {
        labels
            .as_ref()
            .is_none_or(|l| l.matches_value(object::meta(obj).get("labels")))
            && fields.as_ref().is_none_or(|f| f.matches(obj, res))
    })
}
