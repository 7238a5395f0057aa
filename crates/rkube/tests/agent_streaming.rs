//! `kubectl logs`, `exec`, `attach`, `port-forward` and `cp` through the
//! API server to the local node's agent and containerd's stream server,
//! with the real kubectl. Skipped, with the reason printed, where
//! containerd cannot run.

mod support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{eventually, Server};

fn start() -> Option<support::LocalNode> {
    support::local_node("stream-node", &[])
}

fn running(s: &Server, pod: &str) -> serde_json::Value {
    eventually(60, &format!("{pod} Running"), || {
        let p = s.json(&["get", "pod", pod]);
        (p["status"]["phase"] == "Running").then_some(p)
    })
}

/// Runs a pod of busybox containers that sleep — (name, seconds, more of
/// the container's YAML) each — with more spec lines (`key: value`), and
/// waits for it to run.
fn run_sleepers(
    s: &Server,
    pod: &str,
    spec: &[&str],
    containers: &[(&str, u32, &str)],
) -> serde_json::Value {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  terminationGracePeriodSeconds: 1\n"
    );
    for line in spec {
        yaml.push_str(&format!("  {line}\n"));
    }
    yaml.push_str("  containers:\n");
    for (name, secs, more) in containers {
        yaml.push_str(&format!(
            "  - name: {name}\n    image: busybox:stable\n    command: [sleep, \"{secs}\"]\n"
        ));
        if !more.is_empty() {
            yaml.push_str(&format!("    {more}\n"));
        }
    }
    s.ok_stdin(&["apply", "-f", "-"], &yaml);
    running(s, pod)
}

