//! Node-pressure eviction, as the kubelet's eviction manager does it.
//!
//! Every [`MONITOR_PERIOD`] the agent measures the eviction signals
//! ([`observe`]): `memory.available`, `nodefs.available`,
//! `nodefs.inodesFree`, `imagefs.available`, `imagefs.inodesFree` and
//! `pid.available`. [`Manager::synchronize`] compares them with the
//! configured thresholds (`--eviction-hard`, `--eviction-soft` with
//! `--eviction-soft-grace-period`; kubelet's syntax, `<` with a quantity
//! or a percentage of capacity):
//!
//! - a threshold that is met sets its node condition (MemoryPressure,
//!   DiskPressure, PIDPressure) at once; a condition goes back to False
//!   only when no threshold of it has been met for
//!   `--eviction-pressure-transition-period`;
//! - a hard threshold acts at once, a soft one once it has been met for
//!   its grace period. Then the node reclaims first (under disk pressure:
//!   dead containers and unused images), measures again, and only if the
//!   threshold is still met evicts one pod per pass, ranked by [`rank`]:
//!   pods using more than they request first, then lower priority, then
//!   larger usage above the request. Static, mirror and critical pods
//!   (priority >= 2000000000) are never evicted. A hard threshold kills
//!   with a 1 s grace period (the kubelet's), a soft one with
//!   min(`--eviction-max-pod-grace-period`, the pod's) — 0 or less: the
//!   pod's own;
//! - while a pressure condition holds, [`admit`] rejects new pods: all of
//!   them under DiskPressure or PIDPressure, BestEffort ones (not
//!   tolerating the memory-pressure taint) under MemoryPressure;
//! - whatever the node's state, a pod over its own local storage limits
//!   ([`local_storage_violation`]: an emptyDir over its `sizeLimit`, the
//!   pod over the sum of its containers' `ephemeral-storage` limits, a
//!   container's writable layer and logs over its limit) is evicted at
//!   once (grace 0), and that pass evicts nothing else.
//!
//! The decisions here are pure (tested by tables in `eviction/tests.rs`);
//! the measuring is in `eviction/observe.rs`; the agent's loop that acts
//! on them (kill, status, events, reclaim) is in `kubelet.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

pub mod observe;

/// How often signals are measured and thresholds checked (the kubelet's
/// housekeeping interval for eviction).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(10);
/// The grace period a hard threshold kills with (the kubelet's
/// `immediateEvictionGracePeriodSeconds`).
pub const IMMEDIATE_GRACE_SECONDS: i64 = 1;
/// Pods at or above this priority are critical (system-cluster-critical,
/// system-node-critical) and never evicted.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The pod status reason of evicted and rejected pods.
pub const REASON: &str = "Evicted";
/// The default `--eviction-hard`: the kubelet's, with k3s's disk
/// thresholds (5% instead of the kubelet's nodefs 10% / imagefs 15%), so
/// a node on a well-used single disk — the usual small-cluster machine —
/// is not under DiskPressure from the start.
pub const DEFAULT_HARD: &str =
    "memory.available<100Mi,nodefs.available<5%,imagefs.available<5%,nodefs.inodesFree<5%";

/// An eviction signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The resource a pod gives back when evicted for this signal.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::MemoryPressure,
            Signal::PidAvailable => Condition::PIDPressure,
            _ => Condition::DiskPressure,
        }
    }

    /// Whether the signal counts bytes (else: inodes or processes).
    fn bytes(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable
        )
    }

    fn is_disk(self) -> bool {
        self.condition() == Condition::DiskPressure
    }
}

/// A node pressure condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    MemoryPressure,
    DiskPressure,
    PIDPressure,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::MemoryPressure => "MemoryPressure",
            Condition::DiskPressure => "DiskPressure",
            Condition::PIDPressure => "PIDPressure",
        }
    }
}

/// The pressure conditions that are True.
pub type Pressure = BTreeSet<Condition>;

/// A threshold's value: an amount (bytes, inodes, processes) or a
/// fraction of capacity.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Quantity(i128),
    /// Percent of capacity (0 < p <= 100).
    Percentage(f64),
}

