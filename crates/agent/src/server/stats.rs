//! What the kubelet answers besides streams: `GET /pods` (the pods this
//! node runs, as a v1 PodList) and `GET /stats/summary` (the Summary API,
//! stats/v1alpha1: the node's CPU, memory, filesystems and image
//! filesystem, and each pod's containers with their CPU time, memory
//! working set and writable layer, from CRI ContainerStats). Reached
//! through the API server's `nodes/{name}/proxy`.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::Context;
use crate::cri::ContainerStats;
use crate::eviction::{Observation, Signal};
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// The pods bound to this node and its static pods.
pub fn pod_list(ctx: &Context) -> Value {
    let mut items: Vec<Value> = ctx
        .pods
        .state()
        .iter()
        .chain(ctx.static_pods.all().iter())
        .filter_map(|p| {
            let mut v = serde_json::to_value(p.as_ref()).ok()?;
            v["apiVersion"] = json!("v1");
            v["kind"] = json!("Pod");
            Some(v)
        })
        .collect();
    let key = |v: &Value| {
        (
            v.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            v.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        )
    };
    items.sort_by_key(key);
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
}

fn rfc3339(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| {
            Timestamp::from_second(t.as_second())
                .unwrap_or(t)
                .to_string()
        })
        .unwrap_or_default()
}

/// A sample's time: RFC 3339 with its fraction of a second (consumers
/// take rates over windows of a second or two).
fn sample_time(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn now_nanos() -> i64 {
    Timestamp::now().as_nanosecond() as i64
}

/// The node's CPU time so far (ns): /proc/stat's busy jiffies (user, nice,
/// system, irq, softirq, steal) at USER_HZ 100.
fn node_cpu_nanos(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    Some(busy * 10_000_000)
}

fn fs_stats(time: &str, space: Option<&Observation>, inodes: Option<&Observation>) -> Value {
    let mut fs = Map::new();
    fs.insert("time".into(), json!(time));
    if let Some(o) = space {
        fs.insert("availableBytes".into(), json!(o.available));
        fs.insert("capacityBytes".into(), json!(o.capacity));
        fs.insert("usedBytes".into(), json!(o.capacity - o.available));
    }
    if let Some(o) = inodes {
        fs.insert("inodesFree".into(), json!(o.available));
        fs.insert("inodes".into(), json!(o.capacity));
        fs.insert("inodesUsed".into(), json!(o.capacity - o.available));
    }
    Value::Object(fs)
}

/// The Summary API document.
pub async fn summary(ctx: &Context, data_dir: &Path, image_root: Option<&Path>) -> Value {
    let (dir, images) = (data_dir.to_path_buf(), image_root.map(Path::to_path_buf));
    let (obs, _) = tokio::task::spawn_blocking(move || {
        crate::eviction::observe::node(&dir, images.as_deref())
    })
    .await
    .unwrap_or_default();
    let stats = ctx.cri.list_container_stats().await.unwrap_or_default();
    let now = sample_time(now_nanos());
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let boot = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(|s| rfc3339(s * 1_000_000_000));

    let mut node = json!({"nodeName": ctx.node_name, "time": now});
    if let Some(b) = boot {
        node["startTime"] = json!(b);
    }
    if let Some(cpu) = node_cpu_nanos(&stat) {
        node["cpu"] = json!({"time": now, "usageCoreNanoSeconds": cpu});
    }
    if let Some(m) = obs.get(&Signal::MemoryAvailable) {
        node["memory"] = json!({"time": now, "availableBytes": m.available,
            "workingSetBytes": m.capacity - m.available});
    }
    node["fs"] = fs_stats(
        &now,
        obs.get(&Signal::NodeFsAvailable),
        obs.get(&Signal::NodeFsInodesFree),
    );
    node["runtime"] = json!({"imageFs": fs_stats(
        &now,
        obs.get(&Signal::ImageFsAvailable),
        obs.get(&Signal::ImageFsInodesFree),
    )});
    json!({"node": node, "pods": pod_stats(ctx, &stats)})
}

/// Each pod's containers, from the runtime's stats (by their pod labels).
fn pod_stats(ctx: &Context, stats: &[ContainerStats]) -> Vec<Value> {
    let mut by_pod: BTreeMap<(String, String, String), Vec<&ContainerStats>> = BTreeMap::new();
    for s in stats {
        let label = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        let uid = label(LABEL_POD_UID);
        if uid.is_empty() {
            continue;
        }
        by_pod
            .entry((label(LABEL_POD_NAMESPACE), label(LABEL_POD_NAME), uid))
            .or_default()
            .push(s);
    }
    // Start times by uid, read once.
    let starts: std::collections::HashMap<String, String> = ctx
        .pods
        .state()
        .iter()
        .chain(ctx.static_pods.all().iter())
        .filter_map(|p| {
            let t = p.status.as_ref()?.start_time.as_ref()?;
            Some((p.metadata.uid.clone()?, t.0.to_string()))
        })
        .collect();
    let start_of = |uid: &str| starts.get(uid).cloned();
    by_pod
        .into_iter()
        .map(|((namespace, name, uid), containers)| {
            let (mut cpu, mut mem, mut cores) = (0u64, 0u64, None::<u64>);
            let mut time = 0i64;
            let list: Vec<Value> = containers
                .iter()
                .map(|s| {
                    let t = sample_time(s.timestamp.max(1));
                    time = time.max(s.timestamp);
                    cpu += s.cpu_usage_core_nano_seconds.unwrap_or(0);
                    mem += s.memory_working_set_bytes.unwrap_or(0);
                    if let Some(n) = s.cpu_usage_nano_cores {
                        cores = Some(cores.unwrap_or(0) + n);
                    }
                    let mut c = json!({
                        "name": s.labels.get(LABEL_CONTAINER_NAME).cloned().unwrap_or_else(|| s.name.clone()),
                        "cpu": {"time": t, "usageCoreNanoSeconds": s.cpu_usage_core_nano_seconds.unwrap_or(0)},
                        "memory": {"time": t, "workingSetBytes": s.memory_working_set_bytes.unwrap_or(0)},
                    });
                    if let Some(n) = s.cpu_usage_nano_cores {
                        c["cpu"]["usageNanoCores"] = json!(n);
                    }
                    if let Some(used) = s.writable_layer_bytes {
                        c["rootfs"] = json!({"time": t, "usedBytes": used,
                            "inodesUsed": s.writable_layer_inodes.unwrap_or(0)});
                    }
                    c
                })
                .collect();
            let t = sample_time(time.max(1));
            let mut pod = json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "containers": list,
                "cpu": {"time": t, "usageCoreNanoSeconds": cpu},
                "memory": {"time": t, "workingSetBytes": mem},
            });
            if let Some(n) = cores {
                pod["cpu"]["usageNanoCores"] = json!(n);
            }
            if let Some(start) = start_of(&uid) {
                pod["startTime"] = json!(start);
            }
            pod
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_cpu_counts_busy_jiffies() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n";
        // user + nice + system + irq + softirq + steal, not idle or iowait.
        assert_eq!(
            node_cpu_nanos(stat),
            Some((100 + 5 + 50 + 3 + 2 + 1) * 10_000_000)
        );
        assert_eq!(node_cpu_nanos("intr 1\n"), None);
    }
}
