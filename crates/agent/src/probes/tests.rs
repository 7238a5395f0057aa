use std::collections::HashSet;

use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, TCPSocketAction};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::cri::{ContainerConfig, FakeRuntime, SandboxConfig};

fn probe(v: serde_json::Value) -> Probe {
    serde_json::from_value(v).unwrap()
}

#[test]
fn timing_defaults_and_minimums() {
    let cases = [
        (json!({}), (0, 10, 1, 1, 3)),
        (
            json!({"initialDelaySeconds": 5, "periodSeconds": 2, "timeoutSeconds": 3,
                   "successThreshold": 2, "failureThreshold": 1}),
            (5, 2, 3, 2, 1),
        ),
        (
            json!({"periodSeconds": 0, "timeoutSeconds": 0, "failureThreshold": 0}),
            (0, 1, 1, 1, 1),
        ),
    ];
    for (p, (delay, period, timeout, ok, fail)) in cases {
        let t = timing(&probe(p.clone()));
        assert_eq!(
            (
                t.initial_delay.as_secs(),
                t.period.as_secs(),
                t.timeout.as_secs(),
                t.success_threshold,
                t.failure_threshold
            ),
            (delay, period, timeout, ok, fail),
            "{p}"
        );
    }
}

#[test]
fn ports_by_number_or_name() {
    let c = Container {
        name: "c".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }]),
        ..Default::default()
    };
    let cases = [
        (IntOrString::Int(80), Some(80)),
        (IntOrString::Int(0), None),
        (IntOrString::Int(70000), None),
        (IntOrString::String("http".into()), Some(8080)),
        (IntOrString::String("nope".into()), None),
    ];
    for (port, want) in cases {
        assert_eq!(resolve_port(&port, &c), want, "{port:?}");
    }
}

#[test]
fn status_lines() {
    let cases: [(&[u8], Option<u16>); 4] = [
        (b"HTTP/1.1 200 OK\r\n", Some(200)),
        (b"HTTP/1.0 404 Not Found\r\nServer: x\r\n", Some(404)),
        (b"SSH-2.0-x\r\n", None),
        (b"", None),
    ];
    for (head, want) in cases {
        assert_eq!(
            status_code(head),
            want,
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
}

/// A one-shot HTTP server answering every connection with `code`.
async fn http_server(code: u16) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let _ = s
                .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    port
}

#[tokio::test]
async fn http_and_tcp_actions() {
    let ok = http_server(204).await;
    let bad = http_server(503).await;
    assert_eq!(
        http_get("127.0.0.1", ok, "/", &[], false).await,
        Verdict::Success
    );
    match http_get("127.0.0.1", bad, "/healthz", &[], false).await {
        Verdict::Failure(m) => assert!(m.contains("statuscode: 503"), "{m}"),
        v => panic!("{v:?}"),
    }
    // Nothing listens on a port just freed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(matches!(
        http_get("127.0.0.1", closed, "/", &[], false).await,
        Verdict::Failure(_)
    ));
    let c = Container::default();
    let w = |p: Probe| Worker {
        kind: Kind::Readiness,
        probe: p,
        container: c.clone(),
        id: "x".into(),
        pod: Pod::default(),
        pod_ip: "127.0.0.1".into(),
        cri: Arc::new(FakeRuntime::default()),
        outcomes: Arc::default(),
        events: None,
    };
    let tcp = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port as i32),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Duration::from_secs(1);
    assert_eq!(w(tcp(ok)).attempt(t).await, Verdict::Success);
    assert!(matches!(
        w(tcp(closed)).attempt(t).await,
        Verdict::Failure(_)
    ));
    let get = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::Int(ok as i32),
            path: Some("/ready".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(w(get).attempt(t).await, Verdict::Success);
}

/// A fake runtime with one container; returns it and the container id.
async fn one_container() -> (Arc<FakeRuntime>, String) {
    let fake = Arc::new(FakeRuntime::default());
    let sb = SandboxConfig::default();
    let sandbox = fake.run_pod_sandbox(&sb).await.unwrap();
    let id = fake
        .create_container(&sandbox, &ContainerConfig::default(), &sb)
        .await
        .unwrap();
    (fake, id)
}

fn exec_probe(cmd: &str, extra: serde_json::Value) -> Probe {
    let mut p = probe(extra);
    p.exec = Some(ExecAction {
        command: Some(vec!["sh".into(), "-c".into(), cmd.into()]),
    });
    p
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_probe_and_liveness_asks_for_a_kill() {
    let (fake, id) = one_container().await;
    let prober = Prober::new(fake);
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = events.clone();
        prober.set_event_sink(Arc::new(move |_, c, reason, msg| {
            events.lock().unwrap().push(format!("{c} {reason} {msg}"))
        }));
    }
    let c = Container {
        name: "app".into(),
        readiness_probe: Some(exec_probe("true", json!({"periodSeconds": 2}))),
        liveness_probe: Some(exec_probe(
            "exit 1",
            json!({"initialDelaySeconds": 5, "periodSeconds": 3, "failureThreshold": 2}),
        )),
        ..Default::default()
    };
    prober.ensure(&Pod::default(), &c, &id, "10.0.0.2");
    assert_eq!(
        prober.started_ready(&c, &id),
        (true, false),
        "not ready before a probe"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(prober.started_ready(&c, &id), (true, true));
    assert_eq!(prober.outcome(&id).unwrap().kill, None);
    // Liveness: first attempt at 5 s, second at 8 s: then the kill.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        prober.outcome(&id).unwrap().kill,
        None,
        "one failure is not enough"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        prober.outcome(&id).unwrap().kill.as_deref(),
        Some("Container app failed liveness probe, will be restarted")
    );
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].starts_with("app Unhealthy Liveness probe failed:"),
        "{events:?}"
    );
    // The container is gone: its workers and outcome go too.
    prober.retain(&HashSet::new());
    assert_eq!(prober.outcome(&id), None);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_readiness_and_its_failure_kills() {
    let (fake, id) = one_container().await;
    let prober = Prober::new(fake.clone());
    let c = Container {
        name: "app".into(),
        startup_probe: Some(exec_probe(
            "true",
            json!({"initialDelaySeconds": 4, "periodSeconds": 1}),
        )),
        readiness_probe: Some(exec_probe("true", json!({"periodSeconds": 1}))),
        ..Default::default()
    };
    prober.ensure(&Pod::default(), &c, &id, "10.0.0.2");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        prober.started_ready(&c, &id),
        (false, false),
        "readiness waits for startup"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(prober.started_ready(&c, &id), (true, true));
    let readiness_runs = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("exec_sync"))
        .count();
    assert!(readiness_runs >= 2, "startup once, then readiness");

    let (fake, id) = one_container().await;
    let prober = Prober::new(fake);
    let c = Container {
        name: "slow".into(),
        startup_probe: Some(exec_probe(
            "exit 1",
            json!({"periodSeconds": 1, "failureThreshold": 3}),
        )),
        ..Default::default()
    };
    prober.ensure(&Pod::default(), &c, &id, "10.0.0.2");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        prober.outcome(&id).unwrap().kill.as_deref(),
        Some("Container slow failed startup probe, will be restarted")
    );
    assert_eq!(prober.started_ready(&c, &id), (false, false));
}
