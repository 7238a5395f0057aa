//! The API server driven by the real kubectl: `rkube server --disable-agent`
//! in a temporary data dir.

mod support;

use serde_json::Value;
use support::Server;

const CONFIGMAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: web
data:
  color: blue
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

#[test]
fn discovery_lists_the_kubernetes_resources() {
    let s = Server::start();
    let out = s.ok(&["api-resources"]);
    for line in [
        "pods",
        "deployments",
        "configmaps",
        "namespaces",
        "customresourcedefinitions",
        "leases",
        "ingresses",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(line)),
            "api-resources lacks {line}:\n{out}"
        );
    }
    let pods = out.lines().find(|l| l.starts_with("pods ")).unwrap();
    assert!(
        pods.contains(" po ") && pods.contains("true") && pods.contains("Pod"),
        "{pods}"
    );
    let version = s.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "33");
    let ns = s.ok(&["get", "namespaces", "-o", "name"]);
    for want in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
        "namespace/kube-node-lease",
    ] {
        assert!(ns.contains(want), "{ns}");
    }
}

#[test]
fn create_get_label_delete_a_configmap() {
    let s = Server::start();
    let out = s.ok_stdin(&["create", "-f", "-"], CONFIGMAP);
    assert_eq!(out.trim(), "configmap/settings created");
    let cm = s.json(&["get", "configmap", "settings"]);
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(cm["metadata"]["namespace"], "default");
    assert!(cm["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));
    assert!(
        cm["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert!(cm["metadata"]["creationTimestamp"].as_str().is_some());

    let err = s.fails_stdin(&["create", "-f", "-"], CONFIGMAP);
    assert!(err.contains(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "settings" already exists"#), "{err}");

    // Table output: NAME DATA AGE.
    let table = s.ok(&["get", "configmaps"]);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("DATA") && header.contains("AGE"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("settings ") && l.contains(" 1 ")),
        "{table}"
    );

    s.ok(&["label", "configmap", "settings", "tier=front"]);
    s.ok(&["annotate", "configmap", "settings", "note=hello"]);
    let cm = s.json(&["get", "configmap", "settings"]);
    assert_eq!(cm["metadata"]["labels"]["tier"], "front");
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello");
    assert_eq!(
        s.ok(&["get", "cm", "-l", "tier=front", "-o", "name"])
            .trim(),
        "configmap/settings"
    );
    assert_eq!(
        s.ok(&["get", "cm", "-l", "tier!=front", "-o", "name"])
            .trim(),
        ""
    );
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "--field-selector",
            "metadata.name=settings",
            "-o",
            "jsonpath={.items[0].data.color}"
        ]),
        "blue"
    );

    assert_eq!(
        s.ok(&["delete", "configmap", "settings"]).trim(),
        r#"configmap "settings" deleted"#
    );
    let err = s.fails(&["get", "configmap", "settings"]);
    assert!(
        err.contains(r#"Error from server (NotFound): configmaps "settings" not found"#),
        "{err}"
    );
    let err = s.fails(&["get", "namespace", "nope"]);
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");
}

#[test]
fn apply_is_idempotent_then_changes_and_patches() {
    let s = Server::start();
    assert_eq!(
        s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT).trim(),
        "deployment.apps/web created"
    );
    let first = s.json(&["get", "deploy", "web"]);
    assert_eq!(first["metadata"]["generation"], 1);
    // Defaults a Kubernetes user expects to read back.
    assert_eq!(first["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(first["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        first["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );

    assert_eq!(
        s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT).trim(),
        "deployment.apps/web unchanged"
    );
    let again = s.json(&["get", "deploy", "web"]);
    assert_eq!(
        first["metadata"]["resourceVersion"],
        again["metadata"]["resourceVersion"]
    );

    let changed = DEPLOYMENT
        .replace("replicas: 2", "replicas: 3")
        .replace("nginx:1.25", "nginx:1.26");
    assert_eq!(
        s.ok_stdin(&["apply", "-f", "-"], &changed).trim(),
        "deployment.apps/web configured"
    );
    let d = s.json(&["get", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(d["metadata"]["generation"], 2);

    // The three patch flavours kubectl sends.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["replicas"], 4);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ]);
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["replicas"], 5);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
    ]);
    let d = s.json(&["get", "deploy", "web"]);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["nginx", "sidecar"],
        "strategic merge keeps containers by name"
    );

    s.ok(&["scale", "deploy", "web", "--replicas=7"]);
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["replicas"], 7);
    let err = s.fails(&[
        "scale",
        "deploy",
        "web",
        "--replicas=1",
        "--current-replicas=2",
    ]);
    assert!(
        err.to_lowercase().contains("expected replicas to be 2"),
        "{err}"
    );

    let err = s.fails(&[
        "patch",
        "deploy",
        "nope",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{}}"#,
    ]);
    assert!(
        err.contains(r#"deployments.apps "nope" not found"#),
        "{err}"
    );
}

#[test]
fn server_side_apply_creates_and_updates() {
    let s = Server::start();
    let out = s.ok_stdin(&["apply", "--server-side", "-f", "-"], CONFIGMAP);
    assert_eq!(out.trim(), "configmap/settings serverside-applied");
    let changed = CONFIGMAP.replace("color: blue", "color: green");
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    let cm = s.json(&["get", "cm", "settings", "--show-managed-fields"]);
    assert_eq!(cm["data"]["color"], "green");
    let managed = &cm["metadata"]["managedFields"][0];
    assert_eq!(
        (managed["manager"].as_str(), managed["operation"].as_str()),
        (Some("kubectl"), Some("Apply"))
    );
    assert!(
        managed["fieldsV1"]["f:data"].get("f:color").is_some(),
        "{managed}"
    );

    // Another manager may not take a field over without force.
    let other = CONFIGMAP.replace("color: blue", "color: red");
    let err = s.fails_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &other,
    );
    assert!(
        err.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl" using v1: .data.color"#
        ),
        "{err}"
    );
    assert_eq!(s.json(&["get", "cm", "settings"])["data"]["color"], "green");
    s.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &other,
    );
    assert_eq!(s.json(&["get", "cm", "settings"])["data"]["color"], "red");

    // A field the manager stops applying (and alone owned) is removed.
    let with_size = changed.replace("color: green", "color: green\n  size: L");
    s.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &with_size,
    );
    assert_eq!(s.json(&["get", "cm", "settings"])["data"]["size"], "L");
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    let data = s.json(&["get", "cm", "settings"])["data"].clone();
    assert!(data.get("size").is_none(), "{data}");
    // Updates are recorded too: `kubectl label` manages the label it set.
    s.ok(&["label", "cm", "settings", "team=a"]);
    let cm = s.json(&["get", "cm", "settings", "--show-managed-fields"]);
    let label_owner = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["fieldsV1"]
                .pointer("/f:metadata/f:labels/f:team")
                .is_some()
        })
        .map(|m| {
            (
                m["manager"].as_str().unwrap().to_owned(),
                m["operation"].as_str().unwrap().to_owned(),
            )
        });
    assert_eq!(
        label_owner,
        Some(("kubectl-label".to_owned(), "Update".to_owned()))
    );
}

