//! Real kubectl against the OpenAPI documents, served by a tiny HTTP server
//! with static discovery: `create` asks for `fieldValidation=Strict`,
//! `explain` reads the v3 schemas, and client-side `apply` computes its
//! strategic merge patch from them (merge keys, `$setElementOrder`).
//! Skipped where no kubectl is installed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use api::openapi::{v3_group_version, v3_root, ResourceSpec};
use serde_json::{json, Value};

#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    content_type: String,
    body: String,
}

type Routes = HashMap<String, (String, Value)>;

/// Answers GETs from `routes` (by path, query ignored), echoes the body of
/// POST and PATCH back, and records every request.
fn serve(listener: TcpListener, routes: Routes) -> Arc<Mutex<Vec<Request>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let routes = Arc::new(routes);
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (routes, log) = (routes.clone(), log2.clone());
            std::thread::spawn(move || {
                let _ = handle(stream, &routes, &log);
            });
        }
    });
    log
}

fn handle(stream: TcpStream, routes: &Routes, log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).into_owned();
        log.lock().unwrap().push(Request {
            method: method.clone(),
            target: target.clone(),
            content_type: headers.get("content-type").cloned().unwrap_or_default(),
            body: body.clone(),
        });
        let path = target.split('?').next().unwrap_or("");
        let (code, ct, payload) = match (method.as_str(), routes.get(path)) {
            ("GET", Some((ct, v))) => (200, ct.as_str(), v.to_string()),
            ("POST", _) => (201, "application/json", body),
            ("PATCH", _) => {
                // The patched object: what the test serves, good enough.
                let current = routes.get(path).map(|(_, v)| v.to_string());
                (200, "application/json", current.unwrap_or(body))
            }
            _ => (
                404,
                "application/json",
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
                    .to_string(),
            ),
        };
        write!(
            out,
            "HTTP/1.1 {code} X\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        )?;
        out.flush()?;
    }
}

fn spec(group: &str, kind: &str, plural: &str, namespaced: bool, subs: &[&str]) -> ResourceSpec {
    ResourceSpec {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        namespaced,
        verbs: [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .map(String::from)
        .to_vec(),
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        schema: None,
    }
}

fn resources() -> Vec<ResourceSpec> {
    let mut crontab = spec("stable.example.com", "CronTab", "crontabs", true, &[]);
    crontab.schema = Some(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "description": "The schedule.", "properties": {
            "cronSpec": {"type": "string", "description": "When, in cron syntax."},
            "replicas": {"type": "integer"}
        }}}
    }));
    vec![
        spec("", "Pod", "pods", true, &["status", "log", "exec"]),
        spec("", "ConfigMap", "configmaps", true, &[]),
        spec(
            "",
            "Namespace",
            "namespaces",
            false,
            &["status", "finalize"],
        ),
        spec(
            "apps",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
        crontab,
    ]
}

const DEPLOYMENT_PATH: &str = "/apis/apps/v1/namespaces/default/deployments/web";

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
        },
    })
}

