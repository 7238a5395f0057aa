//! API server benchmark: starts the real `rkube server --disable-agent`
//! (release build) on a temporary data dir and drives it with kube-rs.
//! Prints requests/s and p50/p99 for create, get, update and list (1k and
//! 10k pods), mutating requests paced at 500/s, watch delivery latency to 1,000 watchers, and the server's
//! RSS idle and holding 10k pods.
//!
//!     cargo bench -p rkube --bench apiserver
//!
//! BENCH_SCALE=0.1 shrinks the counts, for a quick check that the bench
//! still runs (CI does not run benches).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `RssAnon`, `RssFile`) in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// RSS with its anonymous (heap, stacks) and file-backed (the binary's
/// pages) parts.
fn rss(pid: u32) -> String {
    format!(
        "{:.1} MiB (anon {:.1}, file {:.1})",
        status_mib(pid, "VmRSS"),
        status_mib(pid, "RssAnon"),
        status_mib(pid, "RssFile")
    )
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/app:1.0",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "ports": [{"containerPort": 8080}], "env": [{"name": "MODE", "value": "bench"}]}]},
    }))
    .unwrap()
}

struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    // Benches build in release; the binary sits next to the bench's deps dir.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("rkube")
}

async fn start() -> (Server, Client) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = binary();
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release -p rkube ({})",
        bin.display()
    );
    let child = Command::new(bin)
        .args([
            "server",
            "--disable-agent",
            "--disable-controller-manager",
            "--disable-scheduler",
            "--disable-ingress",
            "--bind-address=127.0.0.1",
        ])
        .arg(format!("--https-listen-port={port}"))
        .arg(format!("--data-dir={}", dir.path().display()))
        .env("RKUBE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let server = Server { child, _dir: dir };
    for _ in 0..200 {
        if kubeconfig.exists() {
            if let Ok(kc) = Kubeconfig::read_from(&kubeconfig) {
                let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                    .await
                    .unwrap();
                let client = Client::try_from(config).unwrap();
                if client.apiserver_version().await.is_ok() {
                    return (server, client);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// Runs `n` requests from `concurrency` tasks; returns (req/s, sorted latencies).
async fn load<F, Fut>(n: usize, concurrency: usize, f: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (c..n).step_by(concurrency) {
                    let t = Instant::now();
                    f(i).await;
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let (server, client) = start().await;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss(pid);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut rows: Vec<(String, String)> = Vec::new();
    let report = |rows: &mut Vec<(String, String)>, name: &str, rate: f64, lat: &[Duration]| {
        rows.push((
            name.to_owned(),
            format!(
                "{rate:>8.0} req/s   p50 {:>9}   p99 {:>9}",
                ms(pct(lat, 0.5)),
                ms(pct(lat, 0.99))
            ),
        ));
    };

    let n = scaled(1000);
    let api = pods.clone();
    let (rate, lat) = load(n, 16, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &pod(&format!("p-{i:05}")))
                .await
                .unwrap();
        }
    })
    .await;
    report(
        &mut rows,
        &format!("create pod (16 clients, {n})"),
        rate,
        &lat,
    );

    let api = pods.clone();
    let (rate, lat) = load(n, 16, move |i| {
        let api = api.clone();
        async move {
            api.get(&format!("p-{i:05}")).await.unwrap();
        }
    })
    .await;
    report(&mut rows, &format!("get pod (16 clients, {n})"), rate, &lat);

    let api = pods.clone();
    let (rate, lat) = load(n, 16, move |i| {
        let api = api.clone();
        async move {
            let mut p = api.get(&format!("p-{i:05}")).await.unwrap();
            p.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("updated".into(), "yes".into());
            api.replace(&format!("p-{i:05}"), &PostParams::default(), &p)
                .await
                .unwrap();
        }
    })
    .await;
    report(
        &mut rows,
        &format!("get+update pod (16 clients, {n})"),
        rate,
        &lat,
    );

    // Mutating requests at a fixed rate (open loop: each request starts on
    // its schedule, whatever the ones before it do, and its latency counts
    // from that moment): every 6 ms one create, one merge patch of the pod
    // created 50 ticks before, one delete of the pod created 100 ticks
    // before — 500 requests/s.
    let ticks = scaled(1700).max(150);
    let tick = Duration::from_millis(6);
    let t0 = tokio::time::Instant::now();
    let mut paced = Vec::new();
    for k in 0..ticks {
        let due = t0 + tick * k as u32;
        tokio::time::sleep_until(due).await;
        let mut ops = vec![(0, k)];
        if k >= 50 {
            ops.push((1, k - 50));
        }
        if k >= 100 {
            ops.push((2, k - 100));
        }
        for (op, target) in ops {
            let api = pods.clone();
            paced.push(tokio::spawn(async move {
                let name = format!("r-{target:05}");
                match op {
                    0 => {
                        api.create(&PostParams::default(), &pod(&name))
                            .await
                            .unwrap();
                    }
                    1 => {
                        let patch = serde_json::json!({"metadata": {"labels": {"patched": "yes"}}});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .unwrap();
                    }
                    _ => {
                        api.delete(&name, &DeleteParams::default().grace_period(0))
                            .await
                            .unwrap();
                    }
                }
                due.elapsed()
            }));
        }
    }
    let sent = paced.len();
    let mut lat = Vec::with_capacity(sent);
    for h in paced {
        lat.push(h.await.unwrap());
    }
    let rate = sent as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    report(
        &mut rows,
        &format!("create/patch/delete paced at 500/s ({sent})"),
        rate,
        &lat,
    );
    for k in ticks.saturating_sub(100)..ticks {
        let _ = pods
            .delete(
                &format!("r-{k:05}"),
                &DeleteParams::default().grace_period(0),
            )
            .await;
    }

    let api = pods.clone();
    let lists = scaled(20).max(3);
    let (rate, lat) = load(lists, 2, move |_| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default()).await.unwrap();
        }
    })
    .await;
    report(&mut rows, &format!("list {n} pods"), rate, &lat);

    // Watch delivery to 1,000 watchers.
    let watchers = scaled(1000);
    let events = scaled(50).max(5);
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let base = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let api = pods.clone();
        let rv = rv.clone();
        handles.push(tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().labels("watch=me").timeout(120), &rv)
                .await
                .unwrap()
                .boxed();
            let mut lat = Vec::new();
            while lat.len() < events {
                match stream.try_next().await.unwrap() {
                    Some(WatchEvent::Added(p)) => {
                        let sent: u128 = p.metadata.annotations.unwrap()["sent"].parse().unwrap();
                        lat.push(base.elapsed() - Duration::from_nanos(sent as u64));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..events {
        let mut p = pod(&format!("w-{i:04}"));
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("watch".into(), "me".into());
        p.metadata.annotations =
            Some([("sent".to_owned(), base.elapsed().as_nanos().to_string())].into());
        pods.create(&PostParams::default(), &p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    lat.sort();
    rows.push((
        format!("watch delivery ({watchers} watchers, {events} events)"),
        format!(
            "{} deliveries          p50 {:>9}   p99 {:>9}",
            lat.len(),
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99))
        ),
    ));

    // 10k pods: list and memory.
    let big = scaled(10_000);
    let api = pods.clone();
    load(big.saturating_sub(n), 16, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &pod(&format!("q-{i:05}")))
                .await
                .unwrap();
        }
    })
    .await;
    let api = pods.clone();
    let (rate, lat) = load(3, 1, move |_| {
        let api = api.clone();
        async move {
            api.list(&ListParams::default()).await.unwrap();
        }
    })
    .await;
    report(&mut rows, &format!("list {big} pods"), rate, &lat);
    let api = pods.clone();
    let (rate, lat) = load(3, 1, move |_| {
        let api = api.clone();
        async move {
            let mut lp = ListParams::default().limit(500);
            loop {
                let page = api.list(&lp).await.unwrap();
                match page.metadata.continue_ {
                    Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                    _ => break,
                }
            }
        }
    })
    .await;
    report(
        &mut rows,
        &format!("list {big} pods in pages of 500"),
        rate,
        &lat,
    );
    let full_rss = rss(pid);

    println!();
    println!("API server benchmark (rkube server, API server alone, SQLite)");
    for (name, figures) in rows {
        println!("{name:<44} {figures}");
    }
    println!("{:<44} {idle_rss}", "server RSS idle");
    println!(
        "{:<44} {full_rss}",
        format!("server RSS holding {big} pods (+watch cache)")
    );
}
