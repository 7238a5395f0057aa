//! Load generator for `bench/scheduler.sh` (not a test; prints figures).
//!
//! ```text
//! sched-bench nodes  KUBECONFIG COUNT [ZONES]      create Ready nodes bench-0..
//! sched-bench load   KUBECONFIG PODS KIND [NODES]  KIND: plain | anti | spread
//! sched-bench memory KUBECONFIG NODES              RSS of a scheduler cache
//! sched-bench algo   NODES PODS KIND               the algorithm alone, no API
//! ```
//!
//! `load` creates pods in a fresh namespace with 64 requests in flight and
//! watches them: throughput is pods bound per second from the first
//! creation to the last binding; latency is from sending a pod's create
//! request to seeing its nodeName in the watch.
//!
//! `memory` runs this crate's scheduler in this process with a profile no
//! pod asks for, so it only fills its cache (every node and bound pod), and
//! prints the resident memory it added per 1,000 nodes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const IN_FLIGHT: usize = 64;

async fn client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
    runtime::client::from_kubeconfig(std::path::Path::new(kubeconfig)).await
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn create_nodes(c: kube::Client, count: usize, zones: usize) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(c);
    let start = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("bench-{i}");
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "topology.kubernetes.io/zone": format!("zone-{}", i % zones),
                    }},
                }))?;
                api.create(&PostParams::default(), &node).await?;
                let status = json!({"status": {
                    "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                    "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                }});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    println!(
        "created {count} nodes in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn pod_for(kind: &str, i: usize, pods: usize, nodes: usize) -> anyhow::Result<Pod> {
    let mut p = json!({
        "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    });
    match kind {
        "plain" => {}
        "anti" => {
            // Groups of at most half the node count: each group spreads
            // one pod per host.
            let groups = (2 * pods).div_ceil(nodes).max(1);
            let g = format!("g{}", i % groups);
            p["metadata"]["labels"]["group"] = json!(g);
            p["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"group": g}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        "spread" => {
            let g = format!("g{}", i % 10);
            p["metadata"]["labels"]["group"] = json!(g);
            p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"group": g}}}]);
        }
        other => anyhow::bail!("unknown kind {other}"),
    }
    Ok(serde_json::from_value(p)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn load(c: kube::Client, pods: usize, kind: &str, nodes: usize) -> anyhow::Result<()> {
    let ns = format!("bench-{kind}-{}", std::process::id());
    let nsapi: Api<Namespace> = Api::all(c.clone());
    nsapi
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    let api: Api<Pod> = Api::namespaced(c.clone(), &ns);
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // Watch first, so no binding is missed.
    let watch = {
        let (api, bound) = (api.clone(), bound.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let stream = watcher::watcher(api, watcher::Config::default().any_semantic());
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                let ev = match ev {
                    Ok(e) => e,
                    Err(_) => continue,
                };
                match ev {
                    watcher::Event::InitDone => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p)
                        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() =>
                    {
                        let name = p.metadata.name.unwrap_or_default();
                        let mut b = bound.lock().unwrap();
                        let n = b.len();
                        b.entry(name).or_insert_with(Instant::now);
                        if b.len() == pods && n < pods {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        });
        ready_rx.await?;
        task
    };
    let start = Instant::now();
    let creating = {
        let (api, sent) = (api.clone(), sent.clone());
        let kind = kind.to_owned();
        tokio::spawn(async move {
            futures::stream::iter(0..pods)
                .map(|i| {
                    let (api, sent, kind) = (api.clone(), sent.clone(), kind.clone());
                    async move {
                        let p = pod_for(&kind, i, pods, nodes)?;
                        sent.lock()
                            .unwrap()
                            .insert(format!("p-{i}"), Instant::now());
                        api.create(&PostParams::default(), &p).await?;
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(IN_FLIGHT)
                .try_collect::<Vec<_>>()
                .await?;
            anyhow::Ok(start.elapsed())
        })
    };
    let created_in = creating.await??;
    // Progress while waiting; give up after a long quiet spell.
    let mut last = (0, Instant::now());
    while !watch.is_finished() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = bound.lock().unwrap().len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(60) {
            println!("  stalled at {n}/{pods} bound");
            break;
        }
    }
    let bound = bound.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    let last_bound = bound.values().max().copied().unwrap_or(start);
    let total = last_bound.duration_since(start);
    let mut lat: Vec<Duration> = bound
        .iter()
        .filter_map(|(n, t)| Some(t.duration_since(*sent.get(n)?)))
        .collect();
    lat.sort();
    println!(
        "{kind:>6}: {nodes} nodes, {}/{pods} pods bound in {:.2}s = {:.0} pods/s (created at {:.0} pods/s); creation→binding p50 {:.0} ms, p99 {:.0} ms",
        bound.len(),
        total.as_secs_f64(),
        bound.len() as f64 / total.as_secs_f64(),
        pods as f64 / created_in.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}

async fn memory(c: kube::Client, nodes: usize) -> anyhow::Result<()> {
    let before = rss_kib();
    let config = scheduler::Config {
        profiles: vec![scheduler::config::ProfileConfig {
            scheduler_name: Some("memory-probe".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let task = tokio::spawn(scheduler::run(c, config));
    let m = scheduler::metrics::get();
    let deadline = Instant::now() + Duration::from_secs(120);
    while (m.cache_nodes.load(std::sync::atomic::Ordering::Relaxed) as usize) < nodes {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the scheduler cache never held {nodes} nodes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    task.abort();
    let pods = m.cache_pods.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "scheduler memory: {:.0} KiB before informers, {:.0} KiB with {nodes} nodes and {pods} pods cached: {:.2} MiB per 1,000 nodes",
        before as f64,
        after as f64,
        (after.saturating_sub(before)) as f64 / 1024.0 / (nodes as f64 / 1000.0)
    );
    Ok(())
}

/// Scheduling cycles alone: cache, snapshot, filter, score, assume; no
/// API server, no binding.
fn algo(nodes: usize, pods: usize, kind: &str) -> anyhow::Result<()> {
    use scheduler::cache::{Cache, Snapshot};
    use scheduler::framework::Nominations;
    use scheduler::podinfo::PodInfo;
    let mut cache = Cache::default();
    for i in 0..nodes {
        let name = format!("bench-{i}");
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                "topology.kubernetes.io/zone": format!("zone-{}", i % 10)}},
            "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}},
        }))?;
        cache.set_node(Arc::new(node));
    }
    let profile = scheduler::config::default_profile();
    let mut snap = Snapshot::default();
    let mut next = 0;
    let none = Nominations::new();
    let start = Instant::now();
    let mut failed = 0;
    for i in 0..pods {
        let mut p = pod_for(kind, i, pods, nodes)?;
        p.metadata.namespace = Some("bench".into());
        let info = PodInfo::new(Arc::new(p), 0);
        cache.update_snapshot(&mut snap);
        match profile.schedule(&info, &snap, &mut next, &none) {
            Ok(r) => cache.assume_pod(Arc::new(info.with_node(&r.node))),
            Err(_) => failed += 1,
        }
    }
    let t = start.elapsed();
    println!(
        "algorithm only ({kind}): {nodes} nodes, {pods} pods ({failed} unschedulable) in {:.2}s = {:.0} pods/s",
        t.as_secs_f64(),
        pods as f64 / t.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match arg(0) {
        "nodes" => create_nodes(client(arg(1)).await?, num(2, 500), num(3, 10)).await,
        "load" => load(client(arg(1)).await?, num(2, 1000), arg(3), num(4, 500)).await,
        "memory" => memory(client(arg(1)).await?, num(2, 500)).await,
        "algo" => algo(num(1, 500), num(2, 10000), arg(3)),
        _ => {
            eprintln!("usage: sched-bench nodes|load|memory KUBECONFIG ...");
            std::process::exit(2)
        }
    }
}
