use serde_json::{json, Value};

use super::*;

fn pod(ns: &str, name: &str, ip: &str, node: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080},
                      {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]}]},
        "status": {"phase": "Running", "podIP": ip}
    }))
    .unwrap()
}

fn ns(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .unwrap()
}

/// The cluster every case runs in: node n1 has server (app=web), a
/// (role=client) and b (role=other) in default; c (role=client) in
/// namespace other (team=x); remote (role=client) on n2.
fn cluster() -> (Vec<Pod>, Vec<Namespace>) {
    let mut host = pod("default", "host", "192.0.2.1", "n1", json!({"app": "web"}));
    host.spec.as_mut().unwrap().host_network = Some(true);
    let mut done = pod("default", "done", "10.0.0.9", "n1", json!({"app": "web"}));
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    (
        vec![
            pod("default", "server", "10.0.0.2", "n1", json!({"app": "web"})),
            pod("default", "a", "10.0.0.3", "n1", json!({"role": "client"})),
            pod("default", "b", "10.0.0.4", "n1", json!({"role": "other"})),
            pod("other", "c", "10.0.0.5", "n1", json!({"role": "client"})),
            pod(
                "default",
                "remote",
                "10.0.1.2",
                "n2",
                json!({"role": "client"}),
            ),
            host,
            done,
        ],
        vec![ns("default", json!({})), ns("other", json!({"team": "x"}))],
    )
}

/// An allowance written compactly: "ips|cidr!except,..|*" and
/// "tcp:80-90|udp|*".
fn allow(addrs: &str, ports: &str) -> Allow {
    let addrs = if addrs == "*" {
        Addrs::Any
    } else if let Some((cidr, except)) = addrs.split_once('!') {
        Addrs::Block {
            cidr: Cidr::parse(cidr).unwrap(),
            except: except.split(',').map(|e| Cidr::parse(e).unwrap()).collect(),
        }
    } else if addrs.contains('/') {
        Addrs::Block {
            cidr: Cidr::parse(addrs).unwrap(),
            except: vec![],
        }
    } else {
        Addrs::Ips(addrs.split(',').map(|i| i.parse().unwrap()).collect())
    };
    let proto = |s: &str| Protocol::parse(Some(&s.to_uppercase())).unwrap();
    let ports = match ports.split_once(':') {
        _ if ports == "*" => Ports::Any,
        None => Ports::All(proto(ports)),
        Some((p, range)) => {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            Ports::Range(proto(p), a.parse().unwrap(), b.parse().unwrap())
        }
    };
    Allow { addrs, ports }
}

