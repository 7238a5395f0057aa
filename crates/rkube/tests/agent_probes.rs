//! Liveness, readiness and startup probes on a real local node (containerd
//! and runc), observed through kubectl. Skipped, with the reason printed,
//! where containerd cannot run.

mod support;

use serde_json::Value;
use support::eventually;

fn condition(p: &Value, kind: &str) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox:stable
    command: [sh, -c, "mkdir -p /www && echo ok > /www/ready && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ready, port: http}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: live
    image: busybox:stable
    command: [sh, -c, "touch /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {command: [sh, -c, "test -f /tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {name: slow}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: slow
    image: busybox:stable
    command: [sh, -c, "sleep 4; touch /tmp/started; exec sleep 3600"]
    startupProbe:
      exec: {command: [test, -f, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
"#;

#[test]
fn probes_drive_readiness_and_restarts() {
    let Some(s) = support::local_node("probe-node", &[]) else {
        return;
    };
    s.ok_stdin(&["apply", "-f", "-"], PODS);

    // Readiness: ready once httpd serves /ready, unready when it stops.
    eventually(60, "web Ready", || {
        let p = s.json(&["get", "pod", "web"]);
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(())
    });
    let table = s.ok(&["get", "pod", "web"]);
    assert!(table.contains("1/1"), "{table}");
    s.ok(&["exec", "web", "--", "rm", "/www/ready"]);
    eventually(30, "web unready after /ready is gone", || {
        let p = s.json(&["get", "pod", "web"]);
        let cs = &p["status"]["containerStatuses"][0];
        (condition(&p, "Ready").as_deref() == Some("False")
            && condition(&p, "ContainersReady").as_deref() == Some("False")
            && cs["ready"] == false
            && cs["state"]["running"].is_object())
        .then_some(())
    });
    assert!(s.ok(&["get", "pod", "web"]).contains("0/1"));
    eventually(30, "an Unhealthy event for web", || {
        let ev = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
        ]);
        (ev.contains("Unhealthy") && ev.contains("Readiness probe failed")).then_some(())
    });

    // Liveness: once /tmp/healthy is gone the container is killed and
    // restarted (and the new one is healthy again).
    eventually(60, "live Running", || {
        let p = s.json(&["get", "pod", "live"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    s.ok(&["exec", "live", "--", "rm", "/tmp/healthy"]);
    eventually(60, "live restarted", || {
        let p = s.json(&["get", "pod", "live"]);
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(())
    });
    let described = s.ok(&["describe", "pod", "live"]);
    assert!(described.contains("Liveness probe failed"), "{described}");
    assert!(
        described.contains("Container live failed liveness probe, will be restarted"),
        "{described}"
    );

    // Startup gates readiness: failing for ~4 s (events say so), then
    // started without a restart; the readiness probe (nothing listens on
    // 9999) keeps it unready.
    eventually(60, "slow started", || {
        let p = s.json(&["get", "pod", "slow"]);
        (p["status"]["containerStatuses"][0]["started"] == true).then_some(p)
    });
    let p = s.json(&["get", "pod", "slow"]);
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false, "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );
}
