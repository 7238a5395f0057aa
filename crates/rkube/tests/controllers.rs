//! The controller manager against the real binary, driven by kubectl.

mod support;

use std::time::Duration;

use support::{eventually, Server};

fn pod_names(s: &Server, selector: &str) -> Vec<String> {
    let v = s.json(&["get", "pods", "-l", selector, "-o", "json"]);
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx
"#;

#[test]
fn replicaset_keeps_its_replicas_and_adopts_and_releases() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok_stdin(&["apply", "-f", "-"], RS);
    let pods = eventually(30, "3 pods", || {
        let p = pod_names(&s, "app=web");
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        assert!(p.starts_with("web-"), "{p}");
        let owner = s.json(&["get", "pod", p, "-o", "json"]);
        assert_eq!(
            owner["metadata"]["ownerReferences"][0]["kind"],
            "ReplicaSet"
        );
        assert_eq!(owner["metadata"]["ownerReferences"][0]["controller"], true);
    }
    // Desired 3, actual 2: the controller makes it 3 again.
    s.ok(&["delete", "pod", &pods[0], "--wait=false"]);
    eventually(30, "a replacement pod", || {
        let p = pod_names(&s, "app=web");
        (p.len() == 3 && !p.contains(&pods[0])).then_some(())
    });
    eventually(30, "status.replicas 3", || {
        let rs = s.json(&["get", "rs", "web", "-o", "json"]);
        (rs["status"]["replicas"] == 3 && rs["status"]["observedGeneration"] == 1).then_some(())
    });
    // Scale down: surplus pods go.
    s.ok(&["scale", "rs", "web", "--replicas=1"]);
    eventually(30, "1 pod", || {
        (pod_names(&s, "app=web").len() == 1).then_some(())
    });
    // A relabelled pod is released (and replaced).
    let only = pod_names(&s, "app=web").remove(0);
    s.ok(&["label", "pod", &only, "app=moved", "--overwrite"]);
    eventually(30, "release and replacement", || {
        let moved = s.json(&["get", "pod", &only, "-o", "json"]);
        (moved["metadata"]["ownerReferences"].is_null() && pod_names(&s, "app=web").len() == 1)
            .then_some(())
    });
    // Labelled back, the orphan is adopted and the surplus deleted.
    s.ok(&["label", "pod", &only, "app=web", "--overwrite"]);
    eventually(30, "adoption and scale back to 1", || {
        let p = pod_names(&s, "app=web");
        (p.len() == 1).then_some(())
    });
    // Events are recorded for the ReplicaSet.
    let describe = s.ok(&["describe", "rs", "web"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
}

fn rs_yaml(name: &str, replicas: u32) -> String {
    RS.replace("name: web", &format!("name: {name}"))
        .replace("app: web", &format!("app: {name}"))
        .replace("replicas: 3", &format!("replicas: {replicas}"))
}

#[test]
fn cascading_deletes_in_three_modes_and_namespace_cleanup() {
    let s = Server::start_with(&["--disable-scheduler"]);
    for name in ["bg", "fg", "orph"] {
        s.ok_stdin(&["apply", "-f", "-"], &rs_yaml(name, 2));
    }
    for name in ["bg", "fg", "orph"] {
        eventually(30, "2 pods each", || {
            (pod_names(&s, &format!("app={name}")).len() == 2).then_some(())
        });
    }
    // Background: the owner goes at once, the pods after it.
    s.ok(&["delete", "rs", "bg", "--cascade=background"]);
    eventually(30, "bg pods collected", || {
        pod_names(&s, "app=bg").is_empty().then_some(())
    });
    // Foreground: the pods go (the owner waits for them, then goes).
    s.ok(&["delete", "rs", "fg", "--cascade=foreground"]);
    eventually(30, "fg pods and owner gone", || {
        let gone = s.kubectl(&["get", "rs", "fg"]);
        (pod_names(&s, "app=fg").is_empty() && !gone.status.success()).then_some(())
    });
    // Orphan: the pods stay, without owner references.
    s.ok(&["delete", "rs", "orph", "--cascade=orphan"]);
    eventually(30, "orphans released", || {
        let v = s.json(&["get", "pods", "-l", "app=orph", "-o", "json"]);
        let items = v["items"].as_array().unwrap().clone();
        (items.len() == 2
            && items
                .iter()
                .all(|p| p["metadata"]["ownerReferences"].is_null()))
        .then_some(())
    });
    assert!(!s.kubectl(&["get", "rs", "orph"]).status.success());

    // A namespace gets a default service account; deleting it deletes its
    // content and then the namespace.
    s.ok(&["create", "namespace", "scratch"]);
    eventually(30, "default service account", || {
        s.kubectl(&["get", "serviceaccount", "default", "-n", "scratch"])
            .status
            .success()
            .then_some(())
    });
    s.ok(&[
        "create",
        "configmap",
        "c1",
        "-n",
        "scratch",
        "--from-literal=a=b",
    ]);
    s.ok_stdin(&["apply", "-n", "scratch", "-f", "-"], &rs_yaml("inns", 1));
    s.ok(&["delete", "namespace", "scratch", "--wait=false"]);
    eventually(60, "namespace removed", || {
        (!s.kubectl(&["get", "namespace", "scratch"]).status.success()).then_some(())
    });
}

#[test]
fn endpoints_and_slices_follow_pods() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok(&["create", "service", "clusterip", "web", "--tcp=80:8080"]);
    for (name, ip, ready) in [("p1", "10.42.0.11", "True"), ("p2", "10.42.0.12", "False")] {
        s.ok(&[
            "run",
            name,
            "--image=nginx",
            "--labels=app=web",
            "--overrides",
            r#"{"spec":{"nodeName":"n1"}}"#,
        ]);
        let status = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{ready}"}}]}}}}"#
        );
        s.ok(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
    }
    let ep = eventually(30, "endpoints with both pods", || {
        let out = s.kubectl(&["get", "endpoints", "web", "-o", "json"]);
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let subset = v["subsets"][0].clone();
        (subset["addresses"].as_array().map(Vec::len) == Some(1)
            && subset["notReadyAddresses"].as_array().map(Vec::len) == Some(1))
        .then_some(v)
    });
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "10.42.0.11");
    assert_eq!(ep["subsets"][0]["addresses"][0]["targetRef"]["name"], "p1");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    let wide = s.ok(&["get", "endpoints", "web"]);
    assert!(wide.contains("10.42.0.11:8080"), "{wide}");

    let slices = s.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
        "-o",
        "json",
    ]);
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    let eps = slice["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert_eq!(eps[0]["conditions"]["ready"], true);
    assert_eq!(eps[1]["conditions"]["ready"], false);

    // A pod going away leaves; the service going away takes both along.
    s.ok(&["delete", "pod", "p2", "--grace-period=0", "--force"]);
    eventually(30, "p2 gone from endpoints", || {
        let v = s.json(&["get", "endpoints", "web", "-o", "json"]);
        v["subsets"][0]["notReadyAddresses"].is_null().then_some(())
    });
    s.ok(&["delete", "service", "web"]);
    eventually(30, "endpoints and slices removed", || {
        let ep = s.kubectl(&["get", "endpoints", "web"]);
        let sl = s.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "json",
        ]);
        (!ep.status.success() && sl["items"].as_array().unwrap().is_empty()).then_some(())
    });
}

