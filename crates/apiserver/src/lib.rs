//! The Kubernetes REST API over the rkube store.
//!
//! This is the only crate that knows HTTP and the only one (besides the
//! binary that wires it) that touches the store. Requests flow:
//! TLS (client certificate) → authentication → authorization → path parsing
//! (`request`) → the generic REST storage (`rest`) with per-kind rules
//! (`strategy`, `defaults`, `typecheck`) → the store.

// Handlers return `ApiError`, a whole Kubernetes `Status` (message,
// reason, details with causes): large by design, built only on the error
// path, and what every layer passes up unchanged.
#![allow(clippy::result_large_err)]

mod alloc;
pub mod audit;
pub mod auth;
mod cache;
mod defaults;
mod discovery;
mod duplicates;
mod handler;
mod metrics;
mod object;
mod openapi_v2;
mod patch;
mod protobuf;
pub mod registry;
pub mod request;
mod resource_metrics;
mod resource_proxy;
mod rest;
mod reviews;
pub mod sa_token;
mod serviceaccount_admission;
mod smp;
mod ssa;
pub mod status;
mod strategy;
mod streaming;
pub use strategy::set_default_toleration_seconds;
mod subresource;
mod typecheck;
mod watch;

#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    /// A store in a temporary directory, for unit tests.
    pub fn sqlite_store() -> (tempfile::TempDir, Arc<dyn store::Store>) {
        let dir = tempfile::tempdir().unwrap();
        let config = store::sqlite::SqliteConfig::new(dir.path().join("db"));
        let s = store::sqlite::SqliteStore::open(config).unwrap();
        (dir, Arc::new(s))
    }
}

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request as HttpRequest;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use store::Store;
use tokio::net::TcpListener;

use auth::{Attributes, Authenticator, Authorizer, Decision, User};
use status::ApiError;

/// Shared state of all requests.
pub struct State {
    pub store: Arc<dyn Store>,
    pub authn: Authenticator,
    pub authz: Box<dyn Authorizer>,
    pub metrics: metrics::Metrics,
    pub registry: Arc<registry::Registry>,
    pub caches: cache::Caches,
    /// Where ClusterIPs come from (None: Services get none).
    pub service_cidr: Option<alloc::ServiceCidr>,
    /// The cluster CA (PEM), served unauthenticated at /cacerts so that
    /// agents can fetch it and check it against their join token, as
    /// k3s does.
    pub ca_bundle: Option<String>,
    /// Metrics of components running in this process (the scheduler),
    /// appended to /metrics.
    pub extra_metrics: Vec<Box<dyn Fn() -> String + Send + Sync>>,
    /// TLS (with the API server's client certificate) for connections to
    /// node agents: logs, exec, attach, port-forward.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// The audit policy and log (`--audit-policy-file`, `--audit-log-path`).
    pub audit: Option<Arc<audit::Auditor>>,
    /// Node samples behind metrics.k8s.io (`kubectl top`).
    resource_metrics: resource_metrics::Scraper,
}

impl State {
    /// The server state; starts following CRDs (needs a Tokio runtime).
    pub fn new(store: Arc<dyn Store>, authn: Authenticator, authz: Box<dyn Authorizer>) -> State {
        let registry = Arc::new(registry::Registry::default());
        tokio::spawn(registry.clone().follow_crds(store.clone()));
        State {
            store,
            authn,
            authz,
            metrics: metrics::Metrics::default(),
            registry,
            caches: cache::Caches::default(),
            service_cidr: None,
            ca_bundle: None,
            extra_metrics: Vec::new(),
            kubelet_client: None,
            audit: None,
            resource_metrics: resource_metrics::Scraper::default(),
        }
    }

    /// Appends a component's Prometheus text to /metrics.
    /// Starts the watch cache of every watchable built-in resource now, as
    /// kube-apiserver does, so that its event window covers every revision
    /// from here on. A cache started by its first watch would not hold the
    /// changes between a client's list and that watch, and such watches
    /// would each follow the store instead.
    pub fn warm_watch_caches(&self) {
        for res in api::registry::all() {
            if res.verbs.contains(&"watch") {
                self.caches
                    .get(&self.store, &api::registry::storage_prefix(res, None));
            }
        }
    }

