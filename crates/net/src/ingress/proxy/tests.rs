use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{serve_http, Shared};
use crate::ingress::RouteTable;

/// A backend answering every request with its name and the request's
/// path and X-Forwarded-* headers, one request per connection.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let mut lines = req.lines();
                let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_string();
                let fwd: Vec<&str> = lines.filter(|l| l.starts_with("x-forwarded-")).collect();
                let body = format!("{name} {path} {}", fwd.join(";"));
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    addr
}

/// Sends one GET and returns (status, body).
async fn get(proxy: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 192.0.2.7\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

fn table(svc_eps: &[(&str, Vec<SocketAddr>)]) -> RouteTable {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    let mut paths = Vec::new();
    for (name, eps) in svc_eps {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name},
            "spec": {"ports": [{"port": 80}]},
        }))
        .unwrap();
        services.push(svc);
        for (i, ep) in eps.iter().enumerate() {
            let slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": format!("{name}-{i}"),
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"port": ep.port()}],
                "endpoints": [{"addresses": [ep.ip().to_string()]}],
            }))
            .unwrap();
            slices.push(slice);
        }
        paths.push(json!({"path": format!("/{name}"), "pathType": "Prefix",
            "backend": {"service": {"name": name, "port": {"number": 80}}}}));
    }
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "t"},
        "spec": {"ingressClassName": "rkube", "rules": [{"host": "app.test", "http": {"paths": paths}}]},
    }))
    .unwrap();
    RouteTable::build(&[ing], &[], &services, &slices)
}

#[tokio::test]
async fn proxies_round_robin_with_forwarded_headers_and_errors() {
    let one = backend("one").await;
    let two = backend("two").await;
    // A port nothing listens on: bound then dropped.
    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let shared = Arc::new(Shared::default());
    shared.set_table(table(&[
        ("svc", vec![one, two]),
        ("dead", vec![dead]),
        ("empty", vec![]),
    ]));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_http(listener, shared.clone()));

    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, body) = get(proxy, "app.test", "/svc/x?q=1").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(" /svc/x?q=1 "), "{body}");
        assert!(
            body.contains("x-forwarded-for: 192.0.2.7, 127.0.0.1"),
            "{body}"
        );
        assert!(body.contains("x-forwarded-proto: http"), "{body}");
        assert!(body.contains("x-forwarded-host: app.test"), "{body}");
        seen.push(body.split(' ').next().unwrap().to_string());
    }
    // Round-robin: alternates between the two endpoints.
    assert_eq!(seen[0], seen[2]);
    assert_eq!(seen[1], seen[3]);
    assert_ne!(seen[0], seen[1]);

    assert_eq!(get(proxy, "app.test", "/nothing").await.0, 404);
    assert_eq!(get(proxy, "other.test", "/svc").await.0, 404);
    assert_eq!(get(proxy, "app.test", "/empty").await.0, 503);
    assert_eq!(get(proxy, "app.test", "/dead").await.0, 502);

    // A new table applies to the next request.
    shared.set_table(table(&[("svc", vec![])]));
    assert_eq!(get(proxy, "app.test", "/svc").await.0, 503);
    server.abort();
}

#[test]
fn redirects_to_https_only_hosts_with_a_certificate() {
    use crate::ingress::tls::{CertTable, Certs, KeyCache};
    use k8s_openapi::api::core::v1::Secret;

    let mut params = rcgen::CertificateParams::new(vec!["*.app.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "app");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "app-tls"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": k8s_openapi::ByteString(cert.pem().into_bytes()),
                 "tls.key": k8s_openapi::ByteString(key.serialize_pem().into_bytes())},
    }))
    .unwrap();
    let ing: Ingress = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "t"},
        "spec": {"ingressClassName": "rkube", "tls": [
            {"hosts": ["*.app.test"], "secretName": "app-tls"}]},
    }))
    .unwrap();
    let (table, problems) = CertTable::build(&[ing], &[], &[secret], &mut KeyCache::default());
    assert!(problems.is_empty(), "{problems:?}");
    let certs = Arc::new(Certs::new().unwrap());
    certs.set_table(table);

    let shared = Shared::default();
    // Not enabled yet: no redirect.
    assert_eq!(shared.https_redirect("www.app.test", "/"), None);
    for (port, host, pq, want) in [
        (443, "www.app.test", "/", Some("https://www.app.test/")),
        (
            443,
            "WWW.app.test:80",
            "/a?b=c",
            Some("https://www.app.test/a?b=c"),
        ),
        (
            8443,
            "www.app.test",
            "/x",
            Some("https://www.app.test:8443/x"),
        ),
        (443, "[::1]:80", "/", None),
        // No certificate for these hosts.
        (443, "app.test", "/", None),
        (443, "a.b.app.test", "/", None),
        (443, "", "/", None),
        // ACME http-01 challenges stay on plain HTTP.
        (443, "www.app.test", "/.well-known/acme-challenge/tok", None),
    ] {
        let shared = Shared::default();
        shared.redirect_to_https(certs.clone(), port);
        assert_eq!(
            shared.https_redirect(host, pq).as_deref(),
            want,
            "{port} {host} {pq}"
        );
    }
}
