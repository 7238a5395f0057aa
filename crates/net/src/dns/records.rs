//! Record resolution: a pure function from an [`Index`] of the cluster's
//! Services and EndpointSlices and one question to the records of the
//! answer, as CoreDNS's kubernetes plugin answers them (the Kubernetes DNS
//! specification, with `pods insecure`).
//!
//! Names in the cluster domain (`cluster.local` by default):
//!
//! - `<svc>.<ns>.svc.<domain>`: A/AAAA with the ClusterIPs; for headless
//!   services the addresses of the ready endpoints (all endpoints with
//!   `publishNotReadyAddresses`); for ExternalName services a CNAME.
//! - `<hostname>.<svc>.<ns>.svc.<domain>`: the endpoints with that hostname;
//!   `<dashed-ip>.<svc>.<ns>.svc.<domain>`: a headless service's endpoint.
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for a named port
//!   (SRV on `<svc>.<ns>.svc.<domain>` gives every named port).
//! - `<dashed-ip>.<ns>.pod.<domain>`: A/AAAA with that address, unchecked.
//! - the apex: SOA and NS.
//!
//! PTR in `in-addr.arpa` / `ip6.arpa` for ClusterIPs and headless endpoints.
//! Unknown names: NXDOMAIN with the SOA; known names asked for another
//! type: NOERROR with no answer and the SOA; names outside the cluster
//! domain and the reverse zones: REFUSED (nothing is forwarded).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The zone's fixed parameters.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The cluster domain, lower case, without the trailing dot.
    pub domain: String,
    /// TTL of every record (and the SOA's minimum).
    pub ttl: u32,
    /// The SOA serial.
    pub serial: u32,
}

impl Zone {
    pub fn new(domain: &str, ttl: u32) -> Zone {
        Zone {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            ttl,
            serial: 1,
        }
    }

    fn fqdn(&self, relative: &str) -> Name {
        let s = if relative.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{relative}.{}.", self.domain)
        };
        Name::from_ascii(&s).unwrap_or_else(|_| Name::root())
    }

    /// The SOA record of the cluster domain (CoreDNS's values).
    pub fn soa(&self) -> Record {
        Record::from_rdata(
            self.fqdn(""),
            self.ttl,
            RData::SOA(SOA::new(
                self.fqdn("ns.dns"),
                self.fqdn("hostmaster"),
                self.serial,
                7200,
                1800,
                86400,
                self.ttl,
            )),
        )
    }

    fn reverse_soa(&self, zone: &str) -> Record {
        let name = Name::from_ascii(zone).unwrap_or_else(|_| Name::root());
        Record::from_rdata(
            name,
            self.ttl,
            RData::SOA(SOA::new(
                self.fqdn("ns.dns"),
                self.fqdn("hostmaster"),
                self.serial,
                7200,
                1800,
                86400,
                self.ttl,
            )),
        )
    }
}

/// What a question gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA for NXDOMAIN and NODATA.
    pub authority: Vec<Record>,
    /// Addresses of SRV targets.
    pub additionals: Vec<Record>,
}

impl Answer {
    fn refused() -> Answer {
        Answer {
            rcode: ResponseCode::Refused,
            answers: vec![],
            authority: vec![],
            additionals: vec![],
        }
    }
}

/// One named or unnamed port: (name, protocol lower case, number).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Port {
    name: String,
    proto: String,
    port: u16,
}

#[derive(Clone, Debug)]
struct Endpoint {
    ip: IpAddr,
    hostname: Option<String>,
    ready: bool,
    ports: Arc<Vec<Port>>,
}

#[derive(Clone, Debug)]
enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless,
    ExternalName(String),
}

#[derive(Clone, Debug)]
struct Svc {
    kind: Kind,
    ports: Vec<Port>,
    publish_not_ready: bool,
    endpoints: Vec<Endpoint>,
}

impl Svc {
    /// The endpoints DNS publishes, one per address.
    fn published(&self) -> impl Iterator<Item = &Endpoint> {
        let mut seen = HashSet::new();
        self.endpoints
            .iter()
            .filter(move |e| (e.ready || self.publish_not_ready) && seen.insert(e.ip))
    }

    fn headless(&self) -> bool {
        matches!(self.kind, Kind::Headless)
    }
}

