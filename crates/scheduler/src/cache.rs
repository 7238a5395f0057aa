//! The scheduler's view of the cluster: nodes with the pods on them (bound
//! ones from the informer, *assumed* ones the scheduler has placed and is
//! still binding), aggregated per node, and the snapshot each scheduling
//! cycle reads.
//!
//! Node infos are shared (`Arc`) between the cache and the snapshot and
//! copied on write, so taking a snapshot copies only the nodes changed
//! since the previous one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Taint};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::podinfo::{normalize_image, HostPort, PodInfo, EMPTY_LABELS};
use crate::resources::Resource;

/// One node and what is placed on it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub allocatable: Resource,
    /// Sum of the requests of the pods on the node.
    pub requested: Resource,
    /// Same with 100m / 200 MiB for containers without requests.
    pub non_zero_cpu: i64,
    pub non_zero_mem: i64,
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods whose terms score other pods (required affinity, preferred
    /// affinity or anti-affinity): what InterPodAffinity's PreScore reads.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Pods with a required anti-affinity term.
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Normalised image name → size in bytes.
    pub images: Arc<HashMap<String, i64>>,
}

static NO_TAINTS: Vec<Taint> = Vec::new();

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            allocatable: Resource::default(),
            requested: Resource::default(),
            non_zero_cpu: 0,
            non_zero_mem: 0,
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            used_ports: Vec::new(),
            images: Arc::default(),
        };
        n.set_node(node);
        n
    }

    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        let mut images = HashMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in img.names.iter().flatten() {
                images.insert(normalize_image(name), img.size_bytes.unwrap_or(0));
            }
        }
        if *self.images != images {
            self.images = Arc::new(images);
        }
        self.node = node;
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .unwrap_or(&NO_TAINTS)
    }

    pub fn unschedulable(&self) -> bool {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.non_zero_cpu += p.non_zero_cpu;
        self.non_zero_mem += p.non_zero_mem;
        self.used_ports.extend(p.ports.iter().cloned());
        if !(p.required_affinity.is_empty()
            && p.preferred_affinity.is_empty()
            && p.preferred_anti_affinity.is_empty())
        {
            self.pods_with_affinity.push(p.clone());
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity.push(p.clone());
        }
        self.pods.push(p);
    }

    /// Removes the pod with this key; false when it is not here.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.key == key) else {
            return false;
        };
        let p = self.pods.swap_remove(i);
        self.pods_with_affinity.retain(|x| x.key != key);
        self.pods_with_required_anti_affinity
            .retain(|x| x.key != key);
        self.requested.sub(&p.requests);
        self.non_zero_cpu -= p.non_zero_cpu;
        self.non_zero_mem -= p.non_zero_mem;
        for port in &p.ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == port) {
                self.used_ports.swap_remove(j);
            }
        }
        true
    }
}

/// Informer-backed lookups some plugins need (namespaces for
/// namespaceSelector, volumes, disruption budgets).
#[derive(Clone)]
pub struct Listers {
    pub namespaces: Store<Namespace>,
    pub pvcs: Store<PersistentVolumeClaim>,
    pub pvs: Store<PersistentVolume>,
    pub pdbs: Store<PodDisruptionBudget>,
}

impl Default for Listers {
    fn default() -> Self {
        use kube::runtime::reflector::store::Writer;
        Listers {
            namespaces: Writer::default().as_reader(),
            pvcs: Writer::default().as_reader(),
            pvs: Writer::default().as_reader(),
            pdbs: Writer::default().as_reader(),
        }
    }
}

/// What one scheduling cycle reads: all nodes at one moment.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    pub index: Arc<HashMap<String, usize>>,
    /// Image name → number of nodes that have it.
    pub image_nodes: Arc<HashMap<String, usize>>,
    pub listers: Listers,
    /// Nodes running pods with (anti-)affinity terms, and with required
    /// anti-affinity terms: InterPodAffinity skips the walk over every node
    /// when they are zero, as Kubernetes' lists of such nodes let it.
    pub nodes_with_affinity_pods: usize,
    pub nodes_with_required_anti_affinity_pods: usize,
}

/// How a node counts in [`Snapshot::nodes_with_affinity_pods`] and
/// [`Snapshot::nodes_with_required_anti_affinity_pods`].
fn affinity_counts(n: &NodeInfo) -> (usize, usize) {
    (
        usize::from(!n.pods_with_affinity.is_empty()),
        usize::from(!n.pods_with_required_anti_affinity.is_empty()),
    )
}

