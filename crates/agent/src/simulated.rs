//! Simulated nodes: Node objects with Leases whose pods move through their
//! lifecycle without containers, for tests and scale runs.
//!
//! One process runs any number of nodes (thousands) against an API server,
//! as one client:
//!
//! - **Registration.** Nodes `PREFIX-0` .. `PREFIX-(N-1)` are created, or
//!   adopted when they exist already (their labels are brought up to date;
//!   taints are only set on creation, as kubelet's `--register-with-taints`).
//!   Labels: `kubernetes.io/hostname`, `kubernetes.io/os=linux`,
//!   `kubernetes.io/arch=amd64`, `beta.kubernetes.io/os`,
//!   `beta.kubernetes.io/arch`, plus [`Config::labels`] and a
//!   `topology.kubernetes.io/zone` from [`Config::zones`] (round robin).
//!   Status (written through `nodes/status`): capacity and allocatable,
//!   an InternalIP from [`Config::node_cidr`] (node i gets the (i+1)-th
//!   address) and a Hostname address, nodeInfo (kubelet `v1.33.0-rkube`,
//!   runtime `simulated://1.0`), conditions Ready=True (KubeletReady) and
//!   MemoryPressure/DiskPressure/PIDPressure=False.
//! - **Heartbeats.** One `coordination.k8s.io/v1` Lease per node in
//!   `kube-node-lease` (holder = node name, 40 s), renewed every
//!   [`Config::heartbeat_interval`] (10 s) with the renewals spread evenly
//!   over the interval. On each heartbeat the node's status in the cache is
//!   checked and written again when it is not what it should be (e.g. the
//!   node lifecycle controller set Ready=Unknown) or when the last report is
//!   older than [`Config::status_report_interval`] (5 min). A node deleted
//!   by someone else is not registered again (as a kubelet: only a restart
//!   registers).
//! - **Pods.** One watch of all pods bound to a node (`spec.nodeName!=`);
//!   pods on this process's nodes are reconciled from what is observed (a
//!   restarted agent carries on where the last one stopped), writing
//!   `pods/status` with compare-and-swap updates (a 409 waits for the newer
//!   object): a pending pod becomes Running at once with hostIP, a podIP
//!   from the node's range (`spec.podCIDR` when set, else the node's /24
//!   of [`Config::pod_cidr`]; hostNetwork pods get the host's IP),
//!   startTime, qosClass, the five pod conditions, container statuses
//!   (running) and init container statuses (terminated, Completed;
//!   sidecars with `restartPolicy: Always` running). Containers are Ready
//!   at once, or `initialDelaySeconds` after they started when they have a
//!   readiness (or startup) probe; `spec.readinessGates` are honoured.
//!   Changing a container's image restarts it.
//! - **Deletion.** A pod with a deletionTimestamp is stopped
//!   min(deletionGracePeriodSeconds, 1 s) after the delete request: its
//!   containers end with exit code 137 (phase Failed), then it is deleted
//!   with gracePeriodSeconds=0 and a UID precondition, as a kubelet
//!   finishes a graceful delete. Terminal pods (Succeeded/Failed) are left
//!   alone, except for finishing their deletion.
//! - **Stopping.** [`SimulatedNodes::stop_node`] makes a node fall silent as
//!   if its host died (no heartbeats, pods untouched) until
//!   [`SimulatedNodes::resume_node`]; dropping the handle or killing the
//!   process stops every node.
//!
//! All API requests share one semaphore ([`Config::max_in_flight`], 32).
//!
//! # Annotations
//!
//! Pods can ask to end, for Job tests:
//!
//! - `sim.rkube.io/exit-code: "N"` ([`EXIT_CODE_ANNOTATION`]): every
//!   (regular) container exits with code N after running for
//! - `sim.rkube.io/run-seconds: "S"` ([`RUN_SECONDS_ANNOTATION`], default
//!   1, fractions allowed) seconds. The container's state becomes
//!   `terminated` (reason `Completed` for 0, `Error` otherwise), and then
//!   by the pod's `restartPolicy`: `Never` → phase Succeeded when every
//!   container exited 0, else Failed; `OnFailure` → Succeeded for 0, else
//!   the container restarts at once (restartCount+1, `lastState.terminated`,
//!   running again, and it exits again after S seconds); `Always` → it
//!   restarts in both cases.
//!
//! Without the annotation containers run until the pod is deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    DaemonEndpoint, HostIP, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Pod, PodCondition, PodIP, PodSpec, PodStatus, Probe, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use runtime::workqueue::{run_workers, Next};
use runtime::{is_conflict, is_not_found, Change, Informer, WorkQueue};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Pod annotation: the exit code every container ends with.
pub const EXIT_CODE_ANNOTATION: &str = "sim.rkube.io/exit-code";
/// Pod annotation: how long containers run before they exit (default 1 s).
pub const RUN_SECONDS_ANNOTATION: &str = "sim.rkube.io/run-seconds";
/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// What nodes report as their kubelet version.
pub const KUBELET_VERSION: &str = "v1.33.0-rkube";
/// What nodes report as their container runtime.
pub const RUNTIME_VERSION: &str = "simulated://1.0";
/// The exit code of containers stopped by a pod's deletion.
pub const KILLED_EXIT_CODE: i32 = 137;

/// Simulated node settings. Build with struct update syntax from
/// `Config::default()`.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes.
    pub count: usize,
    /// Node names are PREFIX-0, PREFIX-1, ...
    pub prefix: String,
    /// status.capacity (default cpu 8, memory 32Gi, pods 110,
    /// ephemeral-storage 100Gi).
    pub capacity: BTreeMap<String, String>,
    /// status.allocatable; `None`: the same as capacity.
    pub allocatable: Option<BTreeMap<String, String>>,
    /// Extra labels on every node.
    pub labels: BTreeMap<String, String>,
    /// When not empty, node i gets `topology.kubernetes.io/zone` =
    /// `zones[i % zones.len()]`.
    pub zones: Vec<String>,
    /// Taints set when a node is created.
    pub taints: Vec<Taint>,
    /// Node InternalIPs: node i gets the (i+1)-th address of this range.
    pub node_cidr: String,
    /// Pod addresses of nodes without spec.podCIDR: node i gets the i-th
    /// /24 of this range.
    pub pod_cidr: String,
    /// The Lease's leaseDurationSeconds.
    pub lease_duration_seconds: i32,
    /// How often each Lease is renewed (and the node status checked).
    pub heartbeat_interval: Duration,
    /// The node status is written at least this often.
    pub status_report_interval: Duration,
    /// API requests in flight at once, over all nodes.
    pub max_in_flight: usize,
    /// Pod reconcile workers.
    pub pod_workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            count: 1,
            prefix: "sim".to_owned(),
            capacity: [
                ("cpu", "8"),
                ("memory", "32Gi"),
                ("pods", "110"),
                ("ephemeral-storage", "100Gi"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            allocatable: None,
            labels: BTreeMap::new(),
            zones: Vec::new(),
            taints: Vec::new(),
            node_cidr: "10.200.0.0/16".to_owned(),
            pod_cidr: "10.128.0.0/9".to_owned(),
            lease_duration_seconds: 40,
            heartbeat_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            max_in_flight: 32,
            pod_workers: 32,
        }
    }
}

impl Config {
    /// The name of node `i`.
    pub fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The labels node `i` carries.
    pub fn node_labels(&self, i: usize) -> BTreeMap<String, String> {
        let name = self.node_name(i);
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", "amd64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if !self.zones.is_empty() {
            labels.insert(
                "topology.kubernetes.io/zone".to_owned(),
                self.zones[i % self.zones.len()].clone(),
            );
        }
        labels.extend(self.labels.clone());
        labels
    }

    /// Node `i`'s InternalIP.
    pub fn node_ip(&self, i: usize) -> anyhow::Result<Ipv4Addr> {
        let cidr = Cidr::parse(&self.node_cidr)
            .ok_or_else(|| anyhow::anyhow!("invalid node_cidr {:?}", self.node_cidr))?;
        cidr.host(i as u64 + 1)
            .ok_or_else(|| anyhow::anyhow!("node_cidr {} has no room for node {i}", self.node_cidr))
    }

