//! Host-gw pod routes: on each node, a kernel route to every other node's
//! pod range (`spec.podCIDR`) via that node's InternalIP, kept in step with
//! the Nodes as they come, change and go (flannel's host-gw backend does
//! the same). Nodes must share a link: a route whose gateway is not inside
//! one of this host's directly connected subnets is not installed (the
//! addresses of simulated nodes, say), nor one via an address of this host.
//!
//! [`wanted`] and [`plan`] are pure; [`run`] feeds them from a Node
//! informer and applies the difference with `ip route`. The routes this
//! process installed are remembered in memory only: on a restart they are
//! replaced in place (`ip route replace`), and a route to a node deleted
//! while the agent was down stays until its link goes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::Api;
use runtime::Informer;

/// Pod range (CIDR text) -> gateway.
pub type Routes = BTreeMap<String, Ipv4Addr>;

/// An IPv4 network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        };
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }
}

/// The IPv4 pod range of a node (`spec.podCIDRs`' IPv4 entry, else
/// `spec.podCIDR`), when it is a well-formed CIDR.
fn pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find(|c| {
            c.split_once('/').is_some_and(|(ip, len)| {
                ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
            })
        })
        .cloned()
}

/// A node's first IPv4 InternalIP.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The routes node `me` wants, given this host's interface subnets
/// (`local`: each address with its prefix): every other node's pod range
/// via its InternalIP, where that gateway is on a connected subnet and is
/// not one of this host's own addresses. A range two nodes claim goes to
/// neither (nodeipam never does that; a stale object might).
pub fn wanted<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str, local: &[Subnet]) -> Routes {
    let mut out = Routes::new();
    let mut claimed = BTreeMap::<String, usize>::new();
    for node in nodes {
        let Some(cidr) = pod_cidr(node) else { continue };
        *claimed.entry(cidr.clone()).or_default() += 1;
        if node.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some(gw) = internal_ip(node) else {
            continue;
        };
        let on_link = local.iter().any(|s| s.contains(gw));
        let ours = gw.is_loopback() || local.iter().any(|s| s.addr == gw);
        if on_link && !ours {
            out.insert(cidr, gw);
        }
    }
    out.retain(|cidr, _| claimed.get(cidr) == Some(&1));
    out
}

/// What to change to go from `installed` to `wanted`: routes to add or
/// replace (new, or with a new gateway), and routes to delete.
pub fn plan(installed: &Routes, wanted: &Routes) -> (Routes, Routes) {
    let add = wanted
        .iter()
        .filter(|(c, gw)| installed.get(*c) != Some(gw))
        .map(|(c, gw)| (c.clone(), *gw))
        .collect();
    let del = installed
        .iter()
        .filter(|(c, _)| !wanted.contains_key(*c))
        .map(|(c, gw)| (c.clone(), *gw))
        .collect();
    (add, del)
}

/// This host's IPv4 interface subnets, from `ip -j -4 addr show`'s JSON.
pub fn parse_addrs(json: &str) -> Vec<Subnet> {
    let Ok(links) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return Vec::new();
    };
    links
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| {
            Some(Subnet {
                addr: a["local"].as_str()?.parse().ok()?,
                prefix: u8::try_from(a["prefixlen"].as_u64()?).ok()?,
            })
        })
        .collect()
}

