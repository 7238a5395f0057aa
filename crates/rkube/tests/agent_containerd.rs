//! The real node agent on a real containerd with runc: a node registers,
//! pods run as containers, end with their exit codes, stop on deletion,
//! and an image that is not there gives ErrImagePull/ImagePullBackOff.
//!
//! Needs root, containerd, runc, ctr, busybox-static and the CNI plugins
//! (`scripts/setup`); skipped (with a message) otherwise. The agent runs
//! in-process (`agent::Agent::start`) with its own containerd in the test's
//! data dir, and images from `scripts/build-test-images`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{eventually, missing_node_prerequisite as missing_prerequisite, repo_root, Server};

const NODE: &str = "agent-test-node";

fn pod(name: &str, extra_spec: &str, container: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {NODE}
  terminationGracePeriodSeconds: 5
{extra_spec}
  containers:
  - name: c
{container}
"#
    )
}

/// The pid of the containerd running with this config (ours).
fn containerd_pid(config: &Path) -> Option<u32> {
    let want = config.display().to_string();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("containerd")) && args.contains(&want) {
            return Some(pid);
        }
    }
    None
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status();
}

fn jget<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut v = v;
    for p in path.split('.') {
        v = match p.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[p],
        };
    }
    v
}

#[test]
fn pods_run_as_containers_on_containerd() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping agent_containerd: {why}");
        return;
    }
    let server = Server::start_with(&["--disable-scheduler", "--cluster-cidr=10.41.0.0/16"]);
    let agent_dir = server.dir.path().join("agent-data");
    let images = agent_dir.join("agent/images");
    let out = Command::new(repo_root().join("scripts/build-test-images"))
        .arg(&images)
        .output()
        .expect("run scripts/build-test-images");
    assert!(
        out.status.success(),
        "build-test-images failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RKUBE_TEST_LOG").unwrap_or_else(|_| "agent=info".into()),
        ))
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(runtime::client::from_kubeconfig(&server.kubeconfig()))
        .unwrap();
    let config = agent::Config {
        // Quick heartbeats; a bridge of its own.
        heartbeat_interval: Duration::from_secs(2),
        // Container GC every 2 s instead of every minute.
        container_gc_period: Duration::from_secs(2),
        reserved: agent::kubelet::parse_reserved("--kube-reserved", "cpu=100m,memory=100Mi")
            .unwrap(),
        cni_bridge: "rkube-test0".into(),
        pod_cidr: "10.41.0.0/24".into(),
        masquerade: false,
        // Only near-full disks count (see support::TEST_EVICTION_HARD).
        eviction: agent::eviction::Config::new(
            support::TEST_EVICTION_HARD
                .strip_prefix("--eviction-hard=")
                .unwrap(),
            "",
            "",
            "",
            Duration::from_secs(300),
            0,
        )
        .unwrap(),
        ..agent::Config::new(NODE, &agent_dir)
    };
    let agent = match rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(90), agent::Agent::start(client, config)).await
    }) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => panic!(
            "agent did not start: {e:#}\ncontainerd log:\n{}",
            std::fs::read_to_string(agent_dir.join("agent/containerd/containerd.log"))
                .unwrap_or_default()
        ),
        Err(_) => panic!("agent did not start in 90 s"),
    };
    let socket = agent.runtime_socket().expect("own containerd");
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .unwrap()
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenarios(&server, &agent_dir, &ctr)
    }));
    // Leave nothing running.
    let _ = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), agent.remove_all_pods(0)).await
    });
    drop(agent);
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = Command::new("ip")
        .args(["link", "delete", "rkube-test0"])
        .status();
    if let Err(e) = result {
        eprintln!(
            "containerd log (tail):\n{}",
            std::fs::read_to_string(agent_dir.join("agent/containerd/containerd.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::panic::resume_unwind(e);
    }
}

fn scenarios(server: &Server, agent_dir: &Path, ctr: &dyn Fn(&[&str]) -> std::process::Output) {
    // The images were imported.
    let imgs = String::from_utf8_lossy(&ctr(&["images", "ls", "-q"]).stdout).to_string();
    assert!(
        imgs.contains("rkube.local/pause:3.10")
            && imgs.contains("docker.io/library/busybox:latest")
            && imgs.contains("docker.io/library/busybox:stable"),
        "{imgs}"
    );

    // The node registers and is Ready, with what the host has.
    let node = eventually(30, "the node to be Ready", || {
        let out = server.kubectl(&["get", "node", NODE, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let ready = v["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(v)
    });
    let info = &node["status"]["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{info}"
    );
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(node["status"]["capacity"]["cpu"], cpus.as_str());
    // --kube-reserved comes off allocatable; memory also loses the hard
    // memory.available threshold (100Mi).
    let reserved_cpu = format!("{}m", cpus.parse::<u64>().unwrap() * 1000 - 100);
    assert_eq!(node["status"]["allocatable"]["cpu"], reserved_cpu.as_str());
    let ki = |q: &Value| {
        q.as_str()
            .unwrap()
            .trim_end_matches("Ki")
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(
        ki(&node["status"]["allocatable"]["memory"]),
        ki(&node["status"]["capacity"]["memory"]) - 200 * 1024,
        "{node}"
    );
    assert!(node["status"]["capacity"]["memory"]
        .as_str()
        .unwrap()
        .ends_with("Ki"));
    let lease = server.json(&["get", "lease", "-n", "kube-node-lease", NODE]);
    assert_eq!(lease["spec"]["holderIdentity"], NODE);

    // A pod runs: Running with a containerd container id; its output is in
    // its log file.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "hello",
            "",
            r#"    image: busybox:stable
    command: ["sh", "-c", "trap 'exit 0' TERM; echo hello $GREETING; while true; do sleep 1; done"]
    env:
    - name: GREETING
      value: world"#,
        ),
    );
    let hello = eventually(90, "pod hello to run", || {
        let v = server.json(&["get", "pod", "hello"]);
        (v["status"]["phase"] == "Running"
            && jget(&v, "status.containerStatuses.0.state.running").is_object())
        .then_some(v)
    });
    let cs = jget(&hello, "status.containerStatuses.0");
    let container_id = cs["containerID"].as_str().unwrap().to_owned();
    assert!(container_id.starts_with("containerd://"), "{cs}");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        !cs["imageID"].as_str().unwrap_or_default().is_empty(),
        "{cs}"
    );
    let pod_ip = hello["status"]["podIP"].as_str().unwrap_or_default();
    assert!(
        pod_ip.starts_with("10.41.0."),
        "pod IP {pod_ip:?} from the node's range"
    );
    assert!(hello["status"]["hostIP"].is_string());
    assert!(hello["status"]["startTime"].is_string());
    let uid = hello["metadata"]["uid"].as_str().unwrap().to_owned();
    let log = agent_dir.join(format!("agent/pods/default_hello_{uid}/c/0.log"));
    eventually(20, "the container's output in its log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("hello world"))
    });
    let id = container_id.trim_start_matches("containerd://").to_owned();
    assert!(ctr(&["containers", "info", &id]).status.success());

    // A container that exits 3 under restartPolicy Never: Failed.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "fails",
            "  restartPolicy: Never",
            r#"    image: busybox:stable
    command: ["sh", "-c", "exit 3"]"#,
        ),
    );
    let failed = eventually(60, "pod fails to fail", || {
        let v = server.json(&["get", "pod", "fails"]);
        (v["status"]["phase"] == "Failed").then_some(v)
    });
    let term = jget(&failed, "status.containerStatuses.0.state.terminated");
    assert_eq!(term["exitCode"], 3, "{failed}");
    assert_eq!(term["reason"], "Error");

    // Init containers run first, in order; a completed pod Succeeds.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: inits
spec:
  nodeName: {NODE}
  restartPolicy: Never
  hostNetwork: true
  initContainers:
  - name: one
    image: busybox:stable
    command: ["sh", "-c", "exit 0"]
  containers:
  - name: main
    image: busybox:stable
    command: ["true"]
"#
        ),
    );
    let done = eventually(60, "pod inits to succeed", || {
        let v = server.json(&["get", "pod", "inits"]);
        (v["status"]["phase"] == "Succeeded").then_some(v)
    });
    assert_eq!(
        jget(
            &done,
            "status.initContainerStatuses.0.state.terminated.reason"
        ),
        "Completed"
    );

    // An image nobody has: ErrImagePull, then ImagePullBackOff.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "noimage",
            "",
            "    image: rkube.invalid/nothing:1\n    command: [\"true\"]",
        ),
    );
    eventually(60, "pod noimage to wait for its image", || {
        let v = server.json(&["get", "pod", "noimage"]);
        let reason = jget(&v, "status.containerStatuses.0.state.waiting.reason")
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (v["status"]["phase"] == "Pending"
            && (reason == "ErrImagePull" || reason == "ImagePullBackOff"))
            .then_some(())
    });

    // imagePullPolicy Always pulls an image that is there too: with its
    // registry down the pod waits on the pull (ErrImagePull), while the
    // same image runs under IfNotPresent.
    let image = "127.0.0.1:9/rkube/busybox:1";
    let tagged = ctr(&["images", "tag", "docker.io/library/busybox:stable", image]);
    assert!(tagged.status.success(), "{tagged:?}");
    for (name, policy) in [("always", "Always"), ("present", "IfNotPresent")] {
        server.ok_stdin(
            &["apply", "-f", "-"],
            &pod(
                name,
                "",
                &format!(
                    "    image: {image}\n    imagePullPolicy: {policy}\n    command: [\"sleep\", \"3600\"]"
                ),
            ),
        );
    }
    eventually(
        60,
        "pod present to run, pod always to wait for its pull",
        || {
            let present = server.json(&["get", "pod", "present"]);
            let always = server.json(&["get", "pod", "always"]);
            let reason = jget(&always, "status.containerStatuses.0.state.waiting.reason")
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (present["status"]["phase"] == "Running"
                && always["status"]["phase"] == "Pending"
                && (reason == "ErrImagePull" || reason == "ImagePullBackOff"))
                .then_some(())
        },
    );
    let events = server.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=always",
    ]);
    assert!(
        events.contains(&format!("Pulling image \"{image}\"")),
        "{events}"
    );
    server.ok(&["delete", "pod", "always", "present", "--grace-period=1"]);

    pod_cgroups(server);
    termination_messages(server);
    service_links(server);

    // containerd dies: the agent starts it again; running containers
    // live on under their shims and new pods run.
    let config = agent_dir.join("agent/containerd/config.toml");
    let first = containerd_pid(&config).expect("our containerd runs");
    unsafe_kill(first);
    let second = eventually(30, "containerd to be started again", || {
        containerd_pid(&config).filter(|p| *p != first)
    });
    assert_ne!(first, second);
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "after",
            "",
            "    image: busybox:stable\n    command: [\"sleep\", \"3600\"]",
        ),
    );
    eventually(60, "pod after to run", || {
        let v = server.json(&["get", "pod", "after"]);
        (v["status"]["phase"] == "Running").then_some(())
    });
    let v = server.json(&["get", "pod", "hello"]);
    assert_eq!(
        jget(&v, "status.containerStatuses.0.containerID"),
        container_id.as_str(),
        "hello's container was not replaced"
    );
    assert_eq!(jget(&v, "status.containerStatuses.0.restartCount"), 0);

    // A container that keeps failing under restartPolicy Always: restarted
    // at once, then CrashLoopBackOff with the last exit in lastState.
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "crashes",
            "",
            "    image: busybox:stable\n    command: [\"sh\", \"-c\", \"exit 1\"]",
        ),
    );
    eventually(60, "pod crashes to back off", || {
        let v = server.json(&["get", "pod", "crashes"]);
        let c = jget(&v, "status.containerStatuses.0");
        (c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && c["restartCount"].as_i64() >= Some(1)
            && c["lastState"]["terminated"]["exitCode"] == 1
            && v["status"]["phase"] == "Running")
            .then_some(())
    });
    // Container GC: of its exited runs only the newest stays (its exit is
    // lastState), however often it restarted.
    let crashes = eventually(90, "crashes restarted twice", || {
        let v = server.json(&["get", "pod", "crashes"]);
        (jget(&v, "status.containerStatuses.0.restartCount").as_i64() >= Some(2)).then_some(v)
    });
    let crashes_uid = crashes["metadata"]["uid"].as_str().unwrap().to_owned();
    eventually(30, "one exited run of crashes left", || {
        let out = ctr(&[
            "containers",
            "ls",
            "-q",
            // Its containers, not its sandbox's pause container.
            &format!(
                "labels.\"io.kubernetes.pod.uid\"=={crashes_uid},labels.\"io.cri-containerd.kind\"==container"
            ),
        ]);
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        let v = server.json(&["get", "pod", "crashes"]);
        let waiting = jget(&v, "status.containerStatuses.0.state.waiting").is_object();
        (n == 1 && waiting).then_some(())
    });
    let v = server.json(&["get", "pod", "crashes"]);
    assert_eq!(
        jget(
            &v,
            "status.containerStatuses.0.lastState.terminated.exitCode"
        ),
        1,
        "{v}"
    );

    // Deleting a pod stops its container (SIGTERM) and the pod goes.
    server.ok(&["delete", "pod", "hello", "--timeout=60s"]);
    let out = server.kubectl(&["get", "pod", "hello"]);
    assert!(!out.status.success(), "pod hello is gone");
    eventually(20, "hello's container to be removed", || {
        (!ctr(&["containers", "info", &id]).status.success()).then_some(())
    });
    server.ok(&[
        "delete",
        "pod",
        "fails",
        "inits",
        "noimage",
        "--timeout=60s",
    ]);
}

