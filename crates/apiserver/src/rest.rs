//! The generic REST storage of every resource: get, list, create, update,
//! patch, delete, deletecollection over the store, with Kubernetes' metadata
//! rules. Kind-specific behaviour lives in `strategy`.

use std::collections::HashMap;
use std::sync::Arc;

use api::registry::Resource;
use serde_json::{json, Value};
use store::{ListOptions, Revision, Store};

use crate::object::{self, meta_str};
use crate::status::{from_store, ApiError, ApiResult, Cause};
use crate::strategy;

/// Query parameters, last value wins.
#[derive(Clone, Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>) -> ApiResult<Params> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        // Keys starting with '_' are the server's own (see APPLIED).
        Ok(Params(
            pairs
                .into_iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .collect(),
        ))
    }
    /// Marks the parameters of a server-side apply, whose managedFields the
    /// apply itself computed.
    pub fn applied(&self) -> Params {
        let mut p = self.clone();
        p.0.insert(APPLIED.into(), "true".into());
        p
    }

    /// Sets one of the server's own parameters (a key starting with `_`).
    pub fn set_internal(&mut self, k: &str, v: &str) {
        debug_assert!(k.starts_with('_'));
        self.0.insert(k.into(), v.into());
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other} (supported values: All)"
            ))),
        }
    }
    pub fn i64(&self, k: &str) -> ApiResult<Option<i64>> {
        self.get(k)
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid value {v:?} for parameter {k}"))
                })
            })
            .transpose()
    }
}

/// The internal parameter set on applies (clients cannot send it: keys
/// starting with '_' are dropped when parsing).
const APPLIED: &str = "_applied";

/// The internal parameter marking a write through `pods/resize`, which
/// is validated as a resize rather than as a pod update.
pub const RESIZE: &str = "_resize";

/// The internal parameter carrying the service range (CIDR text) to
/// Service updates, which allocate and release addresses and node ports
/// as the type and ports change.
pub const SERVICE_CIDR: &str = "_serviceCidr";

/// Where one resource's objects live and how they are named in errors.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub res: &'static Resource,
    pub namespace: Option<&'a str>,
    /// A custom resource's openAPIV3Schema: defaults, pruning, validation.
    pub schema: Option<&'a Value>,
}

impl Scope<'_> {
    pub fn key(&self, name: &str) -> String {
        api::registry::storage_key(self.res, self.namespace, name)
    }
    pub fn prefix(&self) -> String {
        api::registry::storage_prefix(self.res, self.namespace)
    }
    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.res.group, self.res.plural, name)
    }
    pub fn store_err(&self, name: &str) -> impl Fn(store::Error) -> ApiError + '_ {
        let name = name.to_owned();
        move |e| from_store(e, self.res.group, self.res.plural, &name)
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &store::KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    object::set_meta(&mut obj, "resourceVersion", kv.mod_revision.to_string());
    Ok(obj)
}

/// Encodes an object for the store: without resourceVersion, which is the
/// store's revision.
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    object::remove_meta(&mut obj, "resourceVersion");
    serde_json::to_vec(&obj).expect("JSON values serialize")
}

pub fn with_rv(mut obj: Value, rv: Revision) -> Value {
    object::set_meta(&mut obj, "resourceVersion", rv.to_string());
    obj
}

/// The stored object and its revision, or 404.
pub async fn current(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
) -> ApiResult<store::KeyValue> {
    store
        .get(&scope.key(name))
        .await
        .map_err(scope.store_err(name))?
        .ok_or_else(|| scope.not_found(name))
}

pub async fn get(store: &Arc<dyn Store>, scope: Scope<'_>, name: &str) -> ApiResult<Value> {
    match store
        .get(&scope.key(name))
        .await
        .map_err(scope.store_err(name))?
    {
        Some(kv) => decode(&kv),
        None => Err(scope.not_found(name)),
    }
}

/// The result of a list: items (already filtered) and list metadata.
pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    use base64::Engine;
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap())
}

fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    use base64::Engine;
    let bad = || ApiError::bad_request("continue key is not valid: invalid continue token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok((t.rv, t.start))
}

/// Lists with selectors and limit/continue, as Kubernetes does: pages of
/// the store are read at one revision until `limit` objects matched.
pub async fn list(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    params: &Params,
    filter: &(dyn Fn(&Value) -> bool + Sync),
) -> ApiResult<ListPage> {
    let page = list_shared(store, scope, params, filter, None).await?;
    Ok(ListPage {
        items: page
            .items
            .into_iter()
            .map(|o| Arc::try_unwrap(o).unwrap_or_else(|o| (*o).clone()))
            .collect(),
        revision: page.revision,
        continue_token: page.continue_token,
        remaining: page.remaining,
    })
}

/// A list whose objects may be shared with the watch cache.
pub struct SharedPage {
    pub items: Vec<Arc<Value>>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// [`list`], read from the store (so as consistent as Kubernetes' lists
/// without a resourceVersion), taking each object the watch cache holds
/// at the same revision from it instead of decoding the stored bytes.
pub async fn list_shared(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    params: &Params,
    filter: &(dyn Fn(&Value) -> bool + Sync),
    cache: Option<&crate::cache::WatchCache>,
) -> ApiResult<SharedPage> {
    let limit = params.i64("limit")?.unwrap_or(0).max(0);
    let prefix = scope.prefix();
    let (mut revision, mut start) = match params.get("continue") {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (rv, Some(start))
        }
        None => (list_revision(params)?, None),
    };
    let mut items = Vec::new();
    loop {
        let want = if limit > 0 {
            (limit - items.len() as i64).max(1)
        } else {
            0
        };
        let page = store
            .list(&prefix, ListOptions { limit: want, start: start.clone(), revision })
            .await
            .map_err(|e| match e {
                store::Error::Compacted { .. } if params.get("continue").is_some() => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                e => from_store(e, scope.res.group, scope.res.plural, ""),
            })?;
        revision = page.revision;
        let last_key = page.items.last().map(|kv| kv.key.clone());
        let cached = cache.map(|c| c.objects_at(&page.items)).unwrap_or_default();
        for (i, kv) in page.items.iter().enumerate() {
            let obj = match cached.get(i).cloned().flatten() {
                Some(o) => o,
                None => Arc::new(decode(kv)?),
            };
            if filter(&obj) {
                items.push(obj);
            }
        }
        let full = limit > 0 && items.len() as i64 >= limit;
        if !page.more || last_key.is_none() {
            return Ok(SharedPage {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        }
        start = last_key.map(|k| format!("{k}\0"));
        if full {
            let token = encode_continue(revision, start.as_deref().unwrap());
            return Ok(SharedPage {
                items,
                revision,
                continue_token: Some(token),
                remaining: None,
            });
        }
    }
}

/// The revision a list reads at: `resourceVersion` with
/// `resourceVersionMatch=Exact` pins it; anything else reads the latest
/// (which is never older than what was asked).
fn list_revision(params: &Params) -> ApiResult<Revision> {
    let rv = match params.get("resourceVersion") {
        None | Some("0") => return Ok(0),
        Some(rv) => rv
            .parse::<Revision>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
    };
    match params.get("resourceVersionMatch") {
        Some("Exact") => Ok(rv),
        None | Some("NotOlderThan") => Ok(0),
        Some(other) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

pub fn list_object(res: &Resource, page: ListPage) -> Value {
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": page.items,
    })
}

/// [`list_object`]'s JSON for a whole list (no continue), written item by
/// item from borrowed objects: a list from the watch cache serializes the
/// shared objects instead of copying each one first.
pub fn list_json<'a>(
    res: &Resource,
    items: impl Iterator<Item = std::borrow::Cow<'a, Value>>,
    revision: Revision,
    continue_token: Option<&str>,
) -> Vec<u8> {
    use std::io::Write;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    let head = json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": meta,
    });
    let head = serde_json::to_vec(&head).expect("JSON values serialize");
    // `{...}` without its closing brace, then the items.
    buf.extend_from_slice(&head[..head.len() - 1]);
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, item.as_ref()).expect("JSON values serialize");
    }
    let _ = buf.write_all(b"]}");
    buf
}

