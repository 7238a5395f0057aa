//! The nftables ruleset for a set of service ports, and the incremental
//! script that moves the kernel from one ruleset to the next.
//!
//! Layout of the table (one per node agent):
//! - base chains `nat-prerouting` and `nat-output` jump to `services`,
//!   which dispatches on `daddr . l4proto . dport` through the verdict map
//!   `service-ips` (ClusterIPs, external IPs) and, for local addresses, on
//!   `l4proto . dport` through `service-nodeports`;
//! - `svc-<id>` picks an endpoint (affinity sets first, then `numgen`),
//!   `ext-<id>` marks external traffic for masquerade (unless
//!   externalTrafficPolicy Local) before balancing;
//! - `ep-<id>/<ip>/<port>` marks hairpin traffic, records affinity and
//!   DNATs;
//! - `nat-postrouting` masquerades marked packets;
//! - the `filter-*` chains reject new connections to service ports
//!   without usable endpoints (sets `no-endpoints`,
//!   `no-endpoint-nodeports`).
//!
//! [`Ruleset::script`] only touches what changed: chains whose rules
//! changed are flushed and refilled, map elements are added and deleted
//! one by one, so established connections (conntrack) and affinity sets
//! survive unrelated changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::model::{Endpoint, ServicePort};

/// The packet mark asking `nat-postrouting` to masquerade.
pub const MASQUERADE_MARK: u32 = 0x4000;

/// Per-node inputs of the rendering.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// This node's name (for the Local traffic policies).
    pub node: String,
    /// Masquerade DNATed traffic that leaves through the bridge it came
    /// in on: needed when bridged replies bypass netfilter (no
    /// br_netfilter), so that they come back through the host.
    pub masquerade_bridge: Option<String>,
}

/// A chain: its base-chain header (type, hook, priority) if any, and its
/// rules in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub header: Option<String>,
    pub rules: Vec<String>,
}

/// A set or map declaration and its elements (key -> map value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// "set" or "map".
    pub kind: &'static str,
    pub decl: String,
    pub elements: BTreeMap<String, Option<String>>,
}

/// Everything in the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
}

fn ep_chain(id: &str, e: &Endpoint) -> String {
    format!("ep-{id}/{}/{}", e.ip, e.port)
}

/// The affinity set of an endpoint; the timeout is part of the name, so a
/// changed timeout makes a new set instead of a changed declaration.
fn aff_set(id: &str, e: &Endpoint, timeout: u32) -> String {
    format!("aff-{id}/{}/{}/{timeout}", e.ip, e.port)
}

/// The rules picking one of `endpoints` (non-empty).
fn balance(id: &str, sp: &ServicePort, endpoints: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(timeout) = sp.affinity_timeout {
        for e in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                aff_set(id, e, timeout),
                ep_chain(id, e)
            ));
        }
    }
    if let [only] = endpoints {
        rules.push(format!("goto {}", ep_chain(id, only)));
    } else {
        let arms: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", ep_chain(id, e)))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            arms.join(", ")
        ));
    }
    rules
}

