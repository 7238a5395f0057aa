//! The ingress controller (`net::ingress`) in a real `rkube server` on
//! loopback addresses: selector-less Services and EndpointSlices made with
//! the real kubectl point at two tiny HTTP backends started by the test;
//! requests go through the proxy as a client would send them, HTTPS ones
//! with the real curl against TLS Secrets made with kubectl.

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

/// A backend answering every request with `name` (and the request's
/// X-Forwarded-Proto in the response header `x-saw-proto`), on a thread
/// for the life of the test process (one request per connection).
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
            let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            let proto = head
                .lines()
                .find_map(|l| l.strip_prefix("x-forwarded-proto:"))
                .unwrap_or("")
                .trim()
                .to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-saw-proto: {proto}\r\nconnection: close\r\n\r\n{name}",
                name.len()
            );
            s.write_all(resp.as_bytes()).ok();
        }
    });
    port
}

/// One GET through the proxy: (status, body), or None if it failed.
fn get(proxy: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let (status, _, body) = get_full(proxy, host, path)?;
    Some((status, body))
}

/// One GET through the proxy: (status, lowercased head, body).
fn get_full(proxy: SocketAddr, host: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((status, head.to_ascii_lowercase(), body.trim().to_string()))
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
    let tls_flag = format!("--ingress-https-listen=127.0.0.1:{}", free_port());
    let server = Server::start_with(&[&flag, &tls_flag, "--disable-scheduler"]);
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

/// A self-signed certificate for `host` (its CN and only DNS name), as
/// (cert PEM, key PEM); `cn` overrides the CN to tell renewals apart.
fn self_signed(host: &str, cn: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The manifest of the TLS Secret `name` holding `pem`, as kubectl writes
/// it (`kubectl create secret tls --dry-run=client -o yaml`).
fn tls_secret(server: &Server, name: &str, pem: &(String, String)) -> String {
    let dir = server.dir.path();
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, &pem.0).unwrap();
    std::fs::write(&key, &pem.1).unwrap();
    server.ok(&[
        "create",
        "secret",
        "tls",
        name,
        &format!("--cert={}", crt.display()),
        &format!("--key={}", key.display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ])
}

/// What curl got for `https://{host}:{port}{path}` sent to 127.0.0.1
/// (SNI and Host are `host`).
struct Curl {
    ok: bool,
    /// The response head and body (`-i`).
    out: String,
    /// curl's verbose log, with the server certificate's subject.
    log: String,
}

/// HTTPS through the proxy with curl: `cacert` is the only trusted CA
/// (a server certificate not issued by it fails verification); None
/// skips verification.
fn curl(port: u16, host: &str, path: &str, cacert: Option<&std::path::Path>) -> Curl {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-v", "-i", "--max-time", "5", "--noproxy", "*"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"));
    match cacert {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    let out = cmd
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    Curl {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        log: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const TLS_INGRESS: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  ingressClassName: rkube
  tls:
  - {hosts: [blue.test], secretName: blue-tls}
  - {hosts: ["*.green.test"], secretName: green-tls}
  - {hosts: [red.test], secretName: red-tls-missing}
  rules:
  - host: blue.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}]}
  - host: "*.green.test"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}]}
  - host: red.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: blue, port: {number: 80}}}}]}
  - host: plain.test
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: green, port: {number: 80}}}}]}
"#;