/// Creates `obj` (already decoded, kind checked) in `scope`.
pub async fn create(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    mut obj: Value,
    params: &Params,
) -> ApiResult<Value> {
    let res = scope.res;
    if let Some(ns) = scope.namespace {
        match object::namespace(&obj) {
            None => object::set_meta(&mut obj, "namespace", ns),
            Some(given) if given != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            Some(_) => {}
        }
    } else {
        object::remove_meta(&mut obj, "namespace");
    }
    if object::name(&obj).is_empty() {
        if let Some(base) = meta_str(&obj, "generateName").filter(|s| !s.is_empty()) {
            let name = generate_name(base);
            object::set_meta(&mut obj, "name", name);
        }
    }
    // The uid exists before the strategy runs: a Job's generated selector
    // is made of it.
    let uid = uuid::Uuid::new_v4().to_string();
    object::set_meta(&mut obj, "uid", uid.clone());
    strategy::prepare_for_create(res, &mut obj);
    if object::meta(&obj).get("managedFields").is_none() {
        let manager = params.get("fieldManager").unwrap_or("unknown").to_owned();
        crate::ssa::record_update(None, &mut obj, &manager, &res.api_version(), "");
    }
    let mut causes = apply_schema(scope, &mut obj, params)?;
    causes.extend(strategy::validate(res, &obj, None));
    if !causes.is_empty() {
        return Err(ApiError::invalid(
            res.group,
            res.kind,
            object::name(&obj),
            causes,
        ));
    }
    if let Some(ns) = scope.namespace {
        check_namespace_open(store, ns).await?;
    }
    let name = object::name(&obj).to_owned();
    drop_empty_metadata(&mut obj);
    let m = object::meta_mut(&mut obj);
    m.insert("uid".into(), json!(uid));
    m.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
    m.remove("resourceVersion");
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    if strategy::has_generation(res) {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if params.dry_run()? {
        if store
            .get(&scope.key(&name))
            .await
            .map_err(scope.store_err(&name))?
            .is_some()
        {
            return Err(ApiError::already_exists(res.group, res.plural, &name));
        }
        return Ok(obj);
    }
    let rev = store
        .create(&scope.key(&name), encode(&obj))
        .await
        .map_err(scope.store_err(&name))?;
    Ok(with_rv(obj, rev))
}

/// A custom resource's schema: defaults, then pruning of unknown fields
/// (an error under `fieldValidation=Strict`), then validation causes.
fn apply_schema(scope: Scope<'_>, obj: &mut Value, params: &Params) -> ApiResult<Vec<Cause>> {
    let res = scope.res;
    let Some(schema) = scope.schema else {
        // Built-in kinds: unknown fields are dropped (an error when Strict),
        // as decoding into Kubernetes' types drops them.
        if let Some(schema) = api::openapi::resolved_schema(res.group, res.version, res.kind) {
            let mut pruned = Vec::new();
            api::schema::prune(&schema, obj, "", false, &mut pruned);
            strict_check(&pruned, params)?;
        }
        return Ok(Vec::new());
    };
    api::schema::apply_defaults(schema, obj);
    let mut pruned = Vec::new();
    api::schema::prune(schema, obj, "", true, &mut pruned);
    strict_check(&pruned, params)?;
    let mut violations = Vec::new();
    // Metadata is validated by the generic rules, not the schema.
    let mut body = obj.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
    }
    api::schema::validate(schema, &body, "", &mut violations);
    Ok(violations
        .into_iter()
        .map(|v| Cause {
            reason: v.reason.to_owned(),
            message: v.message,
            field: v.field,
        })
        .collect())
}

