//! What the scheduler precomputes about a pod once per pod version, so that
//! plugins never re-parse selectors, quantities or affinity terms per node.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::selector::{LabelSelector, Op, Requirement};
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::resources::{self, Resource};

pub static EMPTY_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports clash when protocol and port are equal and the
    /// addresses overlap (equal, or either is the wildcard).
    pub fn conflicts(&self, o: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || wild(&self.ip) || wild(&o.ip))
    }
}

/// One pod (anti-)affinity term, with matchLabelKeys/mismatchLabelKeys
/// already merged into its selector.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: LabelSelector,
    /// Namespaces named by the term (the pod's own when it names none and
    /// has no namespaceSelector).
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, pod: &Pod, weight: i32) -> AffinityTerm {
        let own_ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut selector = label_selector(t.label_selector.as_ref());
        let labels = pod.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS);
        if t.label_selector.is_some() {
            for k in t.match_label_keys.iter().flatten() {
                if let Some(v) = labels.get(k) {
                    selector.requirements.push(Requirement {
                        key: k.clone(),
                        op: Op::In,
                        values: vec![v.clone()],
                    });
                }
            }
            for k in t.mismatch_label_keys.iter().flatten() {
                if let Some(v) = labels.get(k) {
                    selector.requirements.push(Requirement {
                        key: k.clone(),
                        op: Op::NotIn,
                        values: vec![v.clone()],
                    });
                }
            }
        }
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        let namespace_selector = t
            .namespace_selector
            .as_ref()
            .map(|s| label_selector(Some(s)));
        if namespaces.is_empty() && namespace_selector.is_none() {
            namespaces.push(own_ns);
        }
        AffinityTerm {
            selector,
            namespaces,
            namespace_selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is selected by this term. `ns_labels` gives a
    /// namespace's labels (for namespaceSelector).
    pub fn matches(
        &self,
        pod: &PodInfo,
        ns_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
    ) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || match &self.namespace_selector {
                None => false,
                Some(s) if s.is_empty() => true,
                Some(s) => ns_labels(&pod.namespace).is_some_and(|l| s.matches(&l)),
            };
        ns_ok && self.selector.matches(pod.labels())
    }
}

/// One node selector requirement.
#[derive(Clone, Debug)]
pub struct NodeReq {
    pub key: String,
    pub op: NodeOp,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    Invalid,
}

impl NodeReq {
    fn new(r: &NodeSelectorRequirement) -> NodeReq {
        let op = match r.operator.as_str() {
            "In" => NodeOp::In,
            "NotIn" => NodeOp::NotIn,
            "Exists" => NodeOp::Exists,
            "DoesNotExist" => NodeOp::DoesNotExist,
            "Gt" => NodeOp::Gt,
            "Lt" => NodeOp::Lt,
            _ => NodeOp::Invalid,
        };
        NodeReq {
            key: r.key.clone(),
            op,
            values: r.values.clone().unwrap_or_default(),
        }
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            NodeOp::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            NodeOp::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            NodeOp::Exists => value.is_some(),
            NodeOp::DoesNotExist => value.is_none(),
            NodeOp::Gt | NodeOp::Lt => {
                let (Some(v), [want]) = (value, self.values.as_slice()) else {
                    return false;
                };
                match (v.parse::<i64>(), want.parse::<i64>()) {
                    (Ok(v), Ok(w)) if self.op == NodeOp::Gt => v > w,
                    (Ok(v), Ok(w)) => v < w,
                    _ => false,
                }
            }
            NodeOp::Invalid => false,
        }
    }
}

/// A node selector term: all expressions on labels and all fields
/// (only `metadata.name`) must match; an empty term matches nothing.
#[derive(Clone, Debug, Default)]
pub struct NodeTerm {
    pub exprs: Vec<NodeReq>,
    pub fields: Vec<NodeReq>,
}