impl Snapshot {
    /// A snapshot of these nodes (tests and benchmarks).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Snapshot {
        let mut image_nodes: HashMap<String, usize> = HashMap::new();
        for n in &nodes {
            for i in n.images.keys() {
                *image_nodes.entry(i.clone()).or_default() += 1;
            }
        }
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut snap = Snapshot {
            nodes: nodes.into_iter().map(Arc::new).collect(),
            index: Arc::new(index),
            image_nodes: Arc::new(image_nodes),
            listers: Listers::default(),
            ..Default::default()
        };
        snap.count_affinity();
        snap
    }

    fn count_affinity(&mut self) {
        let (mut a, mut r) = (0, 0);
        for n in &self.nodes {
            let (x, y) = affinity_counts(n);
            a += x;
            r += y;
        }
        self.nodes_with_affinity_pods = a;
        self.nodes_with_required_anti_affinity_pods = r;
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// A namespace's labels (for namespaceSelector).
    pub fn namespace_labels(&self, ns: &str) -> Option<BTreeMap<String, String>> {
        self.listers
            .namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
    }
}

struct PodState {
    info: Arc<PodInfo>,
    assumed: bool,
    /// For assumed pods whose binding call returned: when to give up
    /// waiting for the informer to confirm.
    deadline: Option<Instant>,
}

/// The cache. Lives behind a mutex; informer handlers and the scheduling
/// loop update it.
pub struct Cache {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Pods on nodes the cache does not know (yet).
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    pods: HashMap<String, PodState>,
    image_nodes: Arc<HashMap<String, usize>>,
    /// Node indexes changed since the last snapshot.
    changed: Vec<usize>,
    /// The node set changed since the last snapshot.
    structural: bool,
    assumed_ttl: Duration,
}

impl Default for Cache {
    fn default() -> Self {
        Cache::new(Duration::from_secs(120))
    }
}