/// Runs a kubectl command with a time limit; (exit code, stdout, stderr).
fn kubectl_bounded(s: &Server, args: &[&str], stdin: &str, secs: u64) -> (i32, String, String) {
    let mut child = s
        .kubectl_cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut guard = guard;
    let status = loop {
        if let Some(st) = guard.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} did not finish in {secs}s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    guard
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    guard
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

/// Kills a child process (kubectl port-forward, logs -f) when dropped.
struct KillOnDrop(Child);

/// Types `line` into a running kubectl's stdin (again each second, up to
/// 30 times: the first may go before its stream is up) until `answer`
/// shows on its stdout; whether it did. The kubectl is killed after.
fn typed_until_answered(mut child: Child, line: &[u8], answer: &'static [u8]) -> bool {
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let _child = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(answer.len()).any(|w| w == answer) {
                let _ = tx.send(());
                break;
            }
        }
    });
    (0..30)
        .any(|_| input.write_all(line).is_ok() && rx.recv_timeout(Duration::from_secs(1)).is_ok())
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  containers:
  - name: a
    image: busybox:stable
    command: [sh, -c, "echo a1; echo a2; echo a3; sleep 1; echo a4 >&2; sleep 3600"]
  - name: b
    image: busybox:stable
    command: [sh, -c, "echo b1; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: c
    image: busybox:stable
    command: [sh, -c, "echo run-$(date +%s%N); sleep 2; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {no-such-label: "true"}
  containers:
  - name: c
    image: busybox:stable
---
apiVersion: v1
kind: Pod
metadata: {name: noimage}
spec:
  containers:
  - name: c
    image: rkube.local/no-such-image:1
"#;

#[test]
fn kubectl_logs() {
    let Some(s) = start() else { return };
    s.ok_stdin(&["apply", "-f", "-"], PODS);
    running(&s, "two");
    let mut last = String::new();
    for _ in 0..100 {
        let out = s.kubectl(&["logs", "two", "-c", "a"]);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if last.starts_with("a1\na2\na3\na4\n") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(last.starts_with("a1\na2\na3\na4\n"), "{last}");
    // Plain, one container of several, stdout and stderr together.
    assert_eq!(s.ok(&["logs", "two", "-c", "a"]), "a1\na2\na3\na4\n");
    assert_eq!(s.ok(&["logs", "two", "-c", "b"]), "b1\n");
    assert_eq!(s.ok(&["logs", "two", "-c", "a", "--tail=2"]), "a3\na4\n");
    assert_eq!(
        s.ok(&["logs", "two", "-c", "a", "--limit-bytes=4"]),
        "a1\na"
    );
    assert_eq!(
        s.ok(&["logs", "two", "-c", "a", "--since=1h"]),
        "a1\na2\na3\na4\n"
    );
    let stamped = s.ok(&["logs", "two", "-c", "b", "--timestamps"]);
    let (ts, rest) = stamped.split_once(' ').unwrap();
    assert_eq!(rest, "b1\n");
    assert!(chrono_like(ts), "not an RFC 3339 timestamp: {stamped:?}");
    let all = s.ok(&["logs", "two", "--all-containers", "--prefix"]);
    assert!(
        all.contains("[pod/two/a] a1\n") && all.contains("[pod/two/b] b1\n"),
        "{all}"
    );
    // kubectl picks the first container itself; the API server wants one
    // named for a pod with several.
    assert_eq!(s.ok(&["logs", "two"]), "a1\na2\na3\na4\n");
    let raw = s.fails(&["get", "--raw", "/api/v1/namespaces/default/pods/two/log"]);
    assert!(
        raw.contains("a container name must be specified for pod two, choose one of: [a b]"),
        "{raw}"
    );
    let err = s.fails(&["logs", "two", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod two"),
        "{err}"
    );
    let err = s.fails(&["logs", "missing"]);
    assert!(err.contains("pods \"missing\" not found"), "{err}");
    // Not scheduled: nothing to show.
    assert_eq!(s.ok(&["logs", "nowhere"]), "");
    // An image that cannot be pulled.
    let err = eventually(60, "noimage waiting", || {
        let out = s.kubectl(&["logs", "noimage"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        err.contains("is waiting to start").then_some(err)
    });
    assert!(
        err.contains("container \"c\" in pod \"noimage\" is waiting to start"),
        "{err}"
    );

    // --previous after a restart: the earlier run's output.
    let err = s.fails(&["logs", "two", "-c", "a", "--previous"]);
    assert!(
        err.contains("previous terminated container \"a\" in pod \"two\" not found"),
        "{err}"
    );
    eventually(60, "crash restarted", || {
        let p = s.json(&["get", "pod", "crash"]);
        (p["status"]["containerStatuses"][0]["restartCount"].as_i64()? >= 1
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object())
        .then_some(())
    });
    let previous = s.ok(&["logs", "crash", "--previous"]);
    let current = eventually(10, "crash's current output", || {
        let c = s.ok(&["logs", "crash"]);
        (!c.is_empty()).then_some(c)
    });
    assert!(
        previous.starts_with("run-") && current.starts_with("run-"),
        "{previous} {current}"
    );
    assert_ne!(previous, current);

    // -f follows a running container until it exits.
    s.ok_stdin(&["apply", "-f", "-"], COUNTER);
    running(&s, "counter");
    let (code, out, err) = kubectl_bounded(&s, &["logs", "-f", "counter"], "", 40);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "tick 1\ntick 2\ntick 3\ntick 4\n");
    let phase = s.json(&["get", "pod", "counter"])["status"]["phase"].clone();
    assert!(phase == "Running" || phase == "Succeeded", "{phase}");
}

const COUNTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: counter}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:stable
    command: [sh, -c, "for i in 1 2 3 4; do echo tick $i; sleep 1; done"]
"#;

fn chrono_like(ts: &str) -> bool {
    ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') && ts.ends_with('Z')
}

const SHELL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  containers:
  - name: sh
    image: busybox:stable
    command: [sh, -c, "mkdir -p /www && echo served-by-httpd > /www/index.html && httpd -f -p 8080 -h /www"]
  - name: side
    image: busybox:stable
    command: [sleep, "3600"]
  - name: echo
    image: busybox:stable
    stdin: true
    command: [sh, -c, "while read l; do echo got-$l; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {no-such-label: "true"}
  containers:
  - name: c
    image: busybox:stable
"#;

#[test]
fn kubectl_exec_port_forward_and_cp() {
    let Some(s) = start() else { return };
    s.ok_stdin(&["apply", "-f", "-"], SHELL);
    running(&s, "shell");

    // Exit code and output.
    let (code, out, err) = kubectl_bounded(
        &s,
        &[
            "exec",
            "shell",
            "-c",
            "sh",
            "--",
            "sh",
            "-c",
            "echo hi; echo oops >&2; exit 3",
        ],
        "",
        30,
    );
    assert_eq!((code, out.as_str()), (3, "hi\n"), "{err}");
    assert!(err.contains("oops"), "{err}");
    // stdin.
    let (code, out, err) = kubectl_bounded(
        &s,
        &["exec", "-i", "shell", "-c", "side", "--", "cat"],
        "line one\nline two\n",
        30,
    );
    assert_eq!((code, out.as_str()), (0, "line one\nline two\n"), "{err}");
    // Every kubectl from 1.27 on (WebSocket first from 1.30, then SPDY).
    for minor in 27..=33 {
        let binary =
            std::path::PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"));
        if !binary.exists() {
            continue;
        }
        let out = s
            .kubectl_cmd_with(&binary)
            .args([
                "exec",
                "shell",
                "-c",
                "side",
                "--",
                "sh",
                "-c",
                "echo v; exit 5",
            ])
            .output()
            .unwrap();
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).as_ref()
            ),
            (Some(5), "v\n"),
            "kubectl 1.{minor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The Python client speaks WebSocket (v4.channel.k8s.io), which
    // containerd's stream server accepts: the same path, end to end.
    python_ws_exec(&s);
    // Errors.
    let err = s.fails(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert!(
        err.contains("container nope is not valid for pod shell"),
        "{err}"
    );
    let err = s.fails(&["exec", "missing", "--", "true"]);
    assert!(err.contains("pods \"missing\" not found"), "{err}");
    let err = s.fails(&["exec", "nowhere", "--", "true"]);
    assert!(
        err.contains("pod nowhere does not have a host assigned"),
        "{err}"
    );
    let raw = s.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/shell/exec?command=true&stdout=true",
    ]);
    assert!(
        raw.contains(
            "a container name must be specified for pod shell, choose one of: [sh side echo]"
        ),
        "{raw}"
    );

    // attach to a container reading its stdin: what it answers comes back.
    let attach = s
        .kubectl_cmd()
        .args(["attach", "-i", "shell", "-c", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        typed_until_answered(attach, b"hello\n", b"got-hello"),
        "no answer from the attached container"
    );

    // cp both ways (tar over exec).
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("up.txt");
    std::fs::write(&local, "uploaded\ncontent\n").unwrap();
    s.ok(&[
        "cp",
        local.to_str().unwrap(),
        "shell:/tmp/up.txt",
        "-c",
        "side",
    ]);
    let (_, out, _) = kubectl_bounded(
        &s,
        &["exec", "shell", "-c", "side", "--", "cat", "/tmp/up.txt"],
        "",
        30,
    );
    assert_eq!(out, "uploaded\ncontent\n");
    let back = dir.path().join("down.html");
    s.ok(&[
        "cp",
        "shell:/www/index.html",
        back.to_str().unwrap(),
        "-c",
        "sh",
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "served-by-httpd\n");

    // port-forward to httpd, then HTTP through it.
    let port = free_port();
    let child = s
        .kubectl_cmd()
        .args(["port-forward", "pod/shell", &format!("{port}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _pf = KillOnDrop(child);
    let body = eventually(30, "an answer through port-forward", || {
        http_get(port).filter(|b| b.contains("served-by-httpd"))
    });
    assert!(
        body.starts_with("HTTP/1.") && body.contains(" 200 "),
        "{body}"
    );
    // A second connection over the same forward.
    assert!(http_get(port).is_some_and(|b| b.contains("served-by-httpd")));
}

/// The agent's port wants a client certificate of the cluster CA.
#[test]
fn the_kubelet_port_wants_a_cluster_certificate() {
    let Some(s) = start() else { return };
    let port = eventually(30, "the node's kubelet port", || {
        let out = s.kubectl(&["get", "node", "stream-node", "-o", "json"]);
        let n: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_i64()
    });
    assert_ne!(port, 10250, "tests ask for a free port");
    let url = format!("https://127.0.0.1:{port}/healthz");
    let tls = s.data_dir().join("server/tls");
    let curl = |extra: &[String]| {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cert = |dir: &std::path::Path, name: &str| {
        vec![
            "--cert".to_owned(),
            dir.join(format!("{name}.crt")).display().to_string(),
            "--key".to_owned(),
            dir.join(format!("{name}.key")).display().to_string(),
        ]
    };
    assert_eq!(curl(&[]), "401");
    assert_eq!(curl(&cert(&tls, "client-admin")), "200");
    // A certificate the cluster CA did not sign fails the handshake.
    let agent_tls = s.data_dir().join("agent/tls");
    assert_eq!(curl(&cert(&agent_tls, "kubelet")), "000");
}

/// `nodes/{name}/proxy/...` reaches the node's agent with the API
/// server's kubelet client certificate: `/healthz`, `/pods` and the
/// Summary API (`/stats/summary`) with the node's and a pod's usage.
#[test]
fn nodes_proxy_reaches_the_agent() {
    let Some(s) = start() else { return };
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: busy}
spec:
  containers:
  - name: c
    image: busybox:stable
    command: [sh, -c, "head -c 20000000 /dev/zero > /dev/shm/x; exec sleep 3600"]
"#,
    );
    let pod = running(&s, "busy");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let raw = |path: &str| {
        s.ok(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/stream-node/proxy{path}"),
        ])
    };
    assert_eq!(raw("/healthz").trim(), "ok");
    let pods: serde_json::Value = serde_json::from_str(&raw("/pods")).unwrap();
    assert_eq!(pods["kind"], "PodList", "{pods}");
    assert!(
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["metadata"]["uid"] == uid.as_str()),
        "{pods}"
    );
    let (summary, p) = eventually(30, "the pod's usage in the summary", || {
        let v: serde_json::Value = serde_json::from_str(&raw("/stats/summary")).ok()?;
        let p = v["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["uid"] == uid.as_str())?
            .clone();
        // The 20 MB in its /dev/shm count against it.
        (p["memory"]["workingSetBytes"].as_u64()? > 15_000_000).then_some((v, p))
    });
    let node = &summary["node"];
    assert_eq!(node["nodeName"], "stream-node", "{node}");
    assert!(
        node["memory"]["workingSetBytes"].as_u64() > Some(0),
        "{node}"
    );
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{node}"
    );
    assert!(node["fs"]["capacityBytes"].as_u64() > Some(0), "{node}");
    assert_eq!(p["podRef"]["name"], "busy", "{p}");
    assert_eq!(p["podRef"]["namespace"], "default", "{p}");
    assert_eq!(p["containers"][0]["name"], "c", "{p}");
    assert!(
        p["containers"][0]["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{p}"
    );
    assert_eq!(p["startTime"], pod["status"]["startTime"], "{p}");
    // A path the agent does not serve.
    s.fails(&[
        "get",
        "--raw",
        "/api/v1/nodes/stream-node/proxy/no/such/path",
    ]);
    // A node that does not exist.
    let err = s.fails(&["get", "--raw", "/api/v1/nodes/nowhere/proxy/healthz"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

const PY_EXEC: &str = r#"
import sys
from kubernetes import client, config
from kubernetes.stream import stream
config.load_kube_config(sys.argv[1])
out = stream(client.CoreV1Api().connect_get_namespaced_pod_exec, "shell", "default",
             container="side", command=["sh", "-c", "echo over-websocket"],
             stderr=True, stdin=False, stdout=True, tty=False)
print(out, end="")
"#;

fn python_ws_exec(s: &Server) {
    let python = std::env::var("RKUBE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_client = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .status()
        .is_ok_and(|st| st.success());
    if !has_client {
        eprintln!("skipping the WebSocket exec: no Python kubernetes client (scripts/setup)");
        return;
    }
    let out = Command::new(&python)
        .args(["-c", PY_EXEC])
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "over-websocket\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16) -> Option<String> {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    c.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The resource metrics API (metrics.k8s.io) that `kubectl top` reads:
/// a container spinning under a 200m CPU limit shows about that much, an
/// idle one next to it almost none; selectors, sorting, a single pod,
/// nodes with their share of allocatable, the raw objects and tables.
#[test]
fn kubectl_top_reads_resource_metrics() {
    let Some(s) = start() else { return };
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: burn, labels: {app: burn}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: busybox:stable
    command: [sh, -c, "while :; do :; done"]
    resources: {limits: {cpu: 200m, memory: 64Mi}}
  - name: idle
    image: busybox:stable
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: still, labels: {app: still}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:stable
    command: [sleep, "3600"]
"#,
    );
    running(&s, "burn");
    running(&s, "still");
    let groups = s.ok(&[
        "api-resources",
        "--api-group=metrics.k8s.io",
        "--no-headers",
    ]);
    assert!(
        groups.contains("pods") && groups.contains("PodMetrics"),
        "{groups}"
    );
    assert!(
        groups.contains("nodes") && groups.contains("NodeMetrics"),
        "{groups}"
    );

    let millicores = |cell: &str| -> u64 {
        cell.strip_suffix('m')
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("not millicores: {cell:?}"))
    };
    // Per container: "burn spin 199m 0Mi".
    let (spin, idle) = eventually(60, "the spinning container at about its limit", || {
        let out = s.kubectl(&["top", "pod", "burn", "--containers", "--no-headers"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let cpu = |c: &str| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.len() == 4 && f[0] == "burn" && f[1] == c)
                .map(|f| millicores(f[2]))
        };
        let (spin, idle) = (cpu("spin")?, cpu("idle")?);
        (spin >= 100).then_some((spin, idle))
    });
    assert!(spin <= 400, "a 200m limit, measured {spin}m");
    assert!(idle < 50, "sleep uses no CPU, measured {idle}m");

    // Selectors and sorting: all pods by CPU, the spinner first.
    let sorted = s.ok(&["top", "pod", "--sort-by=cpu", "--no-headers"]);
    let names: Vec<&str> = sorted
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["burn", "still"], "{sorted}");
    let only = s.ok(&["top", "pod", "-l", "app=still", "--no-headers"]);
    assert!(
        only.starts_with("still ") && only.lines().count() == 1,
        "{only}"
    );
    let none = s.kubectl(&["top", "pod", "-l", "app=nothing"]);
    let text =
        String::from_utf8_lossy(&none.stderr).into_owned() + &String::from_utf8_lossy(&none.stdout);
    assert!(text.contains("No resources found"), "{text}");
    let missing = s.fails(&["top", "pod", "nope"]);
    assert!(
        missing.contains(r#"podmetrics.metrics.k8s.io "default/nope" not found"#),
        "{missing}"
    );

    // Nodes: usage and its share of allocatable.
    let top = s.ok(&["top", "node", "--no-headers"]);
    let fields: Vec<&str> = top.split_whitespace().collect();
    assert_eq!(fields.len(), 5, "{top}");
    assert_eq!(fields[0], "stream-node", "{top}");
    assert!(millicores(fields[1]) >= 100, "the spinner runs here: {top}");
    assert!(
        fields[2].ends_with('%') && fields[4].ends_with('%'),
        "{top}"
    );
    assert!(fields[3].ends_with("Mi"), "{top}");
    let missing = s.fails(&["top", "node", "nowhere"]);
    assert!(
        missing.contains(r#"nodemetrics.metrics.k8s.io "nowhere" not found"#),
        "{missing}"
    );

    // The objects themselves.
    let pm: serde_json::Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burn",
    ]))
    .unwrap();
    assert_eq!(pm["kind"], "PodMetrics", "{pm}");
    assert_eq!(pm["metadata"]["labels"]["app"], "burn", "{pm}");
    assert_eq!(pm["containers"][0]["name"], "spin", "{pm}");
    assert!(pm["window"].as_str().unwrap().ends_with('s'), "{pm}");
    assert!(pm["timestamp"].as_str().unwrap().ends_with('Z'), "{pm}");
    let nm: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]))
            .unwrap();
    assert_eq!(nm["kind"], "NodeMetricsList", "{nm}");
    assert_eq!(nm["items"][0]["metadata"]["name"], "stream-node", "{nm}");
    assert!(nm["items"][0]["usage"]["memory"].as_str().is_some(), "{nm}");
    // Tables, as `kubectl get` asks for them.
    let table = s.ok(&["get", "pods.metrics.k8s.io"]);
    assert!(
        table.starts_with("NAME") && table.contains("CPU") && table.contains("WINDOW"),
        "{table}"
    );
    assert!(table.contains("burn") && table.contains("still"), "{table}");
    // Read-only: writes are refused.
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", "metadata": {"name": "x"}}"#,
    );
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allow"),
        "{err}"
    );
}

/// The Python kubernetes client's exec, which speaks WebSocket
/// (`v4.channel.k8s.io`) end to end where kubectl falls back to SPDY:
/// stdout and stderr apart, stdin, the exit code, 404 for a missing pod.
#[test]
fn python_client_exec_over_websocket() {
    let Some(s) = start() else { return };
    run_sleepers(&s, "py", &[], &[("c", 3600, "")]);
    let python = std::env::var("RKUBE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/exec_flows.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(s.kubeconfig())
        .arg("py")
        .env("HOME", s.dir.path())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e} (scripts/setup installs the client)"));
    assert!(
        out.status.success(),
        "python exec failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("python exec: ok"));
}

/// `kubectl debug`: an ephemeral container added through
/// `pods/ephemeralcontainers` runs once in the pod, in its target's
/// process namespace with `--target`, reports its own status, and takes
/// stdin through attach with `-i`; it cannot reuse a container's name.
#[test]
fn kubectl_debug_runs_ephemeral_containers() {
    let Some(s) = start() else { return };
    run_sleepers(&s, "app", &[], &[("main", 3601, "")]);
    // Non-interactive, sharing main's processes: ps sees its sleep.
    s.ok(&[
        "debug",
        "app",
        "--image=busybox:stable",
        "--target=main",
        "-c",
        "peek",
        "--",
        "sh",
        "-c",
        "ps -o pid,args",
    ]);
    let status = eventually(60, "the debug container to finish", || {
        let p = s.json(&["get", "pod", "app"]);
        let st = p["status"]["ephemeralContainerStatuses"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "peek")?
            .clone();
        st["state"]["terminated"].is_object().then_some(st)
    });
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    assert_eq!(status["restartCount"], 0, "{status}");
    let ps = s.ok(&["logs", "app", "-c", "peek"]);
    assert!(ps.contains("sleep 3601"), "the target's processes: {ps}");
    // The pod itself goes on running and stays Ready.
    let p = s.json(&["get", "pod", "app"]);
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    assert_eq!(
        p["spec"]["ephemeralContainers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    // Interactive: what is typed reaches the container through attach,
    // and its answer comes back (stdin kept open until it has: at EOF
    // kubectl ends the attach).
    let debug = s
        .kubectl_cmd()
        .args([
            "debug",
            "-i",
            "app",
            "--image=busybox:stable",
            "-c",
            "shell",
            "--",
            "sh",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        typed_until_answered(debug, b"echo hello-from-$((6*7))\n", b"hello-from-42"),
        "no answer from the debug shell"
    );

    // shareProcessNamespace: the pod's containers see each other's
    // processes.
    run_sleepers(
        &s,
        "shared",
        &["shareProcessNamespace: true"],
        &[("a", 3602, ""), ("b", 3603, "")],
    );
    let ps = s.ok(&["exec", "shared", "-c", "b", "--", "ps", "-o", "args"]);
    assert!(
        ps.contains("sleep 3602") && ps.contains("sleep 3603"),
        "{ps}"
    );
    // Without it, a container is process 1 of its own namespace.
    let own = s.ok(&["exec", "app", "-c", "main", "--", "ps", "-o", "pid,args"]);
    assert!(
        own.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep", "3601"]),
        "{own}"
    );

    // hostPID and hostIPC (what `kubectl debug node/...` asks for): the
    // host's processes and IPC namespace.
    run_sleepers(
        &s,
        "hostly",
        &["hostPID: true", "hostIPC: true"],
        &[("c", 3604, "")],
    );
    let ps = s.ok(&["exec", "hostly", "--", "ps", "-o", "args"]);
    assert!(ps.contains("containerd"), "the host's processes: {ps}");
    let ipc = |pod: &str| s.ok(&["exec", pod, "--", "readlink", "/proc/self/ns/ipc"]);
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(ipc("hostly").trim(), host_ipc.to_str().unwrap());
    assert_ne!(ipc("app").trim(), host_ipc.to_str().unwrap());

    // `kubectl debug node/...`: a pod in the host's namespaces with the
    // host's root at /host.
    let out = s.ok(&[
        "debug",
        "node/stream-node",
        "--image=busybox:stable",
        "--",
        "sh",
        "-c",
        "test -d /host/proc/1 && test -d /host/etc && echo host-root",
    ]);
    let pod = out
        .split_whitespace()
        .find(|w| w.starts_with("node-debugger-stream-node-"))
        .unwrap_or_else(|| panic!("no debugger pod named in: {out}"))
        .to_owned();
    eventually(60, "the node debugger to finish", || {
        let p = s.json(&["get", "pod", &pod]);
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    assert_eq!(s.ok(&["logs", &pod]).trim(), "host-root");

    // A name the pod already uses is refused; nothing changes.
    let err = s.fails(&["debug", "app", "--image=busybox:stable", "-c", "main"]);
    assert!(
        err.contains(r#"spec.ephemeralContainers[2].name: Duplicate value: "main""#),
        "{err}"
    );
    let p = s.json(&["get", "pod", "app"]);
    assert_eq!(
        p["spec"]["ephemeralContainers"].as_array().unwrap().len(),
        2,
        "{p}"
    );
}

/// In-place resize (`kubectl patch --subresource resize`): the running
/// container gets its new CPU limit in its cgroup without a restart and
/// its status says so; a resize that would change the QoS class, and a
/// plain update of resources, are refused.
#[test]
fn pods_resize_in_place() {
    let Some(s) = start() else { return };
    run_sleepers(
        &s,
        "rs",
        &[],
        &[(
            "c",
            3600,
            "resources: {requests: {cpu: 100m, memory: 32Mi}, limits: {cpu: 200m, memory: 64Mi}}",
        )],
    );
    let quota = || {
        let out = s.ok(&[
            "exec",
            "rs",
            "--",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max",
        ]);
        out.trim().to_owned()
    };
    assert_eq!(quota(), "20000");
    s.ok(&[
        "patch",
        "pod",
        "rs",
        "--subresource",
        "resize",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"300m"}}}]}}"#,
    ]);
    let status = eventually(30, "the resize to be applied", || {
        let p = s.json(&["get", "pod", "rs"]);
        let c = p["status"]["containerStatuses"][0].clone();
        (c["resources"]["limits"]["cpu"] == "300m").then_some(c)
    });
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(quota(), "30000");
    let p = s.json(&["get", "pod", "rs"]);
    assert_eq!(
        p["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "300m"
    );
    assert_eq!(p["status"]["qosClass"], "Burstable");

    // Requests up to the limits would make it Guaranteed: refused.
    let err = s.fails(&[
        "patch",
        "pod",
        "rs",
        "--subresource",
        "resize",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"300m","memory":"64Mi"}}}]}}"#,
    ]);
    assert!(
        err.contains("Pod QOS Class may not change as a result of resizing"),
        "{err}"
    );
    // Resources do not change through a plain update.
    let err = s.fails(&[
        "patch",
        "pod",
        "rs",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"400m"}}}]}}"#,
    ]);
    assert!(
        err.contains("pod updates may not change fields other than"),
        "{err}"
    );
    assert_eq!(
        s.json(&["get", "pod", "rs"])["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "300m"
    );
}