fn strict_check(pruned: &[String], params: &Params) -> ApiResult<()> {
    if params.get("fieldValidation") == Some("Strict") && !pruned.is_empty() {
        let list: Vec<String> = pruned
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(())
}

/// New objects cannot be created in a namespace that does not exist or is
/// being deleted.
async fn check_namespace_open(store: &Arc<dyn Store>, ns: &str) -> ApiResult<()> {
    let res = api::registry::find("", "v1", "namespaces").expect("namespaces are registered");
    let scope = Scope {
        res,
        namespace: None,
        schema: None,
    };
    let nsobj = get(store, scope, ns).await?;
    if object::is_deleting(&nsobj) {
        return Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))
        .with_details("", "namespaces", ns));
    }
    Ok(())
}

impl ApiError {
    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> ApiError {
        self.group = group.into();
        self.kind = kind.into();
        self.name = name.into();
        self
    }
}

fn generate_name(base: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    // Kubernetes trims the base so the result fits 63 characters.
    let base: String = base.chars().take(58).collect();
    format!("{base}{suffix}")
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but status (when status is a
    /// subresource).
    Main,
    /// The status subresource: only status.
    Status,
    /// A pod's `ephemeralcontainers` subresource: only
    /// `spec.ephemeralContainers`.
    EphemeralContainers,
    /// A pod's `resize` subresource: only its containers' resources.
    Resize,
}

/// Replaces an object with `new` (PUT): keeps what clients may not change,
/// checks resourceVersion, bumps generation on spec changes.
pub async fn update(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
    new: Value,
    part: Part,
    params: &Params,
) -> ApiResult<Value> {
    let given_rv = match meta_str(&new, "resourceVersion") {
        Some(rv) if !rv.is_empty() => Some(
            rv.parse::<Revision>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
        _ => None,
    };
    let kv = current(store, scope, name).await?;
    if given_rv.is_some_and(|rv| rv != kv.mod_revision) {
        return Err(ApiError::stale(scope.res.group, scope.res.plural, name));
    }
    let old = decode(&kv)?;
    let merged = merge_update(scope, &old, new, part)?;
    write_update(store, scope, name, &old, merged, kv.mod_revision, params).await
}

/// Applies `change` to the current object and writes it, retrying when
/// another writer got there first (for patches and server-side changes
/// without a resourceVersion of their own).
pub async fn update_with<F>(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
    part: Part,
    params: &Params,
    change: F,
) -> ApiResult<Value>
where
    F: Fn(&Value) -> ApiResult<Value>,
{
    for _ in 0..16 {
        let kv = current(store, scope, name).await?;
        let old = decode(&kv)?;
        let new = change(&old)?;
        // A patch that names a resourceVersion is a precondition.
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty()) {
            if rv != kv.mod_revision.to_string() {
                return Err(ApiError::stale(scope.res.group, scope.res.plural, name));
            }
        }
        let merged = merge_update(scope, &old, new, part)?;
        match write_update(store, scope, name, &old, merged, kv.mod_revision, params).await {
            Err(e) if e.code == 409 && e.reason == "Conflict" => continue,
            other => return other,
        }
    }
    Err(ApiError::stale(scope.res.group, scope.res.plural, name))
}

/// Empty lists and maps in metadata are left out, as Go's omitempty does
/// (a patch that removes the last owner reference leaves no `[]`).
fn drop_empty_metadata(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, v| {
            !(matches!(
                k.as_str(),
                "ownerReferences" | "finalizers" | "labels" | "annotations"
            ) && (v.as_array().is_some_and(|a| a.is_empty())
                || v.as_object().is_some_and(|o| o.is_empty())
                || v.is_null()))
        });
    }
}

