//! Clearing stale conntrack entries of UDP and SCTP services, as
//! kube-proxy does after each sync.
//!
//! nftables only rewrites the first packet of a flow; every later packet
//! of the same 5-tuple follows the conntrack entry. A TCP connection to a
//! removed endpoint fails and the client reconnects, but a UDP client that
//! reuses its source port (a resolver, a game, a metrics agent) keeps
//! being DNATed to the dead pod until the entry expires, which never
//! happens while it keeps sending. Likewise a flow that reached a service
//! address before any rule covered it (the Service was just created, or
//! the proxy was not running) keeps its un-NATed entry and goes nowhere.
//!
//! Kubernetes' rule (kube-proxy's `conntrack.CleanStaleEntries`): an entry
//! of a UDP service port is stale when its original destination is one of
//! the port's service addresses (ClusterIP, externalIP, load-balancer IP
//! at the port, or the NodePort on any address) and its reply source, the
//! address it was DNATed to, is not a *serving* endpoint of that port.
//! Traffic policies, topology and terminating state do not count, so
//! flows behave as TCP connections do: they end only when their endpoint
//! stops serving. rkube applies the same rule to SCTP (older kube-proxy
//! versions cleared SCTP too: a stale SCTP association is as stuck) and
//! keys it by port as well as address (kube-proxy keys ClusterIPs by
//! address alone, so one UDP port's endpoints decide for all of them).
//!
//! Three steps, the first two pure: [`targets`] derives from the service
//! ports what serves each service destination; [`to_clear`] compares it
//! with the previous sync's and keeps the destinations where an entry
//! could now be stale (a new port: flows that got there before its rules;
//! an endpoint stopped serving; the port went from no serving endpoint to
//! some; the port went away; everything after a start, when the previous
//! state is unknown); [`stale`] picks those
//! entries out of the conntrack table. [`clear`] dumps the table and
//! deletes them, only when there is something to check, so unrelated
//! syncs never pay for a dump.
//!
//! The kernel is talked to directly over `NETLINK_NETFILTER` (ctnetlink:
//! one `IPCTNL_MSG_CT_GET` dump of the IPv4 table, one
//! `IPCTNL_MSG_CT_DELETE` by exact original tuple per stale entry) with
//! the small encoder in [`netlink`]. That needs no package beyond the
//! kernel's nf_conntrack_netlink (loaded on demand), no process per
//! deletion, and gives a precise error per entry; the Debian `conntrack`
//! tool would have been one more system dependency and a fork per filter.
//! Where the socket cannot be opened (no CAP_NET_ADMIN, no ctnetlink) the
//! proxy warns once and goes on without clearing.

pub mod netlink;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{Protocol, ServicePort};

/// Where a service flow was sent, in its original direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dst {
    /// A ClusterIP, externalIP or load-balancer IP at the service port.
    Addr(Ipv4Addr, u16),
    /// A NodePort, on whatever address.
    NodePort(u16),
}

/// One service destination of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flow {
    pub protocol: Protocol,
    pub dst: Dst,
}

/// Every UDP/SCTP service destination with the addresses of its serving
/// endpoints (possibly none).
pub type Targets = BTreeMap<Flow, BTreeSet<Ipv4Addr>>;

/// Entries to `flow` are stale unless they were DNATed to one of `keep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clear {
    pub flow: Flow,
    pub keep: BTreeSet<Ipv4Addr>,
}

/// Whether stale entries of `protocol` are cleared (TCP connections end
/// by themselves).
pub fn cleared(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Udp | Protocol::Sctp)
}