fn base(header: &str, rules: &[&str]) -> Chain {
    Chain {
        header: Some(header.to_owned()),
        rules: rules.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn set(kind: &'static str, decl: &str) -> Set {
    Set {
        kind,
        decl: decl.to_owned(),
        elements: BTreeMap::new(),
    }
}

/// The ruleset programming `ports` on this node.
pub fn render(opts: &Options, ports: &[ServicePort]) -> Ruleset {
    let mut rs = Ruleset::default();
    let c = &mut rs.chains;
    c.insert(
        "nat-prerouting".into(),
        base(
            "type nat hook prerouting priority dstnat; policy accept;",
            &["jump services"],
        ),
    );
    c.insert(
        "nat-output".into(),
        base(
            "type nat hook output priority -100; policy accept;",
            &["jump services"],
        ),
    );
    let mark = format!("0x{MASQUERADE_MARK:x}");
    let mut post = vec![format!(
        "meta mark & {mark} == {mark} meta mark set meta mark ^ {mark} masquerade"
    )];
    if let Some(bridge) = &opts.masquerade_bridge {
        post.push(format!(
            "ct status dnat iifname \"{bridge}\" oifname \"{bridge}\" masquerade"
        ));
    }
    c.insert(
        "nat-postrouting".into(),
        Chain {
            header: Some("type nat hook postrouting priority srcnat; policy accept;".into()),
            rules: post,
        },
    );
    c.insert(
        "services".into(),
        Chain {
            header: None,
            rules: vec![
                "ip daddr . meta l4proto . th dport vmap @service-ips".into(),
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".into(),
            ],
        },
    );
    let reject = "ct state new ip daddr . meta l4proto . th dport @no-endpoints reject";
    c.insert(
        "filter-forward".into(),
        base(
            "type filter hook forward priority -110; policy accept;",
            &[reject],
        ),
    );
    c.insert(
        "filter-output".into(),
        base(
            "type filter hook output priority -110; policy accept;",
            &[reject],
        ),
    );
    c.insert(
        "filter-input".into(),
        base(
            "type filter hook input priority -110; policy accept;",
            &["ct state new fib daddr type local meta l4proto . th dport @no-endpoint-nodeports reject"],
        ),
    );
    rs.sets.insert(
        "service-ips".into(),
        set(
            "map",
            "type ipv4_addr . inet_proto . inet_service : verdict;",
        ),
    );
    rs.sets.insert(
        "service-nodeports".into(),
        set("map", "type inet_proto . inet_service : verdict;"),
    );
    rs.sets.insert(
        "no-endpoints".into(),
        set("set", "type ipv4_addr . inet_proto . inet_service;"),
    );
    rs.sets.insert(
        "no-endpoint-nodeports".into(),
        set("set", "type inet_proto . inet_service;"),
    );

    for sp in ports {
        let id = sp.id();
        let proto = sp.protocol.nft();
        let internal = sp.usable(sp.internal_local, &opts.node);
        let external = sp.usable(sp.external_local, &opts.node);
        let has_external = sp.node_port.is_some() || !sp.external_ips.is_empty();

        // Endpoint chains for every endpoint either path may use.
        let mut used: BTreeSet<&Endpoint> = internal.iter().copied().collect();
        if has_external {
            used.extend(external.iter().copied());
        }
        for e in &used {
            let mut rules = vec![format!(
                "ip saddr {} meta mark set meta mark | {mark}",
                e.ip
            )];
            if let Some(timeout) = sp.affinity_timeout {
                let name = aff_set(&id, e, timeout);
                rules.push(format!("update @{name} {{ ip saddr }}"));
                rs.sets.insert(
                    name,
                    set(
                        "set",
                        &format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                    ),
                );
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
            rs.chains.insert(
                ep_chain(&id, e),
                Chain {
                    header: None,
                    rules,
                },
            );
        }

        let svc = format!("svc-{id}");
        if !internal.is_empty() {
            rs.chains.insert(
                svc.clone(),
                Chain {
                    header: None,
                    rules: balance(&id, sp, &internal),
                },
            );
        }
        let map = |rs: &mut Ruleset, name: &str, key: String, verdict: Option<String>| {
            rs.sets
                .get_mut(name)
                .expect("fixed set")
                .elements
                .insert(key, verdict);
        };
        for ip in &sp.cluster_ips {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if internal.is_empty() {
                map(&mut rs, "no-endpoints", key, None);
            } else {
                map(&mut rs, "service-ips", key, Some(format!("goto {svc}")));
            }
        }
        if !has_external {
            continue;
        }
        let ext = format!("ext-{id}");
        if !external.is_empty() {
            let mut rules = Vec::new();
            if !sp.external_local {
                rules.push(format!("meta mark set meta mark | {mark}"));
            }
            if !sp.external_local && !sp.internal_local {
                rules.push(format!("goto {svc}"));
            } else {
                rules.extend(balance(&id, sp, &external));
            }
            rs.chains.insert(
                ext.clone(),
                Chain {
                    header: None,
                    rules,
                },
            );
        }
        for ip in &sp.external_ips {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if external.is_empty() {
                map(&mut rs, "no-endpoints", key, None);
            } else {
                map(&mut rs, "service-ips", key, Some(format!("goto {ext}")));
            }
        }
        if let Some(node_port) = sp.node_port {
            let key = format!("{proto} . {node_port}");
            if external.is_empty() {
                map(&mut rs, "no-endpoint-nodeports", key, None);
            } else {
                map(
                    &mut rs,
                    "service-nodeports",
                    key,
                    Some(format!("goto {ext}")),
                );
            }
        }
    }
    rs
}

fn element(key: &str, value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{key} : {v}"),
        None => key.to_owned(),
    }
}

impl Ruleset {
    /// The `nft -f` script that turns `old` (what the kernel has, as far
    /// as we know; `None`: unknown, start over) into `self` for table
    /// `ip <table>`, in one transaction. Empty when nothing changed.
    pub fn script(&self, table: &str, old: Option<&Ruleset>) -> String {
        self.script_in("ip", table, old)
    }

    /// [`Ruleset::script`] for a table of another family (`inet`,
    /// `bridge`, ...).
    pub fn script_in(&self, family: &str, table: &str, old: Option<&Ruleset>) -> String {
        let table = &format!("{family} {table}");
        let empty = Ruleset::default();
        let mut s = String::new();
        // A set whose declaration changed cannot be altered in place;
        // affinity sets carry their timeout in their name so this does
        // not happen, but if it does, start over.
        let redeclared = old.is_some_and(|old| {
            self.sets
                .iter()
                .any(|(n, set)| old.sets.get(n).is_some_and(|o| o.decl != set.decl))
        });
        let old = match old.filter(|_| !redeclared) {
            Some(old) => old,
            None => {
                // Create-then-delete works whether or not the table exists.
                let _ = writeln!(
                    s,
                    "table {table} {{}}\ndelete table {table}\nadd table {table}"
                );
                &empty
            }
        };
        for (name, set) in &self.sets {
            if !old.sets.contains_key(name) {
                let _ = writeln!(s, "add {} {table} {name} {{ {} }}", set.kind, set.decl);
            }
        }
        for (name, chain) in &self.chains {
            if old.chains.contains_key(name) {
                continue;
            }
            match &chain.header {
                Some(h) => {
                    let _ = writeln!(s, "add chain {table} {name} {{ {h} }}");
                }
                None => {
                    let _ = writeln!(s, "add chain {table} {name}");
                }
            }
        }
        // Stale chains are emptied first, so nothing refers to what goes.
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(s, "flush chain {table} {name}");
        }
        // Element deletions before rule changes: a map may point at a
        // chain about to be deleted.
        for (name, set) in &self.sets {
            let Some(o) = old.sets.get(name) else {
                continue;
            };
            for (key, value) in &o.elements {
                if set.elements.get(key) != Some(value) {
                    let _ = writeln!(s, "delete element {table} {name} {{ {key} }}");
                }
            }
        }
        for (name, chain) in &self.chains {
            let changed = old.chains.get(name).is_some_and(|o| o.rules != chain.rules);
            if changed {
                let _ = writeln!(s, "flush chain {table} {name}");
            }
            if changed || !old.chains.contains_key(name) {
                for rule in &chain.rules {
                    let _ = writeln!(s, "add rule {table} {name} {rule}");
                }
            }
        }
        for (name, set) in &self.sets {
            let old_elements = old.sets.get(name).map(|o| &o.elements);
            for (key, value) in &set.elements {
                if old_elements.and_then(|e| e.get(key)) != Some(value) {
                    let _ = writeln!(
                        s,
                        "add element {table} {name} {{ {} }}",
                        element(key, value)
                    );
                }
            }
        }
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(s, "delete chain {table} {name}");
        }
        for (name, set) in old.sets.iter().filter(|(n, _)| !self.sets.contains_key(*n)) {
            let _ = writeln!(s, "delete {} {table} {name}", set.kind);
        }
        s
    }
}

#[cfg(test)]
mod tests;
