use super::*;

fn spec(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceSpec {
    ResourceSpec {
        group: group.into(),
        version: version.into(),
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
        subresources: vec![],
        schema: None,
    }
}

fn with_subresources(mut s: ResourceSpec, subs: &[&str]) -> ResourceSpec {
    s.subresources = subs.iter().map(|s| s.to_string()).collect();
    s
}

fn core() -> Vec<ResourceSpec> {
    vec![
        with_subresources(
            spec("", "v1", "Pod", "pods", true),
            &[
                "attach",
                "binding",
                "ephemeralcontainers",
                "eviction",
                "exec",
                "log",
                "portforward",
                "proxy",
                "resize",
                "status",
            ],
        ),
        with_subresources(
            spec("", "v1", "Namespace", "namespaces", false),
            &["finalize", "status"],
        ),
        with_subresources(
            spec("", "v1", "ServiceAccount", "serviceaccounts", true),
            &["token"],
        ),
        spec("", "v1", "ConfigMap", "configmaps", true),
    ]
}

fn crontab_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "cronSpec": {"type": "string"},
                "replicas": {"type": "integer"}
            }}
        }
    })
}

fn params_of(op: &Value) -> Vec<&str> {
    op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

/// Every `$ref` of `doc` names a schema the document has.
fn assert_refs_resolve(doc: &Value, prefix: &str, schemas: &Value) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{r} is not under {prefix}"));
        assert!(schemas.get(name).is_some(), "dangling $ref {r}");
    }
}

