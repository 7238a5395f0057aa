//! Starts the real `rkube` binary and drives it with the real `kubectl`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// kubectl pinned to the server's minor version (the /usr/bin/kubectl
/// dispatcher would pick one from /version anyway).
pub fn kubectl_binary() -> PathBuf {
    for candidate in [
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.32",
        "/usr/bin/kubectl",
    ] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    "kubectl".into()
}

/// Polls `f` until it returns Some, at most `secs` seconds (then panics
/// naming `what`). Every wait in the tests is bounded this way.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server whose local node (real containerd) is Ready, with the test
/// images (busybox, pause) imported. Dropping it deletes the pods, so their
/// containers stop, then stops the server gracefully.
pub struct LocalNode {
    pub server: Server,
    _images: tempfile::TempDir,
    /// The data dir's own filesystem, when the test gave it one (unmounted
    /// after the server is gone).
    _data_fs: Option<Tmpfs>,
}

/// A tmpfs mounted for a test; unmounted (lazily: the runtime may still
/// hold mounts below it) and its mount point removed when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `256M`) at `path` (created); None,
    /// after printing why, where mounting fails.
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "skipping: mounting a tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        Some(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

impl LocalNode {
    /// The test images (OCI archives) the node imported: for more nodes.
    pub fn images(&self) -> &Path {
        self._images.path()
    }
}

impl std::ops::Deref for LocalNode {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl std::ops::DerefMut for LocalNode {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        if self.server.child.is_some() {
            let _ = self.server.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--all-namespaces",
                "--grace-period=1",
                "--timeout=60s",
            ]);
        }
        self.server.stop(false);
    }
}

/// `rkube server` with a local node named `node` (and `extra` flags), once
/// the node is Ready; None, after printing why, where containerd cannot run.
pub fn local_node(node: &str, extra: &[&str]) -> Option<LocalNode> {
    local_node_with(node, extra, None)
}

/// [`local_node`] with its data dir (the node filesystem: agent, runtime
/// and images) on a tmpfs of `size` of its own: a small disk a test can
/// fill. None, after printing why, where that cannot be.
pub fn local_node_on_tmpfs(node: &str, extra: &[&str], size: &str) -> Option<LocalNode> {
    local_node_with(node, extra, Some(size))
}