fn merge_update(scope: Scope<'_>, old: &Value, mut new: Value, part: Part) -> ApiResult<Value> {
    let res = scope.res;
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let new_name = object::name(&new);
    if new_name.is_empty() {
        object::set_meta(&mut new, "name", object::name(old));
    } else if new_name != object::name(old) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({})",
            object::name(old)
        )));
    }
    match (object::namespace(&new), scope.namespace) {
        (Some(given), Some(ns)) if given != ns => return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (None, Some(ns)) => object::set_meta(&mut new, "namespace", ns),
        _ => {}
    }
    // A uid in the body is a precondition, as in Kubernetes.
    if let (Some(given), Some(stored)) =
        (object::meta_str(&new, "uid"), object::meta_str(old, "uid"))
    {
        if !given.is_empty() && given != stored {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Precondition failed: UID in precondition: {given}, UID in object meta: {stored}"),
            ));
        }
    }
    drop_empty_metadata(&mut new);
    let has_status = strategy::has_status_subresource(res);
    // A pod's ephemeral containers change only through their subresource.
    if part == Part::Main && res.group.is_empty() && res.kind == "Pod" {
        match old.pointer("/spec/ephemeralContainers") {
            Some(v) => new["spec"]["ephemeralContainers"] = v.clone(),
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("ephemeralContainers");
                }
            }
        }
    }
    match part {
        Part::Status => {
            // Only status changes; the rest is the stored object.
            let mut out = old.clone();
            out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if out["status"].is_null() {
                out.as_object_mut().unwrap().remove("status");
            }
            // Status writers may still touch labels/annotations? No: as
            // Kubernetes, metadata changes through status are ignored except
            // for finalizers and ownerReferences... keep the stored metadata.
            return Ok(out);
        }
        Part::Resize => {
            let mut out = old.clone();
            let wanted = new
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(list) = out
                .pointer_mut("/spec/containers")
                .and_then(Value::as_array_mut)
            {
                for c in list.iter_mut() {
                    let name = c.get("name").cloned();
                    if let Some(w) = wanted.iter().find(|w| w.get("name") == name.as_ref()) {
                        match w.get("resources") {
                            Some(r) => c["resources"] = r.clone(),
                            None => {
                                if let Some(m) = c.as_object_mut() {
                                    m.remove("resources");
                                }
                            }
                        }
                    }
                }
            }
            return Ok(out);
        }
        Part::EphemeralContainers => {
            let mut out = old.clone();
            match new
                .pointer("/spec/ephemeralContainers")
                .filter(|v| !v.is_null())
            {
                Some(v) => out["spec"]["ephemeralContainers"] = v.clone(),
                None => {
                    if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("ephemeralContainers");
                    }
                }
            }
            return Ok(out);
        }
        Part::Main if has_status => match old.get("status") {
            Some(st) => new["status"] = st.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        },
        Part::Main => {}
    }
    // Identity and server-owned metadata stay as stored.
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match object::meta(old).get(field) {
            Some(v) => object::set_meta(&mut new, field, v.clone()),
            None => {
                object::remove_meta(&mut new, field);
            }
        }
    }
    if object::meta(&new).get("managedFields").is_none() {
        if let Some(mf) = object::meta(old).get("managedFields") {
            object::set_meta(&mut new, "managedFields", mf.clone());
        }
    }
    if strategy::has_generation(res) && object::spec_part(old) != object::spec_part(&new) {
        let gen = object::meta(old)
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::set_meta(&mut new, "generation", gen + 1);
    }
    Ok(new)
}

