//! The audit webhook backend (`--audit-webhook-config-file`, a kubeconfig
//! naming the receiver): events are POSTed as `audit.k8s.io/v1` EventLists,
//! in batches of at most `--audit-webhook-batch-max-size` sent when full or
//! `--audit-webhook-batch-max-wait` after their first event, as
//! kube-apiserver's batch mode does. A failed send is retried with
//! back-off from `--audit-webhook-initial-backoff`, doubling, for a minute
//! at most; then the batch is dropped with a warning. Requests never wait
//! for the webhook (the blocking modes are not offered).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Events buffered before new ones are dropped (kube-apiserver's
/// `--audit-webhook-batch-buffer-size` default).
const BUFFER: usize = 10_000;
/// How long one batch is retried.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Batching, as the flags set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batching {
    pub max_size: usize,
    pub max_wait: Duration,
    pub initial_backoff: Duration,
}

impl Default for Batching {
    fn default() -> Batching {
        Batching {
            max_size: 400,
            max_wait: Duration::from_secs(30),
            initial_backoff: Duration::from_secs(10),
        }
    }
}

/// Where events go: the receiver's URL and how to reach it.
#[derive(Clone)]
pub struct Target {
    scheme: String,
    authority: String,
    path: String,
    bearer: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn file_or_data(
    v: &Value,
    file_key: &str,
    data_key: &str,
    base: &std::path::Path,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = v.get(data_key).and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|e| format!("{data_key}: {e}"));
    }
    if let Some(f) = v.get(file_key).and_then(Value::as_str) {
        let path = base.join(f);
        return std::fs::read(&path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    Ok(None)
}

impl Target {
    /// The kubeconfig's current (or first) context: its cluster's server,
    /// CA (or `insecure-skip-tls-verify`), and its user's client
    /// certificate or token.
    pub fn from_kubeconfig(path: &std::path::Path) -> Result<Target, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kc: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let named = |list: &str, name: Option<&str>, inner: &str| -> Value {
            let items = kc
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            items
                .iter()
                .find(|i| name.is_none_or(|n| i.get("name").and_then(Value::as_str) == Some(n)))
                .and_then(|i| i.get(inner).cloned())
                .unwrap_or(Value::Null)
        };
        let current = kc.get("current-context").and_then(Value::as_str);
        let context = named("contexts", current, "context");
        let cluster = named(
            "clusters",
            context.get("cluster").and_then(Value::as_str),
            "cluster",
        );
        let user = named("users", context.get("user").and_then(Value::as_str), "user");
        let server = cluster
            .get("server")
            .and_then(Value::as_str)
            .ok_or("no cluster server in the kubeconfig")?;
        let uri: hyper::Uri = server
            .parse()
            .map_err(|e| format!("server {server:?}: {e}"))?;
        let scheme = uri.scheme_str().unwrap_or("https").to_owned();
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(format!("server {server:?}: scheme must be http or https"));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("server {server:?}: no host"))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let authority = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.to_string());
        let tls = if scheme == "https" {
            Some(tls_config(&cluster, &user, base)?)
        } else {
            None
        };
        Ok(Target {
            scheme,
            authority,
            path,
            bearer: user.get("token").and_then(Value::as_str).map(str::to_owned),
            tls,
        })
    }

    async fn post(&self, body: Vec<u8>) -> anyhow::Result<()> {
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| anyhow::anyhow!("dial tcp {}: i/o timeout", self.authority))??;
        let mut req = hyper::Request::post(&self.path)
            .header("host", &self.authority)
            .header("content-type", "application/json");
        if let Some(t) = &self.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let status = match &self.tls {
            Some(tls) => {
                let host = self.authority.rsplit_once(':').map_or("", |(h, _)| h);
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(|c| c == '[' || c == ']').to_owned(),
                )?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await?;
                send(TokioIo::new(stream), req).await?
            }
            None => send(TokioIo::new(tcp), req).await?,
        };
        anyhow::ensure!(status.is_success(), "the webhook answered {status}");
        Ok(())
    }
}

async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<hyper::StatusCode>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(30), sender.send_request(req))
        .await
        .map_err(|_| anyhow::anyhow!("no answer in 30s"))??;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

fn tls_config(
    cluster: &Value,
    user: &Value,
    base: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if cluster.get("insecure-skip-tls-verify") == Some(&json!(true)) {
        return Ok(crate::streaming::insecure_client_config());
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let ca = file_or_data(
            cluster,
            "certificate-authority",
            "certificate-authority-data",
            base,
        )?
        .ok_or("the webhook's cluster has no certificate-authority(-data)")?;
        for c in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots
                .add(c.map_err(|e| format!("certificate-authority: {e}"))?)
                .map_err(|e| format!("certificate-authority: {e}"))?;
        }
        builder.with_root_certificates(roots)
    };
    let cert = file_or_data(user, "client-certificate", "client-certificate-data", base)?;
    let key = file_or_data(user, "client-key", "client-key-data", base)?;
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("client-certificate: {e}"))?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_slice())
                .map_err(|e| format!("client-key: {e}"))?
                .ok_or("client-key: no private key found")?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The sending side the auditor writes to.