fn local_node_with(node: &str, extra: &[&str], tmpfs: Option<&str>) -> Option<LocalNode> {
    if let Some(why) = missing_node_prerequisite() {
        eprintln!("skipping: {why}");
        return None;
    }
    let images = tempfile::tempdir().unwrap();
    let built = Command::new(repo_root().join("scripts/build-test-images"))
        .arg(images.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-test-images failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let name = format!("--node-name={node}");
    let args: Vec<&str> = std::iter::once(name.as_str())
        .chain(extra.iter().copied())
        .collect();
    let mut data_fs = None;
    let server = Server::start_with_local_node_in(&args, images.path(), |data_dir| {
        if let Some(size) = tmpfs {
            data_fs = Some(Tmpfs::mount(data_dir, size).ok_or(())?);
        }
        Ok(())
    })?;
    eventually(90, &format!("node {node} Ready"), || {
        let out = server.kubectl(&["get", "node", node, "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    Some(LocalNode {
        server,
        _images: images,
        _data_fs: data_fs,
    })
}

/// Whether `nft` works here (the service proxy and network policies need
/// it); tests of them skip, saying so, where it does not.
pub fn nft_usable() -> bool {
    Command::new("nft")
        .args(["list", "tables"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why a real node (containerd, runc, CNI) cannot run here, if it cannot.
pub fn missing_node_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    for tool in ["containerd", "runc", "ctr", "busybox"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is not installed (scripts/setup)"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins are not installed (containernetworking-plugins)".into());
    }
    None
}

/// The hard eviction thresholds of test nodes: a build machine's disk
/// filling up with build artifacts must not put test nodes under
/// DiskPressure (rejecting every pod) even near the default 5%, so only the
/// memory threshold and nearly full disks count.
pub const TEST_EVICTION_HARD: &str =
    "--eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    extra: Vec<String>,
    local_node: bool,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// The API server alone (no controllers, no scheduler): what the API
    /// server tests check is its own behaviour.
    pub fn start() -> Server {
        Server::start_with(&["--disable-controller-manager", "--disable-scheduler"])
    }

    /// `rkube server --disable-agent` with these extra flags (controllers
    /// and scheduler run unless disabled here).
    pub fn start_with(extra: &[&str]) -> Server {
        let mut s = Server {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            local_node: false,
        };
        s.spawn();
        s
    }

    /// `rkube server` with its local node (a real agent on containerd),
    /// as `scripts/server` runs it; `images` is put in the agent's image
    /// folder first.
    pub fn start_with_local_node(extra: &[&str], images: &Path) -> Server {
        Server::start_with_local_node_in(extra, images, |_| Ok(())).unwrap()
    }

    /// [`Server::start_with_local_node`], calling `prepare` with the data
    /// dir before anything is put there (None when it fails).
    pub fn start_with_local_node_in(
        extra: &[&str],
        images: &Path,
        prepare: impl FnOnce(&Path) -> Result<(), ()>,
    ) -> Option<Server> {
        let mut s = Server {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            local_node: true,
        };
        prepare(&s.data_dir()).ok()?;
        let dest = s.data_dir().join("agent/images");
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(images).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dest.join(f.file_name().unwrap())).unwrap();
        }
        s.spawn();
        Some(s)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    /// A local node gets a bridge and pod range of its own (both derived
    /// from the port, so servers of tests running at once never share one)
    /// and does not masquerade: test pods must not reach off the machine.
    fn local_node_args(&self) -> Vec<String> {
        if !self.local_node {
            return Vec::new();
        }
        let mut args = vec![
            format!("--cni-bridge=rk{}", self.port),
            "--pod-masquerade=false".to_owned(),
            // Any free port for the streaming server: tests run side by side.
            "--kubelet-port=0".to_owned(),
        ];
        // Tests that do not test eviction: see TEST_EVICTION_HARD.
        if !self.extra.iter().any(|a| a.starts_with("--eviction-hard")) {
            args.push(TEST_EVICTION_HARD.to_owned());
        }
        if !self.extra.iter().any(|a| a.starts_with("--cluster-cidr")) {
            args.push(format!(
                "--cluster-cidr=10.{}.{}.0/24",
                self.port >> 8,
                self.port & 0xff
            ));
        }
        // The service proxies of all test servers program the same host:
        // each gets a /27 of 100.64.0.0/10 of its own for ClusterIPs.
        if !self.extra.iter().any(|a| a.starts_with("--service-cidr")) {
            args.push(format!("--service-cidr={}", self.service_cidr()));
        }
        args
    }

    /// The ClusterIP range of a local-node server (unique per port).
    pub fn service_cidr(&self) -> String {
        let p = self.port;
        format!(
            "100.{}.{}.{}/27",
            64 + (p >> 11),
            (p >> 3) & 0xff,
            (p & 7) << 5
        )
    }

    /// A NodePort no other test server picks (derived from the port).
    pub fn node_port(&self) -> u16 {
        30000 + self.port % 2768
    }

    /// The pod range the local node's pods get addresses from.
    pub fn pod_cidr(&self) -> String {
        self.local_node_args()
            .iter()
            .chain(&self.extra)
            .find_map(|a| a.strip_prefix("--cluster-cidr=").map(str::to_owned))
            .unwrap_or_else(|| "10.42.0.0/16".to_owned())
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("server")
            .args((!self.local_node).then_some("--disable-agent"))
            // Tests that want the ingress controller give it loopback
            // addresses; the rest must not all bind port 80.
            .args(
                (!self.extra.iter().any(|a| a.starts_with("--ingress-")))
                    .then_some("--disable-ingress"),
            )
            .args(self.local_node_args())
            .args(
                (!self.extra.iter().any(|a| a.starts_with("--bind-address")))
                    .then_some("--bind-address=127.0.0.1"),
            )
            .arg(format!("--https-listen-port={}", self.port))
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .args(&self.extra)
            .env("RKUBE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rkube server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("rkube server exited with {status}:\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                let out = self.kubectl(&["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("rkube server not ready in 30s:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server (SIGKILL when `hard`) and starts it again on the
    /// same data dir.
    pub fn restart(&mut self, hard: bool) {
        self.stop(hard);
        self.spawn();
    }

    pub fn stop(&mut self, hard: bool) {
        if let Some(mut child) = self.child.take() {
            if hard {
                child.kill().ok();
            } else {
                unsafe_sigterm(child.id());
            }
            child.wait().ok();
        }
    }

    pub fn kubectl_cmd(&self) -> Command {
        self.kubectl_cmd_with(&kubectl_binary())
    }

    /// A specific kubectl binary (for version-compatibility tests).
    pub fn kubectl_cmd_with(&self, binary: &Path) -> Command {
        let mut cmd = Command::new(binary);
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .stdin(Stdio::null());
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd().args(args).output().expect("run kubectl")
    }

    /// kubectl with a manifest on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test on a non-zero exit.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, input);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl expecting failure; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    #[track_caller]
    pub fn fails_stdin(&self, args: &[&str], input: &str) -> String {
        let out = self.kubectl_stdin(args, input);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&full)).unwrap()
    }

    /// A node's InternalIP, from its status.
    pub fn node_internal_ip(&self, node: &str) -> String {
        let n = self.json(&["get", "node", node]);
        n["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .unwrap_or_else(|| panic!("node {node} has no InternalIP: {n}"))
            .to_owned()
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// An `rkube agent --simulated-nodes` process joined to a [`Server`].
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    /// Starts `nodes` simulated nodes named PREFIX-0.. in their own
    /// process, joined with the server's node token.
    pub fn start_simulated_agent(&self, nodes: usize, prefix: &str) -> Agent {
        let log = self.dir.path().join(format!("agent-{prefix}.log"));
        let token = std::fs::read_to_string(self.data_dir().join("server/node-token")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .arg("agent")
            .arg(format!("--server=https://127.0.0.1:{}", self.port))
            .arg(format!("--token={}", token.trim()))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join(format!("agent-{prefix}")).display()
            ))
            .arg(format!("--simulated-nodes={nodes}"))
            .arg(format!("--node-name={prefix}"))
            .env("RKUBE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rkube agent");
        Agent {
            child: Some(child),
            log,
        }
    }
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent: its nodes stop heartbeating.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills what a local node leaves when its server is killed: the
/// containers (through the node's own containerd), then every process
/// started with the test's data dir on its command line (containerd, the
/// runc shims).
pub fn reap_local_node(data_dir: &Path) {
    let sock = data_dir.join("agent/containerd/containerd.sock");
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
    let needle = data_dir.display().to_string();
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

impl Drop for Server {
    fn drop(&mut self) {
        if self.local_node {
            reap_local_node(&self.data_dir());
        }
        self.stop(true);
        if self.local_node {
            reap_local_node(&self.data_dir());
            // The pod bridge outlives the server; it is this test's alone.
            let _ = Command::new("ip")
                .args(["link", "delete", &format!("rk{}", self.port)])
                .stderr(Stdio::null())
                .status();
            // And so are its service proxy's and network policy's
            // nftables tables.
            for (family, table) in [("ip", "proxy"), ("ip", "policy"), ("bridge", "policy")] {
                let _ = Command::new("nft")
                    .args([
                        "delete",
                        "table",
                        family,
                        &format!("rk{}-{table}", self.port),
                    ])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}