async fn local_subnets() -> Vec<Subnet> {
    match tokio::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show"])
        .output()
        .await
    {
        Ok(out) if out.status.success() => parse_addrs(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

async fn ip_route(args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("ip")
        .arg("route")
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "ip route {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Keeps this node's routes to the other nodes' pod ranges current until
/// the Node informer stops.
pub async fn run(client: kube::Client, node_name: String) -> anyhow::Result<()> {
    let nodes: Arc<Informer<Node>> = Informer::new(Api::all(client), watcher::Config::default());
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let n = changed.clone();
        nodes.on_change(move |_| n.notify_one());
    }
    let task = nodes.start();
    nodes.wait_synced().await;
    let mut installed = Routes::new();
    loop {
        let local = local_subnets().await;
        let state = nodes.store().state();
        let want = wanted(state.iter().map(|n| n.as_ref()), &node_name, &local);
        let (add, del) = plan(&installed, &want);
        for (cidr, gw) in &del {
            match ip_route(&["del", cidr, "via", &gw.to_string()]).await {
                Ok(()) => tracing::info!(%cidr, via = %gw, "pod route removed"),
                Err(e) => tracing::debug!("{e:#}"),
            }
            installed.remove(cidr);
        }
        let mut failed = false;
        for (cidr, gw) in &add {
            match ip_route(&["replace", cidr, "via", &gw.to_string()]).await {
                Ok(()) => {
                    tracing::info!(%cidr, via = %gw, "pod route installed");
                    installed.insert(cidr.clone(), *gw);
                }
                Err(e) => {
                    tracing::warn!("{e:#}");
                    failed = true;
                }
            }
        }
        if task.is_finished() {
            anyhow::bail!("pod routes: the node informer stopped");
        }
        if failed {
            // Retry failed routes later even without a Node change.
            let _ = tokio::time::timeout(Duration::from_secs(10), changed.notified()).await;
        } else {
            changed.notified().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": cidr.map(|c| serde_json::json!({"podCIDR": c, "podCIDRs": [c]})).unwrap_or_default(),
            "status": {"addresses": ip.map(|i| vec![
                serde_json::json!({"type": "Hostname", "address": name}),
                serde_json::json!({"type": "InternalIP", "address": i}),
            ]).unwrap_or_default()},
        }))
        .unwrap()
    }

    fn subnet(s: &str) -> Subnet {
        let (a, p) = s.split_once('/').unwrap();
        Subnet {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn wanted_routes() {
        let local = [subnet("10.253.0.1/24"), subnet("127.0.0.1/8")];
        type Case = (&'static str, Vec<Node>, Vec<(&'static str, &'static str)>);
        let cases: Vec<Case> = vec![
            (
                "other nodes on the link, not me",
                vec![
                    node("a", Some("10.254.0.0/24"), Some("10.253.0.1")),
                    node("b", Some("10.254.1.0/24"), Some("10.253.0.2")),
                    node("c", Some("10.254.2.0/24"), Some("10.253.0.3")),
                ],
                vec![
                    ("10.254.1.0/24", "10.253.0.2"),
                    ("10.254.2.0/24", "10.253.0.3"),
                ],
            ),
            (
                "no pod range yet, no address, bad range",
                vec![
                    node("b", None, Some("10.253.0.2")),
                    node("c", Some("10.254.2.0/24"), None),
                    node("d", Some("nonsense"), Some("10.253.0.4")),
                ],
                vec![],
            ),
            (
                "gateway off-link or one of ours (simulated nodes, loopback)",
                vec![
                    node("s", Some("10.254.3.0/24"), Some("10.200.0.7")),
                    node("t", Some("10.254.4.0/24"), Some("10.253.0.1")),
                    node("u", Some("10.254.5.0/24"), Some("127.0.0.2")),
                ],
                vec![],
            ),
            (
                "a range two nodes claim goes to neither",
                vec![
                    node("b", Some("10.254.1.0/24"), Some("10.253.0.2")),
                    node("c", Some("10.254.1.0/24"), Some("10.253.0.3")),
                    node("a", Some("10.254.1.0/24"), Some("10.253.0.1")),
                ],
                vec![],
            ),
        ];
        for (what, nodes, want) in cases {
            let want: Routes = want
                .into_iter()
                .map(|(c, g)| (c.to_owned(), g.parse().unwrap()))
                .collect();
            assert_eq!(wanted(&nodes, "a", &local), want, "{what}");
        }
    }

    #[test]
    fn plans_the_difference() {
        let r = |v: &[(&str, &str)]| -> Routes {
            v.iter()
                .map(|(c, g)| (c.to_string(), g.parse().unwrap()))
                .collect()
        };
        let installed = r(&[("10.1.0.0/24", "10.0.0.2"), ("10.1.1.0/24", "10.0.0.3")]);
        let wanted = r(&[("10.1.1.0/24", "10.0.0.4"), ("10.1.2.0/24", "10.0.0.5")]);
        let (add, del) = plan(&installed, &wanted);
        assert_eq!(
            add, wanted,
            "a moved gateway is replaced, a new range added"
        );
        assert_eq!(del, r(&[("10.1.0.0/24", "10.0.0.2")]));
        assert_eq!(plan(&wanted, &wanted), (Routes::new(), Routes::new()));
    }

    #[test]
    fn parses_ip_addr_json() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24},{"family":"inet","local":"bad","prefixlen":24}]}]"#;
        assert_eq!(
            parse_addrs(json),
            vec![subnet("127.0.0.1/8"), subnet("192.0.2.2/24")]
        );
        assert_eq!(parse_addrs("not json"), vec![]);
        assert!(subnet("192.0.2.2/24").contains("192.0.2.200".parse().unwrap()));
        assert!(!subnet("192.0.2.2/24").contains("192.0.3.1".parse().unwrap()));
        assert!(subnet("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
    }
}