/// One eviction threshold: the signal is met when what is available drops
/// below `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// Soft thresholds only: how long it must be met before pods go.
    pub grace_period: Duration,
    pub hard: bool,
    /// `--eviction-minimum-reclaim`: once met, the threshold holds until
    /// this much more than its value is available again.
    pub min_reclaim: Option<Value>,
}

impl Threshold {
    /// The amount the threshold stands for on a resource of `capacity`
    /// (as the kubelet: percentage × capacity, truncated).
    pub fn quantity(&self, capacity: i128) -> i128 {
        match self.value {
            Value::Quantity(q) => q,
            Value::Percentage(p) => (capacity as f64 * p / 100.0) as i128,
        }
    }

    /// Whether `o` meets (crosses) the threshold.
    pub fn met(&self, o: &Observation) -> bool {
        self.quantity(o.capacity) > o.available
    }

    /// Whether `o` is still short of the threshold plus its minimum
    /// reclaim (the kubelet's check of a threshold it already acts on).
    pub fn unresolved(&self, o: &Observation) -> bool {
        let extra = match &self.min_reclaim {
            None => 0,
            Some(Value::Quantity(q)) => *q,
            Some(Value::Percentage(p)) => (o.capacity as f64 * p / 100.0) as i128,
        };
        self.quantity(o.capacity) + extra > o.available
    }
}

/// Parses `--eviction-hard` / `--eviction-soft`: comma-separated
/// `signal<value`, the value a quantity (`100Mi`, `1000`) or a percentage
/// (`10%`; `0%` leaves the signal out). Soft thresholds take their grace
/// periods from `grace` (one each is required).
pub fn parse_thresholds(
    flag: &str,
    s: &str,
    hard: bool,
    grace: &BTreeMap<Signal, Duration>,
) -> Result<Vec<Threshold>, String> {
    let mut out: Vec<Threshold> = Vec::new();
    let mut seen = BTreeSet::new();
    for stmt in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let Some((name, value)) = stmt.split_once('<') else {
            let op = ['>', '=', '!']
                .iter()
                .find(|c| stmt.contains(**c))
                .map_or("none".to_owned(), |c| c.to_string());
            return Err(format!(
                "{flag}: {stmt:?}: unsupported operator {op} (only \"<\" is supported)"
            ));
        };
        let (name, value) = (name.trim(), value.trim());
        let signal = Signal::parse(name).ok_or_else(|| {
            format!(
                "{flag}: unsupported eviction signal {name:?} (known: {})",
                Signal::ALL.map(Signal::name).join(", ")
            )
        })?;
        if !seen.insert(signal) {
            return Err(format!(
                "{flag}: found duplicate eviction threshold for signal {name}"
            ));
        }
        let value = match parse_value(flag, stmt, value)? {
            // 0% leaves the signal out.
            Value::Percentage(0.0) => continue,
            Value::Quantity(q) if q <= 0 => {
                return Err(format!(
                    "{flag}: {stmt:?}: eviction threshold must be positive"
                ))
            }
            v => v,
        };
        let grace_period = if hard {
            Duration::ZERO
        } else {
            *grace.get(&signal).ok_or_else(|| {
                format!("{flag}: no grace period specified for soft eviction threshold {name} (--eviction-soft-grace-period)")
            })?
        };
        out.push(Threshold {
            signal,
            value,
            grace_period,
            hard,
            min_reclaim: None,
        });
    }
    Ok(out)
}

/// An amount in a flag: `percent%` (0 to 100) or a quantity.
fn parse_value(flag: &str, stmt: &str, v: &str) -> Result<Value, String> {
    if let Some(p) = v.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{flag}: {stmt:?}: invalid percentage {v:?}"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!(
                "{flag}: {stmt:?}: percentage must be between 0% and 100%"
            ));
        }
        return Ok(Value::Percentage(p));
    }
    let q =
        Quantity::parse(v).ok_or_else(|| format!("{flag}: {stmt:?}: invalid quantity {v:?}"))?;
    Ok(Value::Quantity(q.value()))
}

