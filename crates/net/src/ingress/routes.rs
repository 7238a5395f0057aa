//! The routing table of the ingress controller: a pure function of the
//! Ingresses, Services and EndpointSlices, answering "where does a request
//! for this host and path go" as Kubernetes specifies it.
//!
//! Host rules: an exact host beats a wildcard (`*.foo.com`, which matches
//! exactly one more label), which beats rules without a host. Within the
//! winning host, the longest matching path wins, Exact before Prefix on a
//! tie; Prefix matches element-wise (`/foo` matches `/foo` and `/foo/bar`,
//! not `/foobar`); ImplementationSpecific is treated as Prefix. Rules of
//! all served Ingresses are merged. When no rule matches, the
//! `defaultBackend` of a served Ingress (the oldest, then by namespace/name)
//! takes the request; without one the answer is 404. A backend whose
//! Service, port or ready endpoints are missing answers 503.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};

use crate::dns::SERVICE_NAME_LABEL;

/// The IngressClass this controller serves.
pub const CLASS_NAME: &str = "rkube";
/// The `spec.controller` of that IngressClass.
pub const CONTROLLER_NAME: &str = "rkube.io/ingress";
/// The annotation making an IngressClass the default one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether the IngressClass `rkube` (if any) is the cluster's default class.
pub fn rkube_is_default(classes: &[IngressClass]) -> bool {
    classes.iter().any(|c| {
        c.metadata.name.as_deref() == Some(CLASS_NAME)
            && c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
    })
}

/// The Ingresses this controller serves (not being deleted), oldest first
/// (then by namespace and name): the order in which conflicting rules and
/// certificates are decided.
pub fn served_in_order<'a>(ingresses: &'a [Ingress], classes: &[IngressClass]) -> Vec<&'a Ingress> {
    let rkube_default = rkube_is_default(classes);
    let mut served: Vec<&Ingress> = ingresses
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none() && is_served(i, rkube_default))
        .collect();
    served.sort_by_key(|i| {
        (
            i.metadata.creation_timestamp.as_ref().map(|t| t.0),
            i.metadata.namespace.clone(),
            i.metadata.name.clone(),
        )
    });
    served
}

/// Whether this controller serves `ing`: its class is `rkube`, or it names
/// no class and `rkube` is the default class.
pub fn is_served(ing: &Ingress, rkube_default: bool) -> bool {
    let class = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref());
    match class {
        Some(c) => c == CLASS_NAME,
        None => rkube_default,
    }
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Proxy to one of these ready endpoints (non-empty, stable order).
    Backend {
        /// `namespace/service:port` of the backend, for logs and balancing.
        key: String,
        endpoints: Vec<SocketAddr>,
    },
    /// No rule and no default backend: 404.
    NotFound,
    /// The backend has no Service, port or ready endpoint: 503.
    Unavailable { key: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    // Declared in tie order: Exact wins over Prefix.
    Exact,
    Prefix,
}

#[derive(Clone, Debug)]
struct PathRule {
    path: String,
    kind: Kind,
    decision: Decision,
}

/// The merged routing table.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    exact: BTreeMap<String, Vec<PathRule>>,
    /// Keyed by the suffix after `*` (e.g. `.foo.com`).
    wildcard: BTreeMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default: Option<Decision>,
}

