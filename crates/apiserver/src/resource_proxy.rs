//! The `proxy` subresources of pods and services, as kube-apiserver serves
//! them: `/api/v1/namespaces/{ns}/pods/{[scheme:]name[:port]}/proxy/{path}`
//! goes to the pod's IP, `/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/{path}`
//! to one ready endpoint of the Service (the port names a Service port, by
//! name or number; the endpoint port is the EndpointSlice port of the same
//! name), `/api/v1/nodes/{[scheme:]name[:port]}/proxy/{path}` to the node's
//! agent (its kubelet port, over HTTPS with the API server's kubelet
//! client certificate; another port as asked). The request (method, query, body, headers less hop-by-hop ones
//! and the caller's credentials) is forwarded over HTTP, or HTTPS without
//! verifying the backend's certificate, and the answer streams back as it
//! comes. Loopback, link-local and unspecified addresses are refused, as
//! Kubernetes refuses them. Not done: rewriting links and redirects in
//! proxied HTML, upgrades (WebSocket) through the proxy.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::request::RequestInfo;
use crate::rest::{self, Scope};
use crate::status::{ApiError, ApiResult};
use crate::State;

/// Whether a request is for a pod's, a service's or a node's proxy
/// subresource.
pub fn is_proxy(info: &RequestInfo) -> bool {
    let scoped = match info.resource.as_str() {
        "pods" | "services" => info.namespace.is_some(),
        "nodes" => info.namespace.is_none(),
        _ => false,
    };
    info.group.is_empty()
        && scoped
        && info.name.is_some()
        && info.subresource.as_deref() == Some("proxy")
}

/// `[scheme:]name[:port]`, as Kubernetes' SplitSchemeNamePort reads it.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some((scheme, name, port))
}

/// The path after `.../{id}/proxy` (at least `/`), with the query.
pub fn tail(path_and_query: &str, id: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
    let marker = format!("/{id}/proxy");
    let rest = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .unwrap_or("");
    let mut out = if rest.is_empty() {
        "/".to_owned()
    } else {
        rest.to_owned()
    };
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Whether the API server may proxy to `ip` (Kubernetes' IsProxyableIP).
pub fn proxyable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// A pod's target port: a number, or the name of one of its container
/// ports; empty means the scheme's default.
pub fn pod_port(pod: &Value, port: &str) -> ApiResult<Option<u16>> {
    if port.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = port.parse::<u16>() {
        return Ok(Some(n));
    }
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
        .and_then(|p| p.get("containerPort")?.as_u64())
        .and_then(|n| u16::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!(
                    "no port named {port:?} in pod {:?}",
                    crate::object::name(pod)
                ),
            )
        })
}

/// The name of the Service port `port` names (by name or number; empty:
/// the only port).
pub fn service_port_name(svc: &Value, port: &str) -> ApiResult<String> {
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let name_of = |p: &Value| {
        p.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let found = if port.is_empty() {
        (ports.len() == 1).then(|| name_of(&ports[0]))
    } else if let Ok(n) = port.parse::<u64>() {
        ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(n))
            .map(name_of)
    } else {
        ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
            .map(name_of)
    };
    found.ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!(
                "no service port {port:?} found for service {:?}",
                crate::object::name(svc)
            ),
        )
    })
}

/// The ready endpoint addresses (ip, port) of EndpointSlices for the
/// Service port named `port_name`.
pub fn endpoints(slices: &[Value], port_name: &str) -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for s in slices {
        let Some(port) = s
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port")?.as_u64())
            .and_then(|n| u16::try_from(n).ok())
        else {
            continue;
        };
        for e in s
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if e.pointer("/conditions/ready") == Some(&Value::Bool(false)) {
                continue;
            }
            for a in e
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = a.as_str().and_then(|a| a.parse().ok()) {
                    out.push((ip, port));
                }
            }
        }
    }
    out
}

pub async fn serve(state: Arc<State>, parts: Parts, body: Body, info: RequestInfo) -> Response {
    match try_serve(state, parts, body, info).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", message)
}

async fn try_serve(
    state: Arc<State>,
    parts: Parts,
    body: Body,
    info: RequestInfo,
) -> ApiResult<Response> {
    let id = info.name.clone().unwrap_or_default();
    let ns = info.namespace.clone().unwrap_or_default();
    let (scheme, name, port) = split_scheme_name_port(&id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid request {id:?}")))?;
    let target = tail(parts.uri.path_and_query().map_or("", |p| p.as_str()), &id);
    if info.resource == "nodes" {
        let kubelet: std::net::SocketAddr = crate::streaming::kubelet_address(&state, name)
            .await?
            .parse()
            .map_err(|e| ApiError::internal(format!("node {name:?}: {e}")))?;
        // The kubelet's own port speaks HTTPS to the API server's client
        // certificate; any other port is proxied as asked.
        let (addr, scheme, tls) = if port.is_empty() || port.parse() == Ok(kubelet.port()) {
            let tls = state
                .kubelet_client
                .clone()
                .ok_or_else(|| ApiError::internal("no kubelet client certificate configured"))?;
            (kubelet, "https", Some(tls))
        } else {
            let p: u16 = port
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
            let scheme = if scheme.is_empty() { "http" } else { scheme };
            (std::net::SocketAddr::new(kubelet.ip(), p), scheme, None)
        };
        if !proxyable(addr.ip()) {
            return Err(ApiError::bad_request(format!(
                "address not allowed: {}",
                addr.ip()
            )));
        }
        return forward(parts, body, addr, scheme, tls, &target)
            .await
            .map_err(|e| unavailable(format!("error trying to reach node: {e:#}")));
    }
    let scheme = if scheme.is_empty() { "http" } else { scheme };
    let res = api::registry::find("", "v1", &info.resource).expect("registered");
    let scope = Scope {
        res,
        namespace: Some(&ns),
        schema: None,
    };
    let obj = rest::get(&state.store, scope, name).await?;
    let (ip, port) = if info.resource == "pods" {
        let ip: IpAddr = obj
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unavailable(format!("pod {name:?} has no IP address")))?;
        let default = if scheme == "https" { 443 } else { 80 };
        (ip, pod_port(&obj, port)?.unwrap_or(default))
    } else {
        let port_name = service_port_name(&obj, port)?;
        let slices_res =
            api::registry::find("discovery.k8s.io", "v1", "endpointslices").expect("registered");
        let prefix = api::registry::storage_prefix(slices_res, Some(&ns));
        let listed = state
            .store
            .list(&prefix, store::ListOptions::default())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let slices: Vec<Value> = listed
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter(|s| {
                s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    == Some(name)
            })
            .collect();
        let eps = endpoints(&slices, &port_name);
        if eps.is_empty() {
            return Err(unavailable(format!(
                "no endpoints available for service {name:?}"
            )));
        }
        eps[rand::random_range(0..eps.len())]
    };
    if !proxyable(ip) {
        return Err(ApiError::bad_request(format!("address not allowed: {ip}")));
    }
    let addr = std::net::SocketAddr::new(ip, port);
    forward(parts, body, addr, scheme, None, &target)
        .await
        .map_err(|e| {
            unavailable(format!(
                "error trying to reach {}: {e:#}",
                info.resource.trim_end_matches('s')
            ))
        })
}

