//! Lifecycle hooks, resource limits and securityContext on a real local
//! node (containerd + runc), observed through kubectl and a hostPath
//! directory the containers write into: a postStart hook's file printed
//! by the main container; preStop hooks (exec, and httpGet to a named
//! port) that run on delete before SIGTERM; a failing postStart (`FailedPostStartHook`); a container over
//! its 20Mi memory limit ending `OOMKilled`; runAsUser/runAsGroup/
//! supplementalGroups; readOnlyRootFilesystem; dropped capabilities,
//! no_new_privs and RuntimeDefault seccomp against a plain container;
//! runAsNonRoot on a root image (`CreateContainerConfigError`); a second
//! deletion shortening the grace period; activeDeadlineSeconds (and
//! lowering it on a running pod) ending a pod `DeadlineExceeded`. Skipped,
//! with the reason printed, where containerd cannot run.

mod support;

use std::path::Path;

use serde_json::Value;
use support::eventually;

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().filter(|s| !s.is_empty())
}

fn terminated(p: &Value, i: usize) -> Option<&Value> {
    let t = &p["status"]["containerStatuses"][i]["state"]["terminated"];
    t.is_object().then_some(t)
}

fn pods(out_dir: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hooks}}
spec:
  terminationGracePeriodSeconds: 20
  volumes:
  - name: out
    hostPath: {{path: "{out_dir}", type: Directory}}
  containers:
  - name: main
    image: busybox:stable
    imagePullPolicy: Never
    volumeMounts: [{{name: out, mountPath: /out}}]
    command:
    - sh
    - -c
    - |
      trap '[ -f /out/prestop ] && echo after-prestop > /out/term; exit 0' TERM
      for i in $(seq 100); do [ -f /tmp/started ] && break; sleep 0.1; done
      cat /tmp/started
      while true; do sleep 1; done
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "echo poststart-ran > /tmp/started"]}}
      preStop:
        exec: {{command: [sh, -c, "sleep 1; echo prestop-ran > /out/prestop"]}}
  - name: web
    image: busybox:stable
    imagePullPolicy: Never
    volumeMounts: [{{name: out, mountPath: /out}}]
    ports: [{{name: http, containerPort: 8080}}]
    command:
    - sh
    - -c
    - |
      mkdir -p /www/cgi-bin
      cat > /www/cgi-bin/stop <<'EOF'
      #!/bin/sh
      echo "$REQUEST_METHOD $HTTP_USER_AGENT" > /out/http-prestop
      printf 'Content-Type: text/plain\r\n\r\nok\n'
      EOF
      chmod +x /www/cgi-bin/stop
      trap 'exit 0' TERM
      httpd -f -p 8080 -h /www &
      wait
    readinessProbe:
      tcpSocket: {{port: http}}
      periodSeconds: 1
    lifecycle:
      preStop:
        httpGet: {{path: /cgi-bin/stop, port: http}}
---
apiVersion: v1
kind: Pod
metadata: {{name: stubborn}}
spec:
  terminationGracePeriodSeconds: 600
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: badhook}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: [sleep, "3600"]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "exit 3"]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: oom}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox:stable
    imagePullPolicy: Never
    # A moment first: containerd (cgroup v1) watches for the container's
    # OOM only once it has started it; an OOM in the first milliseconds
    # can go unseen and read as a plain SIGKILL (Error).
    command: [sh, -c, "sleep 1; exec dd if=/dev/zero of=/dev/null bs=200M count=1"]
    resources:
      limits: {{memory: 20Mi}}
---
apiVersion: v1
kind: Pod
metadata: {{name: user}}
spec:
  restartPolicy: Never
  securityContext: {{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000]}}
  containers:
  - name: id
    image: busybox:stable
    imagePullPolicy: Never
    command: [sh, -c, "echo uid=$(id -u) gid=$(id -g) groups=$(id -G)"]