/// The cluster's Services and their endpoints, indexed for lookups.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// (namespace, name) → service.
    services: HashMap<(String, String), Svc>,
    namespaces: HashSet<String>,
    /// Reverse names: address → owner names relative to the domain.
    ptr: BTreeMap<IpAddr, Vec<String>>,
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// `10.1.2.3` → `10-1-2-3`, `fd00::1` → `fd00--1`.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Index {
    /// Builds the index. Slices are matched to services by their
    /// `kubernetes.io/service-name` label.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Index {
        let mut index = Index::default();
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                continue;
            };
            let Some(spec) = svc.spec.as_ref() else {
                continue;
            };
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match spec.external_name.as_deref() {
                    Some(t) if !t.is_empty() => {
                        Kind::ExternalName(t.trim_end_matches('.').to_owned())
                    }
                    _ => continue,
                }
            } else if spec.cluster_ip.as_deref() == Some("None") {
                Kind::Headless
            } else {
                let mut ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .filter_map(|s| parse_ip(s))
                    .collect();
                if ips.is_empty() {
                    ips.extend(spec.cluster_ip.as_deref().and_then(parse_ip));
                }
                if ips.is_empty() {
                    // Not allocated yet: no records until it is.
                    continue;
                }
                Kind::ClusterIp(ips)
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .map(|p| Port {
                    name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                    proto: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                    port: p.port as u16,
                })
                .collect();
            let key = (ns.to_owned(), name.to_owned());
            index.namespaces.insert(ns.to_owned());
            if let Kind::ClusterIp(ips) = &kind {
                for ip in ips {
                    index
                        .ptr
                        .entry(*ip)
                        .or_default()
                        .push(format!("{name}.{ns}.svc"));
                }
            }
            index.services.insert(
                key,
                Svc {
                    kind,
                    ports,
                    publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
                    endpoints: vec![],
                },
            );
        }
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(svc_name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            let Some(svc) = index.services.get_mut(&(ns.to_owned(), svc_name.clone())) else {
                continue;
            };
            if slice.address_type == "FQDN" {
                continue;
            }
            let ports = Arc::new(
                slice
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some(Port {
                            name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                            proto: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                            port: u16::try_from(p.port?).ok()?,
                        })
                    })
                    .collect::<Vec<_>>(),
            );
            for ep in &slice.endpoints {
                // Unknown readiness counts as ready (the API's rule).
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let hostname = ep
                    .hostname
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .map(str::to_ascii_lowercase);
                for addr in &ep.addresses {
                    let Some(ip) = parse_ip(addr) else { continue };
                    svc.endpoints.push(Endpoint {
                        ip,
                        hostname: hostname.clone(),
                        ready,
                        ports: ports.clone(),
                    });
                }
            }
        }
        // Reverse names of headless endpoints.
        for ((ns, name), svc) in &index.services {
            if !svc.headless() {
                continue;
            }
            for ep in svc.published() {
                let label = ep.hostname.clone().unwrap_or_else(|| dashed(&ep.ip));
                index
                    .ptr
                    .entry(ep.ip)
                    .or_default()
                    .push(format!("{label}.{name}.{ns}.svc"));
            }
        }
        for names in index.ptr.values_mut() {
            names.sort();
            names.dedup();
        }
        index
    }

    /// How many services are indexed.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

fn addr_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

fn wants(qtype: RecordType, ip: &IpAddr) -> bool {
    match qtype {
        RecordType::A => ip.is_ipv4(),
        RecordType::AAAA => ip.is_ipv6(),
        RecordType::ANY => true,
        _ => false,
    }
}

/// The result of looking a name up in the cluster domain.
enum Found {
    /// No such name.
    None,
    /// The name exists; these are its records of the asked type.
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
}

impl Found {
    fn empty() -> Found {
        Found::Records {
            answers: vec![],
            additionals: vec![],
        }
    }
    fn answers(answers: Vec<Record>) -> Found {
        Found::Records {
            answers,
            additionals: vec![],
        }
    }
}

/// Answers one question (`name` in any case, `qtype`).
pub fn resolve(index: &Index, zone: &Zone, name: &Name, qtype: RecordType) -> Answer {
    let lower = name.to_lowercase().to_ascii();
    let lower = lower.trim_end_matches('.');
    let domain = zone.domain.as_str();

    for reverse in ["in-addr.arpa", "ip6.arpa"] {
        if lower == reverse || lower.ends_with(&format!(".{reverse}")) {
            return resolve_reverse(index, zone, name, lower, reverse, qtype);
        }
    }

    let relative = if lower == domain {
        ""
    } else if let Some(r) = lower.strip_suffix(domain).and_then(|r| r.strip_suffix('.')) {
        r
    } else {
        return Answer::refused();
    };
    let found = lookup(index, zone, name, relative, qtype, 0);
    finish(found, zone.soa())
}