/// Parses `--eviction-minimum-reclaim`: `signal=quantity` or
/// `signal=percent%`, comma-separated.
pub fn parse_minimum_reclaims(s: &str) -> Result<BTreeMap<Signal, Value>, String> {
    let flag = "--eviction-minimum-reclaim";
    let mut out = BTreeMap::new();
    for stmt in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (name, v) = stmt
            .split_once('=')
            .ok_or_else(|| format!("{flag}: {stmt:?}: expected signal=value"))?;
        let (name, v) = (name.trim(), v.trim());
        let signal = Signal::parse(name)
            .ok_or_else(|| format!("{flag}: unsupported eviction signal {name:?}"))?;
        let value = match parse_value(flag, stmt, v)? {
            Value::Quantity(q) if q < 0 => {
                return Err(format!(
                    "{flag}: negative reclaim defined for signal {name}"
                ))
            }
            v => v,
        };
        if out.insert(signal, value).is_some() {
            return Err(format!("{flag}: duplicate minimum reclaim for {name}"));
        }
    }
    Ok(out)
}

/// Parses `--eviction-soft-grace-period`: `signal=duration,...`.
pub fn parse_grace_periods(s: &str) -> Result<BTreeMap<Signal, Duration>, String> {
    let flag = "--eviction-soft-grace-period";
    let mut out = BTreeMap::new();
    for stmt in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
        let (name, d) = stmt
            .split_once('=')
            .ok_or_else(|| format!("{flag}: {stmt:?}: expected signal=duration"))?;
        let signal = Signal::parse(name.trim())
            .ok_or_else(|| format!("{flag}: unsupported eviction signal {:?}", name.trim()))?;
        let d = d.trim();
        if d.starts_with('-') {
            return Err(format!(
                "{flag}: {stmt:?}: grace period must not be negative"
            ));
        }
        let d = api::duration::parse(d.trim()).map_err(|e| format!("{flag}: {stmt:?}: {e}"))?;
        if out.insert(signal, d).is_some() {
            return Err(format!(
                "{flag}: duplicate grace period for {}",
                name.trim()
            ));
        }
    }
    Ok(out)
}

/// The eviction settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub thresholds: Vec<Threshold>,
    /// How long a pressure condition stays True after its last threshold
    /// stopped being met.
    pub pressure_transition_period: Duration,
    /// Soft evictions kill with at most this grace period (<= 0: the
    /// pod's own).
    pub max_pod_grace_period: i64,
}

impl Default for Config {
    fn default() -> Config {
        Config::new(DEFAULT_HARD, "", "", "", Duration::from_secs(300), 0)
            .expect("the default thresholds parse")
    }
}

impl Config {
    /// From the flags' values; an error names the flag and what is wrong.
    pub fn new(
        hard: &str,
        soft: &str,
        soft_grace: &str,
        min_reclaim: &str,
        pressure_transition_period: Duration,
        max_pod_grace_period: i64,
    ) -> Result<Config, String> {
        let grace = parse_grace_periods(soft_grace)?;
        let reclaims = parse_minimum_reclaims(min_reclaim)?;
        let mut thresholds = parse_thresholds("--eviction-hard", hard, true, &grace)?;
        let soft = parse_thresholds("--eviction-soft", soft, false, &grace)?;
        if let Some(s) = grace.keys().find(|s| !soft.iter().any(|t| t.signal == **s)) {
            return Err(format!(
                "--eviction-soft-grace-period: {} has a grace period but no --eviction-soft threshold",
                s.name()
            ));
        }
        thresholds.extend(soft);
        for t in &mut thresholds {
            t.min_reclaim = reclaims.get(&t.signal).cloned();
        }
        Ok(Config {
            thresholds,
            pressure_transition_period,
            max_pod_grace_period,
        })
    }

    /// Whether any threshold watches `signal`.
    pub fn watches(&self, signal: Signal) -> bool {
        self.thresholds.iter().any(|t| t.signal == signal)
    }
}

/// What is available of one signal's resource, and its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Observation {
    pub available: i128,
    pub capacity: i128,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// The outcome of one pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The pressure conditions to report.
    pub pressure: Pressure,
    /// The thresholds met (past their grace periods) that call for
    /// reclaiming, the one to act on first in front.
    pub act_on: Vec<Threshold>,
}

