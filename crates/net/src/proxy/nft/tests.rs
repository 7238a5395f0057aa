use std::net::Ipv4Addr;

use super::*;
use crate::proxy::model::Protocol;

fn ep(ip: &str, node: &str) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        node: Some(node.into()),
    }
}

fn port(name: &str, endpoints: Vec<Endpoint>) -> ServicePort {
    ServicePort {
        namespace: "default".into(),
        name: name.into(),
        port_name: "http".into(),
        protocol: Protocol::Tcp,
        cluster_ips: vec!["10.43.0.20".parse::<Ipv4Addr>().unwrap()],
        port: 80,
        node_port: None,
        external_ips: vec![],
        affinity_timeout: None,
        internal_local: false,
        external_local: false,
        endpoints,
    }
}

fn opts() -> Options {
    Options {
        node: "n1".into(),
        masquerade_bridge: None,
    }
}

fn rules<'a>(rs: &'a Ruleset, chain: &str) -> Vec<&'a str> {
    rs.chains
        .get(chain)
        .unwrap_or_else(|| panic!("no chain {chain}: {:?}", rs.chains.keys()))
        .rules
        .iter()
        .map(String::as_str)
        .collect()
}

fn elements(rs: &Ruleset, set: &str) -> Vec<String> {
    rs.sets[set]
        .elements
        .iter()
        .map(|(k, v)| element(k, v))
        .collect()
}

#[test]
fn cluster_ip_balances_over_ready_endpoints() {
    let rs = render(
        &opts(),
        &[port(
            "web",
            vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")],
        )],
    );
    assert_eq!(
        elements(&rs, "service-ips"),
        ["10.43.0.20 . tcp . 80 : goto svc-default/web/tcp/http"]
    );
    assert_eq!(
        rules(&rs, "svc-default/web/tcp/http"),
        ["numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http/10.42.0.5/8080, 1 : goto ep-default/web/tcp/http/10.42.0.6/8080 }"]
    );
    assert_eq!(
        rules(&rs, "ep-default/web/tcp/http/10.42.0.5/8080"),
        [
            "ip saddr 10.42.0.5 meta mark set meta mark | 0x4000",
            "meta l4proto tcp dnat to 10.42.0.5:8080"
        ]
    );
    assert!(elements(&rs, "no-endpoints").is_empty());
}

#[test]
fn no_endpoints_reject() {
    let mut sp = port("web", vec![]);
    sp.node_port = Some(30080);
    let rs = render(&opts(), &[sp]);
    assert!(elements(&rs, "service-ips").is_empty());
    assert_eq!(elements(&rs, "no-endpoints"), ["10.43.0.20 . tcp . 80"]);
    assert_eq!(elements(&rs, "no-endpoint-nodeports"), ["tcp . 30080"]);
    assert!(!rs.chains.contains_key("svc-default/web/tcp/http"));
}

