//! Node agent benchmark (issue 6): pod startup latency on a real node
//! (containerd, runc, CNI bridge; image present), next to what containerd
//! alone needs to start the same container, and the agent's memory.
//!
//! Starts the release `rkube server --disable-agent` (API server,
//! controllers, scheduler) and a separate `rkube agent` process with its own
//! containerd, the test images imported from its image folder, then
//!   - times `ctr run -d` of busybox `sleep 3600` against the agent's
//!     containerd socket (namespace k8s.io), 20 times one after another,
//!     then 50 at once;
//!   - times 50 pods (the same image and command) from the create call to
//!     the watch event showing phase Running, created one after another
//!     (each once the previous one runs), then 50 created at once, and
//!     prints the ratios of the medians (pod / ctr): rkube's overhead over
//!     containerd alone (a pod also gets a sandbox and its network);
//!   - prints the agent process's RSS with the node idle, with 50 pods
//!     running, and after they are deleted (its containerd and the shims
//!     are other processes, printed in their own columns).
//!
//! Needs root, containerd, runc, ctr, busybox-static and the CNI plugins;
//! prints "skipping: ..." and exits 0 without them. Everything it starts is
//! stopped and removed at the end (pods, containers, processes, its pod
//! bridge, its temp dir), also when it fails half way.
//!
//!     bench/agent.sh
//!     # or: cargo build --release -p rkube && cargo bench -p rkube --bench agent
//!
//! BENCH_PODS=N changes the 50 pods per round, BENCH_CTR=N the 20 ctr runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use tokio::sync::watch;

const BUSYBOX: &str = "docker.io/library/busybox:stable";
const NODE: &str = "agent-bench";
const LABEL: &str = "rkube-bench=agent";

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("rkube")
}

/// Why a real node cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (the agent runs containerd and sets up CNI)".into());
    }
    for tool in ["containerd", "runc", "ctr", "busybox", "ip"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{tool} is not installed (scripts/setup)"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins are not installed (containernetworking-plugins)".into());
    }
    None
}

/// Resident memory of a process, MiB (0 when it is gone).
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Processes whose command line contains `needle`: (pid, argv[0], args).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Proportional set size of a process, MiB: its share of pages it
/// shares with others (the shims share their binary), 0 when it is gone.
fn pss_mib(pid: u32) -> f64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Total RSS and PSS (MiB) and count of the processes whose command line
/// contains `needle` and whose program is `program`.
fn memory_of(needle: &str, program: &str) -> (f64, f64, usize) {
    let ps: Vec<u32> = processes_with(needle)
        .into_iter()
        .filter(|(_, cmd)| {
            cmd.split_whitespace()
                .next()
                .is_some_and(|p| p.rsplit('/').next() == Some(program))
        })
        .map(|(pid, _)| pid)
        .collect();
    (
        ps.iter().fold(0.0, |sum, &p| sum + rss_mib(p)),
        ps.iter().fold(0.0, |sum, &p| sum + pss_mib(p)),
        ps.len(),
    )
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// p50/p90/p99/max of `samples` on one line.
fn summary(samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort();
    format!(
        "p50 {:>7}  p90 {:>7}  p99 {:>7}  max {:>7}  (n={})",
        ms(percentile(&s, 50.0)),
        ms(percentile(&s, 90.0)),
        ms(percentile(&s, 99.0)),
        ms(s.last().copied().unwrap_or_default()),
        s.len()
    )
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    percentile(&s, 50.0)
}

/// A child process, stopped with SIGTERM (then SIGKILL after 15 s) when
/// dropped.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes what the run leaves behind, also after a panic: containers
/// still in the agent's containerd, processes started with the work dir on
/// their command line (containerd, shims), mounts under the work dir, the
/// pod bridge, the work dir. Dropped after the processes.
struct Leftovers {
    work: PathBuf,
    bridge: String,
}

impl Leftovers {
    fn socket(&self) -> PathBuf {
        self.work.join("agent/agent/containerd/containerd.sock")
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        kill_tasks(&self.socket());
        for (pid, _) in processes_with(&self.work.display().to_string()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // Mounts the killed runtime left (rootfs, shm), deepest first.
        let prefix = self.work.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Err(e) = std::fs::remove_dir_all(&self.work) {
            eprintln!("could not remove {}: {e}", self.work.display());
        }
    }
}

/// Kills every task the agent's containerd runs (while it still runs):
/// what pods or `ctr run` left.
fn kill_tasks(sock: &Path) {
    if !sock.exists() {
        return;
    }
    let ctr = |args: &[&str]| {
        Command::new("timeout")
            .arg("20")
            .arg("ctr")
            .arg("--address")
            .arg(sock)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stderr(Stdio::null())
            .output()
    };
    if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = ctr(&["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn client_for(kubeconfig: &Path) -> Option<Client> {
    let kc = Kubeconfig::read_from(kubeconfig).ok()?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .ok()?;
    let client = Client::try_from(config).ok()?;
    client.apiserver_version().await.ok()?;
    Some(client)
}

/// `ctr` against the agent's containerd, at most 60 s.
async fn ctr(sock: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    let run = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["--namespace", "k8s.io"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other(format!("ctr {args:?} timed out"))))
}

/// Times `ctr run -d` of busybox `sleep 3600`, `n` times, one after
/// another or all at once; then removes the containers. The latencies and
/// the time until the last one returned.
async fn ctr_round(
    sock: &Path,
    snapshotter: &str,
    prefix: &str,
    n: usize,
    at_once: bool,
) -> (Vec<Duration>, Duration) {
    let snap = format!("--snapshotter={snapshotter}");
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let run = |id: &str| {
        let (snap, id) = (snap.clone(), id.to_owned());
        async move {
            let t0 = Instant::now();
            let out = ctr(sock, &["run", "-d", &snap, BUSYBOX, &id, "sleep", "3600"]).await;
            (t0.elapsed(), out)
        }
    };
    let start = Instant::now();
    let results = if at_once {
        futures::future::join_all(ids.iter().map(|id| run(id))).await
    } else {
        let mut results = Vec::new();
        for id in &ids {
            results.push(run(id).await);
        }
        results
    };
    let total = start.elapsed();
    futures::future::join_all(ids.iter().map(|id| async move {
        let _ = ctr(sock, &["tasks", "kill", "--signal", "SIGKILL", id]).await;
        let _ = ctr(sock, &["tasks", "delete", "--force", id]).await;
        let _ = ctr(sock, &["containers", "delete", id]).await;
    }))
    .await;
    let mut times = Vec::new();
    for (took, out) in results {
        let out = out.expect("run ctr");
        assert!(
            out.status.success(),
            "ctr run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        times.push(took);
    }
    (times, total)
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"rkube-bench": "agent"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c",
                "image": "busybox:stable",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"]
            }]
        }
    }))
    .unwrap()
}

