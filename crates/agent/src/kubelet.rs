//! The real agent: the runtime (our own containerd, or one given by
//! endpoint), images, the Node and its Lease, the pod network's CNI config
//! and the pod workers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use runtime::workqueue::{run_workers, Next};
use runtime::{is_conflict, is_not_found, Change, Informer, WorkQueue};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::containerd::{self, Containerd, Layout};
use crate::cri::{CriClient, RuntimeService};
use crate::eviction::{self, Pressure};
use crate::node::{self, HostInfo};
use crate::pods::{PodSyncer, LABEL_POD_UID};
use crate::simulated::{node_status_stale, Cidr};
use crate::static_pods::{self, Registry};

/// Agent settings. Build with struct update syntax from
/// [`Config::new`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// The agent keeps its files in `<data_dir>/agent` (containerd's root,
    /// state and socket, CNI config, pod logs; image archives to import in
    /// `<data_dir>/agent/images`).
    pub data_dir: PathBuf,
    /// Use this CRI endpoint (`unix:///run/containerd/containerd.sock`)
    /// instead of starting containerd.
    pub container_runtime_endpoint: Option<String>,
    /// The containerd and ctr binaries (found on PATH by default).
    pub containerd_binary: String,
    pub ctr_binary: String,
    /// The node's InternalIP; `None`: the host's primary address.
    pub node_ip: Option<Ipv4Addr>,
    /// Pod addresses when the Node has no spec.podCIDR (nodeipam sets it
    /// when the controller manager runs with a cluster CIDR).
    pub pod_cidr: String,
    /// How long to wait at start for spec.podCIDR before using `pod_cidr`.
    pub pod_cidr_wait: Duration,
    /// CNI plugin binaries (Debian's containernetworking-plugins).
    pub cni_bin_dir: PathBuf,
    /// The Linux bridge pods attach to.
    pub cni_bridge: String,
    /// Masquerade pod traffic that leaves the pod network (the bridge
    /// plugin's ipMasq). Tests turn it off: their pods must not reach out.
    pub masquerade: bool,
    /// Nameservers for pods with dnsPolicy ClusterFirst (the cluster DNS
    /// Service IP).
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster domain in pods' DNS search path.
    pub cluster_domain: String,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
    pub lease_duration_seconds: i32,
    pub heartbeat_interval: Duration,
    pub status_report_interval: Duration,
    pub pod_workers: usize,
    /// The kubelet port (logs, exec, attach, port-forward), published as
    /// the Node's daemonEndpoints.kubeletEndpoint; 0: any free port.
    pub kubelet_port: u16,
    /// The streaming server's TLS identity and client CA; `None`: no
    /// streaming server.
    pub kubelet_tls: Option<crate::server::TlsConfig>,
    /// When unused images are removed (`--image-gc-*`).
    pub image_gc: crate::image_gc::Policy,
    /// The static pod manifests' directory (`None`:
    /// `<data_dir>/agent/pod-manifests`); created if missing.
    pub pod_manifest_path: Option<PathBuf>,
    /// How often the manifest directory is read again (besides inotify).
    pub static_pod_check_interval: Duration,
    /// Node-pressure eviction (`--eviction-*`).
    pub eviction: crate::eviction::Config,
    /// How often exited containers and stopped sandboxes are collected
    /// (the kubelet's container GC period).
    pub container_gc_period: Duration,
    /// A k3s-style `registries.yaml` (mirrors, auth, TLS) for the
    /// containerd the agent runs; a missing file is none.
    pub private_registry: Option<PathBuf>,
    /// What `--kube-reserved` and `--system-reserved` keep from pods,
    /// summed: cpu in millicores, memory and ephemeral-storage in bytes.
    pub reserved: BTreeMap<String, i128>,
}

impl Config {
    pub fn new(node_name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            container_runtime_endpoint: None,
            containerd_binary: "containerd".to_owned(),
            ctr_binary: "ctr".to_owned(),
            node_ip: None,
            pod_cidr: "10.42.0.0/24".to_owned(),
            pod_cidr_wait: Duration::from_secs(5),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_bridge: "rkube0".to_owned(),
            masquerade: true,
            cluster_dns: vec![std::net::IpAddr::from([10, 43, 0, 10])],
            cluster_domain: "cluster.local".to_owned(),
            labels: BTreeMap::new(),
            lease_duration_seconds: 40,
            heartbeat_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            pod_workers: 16,
            kubelet_port: 10250,
            kubelet_tls: None,
            image_gc: crate::image_gc::Policy::default(),
            pod_manifest_path: None,
            static_pod_check_interval: Duration::from_secs(5),
            eviction: crate::eviction::Config::default(),
            container_gc_period: Duration::from_secs(60),
            private_registry: None,
            reserved: BTreeMap::new(),
        }
    }

    /// Where static pod manifests are read from.
    pub fn manifest_dir(&self) -> PathBuf {
        self.pod_manifest_path
            .clone()
            .unwrap_or_else(|| self.agent_dir().join("pod-manifests"))
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.agent_dir().join("images")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.agent_dir().join("cni/net.d")
    }
}

