//! `rkube server` as `scripts/server` runs it: the control plane and a
//! local node whose pods are real containers (containerd + runc). Skipped,
//! with the reason printed, where containerd cannot run.

mod support;

use std::process::Command;

use support::eventually;

#[test]
fn the_local_node_runs_pods_as_containers() {
    let Some(mut s) = support::local_node("local-node", &[]) else {
        return;
    };
    // The scheduler places it; the agent runs it.
    s.ok(&[
        "run",
        "hello",
        "--image=busybox:stable",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "echo hi; sleep 3600",
    ]);
    let pod = eventually(90, "hello Running", || {
        let p = s.json(&["get", "pod", "hello", "-o", "json"]);
        (p["status"]["phase"] == "Running").then_some(p)
    });
    assert_eq!(pod["spec"]["nodeName"], "local-node");
    assert!(
        pod["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{pod}"
    );
    // The ServiceAccount admission mounted a token, the cluster CA and the
    // namespace; the token authenticates against the API server.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let namespace = s.ok(&["exec", "hello", "--", "cat", &format!("{sa}/namespace")]);
    assert_eq!(namespace, "default");
    let ca = s.ok(&["exec", "hello", "--", "cat", &format!("{sa}/ca.crt")]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let token = s.ok(&["exec", "hello", "--", "cat", &format!("{sa}/token")]);
    let who = Command::new(support::kubectl_binary())
        .args(["--kubeconfig=/dev/null", "--insecure-skip-tls-verify"])
        .arg(format!("--server=https://127.0.0.1:{}", s.port))
        .args(["--token", token.trim(), "auth", "whoami", "-o", "json"])
        .output()
        .unwrap();
    let who =
        String::from_utf8_lossy(&who.stdout).to_string() + &String::from_utf8_lossy(&who.stderr);
    assert!(
        who.contains("system:serviceaccount:default:default"),
        "{who}"
    );
    s.ok(&["delete", "pod", "hello", "--timeout=60s"]);
    // A graceful stop takes the node's containerd down with it.
    s.stop(false);
    let data = s.data_dir().display().to_string();
    let left = Command::new("pgrep")
        .args(["-f", &format!("containerd.*{data}")])
        .output()
        .unwrap();
    let pids = String::from_utf8_lossy(&left.stdout).trim().to_owned();
    if !pids.is_empty() {
        for pid in pids.lines() {
            let _ = Command::new("kill").arg(pid).status();
        }
        panic!("containerd still running after the server stopped: {pids}");
    }
}