pub struct Webhook {
    tx: mpsc::Sender<Value>,
}

impl Webhook {
    /// Starts the sender task (needs a Tokio runtime).
    pub fn start(target: Target, batching: Batching) -> Webhook {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(run(target, batching, rx));
        Webhook { tx }
    }

    /// Queues one event; dropped (with a warning) when the buffer is full.
    pub fn send(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            tracing::warn!("audit webhook buffer full; event dropped");
        }
    }
}

/// An EventList of `events`.
pub fn event_list(events: Vec<Value>) -> Value {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events})
}

async fn run(target: Target, batching: Batching, mut rx: mpsc::Receiver<Value>) {
    let max = batching.max_size.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batching.max_wait;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => batch.push(ev),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len();
        let body = serde_json::to_vec(&event_list(batch)).expect("JSON values serialize");
        let started = tokio::time::Instant::now();
        let mut backoff = batching.initial_backoff;
        loop {
            match target.post(body.clone()).await {
                Ok(()) => break,
                Err(e) if started.elapsed() + backoff < RETRY_FOR => {
                    tracing::debug!(error = %format!("{e:#}"), events = n, "audit webhook send failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_FOR);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), events = n, scheme = target.scheme, "audit webhook send failed; events dropped");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfigs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.yaml");
        let cases = [
            (
                "clusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9000/audit?x=1\"}\ncontexts:\n- name: ctx\n  context: {cluster: c, user: u}\ncurrent-context: ctx\nusers:\n- name: u\n  user: {token: abc}\n",
                Ok(("http", "127.0.0.1:9000", "/audit?x=1", Some("abc"))),
            ),
            (
                "clusters:\n- name: c\n  cluster: {server: \"https://audit.example:8443\", insecure-skip-tls-verify: true}\n",
                Ok(("https", "audit.example:8443", "/", None)),
            ),
            (
                "clusters:\n- name: c\n  cluster: {server: \"https://audit.example\"}\n",
                Err("the webhook's cluster has no certificate-authority(-data)"),
            ),
            ("clusters: []\n", Err("no cluster server in the kubeconfig")),
            (
                "clusters:\n- name: c\n  cluster: {server: \"ftp://x\"}\n",
                Err("server \"ftp://x\": scheme must be http or https"),
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let got = Target::from_kubeconfig(&path).map(|t| {
                (
                    t.scheme.clone(),
                    t.authority.clone(),
                    t.path.clone(),
                    t.bearer.clone(),
                )
            });
            match (got, want) {
                (Ok(t), Ok((scheme, authority, path, bearer))) => {
                    assert_eq!(
                        t,
                        (
                            scheme.into(),
                            authority.into(),
                            path.into(),
                            bearer.map(str::to_owned)
                        ),
                        "{text}"
                    )
                }
                (Err(e), Err(w)) => assert_eq!(e, w, "{text}"),
                (got, _) => panic!("{text}: {:?}", got.map(|t| t.0)),
            }
        }
    }

    /// Batches close when full or after max-wait, and go to the receiver
    /// as EventLists.
    #[tokio::test]
    async fn batches_reach_a_receiver() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (got_tx, mut got) = mpsc::unbounded_channel::<(String, Value)>();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let got_tx = got_tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap();
                        if body.len() < len {
                            continue;
                        }
                        let line = head.lines().next().unwrap().to_owned();
                        got_tx
                            .send((line, serde_json::from_str(body).unwrap()))
                            .unwrap();
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                        buf.clear();
                    }
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook.yaml");
        std::fs::write(
            &path,
            format!(
                "clusters:\n- name: c\n  cluster: {{server: \"http://127.0.0.1:{port}/events\"}}\n"
            ),
        )
        .unwrap();
        let hook = Webhook::start(
            Target::from_kubeconfig(&path).unwrap(),
            Batching {
                max_size: 2,
                max_wait: Duration::from_millis(200),
                initial_backoff: Duration::from_millis(100),
            },
        );
        for i in 0..3 {
            hook.send(json!({"auditID": i}));
        }
        async fn recv(got: &mut mpsc::UnboundedReceiver<(String, Value)>) -> (String, Value) {
            tokio::time::timeout(Duration::from_secs(5), got.recv())
                .await
                .unwrap()
                .unwrap()
        }
        let (line, first) = recv(&mut got).await;
        assert_eq!(line, "POST /events HTTP/1.1");
        assert_eq!(first["kind"], "EventList");
        assert_eq!(first["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(first["items"], json!([{"auditID": 0}, {"auditID": 1}]));
        // The third waits out max-wait alone.
        let (_, second) = recv(&mut got).await;
        assert_eq!(second["items"], json!([{"auditID": 2}]));
    }
}