/// Pod-level cgroups: a Burstable pod whose containers are all limited
/// lives in `kubepods/burstable/pod<uid>` with the limits summed, its
/// sandbox and containers below it; a BestEffort pod in
/// `kubepods/besteffort`; each goes with its pod.
fn pod_cgroups(server: &Server) {
    let root = Path::new("/sys/fs/cgroup");
    let v2 = root.join("cgroup.controllers").exists();
    server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "{}---\n{}",
            pod(
                "limited",
                "",
                "    image: busybox:stable\n    command: [sleep, \"3600\"]\n    resources: {limits: {cpu: 200m, memory: 100Mi}, requests: {cpu: 100m, memory: 50Mi}}\n  - name: d\n    image: busybox:stable\n    command: [sleep, \"3600\"]\n    resources: {limits: {cpu: 100m, memory: 50Mi}}",
            ),
            pod("free", "", "    image: busybox:stable\n    command: [sleep, \"3600\"]"),
        ),
    );
    let uid = |name: &str| {
        eventually(60, &format!("pod {name} to run"), || {
            let v = server.json(&["get", "pod", name]);
            (v["status"]["phase"] == "Running")
                .then(|| v["metadata"]["uid"].as_str().unwrap().to_owned())
        })
    };
    let (limited, free) = (uid("limited"), uid("free"));
    let dir = |hierarchy: &str, rel: &str| {
        if v2 {
            root.join(rel)
        } else {
            root.join(hierarchy).join(rel)
        }
    };
    let limited_rel = format!("kubepods/burstable/pod{limited}");
    let free_rel = format!("kubepods/besteffort/pod{free}");
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_owned()
    };
    let (memory, cpu) = if v2 {
        (
            read(dir("", &limited_rel).join("memory.max")),
            read(dir("", &limited_rel).join("cpu.max")),
        )
    } else {
        (
            read(dir("memory", &limited_rel).join("memory.limit_in_bytes")),
            read(dir("cpu", &limited_rel).join("cpu.cfs_quota_us")),
        )
    };
    assert_eq!(memory, (150u64 << 20).to_string(), "100Mi + 50Mi");
    assert!(cpu.starts_with("30000"), "200m + 100m: {cpu}");
    // The sandbox and both containers run below the pod's cgroup.
    let children = std::fs::read_dir(dir("memory", &limited_rel))
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count();
    assert_eq!(children, 3, "pause and two containers in {limited_rel}");
    assert!(dir("memory", &free_rel).is_dir(), "{free_rel}");
    server.ok(&["delete", "pod", "limited", "free", "--grace-period=1"]);
    eventually(30, "the pods' cgroups to go", || {
        (!dir("memory", &limited_rel).exists() && !dir("memory", &free_rel).exists()).then_some(())
    });
}

