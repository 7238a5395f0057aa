//! The nftables rules enforcing policies for this node's isolated pods,
//! rendered into the proxy's [`Ruleset`] shape (so the proxy's
//! incremental [`Ruleset::script_in`] applies them).
//!
//! Two tables, both named after the pod bridge (`<bridge>-policy`):
//!
//! - `ip`: base chain `forward` (filter priority, after the proxy's DNAT
//!   in prerouting, before its masquerade in postrouting, so both ends'
//!   real pod addresses are seen) accepts replies of allowed connections
//!   (`ct state established,related`), then jumps through the maps
//!   `egress-pods` (by source) and `ingress-pods` (by destination) to the
//!   per-pod chains `egress-<ip>` and `ingress-<ip>`: each rule there
//!   `return`s on allowed traffic, the chain ends in `drop`. Traffic from
//!   and to the host itself (input, output hooks) is never filtered:
//!   Kubernetes always allows a pod's node to reach it.
//! - `bridge`: frames between two pods on the bridge never reach the ip
//!   hooks without br_netfilter, and the bridge family has no conntrack
//!   here (no nf_conntrack_bridge). So its `prerouting` chain (priority
//!   -300, ahead of br_netfilter) hands frames from or to an isolated pod
//!   (set `isolated`) to the host's IP stack: their destination MAC
//!   becomes the bridge's own, the host routes them back out the bridge,
//!   and the `ip` table sees them with conntrack. Frames between pods
//!   that no policy isolates stay bridged.

use std::fmt::Write;
use std::net::Ipv4Addr;

use super::model::{Addrs, Allow, Isolated, Ports};
pub use crate::proxy::nft::{Chain, Ruleset, Set};

/// The policy rules of one node: the `ip` table and the `bridge` table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub ip: Ruleset,
    /// Empty (no table) while the bridge's MAC is unknown (no bridge yet).
    pub bridge: Ruleset,
}

/// The chain holding an isolated pod's ingress rules.
pub fn ingress_chain(ip: Ipv4Addr) -> String {
    format!("ingress-{ip}")
}

/// The chain holding an isolated pod's egress rules.
pub fn egress_chain(ip: Ipv4Addr) -> String {
    format!("egress-{ip}")
}

fn addr_set(ips: impl IntoIterator<Item = impl std::fmt::Display>) -> String {
    let items: Vec<String> = ips.into_iter().map(|i| i.to_string()).collect();
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}

/// The nft rule accepting (returning on) `allow`; `field` is `saddr`
/// (ingress: the peer sends) or `daddr` (egress: the peer receives).
pub fn allow_rule(field: &str, allow: &Allow) -> String {
    let mut parts: Vec<String> = Vec::new();
    match &allow.addrs {
        Addrs::Any => {}
        Addrs::Ips(ips) => parts.push(format!("ip {field} {}", addr_set(ips))),
        Addrs::Block { cidr, except } => {
            parts.push(format!("ip {field} {cidr}"));
            if !except.is_empty() {
                parts.push(format!("ip {field} != {}", addr_set(except)));
            }
        }
    }
    match allow.ports {
        Ports::Any => {}
        Ports::All(p) => parts.push(format!("meta l4proto {}", p.nft())),
        Ports::Range(p, first, last) if first == last => {
            parts.push(format!("{} dport {first}", p.nft()))
        }
        Ports::Range(p, first, last) => parts.push(format!("{} dport {first}-{last}", p.nft())),
    }
    parts.push("return".into());
    parts.join(" ")
}

fn pod_chain(own: Ipv4Addr, field: &str, allows: &[Allow]) -> Chain {
    let mut rules = Vec::with_capacity(allows.len() + 2);
    // A pod can always reach itself (through a Service, say).
    rules.push(format!("ip {field} {own} return"));
    rules.extend(allows.iter().map(|a| allow_rule(field, a)));
    rules.push("drop".into());
    Chain {
        header: None,
        rules,
    }
}

fn verdict_map() -> Set {
    Set {
        kind: "map",
        decl: "type ipv4_addr : verdict;".into(),
        elements: Default::default(),
    }
}

/// The rules isolating `pods`; `bridge_mac`: the pod bridge's address,
/// where frames between pods are handed to the IP stack.
pub fn render(pods: &[Isolated], bridge_mac: Option<&str>) -> Rules {
    let mut ip = Ruleset::default();
    ip.chains.insert(
        "forward".into(),
        Chain {
            header: Some("type filter hook forward priority filter; policy accept;".into()),
            rules: vec![
                "ct state established,related accept".into(),
                "ip saddr vmap @egress-pods".into(),
                "ip daddr vmap @ingress-pods".into(),
            ],
        },
    );
    ip.sets.insert("ingress-pods".into(), verdict_map());
    ip.sets.insert("egress-pods".into(), verdict_map());
    for pod in pods {
        if let Some(allows) = &pod.ingress {
            let chain = ingress_chain(pod.ip);
            ip.sets
                .get_mut("ingress-pods")
                .expect("declared")
                .elements
                .insert(pod.ip.to_string(), Some(format!("jump {chain}")));
            ip.chains.insert(chain, pod_chain(pod.ip, "saddr", allows));
        }
        if let Some(allows) = &pod.egress {
            let chain = egress_chain(pod.ip);
            ip.sets
                .get_mut("egress-pods")
                .expect("declared")
                .elements
                .insert(pod.ip.to_string(), Some(format!("jump {chain}")));
            ip.chains.insert(chain, pod_chain(pod.ip, "daddr", allows));
        }
    }

    let mut bridge = Ruleset::default();
    if let Some(mac) = bridge_mac {
        let to_stack = format!("ether daddr != {mac} meta pkttype set host ether daddr set {mac}");
        bridge.chains.insert(
            "prerouting".into(),
            Chain {
                header: Some("type filter hook prerouting priority -300; policy accept;".into()),
                rules: vec![
                    format!("ip saddr @isolated {to_stack}"),
                    format!("ip daddr @isolated {to_stack}"),
                ],
            },
        );
        bridge.sets.insert(
            "isolated".into(),
            Set {
                kind: "set",
                decl: "type ipv4_addr;".into(),
                elements: pods.iter().map(|p| (p.ip.to_string(), None)).collect(),
            },
        );
    }
    Rules { ip, bridge }
}

impl Rules {
    /// The `nft -f` script moving the kernel from `old` (None: unknown,
    /// start over) to `self`: table `ip <table>` and, while there is a
    /// bridge MAC, `bridge <table>`. Empty when nothing changed.
    pub fn script(&self, table: &str, old: Option<&Rules>) -> String {
        let mut s = self.ip.script_in("ip", table, old.map(|o| &o.ip));
        let had_bridge = old.is_some_and(|o| !o.bridge.chains.is_empty());
        if self.bridge.chains.is_empty() {
            if had_bridge || old.is_none() {
                let _ = writeln!(s, "table bridge {table} {{}}\ndelete table bridge {table}");
            }
        } else {
            let old_bridge = old.map(|o| &o.bridge).filter(|_| had_bridge);
            s.push_str(&self.bridge.script_in("bridge", table, old_bridge));
        }
        s
    }
}

/// The script deleting both tables (whether or not they exist).
pub fn remove_script(table: &str) -> String {
    let mut s = String::new();
    for family in ["ip", "bridge"] {
        let _ = writeln!(
            s,
            "table {family} {table} {{}}\ndelete table {family} {table}"
        );
    }
    s
}

#[cfg(test)]
mod tests;