#[test]
fn ingress_terminates_tls_with_sni_certificates_from_secrets() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: curl is not installed");
        return;
    }
    let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let https = free_port();
    let server = Server::start_with(&[
        &format!("--ingress-http-listen={http}"),
        &format!("--ingress-https-listen=127.0.0.1:{https}"),
        "--disable-scheduler",
    ]);
    let blue = backend("blue");
    let green = backend("green");
    let objects = [
        service_with_endpoints("blue", Some(blue)),
        service_with_endpoints("green", Some(green)),
    ]
    .join("---\n");
    server.ok_stdin(&["apply", "-f", "-"], &objects);
    let blue_pem = self_signed("blue.test", "blue.test");
    let green_pem = self_signed("*.green.test", "green wildcard");
    let dir = server.dir.path().to_path_buf();
    let blue_ca = dir.join("blue-ca.pem");
    let green_ca = dir.join("green-ca.pem");
    std::fs::write(&blue_ca, &blue_pem.0).unwrap();
    std::fs::write(&green_ca, &green_pem.0).unwrap();
    server.ok_stdin(
        &["apply", "-f", "-"],
        &tls_secret(&server, "blue-tls", &blue_pem),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &tls_secret(&server, "green-tls", &green_pem),
    );
    server.ok_stdin(&["apply", "-f", "-"], TLS_INGRESS);

    // Each host gets its own certificate (curl trusts only that one, so
    // the handshake verifies only with it) and its own backend, told the
    // request came over https.
    let expect = |host: &str, ca: &std::path::Path, cn: &str, body: &str| {
        let got = eventually(20, &format!("https {host} -> {body} with {cn}"), || {
            Some(curl(https, host, "/", Some(ca))).filter(|c| c.ok && c.out.ends_with(body))
        });
        assert!(got.log.contains(&format!("CN={cn}")), "{}", got.log);
        assert!(
            got.out.to_ascii_lowercase().contains("x-saw-proto: https"),
            "{}",
            got.out
        );
    };
    expect("blue.test", &blue_ca, "blue.test", "blue");
    expect("www.green.test", &green_ca, "green wildcard", "green");
    expect("api.green.test", &green_ca, "green wildcard", "green");
    // The wrong CA for a host fails verification.
    assert!(!curl(https, "blue.test", "/", Some(&green_ca)).ok);

    // Unknown names, a missing Secret's host and a wildcard's parent get
    // the default (fake) certificate; requests still route by Host.
    let fake = "Kubernetes Ingress Controller Fake Certificate";
    for (host, want) in [
        ("nowhere.test", "404 Not Found"),
        ("red.test", "blue"),
        ("green.test", "404 Not Found"),
        ("plain.test", "green"),
    ] {
        let got = curl(https, host, "/", None);
        assert!(got.ok, "{host}: {}", got.log);
        assert!(got.log.contains(fake), "{host}: {}", got.log);
        assert!(got.out.trim_end().ends_with(want), "{host}: {}", got.out);
        assert!(!curl(https, host, "/", Some(&blue_ca)).ok, "{host}");
    }

    // The missing Secret is reported (once) in the server's log.
    let warning = "ingress TLS: ingress default/secure: secret default/red-tls-missing: not found";
    let log = server.log();
    assert_eq!(log.matches(warning).count(), 1, "{log}");

    // Plain HTTP for a host with a certificate: 308 to https (path and
    // query kept); hosts without one are served as before.
    let (status, head, _) = get_full(http, "blue.test", "/a/b?c=d").unwrap();
    assert_eq!(status, 308, "{head}");
    assert!(
        head.contains(&format!("location: https://blue.test:{https}/a/b?c=d")),
        "{head}"
    );
    assert_eq!(
        get(http, "plain.test", "/"),
        Some((200, "green".to_string()))
    );
    assert_eq!(get(http, "red.test", "/"), Some((200, "blue".to_string())));

    // A renewed certificate in the Secret applies without restart.
    let renewed = self_signed("blue.test", "blue renewed");
    let renewed_ca = dir.join("renewed-ca.pem");
    std::fs::write(&renewed_ca, &renewed.0).unwrap();
    server.ok_stdin(
        &["apply", "-f", "-"],
        &tls_secret(&server, "blue-tls", &renewed),
    );
    expect("blue.test", &renewed_ca, "blue renewed", "blue");
    assert!(!curl(https, "blue.test", "/", Some(&blue_ca)).ok);

    // The missing Secret appears: red.test gets its certificate.
    let red = self_signed("red.test", "red.test");
    let red_ca = dir.join("red-ca.pem");
    std::fs::write(&red_ca, &red.0).unwrap();
    server.ok_stdin(
        &["apply", "-f", "-"],
        &tls_secret(&server, "red-tls-missing", &red),
    );
    expect("red.test", &red_ca, "red.test", "blue");

    // A Secret whose key no longer matches its certificate is skipped:
    // its host falls back to the default certificate.
    // (kubectl create secret tls refuses such a pair: written by hand.)
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let broken = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: green-tls}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&green_pem.0),
        b64(&renewed.1)
    );
    server.ok_stdin(&["apply", "-f", "-"], &broken);
    eventually(20, "www.green.test falls back to the default", || {
        Some(curl(https, "www.green.test", "/", None)).filter(|c| c.ok && c.log.contains(fake))
    });
    // And the other hosts keep theirs.
    expect("blue.test", &renewed_ca, "blue renewed", "blue");
}