    /// Node `i`'s pod range when the node has no spec.podCIDR.
    pub fn default_pod_cidr(&self, i: usize) -> anyhow::Result<Cidr> {
        let cidr = Cidr::parse(&self.pod_cidr)
            .ok_or_else(|| anyhow::anyhow!("invalid pod_cidr {:?}", self.pod_cidr))?;
        cidr.subnet(24, i as u64).ok_or_else(|| {
            anyhow::anyhow!("pod_cidr {} has no /24 left for node {i}", self.pod_cidr)
        })
    }
}

// ---------------------------------------------------------------------------
// Addresses

/// An IPv4 range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub network: u32,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` (IPv4 only).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = s.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Some(Cidr {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    /// How many addresses the range has.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The `n`-th address, when it is a usable host address (not the
    /// network or broadcast address of ranges larger than /31).
    pub fn host(&self, n: u64) -> Option<Ipv4Addr> {
        let size = self.size();
        if size > 2 && (n == 0 || n >= size - 1) || n >= size {
            return None;
        }
        Some(Ipv4Addr::from(self.network + n as u32))
    }

    /// The `i`-th sub-range of length `prefix`.
    pub fn subnet(&self, prefix: u8, i: u64) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if i >= count {
            return None;
        }
        Some(Cidr {
            network: self.network + (i << (32 - prefix)) as u32,
            prefix,
        })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        };
        u32::from(ip) & mask == self.network
    }
}

/// Pod addresses of one node: who holds which, and where the next search
/// starts (addresses are handed out round robin, so a freed one is not
/// reused at once).
#[derive(Debug, Default)]
pub struct Ipam {
    by_pod: HashMap<String, Ipv4Addr>,
    used: HashSet<Ipv4Addr>,
    next: u64,
}

impl Ipam {
    /// Records that pod `uid` holds `ip` (seen in its status).
    pub fn observe(&mut self, uid: &str, ip: Ipv4Addr) {
        if let Some(old) = self.by_pod.insert(uid.to_owned(), ip) {
            if old != ip {
                self.used.remove(&old);
            }
        }
        self.used.insert(ip);
    }

    /// Frees pod `uid`'s address.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.used.remove(&ip);
        }
    }

    /// Pod `uid`'s address: the one it holds, or a free one of `range`.
    pub fn assign(&mut self, uid: &str, range: Cidr) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        // Search at most 64Ki addresses of a large range.
        let span = range.size().min(1 << 16);
        for k in 0..span {
            let n = (self.next + k) % span;
            let Some(ip) = range.host(n) else { continue };
            if !self.used.contains(&ip) {
                self.next = n + 1;
                self.by_pod.insert(uid.to_owned(), ip);
                self.used.insert(ip);
                return Some(ip);
            }
        }
        None
    }

    /// How many addresses are held.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

// ---------------------------------------------------------------------------
// Quantities and QoS

/// A resource quantity (`500m`, `1Gi`, `2e3`, `0.5`) in units of 10⁻⁹.
pub fn quantity_nanos(q: &str) -> Option<i128> {
    let q = q.trim();
    let (number, suffix) =
        match q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')) {
            Some(i) => q.split_at(i),
            None => (q, ""),
        };
    let (neg, number) = match number.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // digits as an integer, scaled by 10^-frac.len()
    let mut mantissa: i128 = 0;
    for c in int.chars().chain(frac.chars()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(c.to_digit(10)? as i128)?;
    }
    let mut exp10: i32 = 9 - frac.len() as i32;
    let mut factor: i128 = 1;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => factor = 1 << 10,
        "Mi" => factor = 1 << 20,
        "Gi" => factor = 1 << 30,
        "Ti" => factor = 1 << 40,
        "Pi" => factor = 1 << 50,
        "Ei" => factor = 1 << 60,
        s if s.starts_with(['e', 'E']) => exp10 += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    let mut v = mantissa.checked_mul(factor)?;
    if exp10 >= 0 {
        v = v.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
    } else {
        // Below a nano-unit: Kubernetes rounds up.
        let d = 10i128.checked_pow((-exp10) as u32)?;
        v = (v + d - 1) / d;
    }
    Some(if neg { -v } else { v })
}

/// The pod's QoS class, as Kubernetes computes it (`ComputePodQOS`) from
/// the cpu and memory requests and limits of its containers and init
/// containers (requests default to limits, as the API server does).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        let res = c.resources.as_ref();
        let req = res.and_then(|r| r.requests.as_ref());
        let lim = res.and_then(|r| r.limits.as_ref());
        let mut limits_found = HashSet::new();
        for name in ["cpu", "memory"] {
            let l = lim
                .and_then(|l| l.get(name))
                .and_then(|q| quantity_nanos(&q.0))
                .unwrap_or(0);
            let r = req
                .and_then(|r| r.get(name))
                .map(|q| quantity_nanos(&q.0).unwrap_or(0))
                .unwrap_or(l);
            if r > 0 {
                *requests.entry(name).or_default() += r;
            }
            if l > 0 {
                limits_found.insert(name);
                *limits.entry(name).or_default() += l;
            }
        }
        if limits_found.len() < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------
// Pod lifecycle (pure)

/// How a pod's containers end, from its annotations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exit {
    pub code: i32,
    pub after: SignedDuration,
}

/// The pod's [`EXIT_CODE_ANNOTATION`] and [`RUN_SECONDS_ANNOTATION`]
/// (None without an exit code, or when they do not parse).
pub fn exit_of(pod: &Pod) -> Option<Exit> {
    let ann = pod.metadata.annotations.as_ref()?;
    let code = ann.get(EXIT_CODE_ANNOTATION)?.trim().parse::<i32>().ok()?;
    let secs = match ann.get(RUN_SECONDS_ANNOTATION) {
        Some(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)?,
        None => 1.0,
    };
    Some(Exit {
        code,
        after: SignedDuration::from_secs_f64(secs),
    })
}

/// What the simulated kubelet does next with one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodPlan {
    /// Write this status (it differs from the pod's).
    pub status: Option<PodStatus>,
    /// Then delete the pod (grace 0, UID precondition).
    pub delete: bool,
    /// Look at the pod again after this long (a timer is pending).
    pub requeue_after: Option<Duration>,
}

/// The next step for `pod` (bound to a node whose address is `host_ip`)
/// at `now`. `pod_ip` is the address the pod has or gets.
pub fn plan_pod(pod: &Pod, host_ip: &str, pod_ip: Option<&str>, now: Timestamp) -> PodPlan {
    let cur = pod.status.clone().unwrap_or_default();
    let terminal = matches!(cur.phase.as_deref(), Some("Succeeded" | "Failed"));
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        if terminal {
            return PodPlan {
                delete: true,
                ..PodPlan::default()
            };
        }
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(0)
            .max(0);
        let requested = deleted.0 - SignedDuration::from_secs(grace);
        let stop_at = requested + SignedDuration::from_secs(grace.min(1));
        if now < stop_at {
            return PodPlan {
                requeue_after: Some(until(now, stop_at)),
                ..PodPlan::default()
            };
        }
        let (status, _) = pod_status(pod, &cur, host_ip, pod_ip, now, true);
        return PodPlan {
            status: changed(&cur, status),
            delete: true,
            requeue_after: None,
        };
    }
    if terminal {
        return PodPlan::default();
    }
    let (status, wake) = pod_status(pod, &cur, host_ip, pod_ip, now, false);
    PodPlan {
        status: changed(&cur, status),
        delete: false,
        requeue_after: wake.map(|w| until(now, w)),
    }
}

fn changed(cur: &PodStatus, new: PodStatus) -> Option<PodStatus> {
    let a = serde_json::to_value(cur).ok();
    let b = serde_json::to_value(&new).ok();
    (a != b).then_some(new)
}

/// From `now` until `at`, plus a little so that a timer never fires early.
fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = Duration::try_from(at.duration_since(now)).unwrap_or_default();
    d + Duration::from_millis(20)
}