impl NodeTerm {
    pub fn new(t: &NodeSelectorTerm) -> NodeTerm {
        NodeTerm {
            exprs: t
                .match_expressions
                .iter()
                .flatten()
                .map(NodeReq::new)
                .collect(),
            fields: t.match_fields.iter().flatten().map(NodeReq::new).collect(),
        }
    }

    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.exprs.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.exprs
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches(Some(name)))
    }
}

/// nodeSelector and required node affinity together.
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    pub selector: Vec<(String, String)>,
    /// None: no required affinity; Some: one of the terms must match.
    pub terms: Option<Vec<NodeTerm>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| ns.node_selector_terms.iter().map(NodeTerm::new).collect());
        RequiredNodeAffinity { selector, terms }
    }

    pub fn is_empty(&self) -> bool {
        self.selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node: &Node) -> bool {
        let labels = node.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS);
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.matches_labels(name, labels)
    }

    pub fn matches_labels(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self
                .terms
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| t.matches(name, labels)))
    }
}

/// A topology spread constraint with its selector ready.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// DoNotSchedule (true) or ScheduleAnyway.
    pub hard: bool,
    pub selector: LabelSelector,
    pub min_domains: i32,
    /// nodeAffinityPolicy Honor (default) vs Ignore.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor vs Ignore (default).
    pub honor_taints: bool,
}

