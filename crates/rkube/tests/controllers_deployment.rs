//! Deployments on simulated nodes, driven by kubectl's rollout commands.

mod support;

use std::time::Duration;

use support::{eventually, Server};

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx:1
"#;

fn live_pods(s: &Server) -> Vec<serde_json::Value> {
    s.json(&["get", "pods", "-l", "app=web", "-o", "json"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn images(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = live_pods(s)
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn rollout_status_history_undo_restart_pause() {
    let s = Server::start_with(&[]);
    let _agent = s.start_simulated_agent(2, "sim");
    eventually(30, "2 ready nodes", || {
        let v = s.json(&["get", "nodes", "-o", "json"]);
        (v["items"].as_array().unwrap().len() == 2).then_some(())
    });
    s.ok_stdin(&["apply", "-f", "-"], DEPLOY);
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = s.json(&["get", "deploy", "web", "-o", "json"]);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let conds = d["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Available" && c["status"] == "True"));
    assert!(conds
        .iter()
        .any(|c| c["reason"] == "NewReplicaSetAvailable"));

    // Desired 3, actual 2 -> 3 again.
    let victim = live_pods(&s)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually(60, "a replacement", || {
        let pods = live_pods(&s);
        (pods.len() == 3
            && pods
                .iter()
                .all(|p| p["metadata"]["name"] != victim.as_str()))
        .then_some(())
    });

    // A rolling update to a new image.
    s.ok(&["set", "image", "deployment/web", "c=nginx:2"]);
    let out = s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually(60, "only new pods", || {
        (images(&s) == ["nginx:2"; 3]).then_some(())
    });
    let history = s.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let rs = s.json(&["get", "rs", "-l", "app=web", "-o", "json"]);
    let mut replicas: Vec<i64> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["spec"]["replicas"].as_i64().unwrap())
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 3]);

    // Undo goes back to revision 1's template (as revision 3).
    s.ok(&["rollout", "undo", "deployment/web"]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    eventually(60, "old image back", || {
        (images(&s) == ["nginx:1"; 3]).then_some(())
    });
    let d = s.json(&["get", "deploy", "web", "-o", "json"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );

    // Paused: template changes wait; resume rolls them out.
    s.ok(&["rollout", "pause", "deployment/web"]);
    s.ok(&["set", "image", "deployment/web", "c=nginx:3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(images(&s), ["nginx:1"; 3]);
    s.ok(&["rollout", "resume", "deployment/web"]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    eventually(60, "resumed rollout", || {
        (images(&s) == ["nginx:3"; 3]).then_some(())
    });

    // Restart makes new pods of the same template.
    let before: Vec<String> = live_pods(&s)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    s.ok(&["rollout", "restart", "deployment/web"]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    eventually(60, "all pods replaced", || {
        let now = live_pods(&s);
        (now.len() == 3
            && now
                .iter()
                .all(|p| !before.contains(&p["metadata"]["name"].as_str().unwrap().to_owned())))
        .then_some(())
    });

    // Scaling.
    s.ok(&["scale", "deployment/web", "--replicas=5"]);
    s.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert_eq!(live_pods(&s).len(), 5);
}

#[test]
fn progress_deadline_exceeded_fails_rollout_status() {
    let s = Server::start_with(&[]);
    // No nodes: pods never become ready.
    let d = DEPLOY.replace("replicas: 3", "replicas: 1\n  progressDeadlineSeconds: 3");
    s.ok_stdin(&["apply", "-f", "-"], &d);
    let out = s.fails(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(out.contains("exceeded its progress deadline"), "{out}");
    let v = s.json(&["get", "deploy", "web", "-o", "json"]);
    let p = v["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(p["reason"], "ProgressDeadlineExceeded");
}