/// `t` without its fraction of a second (API times are whole seconds).
fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

fn probe_delay(p: Option<&Probe>) -> Option<SignedDuration> {
    p.map(|p| SignedDuration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as i64))
}

fn min_time(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// FNV-1a: stable made-up ids.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

fn hex64(parts: &[&str]) -> String {
    (0..4u8)
        .map(|i| format!("{:016x}", fnv(&[&parts.join("/"), &i.to_string()])))
        .collect()
}

/// `repo@sha256:...` for an image reference.
pub fn image_id(image: &str) -> String {
    if image.contains("@sha256:") {
        return image.to_owned();
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let repo = match image[slash..].find(':') {
        Some(i) => &image[..slash + i],
        None => image,
    };
    format!("{repo}@sha256:{}", hex64(&[image]))
}

fn container_id(pod_uid: &str, name: &str, restarts: i32) -> String {
    format!(
        "simulated://{}",
        hex64(&[pod_uid, name, &restarts.to_string()])
    )
}

fn terminated(
    code: i32,
    started: Timestamp,
    finished: Timestamp,
    id: &str,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(if code == 0 { "Completed" } else { "Error" }.to_owned()),
        started_at: Some(Time(started)),
        finished_at: Some(Time(finished)),
        container_id: Some(id.to_owned()),
        ..ContainerStateTerminated::default()
    }
}

/// One container's next status.
struct ContainerStep {
    status: ContainerStatus,
    wake: Option<Timestamp>,
}

/// Moves one container on: start, exit (annotations), restart (policy),
/// readiness (probe delays); `killed`: it is stopped for the pod's
/// deletion.
#[allow(clippy::too_many_arguments)]
fn container_step(
    c: &Container,
    prev: Option<&ContainerStatus>,
    pod_uid: &str,
    restart_policy: &str,
    exit: Option<Exit>,
    killed: bool,
    now: Timestamp,
) -> ContainerStep {
    let now_s = whole_seconds(now);
    let image = c.image.clone().unwrap_or_default();
    let mut restarts = prev.map_or(0, |p| p.restart_count);
    let mut last_state = prev.and_then(|p| p.last_state.clone());
    let prev_state = prev.and_then(|p| p.state.as_ref());
    let mut started: Option<Timestamp> = prev_state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref())
        .map(|t| t.0);
    let mut ended: Option<ContainerStateTerminated> = prev_state.and_then(|s| s.terminated.clone());
    let id = |restarts: i32| container_id(pod_uid, &c.name, restarts);

    // A new image: the running container is replaced.
    if let (Some(s), Some(p)) = (started, prev) {
        if !killed && p.image != image {
            last_state = Some(ContainerState {
                terminated: Some(terminated(0, s, now_s, &id(restarts))),
                ..ContainerState::default()
            });
            restarts += 1;
            started = Some(now_s);
        }
    }
    if started.is_none() && ended.is_none() {
        started = Some(now_s);
    }
    // Its run time is up.
    if let (Some(s), Some(exit)) = (started, exit) {
        let end = s + exit.after;
        if !killed && now >= end {
            ended = Some(terminated(exit.code, s, whole_seconds(end), &id(restarts)));
            started = None;
        }
    }
    if killed {
        if let Some(s) = started.take() {
            ended = Some(terminated(KILLED_EXIT_CODE, s, now_s, &id(restarts)));
        }
    } else if let Some(t) = &ended {
        let restart = match restart_policy {
            "Never" => false,
            "OnFailure" => t.exit_code != 0,
            _ => true,
        };
        if restart {
            last_state = Some(ContainerState {
                terminated: ended.take(),
                ..ContainerState::default()
            });
            restarts += 1;
            started = Some(now_s);
        }
    }
    let mut wake = None;
    let (ready, is_started) = match started {
        Some(s) => {
            if let Some(exit) = exit {
                wake = min_time(wake, s + exit.after);
            }
            let startup_at = probe_delay(c.startup_probe.as_ref()).map(|d| s + d);
            let is_started = startup_at.is_none_or(|t| now >= t);
            let ready_at = probe_delay(c.readiness_probe.as_ref())
                .map(|d| s + d)
                .into_iter()
                .chain(startup_at)
                .max();
            let ready = ready_at.is_none_or(|t| now >= t);
            for t in [startup_at, ready_at].into_iter().flatten() {
                if now < t {
                    wake = min_time(wake, t);
                }
            }
            (ready, is_started)
        }
        None => (false, false),
    };
    let state = match started {
        Some(s) => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(s)),
            }),
            ..ContainerState::default()
        },
        None => ContainerState {
            terminated: ended,
            ..ContainerState::default()
        },
    };
    let mut status = prev.cloned().unwrap_or_default();
    status.name = c.name.clone();
    status.image_id = image_id(&image);
    status.image = image;
    status.container_id = Some(id(restarts));
    status.ready = ready;
    status.started = Some(is_started);
    status.restart_count = restarts;
    status.last_state = last_state;
    status.state = Some(state);
    ContainerStep { status, wake }
}

/// An init container: run to completion at once (or, a sidecar with
/// `restartPolicy: Always`, keep running).
fn init_container_step(
    c: &Container,
    prev: Option<&ContainerStatus>,
    pod_uid: &str,
    start: Timestamp,
    killed: bool,
    now: Timestamp,
) -> ContainerStep {
    if c.restart_policy.as_deref() == Some("Always") {
        return container_step(c, prev, pod_uid, "Always", None, killed, now);
    }
    let image = c.image.clone().unwrap_or_default();
    let id = container_id(pod_uid, &c.name, 0);
    let done = prev
        .and_then(|p| p.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| terminated(0, start, start, &id));
    let mut status = prev.cloned().unwrap_or_default();
    status.name = c.name.clone();
    status.image_id = image_id(&image);
    status.image = image;
    status.container_id = Some(done.container_id.clone().unwrap_or(id));
    status.ready = done.exit_code == 0;
    status.started = Some(false);
    status.state = Some(ContainerState {
        terminated: Some(done),
        ..ContainerState::default()
    });
    ContainerStep { status, wake: None }
}

fn condition(
    cur: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = cur
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(whole_seconds(now)));
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        last_transition_time: Some(since),
        ..PodCondition::default()
    }
}

