//! NetworkPolicy enforcement (`net::netpol`, nftables) on a real local
//! node, driven by kubectl: a server pod and clients in two namespaces;
//! default-deny ingress, pod-, namespace- and port-based allowances
//! (named port, port range), egress default-deny and ipBlock with except;
//! the node itself always reaches its pods; deleting the policies, and
//! stopping the server, lifts the isolation. Skipped, with the reason
//! printed, where containerd or nft cannot run.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::eventually;

/// A pod answering `ok<port>` on each of `ports` (busybox nc; its last
/// listener in the foreground).
fn listener(ns: &str, name: &str, labels: &str, ports: &[u16]) -> String {
    let mut cmd = String::new();
    for (i, p) in ports.iter().enumerate() {
        let exec = if i + 1 == ports.len() { "exec " } else { "" };
        let bg = if i + 1 == ports.len() { "" } else { " &" };
        cmd.push_str(&format!("{exec}nc -ll -p {p} -e echo ok{p}{bg}\n"));
    }
    let port_list: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = if i == 0 {
                "http".to_owned()
            } else {
                format!("p{p}")
            };
            format!("{{name: {name}, containerPort: {p}}}")
        })
        .collect();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:stable
    command: [sh, -c, {cmd:?}]
    ports: [{ports}]
---
"#,
        ports = port_list.join(", ")
    )
}

fn objects() -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: other, labels: {team: x}}\n---\n",
    );
    out.push_str(&listener("default", "server", "app: web", &[8080, 9090]));
    out.push_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
         spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}\n---\n",
    );
    out.push_str(&listener("default", "client-a", "role: client", &[7070]));
    out.push_str(&listener("default", "client-b", "role: other", &[7070]));
    out.push_str(&listener("other", "client-c", "role: client", &[7070]));
    out
}

/// Whether `pod` (in `ns`) gets an `ok<port>` answer from `ip:port`
/// within nc's 2-second connect timeout.
fn connects(s: &support::Server, ns: &str, pod: &str, ip: &str, port: u16) -> bool {
    let script = format!("nc -w 2 {ip} {port} </dev/null 2>&1");
    let out = s.kubectl(&["exec", "-n", ns, pod, "--", "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().any(|l| l.starts_with("ok"))
}

/// Waits until every (namespace, pod, ip, port, expected) holds at once.
fn expect(s: &support::Server, what: &str, cases: &[(&str, &str, &str, u16, bool)]) {
    eventually(60, what, || {
        let got: Vec<bool> = cases
            .iter()
            .map(|(ns, pod, ip, port, _)| connects(s, ns, pod, ip, *port))
            .collect();
        let want: Vec<bool> = cases.iter().map(|c| c.4).collect();
        if got != want {
            eprintln!("{what}: got {got:?}, want {want:?}");
        }
        (got == want).then_some(())
    });
}

/// One connection from the host to the pod: its answer.
fn from_host(ip: &str, port: u16) -> Option<String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.trim().to_owned())
}