#[test]
fn everything_survives_a_restart() {
    let mut s = Server::start();
    s.ok_stdin(&["create", "-f", "-"], CONFIGMAP);
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    s.ok(&["create", "namespace", "team-a"]);
    let before = s.json(&["get", "cm", "settings"]);
    s.restart(true);
    let after = s.json(&["get", "cm", "settings"]);
    assert_eq!(before, after);
    assert_eq!(s.json(&["get", "deploy", "web"])["spec"]["replicas"], 2);
    assert!(s
        .ok(&["get", "ns", "-o", "name"])
        .contains("namespace/team-a"));
    s.restart(false);
    assert_eq!(s.json(&["get", "cm", "settings"])["data"]["color"], "blue");
}

#[test]
fn bad_input_gets_a_status_and_changes_nothing() {
    let s = Server::start();
    let rv_before = s.json(&["get", "ns", "default"])["metadata"]["resourceVersion"].clone();
    let post = |body: &str| -> String {
        let dir = s.dir.path().join("body.json");
        std::fs::write(&dir, body).unwrap();
        s.fails(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            dir.to_str().unwrap(),
        ])
    };
    let cases = [
        (
            "malformed JSON",
            "{\"apiVersion\": \"v1\", \"kind\": ",
            "BadRequest",
        ),
        (
            "wrong field type",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":1}}"#,
            "BadRequest",
        ),
        (
            "invalid name",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
            r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#,
        ),
        (
            "no name",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
            "metadata.name: Required value: name or generateName is required",
        ),
        (
            "wrong kind",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
            "BadRequest",
        ),
        (
            "unknown apiVersion",
            r#"{"apiVersion":"v9","kind":"ConfigMap","metadata":{"name":"x"}}"#,
            "BadRequest",
        ),
    ];
    for (name, body, reason) in cases {
        let err = post(body);
        assert!(err.contains(reason), "{name}: {err}");
    }
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let err = post(&big);
    assert!(
        err.contains("RequestEntityTooLarge") || err.contains("too large"),
        "{err}"
    );
    assert_eq!(s.ok(&["get", "cm", "-o", "name"]).trim(), "");

    // Spec validation, as Kubernetes words it.
    let mismatched = DEPLOYMENT.replacen(
        "      labels:\n        app: web\n    spec:",
        "      labels:\n        app: other\n    spec:",
        1,
    );
    let err = s.fails_stdin(&["apply", "-f", "-"], &mismatched);
    assert!(
        err.contains(
            r#"The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value:"#
        ) && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );
    let no_image = DEPLOYMENT.replace("        image: nginx:1.25\n", "");
    let err = s.fails_stdin(&["apply", "-f", "-"], &no_image);
    assert!(
        err.contains("spec.template.spec.containers[0].image: Required value"),
        "{err}"
    );

    // Strict field validation: unknown and duplicate fields are errors.
    let strict = s.dir.path().join("strict.json");
    let post_strict = |body: &str| -> String {
        std::fs::write(&strict, body).unwrap();
        s.fails(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            "-f",
            strict.to_str().unwrap(),
        ])
    };
    let err = post_strict(
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"a":"1","a":"2"},"bogus":1}"#,
    );
    assert!(
        err.contains(r#"strict decoding error: duplicate field "data.a""#),
        "{err}"
    );
    let err =
        post_strict(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"bogus":1}"#);
    assert!(
        err.contains(r#"strict decoding error: unknown field "bogus""#),
        "{err}"
    );
    // Without Strict the unknown field is dropped, as Kubernetes does.
    s.ok(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        strict.to_str().unwrap(),
    ]);
    assert!(s.json(&["get", "cm", "s"]).get("bogus").is_none());
    s.ok(&["delete", "cm", "s"]);

    // A stale resourceVersion on update is a 409 Conflict.
    s.ok_stdin(&["create", "-f", "-"], CONFIGMAP);
    let mut cm = s.json(&["get", "cm", "settings"]);
    s.ok(&["label", "cm", "settings", "x=y"]);
    cm["data"]["color"] = "red".into();
    let err = s.fails_stdin(&["replace", "-f", "-"], &cm.to_string());
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );
    assert_eq!(s.json(&["get", "cm", "settings"])["data"]["color"], "blue");

    // An unknown kind.
    let err = s.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    // A missing namespace.
    let err = s.fails_stdin(&["create", "-n", "nowhere", "-f", "-"], CONFIGMAP);
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");
    assert_eq!(
        s.json(&["get", "ns", "default"])["metadata"]["resourceVersion"],
        rv_before
    );
}