/// The kubelet eviction manager's bookkeeping: when thresholds were first
/// met, when conditions were last seen.
#[derive(Debug)]
pub struct Manager {
    pub config: Config,
    /// When each threshold met (or not yet resolved) was first met.
    first_met: HashMap<(Signal, bool), Instant>,
    condition_seen: BTreeMap<Condition, Instant>,
}

impl Manager {
    pub fn new(config: Config) -> Manager {
        Manager {
            config,
            first_met: HashMap::new(),
            condition_seen: BTreeMap::new(),
        }
    }

    /// One pass over the observations at `now`. A threshold met before
    /// stays met until its minimum reclaim is available too.
    pub fn synchronize(&mut self, obs: &Observations, now: Instant) -> Outcome {
        let met: Vec<&Threshold> = self
            .config
            .thresholds
            .iter()
            .filter(|t| {
                obs.get(&t.signal).is_some_and(|o| {
                    t.met(o)
                        || (self.first_met.contains_key(&(t.signal, t.hard)) && t.unresolved(o))
                })
            })
            .collect();
        // When each threshold was first met (kept while it stays met).
        let first_met: HashMap<(Signal, bool), Instant> = met
            .iter()
            .map(|t| {
                let k = (t.signal, t.hard);
                (k, self.first_met.get(&k).copied().unwrap_or(now))
            })
            .collect();
        self.first_met = first_met;
        // Conditions follow every met threshold, grace period or not, and
        // stay for the transition period.
        for t in &met {
            self.condition_seen.insert(t.signal.condition(), now);
        }
        let period = self.config.pressure_transition_period;
        self.condition_seen
            .retain(|_, seen| now.saturating_duration_since(*seen) < period || *seen == now);
        let pressure: Pressure = self.condition_seen.keys().copied().collect();
        let mut act_on: Vec<Threshold> = met
            .into_iter()
            .filter(|t| {
                let since = self.first_met[&(t.signal, t.hard)];
                now.saturating_duration_since(since) >= t.grace_period
            })
            .cloned()
            .collect();
        // Memory first (the kubelet's eviction priority), else in order.
        act_on.sort_by_key(|t| t.signal != Signal::MemoryAvailable);
        Outcome { pressure, act_on }
    }
}

/// Bytes and inodes on a filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsUse {
    pub bytes: u64,
    pub inodes: u64,
}

impl std::ops::Add for FsUse {
    type Output = FsUse;
    fn add(self, o: FsUse) -> FsUse {
        FsUse {
            bytes: self.bytes + o.bytes,
            inodes: self.inodes + o.inodes,
        }
    }
}

/// What one container uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    /// Working set bytes.
    pub memory: Option<u64>,
    /// The writable layer.
    pub rootfs: Option<FsUse>,
    pub logs: Option<FsUse>,
}

/// What one pod uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodUsage {
    pub containers: Vec<ContainerUsage>,
    /// Local volumes on the node filesystem (emptyDir not in memory).
    pub volumes: FsUse,
    /// Each emptyDir volume's bytes by name (`Memory` ones too).
    pub empty_dirs: BTreeMap<String, u64>,
}

impl PodUsage {
    pub fn memory(&self) -> u64 {
        self.containers.iter().filter_map(|c| c.memory).sum()
    }

    /// The pod's disk use that counts for `signal`: with a separate
    /// image filesystem, nodefs holds logs and volumes and imagefs the
    /// writable layers; otherwise all of them count.
    pub fn disk(&self, signal: Signal, separate_imagefs: bool) -> FsUse {
        let (root, rest) = match (signal, separate_imagefs) {
            (Signal::NodeFsAvailable | Signal::NodeFsInodesFree, true) => (false, true),
            (Signal::ImageFsAvailable | Signal::ImageFsInodesFree, true) => (true, false),
            _ => (true, true),
        };
        let mut u = FsUse::default();
        for c in &self.containers {
            if root {
                u = u + c.rootfs.unwrap_or_default();
            }
            if rest {
                u = u + c.logs.unwrap_or_default();
            }
        }
        if rest {
            u = u + self.volumes;
        }
        u
    }