    pub fn with_metrics(mut self, f: impl Fn() -> String + Send + Sync + 'static) -> State {
        self.extra_metrics.push(Box::new(f));
        self
    }

    /// Serves `pem` at /cacerts.
    pub fn with_ca_bundle(mut self, pem: &str) -> State {
        self.ca_bundle = Some(pem.to_owned());
        self
    }

    /// Connects to node agents with this client certificate.
    pub fn with_kubelet_client(mut self, cert_pem: &str, key_pem: &str) -> Result<State, String> {
        self.kubelet_client = Some(streaming::kubelet_client_config(cert_pem, key_pem)?);
        Ok(self)
    }

    /// Allocates ClusterIPs from `cidr` (e.g. "10.43.0.0/16").
    /// Audits requests as the policy file says, into the log (`-`:
    /// standard output); both or neither.
    /// Audits by the policy file to the log and/or the webhook (at least
    /// one of them); nothing without a policy.
    pub fn with_audit(
        mut self,
        policy_file: Option<&std::path::Path>,
        log: Option<(&str, audit::Rotation)>,
        hook: Option<(audit::webhook::Target, audit::webhook::Batching)>,
    ) -> Result<State, String> {
        if let Some(policy) = policy_file {
            if log.is_none() && hook.is_none() {
                return Err(
                    "an audit policy needs --audit-log-path or --audit-webhook-config-file".into(),
                );
            }
            self.audit = Some(Arc::new(audit::Auditor::open(policy, log, hook)?));
        }
        Ok(self)
    }

    pub fn with_service_cidr(mut self, cidr: &str) -> Result<State, String> {
        self.service_cidr = Some(alloc::ServiceCidr::parse(cidr)?);
        Ok(self)
    }
}

/// The verified client certificate's user, attached to each request of a
/// TLS connection.
#[derive(Clone, Debug)]
pub struct PeerUser(pub Option<User>);

/// The client's address, attached to each request of a connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The namespaces that always exist.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the system namespaces when missing (idempotent; safe with
/// several servers on one store).
/// Creates the `kubernetes` Service in `default` (ClusterIP = the first
/// address of the service range, port 443 → the API server's port).
pub async fn bootstrap_service(state: &Arc<State>, api_port: u16) -> Result<(), ApiError> {
    let Some(cidr) = state.service_cidr else {
        return Ok(());
    };
    let res = api::registry::find("", "v1", "services").expect("services are registered");
    let scope = rest::Scope {
        res,
        namespace: Some("default"),
        schema: None,
    };
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cidr.first().to_string(), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]},
    });
    match handler::create_with_allocations(state, scope, svc, &rest::Params::default()).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" || e.message.contains("already allocated") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Publishes where the `kubernetes` Service leads: Endpoints and an