/// Headers that describe one hop, or the caller's credentials for the
/// API server: not passed on.
fn passed_on(name: &str) -> bool {
    !matches!(
        name.to_ascii_lowercase().as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "authorization"
            | "host"
            | "impersonate-user"
            | "impersonate-group"
    )
}

async fn forward(
    parts: Parts,
    body: Body,
    addr: std::net::SocketAddr,
    scheme: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    target: &str,
) -> anyhow::Result<Response> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| anyhow::anyhow!("dial tcp {addr}: i/o timeout"))?
    .map_err(|e| anyhow::anyhow!("dial tcp {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in &parts.headers {
        if passed_on(name.as_str()) {
            up = up.header(name, value);
        }
    }
    let request = up.body(body)?;
    let resp = if scheme == "https" {
        let tls = tls.unwrap_or_else(crate::streaming::insecure_client_config);
        let server_name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };
    let (head, incoming) = resp.into_parts();
    let mut out = Response::builder().status(head.status);
    for (name, value) in &head.headers {
        if passed_on(name.as_str()) {
            out = out.header(name, value);
        }
    }
    if head.status == StatusCode::SWITCHING_PROTOCOLS {
        anyhow::bail!("upgrades are not proxied");
    }
    Ok(out.body(Body::new(incoming))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_tails() {
        let cases = [
            ("web", Some(("", "web", ""))),
            ("web:8080", Some(("", "web", "8080"))),
            ("https:web:443", Some(("https", "web", "443"))),
            ("http:web:", Some(("http", "web", ""))),
            ("ftp:web:21", None),
            (":80", None),
            ("a:b:c:d", None),
        ];
        for (id, want) in cases {
            assert_eq!(split_scheme_name_port(id), want, "{id}");
        }
        let tails = [
            ("/api/v1/namespaces/d/pods/web:80/proxy", "web:80", "/"),
            ("/api/v1/namespaces/d/pods/web:80/proxy/", "web:80", "/"),
            (
                "/api/v1/namespaces/d/services/web/proxy/a/b?x=1&y=2",
                "web",
                "/a/b?x=1&y=2",
            ),
            ("/api/v1/namespaces/d/services/web/proxy?q", "web", "/?q"),
        ];
        for (path, id, want) in tails {
            assert_eq!(tail(path, id), want, "{path}");
        }
    }

    #[test]
    fn addresses_allowed() {
        for (ip, ok) in [
            ("10.42.0.5", true),
            ("192.0.2.2", true),
            ("127.0.0.1", false),
            ("169.254.169.254", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fe80::1", false),
            ("fd00::1", true),
        ] {
            assert_eq!(proxyable(ip.parse().unwrap()), ok, "{ip}");
        }
    }

    #[test]
    fn ports_and_endpoints() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(pod_port(&pod, "").unwrap(), None);
        assert_eq!(pod_port(&pod, "9000").unwrap(), Some(9000));
        assert_eq!(pod_port(&pod, "http").unwrap(), Some(8080));
        assert_eq!(pod_port(&pod, "grpc").unwrap_err().code, 503);

        let svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [
            {"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}});
        assert_eq!(service_port_name(&svc, "http").unwrap(), "http");
        assert_eq!(service_port_name(&svc, "9090").unwrap(), "metrics");
        assert!(service_port_name(&svc, "").is_err(), "two ports: which?");
        let single = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(service_port_name(&single, "").unwrap(), "");

        let slices = [
            json!({"ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}],
                   "endpoints": [
                       {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                       {"addresses": ["10.0.0.3"]}]}),
            json!({"ports": [{"name": "other", "port": 1}], "endpoints": [{"addresses": ["10.0.0.9"]}]}),
        ];
        let got = endpoints(&slices, "http");
        assert_eq!(
            got,
            [
                ("10.0.0.1".parse().unwrap(), 8080),
                ("10.0.0.3".parse().unwrap(), 8080)
            ]
        );
        assert_eq!(endpoints(&slices, "metrics").len(), 2);
        assert!(endpoints(&slices, "nope").is_empty());
    }
}