/// The CNI network config for the node's pod range: a bridge with
/// host-local addresses, the bridge as gateway, masquerading out when
/// `masquerade`.
pub fn cni_conflist(bridge: &str, cidr: &str, ipam_dir: &Path, masquerade: bool) -> String {
    let gw = Cidr::parse(cidr).and_then(|c| c.host(1));
    let mut range = json!({ "subnet": cidr });
    if let Some(gw) = gw {
        range["gateway"] = json!(gw.to_string());
    }
    serde_json::to_string_pretty(&json!({
        "cniVersion": "0.4.0",
        "name": "rkube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": masquerade,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[range]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": ipam_dir.display().to_string(),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    }))
    .unwrap()
}

/// Deletes the pod bridge when it carries an address other than this
/// range's gateway (left by an earlier run with another podCIDR): the
/// bridge plugin refuses to reuse it, and no pod of ours can be on it.
async fn remove_stale_bridge(bridge: &str, gateway: &str) {
    let Ok(out) = tokio::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "dev", bridge])
        .output()
        .await
    else {
        return;
    };
    let addrs = String::from_utf8_lossy(&out.stdout);
    let stale = addrs
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .is_some_and(|a| a != gateway);
    if out.status.success() && stale {
        tracing::info!(
            bridge,
            "deleting the pod bridge left with another pod range"
        );
        let _ = tokio::process::Command::new("ip")
            .args(["link", "delete", bridge])
            .status()
            .await;
    }
}

struct Shared {
    client: kube::Client,
    config: Config,
    syncer: PodSyncer,
    pods: Store<Pod>,
    queue: WorkQueue<String>,
    runtime_version: String,
    host: HostInfo,
    host_ip: Ipv4Addr,
    node_uid: Mutex<Option<String>>,
    cni_cidr: Mutex<Option<String>>,
    /// The streaming server's port, when it runs.
    kubelet_port: Option<u16>,
    /// The static pods from the manifest directory.
    statics: Registry,
    /// Static pods' status by uid (the mirror pod shows it).
    static_status: Mutex<HashMap<String, PodStatus>>,
    /// Whether the pod informer has listed the API's pods: until then only
    /// static pods are synced.
    api_synced: AtomicBool,
    recorder: runtime::events::Recorder,
    /// The pressure conditions the eviction manager reports.
    pressure: Mutex<Pressure>,
    /// Pods (uid) the eviction manager chose: never started again. Their
    /// workers stop them and write their Failed status.
    evicted: Mutex<HashMap<String, Eviction>>,
    /// Pods (uid) admitted to run; others are checked against the node's
    /// pressure first.
    admitted: Mutex<HashSet<String>>,
    /// Image garbage collection (with our own containerd).
    image_gc: Option<Arc<crate::image_gc::Collector>>,
}

/// A pod the eviction manager chose.
#[derive(Clone, Debug)]
enum Eviction {
    /// Its worker is to stop it with this grace period.
    Stopping { grace: i64, message: String },
    /// Stopped: the Failed status, written until the API has it.
    Stopped(Box<PodStatus>),
}

/// Tasks aborted when dropped (a failed start leaves none behind).
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A running agent. Dropping it stops the agent and its containerd
/// (containers keep running under their shims; a new agent adopts them).
pub struct Agent {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    containerd: Option<Containerd>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shared.queue.shut_down();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Runs the agent until the process ends.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let _agent = Agent::start(client, config).await?;
    futures::future::pending::<()>().await;
    Ok(())
}

impl Agent {
    /// Starts the runtime, imports images, registers the node and starts
    /// heartbeats and pod workers.
    pub async fn start(client: kube::Client, config: Config) -> anyhow::Result<Agent> {
        let agent_dir = config.agent_dir();
        std::fs::create_dir_all(&agent_dir)?;
        std::fs::create_dir_all(config.images_dir())?;
        let manifest_dir = config.manifest_dir();
        std::fs::create_dir_all(&manifest_dir).with_context(|| {
            format!(
                "creating the pod manifest directory {}",
                manifest_dir.display()
            )
        })?;
        let (endpoint, containerd) = match &config.container_runtime_endpoint {
            Some(e) => (e.clone(), None),
            None => {
                let mut layout = Layout::new(
                    &agent_dir,
                    config.cni_conf_dir(),
                    config.cni_bin_dir.clone(),
                );
                if let Some(path) = &config.private_registry {
                    layout.registries = crate::registries::Registries::load(path)
                        .map_err(|e| anyhow::anyhow!("--private-registry: {e}"))?;
                }
                let c = Containerd::start(layout, &config.containerd_binary).await?;
                (c.layout.socket().display().to_string(), Some(c))
            }
        };
        let cri = CriClient::new(&endpoint)?;
        let version = {
            let mut tries = 0;
            loop {
                match cri.version().await {
                    Ok(v) => break v,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        tracing::debug!(error = %e, "CRI not answering yet");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => {
                        anyhow::bail!("the container runtime at {endpoint} does not answer: {e}")
                    }
                }
            }
        };
        tracing::info!(runtime = %version.node_info(), api = version.runtime_api_version, "container runtime");
        // Image GC never removes the sandbox image or air-gap imports.
        let mut pinned: std::collections::HashSet<String> =
            [containerd::PAUSE_IMAGE.to_owned()].into();
        if let Some(c) = &containerd {
            pinned.insert(c.layout.sandbox_image.clone());
            let (n, names) = containerd::import_images(
                &config.ctr_binary,
                &c.layout.socket(),
                &c.layout.snapshotter,
                &config.images_dir(),
            )
            .await?;
            tracing::info!(archives = n, dir = %config.images_dir().display(), "image archives imported");
            pinned.extend(names);
        }

        let host = HostInfo::read(&config.data_dir);
        let host_ip = config.node_ip.unwrap_or_else(node::primary_ip);
        let pod_informer = Informer::new(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
        );
        let mut syncer = PodSyncer::new(
            Arc::new(cri),
            &version.runtime_name,
            agent_dir.join("pods"),
            host_ip.to_string(),
        );
        let recorder = runtime::events::Recorder::new(client.clone(), "kubelet");
        {
            let recorder = recorder.clone();
            syncer
                .prober
                .set_event_sink(Arc::new(move |pod, container, reason, message| {
                    use kube::Resource;
                    let mut regarding = pod.object_ref(&());
                    regarding.field_path = Some(format!("spec.containers{{{container}}}"));
                    let kind = match reason {
                        "Unhealthy"
                        | "FailedPostStartHook"
                        | "FailedPreStopHook"
                        | "Failed"
                        | "BackOff"
                        | "ErrImageNeverPull" => "Warning",
                        _ => "Normal",
                    };
                    recorder.record(regarding, kind, reason, message);
                }));
        }
        let kubelet = match &config.kubelet_tls {
            Some(tls) => {
                let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.kubelet_port));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening on the kubelet port {addr}"))?;
                Some((listener, crate::server::tls_config(tls)?))
            }
            None => None,
        };
        let kubelet_port = match &kubelet {
            Some((l, _)) => Some(l.local_addr()?.port()),
            None => None,
        };
        syncer.objects = Arc::new(client.clone());
        syncer.dns = crate::dns::NodeDns {
            cluster_dns: config.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
            cluster_domain: config.cluster_domain.clone(),
            host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        syncer.memory_capacity = i64::try_from(host.memory_bytes).unwrap_or(i64::MAX);
        syncer.seccomp_root = agent_dir.join("seccomp");
        syncer.cgroups = crate::cgroups::Cgroups::detect(Path::new("/sys/fs/cgroup"));
        let mut start_status = node::node_status(
            &host,
            &config.node_name,
            host_ip,
            "",
            None,
            &Pressure::new(),
            Timestamp::now(),
        );
        reserve(&mut start_status, &host, &config);
        syncer.allocatable = start_status
            .allocatable
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        let image_gc = containerd.as_ref().map(|c| {
            Arc::new(crate::image_gc::Collector::new(
                syncer.cri.clone(),
                c.layout.dir.join("root"),
                config.image_gc.clone(),
                pinned.clone(),
            ))
        });
        let shared = Arc::new(Shared {
            recorder,
            pressure: Mutex::new(Pressure::new()),
            evicted: Mutex::new(HashMap::new()),
            admitted: Mutex::new(HashSet::new()),
            image_gc,
            kubelet_port,
            client: client.clone(),
            syncer,
            pods: pod_informer.store(),
            queue: WorkQueue::new(),
            runtime_version: version.node_info(),
            host,
            host_ip,
            node_uid: Mutex::new(None),
            cni_cidr: Mutex::new(None),
            statics: Registry::default(),
            static_status: Mutex::new(HashMap::new()),
            api_synced: AtomicBool::new(false),
            config,
        });

        // Static pods first: they run whether the API server answers or not.
        let mut tasks = Tasks(Vec::new());
        let mut source = StaticSource::default();
        source.scan(&shared);
        tasks.0.push(tokio::spawn(source.run(shared.clone())));
        {
            let shared2 = shared.clone();
            tasks.0.push(tokio::spawn(run_workers(
                shared.queue.clone(),
                shared.config.pod_workers,
                "pod-workers",
                move |key: String| reconcile(shared2.clone(), key),
            )));
        }

        // Register (retrying until the API server takes it).
        let mut tries = 0u32;
        loop {
            match shared.register().await {
                Ok(()) => break,
                Err(e) if tries < 30 => {
                    tries += 1;
                    tracing::warn!(error = %e, "registering the node failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        shared.configure_network(true).await?;

        {
            let shared2 = shared.clone();
            pod_informer.on_change(move |change| {
                let pod = change.object();
                if let Change::Deleted(_) = change {
                    tracing::debug!(pod = ?pod.metadata.name, "pod deleted");
                }
                shared2.queue.add(runtime::key_of(&pod.metadata));
            });
        }
        tasks.0.push(pod_informer.start());
        pod_informer.wait_synced().await;
        shared.api_synced.store(true, Ordering::SeqCst);
        for pod in shared.pods.state() {
            shared.queue.add(runtime::key_of(&pod.metadata));
        }
        if let Some((listener, tls)) = kubelet {
            let ctx = Arc::new(crate::server::Context {
                cri: shared.syncer.cri.clone(),
                pods: shared.pods.clone(),
                static_pods: shared.statics.clone(),
                node_name: shared.config.node_name.clone(),
                data_dir: shared.config.data_dir.clone(),
                image_root: shared.image_gc.as_ref().map(|g| g.root().to_path_buf()),
            });
            tracing::info!(port = ?kubelet_port, "kubelet streaming server listening");
            tasks.0.push(tokio::spawn(async move {
                if let Err(e) = crate::server::serve(listener, tls, ctx).await {
                    tracing::error!(error = %e, "kubelet streaming server stopped");
                }
            }));
        }
        if let Some(gc) = &shared.image_gc {
            tasks.0.push(tokio::spawn(crate::image_gc::run(gc.clone())));
        }
        tasks.0.push(tokio::spawn(eviction_loop(shared.clone())));
        tasks
            .0
            .push(tokio::spawn(container_gc_loop(shared.clone())));
        tasks.0.push(tokio::spawn(heartbeats(shared.clone())));
        tasks.0.push(tokio::spawn(housekeeping(shared.clone())));
        tracing::info!(node = shared.config.node_name, ip = %host_ip, "agent running");
        Ok(Agent {
            shared,
            tasks: std::mem::take(&mut tasks.0),
            containerd,
        })
    }

    /// The CRI socket the agent uses (its own containerd's, or the one
    /// given).
    pub fn runtime_socket(&self) -> Option<PathBuf> {
        self.containerd.as_ref().map(|c| c.layout.socket())
    }

    /// Stops every pod sandbox the runtime has for this agent (for tests
    /// and shutdown without leftovers); returns how many.
    pub async fn remove_all_pods(&self, grace: i64) -> anyhow::Result<usize> {
        let all = self
            .shared
            .syncer
            .cri
            .list_pod_sandbox(&BTreeMap::new())
            .await?;
        let mut n = 0;
        for s in all {
            n += self
                .shared
                .syncer
                .kill(&PodSyncer::uid_labels(&s.uid), grace, None)
                .await?;
        }
        Ok(n)
    }
}

impl Shared {
    /// The Node's status, with the streaming server's port.
    fn node_status(
        &self,
        current: Option<&k8s_openapi::api::core::v1::NodeStatus>,
        now: Timestamp,
    ) -> k8s_openapi::api::core::v1::NodeStatus {
        let pressure = self.pressure.lock().unwrap().clone();
        let mut status = node::node_status(
            &self.host,
            &self.config.node_name,
            self.host_ip,
            &self.runtime_version,
            current,
            &pressure,
            now,
        );
        reserve(&mut status, &self.host, &self.config);
        if let Some(port) = self.kubelet_port {
            status.daemon_endpoints = Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
                kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                    port: i32::from(port),
                }),
            });
        }
        status
    }

    async fn register(&self) -> anyhow::Result<()> {
        let labels = node::node_labels(&self.config.node_name, &self.config.labels);
        let status = self.node_status(None, Timestamp::now());
        let uid = node::register(&self.client, &self.config.node_name, &labels, &status).await?;
        node::renew_lease(
            &self.client,
            &self.config.node_name,
            uid.as_deref(),
            self.config.lease_duration_seconds,
            true,
        )
        .await?;
        *self.node_uid.lock().unwrap() = uid;
        Ok(())
    }

    /// Writes the CNI config for the node's pod range (spec.podCIDR, else
    /// the configured fallback); at start waits a little for nodeipam.
    async fn configure_network(&self, starting: bool) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + self.config.pod_cidr_wait;
        let cidr = loop {
            let node = api.get_opt(&self.config.node_name).await?;
            let cidr = node
                .and_then(|n| n.spec?.pod_cidr)
                .filter(|c| Cidr::parse(c).is_some());
            match cidr {
                Some(c) => break c,
                None if starting && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                None => {
                    if self.cni_cidr.lock().unwrap().is_some() {
                        return Ok(());
                    }
                    break self.config.pod_cidr.clone();
                }
            }
        };
        if self.cni_cidr.lock().unwrap().as_deref() == Some(cidr.as_str()) {
            return Ok(());
        }
        let dir = self.config.cni_conf_dir();
        std::fs::create_dir_all(&dir)?;
        let conf = cni_conflist(
            &self.config.cni_bridge,
            &cidr,
            &self.config.agent_dir().join("cni/ipam"),
            self.config.masquerade,
        );
        if let Some(gateway) = Cidr::parse(&cidr).and_then(|c| c.host(1)) {
            remove_stale_bridge(&self.config.cni_bridge, &gateway.to_string()).await;
        }
        let tmp = dir.join(".10-rkube.conflist.tmp");
        std::fs::write(&tmp, conf)?;
        std::fs::rename(&tmp, dir.join("10-rkube.conflist"))?;
        tracing::info!(pod_cidr = cidr, "pod network configured");
        *self.cni_cidr.lock().unwrap() = Some(cidr);
        Ok(())
    }

    async fn heartbeat(&self) -> anyhow::Result<()> {
        let uid = self.node_uid.lock().unwrap().clone();
        node::renew_lease(
            &self.client,
            &self.config.node_name,
            uid.as_deref(),
            self.config.lease_duration_seconds,
            true,
        )
        .await?;
        self.sync_node_status().await?;
        self.configure_network(false).await?;
        Ok(())
    }

    /// Writes the Node's status when it changed (or is due for a report).
    async fn sync_node_status(&self) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(current) = api.get_opt(&self.config.node_name).await? else {
            return Ok(());
        };
        let now = Timestamp::now();
        let desired = self.node_status(current.status.as_ref(), now);
        if node_status_stale(
            &desired,
            current.status.as_ref(),
            now,
            self.config.status_report_interval,
        ) {
            api.patch_status(
                &self.config.node_name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": desired })),
            )
            .await?;
        }
        Ok(())
    }
}