async fn write_update(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
    old: &Value,
    mut new: Value,
    rev: Revision,
    params: &Params,
) -> ApiResult<Value> {
    let res = scope.res;
    strategy::prepare_for_update(res, &mut new, old);
    // A write other than an apply (which computed managedFields itself) is
    // an update by its field manager.
    if !params.flag(APPLIED) {
        let manager = params.get("fieldManager").unwrap_or("unknown").to_owned();
        let sub = match part_of_change(old, &new) {
            true => "status",
            false => "",
        };
        crate::ssa::record_update(Some(old), &mut new, &manager, &res.api_version(), sub);
    }
    let mut causes = apply_schema(scope, &mut new, params)?;
    if params.flag(RESIZE) {
        causes.extend(strategy::validate_resize(res, &new, old));
    } else {
        causes.extend(strategy::validate(res, &new, Some(old)));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(res.group, res.kind, name, causes));
    }
    object::set_meta(&mut new, "resourceVersion", rev.to_string());
    if new == *old {
        // Nothing changed: no write, no new resourceVersion.
        return Ok(new);
    }
    if params.dry_run()? {
        return Ok(new);
    }
    // A Service whose type or ports changed gets (and gives back) its
    // ClusterIP and node ports.
    let realloc = match params
        .get(SERVICE_CIDR)
        .map(crate::alloc::ServiceCidr::parse)
    {
        Some(Ok(cidr)) if res.group.is_empty() && res.kind == "Service" => {
            let r = crate::alloc::reallocate(store, cidr, old, &mut new).await?;
            let causes = strategy::validate(res, &new, Some(old));
            if !causes.is_empty() {
                crate::alloc::release(store, &r.claimed).await;
                return Err(ApiError::invalid(res.group, res.kind, name, causes));
            }
            Some(r)
        }
        _ => None,
    };
    let written = write_checked(store, scope, name, &new, rev).await;
    if let Some(r) = realloc {
        match &written {
            Ok(_) => crate::alloc::release(store, &r.released).await,
            Err(_) => crate::alloc::release(store, &r.claimed).await,
        }
    }
    written
}

/// The store write of an update (or the delete of an object whose last
/// finalizer went).
async fn write_checked(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
    new: &Value,
    rev: Revision,
) -> ApiResult<Value> {
    let res = scope.res;
    let new = new.clone();
    let key = scope.key(name);
    // An object being deleted goes once its last finalizer is removed.
    if object::is_deleting(&new)
        && object::finalizers(&new).is_empty()
        && !strategy::spec_finalizers_pending(res, &new)
        && !strategy::waits_for_node(res, &new)
    {
        store
            .delete(&key, Some(rev))
            .await
            .map_err(scope.store_err(name))?;
        return Ok(new);
    }
    let rev = store
        .update(&key, encode(&new), rev)
        .await
        .map_err(scope.store_err(name))?;
    Ok(with_rv(new, rev))
}

/// Whether a change touched only status (a status-subresource write).
fn part_of_change(old: &Value, new: &Value) -> bool {
    old.get("status") != new.get("status")
        && object::spec_part(old) == object::spec_part(new)
        && object::meta(old).get("labels") == object::meta(new).get("labels")
        && object::meta(old).get("annotations") == object::meta(new).get("annotations")
}

/// DeleteOptions, from the body or the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn parse(body: &[u8], params: &Params) -> ApiResult<DeleteOptions> {
        let mut o = DeleteOptions {
            grace_period: params.i64("gracePeriodSeconds")?,
            propagation: params.get("propagationPolicy").map(str::to_owned),
            dry_run: params.dry_run()?,
            ..Default::default()
        };
        if !body.iter().all(u8::is_ascii_whitespace) {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
                o.grace_period = Some(g);
            }
            if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
                o.propagation = Some(p.to_owned());
            }
            if v.get("orphanDependents").and_then(Value::as_bool) == Some(true)
                && o.propagation.is_none()
            {
                o.propagation = Some("Orphan".into());
            }
            if let Some(pre) = v.get("preconditions") {
                o.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_owned);
                o.precondition_rv = pre
                    .get("resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            if let Some(dr) = v.get("dryRun").and_then(Value::as_array) {
                o.dry_run |= dr.iter().any(|x| x == "All");
            }
        }
        match o.propagation.as_deref() {
            None | Some("Orphan" | "Background" | "Foreground") => Ok(o),
            Some(other) => Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause {
                    reason: "FieldValueNotSupported".into(),
                    message: format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""),
                    field: "propagationPolicy".into(),
                }],
            )),
        }
    }
}

