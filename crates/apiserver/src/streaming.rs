//! The streaming pod subresources — `log`, `exec`, `attach`,
//! `portforward` — proxied to the agent on the pod's node (its InternalIP
//! and `daemonEndpoints.kubeletEndpoint.Port`), as kube-apiserver does.
//!
//! The API server checks what it can from the stored pod (the container
//! name, the node) with Kubernetes' messages, then connects to the
//! agent over TLS with its own client certificate (`kubelet-client`,
//! signed by the cluster CA). The agent's serving certificate is
//! self-signed and not verified (kube-apiserver's default without
//! `--kubelet-certificate-authority`). Logs stream back as the agent
//! sends them; exec, attach and port-forward requests go on with their
//! upgrade headers and, once upgraded, the connections are joined byte
//! for byte, so the protocol (SPDY, or WebSocket where the runtime has
//! it) is negotiated between the client and the container runtime.

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::rest::{self, Scope};
use crate::status::{ApiError, ApiResult};
use crate::State;

/// The subresources served here.
pub fn is_streaming(info: &crate::request::RequestInfo) -> bool {
    info.group.is_empty()
        && info.resource == "pods"
        && info.name.is_some()
        && matches!(
            info.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward")
        )
}

/// TLS settings for connections to agents: the API server's client
/// certificate, no verification of the agent's self-signed one.
pub fn kubelet_client_config(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("kubelet client key: {e}"))?
        .ok_or_else(|| "kubelet client key: no private key found".to_owned())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("kubelet client certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS settings for proxying to pods and services over HTTPS: no client
/// certificate, the backend's certificate not verified (as
/// kube-apiserver's proxy does).
pub fn insecure_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts any server certificate (signatures are still checked, so the
/// peer holds the key of the certificate it shows).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn query_pairs(query: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
}

fn flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && (v == "1" || v.eq_ignore_ascii_case("true")))
}

/// Every container name of a pod spec: init containers, containers,
/// ephemeral containers (Kubernetes' VisitContainers order).
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| {
            pod.pointer(&format!("/spec/{k}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// The container a request is for: the one named, or the only one
/// (kube-apiserver's validateContainer).
pub fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> ApiResult<String> {
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if container_names(pod).contains(&c) {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None => {
            let containers = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match containers {
                [one] => Ok(one
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()),
                [] => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

/// The kubelet's check of a container's state before serving its logs
/// (validateContainerLogStatus), from the pod's status.
pub fn check_log_status(pod: &Value, name: &str, container: &str, previous: bool) -> ApiResult<()> {
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|k| {
        pod.pointer(&format!("/status/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    })
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(s) = status else {
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is not available"
        )));
    };
    let id_of = |v: Option<&Value>| {
        v.and_then(|t| t.get("containerID"))
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty())
    };
    let last_terminated = s.pointer("/lastState/terminated");
    let state = s.get("state");
    let waiting = state.and_then(|s| s.get("waiting"));
    let running = state.and_then(|s| s.get("running"));
    let terminated = state.and_then(|s| s.get("terminated"));
    let terminated_msg = || {
        ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is terminated"
        ))
    };
    if previous {
        if !id_of(last_terminated) {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
        return Ok(());
    }
    if running.is_some() {
        return Ok(());
    }
    if terminated.is_some() {
        return if id_of(terminated) || id_of(last_terminated) {
            Ok(())
        } else {
            Err(terminated_msg())
        };
    }
    if last_terminated.is_some() {
        return if id_of(last_terminated) {
            Ok(())
        } else {
            Err(terminated_msg())
        };
    }
    let reason = match waiting {
        Some(w) => match w.get("reason").and_then(Value::as_str).unwrap_or("") {
            "ErrImagePull" => "image can't be pulled".to_owned(),
            "ImagePullBackOff" => "trying and failing to pull image".to_owned(),
            r => r.to_owned(),
        },
        None => {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start - no logs yet"
            )))
        }
    };
    Err(ApiError::bad_request(format!(
        "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
    )))
}

/// The agent path and query for a request (kube-apiserver's
/// LogLocation, ExecLocation, AttachLocation, PortForwardLocation).
pub fn kubelet_path(
    sub: &str,
    ns: &str,
    name: &str,
    container: &str,
    pairs: &[(String, String)],
) -> String {
    let mut out: Vec<(&str, String)> = Vec::new();
    let path = match sub {
        "log" => {
            for (k, v) in pairs {
                if matches!(
                    k.as_str(),
                    "follow"
                        | "previous"
                        | "timestamps"
                        | "tailLines"
                        | "limitBytes"
                        | "sinceSeconds"
                        | "sinceTime"
                ) {
                    out.push((k, v.clone()));
                }
            }
            format!("/containerLogs/{ns}/{name}/{container}")
        }
        "exec" | "attach" => {
            if sub == "exec" {
                for (k, v) in pairs {
                    if k == "command" {
                        out.push(("command", v.clone()));
                    }
                }
            }
            for (param, kubelet) in [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
                ("tty", "tty"),
            ] {
                if flag(pairs, param) {
                    out.push((kubelet, "1".to_owned()));
                }
            }
            format!("/{sub}/{ns}/{name}/{container}")
        }
        _ => {
            for (k, v) in pairs {
                if k == "ports" {
                    for p in v.split(',') {
                        out.push(("port", p.trim().to_owned()));
                    }
                }
            }
            format!("/portForward/{ns}/{name}")
        }
    };
    if out.is_empty() {
        path
    } else {
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&out).expect("strings encode")
        )
    }
}

