//! Service proxy data-path benchmark (issue 7): TCP connections per second
//! to a pod through its Service's ClusterIP, next to the same pod by its
//! pod IP. The ratio is the proxy's overhead (nftables DNAT on the
//! connection's first packet, conntrack after).
//!
//! Starts the release `rkube server` with its local node (containerd,
//! runc, CNI bridge, the service proxy and network policy on nftables) on
//! a temp data dir, with a bridge, pod range and service range of its own;
//! creates one busybox `httpd` pod behind a ClusterIP Service, waits until
//! the ClusterIP answers, then from the host (the proxy's nat output chain
//! takes host-originated connections) opens connections for a fixed time:
//! connect, `GET /`, read the whole answer (a 200 with "ok"), close. With
//! one worker (per-connection latency) and with BENCH_WORKERS at once
//! (throughput), each against the pod IP and the ClusterIP in turn,
//! BENCH_ROUNDS times alternating (so background load on a shared machine
//! hits both alike). Prints conn/s, latency and the ratios.
//!
//! The server is the same both ways: busybox httpd forks a child per
//! connection, which bounds the rate far below what the kernel's
//! forwarding could do, and the client runs on the same cores. The ratio
//! is the figure to read, not the absolute rate.
//!
//! Needs root, containerd, runc, ctr, busybox-static, the CNI plugins and
//! nft; prints "skipping: ..." and exits 0 without them. Everything it
//! starts is stopped and removed at the end (pods, processes, mounts, its
//! bridge, its nftables tables, its temp dir), also when it fails half way.
//!
//!     bench/net.sh
//!     # or: cargo build --release -p rkube && cargo bench -p rkube --bench net
//!
//! BENCH_SECONDS (5 per round), BENCH_WORKERS (4), BENCH_ROUNDS (2).
//! BENCH_TARGETS=POD_IP:PORT,CLUSTER_IP:PORT runs the load alone against
//! an existing cluster's pod and Service (an HTTP server on both).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

const NODE: &str = "net-bench";

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

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why a real node with the service proxy cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root (the node runs containerd, CNI and nftables)".into());
    }
    for tool in ["containerd", "runc", "ctr", "busybox", "ip", "nft"] {
        if !succeeds("sh", &["-c", &format!("command -v {tool}")]) {
            return Some(format!("{tool} is not installed (scripts/setup)"));
        }
    }
    if !succeeds("nft", &["list", "tables"]) {
        return Some("nft is not usable here".into());
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins are not installed (containernetworking-plugins)".into());
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one connection's load round saw.
#[derive(Default)]
struct Load {
    /// Per completed connection: connect, request, whole answer, close.
    latencies: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
    took: Duration,
}

impl Load {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

/// One connection: the answer must be a 200 with body "ok".
fn one(addr: SocketAddr, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    s.read_to_end(buf).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(buf);
    let status_ok = text.lines().next().is_some_and(|l| l.contains(" 200 "));
    if !status_ok || text.split("\r\n\r\n").nth(1).map(str::trim) != Some("ok") {
        return Err(format!("answer: {:?}", text.lines().next()));
    }
    Ok(())
}

/// `workers` threads opening connections to `addr` for `limit`.
fn load(addr: SocketAddr, workers: usize, limit: Duration) -> Load {
    let start = Instant::now();
    let deadline = start + limit;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            std::thread::spawn(move || {
                let mut l = Load::default();
                let mut buf = Vec::with_capacity(512);
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    match one(addr, &mut buf) {
                        Ok(()) => l.latencies.push(t0.elapsed()),
                        Err(e) => {
                            l.errors += 1;
                            l.first_error.get_or_insert(e);
                        }
                    }
                }
                l
            })
        })
        .collect();
    let mut all = Load::default();
    for h in handles {
        let l = h.join().unwrap();
        all.latencies.extend(l.latencies);
        all.errors += l.errors;
        if all.first_error.is_none() {
            all.first_error = l.first_error;
        }
    }
    all.took = start.elapsed();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

fn conntrack_count() -> String {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into())
}

