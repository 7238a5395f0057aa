//! What this node enforces, derived from NetworkPolicies, Pods and
//! Namespaces by a pure function: for every local pod that some policy
//! isolates, the traffic each direction allows.
//!
//! Kubernetes' semantics: a pod selected by a policy whose policyTypes
//! contain a direction is isolated in that direction; what it may send or
//! receive is the union of the rules of every policy selecting it for
//! that direction. policyTypes defaults to Ingress, plus Egress when the
//! policy has egress rules. Peers are pods (podSelector in the policy's
//! namespace, namespaceSelector, or both: pods matching the pod selector
//! in matching namespaces) and IP blocks; a named port is resolved
//! against the container ports of the pod the traffic goes to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub use crate::proxy::model::Protocol;

/// The label every namespace carries with its own name (set by the API
/// server in Kubernetes; assumed here, so selectors on it always work).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// An IPv4 network: address (host bits cleared) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// `a.b.c.d/n` (host bits are cleared); None for IPv6 or garbage.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        let mask = Self::mask(prefix);
        Some(Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.addr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The addresses on the other end of allowed traffic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addrs {
    /// Anywhere (a rule without from/to).
    Any,
    /// Pods' addresses (non-empty).
    Ips(BTreeSet<Ipv4Addr>),
    /// An ipBlock: the network but not the excepted ones.
    Block { cidr: Cidr, except: Vec<Cidr> },
}

impl Addrs {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        match self {
            Addrs::Any => true,
            Addrs::Ips(ips) => ips.contains(&ip),
            Addrs::Block { cidr, except } => {
                cidr.contains(ip) && !except.iter().any(|e| e.contains(ip))
            }
        }
    }
}

/// The protocols and ports of allowed traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ports {
    /// Any protocol, any port (a rule without ports).
    Any,
    /// Every port of one protocol (a port entry without port).
    All(Protocol),
    /// A port range of one protocol (first == last for a single port).
    Range(Protocol, u16, u16),
}

/// One kind of allowed traffic: from (ingress) or to (egress) `addrs`,
/// with `ports` on the isolated pod's side for ingress and on the
/// destination's side for egress.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allow {
    pub addrs: Addrs,
    pub ports: Ports,
}

/// A local pod isolated in at least one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolated {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    /// None: not isolated for ingress; Some: what it may receive (sorted).
    pub ingress: Option<Vec<Allow>>,
    /// None: not isolated for egress; Some: what it may send (sorted).
    pub egress: Option<Vec<Allow>>,
}

/// A container port with a name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NamedPort {
    name: String,
    protocol: Protocol,
    port: u16,
}

/// A pod with an address, as policies see it.
#[derive(Clone, Debug)]
struct PodView<'a> {
    namespace: &'a str,
    name: &'a str,
    labels: BTreeMap<String, String>,
    ip: Ipv4Addr,
    node: Option<&'a str>,
    ports: Vec<NamedPort>,
}

impl PodView<'_> {
    fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// Pods that take part in policies: with an IPv4 address, not on the
/// host network, not finished.
fn pod_view(pod: &Pod) -> Option<PodView<'_>> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    if pod.metadata.deletion_timestamp.is_some() && status.pod_ip.is_none() {
        return None;
    }
    let ip: Ipv4Addr = status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(status.pod_ips.iter().flatten().map(|p| p.ip.as_str()))
        .find_map(|s| s.parse().ok())?;
    let ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone()?,
                protocol: Protocol::parse(p.protocol.as_deref())?,
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    Some(PodView {
        namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ip,
        node: spec.node_name.as_deref(),
        ports,
    })
}

