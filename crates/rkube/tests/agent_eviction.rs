//! Node-pressure eviction on a real local node (containerd + runc) whose
//! data dir — the node filesystem, with the runtime's images on it — is a
//! 256 MiB tmpfs, with `--eviction-hard=nodefs.available<40%,...` and a
//! 5 s pressure transition period:
//!
//! 0. a pod writing more than its emptyDir's `sizeLimit` is evicted at
//!    once, pressure or not ("Usage of EmptyDir volume ... exceeds the
//!    limit ...");
//! 1. a ballast file in the data dir puts the node under DiskPressure:
//!    the condition (KubeletHasDiskPressure) and the
//!    `node.kubernetes.io/disk-pressure:NoSchedule` taint appear, an
//!    `EvictionThresholdMet` event is recorded on the node; a pod bound to
//!    the node is rejected (Failed, Evicted, "Pod was rejected: The node
//!    had condition: [DiskPressure]. "), one left to the scheduler stays
//!    unscheduled;
//! 2. with part of the ballast gone, above the threshold but short of
//!    `--eviction-minimum-reclaim`, the pressure holds; without the
//!    ballast the condition goes back to False, the taint goes, the
//!    waiting pod is scheduled and runs;
//! 3. a ReplicaSet's BestEffort pod fills an emptyDir next to a small
//!    pod: it (and only it) is evicted — Failed, reason Evicted, the
//!    kubelet's message, a DisruptionTarget condition (TerminationByKubelet),
//!    an `Evicted` event — and is not started again; the ReplicaSet
//!    replaces it (its second pod finds the marker and does not fill);
//!    the emptyDir goes with the evicted pod and the pressure with it.
//!
//! And with `--eviction-hard=memory.available<100%` (always met: memory
//! pressure without exhausting the machine): MemoryPressure
//! (KubeletHasInsufficientMemory) and its taint; a BestEffort pod is
//! rejected, Burstable ones are admitted and then evicted one per pass,
//! first the one using more memory than it requests, with the kubelet's
//! message naming the container.
//!
//! Skipped, with the reason printed, where containerd cannot run or a
//! tmpfs cannot be mounted.

mod support;

use serde_json::Value;
use support::eventually;

const NODE: &str = "evict-node";

fn condition<'a>(v: &'a Value, type_: &str) -> Option<&'a Value> {
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn disk_pressure(node: &support::LocalNode) -> Option<(String, String)> {
    let n = node.json(&["get", "node", NODE, "-o", "json"]);
    let c = condition(&n, "DiskPressure")?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
    ))
}

fn tainted(node: &support::LocalNode) -> bool {
    let n = node.json(&["get", "node", NODE, "-o", "json"]);
    n["spec"]["taints"].as_array().is_some_and(|ts| {
        ts.iter()
            .any(|t| t["key"] == "node.kubernetes.io/disk-pressure" && t["effect"] == "NoSchedule")
    })
}

fn pod(node: &support::LocalNode, name: &str) -> Value {
    node.json(&["get", "pod", name, "-o", "json"])
}

fn events(node: &support::LocalNode, reason: &str) -> Vec<Value> {
    let v = node.json(&["get", "events", "-A", "-o", "json"]);
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason)
        .cloned()
        .collect()
}

#[test]
fn disk_pressure_rejects_then_evicts_the_pod_filling_the_disk() {
    let marker = tempfile::tempdir().unwrap();
    let Some(node) = support::local_node_on_tmpfs(
        NODE,
        &[
            "--eviction-hard=nodefs.available<40%,imagefs.available<40%",
            "--eviction-minimum-reclaim=nodefs.available=20%,imagefs.available=20%",
            "--eviction-pressure-transition-period=5s",
        ],
        "256M",
    ) else {
        return;
    };
    let data = node.data_dir();
    assert_eq!(
        disk_pressure(&node),
        Some(("False".into(), "KubeletHasNoDiskPressure".into())),
        "a fresh node has room: {}",
        node.log()
    );

    // 0. Over its own emptyDir sizeLimit: evicted without node pressure.
    node.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: limited}
