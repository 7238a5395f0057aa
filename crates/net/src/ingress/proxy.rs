//! The HTTP/1.1 reverse proxy: each request is routed through the current
//! [`RouteTable`], balanced round-robin over the backend's ready endpoints
//! and forwarded with `X-Forwarded-For`, `-Proto` and `-Host`; 404 when no
//! rule matches, 503 when the backend has no ready endpoint, 502 when the
//! chosen endpoint cannot be reached.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::routes::{Decision, RouteTable};

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
}

impl Shared {
    /// Replaces the routing table; requests already routed are unaffected.
    pub fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap() = Arc::new(table);
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