/// Whether `labels` match a metav1.LabelSelector (an empty one matches
/// everything; an operator it does not know matches nothing).
pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether the policy applies to ingress and to egress (policyTypes, or
/// Kubernetes' default: Ingress, and Egress when there are egress rules).
pub fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &policy.spec else {
        return (true, false);
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

struct Cluster<'a> {
    pods: Vec<PodView<'a>>,
    /// Namespace name -> labels (with the name label).
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl Cluster<'_> {
    fn namespace_matches(&self, sel: &LabelSelector, ns: &str) -> bool {
        match self.namespaces.get(ns) {
            Some(labels) => selector_matches(sel, labels),
            // Not seen (yet): only its name label.
            None => selector_matches(
                sel,
                &[(NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned())].into(),
            ),
        }
    }

    /// The pods a peer's selectors pick, seen from a policy in `ns`.
    fn select(&self, ns: &str, peer: &NetworkPolicyPeer) -> Vec<&PodView<'_>> {
        self.pods
            .iter()
            .filter(|p| match &peer.namespace_selector {
                None => p.namespace == ns,
                Some(sel) => self.namespace_matches(sel, p.namespace),
            })
            .filter(|p| {
                peer.pod_selector
                    .as_ref()
                    .is_none_or(|sel| selector_matches(sel, &p.labels))
            })
            .collect()
    }

    /// The address groups of a rule's peers (None: no from/to, anyone).
    fn peers(&self, ns: &str, peers: Option<&Vec<NetworkPolicyPeer>>) -> Vec<Addrs> {
        let Some(peers) = peers.filter(|p| !p.is_empty()) else {
            return vec![Addrs::Any];
        };
        let mut ips = BTreeSet::new();
        let mut out = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                // An IPv6 block matches no IPv4 traffic.
                if let Some(cidr) = Cidr::parse(&block.cidr) {
                    let mut except: Vec<Cidr> = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|e| Cidr::parse(e))
                        .collect();
                    except.sort();
                    except.dedup();
                    out.push(Addrs::Block { cidr, except });
                }
            } else if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                ips.extend(self.select(ns, peer).into_iter().map(|p| p.ip));
            }
        }
        if !ips.is_empty() {
            out.push(Addrs::Ips(ips));
        }
        out
    }
}

/// The ports of a rule: (protocol, port spec) entries; None: any.
fn port_entries(
    ports: Option<&Vec<NetworkPolicyPort>>,
) -> Option<Vec<(Protocol, &NetworkPolicyPort)>> {
    let ports = ports.filter(|p| !p.is_empty())?;
    Some(
        ports
            .iter()
            .filter_map(|p| Some((Protocol::parse(p.protocol.as_deref())?, p)))
            .collect(),
    )
}

/// A numbered port entry as a Ports (None: a named one, or invalid).
fn numbered(protocol: Protocol, p: &NetworkPolicyPort) -> Option<Option<Ports>> {
    match &p.port {
        None => Some(Some(Ports::All(protocol))),
        Some(IntOrString::Int(n)) => {
            let first = u16::try_from(*n).ok().filter(|n| *n > 0);
            let last = p.end_port.map_or(first, |e| u16::try_from(e).ok());
            Some(match (first, last) {
                (Some(f), Some(l)) if l >= f => Some(Ports::Range(protocol, f, l)),
                _ => None,
            })
        }
        Some(IntOrString::String(_)) => None,
    }
}

/// The ingress allowances of a rule for `target`.
fn ingress_allows(
    cluster: &Cluster,
    ns: &str,
    rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule,
    target: &PodView,
    out: &mut Vec<Allow>,
) {
    let addrs = cluster.peers(ns, rule.from.as_ref());
    let ports: Vec<Ports> = match port_entries(rule.ports.as_ref()) {
        None => vec![Ports::Any],
        Some(entries) => entries
            .into_iter()
            .filter_map(|(proto, p)| match numbered(proto, p) {
                Some(ports) => ports,
                None => match &p.port {
                    Some(IntOrString::String(name)) => target
                        .named_port(name, proto)
                        .map(|n| Ports::Range(proto, n, n)),
                    _ => None,
                },
            })
            .collect(),
    };
    for a in &addrs {
        for p in &ports {
            out.push(Allow {
                addrs: a.clone(),
                ports: *p,
            });
        }
    }
}

