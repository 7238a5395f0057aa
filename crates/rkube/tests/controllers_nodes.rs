//! Node failure and maintenance on simulated nodes (their Leases renew
//! every 10 s, so the grace period must be longer): heartbeats stop →
//! the node goes Unknown, gets tainted, its pods are evicted and replaced
//! elsewhere; `kubectl cordon/drain/uncordon` with a PodDisruptionBudget.

mod support;

use serde_json::Value;
use support::{eventually, Server};

fn live_pods(s: &Server, selector: &str) -> Vec<Value> {
    s.json(&["get", "pods", "-l", selector, "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn running_on(s: &Server, selector: &str) -> Vec<String> {
    live_pods(s, selector)
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_dead_node_is_tainted_and_its_pods_move() {
    let s = Server::start_with(&[
        "--node-monitor-grace-period=15s",
        "--default-unreachable-toleration-seconds=2",
        "--default-not-ready-toleration-seconds=2",
    ]);
    let mut a = s.start_simulated_agent(1, "a");
    eventually(30, "node a-0", || {
        s.kubectl(&["get", "node", "a-0"])
            .status
            .success()
            .then_some(())
    });
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
    ]);
    eventually(60, "2 pods running on a-0", || {
        (running_on(&s, "app=web") == ["a-0", "a-0"]).then_some(())
    });
    let _b = s.start_simulated_agent(1, "b");
    eventually(30, "node b-0", || {
        s.kubectl(&["get", "node", "b-0"])
            .status
            .success()
            .then_some(())
    });

    a.kill();
    let node = eventually(60, "a-0 Unknown and tainted", || {
        let n = s.json(&["get", "node", "a-0", "-o", "json"]);
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        let tainted = n["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        (ready["status"] == "Unknown" && tainted).then_some(n)
    });
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    let describe = s.ok(&["get", "nodes"]);
    assert!(describe.contains("NotReady"), "{describe}");
    // Evicted after their 2 s toleration and replaced on b-0.
    eventually(90, "2 pods running on b-0", || {
        (running_on(&s, "app=web") == ["b-0", "b-0"]).then_some(())
    });
}

#[test]
fn cordon_drain_uncordon_with_a_disruption_budget() {
    let s = Server::start_with(&[]);
    let _agent = s.start_simulated_agent(2, "n");
    eventually(30, "2 nodes", || {
        (s.json(&["get", "nodes", "-o", "json"])["items"]
            .as_array()
            .unwrap()
            .len()
            == 2)
            .then_some(())
    });
    s.ok(&["cordon", "n-1"]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=3",
    ]);
    eventually(60, "3 pods on n-0", || {
        (running_on(&s, "app=web") == ["n-0"; 3]).then_some(())
    });
    let n1 = s.json(&["get", "node", "n-1", "-o", "json"]);
    assert_eq!(n1["spec"]["unschedulable"], true);
    s.ok(&["uncordon", "n-1"]);
    s.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--max-unavailable=1",
    ]);
    eventually(30, "pdb allows 1", || {
        (s.json(&["get", "pdb", "web", "-o", "json"])["status"]["disruptionsAllowed"] == 1)
            .then_some(())
    });
    // Drain evicts through the budget, one at a time, and the pods come
    // back on n-1.
    let out = s.ok(&[
        "drain",
        "n-0",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    assert!(out.contains("evicted") && out.contains("drained"), "{out}");
    eventually(60, "3 pods on n-1", || {
        (running_on(&s, "app=web") == ["n-1"; 3]).then_some(())
    });
    let n0 = s.json(&["get", "node", "n-0", "-o", "json"]);
    assert_eq!(n0["spec"]["unschedulable"], true);
    s.ok(&["uncordon", "n-0"]);
    assert!(s.json(&["get", "node", "n-0", "-o", "json"])["spec"]["unschedulable"].is_null());
}
