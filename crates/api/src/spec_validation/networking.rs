//! networking.k8s.io and discovery.k8s.io: Ingress rules and backends,
//! IngressClass controllers, NetworkPolicy ports and peers (CIDRs),
//! EndpointSlice address types and addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use super::{arr, at, label_selector, port_name_errors, str_of};
use crate::validation::{
    forbidden, invalid, is_dns1035_label, is_dns1123_subdomain, not_supported, required, Cause,
};

pub(crate) fn ingress(spec: &Value, out: &mut Vec<Cause>) {
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    let rules = arr(spec, "rules");
    if default_backend.is_none() && rules.is_empty() {
        out.push(invalid(
            "spec",
            at(spec, "rules"),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default_backend {
        backend(b, "spec.defaultBackend", out);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("spec.rules[{i}]");
        let host = str_of(rule, "host");
        if !host.is_empty() {
            let check = host.strip_prefix("*.").unwrap_or(host);
            for e in is_dns1123_subdomain(check) {
                out.push(invalid(&format!("{rp}.host"), &Value::from(host), &e));
            }
        }
        let Some(http) = rule.get("http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths = arr(http, "paths");
        if paths.is_empty() {
            out.push(required(&format!("{rp}.http.paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            http_path(p, &format!("{rp}.http.paths[{j}]"), out);
        }
    }
    for (i, tls) in arr(spec, "tls").iter().enumerate() {
        for (j, h) in arr(tls, "hosts").iter().enumerate() {
            let host = h.as_str().unwrap_or("");
            let check = host.strip_prefix("*.").unwrap_or(host);
            for e in is_dns1123_subdomain(check) {
                out.push(invalid(&format!("spec.tls[{i}].hosts[{j}]"), h, &e));
            }
        }
    }
}

fn http_path(p: &Value, path: &str, out: &mut Vec<Cause>) {
    let value = str_of(p, "path");
    match p.get("pathType").and_then(Value::as_str) {
        None => {
            out.push(required(
                &format!("{path}.pathType"),
                "pathType must be specified",
            ));
            return;
        }
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                out.push(invalid(
                    &format!("{path}.path"),
                    &Value::from(value),
                    "must be an absolute path",
                ));
            }
            if !value.is_empty() {
                for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                    if value.contains(seq) {
                        out.push(invalid(
                            &format!("{path}.path"),
                            &Value::from(value),
                            &format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in ["/..", "/."] {
                    if value.ends_with(suffix) {
                        out.push(invalid(
                            &format!("{path}.path"),
                            &Value::from(value),
                            &format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                out.push(invalid(
                    &format!("{path}.path"),
                    &Value::from(value),
                    "must be an absolute path",
                ));
            }
        }
        Some(other) => out.push(not_supported(
            &format!("{path}.pathType"),
            &Value::from(other),
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    backend(at(p, "backend"), &format!("{path}.backend"), out);
}

fn backend(b: &Value, path: &str, out: &mut Vec<Cause>) {
    let resource = b.get("resource").filter(|v| !v.is_null());
    let service = b.get("service").filter(|v| !v.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => out.push(invalid(
            path,
            &Value::from(""),
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            if str_of(r, "kind").is_empty() {
                out.push(required(&format!("{path}.resource.kind"), ""));
            }
            if str_of(r, "name").is_empty() {
                out.push(required(&format!("{path}.resource.name"), ""));
            }
        }
        (None, Some(s)) => {
            let name = str_of(s, "name");
            if name.is_empty() {
                out.push(required(&format!("{path}.service.name"), ""));
            } else {
                for e in is_dns1035_label(name) {
                    out.push(invalid(
                        &format!("{path}.service.name"),
                        &Value::from(name),
                        &e,
                    ));
                }
            }
            let port_name = s
                .pointer("/port/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let number = s
                .pointer("/port/number")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match (port_name.is_empty(), number == 0) {
                (false, false) => out.push(invalid(
                    path,
                    &Value::from(""),
                    "cannot set both port name & port number",
                )),
                (false, true) => {
                    for e in port_name_errors(port_name) {
                        out.push(invalid(
                            &format!("{path}.service.port.name"),
                            &Value::from(port_name),
                            &e,
                        ));
                    }
                }
                (true, false) => super::port_number(
                    Some(&Value::from(number)),
                    &format!("{path}.service.port.number"),
                    true,
                    out,
                ),
                (true, true) => out.push(required(path, "port name or number is required")),
            }
        }
        (None, None) => out.push(invalid(
            path,
            &Value::from(""),
            "resource or service backend is required",
        )),
    }
}

pub(crate) fn ingress_class(spec: &Value, out: &mut Vec<Cause>) {
    let controller = str_of(spec, "controller");
    if controller.is_empty() {
        out.push(required("spec.controller", ""));
        return;
    }
    if controller.len() > 250 {
        out.push(crate::validation::too_long("spec.controller", 250));
    }
    // IsDomainPrefixedPath: a DNS subdomain, then a path.
    let ok = controller
        .split_once('/')
        .is_some_and(|(host, path)| is_dns1123_subdomain(host).is_empty() && !path.is_empty());
    if !ok {
        out.push(invalid(
            "spec.controller",
            &Value::from(controller),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
    }
}

/// An IPv4 or IPv6 CIDR: the address and its prefix length.
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn masked(ip: IpAddr, bits: u8) -> u128 {
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4) as u128;
            if bits == 0 {
                0
            } else {
                n & (u32::MAX << (32 - bits as u32)) as u128
            }
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            if bits == 0 {
                0
            } else {
                n & (u128::MAX << (128 - bits as u32))
            }
        }
    }
}

const CIDR_MESSAGE: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

fn ip_block(b: &Value, path: &str, out: &mut Vec<Cause>) {
    let c = str_of(b, "cidr");
    if c.is_empty() {
        out.push(required(&format!("{path}.cidr"), ""));
        return;
    }
    let Some((ip, bits)) = cidr(c) else {
        out.push(invalid(
            &format!("{path}.cidr"),
            &Value::from(c),
            CIDR_MESSAGE,
        ));
        return;
    };
    for (i, e) in arr(b, "except").iter().enumerate() {
        let ep = format!("{path}.except[{i}]");
        let s = e.as_str().unwrap_or("");
        let Some((eip, ebits)) = cidr(s) else {
            out.push(invalid(&ep, e, CIDR_MESSAGE));
            continue;
        };
        let inside = eip.is_ipv4() == ip.is_ipv4() && masked(eip, bits) == masked(ip, bits);
        if !inside || bits >= ebits {
            out.push(invalid(&ep, e, "must be a strict subset of `cidr`"));
        }
    }
}

fn np_port(p: &Value, path: &str, out: &mut Vec<Cause>) {
    super::protocol(p, path, out);
    let end = p.get("endPort").filter(|v| !v.is_null());
    match p.get("port").filter(|v| !v.is_null()) {
        Some(Value::String(s)) => {
            if end.is_some() {
                out.push(forbidden(
                    &format!("{path}.endPort"),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for e in port_name_errors(s) {
                out.push(invalid(
                    &format!("{path}.port"),
                    &Value::from(s.as_str()),
                    &e,
                ));
            }
        }
        Some(n) => {
            if let (Some(port), Some(e)) = (n.as_i64(), end.and_then(Value::as_i64)) {
                if e < port {
                    out.push(invalid(
                        &format!("{path}.endPort"),
                        &Value::from(port),
                        "must be greater than or equal to `port`",
                    ));
                }
            }
            super::port_number(Some(n), &format!("{path}.port"), true, out);
        }
        None => {
            if end.is_some() {
                out.push(forbidden(
                    &format!("{path}.endPort"),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn peer(p: &Value, path: &str, out: &mut Vec<Cause>) {
    let mut n = 0;
    for sel in ["podSelector", "namespaceSelector"] {
        if let Some(s) = p.get(sel).filter(|v| !v.is_null()) {
            n += 1;
            label_selector(s, &format!("{path}.{sel}"), out);
        }
    }
    let block = p.get("ipBlock").filter(|v| !v.is_null());
    if let Some(b) = block {
        n += 1;
        ip_block(b, &format!("{path}.ipBlock"), out);
    }
    if n == 0 {
        out.push(required(path, "must specify a peer"));
    } else if n > 1 && block.is_some() {
        out.push(forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

pub(crate) fn network_policy(spec: &Value, out: &mut Vec<Cause>) {
    label_selector(at(spec, "podSelector"), "spec.podSelector", out);
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr(spec, dir).iter().enumerate() {
            let rp = format!("spec.{dir}[{i}]");
            for (j, p) in arr(rule, "ports").iter().enumerate() {
                np_port(p, &format!("{rp}.ports[{j}]"), out);
            }
            for (j, p) in arr(rule, peers).iter().enumerate() {
                peer(p, &format!("{rp}.{peers}[{j}]"), out);
            }
        }
    }
    let types = arr(spec, "policyTypes");
    for (i, t) in types.iter().enumerate() {
        if !matches!(t.as_str(), Some("Ingress" | "Egress")) {
            out.push(not_supported(
                &format!("spec.policyTypes[{i}]"),
                t,
                &["Ingress", "Egress"],
            ));
        }
    }
    if types.len() > 2 {
        out.push(invalid(
            "spec.policyTypes",
            at(spec, "policyTypes"),
            "may not specify more than two policyTypes",
        ));
    }
}

pub(crate) fn endpoint_slice(obj: &Value, out: &mut Vec<Cause>) {
    let ty = str_of(obj, "addressType");
    if !matches!(ty, "IPv4" | "IPv6" | "FQDN") {
        out.push(not_supported(
            "addressType",
            &Value::from(ty),
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    let endpoints = arr(obj, "endpoints");
    if endpoints.len() > 1000 {
        out.push(Cause {
            reason: "FieldValueTooMany",
            field: "endpoints".into(),
            message: format!(
                "Too many: {}: must have at most 1000 items",
                endpoints.len()
            ),
        });
    }
    for (i, e) in endpoints.iter().enumerate() {
        let ap = format!("endpoints[{i}].addresses");
        let addresses = arr(e, "addresses");
        if addresses.is_empty() {
            out.push(required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > 100 {
            out.push(Cause {
                reason: "FieldValueTooMany",
                field: ap.clone(),
                message: format!("Too many: {}: must have at most 100 items", addresses.len()),
            });
        }
        for (j, a) in addresses.iter().enumerate() {
            let s = a.as_str().unwrap_or("");
            let path = format!("{ap}[{j}]");
            match ty {
                "IPv4" if s.parse::<Ipv4Addr>().is_err() => {
                    out.push(invalid(&path, a, "must be a valid IPv4 address"))
                }
                "IPv6" if s.parse::<Ipv6Addr>().is_err() => {
                    out.push(invalid(&path, a, "must be a valid IPv6 address"))
                }
                "FQDN" => {
                    for m in is_dns1123_subdomain(s) {
                        out.push(invalid(&path, a, &m));
                    }
                }
                _ => {}
            }
        }
    }
    for (i, p) in arr(obj, "ports").iter().enumerate() {
        let pp = format!("ports[{i}]");
        if let Some(n) = p.get("port").filter(|v| !v.is_null()) {
            super::port_number(Some(n), &format!("{pp}.port"), true, out);
        }
        super::protocol(p, &pp, out);
    }
}

/// ValidateEndpoints: each subset has addresses (ready or not), each a
/// valid IP that is not unspecified, loopback or link-local (these would
/// let a Service reach the node itself), with a DNS label hostname; ports
/// in range, with a protocol, named when there are several.
pub(crate) fn endpoints(obj: &Value, out: &mut Vec<Cause>) {
    for (i, ss) in arr(obj, "subsets").iter().enumerate() {
        let path = format!("subsets[{i}]");
        if arr(ss, "addresses").is_empty() && arr(ss, "notReadyAddresses").is_empty() {
            out.push(required(
                &path,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(ss, key).iter().enumerate() {
                let ap = format!("{path}.{key}[{j}]");
                let ip = a.get("ip").cloned().unwrap_or(Value::Null);
                let before = out.len();
                super::ip_address(&ip, &format!("{ap}.ip"), out);
                if out.len() == before {
                    if let Some(why) = special_ip(ip.as_str().unwrap_or("")) {
                        out.push(invalid(&format!("{ap}.ip"), &ip, why));
                    }
                }
                if let Some(h) = a
                    .get("hostname")
                    .and_then(Value::as_str)
                    .filter(|h| !h.is_empty())
                {
                    for e in crate::validation::is_dns1123_label(h) {
                        out.push(invalid(&format!("{ap}.hostname"), &Value::from(h), &e));
                    }
                }
            }
        }
        let ports = arr(ss, "ports");
        for (j, p) in ports.iter().enumerate() {
            let pp = format!("{path}.ports[{j}]");
            let name = str_of(p, "name");
            if name.is_empty() && ports.len() > 1 {
                out.push(required(&format!("{pp}.name"), ""));
            } else if !name.is_empty() {
                for e in crate::validation::is_dns1123_label(name) {
                    out.push(invalid(&format!("{pp}.name"), &Value::from(name), &e));
                }
            }
            super::port_number(p.get("port"), &format!("{pp}.port"), true, out);
            if p.get("protocol").is_none() {
                out.push(required(&format!("{pp}.protocol"), ""));
            } else {
                super::protocol(p, &pp, out);
            }
        }
    }
}

/// ValidateNonSpecialIP's reasons.
fn special_ip(s: &str) -> Option<&'static str> {
    let ip: std::net::IpAddr = s.parse().ok()?;
    if ip.is_unspecified() {
        return Some(if ip.is_ipv4() {
            "may not be unspecified (0.0.0.0)"
        } else {
            "may not be unspecified (::)"
        });
    }
    if ip.is_loopback() {
        return Some("may not be in the loopback range (127.0.0.0/8, ::1/128)");
    }
    let link_local = match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)");
    }
    let link_local_multicast = match ip {
        std::net::IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xff0f) == 0xff02,
    };
    link_local_multicast
        .then_some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, update, want};
    use serde_json::{json, Value};

    fn ing(paths: Value) -> Value {
        json!({"spec": {"rules": [{"host": "a.example.com", "http": {"paths": paths}}]}})
    }

    #[test]
    fn creates() {
        let svc = json!({"service": {"name": "web", "port": {"number": 80}}});
        let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
            (
                "",
                "Endpoints",
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.5", "hostname": "web-0"}],
                    "notReadyAddresses": [{"ip": "fd00::5"}],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                              {"name": "dns", "port": 53, "protocol": "UDP"}]}]}),
                vec![],
            ),
            (
                "",
                "Endpoints",
                json!({"subsets": [
                    {"addresses": [{"ip": "127.0.0.1"}, {"ip": "169.254.169.254"}, {"ip": "0.0.0.0"},
                                   {"ip": "not-an-ip"}, {"ip": "10.0.0.1", "hostname": "Web"}],
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": 70000, "protocol": "ICMP"}]},
                    {"ports": [{"port": 80}]}]}),
                vec![
                    "subsets[0].addresses[0].ip Invalid",
                    "subsets[0].addresses[1].ip Invalid",
                    "subsets[0].addresses[2].ip Invalid",
                    "subsets[0].addresses[3].ip Invalid",
                    "subsets[0].addresses[4].hostname Invalid",
                    "subsets[0].ports[0].name Required",
                    "subsets[0].ports[1].name Required",
                    "subsets[0].ports[1].port Invalid",
                    "subsets[0].ports[1].protocol NotSupported",
                    "subsets[1] Required",
                    "subsets[1].ports[0].protocol Required",
                ],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(json!([{"path": "/", "pathType": "Prefix", "backend": svc}])),
                vec![],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                json!({"spec": {}}),
                vec!["spec Invalid"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(json!([{"path": "/", "backend": svc}])),
                vec!["spec.rules[0].http.paths[0].pathType Required"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(json!([{"path": "api", "pathType": "Exact", "backend": svc}])),
                vec!["spec.rules[0].http.paths[0].path Invalid"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(json!([{"path": "/a//b", "pathType": "Prefix", "backend": svc}])),
                vec!["spec.rules[0].http.paths[0].path Invalid"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(json!([{"path": "/", "pathType": "Regex", "backend": svc}])),
                vec!["spec.rules[0].http.paths[0].pathType NotSupported"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(
                    json!([{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {}}}}]),
                ),
                vec!["spec.rules[0].http.paths[0].backend Required"],
            ),
            (
                "networking.k8s.io",
                "Ingress",
                ing(
                    json!([{"path": "/", "pathType": "Prefix", "backend": {"service": {"port": {"name": "http", "number": 80}}}}]),
                ),
                vec![
                    "spec.rules[0].http.paths[0].backend.service.name Required",
                    "spec.rules[0].http.paths[0].backend Invalid",
                ],
            ),
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"spec": {"controller": "rkube.io/ingress"}}),
                vec![],
            ),
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"spec": {}}),
                vec!["spec.controller Required"],
            ),
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"spec": {"controller": "nginx"}}),
                vec!["spec.controller Invalid"],
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                json!({"spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"port": 80, "endPort": 90}]}]}}),
                vec![],
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                json!({"spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33", "except": []}},
                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24", "10.0.0.0/8"]}}, {}],
                "ports": [{"port": 90, "endPort": 80}, {"port": "http", "endPort": 90}, {"protocol": "ICMP"}]}]}}),
                vec![
                    "spec.ingress[0].ports[0].endPort Invalid",
                    "spec.ingress[0].ports[1].endPort Forbidden",
                    "spec.ingress[0].ports[2].protocol NotSupported",
                    "spec.ingress[0].from[0].ipBlock.cidr Invalid",
                    "spec.ingress[0].from[1].ipBlock.except[0] Invalid",
                    "spec.ingress[0].from[1].ipBlock.except[1] Invalid",
                    "spec.ingress[0].from[2] Required",
                ],
            ),
            (
                "networking.k8s.io",
                "NetworkPolicy",
                json!({"spec": {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}],
                "policyTypes": ["Egress", "Sideways"]}}),
                vec![
                    "spec.egress[0].to[0] Forbidden",
                    "spec.policyTypes[1] NotSupported",
                ],
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}),
                vec![],
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"addressType": "IPv5", "endpoints": [{"addresses": []}]}),
                vec![
                    "addressType NotSupported",
                    "endpoints[0].addresses Required",
                ],
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"addressType": "IPv4", "endpoints": [{"addresses": ["::1"]}], "ports": [{"port": 0}]}),
                vec!["endpoints[0].addresses[0] Invalid", "ports[0].port Invalid"],
            ),
        ];
        for (group, kind, obj, w) in cases {
            assert_eq!(create(group, kind, &obj), want(&w), "{kind}: {obj}");
        }
    }

    #[test]
    fn updates() {
        let cases: Vec<(&str, &str, Value, Value, Vec<&str>)> = vec![
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"spec": {"controller": "a.io/x"}}),
                json!({"spec": {"controller": "a.io/x"}}),
                vec![],
            ),
            (
                "networking.k8s.io",
                "IngressClass",
                json!({"spec": {"controller": "b.io/x"}}),
                json!({"spec": {"controller": "a.io/x"}}),
                vec!["spec.controller Invalid"],
            ),
            (
                "discovery.k8s.io",
                "EndpointSlice",
                json!({"addressType": "IPv6"}),
                json!({"addressType": "IPv4"}),
                vec!["addressType Invalid"],
            ),
        ];
        for (group, kind, new, old, w) in cases {
            assert_eq!(update(group, kind, &new, &old), want(&w), "{kind}: {new}");
        }
    }
}