fn finish(found: Found, soa: Record) -> Answer {
    match found {
        Found::None => Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authority: vec![soa],
            additionals: vec![],
        },
        Found::Records {
            answers,
            additionals,
        } => {
            let authority = if answers.is_empty() {
                vec![soa]
            } else {
                vec![]
            };
            Answer {
                rcode: ResponseCode::NoError,
                answers,
                authority,
                additionals,
            }
        }
    }
}

/// `relative`: the lower-case name less the cluster domain ("" at the apex).
fn lookup(
    index: &Index,
    zone: &Zone,
    owner: &Name,
    relative: &str,
    qtype: RecordType,
    depth: u8,
) -> Found {
    let ttl = zone.ttl;
    let labels: Vec<&str> = if relative.is_empty() {
        vec![]
    } else {
        relative.split('.').collect()
    };
    match labels.as_slice() {
        [] => match qtype {
            RecordType::SOA => Found::answers(vec![zone.soa()]),
            RecordType::NS => Found::answers(vec![Record::from_rdata(
                owner.clone(),
                ttl,
                RData::NS(NS(zone.fqdn("ns.dns"))),
            )]),
            _ => Found::empty(),
        },
        ["svc"] | ["pod"] => Found::empty(),
        [ns, "svc"] => {
            if index.namespaces.contains(*ns) {
                Found::empty()
            } else {
                Found::None
            }
        }
        [_ns, "pod"] => Found::empty(),
        [ip, _ns, "pod"] => match undashed(ip) {
            Some(ip) if wants(qtype, &ip) => Found::answers(vec![addr_record(owner, ttl, ip)]),
            Some(_) => Found::empty(),
            None => Found::None,
        },
        [svc, ns, "svc"] => {
            let Some(s) = index.services.get(&(ns.to_string(), svc.to_string())) else {
                return Found::None;
            };
            service_records(index, zone, owner, s, svc, ns, qtype, depth)
        }
        [first, svc, ns, "svc"] => {
            let Some(s) = index.services.get(&(ns.to_string(), svc.to_string())) else {
                return Found::None;
            };
            if let Some(proto) = first.strip_prefix('_') {
                // `_<proto>.<svc>...`: an empty non-terminal when some
                // named port has that protocol.
                let exists = s
                    .ports
                    .iter()
                    .any(|p| !p.name.is_empty() && p.proto == proto);
                return if exists { Found::empty() } else { Found::None };
            }
            let matching: Vec<&Endpoint> = s
                .published()
                .filter(|e| match &e.hostname {
                    Some(h) if h == first => true,
                    _ => s.headless() && dashed(&e.ip) == *first,
                })
                .collect();
            if matching.is_empty() {
                return Found::None;
            }
            Found::answers(
                matching
                    .into_iter()
                    .filter(|e| wants(qtype, &e.ip))
                    .map(|e| addr_record(owner, ttl, e.ip))
                    .collect(),
            )
        }
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            let Some(s) = index.services.get(&(ns.to_string(), svc.to_string())) else {
                return Found::None;
            };
            let (port, proto) = (&port[1..], &proto[1..]);
            if !s
                .ports
                .iter()
                .any(|p| !p.name.is_empty() && p.name == port && p.proto == proto)
            {
                return Found::None;
            }
            if qtype != RecordType::SRV && qtype != RecordType::ANY {
                return Found::empty();
            }
            srv_records(zone, owner, s, svc, ns, Some((port, proto)))
        }
        _ => Found::None,
    }
}

#[allow(clippy::too_many_arguments)]
fn service_records(
    index: &Index,
    zone: &Zone,
    owner: &Name,
    s: &Svc,
    svc: &str,
    ns: &str,
    qtype: RecordType,
    depth: u8,
) -> Found {
    let ttl = zone.ttl;
    match &s.kind {
        Kind::ExternalName(target) => {
            let Ok(target_name) = Name::from_ascii(format!("{target}.")) else {
                return Found::empty();
            };
            let mut answers = vec![Record::from_rdata(
                owner.clone(),
                ttl,
                RData::CNAME(CNAME(target_name.clone())),
            )];
            // Follow the alias while it stays in the cluster domain.
            let lower = target.to_ascii_lowercase();
            if qtype != RecordType::CNAME && depth < 8 {
                if let Some(rel) = lower
                    .strip_suffix(zone.domain.as_str())
                    .and_then(|r| r.strip_suffix('.'))
                {
                    if let Found::Records { answers: more, .. } =
                        lookup(index, zone, &target_name, rel, qtype, depth + 1)
                    {
                        answers.extend(more);
                    }
                }
            }
            Found::answers(answers)
        }
        Kind::ClusterIp(ips) => match qtype {
            RecordType::SRV => srv_records(zone, owner, s, svc, ns, None),
            _ => Found::answers(
                ips.iter()
                    .filter(|ip| wants(qtype, ip))
                    .map(|ip| addr_record(owner, ttl, *ip))
                    .collect(),
            ),
        },
        Kind::Headless => match qtype {
            RecordType::SRV => srv_records(zone, owner, s, svc, ns, None),
            _ => Found::answers(
                s.published()
                    .filter(|e| wants(qtype, &e.ip))
                    .map(|e| addr_record(owner, ttl, e.ip))
                    .collect(),
            ),
        },
    }
}

