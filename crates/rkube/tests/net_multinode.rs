//! Three real nodes on one machine: the server's local node in the host's
//! network namespace and two more `rkube agent`s (each with its own
//! containerd), each in a network namespace this test creates, joined by
//! veths to a bridge the test also creates (the nodes' link). Pods on any
//! node reach pods on the others through the host-gw routes
//! (`net::routes`) — between the two namespaced nodes the traffic never
//! touches the host's own routes — a Service's ClusterIP from one node
//! reaches its endpoint on another, and cluster DNS answers pods on the
//! namespaced nodes. Every address involved lives on that link or inside
//! the nodes; nothing is routed off the machine. Skipped, with the reason
//! printed, where containerd, nft or nsenter cannot run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::eventually;

/// The link between the nodes and the namespaced nodes' network
/// namespaces (node 2, 3, ...: `rkn<id>-<k>` at 10.253.<subnet>.<k>);
/// removed (with everything inside the namespaces) on drop.
struct Link {
    id: u32,
    subnet: u8,
    nodes: Vec<u8>,
}

impl Link {
    fn bridge(&self) -> String {
        format!("rkl{}", self.id)
    }
    fn netns(&self, node: u8) -> String {
        format!("rkn{}-{node}", self.id)
    }
    fn host_ip(&self) -> String {
        format!("10.253.{}.1", self.subnet)
    }
    fn node_ip(&self, node: u8) -> String {
        format!("10.253.{}.{node}", self.subnet)
    }

    /// The bridge (with the host at .1) and one namespace per node in
    /// `nodes` (2, 3, ...), each with a veth to the bridge.
    fn create(id: u32, nodes: &[u8]) -> Link {
        let link = Link {
            id,
            subnet: (id % 250) as u8,
            nodes: nodes.to_vec(),
        };
        link.teardown();
        let br = link.bridge();
        let host_cidr = format!("{}/24", link.host_ip());
        let mut steps: Vec<Vec<String>> = vec![
            vec![
                "link".into(),
                "add".into(),
                br.clone(),
                "type".into(),
                "bridge".into(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                host_cidr,
                "dev".into(),
                br.clone(),
            ],
            vec!["link".into(), "set".into(), br.clone(), "up".into()],
        ];
        for &k in nodes {
            let ns = link.netns(k);
            let (host_end, node_end) = (format!("rkv{id}-{k}"), format!("rkp{id}-{k}"));
            let cidr = format!("{}/24", link.node_ip(k));
            let words = |w: &str| -> Vec<String> {
                w.split(' ')
                    .map(|x| match x {
                        "NS" => ns.clone(),
                        "HOST" => host_end.clone(),
                        "NODE" => node_end.clone(),
                        "BR" => br.clone(),
                        "CIDR" => cidr.clone(),
                        x => x.to_owned(),
                    })
                    .collect()
            };
            steps.extend([
                words("netns add NS"),
                words("link add HOST type veth peer name NODE"),
                words("link set NODE netns NS"),
                words("link set HOST master BR up"),
                words("-n NS link set lo up"),
                words("-n NS addr add CIDR dev NODE"),
                words("-n NS link set NODE up"),
            ]);
        }
        for args in steps {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        link
    }

    fn teardown(&self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge()])
            .stderr(Stdio::null())
            .status();
        for &k in &self.nodes {
            for args in [
                vec!["netns".to_owned(), "delete".to_owned(), self.netns(k)],
                vec![
                    "link".to_owned(),
                    "delete".to_owned(),
                    format!("rkv{}-{k}", self.id),
                ],
            ] {
                let _ = Command::new("ip")
                    .args(&args)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// A namespaced node: `rkube agent` inside one of the link's namespaces.
struct NsNode {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl NsNode {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            c.wait().ok();
        }
        support::reap_local_node(&self.data_dir);
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        support::reap_local_node(&self.data_dir);
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
        support::reap_local_node(&self.data_dir);
    }
}

fn tool_missing() -> Option<String> {
    for (tool, args) in [
        ("nft", &["list", "tables"][..]),
        ("nsenter", &["--version"][..]),
    ] {
        let ok = Command::new(tool)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Some(format!("{tool} is not usable here"));
        }
    }
    None
}

fn pod(name: &str, node: &str, label: &str, command: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {label}}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:stable
    command: [sh, -c, "{command}"]
    ports: [{{containerPort: 8080}}]
"#
    )
}

