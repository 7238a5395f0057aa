//! Controller manager benchmark: starts the real `rkube server` (release
//! build; controllers and scheduler in the server process) and an
//! `rkube agent --simulated-nodes 100`, then times
//!
//! - a 1,000-replica Deployment from creation to all pods available,
//! - a rolling update of it (new image) to all new pods available,
//!
//! and prints the server's RSS idle and after the rollout (the controller
//! manager's caches are most of the growth).
//!
//!     cargo build --release -p rkube && cargo bench -p rkube --bench controllers
//!
//! BENCH_SCALE=0.1 shrinks replicas and nodes for a quick run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("rkube")
}

async fn client_for(kubeconfig: &std::path::Path) -> Option<Client> {
    let kc = Kubeconfig::read_from(kubeconfig).ok()?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .ok()?;
    let client = Client::try_from(config).ok()?;
    client.apiserver_version().await.ok()?;
    Some(client)
}

/// Waits until the Deployment reports `replicas` updated and available
/// pods and no old ones.
async fn wait_rolled_out(
    api: &Api<Deployment>,
    name: &str,
    replicas: i32,
    deadline: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < deadline {
        if let Ok(d) = api.get(name).await {
            let gen = d.metadata.generation.unwrap_or(0);
            if let Some(s) = d.status {
                if s.observed_generation.unwrap_or(0) >= gen
                    && s.updated_replicas.unwrap_or(0) == replicas
                    && s.available_replicas.unwrap_or(0) == replicas
                    && s.replicas.unwrap_or(0) == replicas
                {
                    return Some(t0.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let replicas = scaled(1000) as i32;
    let nodes = scaled(100);
    let bin = binary();
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release -p rkube ({})",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Proc(
        Command::new(&bin)
            .args([
                "server",
                "--disable-agent",
                "--disable-ingress",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--https-listen-port={port}"))
            .arg(format!(
                "--data-dir={}",
                dir.path().join("server").display()
            ))
            .env("RKUBE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let kubeconfig = dir.path().join("server/kubeconfig.yaml");
    let mut client = None;
    for _ in 0..300 {
        if let Some(c) = client_for(&kubeconfig).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.expect("server did not start");
    let token = std::fs::read_to_string(dir.path().join("server/server/node-token")).unwrap();
    let _agent = Proc(
        Command::new(&bin)
            .args(["agent", "--node-name=sim"])
            .arg(format!("--server=https://127.0.0.1:{port}"))
            .arg(format!("--token={}", token.trim()))
            .arg(format!("--simulated-nodes={nodes}"))
            .arg(format!("--data-dir={}", dir.path().join("agent").display()))
            .env("RKUBE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let t0 = Instant::now();
    while node_api
        .list(&Default::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
        < nodes
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "nodes did not register"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = server.0.id();
    let idle = rss_mib(pid);

    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/app:1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
            }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let create = wait_rolled_out(&api, "bench", replicas, Duration::from_secs(600)).await;
    let after_create = rss_mib(pid);
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.local/app:2"}]}}}});
    api.patch("bench", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let update = wait_rolled_out(&api, "bench", replicas, Duration::from_secs(600)).await;
    let after_update = rss_mib(pid);

    let secs = |d: Option<Duration>| {
        d.map_or("did not finish in 600 s".to_owned(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!("controller manager benchmark (rkube server + {nodes} simulated nodes, SQLite)");
    println!(
        "{:<58} {}",
        format!("Deployment of {replicas} replicas: created -> all available"),
        secs(create)
    );
    println!(
        "{:<58} {}",
        format!("rolling update of {replicas} replicas -> all new available"),
        secs(update)
    );
    println!(
        "{:<58} {:.1} MiB",
        "server RSS (API server + controllers + scheduler), idle", idle
    );
    println!(
        "{:<58} {:.1} MiB",
        format!("server RSS after creating {replicas} pods"),
        after_create
    );
    println!(
        "{:<58} {:.1} MiB",
        "server RSS after the rolling update", after_update
    );
}
