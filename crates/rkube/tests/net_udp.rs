//! UDP Services on a real local node (containerd, nft, the kernel's
//! conntrack): a host client that keeps one socket, so one 5-tuple, must
//! follow the Service when its endpoint changes (through the ClusterIP and
//! through the NodePort on the node's address), and must not stay stuck
//! on a flow that reached a service address before any rule covered it.
//! Both need the proxy to clear stale conntrack entries, as kube-proxy
//! does: without that the kernel keeps sending the flow where its first
//! packet went for as long as the client keeps talking. Skipped, with the
//! reason printed, where containerd, nft or a C compiler (for the test
//! image's UDP responder) is missing.

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use support::eventually;

/// Two pods answering UDP datagrams on 5353 with their name, and a
/// NodePort Service in front of the first.
fn objects(node_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: udp-a, labels: {{app: udp-a}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: udp, image: busybox:stable, command: [serve-hostname-udp, "5353"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: udp-b, labels: {{app: udp-b}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: udp, image: busybox:stable, command: [serve-hostname-udp, "5353"]}}
---
apiVersion: v1
kind: Service
metadata: {{name: udp}}
spec:
  type: NodePort
  selector: {{app: udp-a}}
  ports: [{{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: {node_port}}}]
"#
    )
}

/// One datagram on `sock` (connected): the answer, or the error.
fn ask(sock: &UdpSocket) -> Result<String, ErrorKind> {
    sock.send(b"who").map_err(|e| e.kind())?;
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).map_err(|e| e.kind())?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
}

fn client(to: SocketAddr) -> UdpSocket {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.connect(to).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock
}

/// The addresses of the Service's ready endpoints.
fn endpoints(s: &support::Server, service: &str) -> Vec<String> {
    let slices = s.json(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={service}"),
    ]);
    let mut out: Vec<String> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

fn pod_ip(s: &support::Server, pod: &str) -> Option<String> {
    let p = s.json(&["get", "pod", pod]);
    (p["status"]["phase"] == "Running")
        .then(|| p["status"]["podIP"].as_str().map(str::to_owned))
        .flatten()
}

/// Whether the proxy's table sends `ip`:`port`/udp somewhere.
fn programmed(s: &support::Server, ip: &str, port: u16) -> bool {
    let out = Command::new("nft")
        .args([
            "list",
            "map",
            "ip",
            &format!("rk{}-proxy", s.port),
            "service-ips",
        ])
        .output()
        .unwrap();
    let want = format!("{ip} . udp . {port} ");
    String::from_utf8_lossy(&out.stdout).contains(&want)
}

/// A host route sending one address to the test's pod bridge (so what
/// goes there un-NATed stays on this machine), removed on drop.
struct Route(String, String);

impl Route {
    fn add(ip: Ipv4Addr, dev: String) -> Route {
        let r = Route(format!("{ip}/32"), dev);
        let out = Command::new("ip")
            .args(["route", "replace", &r.0, "dev", &r.1])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        r
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["route", "del", &self.0, "dev", &self.1])
            .status();
    }
}