#[test]
fn unauthenticated_requests_get_401() {
    let s = Server::start();
    let url = format!("https://127.0.0.1:{}", s.port);
    let curl = |args: &[&str]| -> (String, String) {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("curl is installed by scripts/setup");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (body.to_owned(), code.to_owned())
    };
    let (body, code) = curl(&[&format!("{url}/api/v1/namespaces")]);
    assert_eq!(code, "401");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("Unauthorized"))
    );
    // Health and version need no credentials.
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(curl(&[&format!("{url}{path}")]).1, "200", "{path}");
    }
    // The join token authenticates; a wrong one does not.
    let token = std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let auth = format!("Authorization: Bearer {}", token.trim());
    assert_eq!(
        curl(&["-H", &auth, &format!("{url}/api/v1/namespaces")]).1,
        "200"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Authorization: Bearer wrong",
            &format!("{url}/api/v1/namespaces")
        ])
        .1,
        "401"
    );
}

#[test]
fn watch_streams_changes() {
    let s = Server::start();
    s.ok_stdin(&["create", "-f", "-"], CONFIGMAP);
    let rv = s.json(&["get", "cm", "settings"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(&["label", "cm", "settings", "step=2"]);
    s.ok(&["delete", "cm", "settings"]);
    let out = s.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=2"
        ),
    ]);
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "DELETED"], "{out}");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["step"], "2");

    // From "0": the current state as ADDED first.
    s.ok_stdin(&["create", "-f", "-"], CONFIGMAP);
    let out = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1",
    ]);
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "settings");

    // A label selector turns starting and stopping to match into ADDED and
    // DELETED.
    let rv = s.json(&["get", "cm", "settings"])["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    s.ok(&["label", "cm", "settings", "watched=yes"]);
    s.ok(&["label", "cm", "settings", "other=1"]);
    s.ok(&["label", "cm", "settings", "watched-"]);
    let out = s.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?watch=1&labelSelector=watched%3Dyes&resourceVersion={rv}&timeoutSeconds=1"),
    ]);
    let types: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"], "{out}");
    // A list at resourceVersion=0 is served from the watch cache.
    let list: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?resourceVersion=0",
    ]))
    .unwrap();
    assert_eq!(list["items"][0]["metadata"]["labels"]["other"], "1");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Size
      type: string
      jsonPath: .spec.size
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size:
                type: string
                enum: [small, large]
              replicas:
                type: integer
                minimum: 0
                default: 1
          status:
            type: object
            properties:
              ready:
                type: boolean
"#;