fn pod_ip(s: &support::Server, name: &str) -> Option<String> {
    let p = s.json(&["get", "pod", name]);
    (p["status"]["phase"] == "Running")
        .then(|| p["status"]["podIP"].as_str().map(str::to_owned))
        .flatten()
}

/// The last line of one HTTP GET of ip:port from pod `from`, by nc
/// (static busybox's wget crashes in glibc's resolver, even on addresses).
fn connect(s: &support::Server, from: &str, ip: &str, port: u16) -> String {
    let out = s.kubectl(&[
        "exec",
        from,
        "--",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} {port} 2>&1 | tail -n 1"),
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn route(netns: Option<&str>, cidr: &str) -> String {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.args(["route", "show", cidr]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn start_ns_node(
    s: &support::LocalNode,
    link: &Link,
    k: u8,
    dir: &Path,
    cluster_dns: &str,
) -> NsNode {
    let data_dir = dir.join(format!("node{k}"));
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    for f in std::fs::read_dir(s.images()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, images.join(f.file_name().unwrap())).unwrap();
    }
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token")).unwrap();
    let log = dir.join(format!("node{k}.log"));
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", link.netns(k)))
        .arg(env!("CARGO_BIN_EXE_rkube"))
        .arg("agent")
        .arg(format!("--server=https://{}:{}", link.host_ip(), s.port))
        .arg(format!("--token={}", token.trim()))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--node-name=node{k}"))
        .args([
            "--pod-masquerade=false",
            "--kubelet-port=0",
            support::TEST_EVICTION_HARD,
        ])
        .arg(format!("--node-ip={}", link.node_ip(k)))
        .arg(format!("--cni-bridge=rkb{}-{k}", link.id))
        .arg(format!("--cluster-dns={cluster_dns}"))
        .env("RKUBE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rkube agent in the namespace");
    NsNode {
        child: Some(child),
        data_dir,
        log,
    }
}

fn node_ready_range(s: &support::Server, node: &str) -> Option<String> {
    let out = s.kubectl(&["get", "node", node, "-o", "json"]);
    let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let ready = n["status"]["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready.then(|| n["spec"]["podCIDR"].as_str().map(str::to_owned))?
}

#[test]
fn pods_reach_each_other_across_three_nodes() {
    if let Some(why) = tool_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let id = std::process::id() % 100_000;
    if let Some(why) = support::missing_node_prerequisite() {
        eprintln!("skipping: {why}");
        return;
    }
    let link = Link::create(id, &[2, 3]);
    let host_ip = link.host_ip();
    // A /24 per node.
    let cluster_cidr = format!("10.254.{}.0/22", (id % 60) * 4);
    let Some(s) = support::local_node(
        "node1",
        &[
            &format!("--node-ip={host_ip}"),
            &format!("--tls-san={host_ip}"),
            "--bind-address=0.0.0.0",
            &format!("--cluster-cidr={cluster_cidr}"),
        ],
    ) else {
        return;
    };
    let dns_ip = {
        let svc = s.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
        svc["spec"]["clusterIP"].as_str().unwrap().to_owned()
    };
    let scratch = tempfile::tempdir().unwrap();
    let mut node2 = start_ns_node(&s, &link, 2, scratch.path(), &dns_ip);
    let mut node3 = start_ns_node(&s, &link, 3, scratch.path(), &dns_ip);
    let node2_cidr = eventually(120, "node2 Ready with a pod range", || {
        node_ready_range(&s, "node2")
    });
    let node3_cidr = eventually(120, "node3 Ready with a pod range", || {
        node_ready_range(&s, "node3")
    });
    let node1_cidr = s.json(&["get", "node", "node1"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(node1_cidr, node2_cidr);
    assert_ne!(node2_cidr, node3_cidr);
    assert_ne!(node1_cidr, node3_cidr);

    // Each node routes the others' pod ranges via their addresses.
    let (ns2, ns3) = (link.netns(2), link.netns(3));
    let (ip2, ip3) = (link.node_ip(2), link.node_ip(3));
    eventually(30, "host-gw routes on all three nodes", || {
        let want = [
            (None, &node2_cidr, &ip2),
            (None, &node3_cidr, &ip3),
            (Some(ns2.as_str()), &node1_cidr, &host_ip),
            (Some(ns2.as_str()), &node3_cidr, &ip3),
            (Some(ns3.as_str()), &node1_cidr, &host_ip),
            (Some(ns3.as_str()), &node2_cidr, &ip2),
        ];
        want.iter()
            .all(|(ns, cidr, via)| route(*ns, cidr).contains(&format!("via {via}")))
            .then_some(())
    });

    let serve =
        "mkdir -p /www && echo from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";
    let names = ["web1", "web2", "web3", "client1", "client2", "client3"];
    let objects = [
        pod("web1", "node1", "web1", serve),
        pod("web2", "node2", "web2", serve),
        pod("web3", "node3", "web3", serve),
        pod("client1", "node1", "client", "exec sleep 3600"),
        pod("client2", "node2", "client", "exec sleep 3600"),
        pod("client3", "node3", "client", "exec sleep 3600"),
    ]
    .join("---\n")
        + r#"---
apiVersion: v1
kind: Service
metadata: {name: web2}
spec:
  selector: {app: web2}
  ports: [{port: 80, targetPort: 8080}]
"#;
    s.ok_stdin(&["apply", "-f", "-"], &objects);
    let ips = eventually(120, "all six pods running", || {
        let ips: Vec<String> = names.iter().map(|p| pod_ip(&s, p)).collect::<Option<_>>()?;
        Some(ips)
    });
    let in_range = |ip: &str, cidr: &str| {
        let prefix = cidr.rsplit_once('.').unwrap().0;
        ip.starts_with(&format!("{prefix}."))
    };
    for (ip, cidr, log) in [
        (&ips[0], &node1_cidr, String::new()),
        (&ips[1], &node2_cidr, node2.log()),
        (&ips[2], &node3_cidr, node3.log()),
    ] {
        assert!(in_range(ip, cidr), "{ip} not in {cidr}:\n{log}");
    }

    // Pod to pod, every client to every server: on the same node, across
    // host <-> namespace, and between the two namespaced nodes.
    for from in ["client1", "client2", "client3"] {
        for (k, web) in ["web1", "web2", "web3"].iter().enumerate() {
            let ip = &ips[k];
            let want = format!("from-{web}");
            eventually(30, &format!("{from} -> {web} ({ip})"), || {
                let got = connect(&s, from, ip, 8080);
                eprintln!("{from} -> {ip}: {got:?}");
                (got == want).then_some(())
            });
        }
    }

    // A ClusterIP on node1 and node3 reaches the endpoint on node2; pods on
    // the namespaced nodes resolve the Service through cluster DNS
    // (served on node1).
    let cluster_ip = s.json(&["get", "service", "web2"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    for from in ["client1", "client3"] {
        eventually(30, &format!("{from} -> web2's ClusterIP"), || {
            (connect(&s, from, &cluster_ip, 80) == "from-web2").then_some(())
        });
    }
    for from in ["client2", "client3"] {
        eventually(30, &format!("{from} resolves web2"), || {
            let out = s.kubectl(&[
                "exec",
                from,
                "--",
                "nslookup",
                "web2.default.svc.cluster.local",
            ]);
            let want = format!("Address: {cluster_ip}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == want)
                .then_some(())
        });
    }
    // Logs stream from a namespaced node's agent through the API server.
    let logs = s.ok(&["logs", "web3"]);
    assert!(logs.is_empty() || !logs.contains("error"), "{logs}");

    // node2 goes: its pods are deleted, the node object is deleted, and
    // the other nodes drop their routes to its range.
    s.ok(&[
        "delete",
        "pod",
        "web2",
        "client2",
        "--grace-period=1",
        "--timeout=60s",
    ]);
    node2.stop();
    s.ok(&["delete", "node", "node2"]);
    eventually(
        30,
        "node1's and node3's routes to node2's range removed",
        || {
            (route(None, &node2_cidr).is_empty() && route(Some(&ns3), &node2_cidr).is_empty())
                .then_some(())
        },
    );
    // node3 keeps working with node1.
    eventually(30, "client3 -> web1 after node2 left", || {
        (connect(&s, "client3", &ips[0], 8080) == "from-web1").then_some(())
    });
    node3.stop();
}