/// Serves one streaming request; `parts` still hold the connection's
/// upgrade.
pub async fn serve(state: Arc<State>, parts: Parts, info: crate::request::RequestInfo) -> Response {
    match try_serve(state, parts, info).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn try_serve(
    state: Arc<State>,
    parts: Parts,
    info: crate::request::RequestInfo,
) -> ApiResult<Response> {
    let sub = info.subresource.as_deref().unwrap_or_default();
    let name = info.name.as_deref().unwrap_or_default();
    let ns = info.namespace.as_deref().unwrap_or("default");
    match (sub, &parts.method) {
        ("log", &Method::GET) => {}
        ("exec" | "attach" | "portforward", &Method::GET | &Method::POST) => {}
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({} pods/{sub})",
                parts.method
            )))
        }
    }
    let pairs = query_pairs(parts.uri.query())?;
    let res = api::registry::find("", "v1", "pods").expect("pods are registered");
    let scope = Scope {
        res,
        namespace: Some(ns),
        schema: None,
    };
    let pod = rest::get(&state.store, scope, name).await?;
    let container = if sub == "portforward" {
        String::new()
    } else {
        let requested = pairs
            .iter()
            .find(|(k, _)| k == "container")
            .map(|(_, v)| v.as_str());
        pick_container(&pod, name, requested)?
    };
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if node.is_empty() {
        if sub == "log" {
            // kube-apiserver answers an empty log for an unscheduled pod.
            return Ok((StatusCode::OK, [("content-type", "text/plain")], "").into_response());
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if sub == "log" {
        check_log_status(&pod, name, &container, flag(&pairs, "previous"))?;
    }
    let addr = kubelet_address(&state, node).await?;
    let path = kubelet_path(sub, ns, name, &container, &pairs);
    let tls = state
        .kubelet_client
        .clone()
        .ok_or_else(|| ApiError::internal("no kubelet client certificate configured"))?;
    let resource = format!("pods/{sub}");
    proxy(parts, &addr, &path, tls, sub == "log")
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend for {resource}: {e}")))?
}

/// `ip:port` of a node's agent.
pub(crate) async fn kubelet_address(state: &State, node: &str) -> ApiResult<String> {
    let res = api::registry::find("", "v1", "nodes").expect("nodes are registered");
    let scope = Scope {
        res,
        namespace: None,
        schema: None,
    };
    let node_obj = rest::get(&state.store, scope, node).await?;
    let addresses = node_obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pick = |t: &str| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .map(str::to_owned)
    };
    let ip = pick("InternalIP")
        .or_else(|| pick("ExternalIP"))
        .or_else(|| pick("Hostname"))
        .ok_or_else(|| ApiError::internal(format!("node {node} has no address")))?;
    let port = node_obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
        .unwrap_or(10250);
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// Headers that carry an upgrade's negotiation (SPDY and WebSocket).
fn forwarded(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "upgrade" | "connection" | "x-stream-protocol-version" | "origin" | "user-agent"
    ) || n.starts_with("sec-websocket-")
}

/// Maps a failed agent answer as kube-apiserver's response checker does.
fn agent_error(status: StatusCode, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body).trim_end().to_owned();
    match status.as_u16() {
        400 => ApiError::bad_request(text),
        404 => ApiError::new(404, "NotFound", text),
        401 | 403 => ApiError::new(
            status.as_u16(),
            if status == StatusCode::FORBIDDEN {
                "Forbidden"
            } else {
                "Unauthorized"
            },
            text,
        ),
        _ => ApiError::internal(text),
    }
}

/// An HTTP/1 connection (upgrades allowed) to a node agent's HTTPS port,
/// `ip:port`, with the API server's kubelet client certificate.
pub(crate) async fn connect_kubelet(
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| anyhow::anyhow!("dial tcp {addr}: i/o timeout"))??;
    let _ = tcp.set_nodelay(true);
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let server_name = rustls::pki_types::ServerName::try_from(
        host.trim_matches(|c| c == '[' || c == ']').to_owned(),
    )?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "agent connection ended");
        }
    });
    Ok(sender)
}

