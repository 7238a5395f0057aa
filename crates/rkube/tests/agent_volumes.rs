//! The real node agent's container environment and volumes, observed
//! through a hostPath volume the containers write into: env from a
//! ConfigMap, a Secret and pod fields; a missing ConfigMap
//! (`CreateContainerConfigError`, then running once it exists); a configMap
//! volume following an update; a secret volume's mode; an emptyDir shared
//! by two containers; a projected service account token; a PersistentVolumeClaim on a
//! hostPath PersistentVolume; the
//! ClusterFirst resolv.conf and the kubelet-managed /etc/hosts. Skipped, with the
//! reason printed, where containerd cannot run.

mod support;

use std::path::Path;

use support::eventually;

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().filter(|s| !s.is_empty())
}

#[test]
fn env_and_volumes_reach_the_containers() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().display().to_string();
    let Some(s) = support::local_node("vol-node", &["--cluster-dns=10.99.0.10"]) else {
        return;
    };
    s.ok(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=k=v1",
        "--from-literal=FROM_CM=yes",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=pw=hunter2",
    ]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {{app: vols}}
spec:
  restartPolicy: Never
  volumes:
  - name: out
    hostPath: {{path: "{out_dir}", type: Directory}}
  - name: cm
    configMap: {{name: cm}}
  - name: sec
    secret: {{secretName: sec, defaultMode: 0400}}
  - name: shared
    emptyDir: {{}}
  - name: claim
    persistentVolumeClaim: {{claimName: data}}
  - name: tok
    projected:
      sources:
      - serviceAccountToken: {{path: token, expirationSeconds: 3600}}
  containers:
  - name: main
    image: busybox:stable
    imagePullPolicy: Never
    envFrom:
    - configMapRef: {{name: cm}}
      prefix: CM_
    env:
    - name: FROM_KEY
      valueFrom: {{configMapKeyRef: {{name: cm, key: k}}}}
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: sec, key: pw}}}}
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: COMBINED
      value: "$(POD_NAME)-$(FROM_KEY)"
    command: ["sh", "-c", "while true; do env > /out/env.tmp && mv /out/env.tmp /out/env; cat /etc/cm/k > /out/cm.tmp && mv /out/cm.tmp /out/cm; stat -L -c %a /etc/sec/pw > /out/secmode; cat /shared/x > /out/shared 2>/dev/null; wc -c < /var/run/tok/token > /out/token; cat /etc/resolv.conf > /out/resolv; cat /etc/hosts > /out/hosts; echo on-claim > /claim/marker; sleep 0.5; done"]
    volumeMounts:
    - {{name: out, mountPath: /out}}
    - {{name: cm, mountPath: /etc/cm}}
    - {{name: sec, mountPath: /etc/sec}}
    - {{name: shared, mountPath: /shared}}
    - {{name: tok, mountPath: /var/run/tok}}
    - {{name: claim, mountPath: /claim}}
  - name: writer
    image: busybox:stable
    imagePullPolicy: Never
    command: ["sh", "-c", "echo from-writer > /shared/x; sleep 3600"]
    volumeMounts:
    - {{name: shared, mountPath: /shared}}
"#
    );
    // A claim bound to a hostPath PersistentVolume.
    let pv_dir = tempfile::tempdir().unwrap();
    let pv = format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: vols-pv}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: "{}"}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
  volumeName: vols-pv
  storageClassName: ""
"#,
        pv_dir.path().display()
    );
    s.ok_stdin(&["apply", "-f", "-"], &pv);
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let o = out.path();
    let env = eventually(60, "the container's env", || read(&o.join("env")));
    for want in [
        "FROM_KEY=v1",
        "PASSWORD=hunter2",
        "POD_NAME=vols",
        "COMBINED=vols-v1",
        "CM_k=v1",
        "CM_FROM_CM=yes",
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from:\n{env}"
        );
    }
    assert_eq!(eventually(30, "cm file", || read(&o.join("cm"))), "v1");
    assert_eq!(
        eventually(30, "secret mode", || read(&o.join("secmode"))).trim(),
        "400"
    );
    assert_eq!(
        eventually(30, "shared emptyDir", || read(&o.join("shared"))).trim(),
        "from-writer"
    );
    let token_len: usize = eventually(30, "token", || read(&o.join("token")))
        .trim()
        .parse()
        .unwrap();
    assert!(token_len > 20, "token of {token_len} bytes");

    assert_eq!(
        eventually(30, "file on the claim", || read(
            &pv_dir.path().join("marker")
        ))
        .trim(),
        "on-claim"
    );

    // DNS: ClusterFirst, and the kubelet-managed hosts file.
    let resolv = eventually(30, "resolv.conf", || read(&o.join("resolv")));
    for want in ["nameserver 10.99.0.10", "options ndots:5"] {
        assert!(
            resolv.lines().any(|l| l == want),
            "{want} missing from:\n{resolv}"
        );
    }
    let search = resolv
        .lines()
        .find(|l| l.starts_with("search "))
        .unwrap_or_default();
    assert!(
        search.starts_with("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let hosts = eventually(30, "hosts", || read(&o.join("hosts")));
    let pod = s.json(&["get", "pod", "vols", "-o", "json"]);
    let ip = pod["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file."),
        "{hosts}"
    );
    assert!(hosts.lines().any(|l| l == format!("{ip}\tvols")), "{hosts}");

    // The configMap volume follows an update.
    let updated = s.ok(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=k=v2",
        "--from-literal=FROM_CM=yes",
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    s.ok_stdin(&["apply", "-f", "-"], &updated);
    eventually(30, "cm file updated", || {
        (read(&o.join("cm"))? == "v2").then_some(())
    });

    // A missing ConfigMap: CreateContainerConfigError until it exists.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: waits}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env:
    - name: X
      valueFrom: {configMapKeyRef: {name: later, key: x}}
"#,
    );
    let waiting = eventually(60, "CreateContainerConfigError", || {
        let p = s.json(&["get", "pod", "waits", "-o", "json"]);
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert_eq!(waiting["message"], "configmap \"later\" not found");
    s.ok(&["create", "configmap", "later", "--from-literal=x=1"]);
    eventually(30, "waits Running", || {
        let p = s.json(&["get", "pod", "waits", "-o", "json"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    s.ok(&[
        "delete",
        "pod",
        "vols",
        "waits",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}