    /// The amount of `signal`'s resource the pod uses.
    fn usage(&self, signal: Signal, separate_imagefs: bool) -> i128 {
        match signal {
            Signal::MemoryAvailable => i128::from(self.memory()),
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => {
                i128::from(self.disk(signal, separate_imagefs).bytes)
            }
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => {
                i128::from(self.disk(signal, separate_imagefs).inodes)
            }
            Signal::PidAvailable => 0,
        }
    }
}

fn container_request(c: &Container, resource: &str) -> i128 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| Quantity::parse(&q.0))
        .map_or(0, |q| q.value())
}

/// The pod's request of `resource`: the containers' sum, or the largest
/// init container's when that is more (plus the pod overhead).
pub fn pod_request(pod: &Pod, resource: &str) -> i128 {
    let Some(spec) = &pod.spec else { return 0 };
    let sum: i128 = spec
        .containers
        .iter()
        .map(|c| container_request(c, resource))
        .sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_request(c, resource))
        .max()
        .unwrap_or(0);
    let overhead = spec
        .overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| Quantity::parse(&q.0))
        .map_or(0, |q| q.value());
    sum.max(init) + overhead
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Static pods (from files), mirror pods and pods of critical priority:
/// never evicted, always admitted.
pub fn is_critical(pod: &Pod) -> bool {
    let ann = pod.metadata.annotations.as_ref();
    let source = ann.and_then(|a| a.get("kubernetes.io/config.source"));
    let is_static = source.is_some_and(|s| s != "api");
    let is_mirror = ann.is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    is_static || is_mirror || priority(pod) >= SYSTEM_CRITICAL_PRIORITY
}

/// The order pods go in for `signal` (indexes into `pods`): the kubelet's
/// ranking. Pods with no usage known go first; then those using more of
/// the resource than they request; then lower priority; then larger
/// usage above the request. PID pressure ranks by priority alone.
pub fn rank(
    pods: &[(&Pod, Option<&PodUsage>)],
    signal: Signal,
    separate_imagefs: bool,
) -> Vec<usize> {
    let resource = match signal {
        Signal::MemoryAvailable => "memory",
        s if s.is_disk() && s.bytes() => "ephemeral-storage",
        _ => "",
    };
    let key = |i: usize| {
        let (pod, usage) = pods[i];
        let request = if resource.is_empty() {
            0
        } else {
            pod_request(pod, resource)
        };
        let above = usage.map_or(0, |u| u.usage(signal, separate_imagefs) - request);
        let exceeds = usage.is_some_and(|_| above > 0);
        (
            usage.is_some(),
            !exceeds,
            priority(pod),
            std::cmp::Reverse(above),
        )
    };
    let mut order: Vec<usize> = (0..pods.len()).collect();
    if signal == Signal::PidAvailable {
        order.sort_by_key(|&i| priority(pods[i].0));
    } else {
        order.sort_by_key(|&i| key(i));
    }
    order
}

fn quantity(v: i128, binary: bool) -> String {
    Quantity {
        milli: v * 1000,
        binary,
    }
    .to_string()
}

/// The kubelet's eviction message: the starved resource, the threshold
/// and what was available, and each container using more than it
/// requests.
pub fn message(
    signal: Signal,
    threshold: &Threshold,
    observed: Option<&Observation>,
    pod: &Pod,
    usage: Option<&PodUsage>,
) -> String {
    let resource = signal.resource();
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some(o) = observed {
        m += &format!(
            "Threshold quantity: {}, available: {}. ",
            quantity(threshold.quantity(o.capacity), signal.bytes()),
            quantity(o.available, signal.bytes())
        );
    }
    let (Some(usage), Some(spec)) = (usage, pod.spec.as_ref()) else {
        return m;
    };
    for c in &usage.containers {
        let Some(container) = spec.containers.iter().find(|x| x.name == c.name) else {
            continue;
        };
        let used = match resource {
            "ephemeral-storage" => match (c.rootfs, c.logs) {
                (Some(r), Some(l)) => Some(r.bytes + l.bytes),
                _ => None,
            },
            "memory" => c.memory,
            _ => None,
        };
        let request = container_request(container, resource);
        if let Some(used) = used.map(i128::from).filter(|u| *u > request) {
            m += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                quantity(used, true),
                quantity(request, true)
            );
        }
    }
    m
}