#[test]
fn udp_flows_follow_the_service_when_endpoints_change() {
    if !support::nft_usable() {
        eprintln!("skipping: nft is not usable here");
        return;
    }
    if !Command::new("sh")
        .args(["-c", "command -v cc"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: no C compiler for the test image's serve-hostname-udp");
        return;
    }
    let Some(s) = support::local_node("udp-node", &[]) else {
        return;
    };
    let node_port = s.node_port();
    s.ok_stdin(&["apply", "-f", "-"], &objects(node_port));
    let (a_ip, b_ip) = eventually(90, "both UDP pods running", || {
        Some((pod_ip(&s, "udp-a")?, pod_ip(&s, "udp-b")?))
    });
    eventually(30, "pod A the Service's endpoint", || {
        (endpoints(&s, "udp") == [a_ip.clone()]).then_some(())
    });
    let svc = s.json(&["get", "service", "udp"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    // Only send once the rules are there: a datagram sent earlier would
    // leave by the default route.
    eventually(30, "the Service programmed", || {
        programmed(&s, &cluster_ip, 53).then_some(())
    });

    let node_ip = s.node_internal_ip("udp-node");

    // One client socket, one source port, for the whole test; and one
    // for the NodePort on the node's address.
    let sock = client(format!("{cluster_ip}:53").parse().unwrap());
    let np = client(format!("{node_ip}:{node_port}").parse().unwrap());
    eventually(
        30,
        "pod A answering through the ClusterIP and the NodePort",
        || (ask(&sock) == Ok("udp-a".into()) && ask(&np) == Ok("udp-a".into())).then_some(()),
    );

    // The Service moves to pod B. Pod A still answers whatever reaches
    // it, so only a cleared conntrack entry moves this flow.
    s.ok(&[
        "patch",
        "service",
        "udp",
        "-p",
        r#"{"spec":{"selector":{"app":"udp-b"}}}"#,
    ]);
    eventually(30, "pod B the Service's endpoint", || {
        (endpoints(&s, "udp") == [b_ip.clone()]).then_some(())
    });
    let mut answers = Vec::new();
    eventually(30, "pod B answering the same socket", || {
        let got = ask(&sock);
        answers.push(got.clone());
        (got == Ok("udp-b".into())).then_some(())
    });
    assert!(
        answers
            .iter()
            .all(|a| matches!(a.as_deref(), Ok("udp-a" | "udp-b") | Err(_))),
        "{answers:?}"
    );
    for _ in 0..5 {
        assert_eq!(ask(&sock), Ok("udp-b".into()));
    }
    eventually(30, "pod B answering the same NodePort socket", || {
        (ask(&np) == Ok("udp-b".into())).then_some(())
    });

    // A flow that reached a service address before the Service existed:
    // its entry was never DNATed. Route the address to the pod bridge so
    // those datagrams stay here (and go nowhere).
    let cidr = s.service_cidr();
    let base: Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
    let taken = s.json(&["get", "services", "--all-namespaces"]);
    let taken: Vec<&str> = taken["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|svc| svc["spec"]["clusterIP"].as_str())
        .collect();
    let early_ip = (20..30)
        .map(|i| Ipv4Addr::from(u32::from(base) + i))
        .find(|ip| !taken.contains(&ip.to_string().as_str()))
        .unwrap();
    let _route = Route::add(early_ip, format!("rk{}", s.port));
    let early = client(SocketAddr::from((early_ip, 53)));
    let early_port = early.local_addr().unwrap().port();
    let _ = ask(&early);
    let mut ct = net::proxy::conntrack::netlink::Socket::open().unwrap();
    let entry = eventually(10, "the un-NATed entry of the early flow", || {
        ct.dump()
            .unwrap()
            .into_iter()
            .find(|e| e.proto == 17 && e.sport == early_port && e.dst == early_ip)
    });
    assert_eq!(entry.reply_src, early_ip, "{entry:?}");

    // The Service appears with no endpoints: the early flow is refused
    // (the datagrams of a UDP flow never answered count as new for the
    // reject rule, whether or not its entry was cleared).
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: early}}
spec:
  clusterIP: {early_ip}
  selector: {{app: nothing}}
  ports: [{{name: dns, port: 53, protocol: UDP, targetPort: 5353}}]
"#
        ),
    );
    eventually(
        30,
        "the early flow refused while there are no endpoints",
        || (ask(&early) == Err(ErrorKind::ConnectionRefused)).then_some(()),
    );
    // From no endpoints to one: the flow reaches it, which it does only
    // once its un-NATed entry is gone (NAT is decided once per entry).
    s.ok(&[
        "patch",
        "service",
        "early",
        "-p",
        r#"{"spec":{"selector":{"app":"udp-b"}}}"#,
    ]);
    eventually(30, "pod B answering the early flow", || {
        (ask(&early) == Ok("udp-b".into())).then_some(())
    });
    assert_eq!(early.local_addr().unwrap().port(), early_port);
}