#[test]
fn custom_resources_are_served_validated_and_pruned() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], CRD);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    // Discovery picks the new group up.
    let mut found = false;
    for _ in 0..50 {
        if s.ok(&["api-resources", "--api-group=example.com"])
            .contains("widgets")
        {
            found = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(found, "widgets never appeared in discovery");

    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: small\n  bogus: 1\n";
    s.ok_stdin(&["apply", "--validate=false", "-f", "-"], widget);
    let w = s.json(&["get", "widget", "w1"]);
    assert_eq!(w["spec"]["replicas"], 1, "schema default applied");
    assert!(
        w["spec"].get("bogus").is_none(),
        "unknown field pruned: {w}"
    );
    assert!(s.ok(&["get", "wd"]).contains("w1"));

    let bad =
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w2\nspec:\n  size: huge\n";
    let err = s.fails_stdin(&["apply", "--validate=false", "-f", "-"], bad);
    assert!(
        err.contains(r#"Unsupported value: "huge": supported values: "small", "large""#),
        "{err}"
    );
    let missing = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec: {}\n";
    let err = s.fails_stdin(&["apply", "--validate=false", "-f", "-"], missing);
    assert!(err.contains("spec.size: Required value"), "{err}");

    // status only through the status subresource.
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert!(s.json(&["get", "widget", "w1"]).get("status").is_none());
    s.ok(&[
        "patch",
        "widget",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"ready":true}}"#,
    ]);
    assert_eq!(s.json(&["get", "widget", "w1"])["status"]["ready"], true);
    s.ok(&["delete", "widget", "w1"]);
    assert_eq!(s.ok(&["get", "widgets", "-o", "name"]).trim(), "");
}

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let s = Server::start_with(&[
        "--service-cidr=10.96.0.0/24",
        "--disable-controller-manager",
        "--advertise-address=192.0.2.77",
    ]);
    let k8s = s.json(&["get", "svc", "kubernetes"]);
    assert_eq!(k8s["spec"]["clusterIP"], "10.96.0.1");
    // Where it leads: the advertised address and the API port, as
    // Endpoints and an EndpointSlice (what pods' in-cluster clients use).
    let port = k8s["spec"]["ports"][0]["targetPort"].clone();
    let ep = s.json(&["get", "endpoints", "kubernetes"]);
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.77", "{ep}");
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], port, "{ep}");
    let slice = s.json(&["get", "endpointslice", "kubernetes"]);
    assert_eq!(
        slice["endpoints"][0]["addresses"][0], "192.0.2.77",
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );
    assert_eq!(slice["ports"][0]["port"], port, "{slice}");
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n";
    s.ok_stdin(&["apply", "-f", "-"], svc);
    let web = s.json(&["get", "svc", "web"]);
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(ip.starts_with("10.96.0.") && ip != "10.96.0.1", "{ip}");
    let node_port = web["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&node_port));
    // Re-applying keeps the allocations (they are immutable / kept).
    s.ok_stdin(&["apply", "-f", "-"], svc);
    assert_eq!(
        s.json(&["get", "svc", "web"])["spec"]["clusterIP"],
        ip.as_str()
    );
    let table = s.ok(&["get", "svc", "web"]);
    assert!(
        table.contains(&format!("80:{node_port}/TCP")) && table.contains(&ip),
        "{table}"
    );

    // An explicit address that is taken is refused; once freed it can be had.
    let explicit = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: other\nspec:\n  clusterIP: {ip}\n  ports:\n  - port: 80\n"
    );
    let err = s.fails_stdin(&["apply", "-f", "-"], &explicit);
    assert!(err.contains("provided IP is already allocated"), "{err}");
    s.ok(&["delete", "svc", "web"]);
    s.ok_stdin(&["apply", "-f", "-"], &explicit);
    assert_eq!(
        s.json(&["get", "svc", "other"])["spec"]["clusterIP"],
        ip.as_str()
    );

    // Type changes: ClusterIP -> NodePort claims a node port (which then
    // is taken for others); back to ClusterIP drops and frees it;
    // ExternalName gives the address back, ClusterIP again takes one.
    let patch_type = |t: &str| {
        s.ok(&[
            "patch",
            "svc",
            "other",
            "-p",
            &format!(r#"{{"spec":{{"type":"{t}"}}}}"#),
        ])
    };
    patch_type("NodePort");
    let other = s.json(&["get", "svc", "other"]);
    let port = other["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert_eq!(other["spec"]["clusterIP"], ip.as_str());
    let wants_port = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: {port}\n"
        )
    };
    let err = s.fails_stdin(&["apply", "-f", "-"], &wants_port("taker"));
    assert!(err.contains("provided port is already allocated"), "{err}");
    patch_type("ClusterIP");
    let other = s.json(&["get", "svc", "other"]);
    assert!(
        other["spec"]["ports"][0].get("nodePort").is_none(),
        "{other}"
    );
    s.ok_stdin(&["apply", "-f", "-"], &wants_port("taker"));
    s.ok(&[
        "patch",
        "svc",
        "other",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"db.example.com"}}"#,
    ]);
    let other = s.json(&["get", "svc", "other"]);
    assert!(other["spec"].get("clusterIP").is_none(), "{other}");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &explicit.replace("name: other", "name: third"),
    );
    assert_eq!(
        s.json(&["get", "svc", "third"])["spec"]["clusterIP"],
        ip.as_str(),
        "the ExternalName's old address is free again"
    );
}

#[test]
fn eviction_respects_pod_disruption_budgets() {
    let s = Server::start();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db-0\n  labels:\n    app: db\nspec:\n  containers:\n  - name: db\n    image: busybox:1.36\n";
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: db\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: db\n";
    s.ok_stdin(&["apply", "-f", "-"], pod);
    s.ok_stdin(&["apply", "-f", "-"], pdb);
    let eviction = s.dir.path().join("eviction.json");
    std::fs::write(
        &eviction,
        r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"db-0","namespace":"default"}}"#,
    )
    .unwrap();
    let evict = || {
        s.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/db-0/eviction",
            "-f",
            eviction.to_str().unwrap(),
        ])
    };
    // The budget allows no disruption (status as the PDB controller writes it).
    s.ok(&[
        "patch", "pdb", "db", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"disruptionsAllowed":0,"currentHealthy":1,"desiredHealthy":1,"expectedPods":1}}"#,
    ]);
    let out = evict();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    assert!(s.ok(&["get", "pods", "-o", "name"]).contains("pod/db-0"));
    // Now it allows one: the pod goes and the budget counts it.
    s.ok(&[
        "patch",
        "pdb",
        "db",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"disruptionsAllowed":1}}"#,
    ]);
    let out = evict();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "pods", "-o", "name"]).trim(), "");
    let pdb = s.json(&["get", "pdb", "db"]);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(
        pdb["status"]["disruptedPods"].get("db-0").is_some(),
        "{pdb}"
    );
}