#[test]
fn resource_quota_usage_and_pdb_status() {
    let s = Server::start_with(&["--disable-scheduler"]);
    s.ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=10,requests.cpu=2,configmaps=5,count/deployments.apps=3",
    ]);
    s.ok(&["run", "p", "--image=nginx", "--labels=app=q", "--overrides",
        r#"{"spec":{"containers":[{"name":"p","image":"nginx","resources":{"requests":{"cpu":"250m"}}}]}}"#]);
    s.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=0"]);
    eventually(30, "quota usage", || {
        let q = s.json(&["get", "quota", "q", "-o", "json"]);
        let used = &q["status"]["used"];
        (used["pods"] == "1"
            && used["requests.cpu"] == "250m"
            && used["count/deployments.apps"] == "1")
            .then_some(())
    });
    let describe = s.ok(&["describe", "quota", "q"]);
    assert!(
        describe.contains("requests.cpu") && describe.contains("250m"),
        "{describe}"
    );

    // A PodDisruptionBudget over one not-ready pod allows no disruption.
    s.ok(&[
        "create",
        "pdb",
        "b",
        "--selector=app=q",
        "--min-available=1",
    ]);
    eventually(30, "pdb status", || {
        let b = s.json(&["get", "pdb", "b", "-o", "json"]);
        (b["status"]["expectedPods"] == 1
            && b["status"]["disruptionsAllowed"] == 0
            && b["status"]["currentHealthy"] == 0)
            .then_some(())
    });
}

#[test]
fn volumes_bind_and_local_path_provisions() {
    let s = Server::start_with(&["--disable-scheduler"]);
    eventually(30, "default local-path class", || {
        let out = s.kubectl(&["get", "storageclass"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("local-path (default)").then_some(())
    });
    let static_pv = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: manual}
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /tmp/manual}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: static}
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: dynamic}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;
    s.ok_stdin(&["apply", "-f", "-"], static_pv);
    eventually(30, "static claim bound", || {
        let c = s.json(&["get", "pvc", "static", "-o", "json"]);
        (c["status"]["phase"] == "Bound" && c["spec"]["volumeName"] == "manual").then_some(())
    });
    let pv = s.json(&["get", "pv", "manual", "-o", "json"]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(pv["spec"]["claimRef"]["name"], "static");
    // WaitForFirstConsumer: pending until a pod using it is on a node.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.json(&["get", "pvc", "dynamic", "-o", "json"])["status"]["phase"],
        "Pending"
    );
    s.ok(&["run", "user", "--image=nginx", "--overrides",
        r#"{"spec":{"nodeName":"n1","volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"dynamic"}}],"containers":[{"name":"user","image":"nginx","volumeMounts":[{"name":"d","mountPath":"/data"}]}]}}"#]);
    let claim = eventually(30, "dynamic claim provisioned", || {
        let c = s.json(&["get", "pvc", "dynamic", "-o", "json"]);
        (c["status"]["phase"] == "Bound").then_some(c)
    });
    let volume = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let pv = s.json(&["get", "pv", &volume, "-o", "json"]);
    assert_eq!(pv["spec"]["storageClassName"], "local-path");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"][0],
        "n1"
    );
    // Deleting claims: Delete removes the volume, Retain releases it.
    s.ok(&["delete", "pod", "user", "--grace-period=0", "--force"]);
    s.ok(&["delete", "pvc", "dynamic", "static"]);
    eventually(30, "volumes reclaimed", || {
        let gone = !s.kubectl(&["get", "pv", &volume]).status.success();
        let released =
            s.json(&["get", "pv", "manual", "-o", "json"])["status"]["phase"] == "Released";
        (gone && released).then_some(())
    });
}