/// SRV records of one named port (`which`) or of every named port.
fn srv_records(
    zone: &Zone,
    owner: &Name,
    s: &Svc,
    svc: &str,
    ns: &str,
    which: Option<(&str, &str)>,
) -> Found {
    let ttl = zone.ttl;
    let selected = |p: &Port| {
        !p.name.is_empty()
            && match which {
                Some((name, proto)) => p.name == name && p.proto == proto,
                None => true,
            }
    };
    let mut answers = vec![];
    let mut additionals = vec![];
    match &s.kind {
        Kind::ExternalName(_) => {}
        Kind::ClusterIp(ips) => {
            let target = zone.fqdn(&format!("{svc}.{ns}.svc"));
            for p in s.ports.iter().filter(|p| selected(p)) {
                answers.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(0, 100, p.port, target.clone())),
                ));
            }
            if !answers.is_empty() {
                additionals.extend(ips.iter().map(|ip| addr_record(&target, ttl, *ip)));
            }
        }
        Kind::Headless => {
            // One target per endpoint name (a dual-stack endpoint has two
            // addresses under one name); its addresses go in additionals.
            let mut targets: BTreeMap<String, (Vec<IpAddr>, Vec<u16>)> = BTreeMap::new();
            for e in s.published() {
                let label = e.hostname.clone().unwrap_or_else(|| dashed(&e.ip));
                let t = targets.entry(label).or_default();
                t.0.push(e.ip);
                for p in e.ports.iter().filter(|p| selected(p)) {
                    if !t.1.contains(&p.port) {
                        t.1.push(p.port);
                    }
                }
            }
            targets.retain(|_, t| !t.1.is_empty());
            let weight = (100 / targets.len().max(1)) as u16;
            for (label, (ips, ports)) in targets {
                let target = zone.fqdn(&format!("{label}.{svc}.{ns}.svc"));
                for port in ports {
                    answers.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::SRV(SRV::new(0, weight, port, target.clone())),
                    ));
                }
                additionals.extend(ips.into_iter().map(|ip| addr_record(&target, ttl, ip)));
            }
        }
    }
    Found::Records {
        answers,
        additionals,
    }
}

fn reverse_ip(lower: &str, zone: &str) -> Option<IpAddr> {
    let rest = lower.strip_suffix(zone)?.strip_suffix('.')?;
    let labels: Vec<&str> = rest.split('.').collect();
    if zone == "in-addr.arpa" {
        if labels.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, l) in labels.iter().rev().enumerate() {
            octets[i] = l.parse().ok()?;
        }
        Some(IpAddr::V4(Ipv4Addr::from(octets)))
    } else {
        if labels.len() != 32 {
            return None;
        }
        let mut v: u128 = 0;
        for l in labels.iter().rev() {
            if l.len() != 1 {
                return None;
            }
            v = (v << 4) | u128::from(u8::from_str_radix(l, 16).ok()?);
        }
        Some(IpAddr::V6(Ipv6Addr::from(v)))
    }
}

fn resolve_reverse(
    index: &Index,
    zone: &Zone,
    owner: &Name,
    lower: &str,
    reverse: &str,
    qtype: RecordType,
) -> Answer {
    let soa = zone.reverse_soa(&format!("{reverse}."));
    let Some(ip) = reverse_ip(lower, reverse) else {
        return finish(Found::None, soa);
    };
    let Some(names) = index.ptr.get(&ip) else {
        return finish(Found::None, soa);
    };
    if qtype != RecordType::PTR && qtype != RecordType::ANY {
        return finish(Found::empty(), soa);
    }
    let answers = names
        .iter()
        .map(|n| Record::from_rdata(owner.clone(), zone.ttl, RData::PTR(PTR(zone.fqdn(n)))))
        .collect();
    finish(Found::answers(answers), soa)
}

#[cfg(test)]
mod tests;
