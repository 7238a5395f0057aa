//! `rkube agent --simulated-nodes`: nodes, leases and pod lifecycles seen
//! through the real kubectl.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{eventually, Server};

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

fn nodes(server: &Server) -> Vec<Value> {
    server.json(&["get", "nodes"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn renew_time(server: &Server, node: &str) -> String {
    let lease = server.json(&["get", "lease", "-n", "kube-node-lease", node]);
    lease["spec"]["renewTime"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A pod bound to `node` (no scheduler) running `image`.
fn pod_yaml(
    name: &str,
    node: &str,
    restart: &str,
    annotations: &[(&str, &str)],
    extra: &str,
) -> String {
    let mut ann = String::new();
    for (k, v) in annotations {
        ann.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    let ann = if ann.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{ann}")
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
{ann}spec:
  nodeName: {node}
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: busybox:1.36
{extra}"
    )
}

fn pod(server: &Server, name: &str) -> Value {
    server.json(&["get", "pod", name])
}

#[test]
fn nodes_register_heartbeat_and_are_adopted_after_a_restart() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let mut agent = server.start_simulated_agent(3, "sim");

    let ready = eventually(60, "3 Ready nodes", || {
        let nodes = nodes(&server);
        let ready: Vec<Value> = nodes
            .into_iter()
            .filter(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("sim-")
                    && condition(n, "Ready") == Some("True")
            })
            .collect();
        (ready.len() == 3).then_some(ready)
    });
    let mut names: Vec<&str> = ready
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["sim-0", "sim-1", "sim-2"],
        "agent log:\n{}",
        agent.log()
    );
    let mut ips = Vec::new();
    for n in &ready {
        let name = n["metadata"]["name"].as_str().unwrap();
        let labels = &n["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["beta.kubernetes.io/os"], "linux");
        assert_eq!(labels["beta.kubernetes.io/arch"], "amd64");
        let status = &n["status"];
        assert_eq!(status["capacity"]["cpu"], "8");
        assert_eq!(status["capacity"]["memory"], "32Gi");
        assert_eq!(status["capacity"]["pods"], "110");
        assert_eq!(status["allocatable"]["ephemeral-storage"], "100Gi");
        assert_eq!(status["nodeInfo"]["kubeletVersion"], "v1.33.0-rkube");
        assert_eq!(
            status["nodeInfo"]["containerRuntimeVersion"],
            "simulated://1.0"
        );
        assert_eq!(status["nodeInfo"]["operatingSystem"], "linux");
        for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(condition(n, c), Some("False"), "{c}");
        }
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["reason"], "KubeletReady");
        assert!(ready["lastHeartbeatTime"].is_string());
        let addresses = status["addresses"].as_array().unwrap();
        let ip = addresses
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .unwrap()["address"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(addresses
            .iter()
            .any(|a| a["type"] == "Hostname" && a["address"] == name));
        ips.push(ip);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct node addresses");
    let uids: Vec<String> = ["sim-0", "sim-1", "sim-2"]
        .iter()
        .map(|n| {
            server.json(&["get", "node", n])["metadata"]["uid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    // kubectl's table says Ready.
    let table = server.ok(&["get", "nodes"]);
    for name in ["sim-0", "sim-1", "sim-2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{table}"));
        assert!(line.split_whitespace().nth(1) == Some("Ready"), "{line}");
        assert!(line.contains("v1.33.0-rkube"), "{line}");
    }

    // One lease per node, renewed.
    for name in ["sim-0", "sim-1", "sim-2"] {
        let lease = server.json(&["get", "lease", "-n", "kube-node-lease", name]);
        assert_eq!(lease["spec"]["holderIdentity"], name);
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    }
    let first = renew_time(&server, "sim-0");
    eventually(30, "the lease renewed", || {
        (renew_time(&server, "sim-0") != first).then_some(())
    });

    // Killed: no more renewals (one heartbeat interval and then some).
    agent.kill();
    let frozen: Vec<String> = ["sim-0", "sim-1", "sim-2"]
        .iter()
        .map(|n| renew_time(&server, n))
        .collect();
    std::thread::sleep(Duration::from_secs(12));
    let later: Vec<String> = ["sim-0", "sim-1", "sim-2"]
        .iter()
        .map(|n| renew_time(&server, n))
        .collect();
    assert_eq!(frozen, later, "leases renewed by a killed agent");

    // A pod bound while the agent is down runs once it is back.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("late", "sim-2", "Always", &[], ""),
    );
    let mut agent = server.start_simulated_agent(3, "sim");
    server.ok(&["wait", "--for=condition=Ready", "pod/late", "--timeout=60s"]);
    eventually(30, "renewals again", || {
        (renew_time(&server, "sim-1") != later[1]).then_some(())
    });
    let nodes = nodes(&server);
    assert_eq!(nodes.len(), 3, "no new nodes");
    for (name, uid) in ["sim-0", "sim-1", "sim-2"].iter().zip(&uids) {
        let n = server.json(&["get", "node", name]);
        assert_eq!(
            n["metadata"]["uid"].as_str(),
            Some(uid.as_str()),
            "{name} adopted, not recreated"
        );
        assert_eq!(condition(&n, "Ready"), Some("True"));
    }
    assert!(
        !agent.log().contains("ERROR"),
        "agent log:\n{}",
        agent.log()
    );
    agent.kill();
}

#[test]
fn pods_run_end_and_are_deleted() {
    let server = Server::start_with(&["--disable-scheduler"]);
    let mut agent = server.start_simulated_agent(3, "sim");
    eventually(60, "node sim-1 Ready", || {
        let out = server.kubectl(&["get", "node", "sim-1", "-o", "json"]);
        let n: Value = serde_json::from_slice(&out.stdout).ok()?;
        (condition(&n, "Ready") == Some("True")).then_some(())
    });

    // A long-running pod with an init container and a readiness probe.
    let extra = "    readinessProbe:
      exec:
        command: [\"true\"]
      initialDelaySeconds: 2
    resources:
      requests:
        cpu: 100m
  initContainers:
  - name: setup
    image: busybox:1.36
";
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("web", "sim-1", "Always", &[], extra),
    );
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    let web = pod(&server, "web");
    let s = &web["status"];
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["qosClass"], "Burstable");
    let node_ip =
        server.json(&["get", "node", "sim-1"])["status"]["addresses"][0]["address"].clone();
    assert_eq!(s["hostIP"], node_ip);
    assert_eq!(s["hostIPs"][0]["ip"], node_ip);
    let pod_ip = s["podIP"].as_str().expect("a pod IP").to_owned();
    assert_eq!(s["podIPs"][0]["ip"], pod_ip.as_str());
    assert!(s["startTime"].is_string());
    for c in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert_eq!(condition(&web, c), Some("True"), "{c}");
    }
    let c = &s["containerStatuses"][0];
    assert_eq!(c["name"], "main");
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert_eq!(c["restartCount"], 0);
    assert!(c["containerID"]
        .as_str()
        .unwrap()
        .starts_with("simulated://"));
    assert!(c["imageID"].as_str().unwrap().contains("@sha256:"));
    let started_at = c["state"]["running"]["startedAt"].as_str().unwrap();
    let ready_at = web["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["lastTransitionTime"]
        .as_str()
        .unwrap();
    let secs = |t: &str| {
        t.parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
            .as_second()
    };
    assert!(
        secs(ready_at) - secs(started_at) >= 2,
        "ready at {ready_at}, started at {started_at}"
    );
    let init = &s["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0);
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");

    // A second pod on the node gets another address.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("web2", "sim-1", "Always", &[], ""),
    );
    server.ok(&["wait", "--for=condition=Ready", "pod/web2", "--timeout=30s"]);
    assert_ne!(
        pod(&server, "web2")["status"]["podIP"].as_str(),
        Some(pod_ip.as_str())
    );

    // Pods that end.
    let ann = |code| {
        vec![
            ("sim.rkube.io/exit-code", code),
            ("sim.rkube.io/run-seconds", "1"),
        ]
    };
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("ok", "sim-0", "Never", &ann("0"), ""),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("bad", "sim-2", "Never", &ann("3"), ""),
    );
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("retry", "sim-2", "OnFailure", &ann("3"), ""),
    );
    let phase = |name: &str| {
        pod(&server, name)["status"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    eventually(30, "pod ok Succeeded", || {
        (phase("ok") == "Succeeded").then_some(())
    });
    let ok = pod(&server, "ok");
    assert_eq!(
        ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        ok["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    eventually(30, "pod bad Failed", || {
        (phase("bad") == "Failed").then_some(())
    });
    let bad = pod(&server, "bad");
    let term = &bad["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(term["exitCode"], 3);
    assert_eq!(term["reason"], "Error");
    let retry = eventually(30, "pod retry restarted", || {
        let p = pod(&server, "retry");
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1).then_some(p)
    });
    assert_eq!(retry["status"]["phase"], "Running");
    assert_eq!(
        retry["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        3
    );

    // Deletion completes.
    server.ok(&["delete", "pod", "web", "--timeout=30s"]);
    let out = server.kubectl(&["get", "pod", "web"]);
    assert!(!out.status.success(), "pod web still there");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    // Finished pods go at once.
    server.ok(&["delete", "pod", "ok", "bad", "--timeout=30s"]);

    // A stopped agent leaves its pods alone; a restarted one takes them on.
    agent.kill();
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("after", "sim-1", "Always", &[], ""),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(phase("after"), "Pending");
    let mut agent = server.start_simulated_agent(3, "sim");
    server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/after",
        "--timeout=60s",
    ]);
    // web2 kept its address and state.
    let web2 = pod(&server, "web2");
    assert_eq!(web2["status"]["containerStatuses"][0]["restartCount"], 0);
    let after_ip = pod(&server, "after")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(web2["status"]["podIP"].as_str(), Some(after_ip.as_str()));
    server.ok(&["delete", "pod", "web2", "after", "retry", "--timeout=30s"]);
    assert!(
        !agent.log().contains("ERROR"),
        "agent log:\n{}",
        agent.log()
    );
    agent.kill();
}

/// The library as a scale benchmark or test would drive it: in-process,
/// with zones, taints and a short heartbeat interval; nodes stopped and
/// resumed through the handle.
#[test]
fn library_handle_stops_and_resumes_nodes() {
    use agent::simulated::{Config, SimulatedNodes};
    use k8s_openapi::api::core::v1::Taint;

    let server = Server::start_with(&["--disable-scheduler"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let client = rt
        .block_on(runtime::client::from_kubeconfig(&server.kubeconfig()))
        .unwrap();
    let config = Config {
        count: 2,
        prefix: "lib".into(),
        zones: vec!["zone-a".into(), "zone-b".into()],
        labels: [("tier".to_owned(), "sim".to_owned())].into(),
        taints: vec![Taint {
            key: "dedicated".into(),
            value: Some("sim".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }],
        capacity: [("cpu", "4"), ("memory", "8Gi"), ("pods", "20")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        heartbeat_interval: Duration::from_secs(1),
        ..Config::default()
    };
    let nodes = rt.block_on(SimulatedNodes::start(client, config)).unwrap();
    assert_eq!(nodes.node_names(), ["lib-0", "lib-1"]);
    for (name, zone) in [("lib-0", "zone-a"), ("lib-1", "zone-b")] {
        let n = server.json(&["get", "node", name]);
        assert_eq!(n["metadata"]["labels"]["topology.kubernetes.io/zone"], zone);
        assert_eq!(n["metadata"]["labels"]["tier"], "sim");
        assert_eq!(n["spec"]["taints"][0]["key"], "dedicated");
        assert_eq!(n["status"]["capacity"]["cpu"], "4");
        assert_eq!(condition(&n, "Ready"), Some("True"));
    }

    assert!(nodes.stop_node("lib-1"));
    assert!(nodes.is_stopped("lib-1") && !nodes.is_stopped("lib-0"));
    assert!(!nodes.stop_node("nope"));
    // Let a heartbeat already under way finish.
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = renew_time(&server, "lib-1");
    let running = renew_time(&server, "lib-0");
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("on-stopped", "lib-1", "Always", &[], ""),
    );
    eventually(30, "lib-0 renewing", || {
        (renew_time(&server, "lib-0") != running).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        renew_time(&server, "lib-1"),
        stopped,
        "a stopped node renewed its lease"
    );
    assert_eq!(pod(&server, "on-stopped")["status"]["phase"], "Pending");

    assert!(nodes.resume_node("lib-1"));
    server.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/on-stopped",
        "--timeout=30s",
    ]);
    eventually(30, "lib-1 renewing again", || {
        (renew_time(&server, "lib-1") != stopped).then_some(())
    });
    drop(nodes);
}
