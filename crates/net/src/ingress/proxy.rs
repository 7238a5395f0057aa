//! The HTTP/1.1 reverse proxy: each request, plain or decrypted by the
//! HTTPS listener, is routed through the current [`RouteTable`], balanced
//! round-robin over the backend's ready endpoints and forwarded with
//! `X-Forwarded-For`, `-Proto` (`http` or `https`) and `-Host`; 404 when no
//! rule matches, 503 when the backend has no ready endpoint, 502 when the
//! chosen endpoint cannot be reached. Once HTTPS is enabled
//! ([`Shared::redirect_to_https`]), a plain-HTTP request for a host with a
//! TLS certificate gets a 308 to the same URL on https, as ingress-nginx's
//! default `ssl-redirect` does (ACME http-01 challenge paths excepted).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::routes::{strip_port, Decision, RouteTable};
use super::tls::Certs;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths never redirected to https: ACME http-01 challenges must be
/// answered on plain HTTP.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Headers that describe one hop and are not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The state every connection shares: the current table (swapped whole on
/// changes) and the round-robin cursors per backend.
#[derive(Default)]
pub struct Shared {
    table: RwLock<Arc<RouteTable>>,
    cursors: Mutex<HashMap<String, usize>>,
    /// Set once HTTPS serves: the certificates and the HTTPS port.
    https: OnceLock<(Arc<Certs>, u16)>,
}

impl Shared {
    /// Replaces the routing table; requests already routed are unaffected.
    pub fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap() = Arc::new(table);
    }

    /// From now on, plain-HTTP requests for hosts `certs` has a
    /// certificate for are redirected to https on `port`.
    pub fn redirect_to_https(&self, certs: Arc<Certs>, port: u16) {
        let _ = self.https.set((certs, port));
    }

    /// The https URL a plain-HTTP request for `host` and `path_and_query`
    /// is redirected to, if its host has a certificate.
    fn https_redirect(&self, host: &str, path_and_query: &str) -> Option<String> {
        let (certs, port) = self.https.get()?;
        if path_and_query.starts_with(ACME_CHALLENGE_PREFIX) {
            return None;
        }
        let name = strip_port(host).to_ascii_lowercase();
        certs.table().lookup(&name)?;
        // TLS hosts are DNS names (never IP literals): no brackets needed.
        Some(match port {
            443 => format!("https://{name}{path_and_query}"),
            p => format!("https://{name}:{p}{path_and_query}"),
        })
    }

    fn pick(&self, key: &str, endpoints: &[SocketAddr]) -> SocketAddr {
        let mut cursors = self.cursors.lock().unwrap();
        let n = cursors.entry(key.to_string()).or_default();
        let ep = endpoints[*n % endpoints.len()];
        *n = n.wrapping_add(1);
        ep
    }
}

/// Serves plain HTTP on `listener` until the task is dropped.
pub async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(serve_connection(stream, peer, "http", shared));
    }
}

/// Serves HTTPS on `listener` until the task is dropped: TLS is
/// terminated with `tls` (whose resolver picks the certificate by SNI),
/// then requests go through the same routing as plain HTTP.
pub async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(tls, peer, "https", shared).await,
                Ok(Err(e)) => tracing::debug!(%peer, "ingress TLS handshake: {e}"),
                Err(_) => tracing::debug!(%peer, "ingress TLS handshake timed out"),
            }
        });
    }
}

/// Serves one accepted (and, for HTTPS, already decrypted) connection.
pub async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&shared, peer, scheme, req).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, "ingress connection: {e}");
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!("{text}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Routes and forwards one request.
pub async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    scheme: &'static str,
    req: Request<Incoming>,
) -> Response<Body> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().host().map(str::to_string))
        .unwrap_or_default();
    if scheme == "http" {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Some(location) = shared.https_redirect(&host, pq) {
            let mut resp = plain(StatusCode::PERMANENT_REDIRECT, "308 Permanent Redirect");
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(hyper::header::LOCATION, v);
                return resp;
            }
        }
    }
    let table = shared.table.read().unwrap().clone();
    let decision = table.route(&host, req.uri().path());
    let (key, endpoints) = match decision {
        Decision::NotFound => return plain(StatusCode::NOT_FOUND, "404 Not Found"),
        Decision::Unavailable { .. } => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Temporarily Unavailable",
            )
        }
        Decision::Backend { key, endpoints } => (key, endpoints),
    };
    let endpoint = shared.pick(&key, &endpoints);
    match forward(endpoint, peer, scheme, &host, req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => {
            tracing::debug!(%endpoint, backend = %key, "ingress forward: {e}");
            plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway")
        }
    }
}

async fn forward(
    endpoint: SocketAddr,
    peer: SocketAddr,
    scheme: &'static str,
    host: &str,
    req: Request<Incoming>,
) -> anyhow::Result<Response<Incoming>> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = path.parse()?;
    parts.version = hyper::Version::HTTP_11;
    let headers = &mut parts.headers;
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(
        HOP_BY_HOP
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect::<Vec<_>>()
            .iter(),
    ) {
        headers.remove(name);
    }
    let client_ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client_ip}"),
        None => client_ip,
    };
    headers.insert("x-forwarded-for", HeaderValue::from_str(&xff)?);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if !host.is_empty() {
        headers.insert("x-forwarded-host", HeaderValue::from_str(host)?);
        if !headers.contains_key(HOST) {
            headers.insert(HOST, HeaderValue::from_str(host)?);
        }
    }
    let stream = TcpStream::connect(endpoint).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("ingress backend connection: {e}");
        }
    });
    Ok(sender
        .send_request(Request::from_parts(parts, body))
        .await?)
}

#[cfg(test)]
mod tests;
