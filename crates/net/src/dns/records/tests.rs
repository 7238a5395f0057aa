use super::{dashed, resolve, Index, Zone, SERVICE_NAME_LABEL};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn port(name: &str, proto: &str, port: i32) -> ServicePort {
    ServicePort {
        name: (!name.is_empty()).then(|| name.into()),
        protocol: Some(proto.into()),
        port,
        ..Default::default()
    }
}

fn cluster_ip(ns: &str, name: &str, ips: &[&str], ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ips[0].into()),
            cluster_ips: Some(ips.iter().map(|s| s.to_string()).collect()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn headless(ns: &str, name: &str, publish_not_ready: bool, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ports: Some(ports),
            publish_not_ready_addresses: Some(publish_not_ready),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn external(ns: &str, name: &str, target: &str) -> Service {
    Service {
        metadata: meta(ns, name),
        spec: Some(ServiceSpec {
            type_: Some("ExternalName".into()),
            external_name: Some(target.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// (address, hostname, ready)
fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    family: &str,
    eps: &[(&str, Option<&str>, Option<bool>)],
    ports: &[(&str, i32)],
) -> EndpointSlice {
    let mut m = meta(ns, name);
    m.labels = Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into());
    EndpointSlice {
        metadata: m,
        address_type: family.into(),
        endpoints: eps
            .iter()
            .map(|(ip, host, ready)| SliceEndpoint {
                addresses: vec![ip.to_string()],
                hostname: host.map(|h| h.to_string()),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: Some(n.to_string()),
                    port: Some(*p),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

fn fixture() -> Index {
    let services = vec![
        cluster_ip(
            "default",
            "web",
            &["10.43.0.20"],
            vec![port("http", "TCP", 80), port("", "TCP", 8080)],
        ),
        cluster_ip(
            "default",
            "dual",
            &["10.43.0.21", "fd00:43::21"],
            vec![port("dns", "UDP", 53)],
        ),
        headless("default", "db", false, vec![port("pg", "TCP", 5432)]),
        headless("default", "peers", true, vec![port("gossip", "TCP", 7000)]),
        headless("default", "empty", false, vec![]),
        external("default", "ext", "example.com"),
        external("default", "alias", "web.default.svc.cluster.local"),
        cluster_ip("other", "web", &["10.43.0.30"], vec![]),
        // Not allocated yet: no records.
        Service {
            metadata: meta("default", "pending"),
            spec: Some(ServiceSpec::default()),
            ..Default::default()
        },
    ];
    let slices = vec![
        slice(
            "default",
            "db",
            "db-abc",
            "IPv4",
            &[
                ("10.42.0.5", Some("db-0"), Some(true)),
                ("10.42.0.6", Some("db-1"), None),
                ("10.42.0.7", Some("db-2"), Some(false)),
                ("10.42.0.8", None, Some(true)),
            ],
            &[("pg", 15432)],
        ),
        slice(
            "default",
            "db",
            "db-v6",
            "IPv6",
            &[("fd00:42::5", Some("db-0"), Some(true))],
            &[("pg", 15432)],
        ),
        slice(
            "default",
            "peers",
            "peers-1",
            "IPv4",
            &[("10.42.1.1", Some("p-0"), Some(false))],
            &[("gossip", 7000)],
        ),
        // A slice of an unknown service, and one with no label: ignored.
        slice(
            "default",
            "ghost",
            "ghost-1",
            "IPv4",
            &[("10.42.9.9", None, Some(true))],
            &[],
        ),
    ];
    Index::build(&services, &slices)
}

fn zone() -> Zone {
    Zone::new("cluster.local", 5)
}

/// An answer in text: rcode, answers "name TYPE data" sorted, whether an
/// SOA is in the authority section, additionals sorted.
fn ask(
    index: &Index,
    name: &str,
    qtype: RecordType,
) -> (ResponseCode, Vec<String>, bool, Vec<String>) {
    let a = resolve(index, &zone(), &Name::from_ascii(name).unwrap(), qtype);
    let show = |r: &Record| format!("{} {} {}", r.name, r.record_type(), r.data);
    let mut answers: Vec<String> = a.answers.iter().map(show).collect();
    answers.sort();
    let mut additionals: Vec<String> = a.additionals.iter().map(show).collect();
    additionals.sort();
    for r in a.answers.iter().chain(&a.additionals).chain(&a.authority) {
        assert_eq!(r.ttl, 5, "ttl of {r}");
    }
    let soa = a
        .authority
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    (a.rcode, answers, soa, additionals)
}

use RecordType::*;
const NOERR: ResponseCode = ResponseCode::NoError;
const NX: ResponseCode = ResponseCode::NXDomain;
const REFUSED: ResponseCode = ResponseCode::Refused;

#[test]
fn table() {
    let index = fixture();
    // (name, type, rcode, answers, soa in authority)
    let cases: Vec<(&str, RecordType, ResponseCode, Vec<&str>, bool)> = vec![
        // ClusterIP services, any case.
        ("web.default.svc.cluster.local.", A, NOERR, vec!["web.default.svc.cluster.local. A 10.43.0.20"], false),
        ("WEB.Default.SVC.Cluster.Local.", A, NOERR, vec!["WEB.Default.SVC.Cluster.Local. A 10.43.0.20"], false),
        ("web.other.svc.cluster.local.", A, NOERR, vec!["web.other.svc.cluster.local. A 10.43.0.30"], false),
        ("web.default.svc.cluster.local.", AAAA, NOERR, vec![], true),
        ("web.default.svc.cluster.local.", TXT, NOERR, vec![], true),
        ("dual.default.svc.cluster.local.", AAAA, NOERR, vec!["dual.default.svc.cluster.local. AAAA fd00:43::21"], false),
        ("dual.default.svc.cluster.local.", A, NOERR, vec!["dual.default.svc.cluster.local. A 10.43.0.21"], false),
        ("pending.default.svc.cluster.local.", A, NX, vec![], true),
        ("nope.default.svc.cluster.local.", A, NX, vec![], true),
        // Headless: ready endpoints (unknown readiness counts as ready).
        (
            "db.default.svc.cluster.local.",
            A,
            NOERR,
            vec![
                "db.default.svc.cluster.local. A 10.42.0.5",
                "db.default.svc.cluster.local. A 10.42.0.6",
                "db.default.svc.cluster.local. A 10.42.0.8",
            ],
            false,
        ),
        ("db.default.svc.cluster.local.", AAAA, NOERR, vec!["db.default.svc.cluster.local. AAAA fd00:42::5"], false),
        // publishNotReadyAddresses.
        ("peers.default.svc.cluster.local.", A, NOERR, vec!["peers.default.svc.cluster.local. A 10.42.1.1"], false),
        ("p-0.peers.default.svc.cluster.local.", A, NOERR, vec!["p-0.peers.default.svc.cluster.local. A 10.42.1.1"], false),
        // No endpoints: the name exists, no data.
        ("empty.default.svc.cluster.local.", A, NOERR, vec![], true),
        // Hostnames and dashed IPs of endpoints.
        ("db-0.db.default.svc.cluster.local.", A, NOERR, vec!["db-0.db.default.svc.cluster.local. A 10.42.0.5"], false),
        ("db-0.db.default.svc.cluster.local.", AAAA, NOERR, vec!["db-0.db.default.svc.cluster.local. AAAA fd00:42::5"], false),
        ("db-2.db.default.svc.cluster.local.", A, NX, vec![], true),
        ("10-42-0-8.db.default.svc.cluster.local.", A, NOERR, vec!["10-42-0-8.db.default.svc.cluster.local. A 10.42.0.8"], false),
        ("10-43-0-20.web.default.svc.cluster.local.", A, NX, vec![], true),
        ("db-9.db.default.svc.cluster.local.", A, NX, vec![], true),
        // SRV.
        ("_http._tcp.web.default.svc.cluster.local.", SRV, NOERR, vec!["_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."], false),
        ("_HTTP._TCP.web.default.svc.cluster.local.", SRV, NOERR, vec!["_HTTP._TCP.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."], false),
        ("_http._udp.web.default.svc.cluster.local.", SRV, NX, vec![], true),
        ("_http._tcp.web.default.svc.cluster.local.", A, NOERR, vec![], true),
        ("_tcp.web.default.svc.cluster.local.", A, NOERR, vec![], true),
        ("_dns._udp.dual.default.svc.cluster.local.", SRV, NOERR, vec!["_dns._udp.dual.default.svc.cluster.local. SRV 0 100 53 dual.default.svc.cluster.local."], false),
        ("web.default.svc.cluster.local.", SRV, NOERR, vec!["web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."], false),
        (
            "_pg._tcp.db.default.svc.cluster.local.",
            SRV,
            NOERR,
            vec![
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 15432 10-42-0-8.db.default.svc.cluster.local.",
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 15432 db-0.db.default.svc.cluster.local.",
                "_pg._tcp.db.default.svc.cluster.local. SRV 0 33 15432 db-1.db.default.svc.cluster.local.",
            ],
            false,
        ),
        // ExternalName: CNAME; followed inside the cluster domain.
        ("ext.default.svc.cluster.local.", A, NOERR, vec!["ext.default.svc.cluster.local. CNAME example.com."], false),
        ("ext.default.svc.cluster.local.", CNAME, NOERR, vec!["ext.default.svc.cluster.local. CNAME example.com."], false),
        (
            "alias.default.svc.cluster.local.",
            A,
            NOERR,
            vec![
                "alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. A 10.43.0.20",
            ],
            false,
        ),
        // Pods (insecure: any well-formed address).
        ("10-42-0-99.default.pod.cluster.local.", A, NOERR, vec!["10-42-0-99.default.pod.cluster.local. A 10.42.0.99"], false),
        ("fd00-42--9.default.pod.cluster.local.", AAAA, NOERR, vec!["fd00-42--9.default.pod.cluster.local. AAAA fd00:42::9"], false),
        ("10-42-0-99.default.pod.cluster.local.", AAAA, NOERR, vec![], true),
        ("not-an-ip.default.pod.cluster.local.", A, NX, vec![], true),
        // The zone's structure.
        ("cluster.local.", SOA, NOERR, vec!["cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"], false),
        ("cluster.local.", NS, NOERR, vec!["cluster.local. NS ns.dns.cluster.local."], false),
        ("cluster.local.", A, NOERR, vec![], true),
        ("svc.cluster.local.", A, NOERR, vec![], true),
        ("default.svc.cluster.local.", A, NOERR, vec![], true),
        ("kube-system.svc.cluster.local.", A, NX, vec![], true),
        ("web.default.cluster.local.", A, NX, vec![], true),
        ("a.b.c.d.e.f.svc.cluster.local.", A, NX, vec![], true),
        // PTR.
        ("20.0.43.10.in-addr.arpa.", PTR, NOERR, vec!["20.0.43.10.in-addr.arpa. PTR web.default.svc.cluster.local."], false),
        ("5.0.42.10.in-addr.arpa.", PTR, NOERR, vec!["5.0.42.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."], false),
        ("8.0.42.10.in-addr.arpa.", PTR, NOERR, vec!["8.0.42.10.in-addr.arpa. PTR 10-42-0-8.db.default.svc.cluster.local."], false),
        ("7.0.42.10.in-addr.arpa.", PTR, NX, vec![], true),
        ("9.9.42.10.in-addr.arpa.", PTR, NX, vec![], true),
        ("20.0.43.10.in-addr.arpa.", A, NOERR, vec![], true),
        (
            "1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.",
            PTR,
            NOERR,
            vec!["1.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa. PTR dual.default.svc.cluster.local."],
            false,
        ),
        // Outside the cluster domain: refused, never forwarded.
        ("example.com.", A, REFUSED, vec![], false),
        ("cluster.local.example.com.", A, REFUSED, vec![], false),
        ("xcluster.local.", A, REFUSED, vec![], false),
    ];
    for (name, qtype, rcode, answers, soa) in cases {
        let got = ask(&index, name, qtype);
        assert_eq!(
            (
                got.0,
                got.1.iter().map(String::as_str).collect::<Vec<_>>(),
                got.2
            ),
            (rcode, answers, soa),
            "{name} {qtype}"
        );
    }
}

#[test]
fn srv_additionals_carry_target_addresses() {
    let index = fixture();
    let (_, _, _, add) = ask(&index, "_http._tcp.web.default.svc.cluster.local.", SRV);
    assert_eq!(add, vec!["web.default.svc.cluster.local. A 10.43.0.20"]);
    let (_, _, _, add) = ask(&index, "_pg._tcp.db.default.svc.cluster.local.", SRV);
    assert_eq!(
        add,
        vec![
            "10-42-0-8.db.default.svc.cluster.local. A 10.42.0.8",
            "db-0.db.default.svc.cluster.local. A 10.42.0.5",
            "db-0.db.default.svc.cluster.local. AAAA fd00:42::5",
            "db-1.db.default.svc.cluster.local. A 10.42.0.6",
        ]
    );
}

#[test]
fn other_cluster_domain() {
    let index = fixture();
    let zone = Zone::new("Corp.Example.", 30);
    let a = resolve(
        &index,
        &zone,
        &Name::from_ascii("web.default.svc.corp.example.").unwrap(),
        A,
    );
    assert_eq!(a.rcode, NOERR);
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].ttl, 30);
    let a = resolve(
        &index,
        &zone,
        &Name::from_ascii("web.default.svc.cluster.local.").unwrap(),
        A,
    );
    assert_eq!(a.rcode, REFUSED);
}

#[test]
fn dashed_names() {
    assert_eq!(dashed(&"10.1.2.3".parse().unwrap()), "10-1-2-3");
    assert_eq!(dashed(&"fd00::1".parse().unwrap()), "fd00--1");
}
