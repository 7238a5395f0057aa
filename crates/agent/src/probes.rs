//! Container probes: liveness, readiness and startup, as kubelet's prober.
//!
//! Each probe of each running container has a worker on its own timer
//! (initialDelaySeconds, then every periodSeconds, each attempt bounded by
//! timeoutSeconds) that keeps the outcome by container id. The pod worker
//! reads outcomes on its next sync (at most a second later):
//! * readiness sets `containerStatuses[].ready` (no probe: ready once
//!   started); until the startup probe succeeds neither liveness nor
//!   readiness runs, and `started` is false;
//! * liveness, or startup, failing `failureThreshold` times in a row asks
//!   the pod worker to kill the container, which its restart policy then
//!   restarts (a new container id, new workers).
//!
//! Actions: httpGet (HTTP, or HTTPS without verification as kubelet does;
//! 200..399 is success), tcpSocket (a connection), exec (CRI ExecSync,
//! exit code 0) and grpc (grpc.health.v1 Health/Check answering SERVING).
//! Failed probes are recorded as `Unhealthy` events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cri::RuntimeService;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// What the probes of one container run found so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The startup probe succeeded.
    pub started: bool,
    /// The readiness probe's current verdict.
    pub ready: bool,
    /// Liveness or startup failed for good: why (the pod worker kills the
    /// container).
    pub kill: Option<String>,
}

/// One probe attempt's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    Failure(String),
}

/// Where the prober reports failures.
pub type EventSink = Arc<dyn Fn(&Pod, &str, &str, String) + Send + Sync>;

/// Probe workers and their outcomes, by container id.
pub struct Prober {
    cri: Arc<dyn RuntimeService>,
    outcomes: Arc<Mutex<HashMap<String, Outcome>>>,
    workers: Mutex<HashMap<(String, Kind), tokio::task::JoinHandle<()>>>,
    events: Mutex<Option<EventSink>>,
}

impl Prober {
    pub fn new(cri: Arc<dyn RuntimeService>) -> Prober {
        Prober {
            cri,
            outcomes: Arc::default(),
            workers: Mutex::default(),
            events: Mutex::default(),
        }
    }

    /// Failed probes are reported through `sink` (pod, container, reason,
    /// message).
    pub fn set_event_sink(&self, sink: EventSink) {
        *self.events.lock().unwrap() = Some(sink);
    }

    /// Starts the workers of `c`'s probes for its running container `id`
    /// (once per container id).
    pub fn ensure(&self, pod: &Pod, c: &Container, id: &str, pod_ip: &str) {
        let probes = [
            (Kind::Startup, &c.startup_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
        ];
        let has_startup = c.startup_probe.is_some();
        let mut workers = self.workers.lock().unwrap();
        self.outcomes
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_insert_with(|| Outcome {
                started: !has_startup,
                ..Outcome::default()
            });
        for (kind, probe) in probes {
            let Some(probe) = probe.clone() else { continue };
            let key = (id.to_owned(), kind);
            if workers.contains_key(&key) {
                continue;
            }
            let worker = Worker {
                kind,
                probe,
                container: c.clone(),
                id: id.to_owned(),
                pod: pod.clone(),
                pod_ip: pod_ip.to_owned(),
                cri: self.cri.clone(),
                outcomes: self.outcomes.clone(),
                events: self.events.lock().unwrap().clone(),
            };
            workers.insert(key, tokio::spawn(worker.run()));
        }
    }

    /// Stops the workers (and forgets the outcomes) of containers not in
    /// `running`.
    pub fn retain(&self, running: &HashSet<String>) {
        self.workers.lock().unwrap().retain(|(id, _), h| {
            let keep = running.contains(id);
            if !keep {
                h.abort();
            }
            keep
        });
        self.outcomes
            .lock()
            .unwrap()
            .retain(|id, _| running.contains(id));
    }

    /// Stops the workers of these containers (a pod being removed).
    pub fn forget(&self, ids: &[String]) {
        let gone: HashSet<&String> = ids.iter().collect();
        self.workers.lock().unwrap().retain(|(id, _), h| {
            let keep = !gone.contains(id);
            if !keep {
                h.abort();
            }
            keep
        });
        self.outcomes
            .lock()
            .unwrap()
            .retain(|id, _| !gone.contains(id));
    }

    /// Records an event about a container of `pod` through the sink.
    pub fn record(&self, pod: &Pod, container: &str, reason: &str, message: String) {
        if let Some(sink) = self.events.lock().unwrap().as_ref() {
            sink(pod, container, reason, message);
        }
    }

    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        self.outcomes.lock().unwrap().get(id).cloned()
    }