/// The UDP and SCTP service destinations of `ports` and what serves them.
pub fn targets(ports: &[ServicePort]) -> Targets {
    let mut out = Targets::new();
    for sp in ports.iter().filter(|sp| cleared(sp.protocol)) {
        let serving: BTreeSet<Ipv4Addr> = sp
            .endpoints
            .iter()
            .filter(|e| e.serving)
            .map(|e| e.ip)
            .collect();
        let dsts = sp
            .cluster_ips
            .iter()
            .chain(&sp.external_ips)
            .map(|ip| Dst::Addr(*ip, sp.port))
            .chain(sp.node_port.map(Dst::NodePort));
        for dst in dsts {
            // Two ports on one destination cannot both exist (the API
            // refuses duplicate port/protocol pairs); should they, either
            // one's endpoints may keep a flow.
            out.entry(Flow {
                protocol: sp.protocol,
                dst,
            })
            .or_default()
            .extend(serving.iter().copied());
        }
    }
    out
}

/// The destinations whose entries must be checked after moving from `old`
/// (`None`: unknown, check everything) to `new`: those that are new, lost
/// a serving endpoint, went from none to some, or are gone (then nothing
/// is kept).
pub fn to_clear(old: Option<&Targets>, new: &Targets) -> Vec<Clear> {
    let Some(old) = old else {
        return new
            .iter()
            .map(|(flow, keep)| Clear {
                flow: *flow,
                keep: keep.clone(),
            })
            .collect();
    };
    let mut out = Vec::new();
    for (flow, keep) in new {
        let check = match old.get(flow) {
            // New: flows that got there before the rules are strays.
            None => true,
            Some(before) => {
                let lost = before.iter().any(|ip| !keep.contains(ip));
                let woke = before.is_empty() && !keep.is_empty();
                lost || woke
            }
        };
        if check {
            out.push(Clear {
                flow: *flow,
                keep: keep.clone(),
            });
        }
    }
    for flow in old.keys().filter(|f| !new.contains_key(*f)) {
        out.push(Clear {
            flow: *flow,
            keep: BTreeSet::new(),
        });
    }
    out
}

/// One conntrack entry, as much of it as the cleanup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// IP protocol number (17 UDP, 132 SCTP, ...).
    pub proto: u8,
    /// Original direction.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// Source of the reply direction: the endpoint the flow was DNATed
    /// to, or `dst` when it was not.
    pub reply_src: Ipv4Addr,
    /// The conntrack zone, when not the default.
    pub zone: Option<u16>,
}

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// The entries of `entries` that `clears` says are stale.
pub fn stale<'a>(clears: &[Clear], entries: &'a [Entry]) -> Vec<&'a Entry> {
    let mut by_addr: BTreeMap<(u8, Ipv4Addr, u16), &BTreeSet<Ipv4Addr>> = BTreeMap::new();
    let mut by_node_port: BTreeMap<(u8, u16), &BTreeSet<Ipv4Addr>> = BTreeMap::new();
    for c in clears {
        let proto = proto_number(c.flow.protocol);
        match c.flow.dst {
            Dst::Addr(ip, port) => {
                by_addr.insert((proto, ip, port), &c.keep);
            }
            Dst::NodePort(port) => {
                by_node_port.insert((proto, port), &c.keep);
            }
        }
    }
    entries
        .iter()
        .filter(|e| {
            let addr = by_addr
                .get(&(e.proto, e.dst, e.dport))
                .is_some_and(|keep| !keep.contains(&e.reply_src));
            let node_port = by_node_port
                .get(&(e.proto, e.dport))
                .is_some_and(|keep| !keep.contains(&e.reply_src));
            addr || node_port
        })
        .collect()
}

/// Whether `e` says this node cannot clear entries at all (no
/// CAP_NET_ADMIN, no ctnetlink), rather than that one attempt failed.
pub fn unavailable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPERM
                | libc::EACCES
                | libc::EPROTONOSUPPORT
                | libc::EAFNOSUPPORT
                | libc::EOPNOTSUPP
        )
    )
}

/// Dumps the IPv4 conntrack table and deletes the entries `clears` says
/// are stale; returns how many were deleted. Blocking: run it off the
/// async threads.
pub fn clear(clears: &[Clear]) -> std::io::Result<usize> {
    if clears.is_empty() {
        return Ok(0);
    }
    let mut sock = netlink::Socket::open()?;
    let entries = sock.dump()?;
    let mut deleted = 0;
    for e in stale(clears, &entries) {
        if sock.delete(e)? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
