//! Real kubectl printing the Tables `api::table` builds: a tiny HTTP server
//! with static discovery answers `kubectl get` (which asks for
//! `application/json;as=Table;v=v1;g=meta.k8s.io`) and the test compares
//! what kubectl prints, by default, with `-o wide`, `-L` and `--sort-by`
//! (which need the object or its metadata in each row). Skipped where no
//! kubectl is installed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use api::table::{custom_table, table, IncludeObject};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A list endpoint: how to print its objects as a Table.
enum Printer {
    BuiltIn(&'static str, &'static str),
    Custom(Vec<Value>),
}

struct Lists(HashMap<String, (Printer, Vec<Value>)>);

impl Lists {
    fn table(&self, path: &str, include: IncludeObject) -> Option<Value> {
        let (printer, objs) = self.0.get(path)?;
        let meta = json!({"resourceVersion": "100"});
        Some(match printer {
            Printer::BuiltIn(group, kind) => table(group, kind, objs, now(), include, meta),
            Printer::Custom(defs) => custom_table(defs, objs, now(), include, meta),
        })
    }
}

fn discovery() -> HashMap<String, Value> {
    let mut docs = HashMap::new();
    docs.insert(
        "/version".into(),
        json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"}),
    );
    docs.insert(
        "/api".into(),
        json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
    );
    let groups = ["apps", "rbac.authorization.k8s.io", "stable.example.com"];
    docs.insert("/apis".into(), json!({"kind": "APIGroupList", "apiVersion": "v1",
        "groups": groups.iter().map(|g| json!({"name": g,
            "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
            "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})).collect::<Vec<_>>()}));
    let verbs = [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    let resources = |gv: &str, list: &[(&str, &str)]| {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": list.iter().map(|(plural, kind)| json!({"name": plural,
                "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind, "verbs": verbs}))
                .collect::<Vec<_>>()})
    };
    docs.insert(
        "/api/v1".into(),
        resources("v1", &[("pods", "Pod"), ("events", "Event")]),
    );
    docs.insert(
        "/apis/apps/v1".into(),
        resources("apps/v1", &[("deployments", "Deployment")]),
    );
    docs.insert(
        "/apis/rbac.authorization.k8s.io/v1".into(),
        resources("rbac.authorization.k8s.io/v1", &[("roles", "Role")]),
    );
    docs.insert(
        "/apis/stable.example.com/v1".into(),
        resources("stable.example.com/v1", &[("crontabs", "CronTab")]),
    );
    docs
}

fn lists() -> Lists {
    let meta = |name: &str, labels: Value| {
        json!({"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "10",
            "creationTimestamp": "2025-06-01T11:55:00Z", "labels": labels})
    };
    let pods = vec![
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("web-1", json!({"app": "web"})),
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.5"}], "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-06-01T11:58:00Z"}}}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta("db-0", json!({"app": "db"})),
            "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "pg"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "init", "restartCount": 0, "state": {"running": {}}}]}}),
    ];
    let events = vec![
        json!({"apiVersion": "v1", "kind": "Event", "metadata": meta("web-1.1", json!({})),
        "involvedObject": {"kind": "Pod", "name": "web-1"}, "reason": "BackOff", "type": "Warning",
        "message": "Back-off restarting failed container", "count": 3,
        "firstTimestamp": "2025-06-01T11:56:00Z", "lastTimestamp": "2025-06-01T11:59:00Z",
        "source": {"component": "kubelet", "host": "node-1"}}),
    ];
    let deployments = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web", json!({})),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}),
    ];
    let roles = vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": meta("pod-reader", json!({})), "rules": []}),
    ];
    let crontabs = vec![
        json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": meta("nightly", json!({})), "spec": {"cronSpec": "0 3 * * *", "replicas": 2}}),
    ];
    let columns = vec![
        json!({"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}),
        json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
        json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
    ];
    let mut m = HashMap::new();
    let ns = "namespaces/default";
    m.insert(
        format!("/api/v1/{ns}/pods"),
        (Printer::BuiltIn("", "Pod"), pods),
    );
    m.insert(
        format!("/api/v1/{ns}/events"),
        (Printer::BuiltIn("", "Event"), events),
    );
    m.insert(
        format!("/apis/apps/v1/{ns}/deployments"),
        (Printer::BuiltIn("apps", "Deployment"), deployments),
    );
    m.insert(
        format!("/apis/rbac.authorization.k8s.io/v1/{ns}/roles"),
        (Printer::BuiltIn("rbac.authorization.k8s.io", "Role"), roles),
    );
    m.insert(
        format!("/apis/stable.example.com/v1/{ns}/crontabs"),
        (Printer::Custom(columns), crontabs),
    );
    Lists(m)
}

fn serve(listener: TcpListener) {
    let docs = Arc::new(discovery());
    let lists = Arc::new(lists());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (docs, lists) = (docs.clone(), lists.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &docs, &lists);
            });
        }
    });
}

