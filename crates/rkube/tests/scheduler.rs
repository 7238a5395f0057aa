//! The scheduler against the real binary, checked through kubectl. Nodes
//! are plain Node objects created with kubectl (no agent), so pods only
//! get bound, never run.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, Server};

fn start() -> Server {
    Server::start_with(&["--disable-controller-manager"])
}

/// A Ready node with this allocatable CPU/memory, extra labels and taints.
fn add_node(s: &Server, name: &str, cpu: &str, labels: Value, taints: Value) {
    let mut all_labels = json!({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"});
    for (k, v) in labels.as_object().unwrap() {
        all_labels[k] = v.clone();
    }
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"taints": taints},
    });
    s.ok_stdin(&["create", "-f", "-"], &node.to_string());
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}]
    }});
    s.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

/// A pod with one container requesting `cpu`, plus `spec` merged in.
fn pod(name: &str, cpu: &str, labels: Value, spec: Value) -> String {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:stable", "resources": {"requests": {"cpu": cpu}}}]}
    });
    for (k, v) in spec.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    p.to_string()
}

fn create(s: &Server, manifest: &str) {
    s.ok_stdin(&["create", "-f", "-"], manifest);
}

fn node_of(s: &Server, name: &str) -> Option<String> {
    let p = s.json(&["get", "pod", name]);
    p["spec"]["nodeName"].as_str().map(str::to_owned)
}

fn wait_bound(s: &Server, name: &str) -> String {
    eventually(30, &format!("{name} bound"), || node_of(s, name))
}

/// The PodScheduled condition's message once it is False.
fn wait_unschedulable(s: &Server, name: &str, contains: &str) -> String {
    eventually(
        30,
        &format!("{name} unschedulable with {contains:?}"),
        || {
            let p = s.json(&["get", "pod", name]);
            let c = p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?
                .clone();
            assert_eq!(c["reason"], "Unschedulable");
            let msg = c["message"].as_str()?.to_owned();
            msg.contains(contains).then_some(msg)
        },
    )
}

#[test]
fn pods_are_bound_and_a_pod_too_big_waits_for_a_big_enough_node() {
    let s = start();
    add_node(&s, "n1", "2", json!({}), json!([]));
    add_node(&s, "n2", "2", json!({}), json!([]));
    create(&s, &pod("small", "500m", json!({}), json!({})));
    let node = wait_bound(&s, "small");
    assert!(node == "n1" || node == "n2", "{node}");
    let describe = eventually(30, "Scheduled event", || {
        let d = s.ok(&["describe", "pod", "small"]);
        d.contains("Scheduled").then_some(d)
    });
    assert!(
        describe.contains(&format!("Successfully assigned default/small to {node}")),
        "{describe}"
    );
    let p = s.json(&["get", "pod", "small"]);
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], "True");

    create(&s, &pod("big", "3", json!({}), json!({})));
    let msg = wait_unschedulable(&s, "big", "Insufficient cpu");
    assert_eq!(
        msg,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    let describe = eventually(30, "FailedScheduling event", || {
        let d = s.ok(&["describe", "pod", "big"]);
        d.contains("FailedScheduling").then_some(d)
    });
    assert!(
        describe.contains("0/2 nodes are available: 2 Insufficient cpu."),
        "{describe}"
    );
    // A pod for another scheduler is left alone.
    create(
        &s,
        &pod(
            "other",
            "100m",
            json!({}),
            json!({"schedulerName": "someone-else"}),
        ),
    );

    add_node(&s, "n3", "4", json!({}), json!([]));
    assert_eq!(wait_bound(&s, "big"), "n3");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(node_of(&s, "other"), None);
    let p = s.json(&["get", "pod", "other"]);
    assert!(p["status"]["conditions"].is_null(), "{p}");
}