/// Termination messages: what a container writes to its
/// terminationMessagePath (default `/dev/termination-log`, or its own)
/// becomes its terminated state's message; with FallbackToLogsOnError a
/// failed container that wrote nothing gets its last log lines.
fn termination_messages(server: &Server) {
    server.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "lastwords",
            "  restartPolicy: Never",
            "    image: busybox:stable\n    command: [sh, -c, \"echo disk full > /dev/termination-log; exit 3\"]\n  - name: logs\n    image: busybox:stable\n    terminationMessagePolicy: FallbackToLogsOnError\n    command: [sh, -c, \"echo first; echo from-the-log; exit 1\"]\n  - name: own\n    image: busybox:stable\n    terminationMessagePath: /tmp/said\n    command: [sh, -c, \"printf done > /tmp/said\"]",
        ),
    );
    let statuses = eventually(60, "pod lastwords to end", || {
        let v = server.json(&["get", "pod", "lastwords"]);
        (v["status"]["phase"] == "Failed").then(|| v["status"]["containerStatuses"].clone())
    });
    let message = |name: &str| {
        statuses
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["state"]["terminated"]["message"].clone())
            .unwrap()
    };
    assert_eq!(message("c"), "disk full\n", "{statuses}");
    assert_eq!(message("logs"), "first\nfrom-the-log\n", "{statuses}");
    assert_eq!(message("own"), "done", "{statuses}");
    let described = server.ok(&["describe", "pod", "lastwords"]);
    assert!(described.contains("disk full"), "{described}");
    server.ok(&["delete", "pod", "lastwords", "--grace-period=1"]);
}