impl Cache {
    pub fn new(assumed_ttl: Duration) -> Cache {
        Cache {
            nodes: Vec::new(),
            index: HashMap::new(),
            orphans: HashMap::new(),
            pods: HashMap::new(),
            image_nodes: Arc::default(),
            changed: Vec::new(),
            structural: true,
            assumed_ttl,
        }
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn assumed_count(&self) -> usize {
        self.pods.values().filter(|p| p.assumed).count()
    }

    fn mark(&mut self, i: usize) {
        if !self.structural {
            if self.changed.len() > self.nodes.len() {
                self.structural = true;
                self.changed.clear();
            } else {
                self.changed.push(i);
            }
        }
    }

    fn count_images(&mut self, images: &HashMap<String, i64>, delta: isize) {
        if images.is_empty() {
            return;
        }
        let counts = Arc::make_mut(&mut self.image_nodes);
        for name in images.keys() {
            let c = counts.entry(name.clone()).or_default();
            *c = (*c as isize + delta).max(0) as usize;
            if *c == 0 {
                counts.remove(name);
            }
        }
    }

    /// Adds or updates a node.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let old_images = self.nodes[i].images.clone();
            let info = Arc::make_mut(&mut self.nodes[i]);
            info.set_node(node);
            let new_images = info.images.clone();
            if !Arc::ptr_eq(&old_images, &new_images) {
                self.count_images(&old_images, -1);
                self.count_images(&new_images, 1);
            }
            self.mark(i);
            return;
        }
        let mut info = NodeInfo::new(node);
        for p in self.orphans.remove(&name).unwrap_or_default() {
            info.add_pod(p);
        }
        let images = info.images.clone();
        self.count_images(&images, 1);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(Arc::new(info));
        self.structural = true;
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        self.count_images(&info.images.clone(), -1);
        if !info.pods.is_empty() {
            self.orphans.insert(name.to_owned(), info.pods.clone());
        }
        self.structural = true;
    }

    fn place(&mut self, p: Arc<PodInfo>) {
        match self.index.get(&p.node_name) {
            Some(&i) => {
                Arc::make_mut(&mut self.nodes[i]).add_pod(p);
                self.mark(i);
            }
            None => self.orphans.entry(p.node_name.clone()).or_default().push(p),
        }
    }

    fn unplace(&mut self, p: &PodInfo) {
        match self.index.get(&p.node_name) {
            Some(&i) => {
                if Arc::make_mut(&mut self.nodes[i]).remove_pod(&p.key) {
                    self.mark(i);
                }
            }
            None => {
                if let Some(v) = self.orphans.get_mut(&p.node_name) {
                    v.retain(|x| x.key != p.key);
                    if v.is_empty() {
                        self.orphans.remove(&p.node_name);
                    }
                }
            }
        }
    }

    /// A pod bound to a node, as the informer reports it (added or
    /// updated); confirms an assumed pod.
    pub fn set_pod(&mut self, info: Arc<PodInfo>) {
        if let Some(old) = self.pods.remove(&info.key) {
            self.unplace(&old.info);
        }
        self.place(info.clone());
        self.pods.insert(
            info.key.clone(),
            PodState {
                info,
                assumed: false,
                deadline: None,
            },
        );
    }

    pub fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            self.unplace(&old.info);
        }
    }

    /// Whether the cache holds this pod as assumed (placed, not yet
    /// confirmed by the informer).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Places a pod the scheduler chose a node for (`info.node_name`).
    pub fn assume_pod(&mut self, info: Arc<PodInfo>) {
        if let Some(old) = self.pods.remove(&info.key) {
            self.unplace(&old.info);
        }
        self.place(info.clone());
        self.pods.insert(
            info.key.clone(),
            PodState {
                info,
                assumed: true,
                deadline: None,
            },
        );
    }

    /// The binding call for an assumed pod returned: the informer should
    /// confirm it soon, else it expires.
    pub fn finish_binding(&mut self, key: &str, now: Instant) {
        let ttl = self.assumed_ttl;
        if let Some(p) = self.pods.get_mut(key).filter(|p| p.assumed) {
            p.deadline = Some(now + ttl);
        }
    }

    /// Drops an assumed pod (its binding failed).
    pub fn forget_pod(&mut self, key: &str) {
        if self.is_assumed(key) {
            self.remove_pod(key);
        }
    }

    /// Drops assumed pods whose confirmation never came.
    pub fn cleanup_expired(&mut self, now: Instant) -> usize {
        let expired: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.assumed && p.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.remove_pod(k);
        }
        expired.len()
    }

    /// Brings `snap` up to date: copies only changed node pointers.
    pub fn update_snapshot(&mut self, snap: &mut Snapshot) {
        if self.structural || snap.nodes.len() != self.nodes.len() {
            snap.nodes = self.nodes.clone();
            snap.index = Arc::new(self.index.clone());
            snap.count_affinity();
            self.structural = false;
        } else {
            for &i in &self.changed {
                let (old_a, old_r) = affinity_counts(&snap.nodes[i]);
                snap.nodes[i] = self.nodes[i].clone();
                let (a, r) = affinity_counts(&snap.nodes[i]);
                snap.nodes_with_affinity_pods = snap.nodes_with_affinity_pods + a - old_a;
                snap.nodes_with_required_anti_affinity_pods =
                    snap.nodes_with_required_anti_affinity_pods + r - old_r;
            }
        }
        self.changed.clear();
        if !Arc::ptr_eq(&snap.image_nodes, &self.image_nodes) {
            snap.image_nodes = self.image_nodes.clone();
        }
    }

    /// Node info by name (tests, debugging).
    pub fn node(&self, name: &str) -> Option<Arc<NodeInfo>> {
        self.index.get(name).map(|&i| self.nodes[i].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmations_replace_them() {
        let mut c = Cache::default();
        c.set_node(Arc::new(node("n1", "4", "8Gi", 110)));
        let p = Arc::new(pod_info(&pod("a", "1", "1Gi")).with_node("n1"));
        c.assume_pod(p.clone());
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 1000);
        c.forget_pod(&p.key);
        assert_eq!(c.node("n1").unwrap().requested.milli_cpu, 0);

        c.assume_pod(p.clone());
        c.set_pod(p.clone()); // the informer saw it bound
        assert!(!c.is_assumed(&p.key));
        c.forget_pod(&p.key); // no effect on a confirmed pod
        assert_eq!(c.node("n1").unwrap().pods.len(), 1);
        c.remove_pod(&p.key);
        assert_eq!(c.node("n1").unwrap().pods.len(), 0);
    }

    #[test]
    fn assumed_pods_expire_after_binding_without_confirmation() {
        let mut c = Cache::new(Duration::from_secs(1));
        c.set_node(Arc::new(node("n1", "4", "8Gi", 110)));
        let p = Arc::new(pod_info(&pod("a", "1", "1Gi")).with_node("n1"));
        c.assume_pod(p.clone());
        let now = Instant::now();
        assert_eq!(
            c.cleanup_expired(now + Duration::from_secs(5)),
            0,
            "binding not finished"
        );
        c.finish_binding(&p.key, now);
        assert_eq!(c.cleanup_expired(now + Duration::from_secs(5)), 1);
        assert_eq!(c.node("n1").unwrap().pods.len(), 0);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_for_the_node_and_snapshots_follow() {
        let mut c = Cache::default();
        let mut snap = Snapshot::default();
        let p = Arc::new(pod_info(&pod("a", "1", "1Gi")).with_node("late"));
        c.set_pod(p);
        c.set_node(Arc::new(node("n1", "4", "8Gi", 110)));
        c.update_snapshot(&mut snap);
        assert_eq!(snap.nodes.len(), 1);
        c.set_node(Arc::new(node("late", "4", "8Gi", 110)));
        c.update_snapshot(&mut snap);
        assert_eq!(snap.get("late").unwrap().pods.len(), 1);
        let before = snap.get("n1").unwrap().clone();
        c.assume_pod(Arc::new(pod_info(&pod("b", "1", "0")).with_node("n1")));
        c.update_snapshot(&mut snap);
        assert_eq!(before.pods.len(), 0, "old snapshot unchanged");
        assert_eq!(snap.get("n1").unwrap().pods.len(), 1);
        c.remove_node("late");
        c.update_snapshot(&mut snap);
        assert_eq!(snap.nodes.len(), 1);
        assert!(snap.get("late").is_none());
    }

    #[test]
    fn snapshots_count_nodes_with_affinity_pods_incrementally() {
        let anti = |name: &str, node: &str| {
            let p = with(
                &pod(name, "1", "0"),
                serde_json::json!({"spec": {"affinity": {"podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [{
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"app": "x"}}}]}}}}),
            );
            Arc::new(pod_info(&p).with_node(node))
        };
        let mut c = Cache::default();
        let mut snap = Snapshot::default();
        for n in ["n1", "n2", "n3"] {
            c.set_node(Arc::new(node(n, "4", "8Gi", 110)));
        }
        c.set_pod(Arc::new(pod_info(&pod("plain", "1", "0")).with_node("n3")));
        c.update_snapshot(&mut snap);
        assert_eq!(
            (
                snap.nodes_with_affinity_pods,
                snap.nodes_with_required_anti_affinity_pods
            ),
            (0, 0)
        );
        let (a, b) = (anti("a", "n1"), anti("b", "n1"));
        c.set_pod(a.clone());
        c.set_pod(b.clone());
        c.set_pod(anti("c", "n2"));
        let preferring = with(
            &pod("d", "1", "0"),
            serde_json::json!({"spec": {"affinity": {"podAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5,
                    "podAffinityTerm": {"topologyKey": "zone",
                        "labelSelector": {"matchLabels": {"app": "y"}}}}]}}}}),
        );
        c.set_pod(Arc::new(pod_info(&preferring).with_node("n3")));
        c.update_snapshot(&mut snap);
        // Required anti-affinity alone does not score: only n3 counts there.
        assert_eq!(
            (
                snap.nodes_with_affinity_pods,
                snap.nodes_with_required_anti_affinity_pods
            ),
            (1, 2)
        );
        c.remove_pod(&a.key);
        c.update_snapshot(&mut snap);
        assert_eq!(
            snap.nodes_with_required_anti_affinity_pods, 2,
            "b is still on n1"
        );
        c.remove_pod(&b.key);
        c.remove_pod("default/d");
        c.update_snapshot(&mut snap);
        assert_eq!(
            (
                snap.nodes_with_affinity_pods,
                snap.nodes_with_required_anti_affinity_pods
            ),
            (0, 1)
        );
        c.remove_node("n2");
        c.update_snapshot(&mut snap);
        assert_eq!(snap.nodes_with_required_anti_affinity_pods, 0);
    }
}
