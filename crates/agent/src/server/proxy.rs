//! Proxies an upgrade request (exec, attach, port-forward) to the
//! runtime's streaming server: the request goes on with its upgrade
//! headers, and once the runtime answers 101 the two connections are
//! joined byte for byte. Any other answer is passed back as it is.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::{text, Body};

/// Headers that carry the upgrade negotiation (SPDY and WebSocket).
pub fn forwarded(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "upgrade" | "connection" | "x-stream-protocol-version" | "origin" | "user-agent"
    ) || n.starts_with("sec-websocket-")
}

/// (`host:port`, `/path?query`) of an `http://` URL.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(slash);
    Some((authority, if path.is_empty() { "/" } else { path }))
}

pub async fn upgrade(req: &mut Request<Incoming>, url: &str) -> Response<Body> {
    match try_upgrade(req, url).await {
        Ok(r) => r,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error proxying to the container runtime's stream server: {e}"),
        ),
    }
}

async fn try_upgrade(req: &mut Request<Incoming>, url: &str) -> anyhow::Result<Response<Body>> {
    let (authority, path) =
        split_url(url).ok_or_else(|| anyhow::anyhow!("unsupported stream URL {url}"))?;
    let tcp = tokio::net::TcpStream::connect(authority).await?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "stream server connection ended");
        }
    });
    let mut up = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .header("host", authority);
    for (name, value) in req.headers() {
        if forwarded(name.as_str()) {
            up = up.header(name, value);
        }
    }
    let up = up.body(Full::new(Bytes::new()))?;
    let mut resp = sender.send_request(up).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = Limited::new(resp.into_body(), 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::builder().status(status);
        for (name, value) in &headers {
            if name != "content-length" && name != "transfer-encoding" {
                out = out.header(name, value);
            }
        }
        return Ok(out.body(Full::new(body).map_err(|e| match e {}).boxed())?);
    }
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in resp.headers() {
        out = out.header(name, value);
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let downstream = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let (up, down) = match tokio::try_join!(upstream, downstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "stream upgrade failed");
                return;
            }
        };
        let (mut up, mut down) = (TokioIo::new(up), TokioIo::new(down));
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            tracing::debug!(error = %e, "stream ended");
        }
    });
    Ok(out.body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())?)
}