/// The egress allowances of a rule: numbered ports as they are, named
/// ports resolved on every destination pod within the peers.
fn egress_allows(
    cluster: &Cluster,
    ns: &str,
    rule: &k8s_openapi::api::networking::v1::NetworkPolicyEgressRule,
    out: &mut Vec<Allow>,
) {
    let addrs = cluster.peers(ns, rule.to.as_ref());
    let Some(entries) = port_entries(rule.ports.as_ref()) else {
        out.extend(addrs.into_iter().map(|a| Allow {
            addrs: a,
            ports: Ports::Any,
        }));
        return;
    };
    for (proto, p) in entries {
        match numbered(proto, p) {
            Some(Some(ports)) => out.extend(addrs.iter().map(|a| Allow {
                addrs: a.clone(),
                ports,
            })),
            Some(None) => {}
            None => {
                let Some(IntOrString::String(name)) = &p.port else {
                    continue;
                };
                // Destination pods by the number their port has.
                let mut by_port: BTreeMap<u16, BTreeSet<Ipv4Addr>> = BTreeMap::new();
                for pod in &cluster.pods {
                    if !addrs.iter().any(|a| a.contains(pod.ip)) {
                        continue;
                    }
                    if let Some(n) = pod.named_port(name, proto) {
                        by_port.entry(n).or_default().insert(pod.ip);
                    }
                }
                out.extend(by_port.into_iter().map(|(n, ips)| Allow {
                    addrs: Addrs::Ips(ips),
                    ports: Ports::Range(proto, n, n),
                }));
            }
        }
    }
}

/// The local pods (on `node`) isolated by `policies`, with what they may
/// receive and send, sorted by namespace and name. Peers are resolved
/// over all `pods`; namespaces give namespaceSelector their labels.
pub fn build<'a>(
    node: &str,
    policies: impl IntoIterator<Item = &'a NetworkPolicy>,
    pods: impl IntoIterator<Item = &'a Pod>,
    namespaces: impl IntoIterator<Item = &'a Namespace>,
) -> Vec<Isolated> {
    let cluster = Cluster {
        pods: pods.into_iter().filter_map(pod_view).collect(),
        namespaces: namespaces
            .into_iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                let mut labels = n.metadata.labels.clone().unwrap_or_default();
                labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
                Some((name, labels))
            })
            .collect(),
    };
    let mut policies: Vec<&NetworkPolicy> = policies.into_iter().collect();
    policies.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));

    let mut out = Vec::new();
    for pod in cluster.pods.iter().filter(|p| p.node == Some(node)) {
        let mut ingress: Option<Vec<Allow>> = None;
        let mut egress: Option<Vec<Allow>> = None;
        for policy in &policies {
            let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
            let Some(spec) = &policy.spec else { continue };
            // An absent podSelector selects every pod of the namespace.
            let selects = spec
                .pod_selector
                .as_ref()
                .is_none_or(|sel| selector_matches(sel, &pod.labels));
            if ns != pod.namespace || !selects {
                continue;
            }
            let (is_ingress, is_egress) = policy_types(policy);
            if is_ingress {
                let allows = ingress.get_or_insert_with(Vec::new);
                for rule in spec.ingress.iter().flatten() {
                    ingress_allows(&cluster, ns, rule, pod, allows);
                }
            }
            if is_egress {
                let allows = egress.get_or_insert_with(Vec::new);
                for rule in spec.egress.iter().flatten() {
                    egress_allows(&cluster, ns, rule, allows);
                }
            }
        }
        if ingress.is_none() && egress.is_none() {
            continue;
        }
        for allows in ingress.iter_mut().chain(egress.iter_mut()) {
            allows.sort();
            allows.dedup();
        }
        out.push(Isolated {
            namespace: pod.namespace.to_owned(),
            name: pod.name.to_owned(),
            ip: pod.ip,
            ingress,
            egress,
        });
    }
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    out
}

#[cfg(test)]
mod tests;