/// The pod's next status and when to look again; `killed`: its containers
/// are stopped for deletion.
fn pod_status(
    pod: &Pod,
    cur: &PodStatus,
    host_ip: &str,
    pod_ip: Option<&str>,
    now: Timestamp,
    killed: bool,
) -> (PodStatus, Option<Timestamp>) {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let exit = exit_of(pod);
    let start = cur
        .start_time
        .as_ref()
        .map_or_else(|| whole_seconds(now), |t| t.0);
    let mut wake = None;

    let prev_init = cur.init_container_statuses.clone().unwrap_or_default();
    let mut init_statuses = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let prev = prev_init.iter().find(|s| s.name == c.name);
        let step = init_container_step(c, prev, uid, start, killed, now);
        wake = step.wake.map_or(wake, |w| min_time(wake, w));
        init_statuses.push(step.status);
    }

    let prev_main = cur.container_statuses.clone().unwrap_or_default();
    let mut containers: Vec<&Container> = spec.containers.iter().collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut statuses = Vec::new();
    for c in containers {
        let prev = prev_main.iter().find(|s| s.name == c.name);
        let step = container_step(c, prev, uid, policy, exit, killed, now);
        wake = step.wake.map_or(wake, |w| min_time(wake, w));
        statuses.push(step.status);
    }

    let ended = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let phase = if statuses.iter().any(|s| ended(s).is_none()) {
        "Running"
    } else if statuses.iter().all(|s| ended(s) == Some(0)) {
        "Succeeded"
    } else {
        "Failed"
    };
    let terminal = phase != "Running";
    let unready: Vec<&str> = statuses
        .iter()
        .chain(init_statuses.iter().filter(|s| {
            spec.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == s.name && c.restart_policy.as_deref() == Some("Always"))
        }))
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let conds = cur.conditions.clone().unwrap_or_default();
    let gate_unready = spec.readiness_gates.iter().flatten().find(|g| {
        !conds
            .iter()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let containers_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let (containers_ready, ready) = if terminal {
        let c = (false, Some("PodCompleted"), None);
        (c.clone(), c)
    } else if !unready.is_empty() {
        let c = (false, Some("ContainersNotReady"), Some(containers_msg));
        (c.clone(), c)
    } else if let Some(g) = gate_unready {
        let status = conds
            .iter()
            .find(|c| c.type_ == g.condition_type)
            .map_or("", |c| c.status.as_str());
        let msg = format!(
            "the status of pod readiness gate \"{}\" is not \"True\", but {status}",
            g.condition_type
        );
        (
            (true, None, None),
            (false, Some("ReadinessGatesNotReady"), Some(msg)),
        )
    } else {
        ((true, None, None), (true, None, None))
    };
    const OURS: [&str; 5] = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    let mut conditions = vec![
        condition(&conds, OURS[0], !terminal, None, None, now),
        condition(&conds, OURS[1], true, None, None, now),
        condition(&conds, OURS[2], ready.0, ready.1, ready.2, now),
        condition(
            &conds,
            OURS[3],
            containers_ready.0,
            containers_ready.1,
            containers_ready.2,
            now,
        ),
        condition(&conds, OURS[4], true, None, None, now),
    ];
    conditions.extend(
        conds
            .iter()
            .filter(|c| !OURS.contains(&c.type_.as_str()))
            .cloned(),
    );

    let mut st = cur.clone();
    st.phase = Some(phase.to_owned());
    st.conditions = Some(conditions);
    st.host_ip = Some(host_ip.to_owned());
    st.host_ips = Some(vec![HostIP {
        ip: host_ip.to_owned(),
    }]);
    if let Some(ip) = pod_ip {
        st.pod_ip = Some(ip.to_owned());
        st.pod_ips = Some(vec![PodIP { ip: ip.to_owned() }]);
    }
    st.start_time = Some(Time(start));
    if st.qos_class.is_none() {
        st.qos_class = Some(qos_class(&spec).to_owned());
    }
    st.container_statuses = Some(statuses);
    if !init_statuses.is_empty() {
        st.init_container_statuses = Some(init_statuses);
    }
    (st, if terminal { None } else { wake })
}

// ---------------------------------------------------------------------------
// Node status (pure)

/// Node `i`'s status at `now`; `current` keeps condition transition times.
pub fn node_status(
    config: &Config,
    i: usize,
    ip: Ipv4Addr,
    current: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let name = config.node_name(i);
    let now_s = whole_seconds(now);
    let prev = current
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let quantities = |m: &BTreeMap<String, String>| -> BTreeMap<String, Quantity> {
        m.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    };
    let id = hex64(&[&name]);
    NodeStatus {
        capacity: Some(quantities(&config.capacity)),
        allocatable: Some(quantities(
            config.allocatable.as_ref().unwrap_or(&config.capacity),
        )),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: name.clone(),
            },
        ]),
        conditions: Some(crate::node::healthy_conditions(&prev, now_s)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".to_owned(),
            boot_id: uuid_like(&id[..32]),
            container_runtime_version: RUNTIME_VERSION.to_owned(),
            kernel_version: "6.1.0-rkube-simulated".to_owned(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            machine_id: id[32..].to_owned(),
            operating_system: "linux".to_owned(),
            os_image: "rkube simulated node".to_owned(),
            system_uuid: uuid_like(&id[32..]),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

fn uuid_like(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether the node's status must be written: it differs from `desired`
/// in more than heartbeat times, or the last heartbeat is older than
/// `report_interval`.
pub fn node_status_stale(
    desired: &NodeStatus,
    current: Option<&NodeStatus>,
    now: Timestamp,
    report_interval: Duration,
) -> bool {
    let Some(current) = current else { return true };
    let strip = |s: &NodeStatus| {
        let mut v = json!({
            "capacity": s.capacity, "allocatable": s.allocatable, "addresses": s.addresses,
            "conditions": s.conditions, "daemonEndpoints": s.daemon_endpoints, "nodeInfo": s.node_info,
        });
        if let Some(cs) = v["conditions"].as_array_mut() {
            for c in cs {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastHeartbeatTime");
                }
            }
        }
        v
    };
    if strip(desired) != strip(current) {
        return true;
    }
    let last = current
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let max = SignedDuration::try_from(report_interval).unwrap_or(SignedDuration::MAX);
    last.is_none_or(|t| now.duration_since(t) >= max)
}

// ---------------------------------------------------------------------------
// The running nodes

struct SimNode {
    name: String,
    ip: Ipv4Addr,
    default_pod_cidr: Cidr,
    stopped: AtomicBool,
    registered: AtomicBool,
    ipam: Mutex<Ipam>,
}

struct Shared {
    client: kube::Client,
    config: Config,
    nodes: Vec<SimNode>,
    by_name: HashMap<String, usize>,
    node_store: Store<Node>,
    pod_store: Store<Pod>,
    queue: WorkQueue<String>,
    permits: Arc<Semaphore>,
    /// Heartbeat failures since the last summary (logged once a round).
    failures: std::sync::atomic::AtomicUsize,
    last_failure: Mutex<String>,
}

/// Running simulated nodes. Dropping the handle stops them all.
pub struct SimulatedNodes {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimulatedNodes {
    /// Registers the nodes (waiting until each has been tried once) and
    /// starts their heartbeats and pod handling.
    pub async fn start(client: kube::Client, config: Config) -> anyhow::Result<SimulatedNodes> {
        let mut nodes = Vec::with_capacity(config.count);
        let mut by_name = HashMap::with_capacity(config.count);
        for i in 0..config.count {
            let name = config.node_name(i);
            by_name.insert(name.clone(), i);
            nodes.push(SimNode {
                name,
                ip: config.node_ip(i)?,
                default_pod_cidr: config.default_pod_cidr(i)?,
                stopped: AtomicBool::new(false),
                registered: AtomicBool::new(false),
                ipam: Mutex::new(Ipam::default()),
            });
        }
        let node_informer =
            Informer::new(Api::<Node>::all(client.clone()), watcher::Config::default());
        let pod_informer = Informer::new(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields("spec.nodeName!="),
        );
        let shared = Arc::new(Shared {
            client,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            failures: Default::default(),
            last_failure: Default::default(),
            config,
            nodes,
            by_name,
            node_store: node_informer.store(),
            pod_store: pod_informer.store(),
            queue: WorkQueue::new(),
        });
        let mut tasks = vec![node_informer.start()];
        let mut handle = SimulatedNodes {
            shared: shared.clone(),
            tasks: Vec::new(),
        };
        node_informer.wait_synced().await;

        let began = std::time::Instant::now();
        let count = shared.nodes.len();
        let failed = register_all(&shared).await;
        tracing::info!(
            nodes = count,
            failed,
            prefix = shared.config.prefix,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "simulated nodes registered"
        );
        if failed > 0 {
            tracing::warn!(
                failed,
                "some nodes could not be registered yet; retrying on their heartbeats"
            );
        }

        {
            let shared = shared.clone();
            pod_informer.on_change(move |change| shared.pod_changed(change));
        }
        tasks.push(pod_informer.start());
        pod_informer.wait_synced().await;
        {
            let shared = shared.clone();
            let workers = shared.config.pod_workers;
            tasks.push(tokio::spawn(run_workers(
                shared.queue.clone(),
                workers,
                "simulated-pods",
                move |key: String| reconcile_pod(shared.clone(), key),
            )));
        }
        tasks.push(tokio::spawn(heartbeats(shared.clone())));
        handle.tasks = tasks;
        Ok(handle)
    }

    /// The node names, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Makes the node fall silent, as if its host died: no more heartbeats,
    /// its pods are left as they are. False for a name not ours.
    pub fn stop_node(&self, name: &str) -> bool {
        match self.shared.by_name.get(name) {
            Some(&i) => {
                self.shared.nodes[i].stopped.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Brings a stopped node back: it heartbeats at once and its pods are
    /// looked at again. False for a name not ours.
    pub fn resume_node(&self, name: &str) -> bool {
        let Some(&i) = self.shared.by_name.get(name) else {
            return false;
        };
        if self.shared.nodes[i].stopped.swap(false, Ordering::SeqCst) {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let _permit = shared.permits.clone().acquire_owned().await;
                heartbeat(&shared, i).await;
            });
            for pod in self.shared.pod_store.state() {
                if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name) {
                    self.shared.queue.add(runtime::key_of(&pod.metadata));
                }
            }
        }
        true
    }

    /// Whether the node is stopped.
    pub fn is_stopped(&self, name: &str) -> bool {
        self.shared
            .by_name
            .get(name)
            .is_some_and(|&i| self.shared.nodes[i].stopped.load(Ordering::SeqCst))
    }

    /// Stops every node (as dropping the handle does).
    pub fn shutdown(self) {}
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.shared.queue.shut_down();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Registers the nodes and runs them until the process ends.
pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let _nodes = SimulatedNodes::start(client, config).await?;
    futures::future::pending::<()>().await;
    Ok(())
}

impl Shared {
    /// Counts a failed heartbeat request (one summary a round, not a line
    /// per node: thousands of nodes fail together when the server is away).
    fn heartbeat_failed(&self, node: &str, error: &dyn std::fmt::Display, what: &str) {
        tracing::debug!(node, error = %error, "{what}");
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock().unwrap() = format!("{node}: {what}: {error}");
    }

    fn pod_changed(&self, change: &Change<Pod>) {
        let pod = change.object();
        let Some(&i) = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| self.by_name.get(n))
        else {
            return;
        };
        let node = &self.nodes[i];
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let status = pod.status.as_ref();
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        {
            let mut ipam = node.ipam.lock().unwrap();
            if matches!(change, Change::Deleted(_)) || terminal {
                ipam.release(uid);
            } else if !host_network {
                if let Some(ip) = status
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse().ok())
                {
                    ipam.observe(uid, ip);
                }
            }
        }
        if !matches!(change, Change::Deleted(_)) && !node.stopped.load(Ordering::SeqCst) {
            self.queue.add(runtime::key_of(&pod.metadata));
        }
    }

    /// The node's pod range: spec.podCIDR when set, else the made-up one.
    fn pod_cidr(&self, i: usize) -> Cidr {
        let node = &self.nodes[i];
        self.node_store
            .get(&ObjectRef::new(&node.name))
            .and_then(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(Cidr::parse))
            .filter(|c| c.prefix <= 30)
            .unwrap_or(node.default_pod_cidr)
    }
}

async fn reconcile_pod(shared: Arc<Shared>, key: String) -> Result<Next, kube::Error> {
    let (ns, name) = runtime::split_key(&key);
    let ns = ns.unwrap_or_default();
    let Some(pod) = shared.pod_store.get(&ObjectRef::new(name).within(ns)) else {
        return Ok(Next::Done);
    };
    let Some(&i) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|n| shared.by_name.get(n))
    else {
        return Ok(Next::Done);
    };
    let node = &shared.nodes[i];
    if node.stopped.load(Ordering::SeqCst) {
        return Ok(Next::Done);
    }
    let host_ip = node.ip.to_string();
    let status = pod.status.as_ref();
    let active = pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
    let pod_ip = match status.and_then(|s| s.pod_ip.clone()) {
        Some(ip) => Some(ip),
        None if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) => {
            Some(host_ip.clone())
        }
        None if active => {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let range = shared.pod_cidr(i);
            match node.ipam.lock().unwrap().assign(uid, range) {
                Some(ip) => Some(ip.to_string()),
                None => {
                    tracing::warn!(
                        node = node.name,
                        pod = key,
                        "no pod address left in {range:?}"
                    );
                    return Ok(Next::After(Duration::from_secs(30)));
                }
            }
        }
        None => None,
    };
    let plan = plan_pod(&pod, &host_ip, pod_ip.as_deref(), Timestamp::now());
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), ns);
    if let Some(status) = plan.status {
        let mut new = (*pod).clone();
        new.status = Some(status);
        let _permit = shared.permits.acquire().await;
        match api.replace_status(name, &PostParams::default(), &new).await {
            Ok(_) => {}
            // Gone, or changed meanwhile: the watch brings the news (and
            // the key back).
            Err(e) if is_not_found(&e) || is_conflict(&e) => return Ok(Next::Done),
            Err(e) => return Err(e),
        }
    }
    if plan.delete {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let _permit = shared.permits.acquire().await;
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(plan.requeue_after.map_or(Next::Done, Next::After))
}