fn handle(stream: TcpStream, docs: &HashMap<String, Value>, lists: &Lists) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut accept = String::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("accept") {
                    accept = v.trim().to_owned();
                }
            }
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let include = match query
            .split('&')
            .find_map(|kv| kv.strip_prefix("includeObject="))
        {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        };
        let body = match (docs.get(path), lists.table(path, include)) {
            (Some(doc), _) => Some(doc.clone()),
            // Only a client that asks for a Table gets one.
            (None, Some(t)) if accept.contains("as=Table") => Some(t),
            _ => None,
        };
        let (code, payload) = match body {
            Some(v) => (200, v.to_string()),
            None => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
                    .to_string(),
            ),
        };
        write!(
            out,
            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        )?;
        out.flush()?;
    }
}

/// kubectl 1.32 and 1.33 where the Google Cloud SDK has them, else the
/// one on the PATH.
fn kubectls() -> Vec<PathBuf> {
    let found: Vec<PathBuf> = ["kubectl.1.32", "kubectl.1.33"]
        .iter()
        .map(|k| Path::new("/usr/lib/google-cloud-sdk/bin").join(k))
        .filter(|p| p.exists())
        .collect();
    if !found.is_empty() {
        return found;
    }
    Some(PathBuf::from("/usr/bin/kubectl"))
        .filter(|p| p.exists())
        .into_iter()
        .collect()
}

struct Kubectl {
    bin: PathBuf,
    dir: PathBuf,
}

impl Kubectl {
    fn new(bin: PathBuf, server: &str, n: usize) -> Kubectl {
        let dir =
            std::env::temp_dir().join(format!("rkube-table-kubectl-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kubeconfig"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n\
                 contexts:\n- name: c\n  context:\n    cluster: c\n    namespace: default\n\
                 current-context: c\nusers: []\n"
            ),
        )
        .unwrap();
        Kubectl { bin, dir }
    }

    fn get(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("kubeconfig").display()
            ))
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .arg("get")
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} get {args:?}: {stderr}",
            self.bin.display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lines with the runs of padding kubectl's tabwriter adds cut to one
/// `|`, so the expectations read as columns.
fn columns(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn kubectl_prints_the_tables() {
    let bins = kubectls();
    assert!(
        !bins.is_empty(),
        "no kubectl found (every machine of this kind has kubectl 1.32+)"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    serve(listener);
    for (n, bin) in bins.into_iter().enumerate() {
        let k = Kubectl::new(bin, &server, n);
        check(&k);
    }
}

fn check(k: &Kubectl) {
    assert_eq!(
        columns(&k.get(&["pods"])),
        [
            "NAME|READY|STATUS|RESTARTS|AGE",
            "web-1|1/2|CrashLoopBackOff|3 (2m ago)|5m",
            "db-0|0/1|Init:0/1|0|5m",
        ]
    );
    assert_eq!(
        columns(&k.get(&["pods", "-o", "wide"])),
        [
            "NAME|READY|STATUS|RESTARTS|AGE|IP|NODE|NOMINATED NODE|READINESS GATES",
            "web-1|1/2|CrashLoopBackOff|3 (2m ago)|5m|10.42.0.5|node-1|<none>|<none>",
            "db-0|0/1|Init:0/1|0|5m|<none>|<none>|<none>|<none>",
        ]
    );
    // Label columns come from the rows' PartialObjectMetadata.
    assert_eq!(
        columns(&k.get(&["pods", "-L", "app"])),
        [
            "NAME|READY|STATUS|RESTARTS|AGE|APP",
            "web-1|1/2|CrashLoopBackOff|3 (2m ago)|5m|web",
            "db-0|0/1|Init:0/1|0|5m|db",
        ]
    );
    // Sorting asks for whole objects (includeObject=Object).
    assert_eq!(
        columns(&k.get(&["pods", "--sort-by=.metadata.name"]))[1..],
        [
            "db-0|0/1|Init:0/1|0|5m",
            "web-1|1/2|CrashLoopBackOff|3 (2m ago)|5m",
        ]
    );
    assert_eq!(
        columns(&k.get(&["events"])),
        [
            "LAST SEEN|TYPE|REASON|OBJECT|MESSAGE",
            "60s|Warning|BackOff|pod/web-1|Back-off restarting failed container",
        ]
    );
    assert_eq!(
        columns(&k.get(&["deployments", "-o", "wide"])),
        [
            "NAME|READY|UP-TO-DATE|AVAILABLE|AGE|CONTAINERS|IMAGES|SELECTOR",
            "web|1/2|2|1|5m|nginx|nginx:1.27|app=web",
        ]
    );
    assert_eq!(
        columns(&k.get(&["roles"])),
        ["NAME|CREATED AT", "pod-reader|2025-06-01T11:55:00Z"]
    );
    assert_eq!(
        columns(&k.get(&["crontabs"])),
        ["NAME|SPEC|REPLICAS|AGE", "nightly|0 3 * * *|2|5m"]
    );
}