---
apiVersion: v1
kind: Pod
metadata: {{name: ro}}
spec:
  restartPolicy: Never
  containers:
  - name: ro
    image: busybox:stable
    imagePullPolicy: Never
    command: [sh, -c, "touch /x && echo root-writable || echo root-read-only; touch /tmp/y 2>/dev/null || echo tmp-read-only"]
    securityContext: {{readOnlyRootFilesystem: true}}
---
apiVersion: v1
kind: Pod
metadata: {{name: caps}}
spec:
  restartPolicy: Never
  containers:
  - name: locked
    image: busybox:stable
    imagePullPolicy: Never
    command: &probe [sh, -c, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; touch /tmp/f; chown 1 /tmp/f && echo chown-ok || echo chown-denied"]
    securityContext:
      capabilities: {{drop: [ALL]}}
      allowPrivilegeEscalation: false
      seccompProfile: {{type: RuntimeDefault}}
  - name: plain
    image: busybox:stable
    imagePullPolicy: Never
    command: *probe
---
apiVersion: v1
kind: Pod
metadata: {{name: deadline}}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: lowered}}
spec:
  activeDeadlineSeconds: 3600
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: [sleep, "3600"]
---
apiVersion: v1
kind: Pod
metadata: {{name: nonroot}}
spec:
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: c
    image: busybox:stable
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#
    )
}