    /// Whether the container `id` of `c` counts as started and ready.
    pub fn started_ready(&self, c: &Container, id: &str) -> (bool, bool) {
        let o = self.outcome(id).unwrap_or(Outcome {
            started: c.startup_probe.is_none(),
            ..Outcome::default()
        });
        let ready = o.started && (c.readiness_probe.is_none() || o.ready);
        (o.started, ready)
    }
}

struct Worker {
    kind: Kind,
    probe: Probe,
    container: Container,
    id: String,
    pod: Pod,
    pod_ip: String,
    cri: Arc<dyn RuntimeService>,
    outcomes: Arc<Mutex<HashMap<String, Outcome>>>,
    events: Option<EventSink>,
}

/// A probe's timing, with Kubernetes' defaults and minimums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, default: i32, min: i32| -> Duration {
        Duration::from_secs(v.unwrap_or(default).max(min) as u64)
    };
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0, 0),
        period: secs(p.period_seconds, 10, 1),
        timeout: secs(p.timeout_seconds, 1, 1),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

impl Worker {
    fn outcome<R>(&self, f: impl FnOnce(&mut Outcome) -> R) -> Option<R> {
        self.outcomes.lock().unwrap().get_mut(&self.id).map(f)
    }

    async fn run(self) {
        let t = timing(&self.probe);
        tokio::time::sleep(t.initial_delay).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        loop {
            let gated = self.kind != Kind::Startup && self.outcome(|o| !o.started).unwrap_or(true);
            if !gated {
                let verdict = match tokio::time::timeout(t.timeout, self.attempt(t.timeout)).await {
                    Ok(v) => v,
                    Err(_) => {
                        Verdict::Failure(format!("probe timed out after {}s", t.timeout.as_secs()))
                    }
                };
                match verdict {
                    Verdict::Success => {
                        successes += 1;
                        failures = 0;
                    }
                    Verdict::Failure(why) => {
                        failures += 1;
                        successes = 0;
                        if let Some(sink) = &self.events {
                            sink(
                                &self.pod,
                                &self.container.name,
                                "Unhealthy",
                                format!("{} probe failed: {why}", self.kind.name()),
                            );
                        }
                        if failures >= t.failure_threshold {
                            match self.kind {
                                Kind::Readiness => {
                                    self.outcome(|o| o.ready = false);
                                }
                                Kind::Liveness | Kind::Startup => {
                                    let what = self.kind.name().to_lowercase();
                                    self.outcome(|o| {
                                        o.kill = Some(format!(
                                            "Container {} failed {what} probe, will be restarted",
                                            self.container.name
                                        ))
                                    });
                                    return;
                                }
                            }
                        }
                    }
                }
                if successes >= t.success_threshold {
                    match self.kind {
                        Kind::Readiness => {
                            self.outcome(|o| o.ready = true);
                        }
                        Kind::Startup => {
                            self.outcome(|o| o.started = true);
                            return;
                        }
                        Kind::Liveness => {}
                    }
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }

    async fn attempt(&self, timeout: Duration) -> Verdict {
        let p = &self.probe;
        if let Some(exec) = &p.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return match self
                .cri
                .exec_sync(&self.id, &cmd, timeout.as_secs() as i64)
                .await
            {
                Ok(r) if r.exit_code == 0 => Verdict::Success,
                Ok(r) => {
                    let out = String::from_utf8_lossy(&r.stdout).trim().to_owned();
                    Verdict::Failure(if out.is_empty() {
                        format!("command {cmd:?} exited with {}", r.exit_code)
                    } else {
                        out
                    })
                }
                Err(e) => Verdict::Failure(e.message),
            };
        }
        if let Some(h) = &p.http_get {
            let Some(port) = resolve_port(&h.port, &self.container) else {
                return Verdict::Failure(format!("unknown port {:?}", h.port));
            };
            let host = h.host.clone().unwrap_or_else(|| self.pod_ip.clone());
            let headers: Vec<(String, String)> = h
                .http_headers
                .iter()
                .flatten()
                .map(|hh| (hh.name.clone(), hh.value.clone()))
                .collect();
            let https = h.scheme.as_deref() == Some("HTTPS");
            let path = h.path.clone().unwrap_or_else(|| "/".to_owned());
            return http_get(&host, port, &path, &headers, https).await;
        }
        if let Some(tcp) = &p.tcp_socket {
            let Some(port) = resolve_port(&tcp.port, &self.container) else {
                return Verdict::Failure(format!("unknown port {:?}", tcp.port));
            };
            let host = tcp.host.clone().unwrap_or_else(|| self.pod_ip.clone());
            return match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(_) => Verdict::Success,
                Err(e) => Verdict::Failure(format!("dial tcp {host}:{port}: {e}")),
            };
        }
        if let Some(g) = &p.grpc {
            return grpc_health(
                &self.pod_ip,
                g.port as u16,
                g.service.as_deref().unwrap_or(""),
            )
            .await;
        }
        Verdict::Failure("the probe has no action".to_owned())
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok().filter(|n| *n > 0),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The status code of a `GET` response head, if it is one.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    https: bool,
) -> Verdict {
    match http_status(host, port, path, headers, https, "kube-probe/1.33").await {
        Ok(code) if (200..400).contains(&code) => Verdict::Success,
        Ok(code) => Verdict::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Verdict::Failure(e),
    }
}

/// Sends a `GET` (HTTPS without verifying the server, as the kubelet
/// does) and returns the response's status code.
pub(crate) async fn http_status(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    https: bool,
    user_agent: &str,
) -> Result<u16, String> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let tcp = match tokio::net::TcpStream::connect(&target).await {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "Get \"http://{target}{path}\": dial tcp {target}: {e}"
            ))
        }
    };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let head = if https {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify))
                .with_no_client_auth()
        });
        let Ok(config) = config else {
            return Err("TLS setup failed".to_owned());
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .unwrap_or_else(|_| rustls::pki_types::ServerName::try_from("localhost").unwrap());
        match tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            Ok(tls) => exchange(tls, &req).await,
            Err(e) => Err(e),
        }
    } else {
        exchange(tcp, &req).await
    };
    match head {
        Ok(head) => status_code(&head).ok_or_else(|| "malformed HTTP response".to_owned()),
        Err(e) => Err(format!("Get \"{target}{path}\": {e}")),
    }
}