/// EndpointSlice in `default` with this server's advertised address and
/// port (as kube-apiserver's endpoint reconciler does; a server starting
/// later replaces an earlier one's address). Loopback and unspecified
/// addresses, which pods cannot reach, are not published.
pub async fn bootstrap_endpoints(
    state: &Arc<State>,
    ip: std::net::IpAddr,
    api_port: u16,
) -> Result<(), ApiError> {
    if ip.is_loopback() || ip.is_unspecified() {
        tracing::info!(%ip, "not publishing the kubernetes Service's endpoints for an address pods cannot reach");
        return Ok(());
    }
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}],
                     "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    });
    for (group, version, plural, obj, keys) in [
        ("", "v1", "endpoints", endpoints, &["subsets"][..]),
        (
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            slice,
            &["addressType", "endpoints", "ports"][..],
        ),
    ] {
        let res = api::registry::find(group, version, plural).expect("registered");
        let scope = rest::Scope {
            res,
            namespace: Some("default"),
            schema: None,
        };
        match rest::create(&state.store, scope, obj.clone(), &rest::Params::default()).await {
            Ok(_) => {}
            Err(e) if e.reason == "AlreadyExists" => {
                rest::update_with(
                    &state.store,
                    scope,
                    "kubernetes",
                    rest::Part::Main,
                    &rest::Params::default(),
                    |old| {
                        let mut next = old.clone();
                        for k in keys {
                            next[*k] = obj[*k].clone();
                        }
                        object::remove_meta(&mut next, "resourceVersion");
                        Ok(next)
                    },
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub async fn bootstrap(store: &Arc<dyn Store>) -> Result<(), ApiError> {
    let res = api::registry::find("", "v1", "namespaces").expect("namespaces are registered");
    let scope = rest::Scope {
        res,
        namespace: None,
        schema: None,
    };
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match rest::create(store, scope, obj, &rest::Params::default()).await {
            Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the service account a token was issued for still exists (the
/// same one: its uid matches), as Kubernetes checks for bound tokens.
pub(crate) async fn service_account_live(state: &State, claims: &sa_token::Claims) -> bool {
    let Some(res) = api::registry::find("", "v1", "serviceaccounts") else {
        return false;
    };
    let key = api::registry::storage_key(res, Some(&claims.namespace), &claims.name);
    match state.store.get(&key).await {
        Ok(Some(kv)) => {
            claims.uid.is_empty()
                || serde_json::from_slice::<serde_json::Value>(&kv.value)
                    .ok()
                    .and_then(|v| {
                        v.pointer("/metadata/uid")
                            .and_then(|u| u.as_str())
                            .map(|u| u == claims.uid)
                    })
                    .unwrap_or(false)
        }
        _ => false,
    }
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/" | "/cacerts"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Serves one HTTP request (after TLS).
pub async fn serve_request(state: Arc<State>, req: HttpRequest) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if is_public(&path) {
        return match path.trim_end_matches('/') {
            "/version" => handler::json_response(StatusCode::OK, &discovery::version()),
            "/cacerts" => match &state.ca_bundle {
                Some(pem) => (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "text/plain")],
                    pem.clone(),
                )
                    .into_response(),
                None => ApiError::path_not_found().into_response(),
            },
            _ => health(&state, &path).await,
        };
    }
    let peer = parts
        .extensions
        .get::<PeerUser>()
        .and_then(|p| p.0.as_ref());
    let Some(user) = state.authn.authenticate(peer, &parts.headers) else {
        return ApiError::unauthorized().into_response();
    };
    if peer.is_none() {
        if let Some(claims) =
            auth::bearer(&parts.headers).and_then(|t| state.authn.service_account_claims(t))
        {
            if !service_account_live(&state, &claims).await {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    let info = request::parse(&path);
    let verb = verb_of(&parts.method, info.as_ref(), &parts.uri);
    let attrs = Attributes {
        verb: &verb,
        group: info.as_ref().map_or("", |i| i.group.as_str()),
        resource: info.as_ref().map_or("", |i| i.resource.as_str()),
        subresource: info.as_ref().and_then(|i| i.subresource.as_deref()),
        namespace: info.as_ref().and_then(|i| i.namespace.as_deref()),
        name: info.as_ref().and_then(|i| i.name.as_deref()),
        path: &path,
    };
    let decision = state.authz.authorize(&user, &attrs);
    let Some(auditor) = state.audit.clone() else {
        if let Decision::Deny(reason) = decision {
            return ApiError::forbidden(reason).into_response();
        }
        return recover(dispatch(state, parts, body, info, verb, user, path, None))
            .await
            .unwrap_or_else(|_| panicked());
    };
    let resource = info.as_ref().map(|i| audit::ResourceAttrs {
        group: &i.group,
        resource: &i.resource,
        subresource: i.subresource.as_deref().unwrap_or(""),
        namespace: i.namespace.as_deref().unwrap_or(""),
        name: i.name.as_deref().unwrap_or(""),
    });
    let event = auditor.begin(
        &user,
        &audit::Attrs {
            verb: &verb,
            path: &path,
            resource,
        },
        &parts.uri.to_string(),
        parts
            .extensions
            .get::<PeerAddr>()
            .map(|a| a.0.ip().to_string()),
        parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok()),
    );
    let Some(event) = event else {
        if let Decision::Deny(reason) = decision {
            return ApiError::forbidden(reason).into_response();
        }
        return recover(dispatch(state, parts, body, info, verb, user, path, None))
            .await
            .unwrap_or_else(|_| panicked());
    };
    let long_running = verb == "watch"
        || info
            .as_ref()
            .is_some_and(|i| streaming::is_streaming(i) || resource_proxy::is_proxy(i));
    let mut request_body = None;
    let resp = match decision {
        Decision::Deny(reason) => ApiError::forbidden(reason).into_response(),
        _ => {
            let slot = audit::Auditor::wants_request(&event).then_some(&mut request_body);
            match recover(dispatch(state, parts, body, info, verb, user, path, slot)).await {
                Ok(resp) => resp,
                Err(message) => {
                    auditor.panicked(event, &message);
                    return panicked();
                }
            }
        }
    };
    let code = resp.status().as_u16();
    let keep_response =
        !long_running && (audit::Auditor::wants_response(&event) || !resp.status().is_success());
    if !keep_response {
        auditor.finish(event, long_running, code, request_body.as_deref(), None);
        return resp;
    }
    let (head, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, handler::MAX_BODY_BYTES * 4)
        .await
        .unwrap_or_default();
    auditor.finish(event, false, code, request_body.as_deref(), Some(&bytes));
    Response::from_parts(head, Body::from(bytes))
}

/// Runs a request's handler; a panic in it is caught (its message
/// returned) instead of ending the connection, as kube-apiserver's panic
/// recovery does.
async fn recover<F: std::future::Future<Output = Response>>(fut: F) -> Result<Response, String> {
    use futures::FutureExt as _;
    std::panic::AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|p| {
            let message = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(panic = %message, "a request handler panicked");
            message
        })
}

/// kube-apiserver's answer to a request whose handler panicked.
fn panicked() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/plain; charset=utf-8")],
        "This request caused apiserver to panic. Look in the logs for details.\n",
    )
        .into_response()
}

/// Serves an authenticated, authorized request; `request_body` receives
/// the body when the audit log wants it.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    state: Arc<State>,
    parts: axum::http::request::Parts,
    body: Body,
    info: Option<request::RequestInfo>,
    verb: String,
    user: User,
    path: String,
    request_body: Option<&mut Option<bytes::Bytes>>,
) -> Response {
    if let Some(info) = info.as_ref().filter(|i| streaming::is_streaming(i)) {
        // Streams are not read whole: the connection may be upgraded.
        let started = std::time::Instant::now();
        let sub = info.subresource.clone().unwrap_or_default();
        let resp = streaming::serve(state.clone(), parts, info.clone()).await;
        let code = resp.status().as_u16();
        state
            .metrics
            .observe(&verb, "", "pods", &sub, code, started.elapsed());
        return resp;
    }
    if let Some(info) = info.as_ref().filter(|i| resource_proxy::is_proxy(i)) {
        // Proxied bodies stream through, in both directions.
        let started = std::time::Instant::now();
        let resource = info.resource.clone();
        let resp = resource_proxy::serve(state.clone(), parts, body, info.clone()).await;
        let code = resp.status().as_u16();
        state
            .metrics
            .observe(&verb, "", &resource, "proxy", code, started.elapsed());
        return resp;
    }
    let body = match axum::body::to_bytes(body, handler::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::too_large(format!(
                "Request entity too large: limit is {}",
                handler::MAX_BODY_BYTES
            ))
            .into_response()
        }
    };
    if let Some(slot) = request_body {
        // The audit log records the object as JSON, whatever came in.
        let ct = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let json = if protobuf::is_protobuf(ct) {
            protobuf::decode_to_json(&body)
                .ok()
                .map(|v| bytes::Bytes::from(v.to_string()))
        } else if ct.contains("yaml") {
            serde_yaml_ng::from_slice::<serde_json::Value>(&body)
                .ok()
                .map(|v| bytes::Bytes::from(v.to_string()))
        } else {
            Some(body.clone())
        };
        *slot = json;
    }
    let mut params = match rest::Params::parse(parts.uri.query()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let is_apply = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    if params.get("fieldManager").is_none() && !is_apply {
        // As Kubernetes: the user agent's program name manages the fields.
        let ua = parts
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let manager: String = ua
            .split('/')
            .next()
            .unwrap_or("unknown")
            .chars()
            .take(128)
            .collect();
        params.0.insert("fieldManager".into(), manager);
    }
    let started = std::time::Instant::now();
    match info {
        Some(info) => {
            let (group, resource) = (info.group.clone(), info.resource.clone());
            let sub = info.subresource.clone().unwrap_or_default();
            if let (true, Some(cidr)) = (
                group.is_empty() && resource == "services",
                state.service_cidr,
            ) {
                params.set_internal(rest::SERVICE_CIDR, &cidr.to_string());
            }
            let req = handler::Request {
                method: parts.method,
                info,
                params,
                headers: parts.headers,
                body,
                user,
            };
            let resp = handler::handle(state.clone(), req).await;
            let code = resp.status().as_u16();
            state
                .metrics
                .observe(&verb, &group, &resource, &sub, code, started.elapsed());
            resp
        }
        None if path == "/metrics" && parts.method == Method::GET => {
            let mut text = state.metrics.render();
            for extra in &state.extra_metrics {
                text.push_str(&extra());
            }
            (
                StatusCode::OK,
                [("content-type", "text/plain; version=0.0.4")],
                text,
            )
                .into_response()
        }
        None => non_resource(&state, &parts.method, &path, &parts.headers),
    }
}

fn non_resource(
    state: &State,
    method: &Method,
    path: &str,
    headers: &axum::http::HeaderMap,
) -> Response {
    if method != Method::GET {
        return ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )
        .into_response();
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api"] => discovery::api(&state.registry, headers),
        ["apis"] => discovery::apis(&state.registry, headers),
        ["api", version] => discovery::resource_list(&state.registry, "", version),
        ["apis", group] => discovery::group(&state.registry, group),
        ["apis", group, version] => discovery::resource_list(&state.registry, group, version),
        ["openapi", "v3", rest @ ..] => discovery::openapi_v3(&state.registry, rest),
        ["openapi", "v2"] => discovery::openapi_v2(&state.registry, headers),
        _ => ApiError::path_not_found().into_response(),
    }
}

async fn health(state: &State, path: &str) -> Response {
    // Ready means the store answers.
    match state.store.current_revision().await {
        Ok(_) => (
            StatusCode::OK,
            [("content-type", "text/plain; charset=utf-8")],
            "ok",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, path, "health check failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("[-]etcd failed: {e}\nhealthz check failed"),
            )
                .into_response()
        }
    }
}

/// The Kubernetes verb of a request (get, list, watch, create, ...).
fn verb_of(method: &Method, info: Option<&request::RequestInfo>, uri: &axum::http::Uri) -> String {
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let named = info.is_some_and(|i| i.name.is_some());
    match *method {
        Method::GET if watch => "watch",
        Method::GET if !named && info.is_some() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if !named && info.is_some() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
    .to_owned()
}

/// Serves HTTPS on `listener` until the task is dropped. Client
/// certificates signed by the CA in `tls` identify users; others use
/// bearer tokens.
pub async fn serve_tls(
    state: Arc<State>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    state.warm_watch_caches();
    loop {
        let (tcp, addr) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| auth::user_from_cert(c.as_ref()));
            let peer = PeerUser(peer);
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req.extensions_mut().insert(PeerAddr(addr));
                    let state = state.clone();
                    async move {
                        let req = req.map(Body::new);
                        Ok::<_, std::convert::Infallible>(serve_request(state, req).await)
                    }
                },
            );
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Components multiplex all their watches over one HTTP/2
            // connection (a controller manager holds ~100): allow plenty,
            // as kube-apiserver does for its own loopback clients.
            builder.http2().max_concurrent_streams(1000);
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%addr, error = %e, "connection ended with an error");
            }
        });
    }
}

/// TLS settings: the serving certificate and the CA that signs client
/// certificates.
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("serving certificate: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?
        .ok_or_else(|| "serving key: no private key found".to_owned())?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| format!("client CA: {e}"))?;
        roots.add(ca).map_err(|e| format!("client CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("serving certificate: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds the API port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod recover_tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let ok = recover(async { StatusCode::OK.into_response() }).await;
        assert_eq!(ok.unwrap().status(), StatusCode::OK);
        let boom = recover(async {
            if std::hint::black_box(true) {
                panic!("boom {}", 7);
            }
            StatusCode::OK.into_response()
        })
        .await;
        assert_eq!(boom.unwrap_err(), "boom 7");
        let resp = panicked();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(
            body,
            "This request caused apiserver to panic. Look in the logs for details.\n"
        );
    }
}