/// The core flow with every kubectl minor version this machine has from
/// 1.32 on (users' kubectl may be older or newer than the server).
#[test]
fn other_kubectl_versions_work_too() {
    let s = Server::start();
    let mut tried = 0;
    for minor in [32, 33, 34] {
        let bin =
            std::path::PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}"));
        if !bin.exists() {
            continue;
        }
        tried += 1;
        let run = |args: &[&str], input: Option<&str>| -> String {
            use std::io::Write;
            let mut child = s
                .kubectl_cmd_with(&bin)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.unwrap_or("").as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "kubectl 1.{minor} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let name = format!("web-{minor}");
        let manifest = DEPLOYMENT.replace("name: web\n", &format!("name: {name}\n"));
        assert!(run(&["apply", "-f", "-"], Some(&manifest)).contains("created"));
        assert!(run(&["apply", "-f", "-"], Some(&manifest)).contains("unchanged"));
        let table = run(&["get", "deploy", &name, "-o", "wide"], None);
        assert!(
            table.contains("READY") && table.contains("nginx:1.25"),
            "{table}"
        );
        run(&["scale", "deploy", &name, "--replicas=3"], None);
        assert!(run(&["explain", "deployment.spec.replicas"], None).contains("replicas"));
        run(&["delete", "deploy", &name], None);
    }
    assert!(tried >= 1, "no kubectl 1.32+ binary found");
}

#[test]
fn namespaces_terminate_until_finalized() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: doomed\n",
    );
    assert_eq!(
        s.json(&["get", "ns", "doomed"])["spec"]["finalizers"][0],
        "kubernetes"
    );
    // Every namespace is selectable by its name label, system ones too.
    let by_label = s.ok(&[
        "get",
        "ns",
        "-l",
        "kubernetes.io/metadata.name in (doomed,kube-system)",
        "-o",
        "name",
    ]);
    assert_eq!(by_label.trim(), "namespace/doomed\nnamespace/kube-system");
    s.ok(&["delete", "ns", "doomed", "--wait=false"]);
    let ns = s.json(&["get", "ns", "doomed"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let err = s.fails_stdin(&["create", "-n", "doomed", "-f", "-"], CONFIGMAP);
    assert!(
        err.contains(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{err}"
    );
    // The namespace controller's last step: remove the finalizer.
    let body = s.dir.path().join("finalize.json");
    std::fs::write(&body, r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"},"spec":{"finalizers":[]}}"#).unwrap();
    s.ok(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/doomed/finalize",
        "-f",
        body.to_str().unwrap(),
    ]);
    let err = s.fails(&["get", "ns", "doomed"]);
    assert!(err.contains(r#"namespaces "doomed" not found"#), "{err}");
}

#[test]
fn edit_describe_watch_and_cascading_deletes() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], CONFIGMAP);
    // edit through an editor that rewrites the file.
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/color: blue/color: purple/' \"$1\"\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .unwrap();
    let out = s
        .kubectl_cmd()
        .env("KUBE_EDITOR", &editor)
        .args(["edit", "cm", "settings"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.json(&["get", "cm", "settings"])["data"]["color"],
        "purple"
    );

    let described = s.ok(&["describe", "cm", "settings"]);
    assert!(
        described.contains("Name:         settings") && described.contains("purple"),
        "{described}"
    );

    // get --watch prints the change as a table row: wait for the initial
    // ADDED row before changing the object, so the change is a MODIFIED.
    let mut watcher = s
        .kubectl_cmd()
        .args([
            "get",
            "cm",
            "settings",
            "--watch",
            "--output-watch-events",
            "--request-timeout=20s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let wait_for = |word: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while let Ok(line) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            if line.contains(word) && line.contains("settings") {
                return true;
            }
        }
        false
    };
    assert!(wait_for("ADDED"), "no ADDED row");
    s.ok(&["label", "cm", "settings", "seen=yes"]);
    assert!(wait_for("MODIFIED"), "no MODIFIED row");
    let _ = watcher.kill();
    let _ = watcher.wait();

    // Deletes with the three cascade modes and a grace period are accepted;
    // foreground and orphan leave their finalizer for the garbage collector.
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let out = s.ok(&[
        "delete",
        "deploy",
        "web",
        "--cascade=orphan",
        "--wait=false",
    ]);
    assert!(out.contains(r#"deployment.apps "web" deleted"#), "{out}");
    let d = s.json(&["get", "deploy", "web"]);
    assert_eq!(d["metadata"]["finalizers"][0], "orphan");
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    let cm2 = CONFIGMAP.replace("name: settings", "name: other");
    s.ok_stdin(&["apply", "-f", "-"], &cm2);
    s.ok(&[
        "delete",
        "cm",
        "other",
        "--cascade=foreground",
        "--wait=false",
    ]);
    assert_eq!(
        s.json(&["get", "cm", "other"])["metadata"]["finalizers"][0],
        "foregroundDeletion"
    );
    s.ok(&[
        "delete",
        "cm",
        "settings",
        "--cascade=background",
        "--grace-period=0",
        "--force",
    ]);
    assert!(s.fails(&["get", "cm", "settings"]).contains("not found"));
}

/// kubectl's generator commands send protobuf bodies.
#[test]
fn kubectl_create_generators_send_protobuf() {
    let s = Server::start();
    s.ok(&["create", "namespace", "gen"]);
    s.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "gen",
        "--from-literal=a=1",
        "--from-literal=b=two",
    ]);
    let cm = s.json(&["get", "cm", "cfg", "-n", "gen"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "two"}));
    s.ok(&[
        "create",
        "secret",
        "generic",
        "pw",
        "-n",
        "gen",
        "--from-literal=password=s3cret",
    ]);
    assert_eq!(
        s.json(&["get", "secret", "pw", "-n", "gen"])["data"]["password"],
        "czNjcmV0"
    );
    s.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "gen",
        "--image=nginx:1.25",
        "--replicas=2",
        "--port=80",
    ]);
    let d = s.json(&["get", "deploy", "web", "-n", "gen"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "gen",
        "--tcp=80:8080",
    ]);
    assert_eq!(
        s.json(&["get", "svc", "web", "-n", "gen"])["spec"]["ports"][0]["targetPort"],
        8080
    );
    s.ok(&[
        "run",
        "one",
        "-n",
        "gen",
        "--image=busybox:1.36",
        "--restart=Never",
        "--",
        "sleep",
        "1",
    ]);
    let pod = s.json(&["get", "pod", "one", "-n", "gen"]);
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "1"])
    );
    s.ok(&["create", "job", "j", "-n", "gen", "--image=busybox:1.36"]);
    s.ok(&[
        "create",
        "role",
        "r",
        "-n",
        "gen",
        "--verb=get",
        "--resource=pods",
    ]);
    s.ok(&["delete", "pod", "one", "-n", "gen"]);
}

