//! StatefulSet and DaemonSet controllers against the real binary, driven
//! by the real kubectl. The scheduler is disabled and no agent runs: a
//! "kubelet" thread in the test binds pods, marks them Running and Ready,
//! and finishes graceful deletions (unless told to hold them), so every
//! step is deterministic.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, Server};

/// Pods not being deleted, by name.
fn live_pods(s: &Server, selector: &str) -> BTreeMap<String, Value> {
    let v = s.json(&["get", "pods", "-l", selector]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p.clone(),
            )
        })
        .collect()
}

fn all_pods(s: &Server, selector: &str) -> BTreeMap<String, Value> {
    let v = s.json(&["get", "pods", "-l", selector]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p.clone(),
            )
        })
        .collect()
}

fn is_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn image(p: &Value) -> String {
    p["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The node a pod is for: nodeName or its metadata.name affinity.
fn target_node(p: &Value) -> Option<String> {
    if let Some(n) = p["spec"]["nodeName"].as_str() {
        return Some(n.to_owned());
    }
    p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What the kubelet thread does and saw.
struct Kubelet {
    stop: AtomicBool,
    /// Leave terminating pods alone.
    hold: AtomicBool,
    /// (pod, image) in the order pods were made ready.
    readied: Mutex<Vec<(String, String)>>,
}

impl Kubelet {
    fn new() -> Kubelet {
        Kubelet {
            stop: AtomicBool::new(false),
            hold: AtomicBool::new(false),
            readied: Mutex::new(Vec::new()),
        }
    }

    /// Binds pending pods (to their DaemonSet node, else `default_node`),
    /// makes bound pods Running and Ready, and completes deletions.
    fn run(&self, s: &Server, selector: &str, default_node: &str) {
        while !self.stop.load(Ordering::SeqCst) {
            for (name, p) in all_pods(s, selector) {
                if !p["metadata"]["deletionTimestamp"].is_null() {
                    if !self.hold.load(Ordering::SeqCst) {
                        let _ = s.kubectl(&[
                            "delete",
                            "pod",
                            &name,
                            "--grace-period=0",
                            "--force",
                            "--wait=false",
                        ]);
                    }
                    continue;
                }
                if p["spec"]["nodeName"].is_null() {
                    let node = target_node(&p).unwrap_or_else(|| default_node.to_owned());
                    let binding = format!(
                        r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#
                    );
                    let _ = s.kubectl_stdin(
                        &[
                            "create",
                            "--raw",
                            &format!("/api/v1/namespaces/default/pods/{name}/binding"),
                            "-f",
                            "-",
                        ],
                        &binding,
                    );
                    continue;
                }
                if !is_ready(&p) {
                    let patch = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2025-01-01T00:00:00Z"}]}}"#;
                    let out = s.kubectl(&[
                        "patch",
                        "pod",
                        &name,
                        "--subresource=status",
                        "--type=merge",
                        "-p",
                        patch,
                    ]);
                    if out.status.success() {
                        self.readied.lock().unwrap().push((name.clone(), image(&p)));
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: NAME
  labels: {kubernetes.io/hostname: NAME}
"#;

fn add_node(s: &Server, name: &str) {
    s.ok_stdin(&["apply", "-f", "-"], &NODE.replace("NAME", name));
}

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 3
  serviceName: nginx
  selector:
    matchLabels: {app: web}
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Delete
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx:1
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
"#;

fn pvc_names(s: &Server) -> Vec<String> {
    let v = s.json(&["get", "pvc"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn statefulset_ordered_pods_claims_rolling_update_history_undo() {
    let s = Server::start_with(&["--disable-scheduler", "--node-monitor-grace-period=1h"]);
    add_node(&s, "n1");
    s.ok_stdin(&["apply", "-f", "-"], STS);

    // OrderedReady: web-0 alone until it is Running and Ready, then web-1...
    let ready = |name: &str| {
        let patch = r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2025-01-01T00:00:00Z"}]}}"#;
        s.ok(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            patch,
        ]);
    };
    for i in 0..3 {
        let want: Vec<String> = (0..=i).map(|o| format!("web-{o}")).collect();
        eventually(30, &format!("pod web-{i}"), || {
            let names: Vec<String> = live_pods(&s, "app=web").into_keys().collect();
            (names == want).then_some(())
        });
        // Its claim was made first; nothing beyond it while it is not ready.
        assert!(
            pvc_names(&s).contains(&format!("data-web-{i}")),
            "{:?}",
            pvc_names(&s)
        );
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(
            live_pods(&s, "app=web").len(),
            i + 1,
            "a later ordinal appeared before web-{i} was ready"
        );
        let pod = &live_pods(&s, "app=web")[&format!("web-{i}")];
        assert_eq!(pod["spec"]["hostname"], format!("web-{i}"));
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            format!("web-{i}")
        );
        assert_eq!(
            pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
            i.to_string()
        );
        assert!(pod["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .unwrap()
            .starts_with("web-"));
        let vol = &pod["spec"]["volumes"][0];
        assert_eq!(
            vol["persistentVolumeClaim"]["claimName"],
            format!("data-web-{i}")
        );
        ready(&format!("web-{i}"));
    }
    let out = s.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let sts = s.json(&["get", "statefulset", "web"]);
    assert_eq!(sts["status"]["readyReplicas"], 3, "{sts}");
    assert_eq!(
        sts["status"]["currentRevision"],
        sts["status"]["updateRevision"]
    );
    let rev1 = sts["status"]["currentRevision"]
        .as_str()
        .unwrap()
        .to_owned();
    let cr = s.json(&["get", "controllerrevision", &rev1]);
    assert_eq!(cr["revision"], 1);
    assert_eq!(cr["data"]["spec"]["template"]["$patch"], "replace");
    assert_eq!(cr["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");

    let kubelet = Kubelet::new();
    std::thread::scope(|scope| {
        scope.spawn(|| kubelet.run(&s, "app=web", "n1"));

        // Rolling update: replaced from the highest ordinal down.
        s.ok(&["set", "image", "statefulset/web", "c=nginx:2"]);
        let out = s.ok(&["rollout", "status", "statefulset/web", "--timeout=90s"]);
        assert!(
            out.contains("partitioned roll out complete: 3 new pods have been updated"),
            "{out}"
        );
        let order: Vec<String> = kubelet
            .readied
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, img)| img == "nginx:2")
            .map(|(n, _)| n.clone())
            .collect();
        assert_eq!(order, ["web-2", "web-1", "web-0"]);
        let pods = live_pods(&s, "app=web");
        assert!(pods.values().all(|p| image(p) == "nginx:2"), "{pods:?}");
        eventually(30, "currentRevision = updateRevision", || {
            let sts = s.json(&["get", "statefulset", "web"]);
            (sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
                && sts["status"]["currentRevision"] != rev1.as_str()
                && sts["status"]["updatedReplicas"] == 3)
                .then_some(())
        });

        // History and undo.
        let hist = s.ok(&["rollout", "history", "statefulset/web"]);
        let revs: Vec<&str> = hist
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(revs, ["1", "2"], "{hist}");
        let detail = s.ok(&["rollout", "history", "statefulset/web", "--revision=1"]);
        assert!(detail.contains("nginx:1"), "{detail}");
        let out = s.ok(&["rollout", "undo", "statefulset/web"]);
        assert!(out.contains("rolled back"), "{out}");
        let out = s.ok(&["rollout", "status", "statefulset/web", "--timeout=90s"]);
        assert!(out.contains("3 new pods have been updated"), "{out}");
        eventually(30, "pods back at nginx:1", || {
            let pods = live_pods(&s, "app=web");
            (pods.len() == 3 && pods.values().all(|p| image(p) == "nginx:1" && is_ready(p)))
                .then_some(())
        });
        eventually(30, "revision 1 renumbered 3", || {
            let hist = s.ok(&["rollout", "history", "statefulset/web"]);
            let revs: Vec<String> = hist
                .lines()
                .skip(2)
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect();
            (revs == ["2", "3"]).then_some(())
        });
        let sts = s.json(&["get", "statefulset", "web"]);
        assert_eq!(
            sts["status"]["updateRevision"],
            rev1.as_str(),
            "undo reuses the first revision"
        );

        // Scale down: the highest ordinal first, the next only once it is gone.
        kubelet.hold.store(true, Ordering::SeqCst);
        s.ok(&["scale", "statefulset/web", "--replicas=1"]);
        eventually(30, "web-2 terminating", || {
            let pods = all_pods(&s, "app=web");
            (!pods["web-2"]["metadata"]["deletionTimestamp"].is_null()).then_some(())
        });
        std::thread::sleep(Duration::from_millis(1500));
        let pods = all_pods(&s, "app=web");
        assert!(
            pods["web-1"]["metadata"]["deletionTimestamp"].is_null(),
            "web-1 went before web-2 was gone"
        );
        // whenScaled=Delete: the condemned pods' claims are owned by them.
        let claim = s.json(&["get", "pvc", "data-web-2"]);
        assert_eq!(
            claim["metadata"]["ownerReferences"][0]["kind"], "Pod",
            "{claim}"
        );
        s.ok(&["delete", "pod", "web-2", "--grace-period=0", "--force"]);
        eventually(30, "web-1 terminating", || {
            let pods = all_pods(&s, "app=web");
            (!pods["web-1"]["metadata"]["deletionTimestamp"].is_null()).then_some(())
        });
        kubelet.hold.store(false, Ordering::SeqCst);
        eventually(30, "one pod", || {
            let pods = all_pods(&s, "app=web");
            (pods.keys().collect::<Vec<_>>() == ["web-0"]).then_some(())
        });
        // The garbage collector removes the scaled-down claims.
        eventually(60, "claims of web-1 and web-2 deleted", || {
            (pvc_names(&s) == ["data-web-0"]).then_some(())
        });
        let sts = s.json(&["get", "statefulset", "web"]);
        assert_eq!(sts["status"]["replicas"], 1, "{sts}");
        kubelet.stop.store(true, Ordering::SeqCst);
    });

    let describe = s.ok(&["describe", "statefulset", "web"]);
    assert!(
        describe.contains("create Pod web-0 in StatefulSet web successful"),
        "{describe}"
    );
    assert!(
        describe.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"),
        "{describe}"
    );
}

const STS_PARALLEL: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 3
  podManagementPolicy: Parallel
  ordinals: {start: 5}
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: c
        image: postgres
"#;

#[test]
fn statefulset_parallel_with_start_ordinal() {
    let s = Server::start_with(&["--disable-scheduler", "--node-monitor-grace-period=1h"]);
    s.ok_stdin(&["apply", "-f", "-"], STS_PARALLEL);
    // Parallel: all at once, without waiting for readiness.
    eventually(30, "3 pods", || {
        let names: Vec<String> = live_pods(&s, "app=db").into_keys().collect();
        (names == ["db-5", "db-6", "db-7"]).then_some(())
    });
    s.ok(&["scale", "statefulset/db", "--replicas=1"]);
    eventually(30, "1 pod", || {
        let names: Vec<String> = live_pods(&s, "app=db").into_keys().collect();
        (names == ["db-5"]).then_some(())
    });
    eventually(30, "status", || {
        let sts = s.json(&["get", "statefulset", "db"]);
        (sts["status"]["replicas"] == 1 && sts["status"]["observedGeneration"] == 2).then_some(())
    });
}

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: c
        image: agent:1
"#;

#[test]
fn daemonset_on_every_node_new_nodes_taints_rollout() {
    let s = Server::start_with(&["--disable-scheduler", "--node-monitor-grace-period=1h"]);
    for n in ["n1", "n2", "n3"] {
        add_node(&s, n);
    }
    add_node(&s, "tainted");
    s.ok(&["taint", "node", "tainted", "dedicated=infra:NoSchedule"]);
    s.ok_stdin(&["apply", "-f", "-"], DS);

    let nodes_of = |s: &Server| {
        let mut v: Vec<String> = live_pods(s, "app=agent")
            .values()
            .filter_map(target_node)
            .collect();
        v.sort();
        v
    };
    eventually(30, "one pod on each untainted node", || {
        (nodes_of(&s) == ["n1", "n2", "n3"]).then_some(())
    });
    let pods = live_pods(&s, "app=agent");
    let pod = pods.values().next().unwrap();
    assert!(pod["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("agent-"));
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
    assert!(pod["metadata"]["labels"]["pod-template-generation"].is_string());
    let tolerations: Vec<String> = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap(),
                t["effect"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/unschedulable:NoSchedule",
    ] {
        assert!(tolerations.iter().any(|t| t == want), "{tolerations:?}");
    }
    eventually(30, "status before readiness", || {
        let ds = s.json(&["get", "daemonset", "agent"]);
        (ds["status"]["desiredNumberScheduled"] == 3 && ds["status"]["currentNumberScheduled"] == 3)
            .then_some(())
    });

    let kubelet = Kubelet::new();
    std::thread::scope(|scope| {
        scope.spawn(|| kubelet.run(&s, "app=agent", "n1"));
        let out = s.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"]);
        assert!(
            out.contains("daemon set \"agent\" successfully rolled out"),
            "{out}"
        );

        // A node added later gets one too.
        add_node(&s, "n4");
        eventually(30, "a pod on n4", || {
            (nodes_of(&s) == ["n1", "n2", "n3", "n4"]).then_some(())
        });
        eventually(30, "4 ready", || {
            let ds = s.json(&["get", "daemonset", "agent"]);
            (ds["status"]["numberReady"] == 4 && ds["status"]["numberAvailable"] == 4).then_some(())
        });

        // Rolling update, one node at a time (maxUnavailable 1).
        s.ok(&["set", "image", "daemonset/agent", "c=agent:2"]);
        let out = s.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        eventually(30, "all pods at agent:2", || {
            let pods = live_pods(&s, "app=agent");
            (pods.len() == 4 && pods.values().all(|p| image(p) == "agent:2")).then_some(())
        });
        let hist = s.ok(&["rollout", "history", "daemonset/agent"]);
        let revs: Vec<&str> = hist
            .lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(revs, ["1", "2"], "{hist}");
        let out = s.ok(&["rollout", "undo", "daemonset/agent"]);
        assert!(out.contains("rolled back"), "{out}");
        let out = s.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        eventually(30, "all pods back at agent:1", || {
            let pods = live_pods(&s, "app=agent");
            (pods.len() == 4 && pods.values().all(|p| image(p) == "agent:1")).then_some(())
        });

        // Removing the taint makes the node eligible.
        s.ok(&["taint", "node", "tainted", "dedicated=infra:NoSchedule-"]);
        eventually(30, "a pod on the untainted node", || {
            (nodes_of(&s) == ["n1", "n2", "n3", "n4", "tainted"]).then_some(())
        });
        // A NoExecute taint evicts the daemon pod.
        s.ok(&["taint", "node", "n4", "evict=now:NoExecute"]);
        eventually(30, "no pod on n4", || {
            (nodes_of(&s) == ["n1", "n2", "n3", "tainted"]).then_some(())
        });
        eventually(30, "status", || {
            let ds = s.json(&["get", "daemonset", "agent"]);
            (ds["status"]["desiredNumberScheduled"] == 4
                && ds["status"]["numberMisscheduled"] == 0
                && ds["status"]["updatedNumberScheduled"] == 4)
                .then_some(())
        });
        kubelet.stop.store(true, Ordering::SeqCst);
    });
}
