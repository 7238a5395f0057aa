//! Builders for tests and benchmarks.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::cache::{NodeInfo, Snapshot};
use crate::podinfo::PodInfo;

/// `obj` with a JSON merge patch applied.
pub fn with<T: serde::Serialize + serde::de::DeserializeOwned>(obj: &T, patch: Value) -> T {
    let mut v = serde_json::to_value(obj).unwrap();
    merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// A ready node with this allocatable CPU, memory and pod count, labelled
/// with its hostname.
pub fn node(name: &str, cpu: &str, mem: &str, pods: i64) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": mem, "pods": pods.to_string()},
            "capacity": {"cpu": cpu, "memory": mem, "pods": pods.to_string()},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .unwrap()
}

/// A pod in `default` with one container requesting cpu and memory ("0":
/// no request).
pub fn pod(name: &str, cpu: &str, mem: &str) -> Pod {
    let mut requests = serde_json::Map::new();
    if cpu != "0" {
        requests.insert("cpu".into(), json!(cpu));
    }
    if mem != "0" {
        requests.insert("memory".into(), json!(mem));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}]}
    }))
    .unwrap()
}

/// PodInfo with spec.priority (or 0).
pub fn pod_info(p: &Pod) -> PodInfo {
    let prio = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    PodInfo::new(Arc::new(p.clone()), prio)
}

/// A node with these pods on it.
pub fn node_info(n: &Node, pods: &[Pod]) -> NodeInfo {
    let mut info = NodeInfo::new(Arc::new(n.clone()));
    for p in pods {
        info.add_pod(Arc::new(pod_info(p).with_node(&info.name)));
    }
    info
}

/// A snapshot of (node, pods on it).
pub fn snapshot(nodes: &[(Node, Vec<Pod>)]) -> Snapshot {
    Snapshot::from_nodes(nodes.iter().map(|(n, p)| node_info(n, p)).collect())
}