#[test]
fn service_account_tokens_authenticate() {
    let s = Server::start();
    s.ok(&["create", "serviceaccount", "robot"]);
    let token = s
        .ok(&["create", "token", "robot", "--duration=1h"])
        .trim()
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let err = s.fails(&["create", "token", "nobody"]);
    assert!(
        err.contains(r#"serviceaccounts "nobody" not found"#),
        "{err}"
    );

    // The token is a credential: kubectl with it alone is the service account.
    let url = format!("https://127.0.0.1:{}", s.port);
    let as_robot = |args: &[&str]| {
        std::process::Command::new(support::kubectl_binary())
            .env("HOME", s.dir.path())
            .env("KUBECONFIG", "/dev/null")
            .args([
                "--server",
                &url,
                "--insecure-skip-tls-verify",
                "--token",
                &token,
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = as_robot(&["auth", "whoami", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert!(who["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == "system:serviceaccounts:default"));
    let out = as_robot(&["get", "sa", "robot", "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "serviceaccount/robot"
    );
    assert_eq!(s.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");

    // TokenReview says who a token belongs to, and rejects a forged one.
    let review = s.dir.path().join("review.json");
    let forged = format!("{}x", token);
    for (t, authenticated) in [(token.as_str(), true), (forged.as_str(), false)] {
        std::fs::write(
            &review,
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}}).to_string(),
        )
        .unwrap();
        let out = s.ok(&[
            "create",
            "--raw",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "-f",
            review.to_str().unwrap(),
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["authenticated"], authenticated, "{v}");
    }
    // Deleting the service account invalidates its tokens.
    s.ok(&["delete", "sa", "robot"]);
    let out = as_robot(&["get", "sa", "-o", "name"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        &review,
        serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}).to_string(),
    )
    .unwrap();
    let out = s.ok(&[
        "create",
        "--raw",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "-f",
        review.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["authenticated"], false, "{v}");
    // Reviews are answered, never stored.
    let err = s.fails(&[
        "get",
        "--raw",
        "/apis/authentication.k8s.io/v1/tokenreviews",
    ]);
    assert!(
        err.contains("NotFound")
            || err.contains("not found")
            || err.contains("MethodNotAllowed")
            || err.contains("not allow"),
        "{err}"
    );
}

/// kubectl validates the items of a `List` against /openapi/v2 (protobuf).
#[test]
fn lists_of_objects_validate_and_apply() {
    let s = Server::start();
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
  data: {k: v}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: d}
  spec:
    selector: {matchLabels: {app: d}}
    template:
      metadata: {labels: {app: d}}
      spec: {containers: [{name: c, image: nginx}]}
"#;
    let out = s.ok_stdin(&["create", "-f", "-"], list);
    assert!(
        out.contains("configmap/a created") && out.contains("deployment.apps/d created"),
        "{out}"
    );
    let out = s.ok_stdin(&["apply", "-f", "-"], list);
    assert!(out.contains("configmap/a"), "{out}");
    // What `kubectl get -o yaml` prints (a List) goes back in.
    let dumped = s.ok(&["get", "cm", "a", "-o", "yaml"]);
    s.ok_stdin(&["apply", "-f", "-"], &dumped);
    let bad = list.replace("  data: {k: v}", "  data: {k: v}\n  bogus: 1");
    let err = s.fails_stdin(&["apply", "-f", "-"], &bad);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    let v2 = s.ok(&["get", "--raw", "/openapi/v2"]);
    let doc: serde_json::Value = serde_json::from_str(&v2).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
}

#[test]
fn horizontal_pod_autoscalers_convert_between_v1_and_v2() {
    let s = Server::start();
    // Written through v1: read back through v2 as a CPU Resource metric.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 6
  targetCPUUtilizationPercentage: 70
"#,
    );
    let v2 = s.json(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "web",
        "-o",
        "json",
    ]);
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"],
        serde_json::json!({"type": "Utilization", "averageUtilization": 70}),
        "{v2}"
    );
    assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());

    // Written through v2 with a metric v1 cannot express.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: mem}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: mem}
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 100Mi}}
"#,
    );
    let v1 = s.json(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "mem",
        "-o",
        "json",
    ]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    let kept = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap_or_default();
    assert!(kept.contains("memory") && kept.contains("100Mi"), "{v1}");

    // A v1 client's patch keeps what only v2 shows.
    s.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "mem",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxReplicas":9}}"#,
    ]);
    let v2 = s.json(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "mem",
        "-o",
        "json",
    ]);
    assert_eq!(v2["spec"]["maxReplicas"], 9);
    assert_eq!(
        v2["spec"]["metrics"][1]["resource"]["name"], "memory",
        "{v2}"
    );
    assert!(
        v2["metadata"]["annotations"]
            .get("autoscaling.alpha.kubernetes.io/metrics")
            .is_none(),
        "the v1 annotations are not stored: {v2}"
    );

    // Lists and watches through v1 carry v1 objects; the table reads them.
    let list: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
    ]))
    .unwrap();
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["apiVersion"], "autoscaling/v1", "{item}");
        assert!(item["spec"].get("metrics").is_none(), "{item}");
    }
    let watch = s.ok(&[
        "get",
        "--raw",
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1&timeoutSeconds=1",
    ]);
    assert_eq!(watch.lines().count(), 2, "{watch}");
    for line in watch.lines() {
        let ev: Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["object"]["apiVersion"], "autoscaling/v1", "{line}");
    }
    let table = s.ok(&["get", "horizontalpodautoscalers.v1.autoscaling"]);
    assert!(table.contains("cpu: <unknown>/50%"), "{table}");
}

