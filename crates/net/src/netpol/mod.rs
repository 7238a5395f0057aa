//! NetworkPolicy enforcement: programs nftables on this node so that the
//! local pods that policies isolate only send and receive what the
//! policies allow (networking.k8s.io/v1 NetworkPolicy semantics).
//!
//! Informers on NetworkPolicies, Pods and Namespaces feed
//! [`model::build`] (pure: the isolated local pods and their allowed
//! peers and ports, peers resolved cluster-wide from pod IPs),
//! [`nft::render`] turns them into the rules of two tables (pure; see
//! [`nft`] for the layout and why a `bridge` table hands pod-to-pod frames
//! to the IP stack), and [`nft::Rules::script`] diffs them against what
//! was last applied; the script goes through [`crate::proxy::apply`] as
//! one transaction. A failed apply is retried from scratch with back-off.
//!
//! Semantics at the edges: traffic to and from the node itself is never
//! filtered (Kubernetes requires this; it includes host-network pods and
//! host -> ClusterIP -> pod); traffic through a Service is judged on the
//! endpoint pod's address and target port (the forward hook runs after the
//! proxy's DNAT and before its masquerade); connections established
//! before a policy keep flowing (conntrack). IPv4 only.

pub mod model;
pub mod nft;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use kube::Api;
use runtime::Informer;

/// How policy enforcement runs on this node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name: the pods it enforces policies for.
    pub node_name: String,
    /// The name of the nftables tables (families ip and bridge) it owns.
    pub table: String,
    /// The pod bridge.
    pub bridge: String,
}

/// The bridge's MAC address, once the bridge exists.
fn bridge_mac(bridge: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{bridge}/address"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Deletes the policy tables (on a clean stop, or by tests): with them
/// goes all isolation on this node.
pub async fn remove(table: &str) -> anyhow::Result<()> {
    crate::proxy::apply(&nft::remove_script(table)).await
}

/// Keeps the node's policy rules in step with the cluster's
/// NetworkPolicies, Pods and Namespaces until the informers stop.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    if !crate::proxy::available().await {
        anyhow::bail!("network policy: the nft tool is not installed (Debian package nftables)");
    }
    let policies: Arc<Informer<NetworkPolicy>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let pods: Arc<Informer<Pod>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let namespaces: Arc<Informer<Namespace>> =
        Informer::new(Api::all(client), watcher::Config::default());
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let n = changed.clone();
        policies.on_change(move |_| n.notify_one());
        let n = changed.clone();
        pods.on_change(move |_| n.notify_one());
        let n = changed.clone();
        namespaces.on_change(move |_| n.notify_one());
    }
    let tasks = [policies.start(), pods.start(), namespaces.start()];
    policies.wait_synced().await;
    pods.wait_synced().await;
    namespaces.wait_synced().await;
    tracing::info!(table = %config.table, bridge = %config.bridge, "network policy synced");

    let mut applied: Option<nft::Rules> = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        let isolated = {
            let pols = policies.store().state();
            let pods = pods.store().state();
            let nss = namespaces.store().state();
            model::build(
                &config.node_name,
                pols.iter().map(|p| p.as_ref()),
                pods.iter().map(|p| p.as_ref()),
                nss.iter().map(|n| n.as_ref()),
            )
        };
        let wanted = nft::render(&isolated, bridge_mac(&config.bridge).as_deref());
        let script = wanted.script(&config.table, applied.as_ref());
        if !script.is_empty() {
            match crate::proxy::apply(&script).await {
                Ok(()) => {
                    tracing::debug!(
                        isolated = isolated.len(),
                        lines = script.lines().count(),
                        "network policy rules applied"
                    );
                    applied = Some(wanted);
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "applying network policy rules failed; rebuilding the tables");
                    applied = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        if tasks.iter().any(|t| t.is_finished()) {
            anyhow::bail!("network policy: an informer stopped");
        }
        // The bridge's MAC (in the bridge table's rules) can change when
        // ports come and go: look again now and then.
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        // Let a burst of events settle into one apply.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