spec:
  terminationGracePeriodSeconds: 30
  volumes:
  - {name: scratch, emptyDir: {sizeLimit: 4Mi}}
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    volumeMounts: [{name: scratch, mountPath: /scratch}]
    command: [sh, -c, "dd if=/dev/zero of=/scratch/f bs=1048576 count=8; exec sleep 3600"]
"#,
    );
    let limited = eventually(60, "the pod over its sizeLimit evicted", || {
        let p = pod(&node, "limited");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(limited["status"]["reason"], "Evicted");
    assert_eq!(
        limited["status"]["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"4Mi\". "
    );
    assert_eq!(
        condition(&limited, "DisruptionTarget").unwrap()["reason"],
        "TerminationByKubelet"
    );
    assert_eq!(disk_pressure(&node).unwrap().0, "False");

    // 1. A ballast file: pressure, taint, rejection.
    let ballast = data.join("ballast");
    let out = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1048576", "count=180"])
        .arg(format!("of={}", ballast.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "dd: {out:?}");
    eventually(60, "DiskPressure True", || {
        (disk_pressure(&node) == Some(("True".into(), "KubeletHasDiskPressure".into())))
            .then_some(())
    });
    let n = node.json(&["get", "node", NODE, "-o", "json"]);
    assert_eq!(
        condition(&n, "DiskPressure").unwrap()["message"],
        "kubelet has disk pressure"
    );
    eventually(30, "the disk-pressure taint", || {
        tainted(&node).then_some(())
    });
    eventually(30, "an EvictionThresholdMet event on the node", || {
        events(&node, "EvictionThresholdMet").into_iter().find(|e| {
            e["involvedObject"]["kind"] == "Node"
                && e["involvedObject"]["name"] == NODE
                && e["message"] == "Attempting to reclaim ephemeral-storage"
                && e["type"] == "Warning"
        })
    });
    node.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: bound}}
spec:
  nodeName: {NODE}
  containers:
  - {{name: c, image: busybox:stable, imagePullPolicy: Never, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: waiting}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: busybox:stable, imagePullPolicy: Never, command: [sleep, "3600"]}}
"#
        ),
    );
    let rejected = eventually(30, "the bound pod rejected", || {
        let p = pod(&node, "bound");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(rejected["status"]["reason"], "Evicted");
    assert_eq!(
        rejected["status"]["message"],
        "Pod was rejected: The node had condition: [DiskPressure]. "
    );
    assert!(
        rejected["status"]["containerStatuses"]
            .as_array()
            .is_none_or(|cs| cs.iter().all(|c| c["state"]["running"].is_null())),
        "a rejected pod never runs: {rejected}"
    );
    eventually(30, "the waiting pod unschedulable", || {
        let p = pod(&node, "waiting");
        let c = condition(&p, "PodScheduled")?;
        (c["status"] == "False" && p["spec"]["nodeName"].is_null()).then_some(())
    });

    // 2. Above the threshold but short of its minimum reclaim (40% + 20%):
    // the pressure holds. Then room again: the condition and the taint
    // go, the pod runs.
    let (avail, size) = df(&data);
    let shrink = size / 2 - avail;
    let len = std::fs::metadata(&ballast).unwrap().len();
    assert!(
        shrink > 0 && shrink < len as i64,
        "avail {avail} of {size}, ballast {len}"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ballast)
        .unwrap()
        .set_len(len - shrink as u64)
        .unwrap();
    let (avail, _) = df(&data);
    assert!(
        avail * 10 > size * 4 && avail * 10 < size * 6,
        "{avail} of {size}"
    );
    // Two monitor passes and the transition period.
    std::thread::sleep(std::time::Duration::from_secs(25));
    assert_eq!(
        disk_pressure(&node).unwrap().0,
        "True",
        "held by the minimum reclaim"
    );
    std::fs::remove_file(&ballast).unwrap();
    eventually(60, "DiskPressure False", || {
        (disk_pressure(&node) == Some(("False".into(), "KubeletHasNoDiskPressure".into())))
            .then_some(())
    });
    eventually(30, "the taint removed", || (!tainted(&node)).then_some(()));
    eventually(120, "the waiting pod running", || {
        (pod(&node, "waiting")["status"]["phase"] == "Running").then_some(())
    });
    // The rejected pod stays rejected.
    assert_eq!(pod(&node, "bound")["status"]["phase"], "Failed");

    // 3. A pod filling its emptyDir is evicted; the small one stays.
    node.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: small}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: c, image: busybox:stable, imagePullPolicy: Never, command: [sleep, "3600"]}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: filler}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: filler}}}}
  template:
    metadata: {{labels: {{app: filler}}}}
    spec:
      terminationGracePeriodSeconds: 30
      volumes:
      - {{name: scratch, emptyDir: {{}}}}
      - {{name: marker, hostPath: {{path: "{}", type: Directory}}}}
      containers:
      - name: fill
        image: busybox:stable
        imagePullPolicy: Never
        volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
        - {{name: marker, mountPath: /marker}}
        command:
        - sh
        - -c
        - |
          if [ ! -e /marker/filled ]; then
            touch /marker/filled
            dd if=/dev/zero of=/scratch/big bs=1048576 count=180
          fi
          exec sleep 3600