fn pod_ip(s: &support::Server, ns: &str, name: &str) -> String {
    s.json(&["get", "pod", "-n", ns, name])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn table_exists(family: &str, table: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", family, table])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn network_policies_isolate_pods_and_allow_what_they_say() {
    if !support::nft_usable() {
        eprintln!("skipping: nft is not usable here");
        return;
    }
    let Some(mut s) = support::local_node("policy-node", &[]) else {
        return;
    };
    s.ok_stdin(&["apply", "-f", "-"], &objects());
    eventually(90, "four running pods", || {
        let pods = s.json(&["get", "pods", "-A"]);
        let items = pods["items"].as_array()?;
        (items.len() == 4 && items.iter().all(|p| p["status"]["phase"] == "Running")).then_some(())
    });
    let server = pod_ip(&s, "default", "server");
    let b = pod_ip(&s, "default", "client-b");
    let srv = server.as_str();
    let svc = s.json(&["get", "service", "web"])["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let svc = svc.as_str();
    let table = format!("rk{}-policy", s.port);

    // No policy: everyone reaches the server on both ports.
    expect(
        &s,
        "open before any policy",
        &[
            ("default", "client-a", srv, 8080, true),
            ("default", "client-b", srv, 8080, true),
            ("other", "client-c", srv, 8080, true),
            ("default", "client-a", srv, 9090, true),
            ("default", "client-b", svc, 80, true),
        ],
    );

    // Default-deny ingress for the server: no client gets in; the node
    // itself still does.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
"#,
    );
    expect(
        &s,
        "all clients denied",
        &[
            ("default", "client-a", srv, 8080, false),
            ("default", "client-b", srv, 8080, false),
            ("other", "client-c", srv, 8080, false),
            ("default", "client-a", svc, 80, false),
        ],
    );
    assert_eq!(from_host(srv, 8080).as_deref(), Some("ok8080"));
    assert!(table_exists("ip", &table), "no table ip {table}");

    // Allowed: role=client pods of the policy's namespace on the named
    // port http (8080); not other pods, ports or namespaces. And
    // role=client pods of team=x namespaces on 9000-9100.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-clients, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: http}]
  - from:
    - namespaceSelector: {matchLabels: {team: x}}
      podSelector: {matchLabels: {role: client}}
    ports: [{protocol: TCP, port: 9000, endPort: 9100}]
"#,
    );
    expect(
        &s,
        "role=client in default on http, team=x clients on 9000-9100",
        &[
            ("default", "client-a", srv, 8080, true),
            ("default", "client-a", srv, 9090, false),
            ("default", "client-b", srv, 8080, false),
            ("other", "client-c", srv, 8080, false),
            ("other", "client-c", srv, 9090, true),
            // Through the Service's ClusterIP, judged on the real
            // addresses (after the proxy's DNAT).
            ("default", "client-a", svc, 80, true),
            ("default", "client-b", svc, 80, false),
        ],
    );
    // Pods no policy selects are untouched.
    assert!(connects(&s, "other", "client-c", &b, 7070));

    // Without policies everything is open again.
    s.ok(&["delete", "networkpolicy", "--all"]);
    expect(
        &s,
        "open after deleting the policies",
        &[
            ("default", "client-a", srv, 8080, true),
            ("default", "client-b", srv, 8080, true),
            ("other", "client-c", srv, 9090, true),
        ],
    );

    // Egress default-deny for role=client in default: client-a reaches
    // nothing, client-b (not selected) still does; replies of allowed
    // connections are not egress.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-out, namespace: default}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
"#,
    );
    expect(
        &s,
        "client-a's egress denied",
        &[
            ("default", "client-a", srv, 8080, false),
            ("default", "client-a", &b, 7070, false),
            ("default", "client-b", srv, 8080, true),
            (
                "other",
                "client-c",
                &pod_ip(&s, "default", "client-a"),
                7070,
                true,
            ),
        ],
    );

    // ipBlock: the pod range except the server.
    let cidr = s.pod_cidr();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-range, namespace: default}}
spec:
  podSelector: {{matchLabels: {{role: client}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: "{cidr}", except: ["{server}/32"]}}}}]
"#
        ),
    );
    expect(
        &s,
        "client-a reaches the range but not the excepted server",
        &[
            ("default", "client-a", &b, 7070, true),
            ("default", "client-a", srv, 8080, false),
        ],
    );

    // A clean stop removes the tables.
    s.ok(&["delete", "networkpolicy", "--all"]);
    s.ok(&[
        "delete",
        "pods",
        "--all",
        "--all-namespaces",
        "--grace-period=1",
        "--timeout=60s",
    ]);
    s.stop(false);
    assert!(!table_exists("ip", &table), "table ip {table} left behind");
    assert!(
        !table_exists("bridge", &table),
        "table bridge {table} left behind"
    );
}
