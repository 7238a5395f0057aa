//! Image pulls from a registry on a real local node: Debian's
//! docker-registry on 127.0.0.1 with htpasswd authentication, an image
//! pushed to it by `scripts/push-test-image`. Without credentials the pull
//! fails (ErrImagePull / ImagePullBackOff); with a `kubectl create secret
//! docker-registry` Secret in `imagePullSecrets` the pod runs; a
//! ServiceAccount's `imagePullSecrets` reach its pods through admission; a
//! tag that is not there fails even with credentials; a `registries.yaml`
//! (`--private-registry`) mirror with its own credentials serves an image
//! of a registry name that resolves nowhere; image GC (at a 1%
//! threshold) removes the image once no pod uses it and keeps pinned
//! imports. Skipped, with the
//! reason printed, where containerd, docker-registry or htpasswd is missing.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use support::eventually;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

/// A docker-registry process, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn start_registry() -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbc", htpasswd.to_str().unwrap(), USER, PASSWORD])
        .output()
        .unwrap();
    assert!(out.status.success(), "htpasswd: {out:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: rkube-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
        .spawn()
        .expect("start docker-registry");
    let registry = Registry {
        child,
        port,
        _dir: dir,
    };
    eventually(20, "the registry answering", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    registry
}

/// Pushes the busybox archive as `reference`, made a distinct image by a
/// label naming the reference.
fn push(images: &Path, registry: &Registry, reference: &str) {
    let out = Command::new(support::repo_root().join("scripts/push-test-image"))
        .args(["--label", &format!("rkube.test/ref={reference}")])
        .arg(images.join("busybox.tar"))
        .arg(format!("http://127.0.0.1:{}", registry.port))
        .arg(reference)
        .arg(format!("{USER}:{PASSWORD}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push-test-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pod(name: &str, image: &str, secret: Option<&str>) -> String {
    let secrets = secret
        .map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
{secrets}  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo pulled-and-running; exec sleep 3600"]
"#
    )
}

fn waiting_reason(p: &Value) -> Option<String> {
    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn pulls_from_an_authenticated_registry_with_pull_secrets() {
    for tool in ["docker-registry", "htpasswd", "python3"] {
        if !have(tool) {
            eprintln!("skipping: {tool} is not installed (scripts/setup)");
            return;
        }
    }
    // Image GC at every check: whatever no container uses (and was not
    // imported from the image folder) goes.
    let gc = [
        "--image-gc-high-threshold=1",
        "--image-gc-low-threshold=0",
        "--image-minimum-gc-age=0s",
    ];
    // A registries.yaml: `mirror.invalid` (a name that resolves nowhere)
    // is served by the registry under another of its names, with the
    // credentials for that name; 127.0.0.1 keeps needing a pull secret.
    let registry = start_registry();
    let host = format!("127.0.0.1:{}", registry.port);
    let conf = tempfile::tempdir().unwrap();
    let registries = conf.path().join("registries.yaml");
    std::fs::write(
        &registries,
        format!(
            "mirrors:\n  mirror.invalid:\n    endpoint: [\"http://localhost:{port}\"]\nconfigs:\n  \"localhost:{port}\":\n    auth: {{username: {USER}, password: {PASSWORD}}}\n",
            port = registry.port
        ),
    )
    .unwrap();
    let private_registry = format!("--private-registry={}", registries.display());
    let args: Vec<&str> = gc
        .iter()
        .copied()
        .chain([private_registry.as_str()])
        .collect();
    let Some(s) = support::local_node("registry-node", &args) else {
        return;
    };
    push(s.images(), &registry, "team/busybox:v1");
    push(s.images(), &registry, "team/busybox:v2");

    // No credentials: the registry says 401 and the pull fails.
    let v1 = format!("{host}/team/busybox:v1");
    s.ok_stdin(&["apply", "-f", "-"], &pod("anonymous", &v1, None));
    let reason = eventually(60, "anonymous pull failing", || {
        let p = s.json(&["get", "pod", "anonymous"]);
        waiting_reason(&p).filter(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    });
    let p = s.json(&["get", "pod", "anonymous"]);
    assert_eq!(p["status"]["phase"], "Pending", "{reason}: {p}");

    // A docker-registry secret in imagePullSecrets: the pod runs.
    s.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        &format!("--docker-username={USER}"),
        &format!("--docker-password={PASSWORD}"),
    ]);
    s.ok_stdin(&["apply", "-f", "-"], &pod("private", &v1, Some("regcred")));
    let mut last = String::new();
    eventually(90, "the pod with the pull secret running", || {
        let p = s.json(&["get", "pod", "private"]);
        let why = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].to_string();
        if why != last {
            eprintln!("private: {why}");
            last = why;
        }
        (p["status"]["phase"] == "Running").then_some(())
    });
    eventually(30, "its output", || {
        s.ok(&["logs", "private"])
            .contains("pulled-and-running")
            .then_some(())
    });
    // Through the mirror, with its credentials from registries.yaml and
    // no pull secret.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("mirrored", "mirror.invalid/team/busybox:v1", None),
    );
    eventually(90, "the pod pulled through the mirror running", || {
        let p = s.json(&["get", "pod", "mirrored"]);
        (p["status"]["phase"] == "Running").then_some(())
    });
    let p = s.json(&["get", "pod", "private"]);
    let image_id = p["status"]["containerStatuses"][0]["imageID"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!image_id.is_empty(), "{p}");

    // The ServiceAccount's pull secrets are added to its pods that name
    // none; v2 is not on the node yet, so it is pulled with them.
    s.ok(&[
        "patch",
        "serviceaccount",
        "default",
        "-p",
        r#"{"imagePullSecrets": [{"name": "regcred"}]}"#,
    ]);
    let v2 = format!("{host}/team/busybox:v2");
    s.ok_stdin(&["apply", "-f", "-"], &pod("via-account", &v2, None));
    let p = s.json(&["get", "pod", "via-account"]);
    assert_eq!(
        p["spec"]["imagePullSecrets"],
        serde_json::json!([{"name": "regcred"}]),
        "{p}"
    );
    eventually(
        90,
        "the pod pulled with the account's secret running",
        || {
            let p = s.json(&["get", "pod", "via-account"]);
            (p["status"]["phase"] == "Running").then_some(())
        },
    );

    // A tag the registry does not have fails even with credentials.
    let missing = format!("{host}/team/busybox:nope");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod("missing", &missing, Some("regcred")),
    );
    eventually(60, "the missing tag failing", || {
        let p = s.json(&["get", "pod", "missing"]);
        waiting_reason(&p).filter(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    });
    // The Failed event carries the runtime's reason.
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing,reason=Failed",
    ]);
    assert!(events.contains("Failed to pull image"), "{events}");
    // (The anonymous pod may start now: with IfNotPresent, an image another
    // pod pulled is used as is, as the kubelet does by default.)

    // Image GC: once its only pod is gone, v2 is removed; v1 (in use) and
    // the imported busybox and pause images (pinned) stay.
    s.ok(&[
        "delete",
        "pod",
        "via-account",
        "missing",
        "--grace-period=1",
        "--timeout=60s",
    ]);
    let images = || {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(s.data_dir().join("agent/containerd/containerd.sock"))
            .args(["--namespace", "k8s.io", "images", "ls", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually(120, "v2 garbage-collected", || {
        (!images().contains("team/busybox:v2")).then_some(())
    });
    let left = images();
    for kept in [
        "team/busybox:v1",
        "docker.io/library/busybox:latest",
        "rkube.local/pause:3.10",
    ] {
        assert!(left.contains(kept), "{kept} was removed:\n{left}");
    }
}