impl RouteTable {
    /// Builds the table from everything in the cluster; Ingresses not
    /// served by this controller are skipped.
    pub fn build(
        ingresses: &[Ingress],
        classes: &[IngressClass],
        services: &[Service],
        slices: &[EndpointSlice],
    ) -> RouteTable {
        let served = served_in_order(ingresses, classes);
        let mut table = RouteTable::default();
        for ing in served {
            let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
            let Some(spec) = &ing.spec else { continue };
            if table.default.is_none() {
                if let Some(b) = &spec.default_backend {
                    table.default = Some(resolve_backend(ns, b, services, slices));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let Some(http) = &rule.http else { continue };
                let list = match rule.host.as_deref().filter(|h| !h.is_empty()) {
                    None => &mut table.any_host,
                    Some(h) => match h.strip_prefix('*') {
                        Some(suffix) => table
                            .wildcard
                            .entry(suffix.to_ascii_lowercase())
                            .or_default(),
                        None => table.exact.entry(h.to_ascii_lowercase()).or_default(),
                    },
                };
                for p in &http.paths {
                    let kind = if p.path_type == "Exact" {
                        Kind::Exact
                    } else {
                        Kind::Prefix
                    };
                    let path = p.path.clone().unwrap_or_else(|| "/".to_string());
                    list.push(PathRule {
                        path,
                        kind,
                        decision: resolve_backend(ns, &p.backend, services, slices),
                    });
                }
            }
        }
        table
    }

    /// Where a request for `host` (a Host header, port allowed) and `path`
    /// (query allowed) goes.
    pub fn route(&self, host: &str, path: &str) -> Decision {
        let host = strip_port(host).to_ascii_lowercase();
        let path = path.split(['?', '#']).next().unwrap_or("/");
        let wildcard = host
            .split_once('.')
            .filter(|(label, _)| !label.is_empty())
            .and_then(|(_, rest)| self.wildcard.get(&format!(".{rest}")));
        let tiers = [self.exact.get(&host), wildcard, Some(&self.any_host)];
        for rules in tiers.into_iter().flatten() {
            if let Some(d) = best_match(rules, path) {
                return d.clone();
            }
        }
        self.default.clone().unwrap_or(Decision::NotFound)
    }
}

/// `host` without its `:port` (and, for `[v6]:port`, without brackets).
pub(crate) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

fn best_match<'a>(rules: &'a [PathRule], path: &str) -> Option<&'a Decision> {
    rules
        .iter()
        .filter(|r| path_matches(r, path))
        // Longest path first, then Exact before Prefix, then first declared.
        .min_by_key(|r| {
            (
                std::cmp::Reverse(r.path.trim_end_matches('/').len()),
                r.kind,
            )
        })
        .map(|r| &r.decision)
}

fn path_matches(rule: &PathRule, path: &str) -> bool {
    match rule.kind {
        Kind::Exact => rule.path == path,
        Kind::Prefix => {
            let want = elements(&rule.path);
            let got = elements(path);
            got.len() >= want.len() && want.iter().zip(&got).all(|(a, b)| a == b)
        }
    }
}

fn elements(path: &str) -> Vec<&str> {
    path.split('/').filter(|e| !e.is_empty()).collect()
}

/// Resolves a backend to its ready endpoints (the target port of the
/// Service port it names, from the Service's EndpointSlices).
fn resolve_backend(
    ns: &str,
    backend: &IngressBackend,
    services: &[Service],
    slices: &[EndpointSlice],
) -> Decision {
    let Some(svc_ref) = &backend.service else {
        // Resource backends are not served by this controller.
        return Decision::Unavailable {
            key: format!("{ns}/<resource>"),
        };
    };
    let (port_num, port_name) = svc_ref
        .port
        .as_ref()
        .map(|p| (p.number, p.name.clone().filter(|n| !n.is_empty())))
        .unwrap_or((None, None));
    let key = match (&port_num, &port_name) {
        (Some(n), _) => format!("{ns}/{}:{n}", svc_ref.name),
        (None, Some(n)) => format!("{ns}/{}:{n}", svc_ref.name),
        (None, None) => format!("{ns}/{}", svc_ref.name),
    };
    let unavailable = || Decision::Unavailable { key: key.clone() };
    let Some(svc) = services.iter().find(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.metadata.name.as_deref() == Some(svc_ref.name.as_str())
    }) else {
        return unavailable();
    };
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let Some(svc_port) = ports
        .into_iter()
        .flatten()
        .find(|p| match (&port_num, &port_name) {
            (Some(n), _) => p.port == *n,
            (None, Some(n)) => p.name.as_deref() == Some(n.as_str()),
            (None, None) => false,
        })
    else {
        return unavailable();
    };
    let svc_port_name = svc_port.name.clone().unwrap_or_default();
    let mut endpoints = Vec::new();
    for slice in slices.iter().filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
                .is_some_and(|n| *n == svc_ref.name)
    }) {
        let Some(port) = slice.ports.iter().flatten().find_map(|p| {
            (p.name.clone().unwrap_or_default() == svc_port_name)
                .then_some(p.port)
                .flatten()
        }) else {
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        for ep in &slice.endpoints {
            // A nil `ready` condition means ready.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            if let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) {
                endpoints.push(SocketAddr::new(ip, port));
            }
        }
    }
    endpoints.sort();
    endpoints.dedup();
    if endpoints.is_empty() {
        unavailable()
    } else {
        Decision::Backend { key, endpoints }
    }
}

#[cfg(test)]
mod tests;
