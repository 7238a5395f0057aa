//! Container lifecycle hooks, as the kubelet runs them.
//!
//! * Handlers: `exec` (CRI ExecSync in the container; exit code 0 is
//!   success), `httpGet` (a GET to the pod IP or `host`; any HTTP answer is
//!   success, as the kubelet's hook runner does not look at the status),
//!   `sleep`; `tcpSocket` is refused as the kubelet refuses it.
//! * postStart runs right after the container starts (the pod worker
//!   waits for it, so the container is not reported running before it
//!   ends); when it fails the container is killed (`FailedPostStartHook`
//!   event, `Killing` with message `FailedPostStartHook`) and waits as
//!   `PostStartHookError` until its restart policy runs it again.
//! * preStop runs before a running container is stopped (pod deletion,
//!   failed liveness/startup probes, a failed postStart): it may take the
//!   whole grace period; what is left, but at least 2 s, is the CRI
//!   StopContainer timeout (SIGTERM, then SIGKILL). A failure is a
//!   `FailedPreStopHook` event and the container is stopped anyway.
//! * The preStop handler and the container's ports travel in the
//!   container's annotations (as the kubelet's
//!   `io.kubernetes.container.preStopHandler`), so a container whose pod
//!   is already gone from the API still runs its hook.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ContainerPort, LifecycleHandler};

use crate::cri::{self, RuntimeService};

pub const PRE_STOP_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
pub const PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
/// The shortest SIGTERM-to-SIGKILL window a stopped container gets.
pub const MINIMUM_GRACE_PERIOD: i64 = 2;
/// How long postStart may run before it counts as failed (the runtime
/// call's own limit).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(600);

/// Reports an event about the container: (reason, message).
pub type Record<'a> = &'a (dyn Fn(&str, String) + Send + Sync);

/// The container a hook runs for.
pub struct Target<'a> {
    pub container_id: &'a str,
    /// The container (its name and ports).
    pub container: &'a Container,
    /// The pod as `name_namespace(uid)`.
    pub pod: &'a str,
    pub pod_ip: &'a str,
}

fn describe(h: &LifecycleHandler) -> &'static str {
    if h.exec.is_some() {
        "exec"
    } else if h.http_get.is_some() {
        "httpGet"
    } else if h.sleep.is_some() {
        "sleep"
    } else if h.tcp_socket.is_some() {
        "tcpSocket"
    } else {
        "none"
    }
}

/// Runs handler `h`; the kubelet's message when it fails.
pub async fn run(
    cri: &dyn RuntimeService,
    h: &LifecycleHandler,
    t: &Target<'_>,
) -> Result<(), String> {
    let name = &t.container.name;
    if let Some(exec) = &h.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let shown = format!("[{}]", cmd.join(" "));
        let fail = |error: String, output: String| {
            Err(format!(
                "Exec lifecycle hook ({shown}) for Container {name:?} in Pod {:?} failed - error: {error}, message: {output:?}",
                t.pod
            ))
        };
        return match cri.exec_sync(t.container_id, &cmd, 0).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => {
                let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
                let mut output = String::from_utf8_lossy(&r.stdout).into_owned();
                output.push_str(&stderr);
                fail(
                    format!(
                        "command '{}' exited with {}: {stderr}",
                        cmd.join(" "),
                        r.exit_code
                    ),
                    output,
                )
            }
            Err(e) => fail(e.message, String::new()),
        };
    }
    if let Some(g) = &h.http_get {
        let path = g.path.clone().unwrap_or_default();
        let fail = |error: String| {
            Err(format!(
                "HTTP lifecycle hook ({path}) for Container {name:?} in Pod {:?} failed - error: {error}",
                t.pod
            ))
        };
        let Some(port) = crate::probes::resolve_port(&g.port, t.container) else {
            return fail(format!("invalid port {:?}", g.port));
        };
        let host = g
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| t.pod_ip.to_owned());
        let headers: Vec<(String, String)> = g
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let https = g.scheme.as_deref() == Some("HTTPS");
        let req_path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        return match crate::probes::http_status(
            &host,
            port,
            &req_path,
            &headers,
            https,
            "kube-lifecycle/1.33",
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) => fail(e),
        };
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err(format!(
        "Cannot run handler: {} is not a supported lifecycle handler",
        describe(h)
    ))
}

/// The annotations a container is created with so that its preStop hook
/// can run without the pod spec.
pub fn annotations(c: &Container) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        if let Ok(j) = serde_json::to_string(h) {
            a.insert(PRE_STOP_ANNOTATION.to_owned(), j);
        }
    }
    if let Some(p) = c.ports.as_ref().filter(|p| !p.is_empty()) {
        if let Ok(j) = serde_json::to_string(p) {
            a.insert(PORTS_ANNOTATION.to_owned(), j);
        }
    }
    a
}

