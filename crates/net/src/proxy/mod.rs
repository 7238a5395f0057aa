//! The service proxy: programs nftables on this node so that traffic to a
//! Service's ClusterIPs, NodePorts and external/load-balancer IPs reaches
//! its ready endpoints (kube-proxy's job, in its nftables flavour).
//!
//! Informers on Services and EndpointSlices feed [`model::build`] (pure),
//! [`nft::render`] turns the service ports into a [`nft::Ruleset`] (pure),
//! and [`nft::Ruleset::script`] diffs it against what was last applied; the
//! script goes to `nft -f -` as one transaction. Each burst of changes is
//! applied once, typically within tens of milliseconds; a failed apply is
//! retried from scratch (delete and recreate the table) with back-off.
//! After each apply, [`conntrack`] deletes the UDP/SCTP conntrack entries
//! that would keep sending existing flows to endpoints that no longer
//! serve (or past a Service that had none), as kube-proxy does.

pub mod conntrack;
pub mod model;
pub mod nft;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use runtime::Informer;
use tokio::io::AsyncWriteExt;

/// How the proxy runs on this node.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name (endpoints' nodeName, for the Local policies).
    pub node_name: String,
    /// The nftables table (family ip) the proxy owns.
    pub table: String,
    /// The pod bridge: DNATed traffic that goes back out the bridge it
    /// came in on is masqueraded when bridged packets skip netfilter.
    pub bridge: Option<String>,
}

/// Whether bridged IPv4 traffic passes the ip netfilter hooks
/// (br_netfilter loaded with bridge-nf-call-iptables=1).
pub fn bridged_traffic_is_filtered() -> bool {
    std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|s| s.trim() == "1")
}

/// Whether the `nft` tool is there to program the kernel with.
pub async fn available() -> bool {
    tokio::process::Command::new("nft")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// Runs `script` through `nft -f -` (one atomic transaction).
pub async fn apply(script: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        anyhow::bail!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(2000)
                .collect::<String>()
        );
    }
    Ok(())
}

/// Removes the proxy's table (on a clean stop, or by tests).
pub async fn remove(table: &str) -> anyhow::Result<()> {
    apply(&format!("table ip {table} {{}}\ndelete table ip {table}\n")).await
}

/// Keeps the node's rules in step with the cluster's Services and
/// EndpointSlices until the informers stop.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    if !available().await {
        anyhow::bail!("service proxy: the nft tool is not installed (Debian package nftables)");
    }
    let opts = nft::Options {
        node: config.node_name.clone(),
        masquerade_bridge: config
            .bridge
            .clone()
            .filter(|_| !bridged_traffic_is_filtered()),
    };
    let services: Arc<Informer<Service>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let slices: Arc<Informer<EndpointSlice>> = Informer::new(
        Api::all(client),
        watcher::Config::default().labels(model::SERVICE_NAME_LABEL),
    );
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let n = changed.clone();
        services.on_change(move |_| n.notify_one());
        let n = changed.clone();
        slices.on_change(move |_| n.notify_one());
    }
    let svc_task = services.start();
    let slice_task = slices.start();
    services.wait_synced().await;
    slices.wait_synced().await;
    tracing::info!(table = %config.table, masquerade_bridge = ?opts.masquerade_bridge, "service proxy synced");

    let mut applied: Option<nft::Ruleset> = None;
    let mut backoff = Duration::from_millis(500);
    let mut cleanup = Cleanup::default();
    loop {
        let svcs = services.store().state();
        let eps = slices.store().state();
        let ports = model::build(
            svcs.iter().map(|s| s.as_ref()),
            eps.iter().map(|s| s.as_ref()),
        );
        let wanted = nft::render(&opts, &ports);
        let script = wanted.script(&config.table, applied.as_ref());
        if script.is_empty() {
            backoff = Duration::from_millis(500);
        } else {
            let started = std::time::Instant::now();
            match apply(&script).await {
                Ok(()) => {
                    tracing::debug!(
                        ports = ports.len(),
                        lines = script.lines().count(),
                        took_ms = started.elapsed().as_millis() as u64,
                        "service rules applied"
                    );
                    applied = Some(wanted);
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "applying service rules failed; rebuilding the table");
                    applied = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        // The rules now send new flows where they belong; flows that
        // conntrack still sends elsewhere are cleared after them.
        if !cleanup.sync(&ports).await {
            let n = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                n.notify_one();
            });
        }
        if svc_task.is_finished() || slice_task.is_finished() {
            anyhow::bail!("service proxy: an informer stopped");
        }
        changed.notified().await;
        // Let a burst of events settle into one apply.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The proxy's conntrack cleanup state across syncs.
#[derive(Default)]
struct Cleanup {
    /// What the last successful cleanup saw (None: check everything).
    seen: Option<conntrack::Targets>,
    /// Set once ctnetlink turned out to be unusable here (warned once).
    off: bool,
}

impl Cleanup {
    /// Clears the UDP/SCTP entries that `ports` (just applied) made stale;
    /// false when that failed and should be tried again.
    async fn sync(&mut self, ports: &[model::ServicePort]) -> bool {
        if self.off {
            return true;
        }
        let now = conntrack::targets(ports);
        let clears = conntrack::to_clear(self.seen.as_ref(), &now);
        if clears.is_empty() {
            self.seen = Some(now);
            return true;
        }
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || conntrack::clear(&clears))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(
                        deleted,
                        took_ms = started.elapsed().as_millis() as u64,
                        "cleared stale UDP/SCTP conntrack entries"
                    );
                }
                self.seen = Some(now);
                true
            }
            Err(e) if conntrack::unavailable(&e) => {
                tracing::warn!(error = %e, "cannot clear stale conntrack entries (needs CAP_NET_ADMIN and nf_conntrack_netlink); UDP flows to removed endpoints will linger until they time out");
                self.off = true;
                true
            }
            Err(e) => {
                // Check everything on the next sync.
                tracing::warn!(error = %e, "clearing stale conntrack entries failed");
                self.seen = None;
                false
            }
        }
    }
}