async fn proxy(
    mut parts: Parts,
    addr: &str,
    path: &str,
    tls: Arc<rustls::ClientConfig>,
    log: bool,
) -> anyhow::Result<ApiResult<Response>> {
    let mut sender = connect_kubelet(addr, tls).await?;
    let mut up = Request::builder()
        .method(if log {
            Method::GET
        } else {
            parts.method.clone()
        })
        .uri(path)
        .header("host", addr);
    if !log {
        for (name, value) in &parts.headers {
            if forwarded(name.as_str()) {
                up = up.header(name, value);
            }
        }
    }
    let mut resp = sender.send_request(up.body(Empty::<Bytes>::new())?).await?;
    let status = resp.status();
    if log {
        if status != StatusCode::OK {
            let body = Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Ok(Err(agent_error(status, &body)));
        }
        return Ok(Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(Body::new(resp.into_body()))?));
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        // Passed back as it is: a client trying a protocol the runtime
        // does not speak sees the refusal and falls back.
        let headers = resp.headers().clone();
        let body = Limited::new(resp.into_body(), 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = Response::builder().status(status);
        for (name, value) in &headers {
            if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                out = out.header(name, value);
            }
        }
        return Ok(Ok(out.body(Body::from(body))?));
    }
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in resp.headers() {
        out = out.header(name, value);
    }
    let upstream = hyper::upgrade::on(&mut resp);
    let downstream = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| anyhow::anyhow!("the connection cannot be upgraded (HTTP/2?)"))?;
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
    Ok(Ok(out.body(Body::empty())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let c = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"spec": {"containers": c(containers), "initContainers": c(init)}})
    }

    #[test]
    fn containers() {
        let cases: &[(Value, Option<&str>, Result<&str, &str>)] = &[
            (pod(&["a"], &[]), None, Ok("a")),
            (pod(&["a"], &[]), Some(""), Ok("a")),
            (pod(&["a", "b"], &["i"]), Some("b"), Ok("b")),
            (pod(&["a", "b"], &["i"]), Some("i"), Ok("i")),
            (
                pod(&["a"], &[]),
                Some("x"),
                Err("container x is not valid for pod p"),
            ),
            (
                pod(&["a", "b"], &[]),
                None,
                Err("a container name must be specified for pod p, choose one of: [a b]"),
            ),
            (
                pod(&["a", "b"], &["i"]),
                None,
                Err("a container name must be specified for pod p, choose one of: [i a b]"),
            ),
            (
                pod(&[], &[]),
                None,
                Err("a container name must be specified for pod p"),
            ),
        ];
        for (p, requested, want) in cases {
            let got = pick_container(p, "p", *requested).map_err(|e| e.message);
            assert_eq!(
                got,
                want.map(str::to_owned).map_err(str::to_owned),
                "{requested:?} {p}"
            );
        }
    }

    #[test]
    fn log_status() {
        let with = |state: Value, last: Value| json!({"status": {"containerStatuses": [{"name": "c", "state": state, "lastState": last}]}});
        let running = json!({"running": {}});
        let waiting = json!({"waiting": {"reason": "ContainerCreating"}});
        let crashed = json!({"waiting": {"reason": "CrashLoopBackOff"}});
        let last = json!({"terminated": {"containerID": "containerd://1", "exitCode": 1}});
        let cases: &[(Value, bool, Result<(), &str>)] = &[
            (with(running.clone(), json!({})), false, Ok(())),
            (
                with(running.clone(), json!({})),
                true,
                Err("previous terminated container \"c\" in pod \"p\" not found"),
            ),
            (with(running, last.clone()), true, Ok(())),
            (
                with(waiting, json!({})),
                false,
                Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating"),
            ),
            (
                with(json!({"waiting": {"reason": "ErrImagePull"}}), json!({})),
                false,
                Err("container \"c\" in pod \"p\" is waiting to start: image can't be pulled"),
            ),
            // A crash-looping container serves its last run.
            (with(crashed, last), false, Ok(())),
            (
                with(json!({"terminated": {"exitCode": 0}}), json!({})),
                false,
                Err("container \"c\" in pod \"p\" is terminated"),
            ),
            (
                json!({"status": {}}),
                false,
                Err("container \"c\" in pod \"p\" is not available"),
            ),
        ];
        for (p, previous, want) in cases {
            let got = check_log_status(p, "p", "c", *previous).map_err(|e| e.message);
            assert_eq!(got, want.map_err(str::to_owned), "{p} previous={previous}");
        }
    }

    #[test]
    fn kubelet_paths() {
        let q = |s: &str| -> Vec<(String, String)> { serde_urlencoded::from_str(s).unwrap() };
        let cases = [
            ("log", "c", "container=c&follow=true&tailLines=5&pretty=1", "/containerLogs/ns/p/c?follow=true&tailLines=5"),
            ("log", "c", "", "/containerLogs/ns/p/c"),
            (
                "exec",
                "c",
                "command=sh&command=-c&command=echo+hi&container=c&stdin=true&stdout=true&stderr=false",
                "/exec/ns/p/c?command=sh&command=-c&command=echo+hi&input=1&output=1",
            ),
            ("attach", "c", "command=ignored&stdout=1&tty=true", "/attach/ns/p/c?output=1&tty=1"),
            ("portforward", "", "ports=80,8080", "/portForward/ns/p?port=80&port=8080"),
            ("portforward", "", "", "/portForward/ns/p"),
        ];
        for (sub, c, query, want) in cases {
            assert_eq!(
                kubelet_path(sub, "ns", "p", c, &q(query)),
                want,
                "{sub} {query}"
            );
        }
    }
}