#[test]
fn affinity_node_ports_and_local_policies() {
    let mut sp = port("web", vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    sp.node_port = Some(30080);
    sp.affinity_timeout = Some(60);
    sp.external_ips = vec!["192.0.2.10".parse().unwrap()];
    let rs = render(&opts(), std::slice::from_ref(&sp));
    assert_eq!(
        rules(&rs, "svc-default/web/tcp/http")[0],
        "ip saddr @aff-default/web/tcp/http/10.42.0.5/8080/60 goto ep-default/web/tcp/http/10.42.0.5/8080"
    );
    assert_eq!(
        rules(&rs, "ep-default/web/tcp/http/10.42.0.6/8080")[1],
        "update @aff-default/web/tcp/http/10.42.0.6/8080/60 { ip saddr }"
    );
    assert_eq!(
        rs.sets["aff-default/web/tcp/http/10.42.0.6/8080/60"].decl,
        "type ipv4_addr; flags dynamic,timeout; timeout 60s;"
    );
    // External traffic is masqueraded, then balanced like internal.
    assert_eq!(
        rules(&rs, "ext-default/web/tcp/http"),
        [
            "meta mark set meta mark | 0x4000",
            "goto svc-default/web/tcp/http"
        ]
    );
    assert_eq!(
        elements(&rs, "service-nodeports"),
        ["tcp . 30080 : goto ext-default/web/tcp/http"]
    );
    assert!(elements(&rs, "service-ips")
        .contains(&"192.0.2.10 . tcp . 80 : goto ext-default/web/tcp/http".to_owned()));

    // externalTrafficPolicy Local: only n1's endpoint, client IP kept.
    sp.external_local = true;
    sp.affinity_timeout = None;
    let rs = render(&opts(), std::slice::from_ref(&sp));
    assert_eq!(
        rules(&rs, "ext-default/web/tcp/http"),
        ["goto ep-default/web/tcp/http/10.42.0.5/8080"]
    );
    // internalTrafficPolicy Local on a node without local endpoints.
    sp.external_local = false;
    sp.internal_local = true;
    sp.node_port = None;
    sp.external_ips.clear();
    let o = Options {
        node: "n3".into(),
        ..opts()
    };
    let rs = render(&o, &[sp]);
    assert_eq!(elements(&rs, "no-endpoints"), ["10.43.0.20 . tcp . 80"]);
}

#[test]
fn masquerades_same_bridge_traffic_without_br_netfilter() {
    let o = Options {
        masquerade_bridge: Some("rk1".into()),
        ..opts()
    };
    let rs = render(&o, &[]);
    assert!(rules(&rs, "nat-postrouting")
        .contains(&"ct status dnat iifname \"rk1\" oifname \"rk1\" masquerade"));
    assert_eq!(rules(&render(&opts(), &[]), "nat-postrouting").len(), 1);
}

#[test]
fn scripts_touch_only_what_changed() {
    let one = render(&opts(), &[port("web", vec![ep("10.42.0.5", "n1")])]);
    let full = one.script("t", None);
    assert!(full.starts_with("table ip t {}\ndelete table ip t\nadd table ip t\n"));
    assert_eq!(one.script("t", Some(&one)), "");

    // A second endpoint: a new endpoint chain, the service chain
    // refilled; maps untouched.
    let two = render(
        &opts(),
        &[port(
            "web",
            vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n1")],
        )],
    );
    let s = two.script("t", Some(&one));
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines,
        [
            "add chain ip t ep-default/web/tcp/http/10.42.0.6/8080",
            "add rule ip t ep-default/web/tcp/http/10.42.0.6/8080 ip saddr 10.42.0.6 meta mark set meta mark | 0x4000",
            "add rule ip t ep-default/web/tcp/http/10.42.0.6/8080 meta l4proto tcp dnat to 10.42.0.6:8080",
            "flush chain ip t svc-default/web/tcp/http",
            "add rule ip t svc-default/web/tcp/http numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http/10.42.0.5/8080, 1 : goto ep-default/web/tcp/http/10.42.0.6/8080 }",
        ]
    );

    // The service goes: its element, then its chains.
    let none = render(&opts(), &[]);
    let s = none.script("t", Some(&two));
    let lines: Vec<&str> = s.lines().collect();
    let del_elem = lines
        .iter()
        .position(|l| *l == "delete element ip t service-ips { 10.43.0.20 . tcp . 80 }")
        .expect("element deleted");
    let del_chain = lines
        .iter()
        .position(|l| *l == "delete chain ip t svc-default/web/tcp/http")
        .expect("chain deleted");
    let flush = lines
        .iter()
        .position(|l| *l == "flush chain ip t svc-default/web/tcp/http")
        .expect("chain flushed");
    assert!(flush < del_chain && del_elem < del_chain, "{s}");
}

/// The scripts are valid nftables: checked by `nft -c` where it can run.
#[test]
fn scripts_pass_nft_check() {
    let ok = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: nft not usable here");
        return;
    }
    let mut sp = port("web", vec![ep("10.42.0.5", "n1"), ep("10.42.0.6", "n2")]);
    sp.node_port = Some(30080);
    sp.affinity_timeout = Some(30);
    sp.external_ips = vec!["192.0.2.10".parse().unwrap()];
    let mut udp = port("dns", vec![]);
    udp.protocol = Protocol::Udp;
    udp.cluster_ips = vec!["10.43.0.10".parse().unwrap()];
    let o = Options {
        masquerade_bridge: Some("rk1".into()),
        ..opts()
    };
    let rs = render(&o, &[sp, udp]);
    let table = format!("rkube-unit-{}", std::process::id());
    let script = rs.script(&table, None);
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -c rejected:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
