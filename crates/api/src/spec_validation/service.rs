//! Services: type rules (ExternalName, node ports), ports, selector,
//! session affinity, traffic policies; the cluster IP once allocated.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::{json, Value};

use super::{arr, at, labels, port_name_errors, port_number, str_of};
use crate::validation::{
    forbidden, invalid, is_dns1123_label, is_dns1123_subdomain, not_supported, required, Cause,
};

/// Kubernetes' limit on ClientIP affinity timeouts (one day).
const MAX_AFFINITY_SECONDS: i64 = 86400;

pub(crate) fn service(spec: &Value, out: &mut Vec<Cause>) {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        out.push(not_supported(
            "spec.type",
            &Value::from(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = arr(spec, "ports");
    if ports.is_empty() && ty != "ExternalName" && !headless {
        out.push(required("spec.ports", ""));
    }
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = str_of(p, "name");
        if ports.len() > 1 && name.is_empty() {
            out.push(required(&format!("{pp}.name"), ""));
        } else if !name.is_empty() {
            for e in is_dns1123_label(name) {
                out.push(invalid(&format!("{pp}.name"), &Value::from(name), &e));
            }
            if !names.insert(name) {
                out.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("{pp}.name"),
                    message: format!("Duplicate value: {name:?}"),
                });
            }
        }
        port_number(p.get("port"), &format!("{pp}.port"), true, out);
        super::protocol(p, &pp, out);
        match p.get("targetPort") {
            Some(Value::String(s)) => {
                for e in port_name_errors(s) {
                    out.push(invalid(
                        &format!("{pp}.targetPort"),
                        &Value::from(s.as_str()),
                        &e,
                    ));
                }
            }
            Some(n @ Value::Number(_)) => {
                port_number(Some(n), &format!("{pp}.targetPort"), true, out)
            }
            _ => {}
        }
        if ty == "ClusterIP" && p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
            out.push(forbidden(
                &format!("{pp}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
        let key = (p.get("port").cloned(), p.get("protocol").cloned());
        if !seen.insert(format!("{key:?}")) {
            out.push(Cause {
                reason: "FieldValueDuplicate",
                field: pp.clone(),
                message: format!(
                    "Duplicate value: {}",
                    json!({"port": key.0, "protocol": key.1})
                ),
            });
        }
    }
    if ty == "ExternalName" {
        let cname = str_of(spec, "externalName").trim_end_matches('.');
        if cname.is_empty() {
            out.push(required("spec.externalName", ""));
        } else {
            for e in is_dns1123_subdomain(cname) {
                out.push(invalid("spec.externalName", &Value::from(cname), &e));
            }
        }
    }
    labels(spec.get("selector"), "spec.selector", out);
    session_affinity(spec, out);
    for (field, allowed) in [
        ("externalTrafficPolicy", &["Cluster", "Local"]),
        ("internalTrafficPolicy", &["Cluster", "Local"]),
    ] {
        if let Some(p) = spec.get(field).and_then(Value::as_str) {
            if !allowed.contains(&p) {
                out.push(not_supported(
                    &format!("spec.{field}"),
                    &Value::from(p),
                    allowed,
                ));
            }
        }
    }
    if spec
        .get("externalTrafficPolicy")
        .is_some_and(|v| !v.is_null())
        && !matches!(ty, "NodePort" | "LoadBalancer")
        && (ty != "ClusterIP" || arr(spec, "externalIPs").is_empty())
    {
        out.push(invalid(
            "spec.externalTrafficPolicy",
            at(spec, "externalTrafficPolicy"),
            "may only be set for externally-accessible services",
        ));
    }
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let s = ip.as_str().unwrap_or("");
        if s.parse::<IpAddr>().is_err() {
            out.push(invalid(
                &format!("spec.externalIPs[{i}]"),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
}

fn session_affinity(spec: &Value, out: &mut Vec<Cause>) {
    let affinity = spec
        .get("sessionAffinity")
        .and_then(Value::as_str)
        .unwrap_or("None");
    let config = spec.get("sessionAffinityConfig").filter(|v| !v.is_null());
    match affinity {
        "ClientIP" => {
            match config
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
                .and_then(Value::as_i64)
            {
                None => out.push(required(
                    "spec.sessionAffinityConfig",
                    "when session affinity type is ClientIP",
                )),
                Some(t) if t <= 0 || t > MAX_AFFINITY_SECONDS => out.push(invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    &Value::from(t),
                    &format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
                )),
                Some(_) => {}
            }
        }
        "None" => {
            if config.is_some() {
                out.push(forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => out.push(not_supported(
            "spec.sessionAffinity",
            &Value::from(other),
            &["ClientIP", "None"],
        )),
    }
}

/// The primary cluster IP may not change once set (unless the Service is,
/// or becomes, ExternalName). A changed `clusterIP` with `clusterIPs` left
/// as it was counts as a change of both, as Kubernetes normalizes them.
pub(crate) fn service_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let ty = |v: &Value| {
        v.pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_owned()
    };
    if ty(new) == "ExternalName" || ty(old) == "ExternalName" {
        return;
    }
    let ips = |v: &Value| -> Vec<String> {
        let list: Vec<String> = arr(at(v, "spec"), "clusterIPs")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        let single = v
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("");
        if list.is_empty() && !single.is_empty() {
            vec![single.to_owned()]
        } else {
            list
        }
    };
    let (old_ips, mut new_ips) = (ips(old), ips(new));
    let new_single = new
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    let old_single = old
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    if new_single != old_single && new_ips == old_ips {
        new_ips = if new_single.is_empty() {
            vec![]
        } else {
            vec![new_single.to_owned()]
        };
    }
    let Some(old_primary) = old_ips.first().filter(|s| !s.is_empty()) else {
        return;
    };
    match new_ips.first() {
        None => out.push(invalid(
            "spec.clusterIPs[0]",
            &json!(new_ips),
            "primary clusterIP can not be unset",
        )),
        Some(p) if p != old_primary => out.push(invalid(
            "spec.clusterIPs[0]",
            &json!(new_ips),
            "may not change once set",
        )),
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, messages, update, want};
    use serde_json::{json, Value};

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn creates() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                svc(
                    json!({"type": "ClusterIP", "ports": [{"port": 80, "targetPort": "http"}], "selector": {"app": "web"}}),
                ),
                vec![],
            ),
            (
                svc(json!({"type": "ExternalName"})),
                vec!["spec.externalName Required"],
            ),
            (
                svc(json!({"type": "ExternalName", "externalName": "Not A Host"})),
                vec!["spec.externalName Invalid"],
            ),
            (
                svc(json!({"type": "ExternalName", "externalName": "db.example.com."})),
                vec![],
            ),
            (
                svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]})),
                vec!["spec.ports[0].nodePort Forbidden"],
            ),
            (
                svc(json!({"ports": [{"port": 80, "protocol": "ICMP", "targetPort": 70000}]})),
                vec![
                    "spec.ports[0].protocol NotSupported",
                    "spec.ports[0].targetPort Invalid",
                ],
            ),
            (
                svc(json!({"ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]})),
                vec!["spec.ports[1].name Duplicate"],
            ),
            (
                svc(json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP"})),
                vec!["spec.sessionAffinityConfig Required"],
            ),
            (
                svc(
                    json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 90000}}}),
                ),
                vec!["spec.sessionAffinityConfig.clientIP.timeoutSeconds Invalid"],
            ),
            (
                svc(json!({"ports": [{"port": 80}], "sessionAffinity": "Sticky"})),
                vec!["spec.sessionAffinity NotSupported"],
            ),
            (
                svc(json!({"ports": [{"port": 80}], "selector": {"app": "bad value!"}})),
                vec!["spec.selector Invalid"],
            ),
            (
                svc(json!({"ports": [{"port": 80}], "externalIPs": ["1.2.3.4", "nope"]})),
                vec!["spec.externalIPs[1] Invalid"],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "ports": [{"port": 80}], "externalTrafficPolicy": "Local"}),
                ),
                vec!["spec.externalTrafficPolicy Invalid"],
            ),
        ];
        for (obj, w) in cases {
            assert_eq!(create("", "Service", &obj), want(&w), "{obj}");
        }
    }

    #[test]
    fn cluster_ip_updates() {
        let old = svc(
            json!({"type": "ClusterIP", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]}),
        );
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 81}]}),
                ),
                vec![],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]}),
                ),
                vec!["spec.clusterIPs[0] Invalid"],
            ),
            (
                svc(
                    json!({"type": "ClusterIP", "clusterIP": "10.0.0.6", "clusterIPs": ["10.0.0.6"], "ports": [{"port": 80}]}),
                ),
                vec!["spec.clusterIPs[0] Invalid"],
            ),
            (
                svc(json!({"type": "ExternalName", "externalName": "x.example.com"})),
                vec![],
            ),
        ];
        for (new, w) in cases {
            assert_eq!(update("", "Service", &new, &old), want(&w), "{new}");
        }
        let new = svc(
            json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80}]}),
        );
        assert_eq!(
            messages(super::super::validate_update("", "Service", &new, &old)),
            vec![r#"spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set"#]
        );
    }
}