/// Sends `req` and reads the response head (up to 4 KiB).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &str,
) -> std::io::Result<Vec<u8>> {
    s.write_all(req.as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
        if buf[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    buf.truncate(n);
    Ok(buf)
}

#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// grpc.health.v1 messages.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `ServingStatus.SERVING`.
const SERVING: i32 = 1;

async fn grpc_health(host: &str, port: u16, service: &str) -> Verdict {
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{host}:{port}")) {
        Ok(e) => e,
        Err(e) => return Verdict::Failure(e.to_string()),
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Verdict::Failure(format!(
                "failed to connect service \"{host}:{port}\" within the timeout: {e}"
            ))
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    if let Err(e) = client.ready().await {
        return Verdict::Failure(e.to_string());
    }
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    match client.unary(request, path, codec).await {
        Ok(r) if r.get_ref().status == SERVING => Verdict::Success,
        Ok(r) => Verdict::Failure(format!(
            "service unhealthy (responded with {:?})",
            match r.get_ref().status {
                0 => "UNKNOWN",
                2 => "NOT_SERVING",
                3 => "SERVICE_UNKNOWN",
                _ => "?",
            }
        )),
        Err(e) => Verdict::Failure(format!("health rpc failed: {}", e.message())),
    }
}

#[cfg(test)]
mod tests;