/// Registers every node, `max_in_flight` at a time; returns how many
/// failed (they are tried again on their heartbeats).
async fn register_all(shared: &Arc<Shared>) -> usize {
    use futures::StreamExt;
    let results: Vec<bool> = futures::stream::iter(0..shared.nodes.len())
        .map(|i| {
            let shared = shared.clone();
            async move {
                let _permit = shared.permits.acquire().await;
                match register(&shared, i).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::debug!(node = shared.nodes[i].name, error = %e, "registering node failed; retrying on its heartbeat");
                        false
                    }
                }
            }
        })
        .buffer_unordered(shared.config.max_in_flight.max(1))
        .collect()
        .await;
    results.iter().filter(|ok| !**ok).count()
}

/// Creates node `i` (or adopts it), writes its status and its Lease.
async fn register(shared: &Shared, i: usize) -> anyhow::Result<()> {
    let cfg = &shared.config;
    let node = &shared.nodes[i];
    let api: Api<Node> = Api::all(shared.client.clone());
    let labels = cfg.node_labels(i);
    let existing = match shared.node_store.get(&ObjectRef::new(&node.name)) {
        Some(n) => Some((*n).clone()),
        None => {
            let new = Node {
                metadata: ObjectMeta {
                    name: Some(node.name.clone()),
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        "node.alpha.kubernetes.io/ttl".to_owned(),
                        "0".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
                    ..NodeSpec::default()
                }),
                status: None,
            };
            match api.create(&PostParams::default(), &new).await {
                Ok(created) => {
                    let status = node_status(cfg, i, node.ip, None, Timestamp::now());
                    api.patch_status(
                        &node.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await?;
                    renew_lease(shared, i, created.metadata.uid.as_deref(), false).await?;
                    node.registered.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => Some(api.get(&node.name).await?),
                Err(e) => return Err(e.into()),
            }
        }
    };
    let existing = existing.expect("node exists");
    let have = existing.metadata.labels.clone().unwrap_or_default();
    if labels.iter().any(|(k, v)| have.get(k) != Some(v)) {
        api.patch(
            &node.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await?;
    }
    let status = node_status(cfg, i, node.ip, existing.status.as_ref(), Timestamp::now());
    api.patch_status(
        &node.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await?;
    renew_lease(shared, i, existing.metadata.uid.as_deref(), true).await?;
    node.registered.store(true, Ordering::SeqCst);
    Ok(())
}

/// Renews node `i`'s Lease, creating it when it is missing.
async fn renew_lease(
    shared: &Shared,
    i: usize,
    node_uid: Option<&str>,
    exists: bool,
) -> Result<(), kube::Error> {
    crate::node::renew_lease(
        &shared.client,
        &shared.nodes[i].name,
        node_uid,
        shared.config.lease_duration_seconds,
        exists,
    )
    .await
}

/// One heartbeat of node `i`: registration if it has not succeeded yet,
/// the Lease, and the status when it is stale.
async fn heartbeat(shared: &Shared, i: usize) {
    let node = &shared.nodes[i];
    if node.stopped.load(Ordering::SeqCst) {
        return;
    }
    if !node.registered.load(Ordering::SeqCst) {
        if let Err(e) = register(shared, i).await {
            shared.heartbeat_failed(&node.name, &e, "registering node failed");
        }
        return;
    }
    // A node deleted by someone else stays deleted (and its Lease, which
    // the garbage collector removes with it).
    let Some(current) = shared.node_store.get(&ObjectRef::new(&node.name)) else {
        return;
    };
    if let Err(e) = renew_lease(shared, i, current.metadata.uid.as_deref(), true).await {
        shared.heartbeat_failed(&node.name, &e, "renewing lease failed");
    }
    let now = Timestamp::now();
    let desired = node_status(&shared.config, i, node.ip, current.status.as_ref(), now);
    if node_status_stale(
        &desired,
        current.status.as_ref(),
        now,
        shared.config.status_report_interval,
    ) {
        let api: Api<Node> = Api::all(shared.client.clone());
        let patch = Patch::Merge(json!({"status": desired}));
        match api
            .patch_status(&node.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => shared.heartbeat_failed(&node.name, &e, "writing node status failed"),
        }
    }
}

/// Heartbeats every node once per interval, spread evenly over it, with at
/// most `max_in_flight` heartbeats running.
async fn heartbeats(shared: Arc<Shared>) {
    let n = shared.nodes.len();
    if n == 0 {
        return;
    }
    let interval = shared
        .config
        .heartbeat_interval
        .max(Duration::from_millis(10));
    let mut round = tokio::time::Instant::now();
    loop {
        for i in 0..n {
            let due = round + interval.mul_f64(i as f64 / n as f64);
            tokio::time::sleep_until(due).await;
            if shared.nodes[i].stopped.load(Ordering::SeqCst) {
                continue;
            }
            let Ok(permit) = shared.permits.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                heartbeat(&shared, i).await;
                drop(permit);
            });
        }
        let failed = shared.failures.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = shared.last_failure.lock().unwrap().clone();
            tracing::warn!(failed, last, "heartbeat requests failed in the last round");
        }
        round += interval;
        let now = tokio::time::Instant::now();
        if round < now {
            // Fell behind by more than a round: start the next one now.
            round = now;
        }
        tokio::time::sleep_until(round).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodReadinessGate, ResourceRequirements};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_750_000_000 + secs).unwrap()
    }

    fn container(name: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: Some("nginx:1.27".to_owned()),
            ..Container::default()
        }
    }

    fn pod(policy: &str, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".to_owned()),
                namespace: Some("default".to_owned()),
                uid: Some("uid-1".to_owned()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("sim-0".to_owned()),
                restart_policy: Some(policy.to_owned()),
                containers: vec![container("web")],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".to_owned()),
                ..PodStatus::default()
            }),
        }
    }

    /// Plans at `at` and applies the status written, as the API would.
    fn step(pod: &mut Pod, at: Timestamp) -> PodPlan {
        let plan = plan_pod(pod, "10.200.0.1", Some("10.128.0.5"), at);
        if let Some(s) = &plan.status {
            // Round-trip through JSON: times become whole seconds.
            let s: PodStatus = serde_json::from_value(serde_json::to_value(s).unwrap()).unwrap();
            pod.status = Some(s);
        }
        plan
    }

    fn status(pod: &Pod) -> &PodStatus {
        pod.status.as_ref().unwrap()
    }

    fn phase(pod: &Pod) -> &str {
        status(pod).phase.as_deref().unwrap()
    }

    fn cond<'a>(pod: &'a Pod, type_: &str) -> &'a PodCondition {
        status(pod)
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    fn main_status(pod: &Pod) -> &ContainerStatus {
        &status(pod).container_statuses.as_ref().unwrap()[0]
    }

    fn exit_code(pod: &Pod) -> Option<i32> {
        main_status(pod)
            .state
            .as_ref()?
            .terminated
            .as_ref()
            .map(|t| t.exit_code)
    }

    #[test]
    fn quantities() {
        for (q, want) in [
            ("1", Some(1_000_000_000)),
            ("500m", Some(500_000_000)),
            ("0.5", Some(500_000_000)),
            ("1000m", Some(1_000_000_000)),
            ("1Ki", Some(1_024_000_000_000)),
            ("1Gi", Some((1i128 << 30) * 1_000_000_000)),
            ("2k", Some(2_000_000_000_000)),
            ("1e3", Some(1_000_000_000_000)),
            ("1n", Some(1)),
            ("0.1n", Some(1)),
            ("-1", Some(-1_000_000_000)),
            ("", None),
            ("abc", None),
            ("1Qi", None),
        ] {
            assert_eq!(quantity_nanos(q), want, "{q}");
        }
    }

    #[test]
    fn qos_classes() {
        fn c(name: &str, req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
            let m = |x: &[(&str, &str)]| {
                (!x.is_empty()).then(|| {
                    x.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect()
                })
            };
            Container {
                name: name.to_owned(),
                resources: Some(ResourceRequirements {
                    requests: m(req),
                    limits: m(lim),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }
        }
        let full = [("cpu", "1"), ("memory", "1Gi")];
        let cases: Vec<(&str, Vec<Container>, Vec<Container>, &str)> = vec![
            ("nothing", vec![container("a")], vec![], "BestEffort"),
            (
                "only storage",
                vec![c("a", &[("ephemeral-storage", "1Gi")], &[])],
                vec![],
                "BestEffort",
            ),
            (
                "zero requests",
                vec![c("a", &[("cpu", "0")], &[])],
                vec![],
                "BestEffort",
            ),
            (
                "requests only",
                vec![c("a", &[("cpu", "100m")], &[])],
                vec![],
                "Burstable",
            ),
            (
                "limits only",
                vec![c("a", &[], &full)],
                vec![],
                "Guaranteed",
            ),
            ("equal", vec![c("a", &full, &full)], vec![], "Guaranteed"),
            (
                "equal in other units",
                vec![c("a", &[("cpu", "1000m"), ("memory", "1024Mi")], &full)],
                vec![],
                "Guaranteed",
            ),
            (
                "requests below limits",
                vec![c("a", &[("cpu", "500m"), ("memory", "1Gi")], &full)],
                vec![],
                "Burstable",
            ),
            (
                "cpu limit only",
                vec![c("a", &[], &[("cpu", "1")])],
                vec![],
                "Burstable",
            ),
            (
                "one of two",
                vec![c("a", &full, &full), container("b")],
                vec![],
                "Burstable",
            ),
            (
                "both",
                vec![c("a", &full, &full), c("b", &[], &full)],
                vec![],
                "Guaranteed",
            ),
            (
                "init without limits",
                vec![c("a", &full, &full)],
                vec![container("i")],
                "Burstable",
            ),
            (
                "init with limits",
                vec![c("a", &full, &full)],
                vec![c("i", &[], &full)],
                "Guaranteed",
            ),
        ];
        for (name, containers, init, want) in cases {
            let spec = PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..PodSpec::default()
            };
            assert_eq!(qos_class(&spec), want, "{name}");
        }
    }

    #[test]
    fn addresses() {
        let c = Cidr::parse("10.200.0.0/16").unwrap();
        assert_eq!(c.host(0), None);
        assert_eq!(c.host(1), Some(Ipv4Addr::new(10, 200, 0, 1)));
        assert_eq!(c.host(256), Some(Ipv4Addr::new(10, 200, 1, 0)));
        assert_eq!(c.host(65535), None);
        assert_eq!(
            Cidr::parse("10.1.2.3/8").unwrap().network,
            u32::from(Ipv4Addr::new(10, 0, 0, 0))
        );
        assert_eq!(Cidr::parse("10.1.2.3"), None);
        assert_eq!(Cidr::parse("10.1.2.3/33"), None);
        let pods = Cidr::parse("10.128.0.0/9").unwrap();
        assert_eq!(pods.subnet(24, 0), Cidr::parse("10.128.0.0/24"));
        assert_eq!(pods.subnet(24, 300), Cidr::parse("10.129.44.0/24"));
        assert_eq!(pods.subnet(24, 1 << 15), None);
        assert!(pods.contains(Ipv4Addr::new(10, 200, 0, 1)));
        assert!(!pods.contains(Ipv4Addr::new(10, 0, 0, 1)));

        let cfg = Config::default();
        let ips: HashSet<Ipv4Addr> = (0..5000).map(|i| cfg.node_ip(i).unwrap()).collect();
        assert_eq!(ips.len(), 5000);
        assert_eq!(cfg.node_ip(0).unwrap(), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(cfg.node_ip(4999).unwrap(), Ipv4Addr::new(10, 200, 19, 136));
        assert!(cfg.node_ip(70_000).is_err());
        assert_eq!(
            cfg.default_pod_cidr(1).unwrap(),
            Cidr::parse("10.128.1.0/24").unwrap()
        );
        assert_eq!(
            cfg.default_pod_cidr(4999).unwrap(),
            Cidr::parse("10.147.135.0/24").unwrap()
        );
    }

    #[test]
    fn pod_addresses_are_distinct_and_not_reused_at_once() {
        let range = Cidr::parse("10.244.3.0/24").unwrap();
        let mut ipam = Ipam::default();
        let a = ipam.assign("a", range).unwrap();
        let b = ipam.assign("b", range).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 3, 1));
        assert_eq!(b, Ipv4Addr::new(10, 244, 3, 2));
        assert_eq!(ipam.assign("a", range), Some(a), "a pod keeps its address");
        ipam.release("a");
        assert_eq!(ipam.assign("c", range), Some(Ipv4Addr::new(10, 244, 3, 3)));
        // Seen in a status (e.g. after a restart): not handed out again.
        ipam.observe("d", Ipv4Addr::new(10, 244, 3, 4));
        assert_eq!(ipam.assign("e", range), Some(Ipv4Addr::new(10, 244, 3, 5)));
        assert_eq!(ipam.len(), 4);
        // A /30 has two host addresses.
        let small = Cidr::parse("10.0.0.0/30").unwrap();
        let mut ipam = Ipam::default();
        assert!(ipam.assign("a", small).is_some());
        assert!(ipam.assign("b", small).is_some());
        assert_eq!(ipam.assign("c", small), None);
        ipam.release("a");
        assert_eq!(ipam.assign("c", small), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn pending_pod_starts_running_and_ready() {
        let mut p = pod("Always", &[]);
        let plan = step(&mut p, t(0));
        assert!(plan.status.is_some() && !plan.delete && plan.requeue_after.is_none());
        let s = status(&p);
        assert_eq!(phase(&p), "Running");
        assert_eq!(s.host_ip.as_deref(), Some("10.200.0.1"));
        assert_eq!(s.host_ips.as_ref().unwrap()[0].ip, "10.200.0.1");
        assert_eq!(s.pod_ip.as_deref(), Some("10.128.0.5"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.128.0.5");
        assert_eq!(s.start_time, Some(Time(t(0))));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let names: Vec<&str> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert!(s
            .conditions
            .iter()
            .flatten()
            .all(|c| c.status == "True" && c.last_transition_time == Some(Time(t(0)))));
        let c = main_status(&p);
        assert_eq!(c.name, "web");
        assert_eq!(c.image, "nginx:1.27");
        assert!(
            c.image_id.starts_with("nginx@sha256:")
                && c.image_id.len() == "nginx@sha256:".len() + 64
        );
        assert!(c
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("simulated://"));
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            Some(Time(t(0)))
        );
        // Nothing more to do, later either.
        assert_eq!(step(&mut p, t(0)), PodPlan::default());
        assert_eq!(step(&mut p, t(100)), PodPlan::default());
    }

    #[test]
    fn existing_conditions_and_fields_are_kept() {
        let mut p = pod("Always", &[]);
        p.status = Some(PodStatus {
            phase: Some("Pending".to_owned()),
            qos_class: Some("Burstable".to_owned()),
            nominated_node_name: Some("x".to_owned()),
            conditions: Some(vec![
                PodCondition {
                    type_: "PodScheduled".to_owned(),
                    status: "True".to_owned(),
                    last_transition_time: Some(Time(t(-10))),
                    ..PodCondition::default()
                },
                PodCondition {
                    type_: "example.com/gate".to_owned(),
                    status: "False".to_owned(),
                    ..PodCondition::default()
                },
            ]),
            ..PodStatus::default()
        });
        p.spec.as_mut().unwrap().readiness_gates = Some(vec![PodReadinessGate {
            condition_type: "example.com/gate".to_owned(),
        }]);
        step(&mut p, t(0));
        assert_eq!(
            status(&p).qos_class.as_deref(),
            Some("Burstable"),
            "the API server's class stays"
        );
        assert_eq!(status(&p).nominated_node_name.as_deref(), Some("x"));
        assert_eq!(
            cond(&p, "PodScheduled").last_transition_time,
            Some(Time(t(-10)))
        );
        assert_eq!(cond(&p, "example.com/gate").status, "False");
        assert_eq!(cond(&p, "ContainersReady").status, "True");
        let ready = cond(&p, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ReadinessGatesNotReady"))
        );
        // The gate opens.
        for c in p.status.as_mut().unwrap().conditions.as_mut().unwrap() {
            if c.type_ == "example.com/gate" {
                c.status = "True".to_owned();
            }
        }
        step(&mut p, t(3));
        assert_eq!(cond(&p, "Ready").status, "True");
        assert_eq!(cond(&p, "Ready").last_transition_time, Some(Time(t(3))));
    }

    #[test]
    fn readiness_waits_for_the_probe_delay() {
        for (startup, readiness, ready_after) in [
            (None, Some(5), 5),
            (Some(3), None, 3),
            (Some(3), Some(2), 3),
            (Some(0), Some(0), 0),
        ] {
            let mut p = pod("Always", &[]);
            let c = &mut p.spec.as_mut().unwrap().containers[0];
            c.startup_probe = startup.map(|d| Probe {
                initial_delay_seconds: Some(d),
                ..Probe::default()
            });
            c.readiness_probe = readiness.map(|d| Probe {
                initial_delay_seconds: Some(d),
                ..Probe::default()
            });
            let plan = step(&mut p, t(0));
            if ready_after == 0 {
                assert!(main_status(&p).ready);
                continue;
            }
            let wait = plan.requeue_after.expect("a timer");
            assert!(
                wait >= Duration::from_secs(ready_after)
                    && wait < Duration::from_secs(ready_after + 1),
                "{wait:?}"
            );
            assert!(!main_status(&p).ready);
            assert_eq!(
                cond(&p, "Ready").reason.as_deref(),
                Some("ContainersNotReady")
            );
            assert_eq!(
                cond(&p, "ContainersReady").message.as_deref(),
                Some("containers with unready status: [web]")
            );
            assert_eq!(phase(&p), "Running");
            assert!(step(&mut p, t(ready_after as i64 - 1)).status.is_none());
            let plan = step(&mut p, t(ready_after as i64));
            assert!(plan.status.is_some() && plan.requeue_after.is_none());
            assert!(main_status(&p).ready);
            assert_eq!(main_status(&p).started, Some(true));
            assert_eq!(cond(&p, "Ready").status, "True");
            assert_eq!(
                cond(&p, "Ready").last_transition_time,
                Some(Time(t(ready_after as i64)))
            );
        }
    }

    #[test]
    fn exit_annotations_by_restart_policy() {
        // (policy, exit code, run seconds, phase after the run, restarts, exit code seen)
        let cases = [
            ("Never", "0", None, "Succeeded", 0, Some(0)),
            ("Never", "3", None, "Failed", 0, Some(3)),
            ("OnFailure", "0", None, "Succeeded", 0, Some(0)),
            ("OnFailure", "3", Some("2"), "Running", 1, None),
            ("Always", "0", None, "Running", 1, None),
            ("Always", "3", Some("0.5"), "Running", 1, None),
        ];
        for (policy, code, run, want_phase, restarts, want_exit) in cases {
            let mut ann = vec![(EXIT_CODE_ANNOTATION, code)];
            if let Some(r) = run {
                ann.push((RUN_SECONDS_ANNOTATION, r));
            }
            let run_secs: f64 = run.unwrap_or("1").parse().unwrap();
            let mut p = pod(policy, &ann);
            let plan = step(&mut p, t(0));
            assert_eq!(phase(&p), "Running", "{policy} {code}");
            let wait = plan.requeue_after.expect("a timer");
            assert!(
                wait.as_secs_f64() >= run_secs && wait.as_secs_f64() < run_secs + 0.1,
                "{wait:?}"
            );
            let end = t(0) + SignedDuration::from_secs_f64(run_secs);
            let plan = step(&mut p, end);
            assert_eq!(phase(&p), want_phase, "{policy} {code}");
            let c = main_status(&p);
            assert_eq!(c.restart_count, restarts, "{policy} {code}");
            assert_eq!(exit_code(&p), want_exit, "{policy} {code}");
            if let Some(code) = want_exit {
                let term = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
                assert_eq!(
                    term.reason.as_deref(),
                    Some(if code == 0 { "Completed" } else { "Error" })
                );
                assert!(!c.ready);
                assert_eq!(cond(&p, "Ready").reason.as_deref(), Some("PodCompleted"));
                assert_eq!(cond(&p, "PodReadyToStartContainers").status, "False");
                assert_eq!(plan.requeue_after, None);
                // Terminal pods are left alone.
                assert_eq!(
                    step(&mut p, end + SignedDuration::from_secs(60)),
                    PodPlan::default()
                );
            } else {
                let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
                assert_eq!(last.exit_code.to_string(), code);
                assert_ne!(
                    last.container_id, c.container_id,
                    "a restart is a new container"
                );
                assert!(c.ready && c.state.as_ref().unwrap().running.is_some());
                assert!(plan.requeue_after.is_some(), "it exits again");
                // ... and again.
                step(&mut p, end + SignedDuration::from_secs_f64(run_secs + 1.0));
                assert_eq!(main_status(&p).restart_count, 2);
            }
        }
    }

    #[test]
    fn bad_annotations_are_ignored() {
        for ann in [
            vec![(RUN_SECONDS_ANNOTATION, "1")],
            vec![(EXIT_CODE_ANNOTATION, "x")],
            vec![(EXIT_CODE_ANNOTATION, "1"), (RUN_SECONDS_ANNOTATION, "-1")],
        ] {
            let p = pod("Never", &ann);
            assert_eq!(exit_of(&p), None, "{ann:?}");
        }
        assert_eq!(
            exit_of(&pod(
                "Never",
                &[
                    (EXIT_CODE_ANNOTATION, " 2 "),
                    (RUN_SECONDS_ANNOTATION, "2.5")
                ]
            )),
            Some(Exit {
                code: 2,
                after: SignedDuration::from_millis(2500)
            })
        );
    }

    #[test]
    fn init_containers_complete() {
        let mut p = pod("Always", &[]);
        let spec = p.spec.as_mut().unwrap();
        let mut sidecar = container("proxy");
        sidecar.restart_policy = Some("Always".to_owned());
        spec.init_containers = Some(vec![container("setup"), sidecar]);
        step(&mut p, t(0));
        let init = status(&p).init_container_statuses.as_ref().unwrap();
        assert_eq!(init[0].name, "setup");
        let term = init[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (term.exit_code, term.reason.as_deref()),
            (0, Some("Completed"))
        );
        assert_eq!(init[1].name, "proxy");
        assert!(init[1].state.as_ref().unwrap().running.is_some() && init[1].ready);
        assert_eq!(cond(&p, "Initialized").status, "True");
        assert_eq!(cond(&p, "Ready").status, "True");
        assert_eq!(step(&mut p, t(10)), PodPlan::default());
    }

    #[test]
    fn containers_are_listed_by_name_and_image_changes_restart() {
        let mut p = pod("Always", &[]);
        p.spec.as_mut().unwrap().containers = vec![container("b"), container("a")];
        step(&mut p, t(0));
        let names: Vec<&str> = status(&p)
            .container_statuses
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        p.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.28".to_owned());
        step(&mut p, t(5));
        let b = &status(&p).container_statuses.as_ref().unwrap()[1];
        assert_eq!((b.image.as_str(), b.restart_count), ("nginx:1.28", 1));
        assert_eq!(
            b.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            Some(Time(t(5)))
        );
    }

    #[test]
    fn deletion() {
        // Running, deleted with a 30 s grace period at t(10).
        let mut p = pod("Always", &[]);
        step(&mut p, t(0));
        p.metadata.deletion_timestamp = Some(Time(t(40)));
        p.metadata.deletion_grace_period_seconds = Some(30);
        let plan = step(&mut p, t(10));
        assert!(plan.status.is_none() && !plan.delete);
        assert!(plan.requeue_after.unwrap() >= Duration::from_secs(1));
        let plan = step(&mut p, t(11));
        assert!(plan.delete);
        assert_eq!(phase(&p), "Failed");
        assert_eq!(exit_code(&p), Some(KILLED_EXIT_CODE));
        assert_eq!(cond(&p, "Ready").status, "False");
        // The delete failed: it is tried again.
        assert_eq!(
            step(&mut p, t(12)),
            PodPlan {
                delete: true,
                ..PodPlan::default()
            }
        );

        // Grace 0 (forced) or pending pods: at once.
        let mut p = pod("Never", &[]);
        p.metadata.deletion_timestamp = Some(Time(t(0)));
        p.metadata.deletion_grace_period_seconds = Some(0);
        let plan = step(&mut p, t(0));
        assert!(plan.delete);
        assert_eq!(phase(&p), "Failed");

        // Terminal pods only have their deletion finished.
        let mut p = pod("Never", &[(EXIT_CODE_ANNOTATION, "0")]);
        step(&mut p, t(0));
        step(&mut p, t(1));
        assert_eq!(phase(&p), "Succeeded");
        p.metadata.deletion_timestamp = Some(Time(t(5)));
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(
            step(&mut p, t(5)),
            PodPlan {
                delete: true,
                ..PodPlan::default()
            }
        );
        assert_eq!(phase(&p), "Succeeded");
    }

    #[test]
    fn node_status_and_staleness() {
        let cfg = Config {
            zones: vec!["a".into(), "b".into()],
            labels: BTreeMap::from([("tier".into(), "x".into())]),
            ..Config::default()
        };
        let labels = cfg.node_labels(3);
        assert_eq!(labels["kubernetes.io/hostname"], "sim-3");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["beta.kubernetes.io/arch"], "amd64");
        assert_eq!(labels["topology.kubernetes.io/zone"], "b");
        assert_eq!(labels["tier"], "x");

        let ip = cfg.node_ip(3).unwrap();
        let s = node_status(&cfg, 3, ip, None, t(0));
        assert_eq!(
            s.capacity.as_ref().unwrap()["memory"],
            Quantity("32Gi".into())
        );
        assert_eq!(s.allocatable, s.capacity);
        assert_eq!(s.addresses.as_ref().unwrap()[0].address, "10.200.0.4");
        assert_eq!(
            s.node_info.as_ref().unwrap().kubelet_version,
            KUBELET_VERSION
        );
        assert_eq!(
            s.node_info,
            node_status(&cfg, 3, ip, None, t(9)).node_info,
            "ids are stable"
        );
        let ready = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        let report = Duration::from_secs(300);
        assert!(node_status_stale(&s, None, t(0), report));
        // Fresh: only the heartbeat time would change.
        let again = node_status(&cfg, 3, ip, Some(&s), t(10));
        assert!(!node_status_stale(&again, Some(&s), t(10), report));
        assert!(node_status_stale(&again, Some(&s), t(300), report));
        assert_eq!(
            again.conditions.as_ref().unwrap()[3].last_transition_time,
            Some(Time(t(0))),
            "transition times stay"
        );
        // Marked Unknown by the node lifecycle controller: written again,
        // with a new transition time.
        let mut unknown = s.clone();
        for c in unknown.conditions.as_mut().unwrap() {
            c.status = "Unknown".into();
        }
        let desired = node_status(&cfg, 3, ip, Some(&unknown), t(60));
        assert!(node_status_stale(&desired, Some(&unknown), t(60), report));
        assert_eq!(
            desired.conditions.as_ref().unwrap()[3].last_transition_time,
            Some(Time(t(60)))
        );
    }
}