#[test]
fn kinds_carry_their_group_version_kind() {
    let doc = v3_group_version("", "v1", &core());
    let schemas = &doc["components"]["schemas"];
    for (name, kind) in [
        ("io.k8s.api.core.v1.Pod", "Pod"),
        ("io.k8s.api.core.v1.PodList", "PodList"),
        ("io.k8s.api.core.v1.Namespace", "Namespace"),
        ("io.k8s.api.core.v1.ConfigMap", "ConfigMap"),
    ] {
        assert_eq!(
            schemas[name][GVK],
            json!([{"group": "", "version": "v1", "kind": kind}]),
            "{name}"
        );
    }
    assert_eq!(
        schemas["io.k8s.api.policy.v1.Eviction"][GVK][0]["kind"],
        "Eviction"
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    // Another group's resources are not in this document.
    let apps = vec![spec("apps", "v1", "Deployment", "deployments", true)];
    let doc = v3_group_version("", "v1", &apps);
    assert_eq!(doc["paths"], json!({}));
}

#[test]
fn patch_operations_offer_what_kubectl_looks_for() {
    let doc = v3_group_version("", "v1", &core());
    let paths = &doc["paths"];
    for (path, kind) in [
        ("/api/v1/namespaces/{namespace}/pods/{name}", "Pod"),
        ("/api/v1/namespaces/{namespace}/pods/{name}/status", "Pod"),
        (
            "/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers",
            "Pod",
        ),
        ("/api/v1/namespaces/{name}", "Namespace"),
        ("/api/v1/namespaces/{name}/status", "Namespace"),
        (
            "/api/v1/namespaces/{namespace}/configmaps/{name}",
            "ConfigMap",
        ),
    ] {
        let patch = &paths[path]["patch"];
        assert_eq!(
            patch[GVK],
            json!({"group": "", "version": "v1", "kind": kind}),
            "{path}"
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        let params = params_of(patch);
        for p in ["fieldValidation", "dryRun", "fieldManager", "force"] {
            assert!(params.contains(&p), "{path} lacks {p}");
        }
        let fv = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fieldValidation")
            .unwrap();
        assert_eq!(fv["in"], "query");
        let types: Vec<&String> = patch["requestBody"]["content"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            types,
            [
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json"
            ]
        );
    }
    let item = &paths["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(params_of(item), ["name", "namespace", "pretty"]);
    assert_eq!(item["patch"]["operationId"], "patchCoreV1NamespacedPod");
    assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedPod");
    assert_eq!(item["put"]["operationId"], "replaceCoreV1NamespacedPod");
    for m in ["post", "put"] {
        let ops = &paths["/api/v1/namespaces/{namespace}/pods"];
        let op = if m == "post" {
            &ops["post"]
        } else {
            &item["put"]
        };
        assert!(params_of(op).contains(&"fieldValidation"), "{m}");
    }
    let coll = &paths["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(coll["get"]["operationId"], "listCoreV1NamespacedPod");
    assert_eq!(
        coll["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedPod"
    );
    assert_eq!(
        coll["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodList"
    );
    assert_eq!(
        paths["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"][GVK],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"]["post"][GVK]["kind"],
        "TokenRequest"
    );
    assert!(paths["/api/v1/namespaces/{name}/finalize"]["put"].is_object());
    assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
    assert_eq!(
        paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"]["post"][GVK]["kind"],
        "PodExecOptions"
    );
    // Cluster-scoped: no namespace anywhere.
    assert!(!paths
        .as_object()
        .unwrap()
        .keys()
        .any(|p| p.contains("namespaces/{namespace}/namespaces")));
}

#[test]
fn verbs_decide_the_operations() {
    let mut s = spec(
        "authentication.k8s.io",
        "v1",
        "TokenReview",
        "tokenreviews",
        false,
    );
    s.verbs = vec!["create".into()];
    let doc = v3_group_version("authentication.k8s.io", "v1", &[s]);
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<Vec<_>>(),
        ["/apis/authentication.k8s.io/v1/tokenreviews"]
    );
    let post = &paths["/apis/authentication.k8s.io/v1/tokenreviews"]["post"];
    assert_eq!(post["operationId"], "createAuthenticationV1TokenReview");
    assert_eq!(post["tags"], json!(["authentication_v1"]));
}

#[test]
fn list_fields_say_how_they_merge() {
    let doc = v3_group_version("", "v1", &core());
    let s = &doc["components"]["schemas"];
    let field = |def: &str, f: &str| s[def]["properties"][f].clone();
    let containers = field("io.k8s.api.core.v1.PodSpec", "containers");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(containers["type"], "array");
    for (def, f, key, strategy) in [
        (
            "io.k8s.api.core.v1.PodSpec",
            "initContainers",
            "name",
            "merge",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "ephemeralContainers",
            "name",
            "merge",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            "name",
            "merge,retainKeys",
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "imagePullSecrets",
            "name",
            "merge",
        ),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            "containerPort",
            "merge",
        ),
        ("io.k8s.api.core.v1.Container", "env", "name", "merge"),
        (
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
            "mountPath",
            "merge",
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "env",
            "name",
            "merge",
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "conditions",
            "type",
            "merge",
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            "uid",
            "merge",
        ),
    ] {
        let p = field(def, f);
        assert_eq!(p["x-kubernetes-patch-merge-key"], key, "{def}.{f}");
        assert_eq!(p["x-kubernetes-patch-strategy"], strategy, "{def}.{f}");
    }
    assert_eq!(
        field("io.k8s.api.core.v1.Container", "ports")["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    let finalizers = field(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
    );
    assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    let tolerations = field("io.k8s.api.core.v1.PodSpec", "tolerations");
    assert_eq!(tolerations["x-kubernetes-list-type"], "atomic");
    assert!(tolerations.get("x-kubernetes-patch-merge-key").is_none());
    assert_eq!(
        s["io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"]["x-kubernetes-map-type"],
        "atomic"
    );
    // The lookup the API server's own strategic merge patch can use.
    let e = field_extensions("io.k8s.api.apps.v1.DeploymentSpec", "strategy").unwrap();
    assert_eq!(e["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(field_extensions("io.k8s.api.core.v1.PodSpec", "nodeName").is_none());
}

#[test]
fn the_extension_table_names_real_fields() {
    // Every field of the table that k8s-openapi defines is in its schema:
    // the table and the schemas describe the same Kubernetes version.
    let defs = &builtins().definitions;
    let mut checked = 0;
    for (def, fields) in extensions()["fields"].as_object().unwrap() {
        let Some(d) = defs.get(def) else { continue };
        for f in fields.as_object().unwrap().keys() {
            assert!(d["properties"].get(f).is_some(), "{def} has no field {f}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} fields checked");
}

#[test]
fn references_resolve() {
    let mut all = core();
    all.push(with_subresources(
        spec("apps", "v1", "Deployment", "deployments", true),
        &["scale", "status"],
    ));
    let mut crontab = spec("stable.example.com", "v1", "CronTab", "crontabs", true);
    crontab.schema = Some(crontab_schema());
    crontab.subresources = vec!["status".into(), "scale".into()];
    all.push(crontab);
    all.push(spec("example.com", "v1", "Mystery", "mysteries", false));
    for (g, v) in [
        ("", "v1"),
        ("apps", "v1"),
        ("stable.example.com", "v1"),
        ("example.com", "v1"),
    ] {
        let doc = v3_group_version(g, v, &all);
        assert_refs_resolve(&doc, COMPONENTS, &doc["components"]["schemas"]);
    }
    let doc = v2(&all);
    assert_refs_resolve(&doc, DEFINITIONS, &doc["definitions"]);
}

#[test]
fn custom_resources_use_their_crd_schema() {
    let mut crontab = spec("stable.example.com", "v1", "CronTab", "crontabs", true);
    crontab.schema = Some(crontab_schema());
    crontab.subresources = vec!["status".into()];
    let doc = v3_group_version("stable.example.com", "v1", &[crontab]);
    let s = &doc["components"]["schemas"];
    let ct = &s["com.example.stable.v1.CronTab"];
    assert_eq!(
        ct[GVK],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    assert_eq!(
        ct["properties"]["spec"]["properties"]["cronSpec"]["type"],
        "string"
    );
    assert_eq!(ct["properties"]["apiVersion"]["type"], "string");
    assert_eq!(
        ct["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        s["com.example.stable.v1.CronTabList"][GVK][0]["kind"],
        "CronTabList"
    );
    assert!(s
        .get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        .is_some());
    let item = "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}";
    for path in [item.to_owned(), format!("{item}/status")] {
        let patch = &doc["paths"][&path]["patch"];
        assert_eq!(patch[GVK]["kind"], "CronTab");
        assert!(params_of(patch).contains(&"fieldValidation"));
        // No strategic merge patch for custom resources.
        let types = patch["requestBody"]["content"].as_object().unwrap();
        assert_eq!(types.len(), 3, "{path}");
        assert!(!types.contains_key(STRATEGIC_MERGE_PATCH));
    }
    assert_eq!(
        doc["paths"][item]["patch"]["operationId"],
        "patchStableExampleComV1NamespacedCronTab"
    );
}

#[test]
fn kinds_without_a_schema_still_have_paths() {
    let doc = v3_group_version(
        "example.com",
        "v1",
        &[spec("example.com", "v1", "Mystery", "mysteries", false)],
    );
    let s = &doc["components"]["schemas"]["com.example.v1.Mystery"];
    assert_eq!(s[GVK][0]["kind"], "Mystery");
    assert_eq!(s["x-kubernetes-preserve-unknown-fields"], true);
    let patch = &doc["paths"]["/apis/example.com/v1/mysteries/{name}"]["patch"];
    assert!(params_of(patch).contains(&"fieldValidation"));
    assert!(!patch["requestBody"]["content"]
        .as_object()
        .unwrap()
        .contains_key(STRATEGIC_MERGE_PATCH));
}

#[test]
fn subresources_of_other_kinds() {
    let d = with_subresources(
        spec("apps", "v1", "Deployment", "deployments", true),
        &["scale", "status"],
    );
    let doc = v3_group_version("apps", "v1", &[d]);
    let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"][GVK],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(
        scale["patch"]["operationId"],
        "patchAppsV1NamespacedDeploymentScale"
    );
    assert_eq!(
        scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
    );
    let s = &doc["components"]["schemas"];
    assert_eq!(
        s["io.k8s.api.apps.v1.Deployment"][GVK][0]["kind"],
        "Deployment"
    );
    assert_eq!(
        s["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
            ["x-kubernetes-patch-strategy"],
        "retainKeys"
    );
}

#[test]
fn the_index_hashes_each_document() {
    let core_doc = v3_group_version("", "v1", &core());
    let apps = vec![spec("apps", "v1", "Deployment", "deployments", true)];
    let apps_doc = v3_group_version("apps", "v1", &apps);
    let root = v3_root(&[
        (String::new(), "v1".to_owned(), &core_doc),
        ("apps".to_owned(), "v1".to_owned(), &apps_doc),
    ]);
    let url = |p: &str| {
        root["paths"][p]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        url("api/v1"),
        format!("/openapi/v3/api/v1?hash={}", doc_hash(&core_doc))
    );
    assert!(url("apis/apps/v1").starts_with("/openapi/v3/apis/apps/v1?hash="));
    let h = doc_hash(&core_doc);
    assert_eq!(h.len(), 32);
    assert!(h
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    // Stable across builds, different across documents.
    assert_eq!(h, doc_hash(&v3_group_version("", "v1", &core())));
    assert_ne!(h, doc_hash(&apps_doc));
    let mut fewer = core();
    fewer.pop();
    assert_ne!(h, doc_hash(&v3_group_version("", "v1", &fewer)));
}

#[test]
fn swagger_2_has_the_same_operations() {
    let mut all = core();
    let mut crontab = spec("stable.example.com", "v1", "CronTab", "crontabs", true);
    crontab.schema = Some(crontab_schema());
    all.push(crontab);
    let doc = v2(&all);
    assert_eq!(doc["swagger"], "2.0");
    let defs = &doc["definitions"];
    assert_eq!(defs["io.k8s.api.core.v1.Pod"][GVK][0]["kind"], "Pod");
    assert_eq!(
        defs["io.k8s.api.core.v1.Pod"]["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    assert_eq!(
        defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
            ["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert!(defs["com.example.stable.v1.CronTab"].is_object());
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch[GVK]["kind"], "Pod");
    let fv = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fieldValidation")
        .unwrap();
    assert_eq!(fv["in"], "query");
    assert_eq!(fv["type"], "string");
    assert!(patch["consumes"]
        .as_array()
        .unwrap()
        .contains(&json!(STRATEGIC_MERGE_PATCH)));
    assert_eq!(patch["parameters"][0]["in"], "body");
    assert_eq!(
        patch["responses"]["200"]["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    let ct_patch = &doc["paths"]
        ["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
    assert!(!ct_patch["consumes"]
        .as_array()
        .unwrap()
        .contains(&json!(STRATEGIC_MERGE_PATCH)));
}

#[test]
fn resolved_schemas_find_unknown_fields() {
    let schema = resolved_schema("apps", "v1", "Deployment").unwrap();
    let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "bogus": 1},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}}}});
    let mut pruned = Vec::new();
    crate::schema::prune(&schema, &mut obj, "", false, &mut pruned);
    assert_eq!(
        pruned,
        vec![
            "metadata.bogus",
            "spec.template.spec.containers[0].imagePolicy"
        ]
    );
}
