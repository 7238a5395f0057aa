//! What the proxy programs, derived from Services and EndpointSlices by a
//! pure function: one [`ServicePort`] per (Service, port) with the
//! endpoints that may take its traffic.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

pub use crate::dns::SERVICE_NAME_LABEL;

/// A transport protocol nftables can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// A Kubernetes protocol name (absent: TCP); None for others.
    pub(crate) fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables uses.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend address of a service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node: Option<String>,
}

/// One port of one Service, with everything needed to program it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name ("" for a single unnamed port).
    pub port_name: String,
    pub protocol: Protocol,
    /// spec.clusterIPs (IPv4 only; empty for headless services).
    pub cluster_ips: Vec<Ipv4Addr>,
    pub port: u16,
    pub node_port: Option<u16>,
    /// spec.externalIPs and status.loadBalancer.ingress[].ip: traffic to
    /// these at `port` is external traffic.
    pub external_ips: Vec<Ipv4Addr>,
    /// sessionAffinity ClientIP: the stickiness timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
    /// externalTrafficPolicy Local.
    pub external_local: bool,
    /// Every endpoint of the port, sorted.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `namespace/name/protocol/port-name-or-number`: unique per port and
    /// usable in nftables identifiers.
    pub fn id(&self) -> String {
        let port = if self.port_name.is_empty() {
            self.port.to_string()
        } else {
            self.port_name.clone()
        };
        format!(
            "{}/{}/{}/{}",
            self.namespace,
            self.name,
            self.protocol.nft(),
            port
        )
    }

    /// The endpoints traffic may go to: the ready ones, or, when none is
    /// ready, the serving ones that are terminating (Kubernetes' fallback
    /// for terminating endpoints); only those on `node` when `local`.
    pub fn usable(&self, local: bool, node: &str) -> Vec<&Endpoint> {
        let candidates: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| !local || e.node.as_deref() == Some(node))
            .collect();
        let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates
            .into_iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }
}

fn v4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// The service ports to program, sorted by id. ExternalName services and
/// ports of unknown protocols are left out; headless services keep only
/// what they have besides a ClusterIP (nothing, usually).
pub fn build<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<ServicePort> {
    // (namespace, service) -> (port name, protocol) -> endpoints
    type Key = (String, String);
    let mut by_service: BTreeMap<Key, BTreeMap<(String, Protocol), Vec<Endpoint>>> =
        BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let ports = by_service.entry((ns, svc.clone())).or_default();
        for p in slice.ports.iter().flatten() {
            let (Some(number), Some(proto)) = (p.port, Protocol::parse(p.protocol.as_deref()))
            else {
                continue;
            };
            let Ok(number) = u16::try_from(number) else {
                continue;
            };
            let list = ports
                .entry((p.name.clone().unwrap_or_default(), proto))
                .or_default();
            for e in &slice.endpoints {
                let c = e.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                for ip in e.addresses.iter().filter_map(|a| v4(a)) {
                    list.push(Endpoint {
                        ip,
                        port: number,
                        ready,
                        serving,
                        terminating,
                        node: e.node_name.clone(),
                    });
                }
            }
        }
    }

    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let mut cluster_ips: Vec<Ipv4Addr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|s| v4(s))
            .collect();
        cluster_ips.sort();
        cluster_ips.dedup();
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| v4(s))
            .collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            external_ips.extend(
                svc.status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.as_deref().and_then(v4)),
            );
        }
        external_ips.sort();
        external_ips.dedup();
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(10_800)
        });
        let with_node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let endpoints = by_service.get(&(ns.clone(), name.clone()));
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let mut eps = endpoints
                .and_then(|m| m.get(&(port_name.clone(), protocol)))
                .cloned()
                .unwrap_or_default();
            eps.sort();
            eps.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
            out.push(ServicePort {
                namespace: ns.clone(),
                name: name.clone(),
                port_name,
                protocol,
                cluster_ips: cluster_ips.clone(),
                port,
                node_port: p
                    .node_port
                    .filter(|_| with_node_ports)
                    .and_then(|n| u16::try_from(n).ok()),
                external_ips: external_ips.clone(),
                affinity_timeout,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints: eps,
            });
        }
    }
    out.sort_by_key(ServicePort::id);
    out
}

#[cfg(test)]
mod tests;