/// The Service variables the kubelet gives containers: the `kubernetes`
/// Service's, and the namespace's unless enableServiceLinks is false.
fn service_links(server: &Server) {
    server.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web-front}\nspec:\n  selector: {app: nothing}\n  ports: [{name: http, port: 80}]\n",
    );
    let ip = |ns: &str, name: &str| {
        server.json(&["get", "service", name, "-n", ns])["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (master, web) = (ip("default", "kubernetes"), ip("default", "web-front"));
    for (name, links) in [("links", "true"), ("nolinks", "false")] {
        server.ok_stdin(
            &["apply", "-f", "-"],
            &pod(
                name,
                &format!("  restartPolicy: Never\n  enableServiceLinks: {links}"),
                // (This agent serves no logs: the environment comes back
                // as the termination message.)
                "    image: busybox:stable\n    command: [sh, -c, \"env > /dev/termination-log\"]",
            ),
        );
    }
    let env = |name: &str| {
        eventually(60, &format!("pod {name} to print its environment"), || {
            let v = server.json(&["get", "pod", name]);
            (v["status"]["phase"] == "Succeeded").then(|| {
                v["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
        })
    };
    let with = env("links");
    for want in [
        format!("KUBERNETES_SERVICE_HOST={master}"),
        "KUBERNETES_SERVICE_PORT=443".to_owned(),
        format!("KUBERNETES_PORT_443_TCP=tcp://{master}:443"),
        format!("WEB_FRONT_SERVICE_HOST={web}"),
        "WEB_FRONT_SERVICE_PORT_HTTP=80".to_owned(),
        format!("WEB_FRONT_PORT=tcp://{web}:80"),
    ] {
        assert!(with.lines().any(|l| l == want), "no {want} in:\n{with}");
    }
    let without = env("nolinks");
    assert!(
        without.contains(&format!("KUBERNETES_SERVICE_HOST={master}")),
        "{without}"
    );
    assert!(!without.contains("WEB_FRONT_"), "{without}");
    server.ok(&["delete", "pod", "links", "nolinks", "--grace-period=1"]);
    server.ok(&["delete", "service", "web-front"]);
}