async fn heartbeats(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = shared.heartbeat().await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
    }
}

/// Removes sandboxes whose pod is gone (deleted with grace 0, or while
/// the agent was away), every 10 s.
async fn housekeeping(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let sandboxes = match shared.syncer.cri.list_pod_sandbox(&BTreeMap::new()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "listing sandboxes failed");
                continue;
            }
        };
        if !shared.api_synced.load(Ordering::SeqCst) {
            continue;
        }
        let mut live = shared.statics.uids();
        live.extend(
            shared
                .pods
                .state()
                .iter()
                .filter_map(|p| p.metadata.uid.clone()),
        );
        shared
            .evicted
            .lock()
            .unwrap()
            .retain(|u, _| live.contains(u));
        shared.admitted.lock().unwrap().retain(|u| live.contains(u));
        for s in sandboxes {
            if s.labels.contains_key(LABEL_POD_UID) && !live.contains(&s.uid) {
                tracing::info!(
                    pod = format!("{}/{}", s.namespace, s.name),
                    uid = s.uid,
                    "removing the sandbox of a pod that is gone"
                );
                if let Err(e) = shared
                    .syncer
                    .kill(&PodSyncer::uid_labels(&s.uid), 2, None)
                    .await
                {
                    tracing::warn!(error = %e, "removing sandbox failed");
                }
            }
        }
    }
}