#[test]
fn watches_from_a_quiet_resource_or_the_future() {
    let s = Server::start();
    s.ok(&["create", "configmap", "quiet"]);
    // Other writes move the store's revision past the last configmap change.
    for i in 0..3 {
        s.ok(&["create", "secret", "generic", &format!("s{i}")]);
    }
    let list: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1/namespaces/default/secrets"]))
            .unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!(
        "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=2&resourceVersion={rv}"
    );
    let watcher = std::thread::spawn({
        let cmd = s.kubectl_cmd();
        move || {
            let mut cmd = cmd;
            cmd.args(["get", "--raw", &path]).output().unwrap()
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.ok(&["label", "configmap", "quiet", "seen=yes"]);
    let out = watcher.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"MODIFIED\"") && text.contains("\"seen\":\"yes\""),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("\"ADDED\""), "nothing before {rv}: {text}");

    let err = s.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=999999999",
    ]);
    assert!(err.contains("Too large resource version"), "{err}");
}

#[test]
fn server_side_apply_keys_service_ports_by_port_and_protocol() {
    let s = Server::start();
    let svc = |extra: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: dns\nspec:\n  selector:\n    app: dns\n  ports:\n  - name: dns\n    port: 53\n    protocol: UDP\n  - name: dns-tcp\n    port: 53\n{extra}"
        )
    };
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &svc(""));
    let ports = |s: &Server| -> Vec<(String, i64, String)> {
        s.json(&["get", "svc", "dns"])["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["port"].as_i64().unwrap(),
                    p["protocol"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let both = vec![
        ("dns".to_owned(), 53, "UDP".to_owned()),
        ("dns-tcp".to_owned(), 53, "TCP".to_owned()),
    ];
    assert_eq!(ports(&s), both);
    let svc_json = s.json(&["get", "svc", "dns", "--show-managed-fields"]);
    let fields = &svc_json["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"];
    for key in [
        r#"k:{"port":53,"protocol":"UDP"}"#,
        r#"k:{"port":53,"protocol":"TCP"}"#,
    ] {
        assert!(fields.get(key).is_some(), "{key} missing in {fields}");
    }
    // Re-applying (protocol still left to its default) changes nothing and
    // a new field lands on the right item.
    s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &svc("    targetPort: 5353\n"),
    );
    assert_eq!(ports(&s), both);
    let svc_json = s.json(&["get", "svc", "dns"]);
    assert_eq!(svc_json["spec"]["ports"][1]["targetPort"], 5353);
    assert_eq!(svc_json["spec"]["ports"][0]["targetPort"], 53);
}

#[test]
fn audit_log_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    let log = dir.path().join("audit.log");
    std::fs::write(
        &policy,
        r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
- level: None
  nonResourceURLs: ["/readyz*", "/healthz*", "/livez*"]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: RequestResponse
  verbs: [create]
  resources: [{group: "", resources: [configmaps]}]
- level: None
"#,
    )
    .unwrap();
    let s = Server::start_with(&[
        "--disable-controller-manager",
        "--disable-scheduler",
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", log.display()),
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=k=topsecret",
    ]);
    s.ok(&["create", "configmap", "c", "--from-literal=a=b"]);
    s.ok(&["get", "configmap", "c"]);
    s.fails(&["create", "configmap", "c", "--from-literal=a=b"]);

    let text = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |verb: &str, resource: &str, stage: &str, code: Option<u64>| {
        events
            .iter()
            .filter(|e| {
                e["verb"] == verb
                    && e["objectRef"]["resource"] == resource
                    && e["stage"] == stage
                    && code.is_none_or(|c| e["responseStatus"]["code"] == c)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    // Secrets at Metadata: who did what, never the data.
    let secret = find("create", "secrets", "ResponseComplete", Some(201));
    assert_eq!(secret.len(), 1, "{text}");
    assert_eq!(secret[0]["level"], "Metadata");
    assert_eq!(secret[0]["objectRef"]["namespace"], "default");
    assert!(secret[0]["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("system:masters")));
    assert!(secret[0].get("requestObject").is_none());
    assert!(!text.contains("topsecret") && !text.contains("dG9wc2VjcmV0"));
    assert_eq!(find("create", "secrets", "RequestReceived", None).len(), 1);
    // ConfigMap creates at RequestResponse: both bodies, managedFields
    // omitted; the refused second create has its Status.
    let cm = find("create", "configmaps", "ResponseComplete", Some(201));
    assert_eq!(cm.len(), 1, "{text}");
    assert_eq!(cm[0]["requestObject"]["data"]["a"], "b");
    assert!(cm[0]["responseObject"]["metadata"]["uid"].is_string());
    assert!(cm[0]["responseObject"]["metadata"]
        .get("managedFields")
        .is_none());
    assert_eq!(cm[0]["auditID"].as_str().unwrap().len(), 36);
    let refused = find("create", "configmaps", "ResponseComplete", Some(409));
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(refused[0]["responseStatus"]["reason"], "AlreadyExists");
    // Reads of ConfigMaps fall to the last rule: not audited.
    assert!(find("get", "configmaps", "ResponseComplete", None).is_empty());
}

/// `--audit-log-maxsize` rotates the log (renamed with a timestamp, as
/// kube-apiserver names it) and `--audit-log-maxbackup` keeps the newest
/// rotated files; every line is a whole event in one file.
#[test]
fn audit_log_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("audit-policy.yaml");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = logs.join("audit.log");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  verbs: [create]\n  resources: [{group: \"\", resources: [configmaps]}]\n",
    )
    .unwrap();
    let s = Server::start_with(&[
        "--disable-controller-manager",
        "--disable-scheduler",
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-log-path={}", log.display()),
        "--audit-log-maxsize=1",
        "--audit-log-maxbackup=1",
    ]);
    // About 0.8 MB of events per create (the body twice): a rotation at
    // every second create or so.
    let data = dir.path().join("data.txt");
    std::fs::write(&data, "x".repeat(300 * 1024)).unwrap();
    for i in 0..5 {
        s.ok(&[
            "create",
            "configmap",
            &format!("big{i}"),
            &format!("--from-file=data={}", data.display()),
        ]);
    }
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let backup = &names[0];
    assert!(
        backup.starts_with("audit-")
            && backup.ends_with(".log")
            && backup.len() == "audit-2026-12-04T07-50-00.123.log".len(),
        "{backup}"
    );
    assert_eq!(names[1], "audit.log");
    assert!(std::fs::metadata(&log).unwrap().len() <= 1024 * 1024);
    let mut created = Vec::new();
    for name in &names {
        for line in std::fs::read_to_string(logs.join(name)).unwrap().lines() {
            let ev: serde_json::Value = serde_json::from_str(line).unwrap();
            if ev["stage"] == "ResponseComplete" {
                created.push(ev["objectRef"]["name"].as_str().unwrap().to_owned());
            }
        }
    }
    // The newest events are kept, in order, the last one included.
    assert_eq!(
        created.last().map(String::as_str),
        Some("big4"),
        "{created:?}"
    );
    assert!(
        created.len() < 5,
        "older events were rotated away: {created:?}"
    );
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted);
}

/// A tiny HTTP receiver: each request's first line and JSON body; the
/// first `fail` requests are answered 500.
fn webhook_receiver(fail: usize) -> (u16, std::sync::mpsc::Receiver<(String, serde_json::Value)>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut served = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                if body.len() < len {
                    continue;
                }
                served += 1;
                let status = if served <= fail {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = conn.write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                );
                if served > fail {
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let _ = tx.send((line, serde_json::from_str(body).unwrap_or_default()));
                }
                buf.clear();
            }
        }
    });
    (port, rx)
}