/// The rounds against both targets, and the figures.
fn measure(pod: SocketAddr, service: SocketAddr) {
    let limit = Duration::from_secs(count("BENCH_SECONDS", 5) as u64);
    let workers = count("BENCH_WORKERS", 4);
    let rounds = count("BENCH_ROUNDS", 2);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "service proxy benchmark: TCP connections from the host (connect, GET /, read the answer, close), \
         {} s per round, {rounds} rounds alternating; {cores} cores shared by client, server and kernel",
        limit.as_secs()
    );
    println!("  pod IP    {pod}\n  ClusterIP {service}");
    println!("  server: busybox httpd in the pod, one forked child per connection");
    // Warm up both paths (not counted).
    load(pod, workers, Duration::from_secs(1));
    load(service, workers, Duration::from_secs(1));
    println!(
        "  {:<28} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "", "conn/s", "p50", "p99", "max", "errors"
    );
    for w in [1, workers] {
        let mut pod_runs = Vec::new();
        let mut svc_runs = Vec::new();
        for _ in 0..rounds {
            pod_runs.push(load(pod, w, limit));
            svc_runs.push(load(service, w, limit));
        }
        let summary = |what: &str, runs: Vec<Load>| {
            let mut lat: Vec<Duration> = runs.iter().flat_map(|l| l.latencies.clone()).collect();
            lat.sort();
            let n = lat.len();
            let took: Duration = runs.iter().map(|l| l.took).sum();
            let errors: usize = runs.iter().map(|l| l.errors).sum();
            let rates: Vec<String> = runs.iter().map(|l| format!("{:.0}", l.rate())).collect();
            let rate = n as f64 / took.as_secs_f64();
            println!(
                "  {:<28} {:>10.0} {:>10} {:>10} {:>10} {:>7}   (rounds: {})",
                format!("{what}, {w} worker{}", if w == 1 { "" } else { "s" }),
                rate,
                us(percentile(&lat, 50.0)),
                us(percentile(&lat, 99.0)),
                us(lat.last().copied().unwrap_or_default()),
                errors,
                rates.join(", ")
            );
            if let Some(e) = runs.iter().find_map(|l| l.first_error.clone()) {
                println!("    first error: {e}");
            }
            (rate, percentile(&lat, 50.0))
        };
        let (pod_rate, pod_p50) = summary("pod IP", pod_runs);
        let (svc_rate, svc_p50) = summary("ClusterIP", svc_runs);
        println!(
            "  {:<28} {:>9.3}x conn/s (ClusterIP / pod IP), p50 latency {:+.0} us ({:.3}x)",
            format!("ratio, {w} worker{}", if w == 1 { "" } else { "s" }),
            svc_rate / pod_rate.max(1e-9),
            svc_p50.as_secs_f64() * 1e6 - pod_p50.as_secs_f64() * 1e6,
            svc_p50.as_secs_f64() / pod_p50.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "  conntrack entries on the host after the rounds: {}",
        conntrack_count()
    );
}

/// A child process, stopped with SIGTERM (then SIGKILL after 15 s).
struct Proc(Child);

impl Proc {
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

/// Kills the local node's containers (through its own containerd), then
/// every process with the work dir on its command line (containerd, the
/// runc shims).
fn reap(work: &Path) {
    let sock = work.join("data/agent/containerd/containerd.sock");
    if sock.exists() {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&sock)
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
    let needle = work.display().to_string();
    let me = std::process::id();
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
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// Removes what the run leaves behind, also after a panic; dropped after
/// the server process.
struct Leftovers {
    work: PathBuf,
    bridge: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        reap(&self.work);
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
        for (family, table) in [("ip", "proxy"), ("ip", "policy"), ("bridge", "policy")] {
            let _ = Command::new("nft")
                .args([
                    "delete",
                    "table",
                    family,
                    &format!("{}-{table}", self.bridge),
                ])
                .stderr(Stdio::null())
                .status();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.work) {
            eprintln!("could not remove {}: {e}", self.work.display());
        }
    }
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

fn objects() -> (Pod, Service) {
    let pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "labels": {"app": "net-bench"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "web",
                "image": "busybox:stable",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
            }]
        }
    }))
    .unwrap();
    let svc = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "net-bench"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
        }
    }))
    .unwrap();
    (pod, svc)
}