type Expect = Vec<(&'static str, Option<Vec<Allow>>, Option<Vec<Allow>>)>;

fn run(policies: &[NetworkPolicy]) -> Expect {
    let (pods, namespaces) = cluster();
    build("n1", policies, &pods, &namespaces)
        .into_iter()
        .map(|i| {
            let name: &'static str = Box::leak(format!("{}/{}", i.namespace, i.name).into());
            (name, i.ingress, i.egress)
        })
        .collect()
}

#[test]
fn policies_isolate_local_pods_and_allow_the_union_of_rules() {
    let server = |spec: Value| {
        let mut s = json!({"podSelector": {"matchLabels": {"app": "web"}}});
        s.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        s
    };
    let cases: Vec<(&str, Vec<NetworkPolicy>, Expect)> = vec![
        ("no policies: nobody isolated", vec![], vec![]),
        (
            "default deny ingress for all pods: local pods isolated, remote and host-network ones not",
            vec![policy("default", "deny", json!({"podSelector": {}}))],
            vec![
                ("default/a", Some(vec![]), None),
                ("default/b", Some(vec![]), None),
                ("default/server", Some(vec![]), None),
            ],
        ),
        (
            "podSelector and port: the selected peers in the policy's namespace",
            vec![policy(
                "default",
                "p",
                server(json!({"ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                          "ports": [{"port": 8080}]}]})),
            )],
            vec![(
                "default/server",
                Some(vec![allow("10.0.0.3,10.0.1.2", "tcp:8080")]),
                None,
            )],
        ),
        (
            "namespaceSelector alone: every pod of matching namespaces; with podSelector: both must match",
            vec![policy(
                "default",
                "p",
                server(json!({"ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]},
                    {"from": [{"namespaceSelector": {"matchExpressions": [
                                  {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default"]}]},
                               "podSelector": {"matchLabels": {"role": "other"}}}],
                     "ports": [{"protocol": "UDP"}]}]})),
            )],
            vec![(
                "default/server",
                Some(vec![allow("10.0.0.4", "udp"), allow("10.0.0.5", "*")]),
                None,
            )],
        ),
        (
            "named port resolved on the target pod; endPort ranges; SCTP; unknown names match nothing",
            vec![policy(
                "default",
                "p",
                server(json!({"ingress": [{"ports": [
                    {"port": "http"}, {"port": "dns", "protocol": "UDP"}, {"port": "dns"},
                    {"port": 9000, "endPort": 9010, "protocol": "SCTP"}]}]})),
            )],
            vec![(
                "default/server",
                Some(vec![
                    allow("*", "tcp:8080"),
                    allow("*", "udp:5353"),
                    allow("*", "sctp:9000-9010"),
                ]),
                None,
            )],
        ),
        (
            "ipBlock with except (host bits cleared); IPv6 blocks ignored",
            vec![policy(
                "default",
                "p",
                server(json!({"ingress": [{"from": [
                    {"ipBlock": {"cidr": "10.0.0.1/16", "except": ["10.0.1.0/24", "fd00::/8"]}},
                    {"ipBlock": {"cidr": "fd00::/8"}}]}]})),
            )],
            vec![(
                "default/server",
                Some(vec![allow("10.0.0.0/16!10.0.1.0/24", "*")]),
                None,
            )],
        ),
        (
            "egress rules make Egress a default policy type; empty egress list does not",
            vec![
                policy(
                    "default",
                    "e",
                    json!({"podSelector": {"matchLabels": {"role": "client"}},
                           "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
                ),
                policy(
                    "other",
                    "e",
                    json!({"podSelector": {}, "egress": []}),
                ),
            ],
            vec![
                ("default/a", Some(vec![]), Some(vec![allow("10.0.0.2", "*")])),
                ("other/c", Some(vec![]), None),
            ],
        ),
        (
            "explicit policyTypes Egress only: empty egress denies all, ingress untouched",
            vec![policy(
                "default",
                "e",
                json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                       "ingress": [{}]}),
            )],
            vec![("default/a", None, Some(vec![]))],
        ),
        (
            "egress named port resolved on destination pods within the peers",
            vec![policy(
                "default",
                "e",
                json!({"podSelector": {"matchLabels": {"role": "client"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.4/32"]}}],
                                   "ports": [{"port": "http"}]}]}),
            )],
            vec![(
                "default/a",
                None,
                Some(vec![allow("10.0.0.2,10.0.0.3,10.0.0.5", "tcp:8080")]),
            )],
        ),
        (
            "several policies: the union of their rules, duplicates merged",
            vec![
                policy(
                    "default",
                    "one",
                    server(json!({"ingress": [{"ports": [{"port": 80}]}]})),
                ),
                policy(
                    "default",
                    "two",
                    server(json!({"ingress": [{"ports": [{"port": 80}, {"port": 443}]}]})),
                ),
                policy("default", "deny", server(json!({}))),
                policy("other", "ignored", server(json!({}))),
            ],
            vec![(
                "default/server",
                Some(vec![allow("*", "tcp:80"), allow("*", "tcp:443")]),
                None,
            )],
        ),
        (
            "a peer selecting nobody allows nothing",
            vec![policy(
                "default",
                "p",
                server(json!({"ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"role": "nobody"}}}]},
                    {"from": [{"podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}}],
                     "ports": [{"port": 7}]}]})),
            )],
            vec![(
                "default/server",
                Some(vec![allow("10.0.0.3,10.0.0.4,10.0.1.2", "tcp:7")]),
                None,
            )],
        ),
    ];
    for (what, policies, want) in cases {
        assert_eq!(run(&policies), want, "{what}");
    }
}

#[test]
fn selectors_match_like_kubernetes() {
    let labels: BTreeMap<String, String> = [("app".into(), "web".into())].into();
    let cases = [
        (json!({}), true),
        (json!({"matchLabels": {"app": "web"}}), true),
        (json!({"matchLabels": {"app": "db"}}), false),
        (
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "web"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}),
            false,
        ),
        (
            json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["web"]}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
            true,
        ),
        (
            json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
            false,
        ),
    ];
    for (sel, want) in cases {
        let s: LabelSelector = serde_json::from_value(sel.clone()).unwrap();
        assert_eq!(selector_matches(&s, &labels), want, "{sel}");
    }
}

#[test]
fn cidrs() {
    let c = Cidr::parse("10.1.2.3/8").unwrap();
    assert_eq!(c.to_string(), "10.0.0.0/8");
    assert!(c.contains("10.255.0.1".parse().unwrap()));
    assert!(!c.contains("11.0.0.1".parse().unwrap()));
    assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("1.2.3.4".parse().unwrap()));
    assert_eq!(Cidr::parse("fd00::/8"), None);
    assert_eq!(Cidr::parse("10.0.0.0/33"), None);
}