"#,
            marker.path().display()
        ),
    );
    let filler_pods = || -> Vec<Value> {
        let v = node.json(&["get", "pods", "-l", "app=filler", "-o", "json"]);
        v["items"].as_array().cloned().unwrap_or_default()
    };
    let evicted = eventually(120, "the filling pod evicted", || {
        filler_pods()
            .into_iter()
            .find(|p| p["status"]["phase"] == "Failed")
    });
    let name = evicted["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(
        marker.path().join("filled").exists(),
        "the evicted pod was the one that filled"
    );
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    let message = evicted["status"]["message"].as_str().unwrap();
    eprintln!("eviction message: {message}");
    assert!(
        message
            .starts_with("The node was low on resource: ephemeral-storage. Threshold quantity: ")
            && message.contains(", available: "),
        "{message}"
    );
    let dt = condition(&evicted, "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(dt["status"], "True");
    assert_eq!(dt["reason"], "TerminationByKubelet");
    assert_eq!(dt["message"].as_str(), Some(message));
    assert!(
        evicted["status"]["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{evicted}"
    );
    eventually(30, "an Evicted event on the pod", || {
        events(&node, "Evicted").into_iter().find(|e| {
            e["involvedObject"]["name"] == name.as_str()
                && e["type"] == "Warning"
                && e["message"].as_str() == Some(message)
        })
    });
    // The ReplicaSet replaces it; the replacement does not fill.
    eventually(120, "a replacement filler pod running", || {
        filler_pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] != name.as_str() && p["status"]["phase"] == "Running")
    });
    // With the evicted pod's emptyDir gone, so is the pressure.
    eventually(60, "DiskPressure False after the eviction", || {
        (disk_pressure(&node) == Some(("False".into(), "KubeletHasNoDiskPressure".into())))
            .then_some(())
    });
    eventually(30, "the taint removed again", || {
        (!tainted(&node)).then_some(())
    });
    let uid = evicted["metadata"]["uid"].as_str().unwrap();
    assert!(
        !data.join("agent/pods").join(uid).join("volumes").exists(),
        "the evicted pod's volumes are torn down"
    );
    // Only the filler went; the evicted pod never ran again.
    assert_eq!(pod(&node, "small")["status"]["phase"], "Running");
    assert_eq!(pod(&node, "waiting")["status"]["phase"], "Running");
    let again = pod(&node, &name);
    assert_eq!(again["status"]["phase"], "Failed");
    assert!(
        again["status"]["containerStatuses"][0]["state"]["running"].is_null(),
        "{again}"
    );
    let evictions = filler_pods()
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Failed")
        .count();
    assert_eq!(evictions, 1);
}