#[test]
fn node_selectors_affinity_taints_and_tolerations() {
    let s = start();
    add_node(
        &s,
        "ssd",
        "4",
        json!({"disk": "ssd", "zone": "a"}),
        json!([]),
    );
    add_node(
        &s,
        "hdd",
        "4",
        json!({"disk": "hdd", "zone": "b"}),
        json!([]),
    );
    add_node(
        &s,
        "gpu",
        "4",
        json!({"disk": "ssd", "zone": "c"}),
        json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
    );
    add_node(
        &s,
        "down",
        "4",
        json!({"zone": "d"}),
        json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]),
    );

    create(
        &s,
        &pod(
            "sel",
            "100m",
            json!({}),
            json!({"nodeSelector": {"disk": "hdd"}}),
        ),
    );
    assert_eq!(wait_bound(&s, "sel"), "hdd");

    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}});
    // ssd or gpu; gpu is tainted, so ssd.
    for i in 0..3 {
        let name = format!("aff-{i}");
        create(&s, &pod(&name, "100m", json!({}), affinity.clone()));
        assert_eq!(wait_bound(&s, &name), "ssd");
    }

    let mut tolerating = affinity.clone();
    tolerating["tolerations"] =
        json!([{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]);
    tolerating["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] = json!(["ssd"]);
    tolerating["nodeSelector"] = json!({"zone": "c"});
    create(&s, &pod("tol", "100m", json!({}), tolerating));
    assert_eq!(wait_bound(&s, "tol"), "gpu");

    create(
        &s,
        &pod(
            "nowhere",
            "100m",
            json!({}),
            json!({"nodeSelector": {"disk": "nvme"}}),
        ),
    );
    let msg = wait_unschedulable(&s, "nowhere", "affinity");
    assert_eq!(
        msg,
        "0/4 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
    // Relabelling a node makes the pod fit.
    s.ok(&["label", "node", "hdd", "disk=nvme", "--overwrite"]);
    assert_eq!(wait_bound(&s, "nowhere"), "hdd");
}

#[test]
fn anti_affinity_spreads_over_hosts_and_topology_spread_keeps_skew() {
    let s = start();
    for (n, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        add_node(
            &s,
            n,
            "8",
            json!({"topology.kubernetes.io/zone": zone}),
            json!([]),
        );
    }
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let mut hosts = Vec::new();
    for i in 0..3 {
        let name = format!("db-{i}");
        create(&s, &pod(&name, "100m", json!({"app": "db"}), anti.clone()));
        hosts.push(wait_bound(&s, &name));
    }
    hosts.sort();
    assert_eq!(hosts, ["a1", "a2", "b1"]);
    create(&s, &pod("db-3", "100m", json!({"app": "db"}), anti.clone()));
    let msg = wait_unschedulable(&s, "db-3", "anti-affinity");
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    // Deleting one replica lets it in.
    s.ok(&["delete", "pod", "db-0", "--grace-period=0", "--force"]);
    wait_bound(&s, "db-3");

    // Zone spread, maxSkew 1: zone a has two nodes but gets no more pods
    // than b.
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    let mut zones = std::collections::BTreeMap::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        create(
            &s,
            &pod(&name, "100m", json!({"app": "web"}), spread.clone()),
        );
        let node = wait_bound(&s, &name);
        let zone = if node.starts_with('a') { "a" } else { "b" };
        *zones.entry(zone).or_insert(0) += 1;
        let (a, b) = (
            zones.get("a").copied().unwrap_or(0),
            zones.get("b").copied().unwrap_or(0),
        );
        assert!(i32::abs(a - b) <= 1, "skew after {name}: {zones:?}");
    }
    assert_eq!(zones, [("a", 3), ("b", 3)].into_iter().collect());
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one() {
    let s = start();
    add_node(&s, "only", "2", json!({}), json!([]));
    for (name, value) in [("low", 100), ("high", 1000)] {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value});
        create(&s, &pc.to_string());
    }
    create(
        &s,
        &pod(
            "victim",
            "1500m",
            json!({}),
            json!({"priorityClassName": "low"}),
        ),
    );
    assert_eq!(wait_bound(&s, "victim"), "only");

    // preemptionPolicy Never: waits without preempting.
    create(
        &s,
        &pod(
            "polite",
            "1500m",
            json!({}),
            json!({"priorityClassName": "high", "preemptionPolicy": "Never"}),
        ),
    );
    let msg = wait_unschedulable(&s, "polite", "Insufficient cpu");
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.."
    );
    s.ok(&["delete", "pod", "polite", "--grace-period=0", "--force"]);

    create(
        &s,
        &pod(
            "vip",
            "1500m",
            json!({}),
            json!({"priorityClassName": "high"}),
        ),
    );
    let nominated = eventually(30, "vip nominated", || {
        let p = s.json(&["get", "pod", "vip"]);
        p["status"]["nominatedNodeName"].as_str().map(str::to_owned)
    });
    assert_eq!(nominated, "only");
    // The victim is being deleted (with no agent it stays Terminating: do
    // what the kubelet would and finish it).
    eventually(30, "victim terminating", || {
        let out = s.kubectl(&["get", "pod", "victim", "-o", "json"]);
        if !out.status.success() {
            return Some(());
        }
        let p: Value = serde_json::from_slice(&out.stdout).unwrap();
        (!p["metadata"]["deletionTimestamp"].is_null()).then_some(())
    });
    let describe = s.ok(&["describe", "pod", "vip"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    s.kubectl(&["delete", "pod", "victim", "--grace-period=0", "--force"]);
    assert_eq!(wait_bound(&s, "vip"), "only");
}