/// `--audit-webhook-config-file`: events go to the webhook as EventLists
/// (batched for `--audit-webhook-batch-max-wait`), retried after a failed
/// send, by the same policy as the log.
#[test]
fn audit_events_reach_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (port, received) = webhook_receiver(1);
    let policy = dir.path().join("audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  resources: [{group: \"\", resources: [configmaps]}]\n- level: None\n",
    )
    .unwrap();
    let hook = dir.path().join("webhook.yaml");
    std::fs::write(
        &hook,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: audit\n  cluster: {{server: \"http://127.0.0.1:{port}/audit/events\"}}\ncontexts:\n- name: audit\n  context: {{cluster: audit, user: \"\"}}\ncurrent-context: audit\n"
        ),
    )
    .unwrap();
    let s = Server::start_with(&[
        "--disable-controller-manager",
        "--disable-scheduler",
        &format!("--audit-policy-file={}", policy.display()),
        &format!("--audit-webhook-config-file={}", hook.display()),
        "--audit-webhook-batch-max-wait=1s",
        "--audit-webhook-initial-backoff=200ms",
    ]);
    s.ok(&["create", "configmap", "hooked", "--from-literal=a=b"]);
    s.ok(&["get", "secrets"]);
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !events
        .iter()
        .any(|e: &serde_json::Value| e["verb"] == "create")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let (line, list) = received
            .recv_timeout(left)
            .expect("the create's event at the webhook");
        assert_eq!(line, "POST /audit/events HTTP/1.1");
        assert_eq!(list["kind"], "EventList", "{list}");
        assert_eq!(list["apiVersion"], "audit.k8s.io/v1", "{list}");
        events.extend(list["items"].as_array().unwrap().iter().cloned());
    }
    let create = events.iter().find(|e| e["verb"] == "create").unwrap();
    assert_eq!(create["stage"], "ResponseComplete", "{create}");
    assert_eq!(create["level"], "Metadata", "{create}");
    assert_eq!(create["objectRef"]["resource"], "configmaps", "{create}");
    assert_eq!(create["responseStatus"]["code"], 201, "{create}");
    // The policy holds for the webhook too: no secrets, no other stages.
    assert!(
        events
            .iter()
            .all(|e| e["objectRef"]["resource"] == "configmaps" && e["stage"] != "RequestReceived"),
        "{events:?}"
    );
}