/// A container's limit of `resource`, as written and parsed.
fn limit_quantity<'a>(c: &'a Container, resource: &str) -> Option<(&'a str, Quantity)> {
    let q = c.resources.as_ref()?.limits.as_ref()?.get(resource)?;
    Some((q.0.as_str(), Quantity::parse(&q.0)?))
}

fn limit(c: &Container, resource: &str) -> Option<i128> {
    limit_quantity(c, resource).map(|(_, q)| q.value())
}

/// Whether the pod declares any local storage limit (only those pods are
/// measured when the node is not under pressure).
pub fn has_local_storage_limits(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| limit(c, "ephemeral-storage").is_some())
        || spec.volumes.iter().flatten().any(|v| {
            v.empty_dir
                .as_ref()
                .and_then(|e| e.size_limit.as_ref())
                .is_some()
        })
}

/// The kubelet's local storage eviction: the message when the pod uses
/// more local storage than its own limits allow — an emptyDir over its
/// `sizeLimit`, then the pod over its containers' summed
/// `ephemeral-storage` limits, then a container (writable layer and
/// logs) over its own.
pub fn local_storage_violation(pod: &Pod, usage: &PodUsage) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(size) = v
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
            .and_then(|q| Quantity::parse(&q.0))
        else {
            continue;
        };
        let used = usage.empty_dirs.get(&v.name).copied();
        if let Some(used) = used.filter(|u| size.milli > 0 && i128::from(*u) > size.value()) {
            tracing::debug!(volume = v.name, used, "emptyDir over its sizeLimit");
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name,
                size.to_string()
            ));
        }
    }
    let container_use = |c: &ContainerUsage| {
        i128::from(c.rootfs.unwrap_or_default().bytes + c.logs.unwrap_or_default().bytes)
    };
    let limits: Vec<Quantity> = spec
        .containers
        .iter()
        .filter_map(|c| Some(limit_quantity(c, "ephemeral-storage")?.1))
        .collect();
    if !limits.is_empty() {
        let total: Quantity = limits.into_iter().sum();
        let used = usage.containers.iter().map(container_use).sum::<i128>()
            + i128::from(usage.volumes.bytes);
        if used > total.value() {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {total}. "
            ));
        }
    }
    for c in &spec.containers {
        let (Some((written, l)), Some(u)) = (
            limit_quantity(c, "ephemeral-storage"),
            usage.containers.iter().find(|u| u.name == c.name),
        ) else {
            continue;
        };
        if container_use(u) > l.value() {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {written:?}. ",
                c.name
            ));
        }
    }
    None
}

/// The pod's kill grace period for an eviction by `threshold`.
pub fn grace_period(threshold: &Threshold, pod: &Pod, max_pod_grace_period: i64) -> i64 {
    if threshold.hard {
        return IMMEDIATE_GRACE_SECONDS;
    }
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    if max_pod_grace_period <= 0 {
        own
    } else {
        own.min(max_pod_grace_period)
    }
}

fn tolerates_memory_pressure(pod: &Pod) -> bool {
    let key = "node.kubernetes.io/memory-pressure";
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "NoSchedule");
            let key_ok = match t.operator.as_deref().unwrap_or("Equal") {
                "Exists" => t.key.as_deref().is_none_or(|k| k.is_empty() || k == key),
                _ => t.key.as_deref() == Some(key) && t.value.as_deref().unwrap_or("").is_empty(),
            };
            effect_ok && key_ok
        })
}

/// Whether a new pod may start under `pressure`; the rejection message
/// (the kubelet's, without its "Pod was rejected: " prefix) when not.
pub fn admit(pod: &Pod, pressure: &Pressure) -> Result<(), String> {
    if pressure.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if pressure.len() == 1 && pressure.contains(&Condition::MemoryPressure) {
        let best_effort = pod
            .spec
            .as_ref()
            .is_some_and(|s| crate::resources::qos_class(s) == api::qos::BEST_EFFORT);
        if !best_effort || tolerates_memory_pressure(pod) {
            return Ok(());
        }
    }
    let names: Vec<&str> = pressure.iter().map(|c| c.name()).collect();
    Err(format!("The node had condition: [{}]. ", names.join(" ")))
}

#[cfg(test)]
mod tests;
