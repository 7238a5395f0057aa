use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::netlink::{delete_request, dump_request, messages, parse_entry};
use super::*;
use crate::proxy::model::{Endpoint, Protocol, ServicePort};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ep(addr: &str, ready: bool, serving: bool, terminating: bool) -> Endpoint {
    Endpoint {
        ip: ip(addr),
        port: 5353,
        ready,
        serving,
        terminating,
        node: Some("other-node".into()),
    }
}

fn up(addr: &str) -> Endpoint {
    ep(addr, true, true, false)
}

fn udp(endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: "dns".into(),
        port_name: "dns".into(),
        protocol: Protocol::Udp,
        cluster_ips: vec![ip("10.43.0.10")],
        port: 53,
        node_port: None,
        external_ips: vec![],
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        endpoints,
    }
}

fn set(ips: &[&str]) -> BTreeSet<Ipv4Addr> {
    ips.iter().map(|s| ip(s)).collect()
}

fn cluster(port: u16) -> Flow {
    Flow {
        protocol: Protocol::Udp,
        dst: Dst::Addr(ip("10.43.0.10"), port),
    }
}

#[test]
fn targets_are_the_udp_and_sctp_destinations_with_their_serving_endpoints() {
    let mut lb = udp(vec![
        up("10.42.0.5"),
        // Not ready but serving (terminating): still keeps its flows.
        ep("10.42.0.6", false, true, true),
        // Neither: its flows are stale.
        ep("10.42.0.7", false, false, true),
    ]);
    lb.node_port = Some(30053);
    lb.external_ips = vec![ip("192.0.2.10")];
    // Traffic policies do not matter.
    lb.external_local = true;
    let mut tcp = udp(vec![up("10.42.0.8")]);
    tcp.protocol = Protocol::Tcp;
    tcp.name = "web".into();
    let mut sctp = udp(vec![up("10.42.0.9")]);
    sctp.protocol = Protocol::Sctp;
    sctp.port = 9999;
    let got = targets(&[lb, tcp, sctp]);
    let serving = set(&["10.42.0.5", "10.42.0.6"]);
    let want: Targets = [
        (cluster(53), serving.clone()),
        (
            Flow {
                protocol: Protocol::Udp,
                dst: Dst::Addr(ip("192.0.2.10"), 53),
            },
            serving.clone(),
        ),
        (
            Flow {
                protocol: Protocol::Udp,
                dst: Dst::NodePort(30053),
            },
            serving,
        ),
        (
            Flow {
                protocol: Protocol::Sctp,
                dst: Dst::Addr(ip("10.43.0.10"), 9999),
            },
            set(&["10.42.0.9"]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}

#[test]
fn what_to_clear_after_a_change() {
    // (case, old endpoints (None: the port did not exist), new endpoints
    // (None: the port is gone), the endpoints kept when the ClusterIP
    // destination must be checked (None: it need not be)).
    #[allow(clippy::type_complexity)]
    let cases: &[(&str, Option<&[&str]>, Option<&[&str]>, Option<&[&str]>)] = &[
        (
            "unchanged",
            Some(&["10.42.0.5"]),
            Some(&["10.42.0.5"]),
            None,
        ),
        (
            "an endpoint added to serving ones",
            Some(&["10.42.0.5"]),
            Some(&["10.42.0.5", "10.42.0.6"]),
            None,
        ),
        (
            "an endpoint removed",
            Some(&["10.42.0.5", "10.42.0.6"]),
            Some(&["10.42.0.6"]),
            Some(&["10.42.0.6"]),
        ),
        (
            "an endpoint replaced",
            Some(&["10.42.0.5"]),
            Some(&["10.42.0.6"]),
            Some(&["10.42.0.6"]),
        ),
        (
            "the last endpoint removed",
            Some(&["10.42.0.5"]),
            Some(&[]),
            Some(&[]),
        ),
        (
            "zero to non-zero endpoints",
            Some(&[]),
            Some(&["10.42.0.5"]),
            Some(&["10.42.0.5"]),
        ),
        ("still no endpoints", Some(&[]), Some(&[]), None),
        (
            "a new port with endpoints",
            None,
            Some(&["10.42.0.5"]),
            Some(&["10.42.0.5"]),
        ),
        ("a new port without endpoints", None, Some(&[]), Some(&[])),
        ("a port removed", Some(&["10.42.0.5"]), None, Some(&[])),
        (
            "a port without endpoints removed",
            Some(&[]),
            None,
            Some(&[]),
        ),
    ];
    let targets_of = |eps: Option<&[&str]>| -> Targets {
        eps.map(|eps| targets(&[udp(eps.iter().map(|a| up(a)).collect())]))
            .unwrap_or_default()
    };
    for (case, old, new, want) in cases {
        let got = to_clear(Some(&targets_of(*old)), &targets_of(*new));
        let want: Vec<Clear> = want
            .iter()
            .map(|keep| Clear {
                flow: cluster(53),
                keep: set(keep),
            })
            .collect();
        assert_eq!(got, want, "{case}");
    }
}

#[test]
fn after_a_start_every_destination_is_checked() {
    let new = targets(&[udp(vec![up("10.42.0.5")]), {
        let mut empty = udp(vec![]);
        empty.port = 54;
        empty
    }]);
    assert_eq!(
        to_clear(None, &new),
        [
            Clear {
                flow: cluster(53),
                keep: set(&["10.42.0.5"]),
            },
            Clear {
                flow: cluster(54),
                keep: set(&[]),
            },
        ]
    );
}

fn entry(proto: u8, dst: &str, dport: u16, reply_src: &str) -> Entry {
    Entry {
        proto,
        src: ip("10.42.0.2"),
        dst: ip(dst),
        sport: 40000,
        dport,
        reply_src: ip(reply_src),
        zone: None,
    }
}

#[test]
fn stale_entries_are_those_not_dnated_to_a_kept_endpoint() {
    let clears = [
        Clear {
            flow: cluster(53),
            keep: set(&["10.42.0.6"]),
        },
        Clear {
            flow: Flow {
                protocol: Protocol::Udp,
                dst: Dst::NodePort(30053),
            },
            keep: set(&["10.42.0.6"]),
        },
    ];
    // (case, entry, stale?)
    let cases = [
        (
            "DNATed to the removed endpoint",
            entry(17, "10.43.0.10", 53, "10.42.0.5"),
            true,
        ),
        (
            "DNATed to a kept endpoint",
            entry(17, "10.43.0.10", 53, "10.42.0.6"),
            false,
        ),
        (
            "never DNATed (sent before the rules existed)",
            entry(17, "10.43.0.10", 53, "10.43.0.10"),
            true,
        ),
        (
            "another port of the address",
            entry(17, "10.43.0.10", 54, "10.42.0.5"),
            false,
        ),
        (
            "TCP to the same address and port",
            entry(6, "10.43.0.10", 53, "10.42.0.5"),
            false,
        ),
        (
            "the NodePort on a node address, to the removed endpoint",
            entry(17, "192.0.2.2", 30053, "10.42.0.5"),
            true,
        ),
        (
            "the NodePort, to a kept endpoint",
            entry(17, "192.0.2.2", 30053, "10.42.0.6"),
            false,
        ),
        (
            "unrelated traffic",
            entry(17, "192.0.2.53", 53, "192.0.2.53"),
            false,
        ),
    ];
    let entries: Vec<Entry> = cases.iter().map(|(_, e, _)| e.clone()).collect();
    let got: Vec<&Entry> = stale(&clears, &entries);
    for (case, e, want) in &cases {
        assert_eq!(got.contains(&e), *want, "{case}");
    }
}

#[test]
fn a_delete_request_carries_the_original_tuple_and_parses_back() {
    let mut e = entry(17, "10.43.0.10", 53, "10.43.0.10");
    e.zone = Some(7);
    let msg = delete_request(9, &e);
    let all: Vec<_> = messages(&msg).collect();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    // NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE, REQUEST | ACK.
    assert_eq!((m.kind, m.flags), (0x102, 0x5));
    // nfgenmsg: AF_INET, version 0, resource 0.
    assert_eq!(&m.payload[..4], &[2, 0, 0, 0]);
    // The exact bytes of the tuple: nested attributes, ports big-endian.
    #[rustfmt::skip]
    let tuple: &[u8] = &[
        52, 0, 1, 0x80,              // CTA_TUPLE_ORIG, nested
        20, 0, 1, 0x80,              //   CTA_TUPLE_IP
        8, 0, 1, 0, 10, 42, 0, 2,    //     CTA_IP_V4_SRC
        8, 0, 2, 0, 10, 43, 0, 10,   //     CTA_IP_V4_DST
        28, 0, 2, 0x80,              //   CTA_TUPLE_PROTO
        5, 0, 1, 0, 17, 0, 0, 0,     //     CTA_PROTO_NUM
        6, 0, 2, 0, 0x9c, 0x40, 0, 0,//     CTA_PROTO_SRC_PORT 40000
        6, 0, 3, 0, 0, 53, 0, 0,     //     CTA_PROTO_DST_PORT 53
        6, 0, 18, 0, 0, 7, 0, 0,     // CTA_ZONE 7
    ];
    assert_eq!(&m.payload[4..], tuple);
    assert_eq!(dump_request(1).len(), 20);

    // A kernel entry has a reply tuple too (here DNATed to 10.42.0.5):
    // build one from the same pieces and parse it.
    let mut reply = delete_request(
        1,
        &Entry {
            proto: 17,
            src: ip("10.42.0.5"),
            dst: ip("10.42.0.2"),
            sport: 53,
            dport: 40000,
            reply_src: ip("0.0.0.0"),
            zone: None,
        },
    )[20..]
        .to_vec();
    reply[2] = 2; // CTA_TUPLE_ORIG -> CTA_TUPLE_REPLY
    let mut kernel = msg[20..].to_vec();
    kernel.extend_from_slice(&reply);
    assert_eq!(
        parse_entry(&kernel),
        Some(Entry {
            reply_src: ip("10.42.0.5"),
            ..e
        })
    );
}