fn routes(server: &str) -> Routes {
    let res = resources();
    let mut routes = Routes::new();
    let json_route = |v: Value| ("application/json".to_owned(), v);
    routes.insert(
        "/version".into(),
        json_route(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0"})),
    );
    routes.insert(
        "/api".into(),
        json_route(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server.trim_start_matches("http://")}]})),
    );
    let groups = ["apps", "stable.example.com"];
    routes.insert(
        "/apis".into(),
        json_route(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|g| json!({
            "name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
            "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})).collect::<Vec<_>>()})),
    );
    let mut docs = Vec::new();
    for g in ["", "apps", "stable.example.com"] {
        let (gv, path) = if g.is_empty() {
            ("v1".to_owned(), "api/v1".to_owned())
        } else {
            (format!("{g}/v1"), format!("apis/{g}/v1"))
        };
        let list: Vec<Value> = res
            .iter()
            .filter(|r| r.group == g)
            .flat_map(|r| {
                let mut out = vec![json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": r.verbs})];
                for s in &r.subresources {
                    out.push(json!({"name": format!("{}/{s}", r.plural), "singularName": "", "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"]}));
                }
                out
            })
            .collect();
        routes.insert(
            format!("/{path}"),
            json_route(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})),
        );
        let doc = v3_group_version(g, "v1", &res);
        routes.insert(format!("/openapi/v3/{path}"), json_route(doc.clone()));
        docs.push((g.to_owned(), "v1".to_owned(), doc));
    }
    routes.insert("/openapi/v3".into(), json_route(v3_root(&docs)));
    // The object client-side apply finds, as a previous apply left it.
    let before =
        deployment(json!([{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]));
    let mut current = before.clone();
    current["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": before.to_string()});
    current["metadata"]["uid"] = json!("2c7d0c3e-0000-4000-8000-000000000001");
    current["metadata"]["resourceVersion"] = json!("7");
    routes.insert(DEPLOYMENT_PATH.into(), json_route(current));
    routes
}

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
            std::env::temp_dir().join(format!("rkube-openapi-kubectl-{}-{n}", std::process::id()));
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

    fn file(&self, name: &str, content: &Value) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content.to_string()).unwrap();
        p.display().to_string()
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("kubeconfig").display()
            ))
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn kubectl_validates_explains_and_applies_with_the_documents() {
    let bins = kubectls();
    assert!(
        !bins.is_empty(),
        "no kubectl found (every machine of this kind has kubectl 1.32+)"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let log = serve(listener, routes(&server));
    for (n, bin) in bins.into_iter().enumerate() {
        let k = Kubectl::new(bin.clone(), &server, n);
        let who = bin.display().to_string();

        // create: strict validation is left to the server.
        log.lock().unwrap().clear();
        let cm = k.file(
            "cm.json",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
        );
        let (ok, _, err) = k.run(&["create", "-f", &cm]);
        assert!(ok, "{who} create: {err}");
        let post = log
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.method == "POST")
            .cloned()
            .unwrap_or_else(|| panic!("{who} sent no POST"));
        assert_eq!(
            post.target, "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create&fieldValidation=Strict",
            "{who}"
        );
        // The same for a custom resource.
        let ct = k.file(
            "ct.json",
            &json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "t"}, "spec": {"cronSpec": "* * * * *"}}),
        );
        let (ok, _, err) = k.run(&["create", "-f", &ct]);
        assert!(ok, "{who} create crontab: {err}");
        assert!(
            log.lock().unwrap().iter().any(|r| r.method == "POST"
                && r.target
                    .starts_with("/apis/stable.example.com/v1/namespaces/default/crontabs?")
                && r.target.contains("fieldValidation=Strict")),
            "{who}"
        );

        // explain: built-in and custom.
        let (ok, out, err) = k.run(&["explain", "pods.spec.containers.ports"]);
        assert!(ok, "{who} explain: {err}");
        assert!(out.contains("KIND:       Pod"), "{who}: {out}");
        assert!(
            out.contains("FIELD: ports <[]ContainerPort>"),
            "{who}: {out}"
        );
        assert!(
            out.contains("containerPort\t<integer> -required-"),
            "{who}: {out}"
        );
        let (ok, out, err) = k.run(&["explain", "deployments.spec.template.spec"]);
        assert!(ok, "{who} explain deployments: {err}");
        assert!(out.contains("GROUP:      apps"), "{who}: {out}");
        assert!(
            out.contains("containers\t<[]Container> -required-"),
            "{who}: {out}"
        );
        let (ok, out, err) = k.run(&["explain", "crontabs.spec"]);
        assert!(ok, "{who} explain crontabs: {err}");
        assert!(out.contains("cronSpec\t<string>"), "{who}: {out}");
        assert!(out.contains("When, in cron syntax."), "{who}: {out}");

        // client-side apply: a strategic merge patch computed from the v3
        // schemas: containers merge by name, so the patch names only the
        // changed container and keeps the order with $setElementOrder.
        log.lock().unwrap().clear();
        let d = k.file(
            "d.json",
            &deployment(
                json!([{"name": "app", "image": "app:2"}, {"name": "log", "image": "log:1"}]),
            ),
        );
        let (ok, _, err) = k.run(&["apply", "-f", &d]);
        assert!(ok, "{who} apply: {err}");
        assert!(!err.contains("warning"), "{who} apply: {err}");
        let patch = log
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.method == "PATCH")
            .cloned()
            .unwrap_or_else(|| panic!("{who} sent no PATCH"));
        assert!(
            patch.target.starts_with(DEPLOYMENT_PATH),
            "{who}: {}",
            patch.target
        );
        assert!(
            patch.target.contains("fieldValidation=Strict"),
            "{who}: {}",
            patch.target
        );
        assert_eq!(
            patch.content_type, "application/strategic-merge-patch+json",
            "{who}"
        );
        let body: Value = serde_json::from_str(&patch.body).unwrap();
        let spec = &body["spec"]["template"]["spec"];
        assert_eq!(
            spec["$setElementOrder/containers"],
            json!([{"name": "app"}, {"name": "log"}]),
            "{who}: {body}"
        );
        assert_eq!(
            spec["containers"],
            json!([{"name": "app", "image": "app:2"}]),
            "{who}: {body}"
        );
        // v3 sufficed: kubectl never asked for v2.
        assert!(
            !log.lock()
                .unwrap()
                .iter()
                .any(|r| r.target.starts_with("/openapi/v2")),
            "{who} fetched /openapi/v2"
        );
    }
}