/// Allocatable as the kubelet computes it: capacity minus
/// `--kube-reserved` and `--system-reserved`, and for memory and
/// ephemeral storage minus the hard eviction thresholds of
/// memory.available and nodefs.available too.
fn reserve(status: &mut k8s_openapi::api::core::v1::NodeStatus, host: &HostInfo, config: &Config) {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let Some(allocatable) = status.allocatable.as_mut() else {
        return;
    };
    let reserved = |r: &str| config.reserved.get(r).copied().unwrap_or(0);
    for (resource, signal, capacity) in [
        (
            "memory",
            eviction::Signal::MemoryAvailable,
            host.memory_bytes,
        ),
        (
            "ephemeral-storage",
            eviction::Signal::NodeFsAvailable,
            host.ephemeral_storage_bytes,
        ),
    ] {
        let threshold = config
            .eviction
            .thresholds
            .iter()
            .find(|t| t.hard && t.signal == signal)
            .map_or(0, |t| t.quantity(i128::from(capacity)));
        let left = (i128::from(capacity) - threshold - reserved(resource)).max(0);
        allocatable.insert(resource.to_owned(), Quantity(format!("{}Ki", left / 1024)));
    }
    let cpu = (i128::from(host.cpus) * 1000 - reserved("cpu")).max(0);
    let cpu = if cpu % 1000 == 0 {
        (cpu / 1000).to_string()
    } else {
        format!("{cpu}m")
    };
    allocatable.insert("cpu".to_owned(), Quantity(cpu));
}

/// Parses `--kube-reserved` / `--system-reserved`: `resource=quantity`,
/// comma-separated, for cpu, memory, ephemeral-storage and pid; the
/// amounts (cpu in millicores).
pub fn parse_reserved(flag: &str, s: &str) -> Result<BTreeMap<String, i128>, String> {
    let mut out = BTreeMap::new();
    for stmt in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (name, v) = stmt
            .split_once('=')
            .ok_or_else(|| format!("{flag}: {stmt:?}: expected resource=quantity"))?;
        let (name, v) = (name.trim(), v.trim());
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage" | "pid") {
            return Err(format!(
                "{flag}: unsupported resource {name:?} (cpu, memory, ephemeral-storage, pid)"
            ));
        }
        let q = api::quantity::Quantity::parse(v)
            .ok_or_else(|| format!("{flag}: {stmt:?}: invalid quantity {v:?}"))?;
        if q.milli < 0 {
            return Err(format!(
                "{flag}: {stmt:?}: resource quantity may not be negative"
            ));
        }
        let amount = if name == "cpu" { q.milli } else { q.value() };
        if out.insert(name.to_owned(), amount).is_some() {
            return Err(format!("{flag}: duplicate resource {name}"));
        }
    }
    Ok(out)
}

/// The kubelet's periodic container GC.
async fn container_gc_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(shared.config.container_gc_period).await;
        let removed = shared.collect_garbage(false).await;
        if removed > 0 {
            tracing::debug!(removed, "container garbage collected");
        }
    }
}

