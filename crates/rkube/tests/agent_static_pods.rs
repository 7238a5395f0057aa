//! Static pods on a real local node (containerd + runc): a manifest put in
//! `<data-dir>/agent/pod-manifests` runs as a pod and shows in the API as
//! its mirror pod (`kubernetes.io/config.mirror`, owned by the Node,
//! Running, logs through the mirror's name); deleting the mirror with
//! kubectl brings it back with the container untouched, and so does a
//! server restart (the new agent adopts the container); editing the file
//! replaces the container with the new spec; removing the file stops the
//! container and deletes the mirror. The API server keeps the mirror
//! annotation and refuses mirror pods that name a service account.
//! Skipped, with the reason printed, where containerd cannot run.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::eventually;

const NODE: &str = "static-node";
const MIRROR: &str = "web-static-node";

fn manifest(message: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: static-web}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:stable
    imagePullPolicy: Never
    command: [sh, -c, "echo {message}; trap 'exit 0' TERM; while true; do sleep 1; done"]
"#
    )
}

/// Writes the manifest as editors and config tools do: a hidden temporary
/// file renamed over the real one.
fn put(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn get_pod(s: &support::Server) -> Option<Value> {
    let out = s.kubectl(&["get", "pod", MIRROR, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> Option<&'a str> {
    pod["metadata"]["annotations"][key].as_str()
}

fn running(pod: &Value) -> Option<(String, i64)> {
    let cs = &pod["status"]["containerStatuses"][0];
    (pod["status"]["phase"] == "Running" && cs["state"]["running"].is_object()).then(|| {
        (
            cs["containerID"].as_str().unwrap_or_default().to_owned(),
            cs["restartCount"].as_i64().unwrap_or(-1),
        )
    })
}

#[test]
fn static_pods_with_mirror_pods() {
    let Some(mut s) = support::local_node(NODE, &[]) else {
        return;
    };
    let dir = s.data_dir().join("agent/pod-manifests");
    assert!(dir.is_dir(), "the agent creates its manifest directory");
    let socket = s.data_dir().join("agent/containerd/containerd.sock");
    let containers = || -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io", "containers", "ls", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let node_uid = s.json(&["get", "node", NODE])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();

    // A manifest appears: the pod runs, its mirror shows it.
    put(&dir, "web.yaml", &manifest("static-v1"));
    let (mirror, (cid, restarts)) = eventually(90, "the mirror pod Running", || {
        let p = get_pod(&s)?;
        let r = running(&p)?;
        Some((p, r))
    });
    let hash = annotation(&mirror, "kubernetes.io/config.hash")
        .expect("config.hash")
        .to_owned();
    assert_eq!(hash.len(), 32, "{mirror}");
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.mirror"),
        Some(hash.as_str())
    );
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.source"),
        Some("file")
    );
    assert!(annotation(&mirror, "kubernetes.io/config.seen").is_some());
    assert_ne!(mirror["metadata"]["uid"].as_str(), Some(hash.as_str()));
    assert_eq!(mirror["metadata"]["labels"]["app"], "static-web");
    assert_eq!(mirror["spec"]["nodeName"], NODE);
    let owner = &mirror["metadata"]["ownerReferences"];
    assert_eq!(owner.as_array().map(Vec::len), Some(1), "{owner}");
    assert_eq!(owner[0]["apiVersion"], "v1");
    assert_eq!(owner[0]["kind"], "Node");
    assert_eq!(owner[0]["name"], NODE);
    assert_eq!(owner[0]["uid"], node_uid.as_str());
    assert_eq!(owner[0]["controller"], true);
    // No service account token for a mirror pod.
    assert!(mirror["spec"]["serviceAccountName"].is_null(), "{mirror}");
    assert!(
        !mirror["spec"]["volumes"]
            .to_string()
            .contains("kube-api-access"),
        "{mirror}"
    );
    assert!(containers().contains(cid.trim_start_matches("containerd://")));
    eventually(30, "the static pod's logs through the mirror", || {
        let out = s.kubectl(&["logs", MIRROR]);
        String::from_utf8_lossy(&out.stdout)
            .contains("static-v1")
            .then_some(())
    });

    // The API server keeps the mirror annotation as it is...
    let err = s.fails(&[
        "annotate",
        "pod",
        MIRROR,
        "--overwrite",
        "kubernetes.io/config.mirror=other",
    ]);
    assert!(
        err.contains("may not remove or update mirror pod annotation"),
        "{err}"
    );
    // ...and refuses mirror pods that use a service account.
    let err = s.fails_stdin(
        &["create", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "v1", "kind": "Pod",
                "metadata": {{"name": "fake-mirror", "annotations": {{"kubernetes.io/config.mirror": "x"}}}},
                "spec": {{"nodeName": "{NODE}", "serviceAccountName": "default",
                          "containers": [{{"name": "c", "image": "busybox:stable"}}]}}}}"#
        ),
    );
    assert!(
        err.contains("a mirror pod may not reference service accounts"),
        "{err}"
    );

    // kubectl delete of the mirror: a new mirror, the same container.
    let old_uid = mirror["metadata"]["uid"].as_str().unwrap().to_owned();
    s.ok(&["delete", "pod", MIRROR, "--timeout=60s"]);
    eventually(60, "the mirror pod recreated", || {
        let p = get_pod(&s)?;
        (p["metadata"]["uid"].as_str() != Some(old_uid.as_str()) && running(&p).is_some())
            .then_some(())
    });
    let again = get_pod(&s).unwrap();
    assert_eq!(
        running(&again),
        Some((cid.clone(), restarts)),
        "the container is untouched: {again}"
    );
    assert_eq!(
        annotation(&again, "kubernetes.io/config.mirror"),
        Some(hash.as_str())
    );

    // A restarted server (and agent) adopts the running static pod.
    s.restart(false);
    // Logs through the new agent: it knows the static pod again (its
    // first sync ran before it registered).
    eventually(90, "logs through the restarted agent", || {
        let out = s.kubectl(&["logs", MIRROR]);
        String::from_utf8_lossy(&out.stdout)
            .contains("static-v1")
            .then_some(())
    });
    assert!(
        containers().contains(cid.trim_start_matches("containerd://")),
        "the container survives the restart"
    );
    eventually(30, "the mirror pod Running after a restart", || {
        let p = get_pod(&s)?;
        (running(&p)? == (cid.clone(), restarts)).then_some(())
    });

    // The file changes: the pod is replaced with the new spec.
    put(&dir, "web.yaml", &manifest("static-v2"));
    let (edited, (cid2, _)) = eventually(90, "the edited static pod Running", || {
        let p = get_pod(&s)?;
        if annotation(&p, "kubernetes.io/config.mirror") == Some(hash.as_str()) {
            return None;
        }
        let r = running(&p)?;
        Some((p, r))
    });
    assert_ne!(cid2, cid);
    assert_eq!(
        annotation(&edited, "kubernetes.io/config.mirror"),
        annotation(&edited, "kubernetes.io/config.hash")
    );
    assert!(edited["spec"]["containers"][0]["command"]
        .to_string()
        .contains("static-v2"));
    eventually(30, "the new spec's logs", || {
        let out = s.kubectl(&["logs", MIRROR]);
        String::from_utf8_lossy(&out.stdout)
            .contains("static-v2")
            .then_some(())
    });
    eventually(30, "the first container removed", || {
        (!containers().contains(cid.trim_start_matches("containerd://"))).then_some(())
    });

    // The file goes: the container stops and the mirror is deleted.
    std::fs::remove_file(dir.join("web.yaml")).unwrap();
    eventually(60, "the mirror pod deleted", || {
        get_pod(&s).is_none().then_some(())
    });
    eventually(30, "the static pod's container removed", || {
        (!containers().contains(cid2.trim_start_matches("containerd://"))).then_some(())
    });
    // And it stays deleted.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(get_pod(&s).is_none(), "the mirror pod came back");
}