/// Deletes one object. Returns the object as deleted (or as marked for
/// deletion while finalizers or a node's grace period hold it).
pub async fn delete(
    store: &Arc<dyn Store>,
    scope: Scope<'_>,
    name: &str,
    opts: &DeleteOptions,
) -> ApiResult<Value> {
    let key = scope.key(name);
    for _ in 0..16 {
        let kv = current(store, scope, name).await?;
        let mut obj = decode(&kv)?;
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_owned();
        if let Some(want) = &opts.precondition_uid {
            if *want != uid {
                return Err(ApiError::conflict(
                    scope.res.group,
                    scope.res.plural,
                    name,
                    &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
                ));
            }
        }
        if let Some(want) = &opts.precondition_rv {
            if *want != kv.mod_revision.to_string() {
                return Err(ApiError::conflict(
                    scope.res.group,
                    scope.res.plural,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
        }
        let mut finalizers = object::finalizers(&obj);
        let default_orphan = strategy::default_orphans(scope.res);
        let policy = opts.propagation.as_deref().unwrap_or(if default_orphan {
            "Orphan"
        } else {
            "Background"
        });
        let add = match policy {
            "Orphan" => Some("orphan"),
            "Foreground" => Some("foregroundDeletion"),
            _ => None,
        };
        let mut changed = false;
        if let Some(f) = add {
            if !finalizers.iter().any(|x| x == f) && !object::is_deleting(&obj) {
                finalizers.push(f.to_owned());
                changed = true;
            }
        }
        let grace = strategy::graceful_deletion(scope.res, &obj, opts.grace_period);
        let spec_held = strategy::spec_finalizers_pending(scope.res, &obj);
        if finalizers.is_empty() && grace.is_none() && !spec_held {
            if opts.dry_run {
                return Ok(obj);
            }
            match store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) => return Ok(obj),
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(scope.store_err(name)(e)),
            }
        }
        // Marked for deletion: finalizers or the node hold it for now.
        if !object::is_deleting(&obj) || grace.is_some() {
            let secs = grace.unwrap_or(0);
            let at = chrono::Utc::now() + chrono::Duration::seconds(secs);
            let previous = object::meta(&obj)
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            // A deletion may shorten the grace period but never lengthen it.
            if !object::is_deleting(&obj) || previous.is_none_or(|p| secs < p) {
                object::set_meta(
                    &mut obj,
                    "deletionTimestamp",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                );
                object::set_meta(&mut obj, "deletionGracePeriodSeconds", secs);
                changed = true;
            }
        }
        if spec_held && obj.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating")
        {
            // A namespace waits for the namespace controller to empty it.
            obj["status"]["phase"] = Value::from("Terminating");
            changed = true;
        }
        if !changed {
            return Ok(obj);
        }
        object::set_meta(&mut obj, "finalizers", finalizers.clone());
        if finalizers.is_empty() {
            object::remove_meta(&mut obj, "finalizers");
        }
        if opts.dry_run {
            return Ok(obj);
        }
        match store.update(&key, encode(&obj), kv.mod_revision).await {
            Ok(rev) => return Ok(with_rv(obj, rev)),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(scope.store_err(name)(e)),
        }
    }
    Err(ApiError::stale(scope.res.group, scope.res.plural, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn list_json_is_list_object_written_in_place() {
        let pods = api::registry::find("", "v1", "pods").unwrap();
        let deployments = api::registry::find("apps", "v1", "deployments").unwrap();
        let pod = |n: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "labels": {"a": "\"quoted\""}}});
        let cases: Vec<(&Resource, Vec<Value>, Revision, Option<&str>)> = vec![
            (pods, vec![], 7, None),
            (pods, vec![pod("a")], 8, None),
            (pods, vec![pod("a"), pod("b"), pod("c")], 9, Some("token")),
            (
                deployments,
                vec![
                    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
                ],
                10,
                None,
            ),
        ];
        for (res, items, rev, token) in cases {
            let written = list_json(res, items.iter().map(Cow::Borrowed), rev, token);
            let parsed: Value = serde_json::from_slice(&written).unwrap();
            let want = list_object(
                res,
                ListPage {
                    items: items.clone(),
                    revision: rev,
                    continue_token: token.map(str::to_owned),
                    remaining: None,
                },
            );
            assert_eq!(parsed, want, "{} with {} items", res.kind, items.len());
        }
    }
}