/// The eviction manager: every [`eviction::MONITOR_PERIOD`] measures the
/// signals, reports pressure conditions (the Node's status is written at
/// once when they change), reclaims and evicts at most one pod.
async fn eviction_loop(shared: Arc<Shared>) {
    let mut manager = eviction::Manager::new(shared.config.eviction.clone());
    loop {
        if let Err(e) = shared.eviction_pass(&mut manager).await {
            tracing::warn!(error = %format!("{e:#}"), "eviction pass failed");
        }
        tokio::time::sleep(eviction::MONITOR_PERIOD).await;
    }
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Shared {
    async fn observe(&self) -> anyhow::Result<(eviction::Observations, bool)> {
        let data_dir = self.config.data_dir.clone();
        let image_root = self.image_gc.as_ref().map(|g| g.root().to_path_buf());
        Ok(tokio::task::spawn_blocking(move || {
            eviction::observe::node(&data_dir, image_root.as_deref())
        })
        .await?)
    }

    async fn eviction_pass(&self, manager: &mut eviction::Manager) -> anyhow::Result<()> {
        let (mut obs, separate) = self.observe().await?;
        let out = manager.synchronize(&obs, std::time::Instant::now());
        let changed = {
            let mut p = self.pressure.lock().unwrap();
            let changed = *p != out.pressure;
            *p = out.pressure.clone();
            changed
        };
        if changed {
            tracing::info!(pressure = ?out.pressure, "node pressure conditions changed");
            if let Err(e) = self.sync_node_status().await {
                tracing::warn!(error = %e, "writing the node's pressure conditions failed");
            }
        }
        if self.local_storage_eviction().await? {
            return Ok(());
        }
        let Some(threshold) = out.act_on.first() else {
            return Ok(());
        };
        let signal = threshold.signal;
        let resource = signal.resource();
        tracing::warn!(
            signal = signal.name(),
            observed = ?obs.get(&signal),
            "eviction threshold met; attempting to reclaim {resource}"
        );
        self.recorder.record(
            self.node_ref(),
            "Warning",
            "EvictionThresholdMet",
            format!("Attempting to reclaim {resource}"),
        );
        if signal.condition() == eviction::Condition::DiskPressure {
            self.reclaim_disk().await;
            obs = self.observe().await?.0;
            // Enough when the minimum reclaim is available too.
            if !obs.get(&signal).is_some_and(|o| threshold.unresolved(o)) {
                tracing::info!(
                    signal = signal.name(),
                    "reclaiming dead containers and unused images was enough"
                );
                return Ok(());
            }
        }
        if !self.api_synced.load(Ordering::SeqCst) {
            return Ok(());
        }
        let pods = self.active_pods();
        let usage = self.pod_usage(&pods).await;
        let candidates: Vec<(&Pod, Option<&eviction::PodUsage>)> = pods
            .iter()
            .map(|p| {
                let uid = p.metadata.uid.as_deref().unwrap_or_default();
                (p.as_ref(), usage.as_ref().and_then(|u| u.get(uid)))
            })
            .collect();
        for i in eviction::rank(&candidates, signal, separate) {
            let (pod, usage) = candidates[i];
            if eviction::is_critical(pod) {
                continue;
            }
            let message = eviction::message(signal, threshold, obs.get(&signal), pod, usage);
            let grace =
                eviction::grace_period(threshold, pod, self.config.eviction.max_pod_grace_period);
            self.evict(pod, grace, message);
            self.wait_evicted(&[pod], grace).await;
            return Ok(());
        }
        tracing::warn!(signal = signal.name(), "no pod to evict");
        Ok(())
    }

    /// The pods the eviction manager may act on: this node's, running or
    /// about to, not being deleted, not evicted already.
    fn active_pods(&self) -> Vec<Arc<Pod>> {
        let evicted = self.evicted.lock().unwrap().clone();
        self.pods
            .state()
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref())
                    == Some(self.config.node_name.as_str())
                    && !terminal(p)
                    && p.metadata.deletion_timestamp.is_none()
                    && !evicted.contains_key(p.metadata.uid.as_deref().unwrap_or_default())
            })
            .collect()
    }

    /// Evicts (grace 0) every pod over its own local storage limits; true
    /// when one was.
    async fn local_storage_eviction(&self) -> anyhow::Result<bool> {
        if !self.api_synced.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let pods: Vec<Arc<Pod>> = self
            .active_pods()
            .into_iter()
            .filter(|p| eviction::has_local_storage_limits(p) && !eviction::is_critical(p))
            .collect();
        if pods.is_empty() {
            return Ok(false);
        }
        let Some(usage) = self.pod_usage(&pods).await else {
            return Ok(false);
        };
        let mut evicted = Vec::new();
        for pod in &pods {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let Some(message) = usage
                .get(uid)
                .and_then(|u| eviction::local_storage_violation(pod, u))
            else {
                continue;
            };
            self.evict(pod, 0, message);
            evicted.push(pod.as_ref());
        }
        self.wait_evicted(&evicted, 0).await;
        Ok(!evicted.is_empty())
    }

    fn node_ref(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.config.node_name.clone()),
            // As the kubelet's node reference.
            uid: Some(self.config.node_name.clone()),
            ..Default::default()
        }
    }

    /// What each pod uses (by uid): CRI container stats, log and emptyDir
    /// directories. `None` when the runtime gives no stats.
    async fn pod_usage(&self, pods: &[Arc<Pod>]) -> Option<HashMap<String, eviction::PodUsage>> {
        let stats = match self.syncer.cri.list_container_stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "container stats");
                return None;
            }
        };
        let dirs: Vec<(String, PathBuf, PathBuf)> = pods
            .iter()
            .map(|p| {
                let m = &p.metadata;
                let uid = m.uid.clone().unwrap_or_default();
                let logs = self.syncer.log_root.join(format!(
                    "{}_{}_{uid}",
                    m.namespace.as_deref().unwrap_or_default(),
                    m.name.as_deref().unwrap_or_default()
                ));
                (uid.clone(), self.syncer.pod_dir(&uid), logs)
            })
            .collect();
        let measured = tokio::task::spawn_blocking(move || {
            dirs.into_iter()
                .map(|(uid, pod_dir, logs)| {
                    (
                        uid,
                        (
                            eviction::observe::empty_dirs(&pod_dir),
                            eviction::observe::logs(&logs),
                        ),
                    )
                })
                .collect::<Vec<_>>()
        })
        .await
        .ok()?;
        let mut out = HashMap::new();
        for (uid, ((volumes, empty_dirs), logs)) in measured {
            let containers = stats
                .iter()
                .filter(|s| s.labels.get(LABEL_POD_UID) == Some(&uid))
                .map(|s| eviction::ContainerUsage {
                    name: s.name.clone(),
                    memory: s.memory_working_set_bytes,
                    rootfs: s.writable_layer_bytes.map(|bytes| eviction::FsUse {
                        bytes,
                        inodes: s.writable_layer_inodes.unwrap_or(0),
                    }),
                    logs: Some(logs.get(&s.name).copied().unwrap_or_default()),
                })
                .collect();
            out.insert(
                uid,
                eviction::PodUsage {
                    containers,
                    volumes,
                    empty_dirs,
                },
            );
        }
        Some(out)
    }

    /// Chooses `pod` for eviction: its worker stops it (never to start
    /// again) and marks it Failed/Evicted, serialized with its syncs.
    fn evict(&self, pod: &Pod, grace: i64, message: String) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = runtime::key_of(&pod.metadata);
        tracing::warn!(pod = key, grace, message, "evicting pod");
        self.recorder.record(
            kube::Resource::object_ref(pod, &()),
            "Warning",
            eviction::REASON,
            message.clone(),
        );
        self.evicted
            .lock()
            .unwrap()
            .insert(uid, Eviction::Stopping { grace, message });
        self.queue.add(key);
    }

    /// Waits until the workers have stopped `pods` (as the kubelet's
    /// eviction manager waits for the pods it evicted to be cleaned up),
    /// at most their grace period and half a minute.
    async fn wait_evicted(&self, pods: &[&Pod], grace: i64) {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(grace.max(0) as u64)
            + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let stopping = {
                let evicted = self.evicted.lock().unwrap();
                pods.iter().any(|p| {
                    matches!(
                        evicted.get(p.metadata.uid.as_deref().unwrap_or_default()),
                        Some(Eviction::Stopping { .. })
                    )
                })
            };
            if !stopping {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!("evicted pods not stopped in time");
    }

    /// Writes a terminal status for `pod` (retrying on conflicts with a
    /// fresh copy).
    async fn write_terminal_status(&self, pod: &Pod, status: PodStatus) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut current = pod.clone();
        for _ in 0..5 {
            if current.metadata.uid != pod.metadata.uid {
                return Ok(());
            }
            current.status = Some(status.clone());
            match api
                .replace_status(name, &PostParams::default(), &current)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => match api.get_opt(name).await? {
                    Some(p) => current = p,
                    None => return Ok(()),
                },
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("pod {ns}/{name}: the status kept changing")
    }

    /// Removes exited containers (with their logs) and stopped sandboxes
    /// as the kubelet's container GC does (`container_gc`). The newest runs
    /// of pods that still exist stay; under disk pressure (`all_finished`)
    /// finished pods count as gone. The number removed.
    async fn collect_garbage(&self, all_finished: bool) -> usize {
        // Until the API's pods are known, every pod would look gone.
        if !self.api_synced.load(Ordering::SeqCst) {
            return 0;
        }
        let cri = &self.syncer.cri;
        let (Ok(containers), Ok(sandboxes)) = (
            cri.list_containers(&BTreeMap::new()).await,
            cri.list_pod_sandbox(&BTreeMap::new()).await,
        ) else {
            return 0;
        };
        let mut kept = self.statics.uids();
        kept.extend(
            self.pods
                .state()
                .iter()
                .filter(|p| !(all_finished && terminal(p)))
                .filter_map(|p| p.metadata.uid.clone()),
        );
        if all_finished {
            let evicted: HashSet<String> = self.evicted.lock().unwrap().keys().cloned().collect();
            kept.retain(|u| !evicted.contains(u));
        }
        let plan = crate::container_gc::plan(&containers, &sandboxes, &kept);
        let mut removed = 0;
        for id in &plan.containers {
            let log = cri.container_status(id).await.map(|s| s.log_path).ok();
            if cri.remove_container(id).await.is_ok() {
                removed += 1;
                if let Some(log) = log.filter(|l| !l.is_empty()) {
                    let _ = std::fs::remove_file(log);
                }
            }
        }
        for id in &plan.sandboxes {
            if cri.remove_pod_sandbox(id).await.is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Frees disk before evicting (the kubelet's node-level reclaim):
    /// containers and sandboxes as [`Shared::collect_garbage`] under
    /// pressure, then every unused image.
    async fn reclaim_disk(&self) {
        let removed = self.collect_garbage(true).await;
        let freed = match &self.image_gc {
            Some(gc) => gc.delete_unused().await,
            None => 0,
        };
        tracing::info!(
            containers_and_sandboxes = removed,
            image_bytes = freed,
            "reclaimed disk"
        );
    }

    /// Admission of a pod the agent has not started yet: under pressure
    /// it is rejected (Failed, reason Evicted) as the kubelet does; true
    /// when it was.
    async fn reject_if_under_pressure(&self, pod: &Pod) -> anyhow::Result<bool> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.admitted.lock().unwrap().contains(&uid) {
            return Ok(false);
        }
        // A pod that already ran (before an agent restart) was admitted.
        let ran = pod
            .status
            .as_ref()
            .is_some_and(|s| s.start_time.is_some() || s.container_statuses.is_some())
            || !self
                .syncer
                .cri
                .list_pod_sandbox(&PodSyncer::uid_labels(&uid))
                .await?
                .is_empty();
        if !ran {
            let pressure = self.pressure.lock().unwrap().clone();
            if let Err(why) = eviction::admit(pod, &pressure) {
                tracing::warn!(pod = runtime::key_of(&pod.metadata), why, "pod rejected");
                self.recorder.record(
                    kube::Resource::object_ref(pod, &()),
                    "Warning",
                    eviction::REASON,
                    why.clone(),
                );
                let mut status = pod.status.clone().unwrap_or_default();
                status.phase = Some("Failed".into());
                status.reason = Some(eviction::REASON.into());
                status.message = Some(format!("Pod was rejected: {why}"));
                self.write_terminal_status(pod, status).await?;
                return Ok(true);
            }
        }
        self.admitted.lock().unwrap().insert(uid);
        Ok(false)
    }
}

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

/// Reads the manifest directory into `Shared::statics` and queues the
/// keys whose static pod changed.
#[derive(Default)]
struct StaticSource {
    /// Each skipped file's reason, logged when it changes.
    reported: BTreeMap<PathBuf, String>,
    /// The last pod each file gave: a file that fails to read or parse
    /// keeps it (a half-written file must not stop its pod).
    last_good: BTreeMap<PathBuf, Pod>,
}

impl StaticSource {
    fn scan(&mut self, shared: &Shared) {
        let dir = shared.config.manifest_dir();
        let now = Timestamp::now().to_string();
        let seen = |uid: &str| shared.statics.seen(uid).unwrap_or_else(|| now.clone());
        let mut manifests = static_pods::read_dir(&dir, &shared.config.node_name, &seen);
        let mut reported = BTreeMap::new();
        for (path, pod) in &mut manifests {
            match pod {
                Ok(p) => {
                    self.last_good.insert(path.clone(), p.clone());
                }
                Err(why) => {
                    if self.reported.get(path) != Some(why) {
                        tracing::warn!(file = %path.display(), error = %why, "static pod manifest skipped");
                    }
                    reported.insert(path.clone(), why.clone());
                    if let Some(last) = self.last_good.get(path) {
                        *pod = Ok(last.clone());
                    }
                }
            }
        }
        self.last_good
            .retain(|path, _| manifests.iter().any(|(p, _)| p == path));
        let (pods, duplicates) = static_pods::by_key(manifests);
        for (path, why) in duplicates {
            if self.reported.get(&path) != Some(&why) {
                tracing::warn!(file = %path.display(), error = %why, "static pod manifest skipped");
            }
            reported.entry(path).or_insert(why);
        }
        self.reported = reported;
        for key in shared.statics.replace(pods) {
            tracing::info!(pod = key, "static pod added, changed or removed");
            shared.queue.add(key);
        }
    }

    /// Reads the directory again every `static_pod_check_interval`, and
    /// soon after inotify reports a change in it.
    async fn run(mut self, shared: Arc<Shared>) {
        let dir = shared.config.manifest_dir();
        let mut watch: Option<static_pods::DirWatch> = None;
        loop {
            if watch.is_none() {
                watch = static_pods::DirWatch::new(&dir)
                    .inspect_err(|e| tracing::debug!(error = %e, "no inotify watch on the manifest directory"))
                    .ok();
            }
            let period = tokio::time::sleep(shared.config.static_pod_check_interval);
            let alive = match &watch {
                Some(w) => tokio::select! {
                    _ = period => true,
                    r = w.changed() => {
                        // Let a writer finish (a copy, an editor's save).
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        matches!(r, Ok(true))
                    }
                },
                None => {
                    period.await;
                    true
                }
            };
            if !alive {
                watch = None;
            }
            self.scan(&shared);
        }
    }
}

fn grace_of(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

async fn reconcile(shared: Arc<Shared>, key: String) -> Result<Next, Error> {
    let (ns, name) = runtime::split_key(&key);
    let ns = ns.unwrap_or_default();
    let syncer = &shared.syncer;
    // Static pods whose file went away or changed: stopped with their grace
    // period.
    for old in shared.statics.gone(&key) {
        let uid = old.metadata.uid.clone().unwrap_or_default();
        tracing::info!(pod = key, uid, "stopping static pod");
        syncer
            .kill(&PodSyncer::uid_labels(&uid), grace_of(&old), None)
            .await?;
        shared.static_status.lock().unwrap().remove(&uid);
        shared.statics.stopped(&key, &uid);
    }
    if let Some(sp) = shared.statics.get(&key) {
        return reconcile_static(&shared, &key, sp).await;
    }
    if !shared.api_synced.load(Ordering::SeqCst) {
        // The informer's first list queues every pod.
        return Ok(Next::Done);
    }
    let pod = shared.pods.get(&ObjectRef::new(name).within(ns));
    if let Some(mirror) = pod.as_ref().filter(|p| static_pods::is_mirror(p)) {
        // The mirror of a static pod that is gone: so is the mirror (and
        // never run it as a pod of its own).
        syncer
            .kill(&PodSyncer::name_labels(ns, name), 2, None)
            .await?;
        tracing::info!(
            pod = key,
            "deleting the mirror pod of a static pod that is gone"
        );
        delete_mirror(&shared, mirror).await?;
        return Ok(Next::Done);
    }
    // Sandboxes of an earlier pod of this name.
    let keep = pod.as_ref().and_then(|p| p.metadata.uid.clone());
    let removed = syncer
        .kill(&PodSyncer::name_labels(ns, name), 2, keep.as_deref())
        .await?;
    if removed > 0 {
        tracing::info!(pod = key, removed, "removed sandboxes of a deleted pod");
    }
    let Some(pod) = pod else {
        return Ok(Next::Done);
    };
    if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(&shared.config.node_name) {
        return Ok(Next::Done);
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);

    if pod.metadata.deletion_timestamp.is_some() {
        let mut grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
        tracing::info!(pod = key, grace, "stopping pod");
        let labels = PodSyncer::uid_labels(&uid);
        let kill = syncer.kill(&labels, grace, None);
        tokio::pin!(kill);
        // A later deletion may shorten the grace period (`kubectl delete
        // --grace-period=N`, or `--force`, which removes the pod): the
        // containers are stopped again with the shorter one.
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                r = &mut kill => {
                    r?;
                    break;
                }
                _ = tick.tick() => {
                    let now = shared
                        .pods
                        .get(&ObjectRef::new(name).within(ns))
                        .filter(|p| p.metadata.uid.as_deref() == Some(uid.as_str()));
                    let g = now.map_or(0, |p| p.metadata.deletion_grace_period_seconds.unwrap_or(grace));
                    if crate::lifecycle::remaining_grace(g, 0) < crate::lifecycle::remaining_grace(grace, 0) {
                        tracing::info!(pod = key, grace = g, "grace period shortened");
                        grace = g;
                        syncer.shorten_grace(&labels, grace).await;
                    } else {
                        grace = grace.min(g);
                    }
                }
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Next::Done);
    }

    // Evicted pods are stopped and marked Failed; pods past their
    // activeDeadlineSeconds too.
    let eviction = shared.evicted.lock().unwrap().get(&uid).cloned();
    let mut ended = terminal(&pod);
    if let Some(e) = eviction {
        finish_eviction(&shared, &pod, e).await?;
        ended = true;
    } else if !ended && deadline_left(&pod).is_some_and(|d| d.is_zero()) {
        stop_past_deadline(&shared, &pod).await?;
        ended = true;
    }
    // Finished pods are never started again; their volumes go, as the
    // kubelet unmounts a terminated pod's.
    if ended {
        syncer.stop_sandboxes(&pod).await?;
        crate::volumes::teardown(&syncer.pod_dir(&uid));
        return Ok(Next::Done);
    }
    match shared.reject_if_under_pressure(&pod).await {
        Ok(true) => return Ok(Next::Done),
        Ok(false) => {}
        Err(e) => return Err(Error(format!("{e:#}"))),
    }

    let synced = syncer.sync(&pod).await?;
    let changed = serde_json::to_value(&synced.status).ok()
        != serde_json::to_value(pod.status.clone().unwrap_or_default()).ok();
    if changed {
        let mut new = (*pod).clone();
        new.status = Some(synced.status.clone());
        match api.replace_status(name, &PostParams::default(), &new).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Next::Done),
            // Changed meanwhile: the watch brings the new version.
            Err(e) if is_conflict(&e) => return Ok(Next::After(Duration::from_millis(200))),
            Err(e) => return Err(e.into()),
        }
    }
    if matches!(synced.status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        syncer.stop_sandboxes(&pod).await?;
        return Ok(Next::Done);
    }
    // Looked at again when its deadline passes (startTime is known once
    // the first status is written, which queues the pod again).
    let requeue = match (synced.requeue_after, deadline_left(&pod)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(requeue.map_or(Next::Done, Next::After))
}

/// How long `pod` may still run by its `activeDeadlineSeconds`, counted
/// from its startTime as the kubelet does; None without either.
fn deadline_left(pod: &Pod) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    let end = start.as_second().saturating_add(secs);
    let left = end - Timestamp::now().as_second();
    Some(Duration::from_secs(left.max(0) as u64))
}