/// Everything the plugins need to know about one pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node_name: String,
    pub scheduler_name: String,
    pub priority: i32,
    pub requests: Resource,
    /// CPU and memory requests with 100m / 200 MiB for containers that
    /// request none (what scoring uses).
    pub non_zero_cpu: i64,
    pub non_zero_mem: i64,
    pub ports: Vec<HostPort>,
    pub node_affinity: RequiredNodeAffinity,
    pub preferred_node_affinity: Vec<(i32, NodeTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    pub spread: Vec<SpreadConstraint>,
    pub terminating: bool,
    pub nominated_node: String,
    /// Images of all containers, normalised (`docker.io/library/x:latest`).
    pub images: Vec<String>,
    /// Names of the PVCs the pod mounts.
    pub pvcs: Vec<String>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>, priority: i32) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let requests = resources::pod_requests(&pod, false);
        let non_zero = resources::pod_requests(&pod, true);
        let mut ports = Vec::new();
        let mut images = Vec::new();
        if let Some(spec) = spec {
            for c in &spec.containers {
                for p in c.ports.iter().flatten() {
                    if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                        ports.push(HostPort {
                            ip: p.host_ip.clone().unwrap_or_default(),
                            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            port: hp,
                        });
                    }
                }
                if let Some(i) = &c.image {
                    images.push(normalize_image(i));
                }
            }
            for c in spec.init_containers.iter().flatten() {
                if let Some(i) = &c.image {
                    images.push(normalize_image(i));
                }
            }
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(t, &pod, 1))
                .collect()
        };
        let preferred = |ts: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&t.pod_affinity_term, &pod, t.weight))
                .collect::<Vec<_>>()
        };
        let required_affinity = required(pa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = required(paa.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_affinity = preferred(pa.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = preferred(paa.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_node_affinity = affinity
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .map(|t| (t.weight, NodeTerm::new(&t.preference)))
            .collect();
        let labels = meta.labels.as_ref().unwrap_or(&EMPTY_LABELS);
        let spread = spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .map(|c| {
                let mut selector = label_selector(c.label_selector.as_ref());
                if c.label_selector.is_some() {
                    for k in c.match_label_keys.iter().flatten() {
                        if let Some(v) = labels.get(k) {
                            selector.requirements.push(Requirement {
                                key: k.clone(),
                                op: Op::In,
                                values: vec![v.clone()],
                            });
                        }
                    }
                }
                SpreadConstraint {
                    max_skew: c.max_skew.max(1),
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable != "ScheduleAnyway",
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();
        let pvcs = spec
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect();
        PodInfo {
            key: format!("{namespace}/{name}"),
            uid: meta.uid.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            scheduler_name: spec
                .and_then(|s| s.scheduler_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_owned()),
            priority,
            non_zero_cpu: non_zero.milli_cpu,
            non_zero_mem: non_zero.memory,
            requests,
            ports,
            node_affinity: RequiredNodeAffinity::from_pod(&pod),
            preferred_node_affinity,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread,
            terminating: meta.deletion_timestamp.is_some(),
            nominated_node: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            images,
            pvcs,
            namespace,
            name,
            pod,
        }
    }

    /// This pod placed on `node` (what the cache assumes while binding).
    /// (The pod object itself is shared, not copied: `node_name` is what
    /// the scheduler reads.)
    pub fn with_node(&self, node: &str) -> PodInfo {
        let mut info = self.clone();
        info.node_name = node.to_owned();
        info
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or(&[])
    }

    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    pub fn preemption_never(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never")
    }

    /// When the pod started (status.startTime), else its creation.
    pub fn start_time(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(self.pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    }
}

/// metav1.LabelSelector → selector; None (null) selects nothing.
pub fn label_selector(s: Option<&metav1::LabelSelector>) -> LabelSelector {
    let Some(s) = s else {
        return LabelSelector::nothing();
    };
    let mut requirements = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        requirements.push(Requirement {
            key: k.clone(),
            op: Op::Equals,
            values: vec![v.clone()],
        });
    }
    for e in s.match_expressions.iter().flatten() {
        let op = match e.operator.as_str() {
            "In" => Op::In,
            "NotIn" => Op::NotIn,
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            _ => return LabelSelector::nothing(),
        };
        requirements.push(Requirement {
            key: e.key.clone(),
            op,
            values: e.values.clone().unwrap_or_default(),
        });
    }
    LabelSelector {
        requirements,
        nothing: false,
    }
}

/// `nginx` → `docker.io/library/nginx:latest`, as image names are
/// compared with the node's image list.
pub fn normalize_image(image: &str) -> String {
    let (name, tagged) = match image.rfind(['@', ':']) {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i..]),
        _ => (image, ""),
    };
    let tag = if tagged.is_empty() { ":latest" } else { tagged };
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_domain {
        format!("{name}{tag}")
    } else if name.contains('/') {
        format!("docker.io/{name}{tag}")
    } else {
        format!("docker.io/library/{name}{tag}")
    }
}

/// Whether a toleration tolerates a taint (Kubernetes' ToleratesTaint).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        effects.contains(&taint.effect.as_str()) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_normalise() {
        for (i, want) in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.2", "docker.io/library/nginx:1.2"),
            ("me/app", "docker.io/me/app:latest"),
            ("registry.local:5000/app:v1", "registry.local:5000/app:v1"),
            ("localhost/x@sha256:ab", "localhost/x@sha256:ab"),
        ] {
            assert_eq!(normalize_image(i), want, "{i}");
        }
    }

    #[test]
    fn toleration_cases() {
        let taint = |k: &str, v: &str, e: &str| Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            time_added: None,
        };
        let tol =
            |k: Option<&str>, op: Option<&str>, v: Option<&str>, e: Option<&str>| Toleration {
                key: k.map(Into::into),
                operator: op.map(Into::into),
                value: v.map(Into::into),
                effect: e.map(Into::into),
                toleration_seconds: None,
            };
        let cases = [
            (
                tol(Some("a"), None, Some("1"), None),
                taint("a", "1", "NoSchedule"),
                true,
            ),
            (
                tol(Some("a"), None, Some("2"), None),
                taint("a", "1", "NoSchedule"),
                false,
            ),
            (
                tol(Some("a"), Some("Exists"), None, None),
                taint("a", "1", "NoExecute"),
                true,
            ),
            (
                tol(None, Some("Exists"), None, None),
                taint("b", "", "NoSchedule"),
                true,
            ),
            (
                tol(Some("a"), Some("Exists"), None, Some("NoExecute")),
                taint("a", "", "NoSchedule"),
                false,
            ),
            (
                tol(None, None, None, None),
                taint("a", "", "NoSchedule"),
                false,
            ),
        ];
        for (i, (t, taint, want)) in cases.iter().enumerate() {
            assert_eq!(tolerates(t, taint), *want, "case {i}");
        }
    }
}
