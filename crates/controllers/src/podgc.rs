//! Pod garbage collection, as Kubernetes' pod-garbage-collector does it:
//! pods bound to a node that no longer exists (checked again live after a
//! quarantine, so a node being re-registered is not mistaken) and
//! terminating pods that were never scheduled are force-deleted; finished
//! pods beyond the threshold (12,500 by default) are deleted oldest first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use kube::runtime::reflector::Store;

use crate::podutil;
use crate::Ctx;

const PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing before its pods are removed.
const QUARANTINE: Duration = Duration::from_secs(40);

/// Which pods to delete now: (namespace, name, force).
pub fn collect(
    pods: &[Arc<Pod>],
    nodes: &HashSet<String>,
    missing_since: &HashMap<String, Instant>,
    threshold: usize,
) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let id = |p: &Pod| {
        (
            p.metadata.namespace.clone().unwrap_or_default(),
            p.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mut terminated: Vec<&Arc<Pod>> = Vec::new();
    for p in pods {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(n)
                if !nodes.contains(&n)
                    && missing_since
                        .get(&n)
                        .is_some_and(|t| t.elapsed() >= QUARANTINE) =>
            {
                let (ns, name) = id(p);
                out.push((ns, name, true));
                continue;
            }
            None if p.metadata.deletion_timestamp.is_some() => {
                let (ns, name) = id(p);
                out.push((ns, name, true));
                continue;
            }
            _ => {}
        }
        if podutil::is_terminal(p) && p.metadata.deletion_timestamp.is_none() {
            terminated.push(p);
        }
    }
    if terminated.len() > threshold {
        terminated.sort_by_key(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0)
        });
        for p in &terminated[..terminated.len() - threshold] {
            let (ns, name) = id(p);
            out.push((ns, name, false));
        }
    }
    out
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>, threshold: usize) {
    let node_inf = ctx.informers.get::<Node>();
    let pod_inf = ctx.informers.get::<Pod>();
    let nodes: Store<Node> = node_inf.store();
    let pods: Store<Pod> = pod_inf.store();
    let client = ctx.client.clone();
    set.spawn(async move {
        node_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        let mut missing_since: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::time::sleep(PERIOD).await;
            let names: HashSet<String> = nodes
                .state()
                .iter()
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let all = pods.state();
            // Note when each referenced node went missing; ask the API
            // before trusting the cache.
            let node_api: Api<Node> = Api::all(client.clone());
            let mut referenced: HashSet<String> = HashSet::new();
            for p in &all {
                if let Some(n) = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .filter(|n| !n.is_empty())
                {
                    referenced.insert(n);
                }
            }
            missing_since.retain(|n, _| referenced.contains(n) && !names.contains(n));
            for n in referenced.iter().filter(|n| !names.contains(*n)) {
                if missing_since.contains_key(n) {
                    continue;
                }
                if let Ok(None) = node_api.get_opt(n).await {
                    missing_since.insert(n.clone(), Instant::now());
                }
            }
            for (ns, name, force) in collect(&all, &names, &missing_since, threshold) {
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let dp = if force {
                    DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    }
                } else {
                    DeleteParams::default()
                };
                if let Err(e) = api.delete(&name, &dp).await {
                    if !runtime::is_not_found(&e) {
                        tracing::debug!(pod = %name, error = %e, "pod gc: delete failed");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64, deleting: bool) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
            "spec": {"containers": []},
            "status": {"phase": phase}
        });
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn what_gets_collected() {
        let nodes: HashSet<String> = ["n1".to_string()].into();
        let long_ago = Instant::now() - QUARANTINE - Duration::from_secs(1);
        let missing: HashMap<String, Instant> = [
            ("gone".to_string(), long_ago),
            ("fresh".to_string(), Instant::now()),
        ]
        .into();
        let pods = vec![
            pod("ok", Some("n1"), "Running", 1, false),
            pod("orphan", Some("gone"), "Running", 2, false),
            pod("quarantined", Some("fresh"), "Running", 3, false),
            pod("unscheduled-deleting", None, "Pending", 4, true),
            pod("done-old", Some("n1"), "Succeeded", 5, false),
            pod("done-new", Some("n1"), "Failed", 6, false),
        ];
        let got = collect(&pods, &nodes, &missing, 1);
        let names: Vec<(&str, bool)> = got.iter().map(|(_, n, f)| (n.as_str(), *f)).collect();
        assert_eq!(
            names,
            [
                ("orphan", true),
                ("unscheduled-deleting", true),
                ("done-old", false)
            ]
        );
    }
}