/// Polls `f` every 200 ms for at most `secs`.
async fn eventually<T, F>(secs: u64, mut f: impl FnMut() -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Creates the pod and Service; the pod IP and ClusterIP addresses once
/// the ClusterIP answers from the host.
async fn set_up(client: &Client, work: &Path) -> (SocketAddr, SocketAddr) {
    let log = || std::fs::read_to_string(work.join("server.log")).unwrap_or_default();
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = eventually(120, || async {
        let n = nodes.get(NODE).await.ok()?;
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
        (ready && !tainted).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "node {NODE} not Ready in 120 s:\n{}",
        log()
    );

    let (pod, svc) = objects();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let svc = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create service");
    let cluster_ip = svc
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP allocated");
    let pod_ip = eventually(120, || async {
        let p = pods.get("web").await.ok()?;
        let st = p.status?;
        let ready = st
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(st.pod_ip?)
    })
    .await
    .unwrap_or_else(|| panic!("pod web not Ready in 120 s:\n{}", log()));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    eventually(60, || async {
        let l = slices.list(&lp).await.ok()?;
        l.items
            .iter()
            .flat_map(|s| &s.endpoints)
            .any(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .then_some(())
    })
    .await
    .expect("a ready endpoint in 60 s");
    let pod_addr: SocketAddr = format!("{pod_ip}:8080").parse().unwrap();
    let svc_addr: SocketAddr = format!("{cluster_ip}:80").parse().unwrap();
    for (what, addr) in [("pod IP", pod_addr), ("ClusterIP", svc_addr)] {
        let answered = eventually(60, || async move {
            tokio::task::spawn_blocking(move || one(addr, &mut Vec::new()).ok())
                .await
                .ok()
                .flatten()
        })
        .await;
        assert!(
            answered.is_some(),
            "no answer on the {what} {addr} in 60 s (last: {:?}):\n{}",
            one(addr, &mut Vec::new()),
            log()
        );
    }
    (pod_addr, svc_addr)
}

fn targets_from_env() -> Option<(SocketAddr, SocketAddr)> {
    let t = std::env::var("BENCH_TARGETS").ok()?;
    let (pod, svc) = t
        .split_once(',')
        .expect("BENCH_TARGETS=POD_IP:PORT,CLUSTER_IP:PORT");
    Some((
        pod.trim().parse().expect("BENCH_TARGETS: pod address"),
        svc.trim()
            .parse()
            .expect("BENCH_TARGETS: ClusterIP address"),
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Some((pod, svc)) = targets_from_env() {
        tokio::task::spawn_blocking(move || measure(pod, svc))
            .await
            .unwrap();
        return;
    }
    if let Some(why) = missing_prerequisite() {
        println!("skipping: {why}");
        return;
    }
    let bin = binary();
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release -p rkube ({})",
        bin.display()
    );
    let port = free_port();
    let work = std::env::temp_dir().join(format!("rkube-net-bench-{}", std::process::id()));
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let leftovers = Leftovers {
        work: work.clone(),
        bridge: format!("rkn{port}"),
    };

    // The test images, in the local node's import folder.
    let built = Command::new(repo_root().join("scripts/build-test-images"))
        .arg(data.join("agent/images"))
        .output()
        .expect("run scripts/build-test-images");
    assert!(
        built.status.success(),
        "build-test-images failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );

    let log = std::fs::File::create(work.join("server.log")).unwrap();
    let mut server = Proc(
        Command::new(&bin)
            .args([
                "server",
                "--disable-ingress",
                "--bind-address=127.0.0.1",
                "--pod-masquerade=false",
                "--kubelet-port=0",
            ])
            .arg(format!("--node-name={NODE}"))
            .arg(format!("--https-listen-port={port}"))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--cni-bridge={}", leftovers.bridge))
            // A build machine's disk filling up with artifacts must not
            // put the bench node under DiskPressure (default 5%).
            .arg("--eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%")
            // A pod range and a ClusterIP range of its own (as the
            // integration tests pick theirs: from the port).
            .arg(format!(
                "--cluster-cidr=10.{}.{}.0/24",
                port >> 8,
                port & 0xff
            ))
            .arg(format!(
                "--service-cidr=100.{}.{}.{}/27",
                64 + (port >> 11),
                (port >> 3) & 0xff,
                (port & 7) << 5
            ))
            .env("RKUBE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rkube server"),
    );
    let kubeconfig = data.join("kubeconfig.yaml");
    let client = eventually(30, || client_for(&kubeconfig))
        .await
        .expect("rkube server did not start in 30 s (see its log)");

    let result = AssertUnwindSafe(async {
        let (pod, svc) = set_up(&client, &work).await;
        tokio::task::spawn_blocking(move || measure(pod, svc))
            .await
            .unwrap();
    })
    .catch_unwind()
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let _ = pods.delete("web", &DeleteParams::default()).await;
    let _ = eventually(30, || async {
        pods.get("web").await.is_err().then_some(())
    })
    .await;
    server.stop();
    drop(leftovers);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