/// Stops an evicted pod and writes its Failed/Evicted status with a
/// DisruptionTarget condition, as the kubelet does. A failure is retried
/// by the queue; the pod never runs again meanwhile.
async fn finish_eviction(shared: &Shared, pod: &Pod, e: Eviction) -> Result<(), Error> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let status = match e {
        Eviction::Stopping { grace, message } => {
            let mut status = shared.syncer.stop_pod(pod, grace).await?;
            status.phase = Some("Failed".into());
            status.reason = Some(eviction::REASON.into());
            status.message = Some(message.clone());
            crate::pods::set_condition(
                &mut status,
                "DisruptionTarget",
                true,
                Some("TerminationByKubelet"),
                Some(message),
            );
            terminated_conditions(pod, &mut status);
            shared
                .evicted
                .lock()
                .unwrap()
                .insert(uid, Eviction::Stopped(Box::new(status.clone())));
            status
        }
        Eviction::Stopped(status) => *status,
    };
    if !terminal(pod) {
        shared
            .write_terminal_status(pod, status)
            .await
            .map_err(|e| Error(format!("writing an evicted pod's status: {e:#}")))?;
    }
    Ok(())
}

/// Stops a pod past its `activeDeadlineSeconds` with its grace period and
/// marks it Failed/DeadlineExceeded (the kubelet's active deadline handler).
async fn stop_past_deadline(shared: &Shared, pod: &Pod) -> Result<(), Error> {
    const REASON: &str = "DeadlineExceeded";
    const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
    tracing::info!(
        pod = runtime::key_of(&pod.metadata),
        "pod past its active deadline"
    );
    shared.recorder.record(
        kube::Resource::object_ref(pod, &()),
        "Normal",
        REASON,
        MESSAGE.into(),
    );
    let mut status = shared.syncer.stop_pod(pod, grace_of(pod)).await?;
    status.phase = Some("Failed".into());
    status.reason = Some(REASON.into());
    status.message = Some(MESSAGE.into());
    terminated_conditions(pod, &mut status);
    shared
        .write_terminal_status(pod, status)
        .await
        .map_err(|e| {
            Error(format!(
                "writing the status of a pod past its deadline: {e:#}"
            ))
        })
}