#[test]
fn hooks_limits_and_security_contexts() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().display().to_string();
    let Some(s) = support::local_node("lifecycle-node", &[]) else {
        return;
    };
    s.ok_stdin(&["apply", "-f", "-"], &pods(&out_dir));

    // postStart: the file it wrote is what the container prints.
    eventually(60, "hooks logs the postStart file", || {
        let logs = s.kubectl(&["logs", "hooks", "-c", "main"]);
        String::from_utf8_lossy(&logs.stdout)
            .contains("poststart-ran")
            .then_some(())
    });
    let p = s.json(&["get", "pod", "hooks"]);
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    assert_eq!(p["status"]["qosClass"], "BestEffort", "{p}");

    // A failing postStart: event, and the container is killed.
    eventually(60, "FailedPostStartHook for badhook", || {
        let ev = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=badhook",
        ]);
        (ev.contains("FailedPostStartHook") && ev.contains("PostStartHook failed")).then_some(())
    });
    eventually(60, "badhook's container terminated", || {
        let p = s.json(&["get", "pod", "badhook"]);
        let cs = &p["status"]["containerStatuses"][0];
        (cs["state"]["terminated"].is_object() || cs["lastState"]["terminated"].is_object())
            .then_some(())
    });

    // Over its memory limit: OOMKilled.
    let p = eventually(90, "oom terminated", || {
        let p = s.json(&["get", "pod", "oom"]);
        terminated(&p, 0).is_some().then_some(p)
    });
    let t = terminated(&p, 0).unwrap();
    assert_eq!(t["reason"], "OOMKilled", "{p}");
    assert_eq!(t["exitCode"], 137, "{p}");
    assert_eq!(p["status"]["phase"], "Failed", "{p}");
    assert_eq!(p["status"]["qosClass"], "Burstable", "{p}");

    // activeDeadlineSeconds: stopped (grace 1 s; `sleep` ignores SIGTERM)
    // and Failed, never restarted.
    let p = eventually(60, "deadline Failed", || {
        let p = s.json(&["get", "pod", "deadline"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(p["status"]["reason"], "DeadlineExceeded", "{p}");
    assert_eq!(
        p["status"]["message"], "Pod was active on the node longer than the specified deadline",
        "{p}"
    );
    let t = terminated(&p, 0).unwrap_or_else(|| panic!("{p}"));
    assert_eq!(t["exitCode"], 137, "{p}");
    assert_eq!(t["reason"], "Error", "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{p}"
    );
    let ev = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=deadline,reason=DeadlineExceeded,type=Normal",
    ]);
    assert!(
        ev.contains("Pod was active on the node longer than the specified deadline"),
        "{ev}"
    );
    // Lowered on a running pod (the one spec change a pod allows): it
    // takes effect.
    eventually(60, "lowered Running", || {
        let p = s.json(&["get", "pod", "lowered"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    s.ok(&[
        "patch",
        "pod",
        "lowered",
        "-p",
        r#"{"spec":{"activeDeadlineSeconds":1}}"#,
    ]);
    let p = eventually(30, "lowered Failed", || {
        let p = s.json(&["get", "pod", "lowered"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(p["status"]["reason"], "DeadlineExceeded", "{p}");

    // Users and groups.
    eventually(60, "user Succeeded", || {
        let p = s.json(&["get", "pod", "user"]);
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    let logs = s.ok(&["logs", "user"]);
    assert_eq!(logs.trim(), "uid=1000 gid=3000 groups=3000 4000", "{logs}");

    // A read-only root.
    eventually(60, "ro Succeeded", || {
        let p = s.json(&["get", "pod", "ro"]);
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    let logs = s.ok(&["logs", "ro"]);
    assert!(logs.contains("root-read-only"), "{logs}");
    assert!(logs.contains("tmp-read-only"), "{logs}");
    assert!(!logs.contains("root-writable"), "{logs}");

    // Capabilities, no_new_privs and seccomp, against a plain container.
    eventually(60, "caps Succeeded", || {
        let p = s.json(&["get", "pod", "caps"]);
        (p["status"]["phase"] == "Succeeded").then_some(())
    });
    let locked = s.ok(&["logs", "caps", "-c", "locked"]);
    let plain = s.ok(&["logs", "caps", "-c", "plain"]);
    let field = |logs: &str, name: &str| -> String {
        logs.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(field(&locked, "NoNewPrivs"), "1", "{locked}");
    assert_eq!(field(&plain, "NoNewPrivs"), "0", "{plain}");
    assert_eq!(field(&locked, "Seccomp"), "2", "{locked}");
    assert_eq!(field(&plain, "Seccomp"), "0", "{plain}");
    assert!(locked.contains("chown-denied"), "{locked}");
    assert!(plain.contains("chown-ok"), "{plain}");

    // runAsNonRoot with an image that runs as root.
    let p = eventually(60, "nonroot CreateContainerConfigError", || {
        let p = s.json(&["get", "pod", "nonroot"]);
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        (w["reason"] == "CreateContainerConfigError").then_some(p)
    });
    let uid = p["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"nonroot_default({uid})\", container: c)"
        ),
        "{p}"
    );

    // A second deletion shortens the grace period: `sleep` (pid 1)
    // ignores SIGTERM, and the first deletion's 600 s do not hold.
    eventually(60, "stubborn Running", || {
        let p = s.json(&["get", "pod", "stubborn"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    s.ok(&["delete", "pod", "stubborn", "--wait=false"]);
    let p = s.json(&["get", "pod", "stubborn"]);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 600, "{p}");
    s.ok(&[
        "delete",
        "pod",
        "stubborn",
        "--grace-period=1",
        "--wait=false",
    ]);
    eventually(60, "stubborn gone after the shorter grace period", || {
        let out = s.kubectl(&["get", "pod", "stubborn"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("NotFound")
            .then_some(())
    });

    // preStop on delete: it runs (in the still running container) before
    // SIGTERM, and the delete waits for both.
    eventually(60, "hooks Ready", || {
        let p = s.json(&["get", "pod", "hooks"]);
        let ready = p["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(())
    });
    s.ok(&["delete", "pod", "hooks", "--timeout=60s"]);
    assert_eq!(
        read(&out.path().join("prestop")).as_deref(),
        Some("prestop-ran\n")
    );
    assert_eq!(
        read(&out.path().join("term")).as_deref(),
        Some("after-prestop\n")
    );
    // An httpGet preStop, to the pod IP and the named port.
    assert_eq!(
        read(&out.path().join("http-prestop")).as_deref(),
        Some("GET kube-lifecycle/1.33\n")
    );
    let ev = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hooks",
    ]);
    assert!(ev.contains("Stopping container main"), "{ev}");
    // The kubelet's container events, with its messages.
    for want in [
        "Container image \"busybox:stable\" already present on machine",
        "Created container: main",
        "Started container web",
    ] {
        assert!(ev.contains(want), "no {want:?} in:\n{ev}");
    }
}