/// The container named `name` as far as its annotations tell: its ports
/// and preStop hook.
pub fn from_annotations(name: &str, annotations: &BTreeMap<String, String>) -> Container {
    let pre_stop: Option<LifecycleHandler> = annotations
        .get(PRE_STOP_ANNOTATION)
        .and_then(|j| serde_json::from_str(j).ok());
    let ports: Option<Vec<ContainerPort>> = annotations
        .get(PORTS_ANNOTATION)
        .and_then(|j| serde_json::from_str(j).ok());
    Container {
        name: name.to_owned(),
        ports,
        lifecycle: pre_stop.map(|h| k8s_openapi::api::core::v1::Lifecycle {
            pre_stop: Some(h),
            ..Default::default()
        }),
        ..Container::default()
    }
}

/// The StopContainer timeout after a preStop hook took `spent` of `grace`
/// seconds.
pub fn remaining_grace(grace: i64, spent: i64) -> i64 {
    (grace - spent).max(MINIMUM_GRACE_PERIOD)
}

/// Stops a running container as the kubelet's killContainer: a `Killing`
/// event (`message`, else "Stopping container NAME"), the preStop hook
/// within `grace` seconds, then SIGTERM with what is left (at least 2 s)
/// before SIGKILL.
pub async fn kill_container(
    cri: &dyn RuntimeService,
    record: Record<'_>,
    t: &Target<'_>,
    grace: i64,
    message: Option<String>,
) -> cri::Result<()> {
    let name = &t.container.name;
    record(
        "Killing",
        message.unwrap_or_else(|| format!("Stopping container {name}")),
    );
    let mut grace = grace.max(0);
    let pre_stop = t
        .container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref());
    if let Some(h) = pre_stop.filter(|_| grace > 0) {
        let start = Instant::now();
        match tokio::time::timeout(Duration::from_secs(grace as u64), run(cri, h, t)).await {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                tracing::info!(
                    container = name,
                    pod = t.pod,
                    message,
                    "preStop hook failed"
                );
                // The message stays out of the event (it may hold secrets).
                record("FailedPreStopHook", "PreStopHook failed".to_owned());
            }
            Err(_) => {
                tracing::info!(
                    container = name,
                    pod = t.pod,
                    grace,
                    "preStop hook not completed in the grace period"
                );
            }
        }
        grace -= start.elapsed().as_secs() as i64;
    }
    match cri
        .stop_container(t.container_id, remaining_grace(grace, 0))
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;
    use crate::cri::{ContainerConfig, FakeRuntime, SandboxConfig};

    fn container(lifecycle: serde_json::Value) -> Container {
        serde_json::from_value(json!({
            "name": "c",
            "ports": [{"name": "http", "containerPort": 8080}],
            "lifecycle": lifecycle,
        }))
        .unwrap()
    }

    async fn running(fake: &FakeRuntime) -> String {
        let sb = fake
            .run_pod_sandbox(&SandboxConfig::default())
            .await
            .unwrap();
        let id = fake
            .create_container(&sb, &ContainerConfig::default(), &SandboxConfig::default())
            .await
            .unwrap();
        fake.start_container(&id).await.unwrap();
        id
    }

    fn handler(v: serde_json::Value) -> LifecycleHandler {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn grace_left_after_the_hook() {
        for (grace, spent, left) in [(30, 0, 30), (30, 10, 20), (30, 29, 2), (5, 9, 2), (0, 0, 2)] {
            assert_eq!(remaining_grace(grace, spent), left, "{grace} {spent}");
        }
    }

    #[test]
    fn pre_stop_travels_in_annotations() {
        let c = container(json!({
            "preStop": {"httpGet": {"path": "/quit", "port": "http"}},
            "postStart": {"exec": {"command": ["true"]}},
        }));
        let a = annotations(&c);
        assert_eq!(a.len(), 2, "{a:?}");
        let back = from_annotations("c", &a);
        assert_eq!(back.ports, c.ports);
        let l = back.lifecycle.unwrap();
        assert_eq!(l.pre_stop, c.lifecycle.unwrap().pre_stop);
        assert!(l.post_start.is_none());
        assert!(!annotations(&container(json!(null))).contains_key(PRE_STOP_ANNOTATION));
        assert!(from_annotations("x", &BTreeMap::new()).lifecycle.is_none());
    }

    #[tokio::test]
    async fn exec_hooks_and_their_messages() {
        let fake = FakeRuntime::default();
        let id = running(&fake).await;
        let c = container(json!(null));
        let t = Target {
            container_id: &id,
            container: &c,
            pod: "p_ns(u1)",
            pod_ip: "127.0.0.1",
        };
        let cases = [
            (json!({"exec": {"command": ["sh", "-c", "true"]}}), None),
            (
                json!({"exec": {"command": ["sh", "-c", "exit 3"]}}),
                Some("Exec lifecycle hook ([sh -c exit 3]) for Container \"c\" in Pod \"p_ns(u1)\" failed - error: command 'sh -c exit 3' exited with 3: , message: \"\""),
            ),
            (
                json!({"tcpSocket": {"port": 80}}),
                Some("Cannot run handler: tcpSocket is not a supported lifecycle handler"),
            ),
        ];
        for (h, want) in cases {
            let got = run(&fake, &handler(h.clone()), &t).await.err();
            assert_eq!(got.as_deref(), want, "{h}");
        }
        // A container that is gone.
        let gone = Target {
            container_id: "nope",
            ..t
        };
        let err = run(
            &fake,
            &handler(json!({"exec": {"command": ["true"]}})),
            &gone,
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("Exec lifecycle hook ([true])"), "{err}");
    }

    #[tokio::test]
    async fn http_hooks_take_any_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for status in ["200 OK", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                seen2
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let fake = FakeRuntime::default();
        let c: Container = serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "web", "containerPort": port}],
        }))
        .unwrap();
        let t = Target {
            container_id: "x",
            container: &c,
            pod: "p_ns(u1)",
            pod_ip: "127.0.0.1",
        };
        let h = handler(json!({"httpGet": {"path": "hook", "port": "web",
            "httpHeaders": [{"name": "X-Why", "value": "stop"}]}}));
        assert_eq!(run(&fake, &h, &t).await, Ok(()));
        assert_eq!(run(&fake, &h, &t).await, Ok(()));
        let seen = seen.lock().unwrap().clone();
        assert!(seen[0].starts_with("GET /hook HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[0].contains("X-Why: stop"), "{seen:?}");
        // Nothing listening.
        drop(seen);
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = closed.local_addr().unwrap().port();
        drop(closed);
        let h = handler(json!({"httpGet": {"path": "/x", "port": dead}}));
        let err = run(&fake, &h, &t).await.unwrap_err();
        assert!(
            err.starts_with("HTTP lifecycle hook (/x) for Container \"c\" in Pod \"p_ns(u1)\" failed - error: Get"),
            "{err}"
        );
        let h = handler(json!({"httpGet": {"path": "/x", "port": "nope"}}));
        assert!(run(&fake, &h, &t)
            .await
            .unwrap_err()
            .contains("invalid port"));
    }

    #[tokio::test]
    async fn kill_runs_pre_stop_then_stops_with_what_is_left() {
        // (preStop, grace) -> (exec call?, stop timeout, events)
        let cases = [
            (json!(null), 30, false, 30, vec!["Killing"]),
            (
                json!({"preStop": {"exec": {"command": ["true"]}}}),
                30,
                true,
                30,
                vec!["Killing"],
            ),
            (
                json!({"preStop": {"exec": {"command": ["sh", "-c", "exit 1"]}}}),
                10,
                true,
                10,
                vec!["Killing", "FailedPreStopHook"],
            ),
            // No grace: no hook, the minimum window.
            (
                json!({"preStop": {"exec": {"command": ["true"]}}}),
                0,
                false,
                2,
                vec!["Killing"],
            ),
        ];
        for (lc, grace, execs, timeout, events) in cases {
            let fake = FakeRuntime::default();
            let id = running(&fake).await;
            fake.clear_calls();
            let c = container(lc.clone());
            let t = Target {
                container_id: &id,
                container: &c,
                pod: "p_ns(u1)",
                pod_ip: "127.0.0.1",
            };
            let got = Mutex::new(Vec::new());
            let record = |reason: &str, message: String| {
                got.lock().unwrap().push((reason.to_owned(), message))
            };
            kill_container(&fake, &record, &t, grace, None)
                .await
                .unwrap();
            let calls = fake.calls();
            let stop = format!("stop_container {id} {timeout}");
            assert_eq!(calls.last(), Some(&stop), "{lc}: {calls:?}");
            assert_eq!(
                calls.iter().any(|c| c.starts_with("exec_sync")),
                execs,
                "{lc}: {calls:?}"
            );
            let got = got.into_inner().unwrap();
            let reasons: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
            assert_eq!(reasons, events, "{lc}");
            assert_eq!(got[0].1, "Stopping container c");
            if let Some((_, m)) = got.get(1) {
                assert_eq!(m, "PreStopHook failed");
            }
        }
    }

    #[tokio::test]
    async fn a_slow_pre_stop_uses_up_the_grace_period() {
        let fake = FakeRuntime::default();
        let id = running(&fake).await;
        // sleep 1 of grace 4 leaves 3; sleep 5 of grace 1 is cut off
        // after 1 s and leaves the minimum.
        for (sleep, grace, left) in [(1, 4, 3), (5, 1, 2)] {
            fake.clear_calls();
            let c = container(json!({"preStop": {"sleep": {"seconds": sleep}}}));
            let t = Target {
                container_id: &id,
                container: &c,
                pod: "p_ns(u1)",
                pod_ip: "127.0.0.1",
            };
            kill_container(&fake, &|_, _| {}, &t, grace, Some("why".into()))
                .await
                .unwrap();
            assert_eq!(
                fake.calls(),
                vec![format!("stop_container {id} {left}")],
                "sleep {sleep} grace {grace}"
            );
        }
    }
}