/// The conditions and container states of a pod the kubelet ended.
fn terminated_conditions(pod: &Pod, status: &mut PodStatus) {
    for c in ["Ready", "ContainersReady", "PodReadyToStartContainers"] {
        crate::pods::set_condition(status, c, false, Some("PodCompleted"), None);
    }
    crate::pods::settle_terminated(&pod.spec.clone().unwrap_or_default(), status);
}

/// Deletes a mirror pod at once (only that one: its uid).
async fn delete_mirror(shared: &Shared, mirror: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(
        shared.client.clone(),
        mirror.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: mirror.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api
        .delete(mirror.metadata.name.as_deref().unwrap_or_default(), &dp)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A static pod: synced from its file whatever the API says, then its
/// mirror pod made to match (created, recreated when deleted or stale,
/// status updated); mirror failures only delay the next pass.
async fn reconcile_static(shared: &Shared, key: &str, sp: Arc<Pod>) -> Result<Next, Error> {
    let (ns, name) = runtime::split_key(key);
    let ns = ns.unwrap_or_default();
    let syncer = &shared.syncer;
    let uid = sp.metadata.uid.clone().unwrap_or_default();
    // Sandboxes of an earlier pod of this name (another uid).
    syncer
        .kill(&PodSyncer::name_labels(ns, name), 2, Some(&uid))
        .await?;
    let mirror = if shared.api_synced.load(Ordering::SeqCst) {
        shared.pods.get(&ObjectRef::new(name).within(ns))
    } else {
        None
    };
    let mut pod = (*sp).clone();
    let known = shared.static_status.lock().unwrap().get(&uid).cloned();
    pod.status = known.or_else(|| {
        // After a restart: the status the mirror kept.
        mirror
            .as_ref()
            .filter(|m| static_pods::is_mirror_of(m, &sp))
            .and_then(|m| m.status.clone())
            .or(sp.status.clone())
    });
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    let (status, mut next) = if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
        syncer.stop_sandboxes(&pod).await?;
        (pod.status.clone().unwrap_or_default(), None)
    } else {
        let synced = syncer.sync(&pod).await?;
        if matches!(synced.status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            pod.status = Some(synced.status.clone());
            syncer.stop_sandboxes(&pod).await?;
        }
        (synced.status, synced.requeue_after)
    };
    shared
        .static_status
        .lock()
        .unwrap()
        .insert(uid, status.clone());
    if let Err(e) = sync_mirror(shared, &sp, mirror, status).await {
        tracing::debug!(pod = key, error = %e, "mirror pod not in sync yet");
        let retry = Duration::from_secs(2);
        next = Some(next.map_or(retry, |n| n.min(retry)));
    }
    Ok(next.map_or(Next::Done, Next::After))
}

/// Makes the mirror pod of `sp` exist, match it and show `status`.
async fn sync_mirror(
    shared: &Shared,
    sp: &Pod,
    mirror: Option<Arc<Pod>>,
    status: PodStatus,
) -> anyhow::Result<()> {
    if !shared.api_synced.load(Ordering::SeqCst) {
        anyhow::bail!("the API's pods are not listed yet");
    }
    let ns = sp.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    let mut current = mirror;
    if let Some(m) = &current {
        if !static_pods::is_mirror(m) {
            anyhow::bail!(
                "a pod that is not a mirror pod holds the static pod's name {}",
                runtime::key_of(&m.metadata)
            );
        }
        if m.metadata.deletion_timestamp.is_some() || !static_pods::is_mirror_of(m, sp) {
            tracing::info!(pod = ?m.metadata.name, "deleting a mirror pod that was deleted or no longer matches its static pod");
            delete_mirror(shared, m).await?;
            current = None;
        }
    }
    let mut m = match current {
        Some(m) => (*m).clone(),
        None => {
            let node_uid = shared.node_uid.lock().unwrap().clone();
            let Some(node_uid) = node_uid else {
                anyhow::bail!("the Node is not registered yet");
            };
            let new = static_pods::mirror_pod(sp, &shared.config.node_name, &node_uid);
            match api.create(&PostParams::default(), &new).await {
                Ok(created) => {
                    tracing::info!(pod = ?created.metadata.name, "mirror pod created");
                    created
                }
                // Created by an earlier pass: the watch brings it.
                Err(e) if is_conflict(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let stale = serde_json::to_value(&status).ok()
        != serde_json::to_value(m.status.clone().unwrap_or_default()).ok();
    if stale {
        m.status = Some(status);
        let name = m.metadata.name.clone().unwrap_or_default();
        match api.replace_status(&name, &PostParams::default(), &m).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                anyhow::bail!("the mirror pod changed meanwhile: {e}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_config_for_the_pod_range() {
        let c = cni_conflist("rkube0", "10.42.3.0/24", Path::new("/d/ipam"), true);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        let b = &v["plugins"][0];
        assert_eq!(b["type"], "bridge");
        assert_eq!(b["ipMasq"], true);
        assert_eq!(b["ipam"]["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(b["ipam"]["ranges"][0][0]["gateway"], "10.42.3.1");
        assert_eq!(b["ipam"]["dataDir"], "/d/ipam");
        let c = cni_conflist("rkube0", "10.42.3.0/24", Path::new("/d/ipam"), false);
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn allocatable_keeps_the_reservations_and_hard_thresholds() {
        let host = HostInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 100 << 30,
            kernel_version: String::new(),
            os_image: String::new(),
            machine_id: String::new(),
            boot_id: String::new(),
            hostname: String::new(),
        };
        let mut config = Config::new("n", "/d");
        config.eviction = eviction::Config::new(
            "memory.available<100Mi,nodefs.available<10%",
            "",
            "",
            "",
            Duration::ZERO,
            0,
        )
        .unwrap();
        config.reserved = parse_reserved(
            "--kube-reserved",
            "cpu=250m, memory=200Mi,ephemeral-storage=1Gi,pid=100",
        )
        .unwrap();
        let mut status = k8s_openapi::api::core::v1::NodeStatus {
            allocatable: Some(BTreeMap::new()),
            ..Default::default()
        };
        reserve(&mut status, &host, &config);
        let a = status.allocatable.clone().unwrap();
        let got = |r: &str| a[r].0.clone();
        assert_eq!(got("cpu"), "1750m");
        assert_eq!(
            got("memory"),
            format!("{}Ki", ((4i64 << 30) - (300 << 20)) / 1024)
        );
        assert_eq!(
            got("ephemeral-storage"),
            format!("{}Ki", ((100i64 << 30) - (10 << 30) - (1 << 30)) / 1024)
        );
        config.reserved = parse_reserved("--system-reserved", "cpu=1").unwrap();
        reserve(&mut status, &host, &config);
        assert_eq!(status.allocatable.unwrap()["cpu"].0, "1");

        for (bad, want) in [
            ("gpu=1", "unsupported resource \"gpu\""),
            ("memory", "expected resource=quantity"),
            ("memory=lots", "invalid quantity"),
            ("cpu=-1", "may not be negative"),
            ("cpu=1,cpu=2", "duplicate resource cpu"),
        ] {
            let e = parse_reserved("--kube-reserved", bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
