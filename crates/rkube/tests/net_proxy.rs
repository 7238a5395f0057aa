//! The service proxy (`net::proxy`, nftables) and cluster DNS on a real
//! local node: a Deployment of busybox httpd pods behind a Service,
//! resolved by cluster DNS and reached from a client pod by ClusterIP, from the host by
//! ClusterIP and NodePort, and a pod's hostPort; readiness, session affinity and scaling to zero
//! change where (and whether) connections go; a StatefulSet's pods
//! resolve each other by their stable names. Skipped, with the reason
//! printed, where containerd or nft cannot run.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::eventually;

/// Two httpd pods answering with their own name; ready while /tmp/ready
/// exists.
fn objects(node_port: u16, host_port: u16) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:stable
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          exec: {{command: [test, -f, /tmp/ready]}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http, nodePort: {node_port}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: busybox:stable
    command: [sh, -c, "mkdir -p /www && echo hostport-client > /www/index.html && httpd -p 8081 -h /www && exec sleep 3600"]
    ports: [{{containerPort: 8081, hostPort: {host_port}}}]
"#
    )
}

/// One GET from the host: the body, or None.
fn get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.trim().to_owned())
}

/// `n` HTTP requests from the client pod to `ip` port 80 with nc: each
/// answer's last line (a pod name), or the error nc printed. (Static
/// busybox's wget crashes in glibc's resolver, even on an address.)
fn from_client(s: &support::Server, ip: &str, n: usize) -> Vec<String> {
    let script = format!(
        "for i in $(seq {n}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {ip} 80 2>&1 | tail -n 1; done"
    );
    let out = s.kubectl(&["exec", "client", "--", "sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn web_pods(s: &support::Server) -> Vec<String> {
    let list = s.json(&["get", "pods", "-l", "app=web"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

fn ready_endpoints(s: &support::Server) -> usize {
    let slices = s.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .count()
}

#[test]
fn services_reach_ready_pods_by_dns_cluster_ip_and_node_port() {
    if !support::nft_usable() {
        eprintln!("skipping: nft is not usable here");
        return;
    }
    let Some(s) = support::local_node("proxy-node", &[]) else {
        return;
    };
    let node_port = s.node_port();
    // A hostPort outside the NodePort range, unique per test server.
    let host_port = 20000 + s.port % 9000;
    s.ok_stdin(&["apply", "-f", "-"], &objects(node_port, host_port));
    eventually(90, "two ready endpoints and a running client", || {
        let client = s.json(&["get", "pod", "client"]);
        (ready_endpoints(&s) == 2 && client["status"]["phase"] == "Running").then_some(())
    });
    let pods: BTreeSet<String> = web_pods(&s).into_iter().collect();
    assert_eq!(pods.len(), 2);

    // The cluster DNS service exists (in the test's service range) and
    // answers the client pod's queries through its ClusterIP. (Static
    // busybox's wget crashes in glibc's resolver; nslookup has its own.)
    let dns = s.json(&["get", "service", "kube-dns", "-n", "kube-system"]);
    assert!(
        dns["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("100."),
        "{dns}"
    );
    let svc = s.json(&["get", "service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    // The client reaches the Deployment through the ClusterIP; over many
    // requests, every ready backend.
    let url = cluster_ip.clone();
    let mut seen = BTreeSet::new();
    eventually(60, "both backends through the ClusterIP", || {
        seen.extend(from_client(&s, &url, 10));
        pods.is_subset(&seen).then_some(())
    });
    assert!(seen.is_subset(&pods), "unexpected answers: {seen:?}");

    eventually(60, "the service name resolved in the client pod", || {
        let out = s.kubectl(&[
            "exec",
            "client",
            "--",
            "nslookup",
            "web.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("nslookup: {text} {}", String::from_utf8_lossy(&out.stderr));
        text.contains(&format!("Address: {cluster_ip}"))
            .then_some(())
    });

    // The API server's proxy subresources reach the pods: through the
    // Service (by port name or number) and straight to a pod (by number
    // or container port name).
    for id in ["web:http", "http:web:80"] {
        let got = s.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/default/services/{id}/proxy/"),
        ]);
        assert!(pods.contains(got.trim()), "{id}: {got:?}");
    }
    for pod in &pods {
        for port in ["8080", "http"] {
            let got = s.ok(&[
                "get",
                "--raw",
                &format!("/api/v1/namespaces/default/pods/{pod}:{port}/proxy/index.html"),
            ]);
            assert_eq!(got.trim(), pod);
        }
    }
    let err = String::from_utf8_lossy(
        &s.kubectl(&[
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:nope/proxy/",
        ])
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains("ServiceUnavailable") || err.contains("503"),
        "{err}"
    );

    // From the host: the ClusterIP and the NodePort on the node's address.
    let host_seen: BTreeSet<String> = (0..20)
        .filter_map(|_| get(format!("{cluster_ip}:80").parse().unwrap()))
        .collect();
    assert!(
        !host_seen.is_empty() && host_seen.is_subset(&pods),
        "{host_seen:?}"
    );
    let node_ip = s.node_internal_ip("proxy-node");
    let via_node_port = eventually(20, "an answer on the NodePort", || {
        get(format!("{node_ip}:{node_port}").parse().unwrap())
    });
    assert!(pods.contains(&via_node_port), "{via_node_port}");
    // The client pod's hostPort forwards the node's port to it.
    let via_host_port = eventually(20, "an answer on the hostPort", || {
        get(format!("{node_ip}:{host_port}").parse().unwrap())
    });
    assert_eq!(via_host_port, "hostport-client");

    // An unready pod stops receiving traffic.
    let (a, b) = {
        let mut it = pods.iter();
        (it.next().unwrap().clone(), it.next().unwrap().clone())
    };
    s.ok(&["exec", &a, "--", "rm", "/tmp/ready"]);
    eventually(30, "one ready endpoint", || {
        (ready_endpoints(&s) == 1).then_some(())
    });
    eventually(10, "only the ready backend answers", || {
        let got = from_client(&s, &url, 10);
        (got.len() == 10 && got.iter().all(|g| *g == b)).then_some(())
    });

    // Session affinity: with both ready again, one client sticks to one.
    s.ok(&["exec", &a, "--", "touch", "/tmp/ready"]);
    s.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ]);
    eventually(30, "two ready endpoints again", || {
        (ready_endpoints(&s) == 2).then_some(())
    });
    eventually(20, "a sticky backend", || {
        let got = from_client(&s, &url, 12);
        (got.len() == 12 && got.iter().all(|g| *g == got[0]) && pods.contains(&got[0]))
            .then_some(())
    });

    // No endpoints: connections are refused, not left to time out.
    s.ok(&["scale", "deployment", "web", "--replicas=0"]);
    eventually(60, "refused with no endpoints", || {
        let got = from_client(&s, &url, 1);
        got.iter()
            .any(|l| l.contains("Connection refused"))
            .then_some(())
    });
}

#[test]
fn statefulset_pods_resolve_their_peers_by_stable_name() {
    if !support::nft_usable() {
        eprintln!("skipping: nft is not usable here");
        return;
    }
    let Some(s) = support::local_node("sts-node", &[]) else {
        return;
    };
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: busybox:stable
        command: [sleep, "3600"]
"#,
    );
    let ips = eventually(120, "both StatefulSet pods running", || {
        let ips: Vec<String> = ["db-0", "db-1"]
            .iter()
            .map(|p| {
                // Not created yet by the controller: not found, try again.
                let out = s.kubectl(&["get", "pod", p, "-o", "json"]);
                let pod: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                (pod["status"]["phase"] == "Running")
                    .then(|| pod["status"]["podIP"].as_str().map(str::to_owned))
                    .flatten()
            })
            .collect::<Option<_>>()?;
        Some(ips)
    });
    // Each pod finds the other by <pod>.<service> through cluster DNS.
    for (from, peer, ip) in [("db-0", "db-1", &ips[1]), ("db-1", "db-0", &ips[0])] {
        eventually(60, &format!("{from} resolves {peer}"), || {
            let out = s.kubectl(&[
                "exec",
                from,
                "--",
                "nslookup",
                &format!("{peer}.db.default.svc.cluster.local"),
            ]);
            let want = format!("Address: {ip}");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == want)
                .then_some(())
        });
    }
}
