use super::*;
use crate::netpol::model::{Cidr, Protocol};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Addrs {
    Addrs::Ips(list.iter().map(|s| ip(s)).collect())
}

#[test]
fn allowances_render_as_returning_rules() {
    let block = |cidr: &str, except: &[&str]| Addrs::Block {
        cidr: Cidr::parse(cidr).unwrap(),
        except: except.iter().map(|e| Cidr::parse(e).unwrap()).collect(),
    };
    let cases = [
        ("saddr", Addrs::Any, Ports::Any, "return"),
        (
            "saddr",
            ips(&["10.0.0.3"]),
            Ports::Range(Protocol::Tcp, 80, 80),
            "ip saddr 10.0.0.3 tcp dport 80 return",
        ),
        (
            "saddr",
            ips(&["10.0.0.3", "10.0.1.2"]),
            Ports::Range(Protocol::Udp, 5000, 5010),
            "ip saddr { 10.0.0.3, 10.0.1.2 } udp dport 5000-5010 return",
        ),
        (
            "daddr",
            block("10.0.0.0/16", &["10.0.1.0/24", "10.0.2.0/24"]),
            Ports::All(Protocol::Sctp),
            "ip daddr 10.0.0.0/16 ip daddr != { 10.0.1.0/24, 10.0.2.0/24 } meta l4proto sctp return",
        ),
        (
            "daddr",
            block("0.0.0.0/0", &["10.0.0.0/8"]),
            Ports::Any,
            "ip daddr 0.0.0.0/0 ip daddr != 10.0.0.0/8 return",
        ),
        (
            "daddr",
            block("192.0.2.0/24", &[]),
            Ports::Range(Protocol::Tcp, 1, 1024),
            "ip daddr 192.0.2.0/24 tcp dport 1-1024 return",
        ),
    ];
    for (field, addrs, ports, want) in cases {
        assert_eq!(allow_rule(field, &Allow { addrs, ports }), want);
    }
}

fn pods() -> Vec<Isolated> {
    vec![
        Isolated {
            namespace: "default".into(),
            name: "a".into(),
            ip: ip("10.0.0.3"),
            ingress: None,
            egress: Some(vec![]),
        },
        Isolated {
            namespace: "default".into(),
            name: "server".into(),
            ip: ip("10.0.0.2"),
            ingress: Some(vec![Allow {
                addrs: ips(&["10.0.0.3"]),
                ports: Ports::Range(Protocol::Tcp, 8080, 8080),
            }]),
            egress: None,
        },
    ]
}

#[test]
fn isolated_pods_get_chains_reached_through_the_maps() {
    let rules = render(&pods(), Some("aa:bb:cc:dd:ee:ff"));
    let rs = &rules.ip;
    assert_eq!(
        rs.chains["forward"].rules,
        [
            "ct state established,related accept",
            "ip saddr vmap @egress-pods",
            "ip daddr vmap @ingress-pods"
        ]
    );
    assert_eq!(
        rs.chains["ingress-10.0.0.2"].rules,
        [
            "ip saddr 10.0.0.2 return",
            "ip saddr 10.0.0.3 tcp dport 8080 return",
            "drop"
        ]
    );
    assert_eq!(
        rs.chains["egress-10.0.0.3"].rules,
        ["ip daddr 10.0.0.3 return", "drop"]
    );
    assert!(!rs.chains.contains_key("ingress-10.0.0.3"));
    assert!(!rs.chains.contains_key("egress-10.0.0.2"));
    let elements = |set: &str| -> Vec<(String, Option<String>)> {
        rs.sets[set]
            .elements
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        elements("ingress-pods"),
        [("10.0.0.2".into(), Some("jump ingress-10.0.0.2".into()))]
    );
    assert_eq!(
        elements("egress-pods"),
        [("10.0.0.3".into(), Some("jump egress-10.0.0.3".into()))]
    );

    let br = &rules.bridge;
    assert_eq!(
        br.chains["prerouting"].rules,
        [
            "ip saddr @isolated ether daddr != aa:bb:cc:dd:ee:ff meta pkttype set host ether daddr set aa:bb:cc:dd:ee:ff",
            "ip daddr @isolated ether daddr != aa:bb:cc:dd:ee:ff meta pkttype set host ether daddr set aa:bb:cc:dd:ee:ff"
        ]
    );
    assert_eq!(
        br.sets["isolated"].elements.keys().collect::<Vec<_>>(),
        ["10.0.0.2", "10.0.0.3"]
    );
}

#[test]
fn scripts_create_update_and_drop_the_tables() {
    let first = render(&pods(), Some("aa:bb:cc:dd:ee:ff"));
    let script = first.script("br0-policy", None);
    for line in [
        "table ip br0-policy {}\ndelete table ip br0-policy\nadd table ip br0-policy",
        "add chain ip br0-policy forward { type filter hook forward priority filter; policy accept; }",
        "add map ip br0-policy ingress-pods { type ipv4_addr : verdict; }",
        "add rule ip br0-policy ingress-10.0.0.2 drop",
        "add element ip br0-policy ingress-pods { 10.0.0.2 : jump ingress-10.0.0.2 }",
        "table bridge br0-policy {}\ndelete table bridge br0-policy\nadd table bridge br0-policy",
        "add chain bridge br0-policy prerouting { type filter hook prerouting priority -300; policy accept; }",
        "add element bridge br0-policy isolated { 10.0.0.3 }",
    ] {
        assert!(script.contains(line), "{line:?} not in\n{script}");
    }
    // The chains exist before the map elements pointing at them.
    assert!(
        script
            .find("add chain ip br0-policy ingress-10.0.0.2")
            .unwrap()
            < script
                .find("add element ip br0-policy ingress-pods")
                .unwrap()
    );
    assert_eq!(first.script("br0-policy", Some(&first)), "");

    // The server's ingress policy goes away: its chain and elements go,
    // nothing else is touched.
    let mut fewer = pods();
    fewer.pop();
    let second = render(&fewer, Some("aa:bb:cc:dd:ee:ff"));
    let script = second.script("br0-policy", Some(&first));
    assert_eq!(
        script.lines().collect::<Vec<_>>(),
        [
            "flush chain ip br0-policy ingress-10.0.0.2",
            "delete element ip br0-policy ingress-pods { 10.0.0.2 }",
            "delete chain ip br0-policy ingress-10.0.0.2",
            "delete element bridge br0-policy isolated { 10.0.0.2 }",
        ]
    );

    // No bridge yet: no bridge table, and an existing one is deleted.
    let no_bridge = render(&fewer, None);
    assert!(no_bridge.bridge.chains.is_empty());
    let script = no_bridge.script("br0-policy", Some(&second));
    assert_eq!(
        script,
        "table bridge br0-policy {}\ndelete table bridge br0-policy\n"
    );
    assert_eq!(no_bridge.script("br0-policy", Some(&no_bridge)), "");
}

#[test]
fn remove_deletes_both_tables() {
    assert_eq!(
        remove_script("rk1-policy"),
        "table ip rk1-policy {}\ndelete table ip rk1-policy\ntable bridge rk1-policy {}\ndelete table bridge rk1-policy\n"
    );
}
