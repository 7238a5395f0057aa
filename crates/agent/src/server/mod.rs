//! The agent's HTTPS server, on the kubelet's port (10250 by default):
//! what the API server proxies `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward` to.
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` serves the container's CRI
//!   log file (`logs`), following it when asked.
//! - `/exec/{ns}/{pod}/{container}`, `/attach/{ns}/{pod}/{container}` and
//!   `/portForward/{ns}/{pod}` ask the runtime for a streaming URL and
//!   proxy the HTTP upgrade (SPDY or WebSocket) to its streaming server
//!   byte for byte (`proxy`): the protocol is the runtime's.
//!
//! TLS with a self-signed serving certificate; every request must carry a
//! client certificate signed by the cluster CA (others fail the handshake;
//! none at all is answered 401).

pub mod logs;
mod proxy;
mod stats;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::cri::{AttachRequest, ContainerState, ExecRequest, RuntimeService, SandboxState};
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_UID};
use logs::{Decoder, LogOptions, Writer};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// The serving identity and the CA whose client certificates are let in.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: String,
}

/// What requests are answered from.
pub struct Context {
    pub cri: Arc<dyn RuntimeService>,
    /// The pods bound to this node.
    pub pods: Store<Pod>,
    /// The node's static pods: their mirror pods' names lead to them.
    pub static_pods: crate::static_pods::Registry,
    pub node_name: String,
    /// The node filesystem (the agent's data dir) and containerd's root
    /// (the image filesystem), for the Summary API.
    pub data_dir: PathBuf,
    pub image_root: Option<PathBuf>,
}

/// rustls settings: HTTP/1.1 only (upgrades), client certificates
/// verified against the cluster CA.
pub fn tls_config(tls: &TlsConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut tls.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes())?
        .ok_or_else(|| anyhow::anyhow!("kubelet serving key: no private key found"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut tls.client_ca_pem.as_bytes()) {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<Context>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, addr) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "kubelet TLS handshake failed");
                    return;
                }
            };
            let authenticated = stream.get_ref().1.peer_certificates().is_some();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let ctx = ctx.clone();
                async move {
                    if !authenticated {
                        return Ok::<_, Infallible>(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
                    }
                    Ok(handle(&ctx, req).await)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%addr, error = %e, "kubelet connection ended with an error");
            }
        });
    }
}

pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    if !msg.ends_with('\n') {
        msg.push('\n');
    }
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(msg)).map_err(|e| match e {}).boxed())
        .expect("valid response")
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .expect("valid response")
}

/// A request path, routed.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Pods,
    StatsSummary,
    Logs(&'a str, &'a str, &'a str),
    Exec(&'a str, &'a str, &'a str),
    Attach(&'a str, &'a str, &'a str),
    PortForward(&'a str, &'a str),
}

pub fn route<'a>(method: &Method, path: &'a str) -> Result<Route<'a>, StatusCode> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let streaming = method == Method::GET || method == Method::POST;
    let route = match parts.as_slice() {
        ["healthz"] => Route::Healthz,
        ["pods"] if method == Method::GET => Route::Pods,
        ["stats", "summary"] if method == Method::GET => Route::StatsSummary,
        ["pods"] | ["stats", "summary"] => return Err(StatusCode::METHOD_NOT_ALLOWED),
        ["containerLogs", ns, pod, c] if method == Method::GET => Route::Logs(ns, pod, c),
        ["exec", ns, pod, c] if streaming => Route::Exec(ns, pod, c),
        ["attach", ns, pod, c] if streaming => Route::Attach(ns, pod, c),
        ["portForward", ns, pod] if streaming => Route::PortForward(ns, pod),
        ["containerLogs" | "exec" | "attach", _, _, _] | ["portForward", _, _] => {
            return Err(StatusCode::METHOD_NOT_ALLOWED)
        }
        _ => return Err(StatusCode::NOT_FOUND),
    };
    Ok(route)
}

/// The query of an exec or attach request, as the kubelet reads it
/// (`command` repeated; `input`, `output`, `error`, `tty` flags).
pub fn stream_options(query: Option<&str>) -> Result<(Vec<String>, ExecRequest), String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| e.to_string())?;
    let mut cmd = Vec::new();
    let mut r = ExecRequest::default();
    let on = |v: &str| v == "1" || v.eq_ignore_ascii_case("true");
    for (k, v) in pairs {
        match k.as_str() {
            "command" => cmd.push(v),
            "input" => r.stdin = on(&v),
            "output" => r.stdout = on(&v),
            "error" => r.stderr = on(&v),
            "tty" => r.tty = on(&v),
            _ => {}
        }
    }
    if r.tty {
        // A terminal merges stderr into stdout.
        r.stderr = false;
    }
    if !(r.stdin || r.stdout || r.stderr) {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    Ok((cmd, r))
}

async fn handle(ctx: &Context, mut req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let route = match route(req.method(), &path) {
        Ok(r) => r,
        Err(code) => return text(code, code.canonical_reason().unwrap_or("error")),
    };
    let result = match route {
        Route::Healthz => Ok(text(StatusCode::OK, "ok")),
        Route::Pods => Ok(json_response(&stats::pod_list(ctx))),
        Route::StatsSummary => Ok(json_response(
            &stats::summary(ctx, &ctx.data_dir, ctx.image_root.as_deref()).await,
        )),
        Route::Logs(ns, pod, c) => container_logs(ctx, ns, pod, c, query.as_deref()).await,
        Route::Exec(ns, pod, c) => match stream_options(query.as_deref()) {
            Err(e) => Err(text(StatusCode::BAD_REQUEST, e)),
            Ok((cmd, mut r)) => match find_container(ctx, ns, pod, c, false).await {
                Err(resp) => Err(resp),
                Ok((id, _)) => {
                    r.container_id = id;
                    r.cmd = cmd;
                    match ctx.cri.exec(&r).await {
                        Ok(url) => Ok(proxy::upgrade(&mut req, &url).await),
                        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.message)),
                    }
                }
            },
        },
        Route::Attach(ns, pod, c) => match stream_options(query.as_deref()) {
            Err(e) => Err(text(StatusCode::BAD_REQUEST, e)),
            Ok((_, r)) => match find_container(ctx, ns, pod, c, false).await {
                Err(resp) => Err(resp),
                Ok((id, _)) => {
                    let a = AttachRequest {
                        container_id: id,
                        tty: r.tty,
                        stdin: r.stdin,
                        stdout: r.stdout,
                        stderr: r.stderr,
                    };
                    match ctx.cri.attach(&a).await {
                        Ok(url) => Ok(proxy::upgrade(&mut req, &url).await),
                        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.message)),
                    }
                }
            },
        },
        Route::PortForward(ns, pod) => {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
            let ports: Result<Vec<i32>, _> = pairs
                .iter()
                .filter(|(k, _)| k == "port")
                .map(|(_, v)| v.parse::<i32>())
                .collect();
            match ports {
                Err(_) => Err(text(StatusCode::BAD_REQUEST, "invalid port")),
                Ok(ports) => match find_sandbox(ctx, ns, pod).await {
                    Err(resp) => Err(resp),
                    Ok(id) => match ctx.cri.port_forward(&id, &ports).await {
                        Ok(url) => Ok(proxy::upgrade(&mut req, &url).await),
                        Err(e) => Err(text(StatusCode::INTERNAL_SERVER_ERROR, e.message)),
                    },
                },
            }
        }
    };
    result.unwrap_or_else(|e| e)
}

// Errors are the answer to send: a Response.
#[allow(clippy::result_large_err)]
fn pod_uid(ctx: &Context, ns: &str, pod: &str) -> Result<String, Response<Body>> {
    ctx.static_pods
        .find(ns, pod)
        .or_else(|| ctx.pods.get(&ObjectRef::new(pod).within(ns)))
        .and_then(|p| p.metadata.uid.clone())
        .ok_or_else(|| text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found")))
}

/// The container's id and log path: its newest instance, or the one
/// before when `previous`.
async fn find_container(
    ctx: &Context,
    ns: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(String, PathBuf), Response<Body>> {
    let uid = pod_uid(ctx, ns, pod)?;
    let labels = BTreeMap::from([
        (LABEL_POD_UID.to_owned(), uid),
        (LABEL_CONTAINER_NAME.to_owned(), container.to_owned()),
    ]);
    let mut list = ctx
        .cri
        .list_containers(&labels)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.message))?;
    list.sort_by_key(|c| std::cmp::Reverse((c.attempt, c.created_at)));
    let pick = if previous { list.get(1) } else { list.first() };
    let Some(c) = pick else {
        let msg = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is not available")
        };
        return Err(text(StatusCode::BAD_REQUEST, msg));
    };
    let status = ctx
        .cri
        .container_status(&c.id)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.message))?;
    Ok((c.id.clone(), PathBuf::from(status.log_path)))
}

async fn find_sandbox(ctx: &Context, ns: &str, pod: &str) -> Result<String, Response<Body>> {
    let uid = pod_uid(ctx, ns, pod)?;
    let labels = BTreeMap::from([(LABEL_POD_UID.to_owned(), uid)]);
    let mut list = ctx
        .cri
        .list_pod_sandbox(&labels)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.message))?;
    list.retain(|s| s.state == SandboxState::Ready);
    list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    list.first().map(|s| s.id.clone()).ok_or_else(|| {
        text(
            StatusCode::BAD_REQUEST,
            format!("pod {ns}/{pod} has no running sandbox"),
        )
    })
}

async fn container_logs(
    ctx: &Context,
    ns: &str,
    pod: &str,
    container: &str,
    query: Option<&str>,
) -> Result<Response<Body>, Response<Body>> {
    let opts = LogOptions::parse(query, chrono::Utc::now())
        .map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let (id, path) = find_container(ctx, ns, pod, container, opts.previous).await?;
    if let Err(e) = tokio::fs::metadata(&path).await {
        return Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to open log file {}: {e}", path.display()),
        ));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let cri = ctx.cri.clone();
    let follow = opts.follow && !opts.previous;
    tokio::spawn(async move {
        let running = move || {
            let (cri, id) = (cri.clone(), id.clone());
            async move {
                cri.container_status(&id)
                    .await
                    .map(|s| {
                        s.state == ContainerState::Running || s.state == ContainerState::Created
                    })
                    .unwrap_or(false)
            }
        };
        let opts = LogOptions { follow, ..opts };
        if let Err(e) = stream_log(&path, &opts, running, tx).await {
            tracing::debug!(error = %e, "log stream ended");
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = StreamBody::new(futures::StreamExt::map(stream, |b| Ok(Frame::data(b))));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(body))
        .expect("valid response"))
}

/// How often a followed log is read again when it had nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Sends the log's lines to `tx` as `opts` say; when following, keeps
/// reading what the container appends until it is no longer `running`
/// (and the rest is read) or the receiver goes away.
pub async fn stream_log<F, Fut>(
    path: &std::path::Path,
    opts: &LogOptions,
    mut running: F,
    tx: mpsc::Sender<Bytes>,
) -> std::io::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut file = tokio::fs::File::open(path).await?;
    let mut writer = Writer::new(opts);
    let mut decoder = Decoder::default();
    let mut all = Vec::new();
    file.read_to_end(&mut all).await?;
    let mut out = Vec::new();
    for line in logs::initial_lines(&mut decoder, &all, &writer, opts.tail_lines) {
        if !writer.write(&line, &mut out) {
            break;
        }
    }
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return Ok(());
    }
    if !opts.follow || writer.exhausted() {
        return Ok(());
    }
    let mut offset = all.len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = false;
    loop {
        let n = file.read(&mut buf).await?;
        if n > 0 {
            offset += n as u64;
            let mut lines = Vec::new();
            decoder.push(&buf[..n], &mut lines);
            let mut out = Vec::new();
            for line in &lines {
                if !writer.write(line, &mut out) {
                    break;
                }
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return Ok(());
            }
            if writer.exhausted() {
                return Ok(());
            }
            continue;
        }
        if done || tx.is_closed() {
            return Ok(());
        }
        // Nothing new: a log file that was replaced or truncated was
        // rotated; an exited container writes nothing more (one last read
        // after that is seen).
        let opened = file.metadata().await?;
        let rotated = match tokio::fs::metadata(path).await {
            Ok(now) => now.ino() != opened.ino() || opened.len() < offset,
            Err(_) => true,
        };
        if rotated {
            return Ok(());
        }
        if !running().await {
            done = true;
            continue;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
    }
}

#[cfg(test)]
mod tests;
