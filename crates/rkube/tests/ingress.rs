//! The ingress controller (`net::ingress`) in a real `rkube server` on
//! loopback addresses: selector-less Services and EndpointSlices made with
//! the real kubectl point at two tiny HTTP backends started by the test;
//! requests go through the proxy as a client would send them.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use support::{eventually, Server};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A backend answering every request with `name`, on a thread for the
/// life of the test process (one request per connection).
fn backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                name.len()
            );
            s.write_all(resp.as_bytes()).ok();
        }
    });
    port
}

/// One GET through the proxy: (status, body), or None if it failed.
fn get(proxy: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.trim().to_string()))
}

fn service_with_endpoints(name: &str, port: Option<u16>) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    );
    if let Some(port) = port {
        y += &format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: IPv4\nports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]\n"
        );
    }
    y
}

const INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: rkube
  defaultBackend: {service: {name: blue, port: {number: 80}}}
  rules:
  - host: blue.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}]}
  - host: green.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: green, port: {name: http}}}}
      - {path: /blue, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}
  - host: "*.wild.test"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}]}
  - host: down.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: empty, port: {number: 80}}}}]}
"#;

#[test]
fn ingress_routes_http_through_kubectl_objects() {
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let flag = format!("--ingress-http-listen={http}");
    let server = Server::start_with(&[&flag, "--disable-scheduler"]);
    let blue = backend("blue");
    let green = backend("green");
    let objects = [
        service_with_endpoints("blue", Some(blue)),
        service_with_endpoints("green", Some(green)),
        service_with_endpoints("empty", None),
    ]
    .join("---\n");
    server.ok_stdin(&["apply", "-f", "-"], &objects);
    server.ok_stdin(&["apply", "-f", "-"], INGRESS);

    let expect = |host: &str, path: &str, want: (u16, &str)| {
        eventually(20, &format!("{host}{path} -> {want:?}"), || {
            get(http, host, path)
                .filter(|(s, b)| *s == want.0 && (want.1.is_empty() || b == want.1))
        });
    };
    // Two hosts, two services.
    expect("blue.test", "/", (200, "blue"));
    expect("green.test", "/x", (200, "green"));
    // A path rule (element-wise prefix).
    expect("green.test", "/blue/page", (200, "blue"));
    expect("green.test", "/bluer", (200, "green"));
    // A wildcard host: exactly one label.
    expect("a.wild.test", "/", (200, "green"));
    // Default backend for an unknown host.
    expect("nowhere.test", "/", (200, "blue"));
    // 503: a Service without endpoints.
    expect("down.test", "/", (503, ""));

    // Without a default backend, no match is a 404; the update applies
    // without restart.
    let updated = INGRESS.replace(
        "  defaultBackend: {service: {name: blue, port: {number: 80}}}\n",
        "",
    );
    server.ok_stdin(&["apply", "-f", "-"], &updated);
    expect("nowhere.test", "/", (404, ""));
    expect("blue.test", "/", (200, "blue"));

    // The controller created its IngressClass, the default one.
    let class = server.json(&["get", "ingressclass", "rkube", "-o", "json"]);
    assert_eq!(class["spec"]["controller"], "rkube.io/ingress");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    // So an Ingress naming no class is served too.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: noclass}\nspec:\n  rules:\n  - host: noclass.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}]}\n",
    );
    expect("noclass.test", "/", (200, "green"));

    // Status: the nodes' InternalIPs, shown by kubectl as ADDRESS.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata: {name: edge}\n",
    );
    server.ok(&[
        "patch", "node", "edge", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.10"},{"type":"Hostname","address":"edge"}]}}"#,
    ]);
    eventually(20, "ingress ADDRESS", || {
        let out = server.ok(&["get", "ingress", "web"]);
        out.lines()
            .nth(1)
            .filter(|l| l.split_whitespace().any(|w| w == "192.0.2.10"))
            .map(|_| ())
    });

    // An Ingress of another class is not served.
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: other}\nspec:\n  ingressClassName: nginx\n  rules:\n  - host: other.test\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}]}\n",
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(get(http, "other.test", "/").map(|r| r.0), Some(404));
}