/// When each bench pod was first seen Running by a watch, by name.
type Running = watch::Receiver<HashMap<String, Instant>>;

/// Watches the bench pods; returns once the watch has listed.
async fn watch_running(api: Api<Pod>) -> Running {
    let (tx, rx) = watch::channel(HashMap::new());
    let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut listed = Some(listed_tx);
        let mut events = watcher(api, watcher::Config::default().labels(LABEL)).boxed();
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                Ok(watcher::Event::InitDone) => {
                    if let Some(l) = listed.take() {
                        let _ = l.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            let now = Instant::now();
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let name = pod.metadata.name.clone().unwrap_or_default();
            if running {
                tx.send_if_modified(|m| {
                    if m.contains_key(&name) {
                        return false;
                    }
                    m.insert(name, now);
                    true
                });
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(30), listed_rx).await;
    rx
}

/// Waits (at most `limit`) until the pod is seen Running; when it was.
async fn running_at(running: &mut Running, name: &str, limit: Duration) -> Option<Instant> {
    let seen = tokio::time::timeout(limit, running.wait_for(|m| m.contains_key(name))).await;
    match seen {
        Ok(Ok(m)) => m.get(name).copied(),
        _ => None,
    }
}

/// Deletes the bench pods and waits (at most 180 s) until they are gone.
async fn delete_pods(api: &Api<Pod>) -> Option<Duration> {
    let t0 = Instant::now();
    let lp = ListParams::default().labels(LABEL);
    let _ = api.delete_collection(&DeleteParams::default(), &lp).await;
    while t0.elapsed() < Duration::from_secs(180) {
        match api.list(&lp).await {
            Ok(l) if l.items.is_empty() => return Some(t0.elapsed()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    None
}

/// Creates the pods named `prefix-0..n` one after another, each once the
/// previous one runs; their create -> Running latencies.
async fn sequential_round(
    api: &Api<Pod>,
    running: &mut Running,
    prefix: &str,
    n: usize,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        let t0 = Instant::now();
        api.create(&PostParams::default(), &pod(&name))
            .await
            .expect("create pod");
        match running_at(running, &name, Duration::from_secs(120)).await {
            Some(at) => times.push(at.saturating_duration_since(t0)),
            None => {
                println!("pod {name} not Running within 120 s; round stopped");
                break;
            }
        }
    }
    times
}

/// Creates `n` pods at once; their create -> Running latencies and the
/// time until the last one ran.
async fn burst_round(
    api: &Api<Pod>,
    running: &mut Running,
    prefix: &str,
    n: usize,
) -> (Vec<Duration>, Option<Duration>) {
    let start = Instant::now();
    let creates = (0..n).map(|i| {
        let api = api.clone();
        let name = format!("{prefix}-{i}");
        async move {
            let t0 = Instant::now();
            api.create(&PostParams::default(), &pod(&name))
                .await
                .expect("create pod");
            (name, t0)
        }
    });
    let created: Vec<(String, Instant)> = futures::future::join_all(creates).await;
    let mut times = Vec::new();
    let mut last = None;
    for (name, t0) in &created {
        let left = Duration::from_secs(180).saturating_sub(start.elapsed());
        match running_at(running, name, left).await {
            Some(at) => {
                times.push(at.saturating_duration_since(*t0));
                last = last.max(Some(at.saturating_duration_since(start)));
            }
            None => {
                println!("pod {name} not Running within 180 s of the burst");
                return (times, None);
            }
        }
    }
    (times, last)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Some(why) = missing_prerequisite() {
        println!("skipping: {why}");
        return;
    }
    let pods = count("BENCH_PODS", 50);
    let ctr_runs = count("BENCH_CTR", 20);
    let bin = binary();
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release -p rkube ({})",
        bin.display()
    );
    let port = free_port();
    let work = std::env::temp_dir().join(format!("rkube-agent-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let leftovers = Leftovers {
        work: work.clone(),
        bridge: format!("rkb{port}"),
    };

    // The test images, in the agent's import folder.
    let images = work.join("agent/agent/images");
    let built = Command::new(repo_root().join("scripts/build-test-images"))
        .arg(&images)
        .output()
        .expect("run scripts/build-test-images");
    assert!(
        built.status.success(),
        "build-test-images failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let log = |name: &str| std::fs::File::create(work.join(name)).unwrap();
    let mut server = Proc(
        Command::new(&bin)
            .args([
                "server",
                "--disable-agent",
                "--disable-ingress",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--https-listen-port={port}"))
            .arg(format!("--data-dir={}", work.join("server").display()))
            // A pod range of its own (nodeipam gives the node all of it).
            .arg(format!(
                "--cluster-cidr=10.{}.{}.0/24",
                port >> 8,
                port & 0xff
            ))
            .env("RKUBE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("server.log"))
            .spawn()
            .expect("start rkube server"),
    );
    let kubeconfig = work.join("server/kubeconfig.yaml");
    let mut client = None;
    for _ in 0..600 {
        if let Some(c) = client_for(&kubeconfig).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.expect("rkube server did not start in 30 s (see its log)");
    let token = std::fs::read_to_string(work.join("server/server/node-token")).unwrap();

    let help = Command::new(&bin)
        .args(["agent", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut agent = Proc(
        Command::new(&bin)
            .arg("agent")
            .arg(format!("--server=https://127.0.0.1:{port}"))
            .arg(format!("--token={}", token.trim()))
            .arg(format!("--data-dir={}", work.join("agent").display()))
            .arg(format!("--node-name={NODE}"))
            .arg(format!("--cni-bridge={}", leftovers.bridge))
            .arg("--pod-masquerade=false")
            .arg("--kubelet-port=0")
            // Only the agent's own work in its RSS, where the agent can
            // leave Services to another proxy.
            .args(
                help.contains("--disable-proxy")
                    .then_some("--disable-proxy"),
            )
            // A build machine's disk filling up with artifacts must not
            // put the bench node under DiskPressure (default 5%).
            .args(help.contains("--eviction-hard").then_some(
                "--eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%",
            ))
            .env("RKUBE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log("agent.log"))
            .spawn()
            .expect("start rkube agent"),
    );

    // Ready, and schedulable (the not-ready taint gone).
    let nodes: Api<Node> = Api::all(client.clone());
    let t0 = Instant::now();
    let ready = loop {
        if let Ok(n) = nodes.get(NODE).await {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| t.iter().any(|t| t.key == "node.kubernetes.io/not-ready"));
            if ready && !tainted {
                break true;
            }
        }
        if t0.elapsed() > Duration::from_secs(120) || agent.0.try_wait().ok().flatten().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !ready {
        panic!(
            "node {NODE} not Ready within 120 s; agent log:\n{}",
            std::fs::read_to_string(work.join("agent.log")).unwrap_or_default()
        );
    }
    let node_ready = t0.elapsed();
    let setup = Setup {
        client: client.clone(),
        agent_pid: agent.pid(),
        work: work.clone(),
        sock: leftovers.socket(),
        pods,
        ctr_runs,
        node_ready,
    };
    // A failure half way still cleans up in order: pods, containers, then
    // the processes.
    let result = AssertUnwindSafe(measure(&setup)).catch_unwind().await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    if delete_pods(&api).await.is_none() {
        eprintln!("the bench pods were not all gone after 180 s");
    }
    kill_tasks(&setup.sock);
    // Stop the agent, then the server; `leftovers` removes the rest.
    agent.stop();
    server.stop();
    drop(leftovers);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

struct Setup {
    client: Client,
    agent_pid: u32,
    work: PathBuf,
    sock: PathBuf,
    pods: usize,
    ctr_runs: usize,
    node_ready: Duration,
}

/// The measurements, printed at the end.
async fn measure(setup: &Setup) {
    let Setup {
        client,
        agent_pid,
        work,
        sock,
        pods,
        ctr_runs,
        node_ready,
    } = setup;
    let (pods, ctr_runs, node_ready) = (*pods, *ctr_runs, *node_ready);
    let config = std::fs::read_to_string(work.join("agent/agent/containerd/config.toml"))
        .unwrap_or_default();
    let snapshotter = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("snapshotter = "))
        .map(|s| s.trim_matches('"').to_owned())
        .unwrap_or_else(|| "overlayfs".to_owned());
    // containerd's command line names its config, the shims' the socket:
    // both are in the agent's containerd folder.
    let containerd_dir = sock.parent().unwrap().display().to_string();
    let memory = |pid: u32| {
        (
            rss_mib(pid),
            memory_of(&containerd_dir, "containerd").0,
            memory_of(&containerd_dir, "containerd-shim-runc-v2"),
        )
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = memory(*agent_pid);

    // containerd alone, one after another, then as many as the pod burst
    // at once.
    let (ctr_seq, _) = ctr_round(sock, &snapshotter, "bench-ctr", ctr_runs, false).await;
    let (ctr_burst, ctr_burst_all) =
        ctr_round(sock, &snapshotter, "bench-ctr-burst", pods, true).await;

    // Through rkube: create -> Running.
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut running = watch_running(api.clone()).await;
    let sequential = sequential_round(&api, &mut running, "seq", pods).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded = memory(*agent_pid);
    let deleted_seq = delete_pods(&api).await;
    let (burst, burst_all) = burst_round(&api, &mut running, "burst", pods).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let loaded_burst = memory(*agent_pid);
    let deleted_burst = delete_pods(&api).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = memory(*agent_pid);

    let version = Command::new("containerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let ratio = |ours: Duration, theirs: Duration| {
        if theirs.is_zero() || ours.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.1}x", ours.as_secs_f64() / theirs.as_secs_f64())
        }
    };
    let secs = |d: Option<Duration>| {
        d.map_or("did not finish in 180 s".to_owned(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!("node agent benchmark: 1 node, {cores} cores, {version}, snapshotter {snapshotter}");
    println!(
        "node Ready (and untainted) {:.1} s after the agent started",
        node_ready.as_secs_f64()
    );
    println!(
        "busybox `sleep 3600`, image present; client-side latency of `ctr run -d` \
         (until it returns) and of a pod (create call -> watch event with phase Running)"
    );
    println!("one after another:");
    println!(
        "  {:<30} {}",
        format!("ctr run -d ({ctr_runs})"),
        summary(&ctr_seq)
    );
    println!(
        "  {:<30} {}",
        format!("pods ({pods})"),
        summary(&sequential)
    );
    println!(
        "  {:<30} {}",
        "overhead, pod p50 / ctr p50",
        ratio(median(&sequential), median(&ctr_seq))
    );
    println!("all at once:");
    println!(
        "  {:<30} {}",
        format!("ctr run -d ({pods})"),
        summary(&ctr_burst)
    );
    println!("  {:<30} {}", format!("pods ({pods})"), summary(&burst));
    println!(
        "  {:<30} {} (ctr: {:.1} s)",
        "last one running after",
        secs(burst_all),
        ctr_burst_all.as_secs_f64()
    );
    println!(
        "  {:<30} {} (p50), {} (last one)",
        "overhead, pods / ctr",
        ratio(median(&burst), median(&ctr_burst)),
        ratio(burst_all.unwrap_or_default(), ctr_burst_all)
    );
    println!(
        "deleting {pods} pods (grace 1 s) until gone: {} (one-by-one round), {} (burst round)",
        secs(deleted_seq),
        secs(deleted_burst)
    );
    println!(
        "{:<32} {:>9} {:>14} {:>24}",
        "memory, MiB", "agent RSS", "containerd RSS", "shims RSS / PSS (count)"
    );
    for (what, (a, c, (rss, pss, n))) in [
        ("node Ready, no pods", idle),
        ("50 pods (one after another)", loaded),
        ("50 pods (created at once)", loaded_burst),
        ("all pods deleted", after),
    ] {
        let what = what.replace("50", &pods.to_string());
        let shims = format!("{rss:.1} / {pss:.1} ({n})");
        println!("{what:<32} {a:>9.1} {c:>14.1} {shims:>24}");
    }
}
