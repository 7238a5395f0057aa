//! Two real nodes on one machine: the server's local node in the host's
//! network namespace and a second `rkube agent` (with its own containerd)
//! in a network namespace this test creates, joined by a veth to a bridge
//! the test also creates (the nodes' link). Pods on either node reach pods
//! on the other through the host-gw routes (`net::routes`), a Service's
//! ClusterIP from one node reaches its endpoint on the other, and cluster
//! DNS answers pods on the second node. Every address involved lives on
//! that link or inside the two nodes; nothing is routed off the machine.
//! Skipped, with the reason printed, where containerd, nft or nsenter
//! cannot run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::eventually;

/// The link between the nodes and the second node's network namespace;
/// removed (with everything inside the namespace) on drop.
struct Link {
    id: u32,
    subnet: u8,
}

impl Link {
    fn bridge(&self) -> String {
        format!("rkl{}", self.id)
    }
    fn netns(&self) -> String {
        format!("rkn{}", self.id)
    }
    fn host_ip(&self) -> String {
        format!("10.253.{}.1", self.subnet)
    }
    fn node2_ip(&self) -> String {
        format!("10.253.{}.2", self.subnet)
    }

    fn create(id: u32) -> Link {
        let link = Link {
            id,
            subnet: (id % 250) as u8,
        };
        link.teardown();
        let (br, ns) = (link.bridge(), link.netns());
        let (host_end, node_end) = (format!("rkv{id}"), format!("rkp{id}"));
        let host_cidr = format!("{}/24", link.host_ip());
        let node2_cidr = format!("{}/24", link.node2_ip());
        let steps: Vec<Vec<&str>> = vec![
            vec!["link", "add", &br, "type", "bridge"],
            vec!["addr", "add", &host_cidr, "dev", &br],
            vec!["link", "set", &br, "up"],
            vec!["netns", "add", &ns],
            vec![
                "link", "add", &host_end, "type", "veth", "peer", "name", &node_end,
            ],
            vec!["link", "set", &node_end, "netns", &ns],
            vec!["link", "set", &host_end, "master", &br, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
            vec!["-n", &ns, "addr", "add", &node2_cidr, "dev", &node_end],
            vec!["-n", &ns, "link", "set", &node_end, "up"],
        ];
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
        for args in [
            vec!["netns", "delete", &self.netns()],
            vec!["link", "delete", &self.bridge()],
            vec!["link", "delete", &format!("rkv{}", self.id)],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The second node: `rkube agent` inside the link's namespace.
struct SecondNode {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl SecondNode {
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

impl Drop for SecondNode {
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
    image: busybox
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

fn start_second_node(
    s: &support::LocalNode,
    link: &Link,
    dir: &Path,
    cluster_dns: &str,
) -> SecondNode {
    let data_dir = dir.join("node2");
    let images = data_dir.join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    for f in std::fs::read_dir(s.images()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, images.join(f.file_name().unwrap())).unwrap();
    }
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token")).unwrap();
    let log = dir.join("node2.log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", link.netns()))
        .arg(env!("CARGO_BIN_EXE_rkube"))
        .arg("agent")
        .arg(format!("--server=https://{}:{}", link.host_ip(), s.port))
        .arg(format!("--token={}", token.trim()))
        .arg(format!("--data-dir={}", data_dir.display()))
        .args([
            "--node-name=node2",
            "--pod-masquerade=false",
            "--kubelet-port=0",
        ])
        .arg(format!("--node-ip={}", link.node2_ip()))
        .arg(format!("--cni-bridge=rkb{}", link.id))
        .arg(format!("--cluster-dns={cluster_dns}"))
        .env("RKUBE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start rkube agent in the namespace");
    SecondNode {
        child: Some(child),
        data_dir,
        log,
    }
}

#[test]
fn pods_reach_each_other_across_two_nodes() {
    if let Some(why) = tool_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let id = std::process::id() % 100_000;
    if support::missing_node_prerequisite().is_some() {
        eprintln!(
            "skipping: {}",
            support::missing_node_prerequisite().unwrap()
        );
        return;
    }
    let link = Link::create(id);
    let host_ip = link.host_ip();
    let cluster_cidr = format!("10.254.{}.0/23", (id % 120) * 2);
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
    let mut node2 = start_second_node(&s, &link, scratch.path(), &dns_ip);
    let node2_cidr = eventually(120, "node2 Ready with a pod range", || {
        let out = s.kubectl(&["get", "node", "node2", "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then(|| n["spec"]["podCIDR"].as_str().map(str::to_owned))?
    });
    let node1_cidr = s.json(&["get", "node", "node1"])["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(node1_cidr, node2_cidr);

    // Each node routes the other's pod range via the other's address.
    eventually(30, "host-gw routes on both nodes", || {
        let on_host = route(None, &node2_cidr);
        let on_node2 = route(Some(&link.netns()), &node1_cidr);
        (on_host.contains(&format!("via {}", link.node2_ip()))
            && on_node2.contains(&format!("via {host_ip}")))
        .then_some(())
    });

    let serve =
        "mkdir -p /www && echo from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www";
    let objects = [
        pod("web1", "node1", "web1", serve),
        pod("web2", "node2", "web2", serve),
        pod("client1", "node1", "client", "exec sleep 3600"),
        pod("client2", "node2", "client", "exec sleep 3600"),
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
    let ips = eventually(120, "all four pods running", || {
        let ips: Vec<String> = ["web1", "web2", "client1", "client2"]
            .iter()
            .map(|p| pod_ip(&s, p))
            .collect::<Option<_>>()?;
        Some(ips)
    });
    let log2 = node2.log();
    let (web1, web2) = (&ips[0], &ips[1]);
    let in_range = |ip: &str, cidr: &str| {
        let prefix = cidr.rsplit_once('.').unwrap().0;
        ip.starts_with(&format!("{prefix}."))
    };
    assert!(in_range(web1, &node1_cidr), "{web1} not in {node1_cidr}");
    assert!(
        in_range(web2, &node2_cidr),
        "{web2} not in {node2_cidr}:\n{log2}"
    );

    // Pod to pod, both ways across the link, and on the same node.
    for (from, ip, want) in [
        ("client1", web1, "from-web1"),
        ("client2", web2, "from-web2"),
        ("client1", web2, "from-web2"),
        ("client2", web1, "from-web1"),
    ] {
        eventually(30, &format!("{from} -> {ip}"), || {
            let got = connect(&s, from, ip, 8080);
            eprintln!("{from} -> {ip}: {got:?}");
            (got == want).then_some(())
        });
    }

    // A ClusterIP on node1 reaches the endpoint on node2; a pod on node2
    // resolves the Service through cluster DNS (served on node1).
    let cluster_ip = s.json(&["get", "service", "web2"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(30, "client1 -> web2's ClusterIP", || {
        (connect(&s, "client1", &cluster_ip, 80) == "from-web2").then_some(())
    });
    eventually(30, "client2 resolves web2", || {
        let out = s.kubectl(&[
            "exec",
            "client2",
            "--",
            "nslookup",
            "web2.default.svc.cluster.local",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("Address: {cluster_ip}"))
            .then_some(())
    });
    // Logs stream from the second node's agent through the API server.
    let logs = s.ok(&["logs", "web2"]);
    assert!(logs.is_empty() || !logs.contains("error"), "{logs}");

    // The second node goes: its pods are deleted, the node object is
    // deleted, and node1 drops the route to its range.
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
    eventually(30, "node1's route to node2's range removed", || {
        route(None, &node2_cidr).is_empty().then_some(())
    });
}