/// Bytes available and the size of the filesystem holding `dir`.
fn df(dir: &std::path::Path) -> (i64, i64) {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail,size"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let nums: Vec<i64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    (nums[0], nums[1])
}

#[test]
fn memory_pressure_rejects_best_effort_and_evicts_the_pod_over_its_request_first() {
    const MEM_NODE: &str = "mem-node";
    let Some(node) = support::local_node(
        MEM_NODE,
        &[
            "--eviction-hard=memory.available<100%",
            "--eviction-pressure-transition-period=5s",
        ],
    ) else {
        return;
    };
    let n = eventually(60, "MemoryPressure True", || {
        let n = node.json(&["get", "node", MEM_NODE, "-o", "json"]);
        (condition(&n, "MemoryPressure")?["status"] == "True").then_some(n)
    });
    let c = condition(&n, "MemoryPressure").unwrap();
    assert_eq!(c["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(c["message"], "kubelet has insufficient memory available");
    assert_eq!(condition(&n, "DiskPressure").unwrap()["status"], "False");
    eventually(30, "the memory-pressure taint", || {
        let n = node.json(&["get", "node", MEM_NODE, "-o", "json"]);
        n["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| {
                t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule"
            })
            .then_some(())
    });
    // Bound to the node directly: the taint keeps the scheduler away.
    node.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: besteffort}}
spec:
  nodeName: {MEM_NODE}
  containers:
  - {{name: c, image: busybox:stable, imagePullPolicy: Never, command: [sleep, "3600"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  nodeName: {MEM_NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: hog
    image: busybox:stable
    imagePullPolicy: Never
    resources: {{requests: {{memory: 1Mi}}}}
    command: [sh, -c, "head -c 40000000 /dev/zero > /dev/shm/hog; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: modest}}
spec:
  nodeName: {MEM_NODE}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    resources: {{requests: {{memory: 1Gi}}}}
    command: [sleep, "3600"]
"#
        ),
    );
    let rejected = eventually(30, "the BestEffort pod rejected", || {
        let p = pod(&node, "besteffort");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(rejected["status"]["reason"], "Evicted");
    assert_eq!(
        rejected["status"]["message"],
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    // Both Burstable pods were admitted; they go one per pass, the one
    // over its request first.
    let (hog, modest) = eventually(120, "both Burstable pods evicted", || {
        let (h, m) = (pod(&node, "hog"), pod(&node, "modest"));
        (h["status"]["phase"] == "Failed" && m["status"]["phase"] == "Failed").then_some((h, m))
    });
    for p in [&hog, &modest] {
        assert_eq!(p["status"]["reason"], "Evicted", "{p}");
        let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
        assert!(t.is_object(), "{p}");
        // Admitted, it ran (a container stopped before it started would
        // be `ContainerStatusUnknown`).
        assert_eq!(t["exitCode"], 137, "{p}");
        assert_eq!(t["reason"], "Error", "{p}");
    }
    let evicted_at = |p: &Value| -> String {
        condition(p, "DisruptionTarget").unwrap()["lastTransitionTime"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        evicted_at(&hog) < evicted_at(&modest),
        "the pod over its request goes first: hog at {}, modest at {}",
        evicted_at(&hog),
        evicted_at(&modest)
    );
    let message = hog["status"]["message"].as_str().unwrap();
    eprintln!("eviction message: {message}");
    assert!(
        message.starts_with("The node was low on resource: memory. Threshold quantity: ")
            && message.contains("Container hog was using ")
            && message.ends_with(", request is 1Mi, has larger consumption of memory. "),
        "{message}"
    );
}
