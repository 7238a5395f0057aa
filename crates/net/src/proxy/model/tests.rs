use serde_json::json;

use super::*;

fn svc(v: serde_json::Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn web_slice(eps: serde_json::Value) -> EndpointSlice {
    slice(json!({
        "metadata": {"name": "web-abc", "namespace": "default",
                     "labels": {SERVICE_NAME_LABEL: "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }))
}

fn web(spec: serde_json::Value) -> Service {
    let mut s = json!({
        "clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}],
    });
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    svc(json!({"metadata": {"name": "web", "namespace": "default"}, "spec": s}))
}

/// (service, slices) -> (id, cluster ips, node port, external ips,
/// affinity, endpoints as "ip:port" with r/s/t flags)
type Row = (
    Service,
    Vec<EndpointSlice>,
    Vec<(
        &'static str,
        Vec<&'static str>,
        Option<u16>,
        Vec<&'static str>,
        Option<u32>,
        Vec<&'static str>,
    )>,
);

fn flags(e: &Endpoint) -> String {
    format!(
        "{}:{}{}{}{}",
        e.ip,
        e.port,
        if e.ready { "r" } else { "" },
        if e.serving { "s" } else { "" },
        if e.terminating { "t" } else { "" }
    )
}

#[test]
fn builds_service_ports() {
    let rows: Vec<Row> = vec![
        // ClusterIP: the node port is ignored, endpoints matched by port name.
        (
            web(json!({})),
            vec![web_slice(json!([
                {"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.0.7"]},
            ]))],
            vec![(
                "default/web/tcp/http",
                vec!["10.43.0.20"],
                None,
                vec![],
                None,
                vec!["10.42.0.5:8080rs", "10.42.0.6:8080st", "10.42.0.7:8080rs"],
            )],
        ),
        // NodePort with ClientIP affinity (default timeout).
        (
            web(json!({"type": "NodePort", "sessionAffinity": "ClientIP"})),
            vec![],
            vec![(
                "default/web/tcp/http",
                vec!["10.43.0.20"],
                Some(30080),
                vec![],
                Some(10800),
                vec![],
            )],
        ),
        // LoadBalancer: status ingress IPs and externalIPs are external.
        (
            svc(json!({
                "metadata": {"name": "lb", "namespace": "prod"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.30",
                         "externalIPs": ["192.0.2.50"],
                         "sessionAffinity": "ClientIP",
                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                         "ports": [{"port": 53, "protocol": "UDP", "nodePort": 31053}]},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}, {"hostname": "x"}]}}
            })),
            vec![slice(json!({
                "metadata": {"name": "lb-1", "namespace": "prod", "labels": {SERVICE_NAME_LABEL: "lb"}},
                "addressType": "IPv4",
                "ports": [{"port": 5353, "protocol": "UDP"}],
                "endpoints": [{"addresses": ["10.42.1.2"]}]
            }))],
            vec![(
                "prod/lb/udp/53",
                vec!["10.43.0.30"],
                Some(31053),
                vec!["192.0.2.10", "192.0.2.50"],
                Some(60),
                vec!["10.42.1.2:5353rs"],
            )],
        ),
        // ExternalName services are DNS only.
        (
            svc(json!({"metadata": {"name": "x", "namespace": "a"},
                       "spec": {"type": "ExternalName", "externalName": "example.org"}})),
            vec![],
            vec![],
        ),
        // Headless: no cluster IPs; IPv6 slices and other services' slices ignored.
        (
            web(json!({"clusterIP": "None", "clusterIPs": ["None"]})),
            vec![
                slice(json!({
                    "metadata": {"name": "v6", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "web"}},
                    "addressType": "IPv6",
                    "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [{"addresses": ["fd00::1"]}]
                })),
                slice(json!({
                    "metadata": {"name": "other", "namespace": "other", "labels": {SERVICE_NAME_LABEL: "web"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [{"addresses": ["10.9.9.9"]}]
                })),
            ],
            vec![("default/web/tcp/http", vec![], None, vec![], None, vec![])],
        ),
    ];
    for (i, (service, slices, want)) in rows.into_iter().enumerate() {
        let got = build([&service], slices.iter());
        let got: Vec<_> = got
            .iter()
            .map(|p| {
                (
                    p.id(),
                    p.cluster_ips
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>(),
                    p.node_port,
                    p.external_ips
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>(),
                    p.affinity_timeout,
                    p.endpoints.iter().map(flags).collect::<Vec<_>>(),
                )
            })
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|(id, ips, np, ext, aff, eps)| {
                (
                    id.to_owned(),
                    ips.into_iter().map(String::from).collect::<Vec<_>>(),
                    np,
                    ext.into_iter().map(String::from).collect::<Vec<_>>(),
                    aff,
                    eps.into_iter().map(String::from).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn usable_endpoints_follow_readiness_and_locality() {
    let e = |ip: &str, ready: bool, serving: bool, terminating: bool, node: &str| Endpoint {
        ip: ip.parse().unwrap(),
        port: 80,
        ready,
        serving,
        terminating,
        node: Some(node.into()),
    };
    let mut sp = build([&web(json!({}))], []).remove(0);
    // (endpoints, local, expected usable ips)
    let rows: Vec<(Vec<Endpoint>, bool, Vec<&str>)> = vec![
        (
            vec![
                e("10.0.0.1", true, true, false, "n1"),
                e("10.0.0.2", false, false, false, "n1"),
            ],
            false,
            vec!["10.0.0.1"],
        ),
        // No ready endpoint: serving terminating ones take traffic.
        (
            vec![
                e("10.0.0.1", false, true, true, "n1"),
                e("10.0.0.2", false, false, true, "n1"),
            ],
            false,
            vec!["10.0.0.1"],
        ),
        // A ready one wins over terminating ones.
        (
            vec![
                e("10.0.0.1", false, true, true, "n1"),
                e("10.0.0.2", true, true, false, "n2"),
            ],
            false,
            vec!["10.0.0.2"],
        ),
        // Local: only this node's.
        (
            vec![
                e("10.0.0.1", true, true, false, "n1"),
                e("10.0.0.2", true, true, false, "n2"),
            ],
            true,
            vec!["10.0.0.1"],
        ),
        (vec![e("10.0.0.2", true, true, false, "n2")], true, vec![]),
    ];
    for (i, (eps, local, want)) in rows.into_iter().enumerate() {
        sp.endpoints = eps;
        let got: Vec<String> = sp
            .usable(local, "n1")
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(got, want, "row {i}");
    }
}
