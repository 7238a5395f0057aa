//! Server-side Table printing against what a Kubernetes v1.33 API server
//! answers: rows per kind (data in `snapshots/table_rows.json`), column
//! headers as kubectl shows them, HumanDuration, the Table document itself,
//! and custom resources' printer columns.

use api::table::{
    columns, custom_columns, custom_row, custom_table, human_duration, json_path, row, table,
    IncludeObject,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    time("2025-06-01T12:00:00Z")
}

#[test]
fn rows_match_kubernetes() {
    let data: Value = serde_json::from_str(include_str!("snapshots/table_rows.json")).unwrap();
    let default_now = data["now"].as_str().unwrap();
    let mut failures = Vec::new();
    for case in data["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let group = case["group"].as_str().unwrap_or("");
        let kind = case["kind"].as_str().unwrap();
        let now = time(case["now"].as_str().unwrap_or(default_now));
        let got = row(group, kind, &case["object"], now);
        let want = case["cells"].as_array().unwrap();
        if &got != want {
            failures.push(format!(
                "{name} ({kind}):\n   got {}\n  want {}",
                Value::from(got.clone()),
                Value::from(want.clone())
            ));
        }
        let n = columns(group, kind).len();
        if got.len() != n {
            failures.push(format!("{name}: {} cells for {n} columns", got.len()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The headers kubectl prints (column names upper-cased): by default, then
/// the extra ones `-o wide` adds.
#[test]
fn headers_as_kubectl_shows_them() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "Pod", "NAME|READY|STATUS|RESTARTS|AGE", "IP|NODE|NOMINATED NODE|READINESS GATES"),
        ("", "Node", "NAME|STATUS|ROLES|AGE|VERSION", "INTERNAL-IP|EXTERNAL-IP|OS-IMAGE|KERNEL-VERSION|CONTAINER-RUNTIME"),
        ("", "Namespace", "NAME|STATUS|AGE", ""),
        ("", "Service", "NAME|TYPE|CLUSTER-IP|EXTERNAL-IP|PORT(S)|AGE", "SELECTOR"),
        ("", "Endpoints", "NAME|ENDPOINTS|AGE", ""),
        ("discovery.k8s.io", "EndpointSlice", "NAME|ADDRESSTYPE|PORTS|ENDPOINTS|AGE", ""),
        ("", "ConfigMap", "NAME|DATA|AGE", ""),
        ("", "Secret", "NAME|TYPE|DATA|AGE", ""),
        ("", "ServiceAccount", "NAME|SECRETS|AGE", ""),
        ("", "Event", "LAST SEEN|TYPE|REASON|OBJECT|MESSAGE", "SUBOBJECT|SOURCE|FIRST SEEN|COUNT|NAME"),
        ("events.k8s.io", "Event", "LAST SEEN|TYPE|REASON|OBJECT|MESSAGE", "SUBOBJECT|SOURCE|FIRST SEEN|COUNT|NAME"),
        ("apps", "Deployment", "NAME|READY|UP-TO-DATE|AVAILABLE|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("apps", "ReplicaSet", "NAME|DESIRED|CURRENT|READY|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("", "ReplicationController", "NAME|DESIRED|CURRENT|READY|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("apps", "StatefulSet", "NAME|READY|AGE", "CONTAINERS|IMAGES"),
        ("apps", "DaemonSet", "NAME|DESIRED|CURRENT|READY|UP-TO-DATE|AVAILABLE|NODE SELECTOR|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("apps", "ControllerRevision", "NAME|CONTROLLER|REVISION|AGE", ""),
        ("batch", "Job", "NAME|STATUS|COMPLETIONS|DURATION|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("batch", "CronJob", "NAME|SCHEDULE|TIMEZONE|SUSPEND|ACTIVE|LAST SCHEDULE|AGE", "CONTAINERS|IMAGES|SELECTOR"),
        ("autoscaling", "HorizontalPodAutoscaler", "NAME|REFERENCE|TARGETS|MINPODS|MAXPODS|REPLICAS|AGE", ""),
        ("policy", "PodDisruptionBudget", "NAME|MIN AVAILABLE|MAX UNAVAILABLE|ALLOWED DISRUPTIONS|AGE", ""),
        ("coordination.k8s.io", "Lease", "NAME|HOLDER|AGE", ""),
        ("networking.k8s.io", "Ingress", "NAME|CLASS|HOSTS|ADDRESS|PORTS|AGE", ""),
        ("networking.k8s.io", "IngressClass", "NAME|CONTROLLER|PARAMETERS|AGE", ""),
        ("networking.k8s.io", "NetworkPolicy", "NAME|POD-SELECTOR|AGE", ""),
        ("", "PersistentVolume", "NAME|CAPACITY|ACCESS MODES|RECLAIM POLICY|STATUS|CLAIM|STORAGECLASS|VOLUMEATTRIBUTESCLASS|REASON|AGE", "VOLUMEMODE"),
        ("", "PersistentVolumeClaim", "NAME|STATUS|VOLUME|CAPACITY|ACCESS MODES|STORAGECLASS|VOLUMEATTRIBUTESCLASS|AGE", "VOLUMEMODE"),
        ("storage.k8s.io", "StorageClass", "NAME|PROVISIONER|RECLAIMPOLICY|VOLUMEBINDINGMODE|ALLOWVOLUMEEXPANSION|AGE", ""),
        ("scheduling.k8s.io", "PriorityClass", "NAME|VALUE|GLOBAL-DEFAULT|AGE|PREEMPTIONPOLICY", ""),
        ("rbac.authorization.k8s.io", "Role", "NAME|CREATED AT", ""),
        ("rbac.authorization.k8s.io", "ClusterRole", "NAME|CREATED AT", ""),
        ("rbac.authorization.k8s.io", "RoleBinding", "NAME|ROLE|AGE", "USERS|GROUPS|SERVICEACCOUNTS"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding", "NAME|ROLE|AGE", "USERS|GROUPS|SERVICEACCOUNTS"),
        ("", "LimitRange", "NAME|CREATED AT", ""),
        ("", "ResourceQuota", "NAME|REQUEST|LIMIT|AGE", ""),
        ("", "PodTemplate", "NAME|CONTAINERS|IMAGES|POD LABELS", ""),
        ("apiextensions.k8s.io", "CustomResourceDefinition", "NAME|CREATED AT", ""),
        ("example.com", "Widget", "NAME|CREATED AT", ""),
    ];
    for (group, kind, normal, wide) in cases {
        let cols = columns(group, kind);
        let header = |priority: i32| {
            cols.iter()
                .filter(|c| c.priority == priority)
                .map(|c| c.name.to_uppercase())
                .collect::<Vec<_>>()
                .join("|")
        };
        assert_eq!(header(0), *normal, "{kind}");
        assert_eq!(header(1), *wide, "{kind} -o wide");
    }
}

#[test]
fn column_definitions_are_well_formed() {
    let kinds = [
        ("", "Pod"),
        ("", "Node"),
        ("", "Namespace"),
        ("", "Service"),
        ("", "Endpoints"),
        ("", "ConfigMap"),
        ("", "Secret"),
        ("", "ServiceAccount"),
        ("", "Event"),
        ("", "PersistentVolume"),
        ("", "PersistentVolumeClaim"),
        ("", "ReplicationController"),
        ("", "ResourceQuota"),
        ("", "PodTemplate"),
        ("", "LimitRange"),
        ("", "ComponentStatus"),
        ("apps", "Deployment"),
        ("apps", "ReplicaSet"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ControllerRevision"),
        ("batch", "Job"),
        ("batch", "CronJob"),
        ("autoscaling", "HorizontalPodAutoscaler"),
        ("policy", "PodDisruptionBudget"),
        ("coordination.k8s.io", "Lease"),
        ("networking.k8s.io", "Ingress"),
        ("networking.k8s.io", "IngressClass"),
        ("networking.k8s.io", "NetworkPolicy"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("rbac.authorization.k8s.io", "RoleBinding"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("events.k8s.io", "Event"),
        ("example.com", "Widget"),
    ];
    for (group, kind) in kinds {
        let cols = columns(group, kind);
        let names: Vec<&str> = cols
            .iter()
            .filter(|c| c.format == "name")
            .map(|c| c.name)
            .collect();
        assert!(
            names.contains(&"Name"),
            "{kind}: a Name column with format name"
        );
        if kind != "Event" {
            assert_eq!((cols[0].name, cols[0].format), ("Name", "name"), "{kind}");
        }
        for c in cols {
            assert!(
                ["string", "integer", "number", "boolean", "date"].contains(&c.type_),
                "{kind}.{}: {}",
                c.name,
                c.type_
            );
            assert!(c.priority == 0 || c.priority == 1, "{kind}.{}", c.name);
            assert!(
                !c.description.is_empty(),
                "{kind}.{}: a description",
                c.name
            );
        }
    }
    // Types as Kubernetes declares them (kubectl sorts and aligns by them).
    let ty = |group: &str, kind: &str, name: &str| {
        columns(group, kind)
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.type_)
    };
    assert_eq!(ty("", "Pod", "Restarts"), Some("string"));
    assert_eq!(ty("apps", "Deployment", "Up-to-date"), Some("string"));
    assert_eq!(ty("apps", "ReplicaSet", "Desired"), Some("integer"));
    assert_eq!(ty("batch", "CronJob", "Suspend"), Some("boolean"));
    assert_eq!(ty("", "Secret", "Data"), Some("string"));
    assert_eq!(ty("", "Role", "Created At"), Some("date"));
    assert_eq!(
        ty("scheduling.k8s.io", "PriorityClass", "Global-Default"),
        Some("boolean")
    );
}

#[test]
fn human_durations() {
    let cases: &[(i64, &str)] = &[
        (-5_000, "<invalid>"),
        (-2_000, "<invalid>"),
        (-1_999, "0s"),
        (-1_000, "0s"),
        (-500, "0s"),
        (0, "0s"),
        (999, "0s"),
        (1_000, "1s"),
        (59_000, "59s"),
        (119_999, "119s"),
        (120_000, "2m"),
        (121_000, "2m1s"),
        (185_000, "3m5s"),
        (599_000, "9m59s"),
        (600_000, "10m"),
        (3_900_000, "65m"),
        (10_799_000, "179m"),
        (10_800_000, "3h"),
        (11_400_000, "3h10m"),
        ((8 * 3600 - 1) * 1000, "7h59m"),
        (8 * 3600 * 1000, "8h"),
        ((48 * 3600 - 1) * 1000, "47h"),
        (48 * 3600 * 1000, "2d"),
        (51 * 3600 * 1000, "2d3h"),
        ((8 * 86400 - 1) * 1000, "7d23h"),
        (8 * 86400 * 1000, "8d"),
        (400 * 86400 * 1000, "400d"),
        ((730 * 86400 - 1) * 1000, "729d"),
        (730 * 86400 * 1000, "2y"),
        (800 * 86400 * 1000, "2y70d"),
        ((8 * 365 * 86400 - 1) * 1000, "7y364d"),
        (8 * 365 * 86400 * 1000, "8y"),
        (9 * 365 * 86400 * 1000, "9y"),
    ];
    for (ms, want) in cases {
        assert_eq!(human_duration(Duration::milliseconds(*ms)), *want, "{ms}ms");
    }
}

fn pod(phase: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "resourceVersion": "7", "creationTimestamp": "2025-06-01T11:55:00Z"},
        "spec": {"containers": [{"name": "a"}]}, "status": {"phase": phase}})
}

#[test]
fn table_document() {
    let objs = [pod("Running"), pod("Succeeded"), pod("Failed")];
    let meta = json!({"resourceVersion": "42", "continue": "abc", "remainingItemCount": 3});
    let t = table(
        "",
        "Pod",
        &objs,
        now(),
        IncludeObject::Metadata,
        meta.clone(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], meta);
    let defs = t["columnDefinitions"].as_array().unwrap();
    assert_eq!(defs.len(), 9);
    assert_eq!(defs[0]["name"], "Name");
    assert_eq!(defs[0]["type"], "string");
    assert_eq!(defs[0]["format"], "name");
    assert_eq!(defs[0]["priority"], 0);
    assert!(defs[0]["description"].is_string());
    assert_eq!(
        defs[5],
        json!({"name": "IP", "type": "string", "format": "", "description": defs[5]["description"], "priority": 1})
    );
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["cells"],
        json!(["p", "0/1", "Running", "0", "5m", "<none>", "<none>", "<none>", "<none>"])
    );
    assert_eq!(
        rows[0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": objs[0]["metadata"]})
    );
    // Finished pods carry a Completed row condition, as Kubernetes' do.
    assert!(rows[0].get("conditions").is_none());
    assert_eq!(
        rows[1]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );
    assert_eq!(rows[2]["conditions"][0]["reason"], "Failed");

    let t = table(
        "",
        "Pod",
        &objs[..1],
        now(),
        IncludeObject::Object,
        Value::Null,
    );
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(t["rows"][0]["object"], objs[0]);

    let t = table(
        "",
        "Pod",
        &objs[..1],
        now(),
        IncludeObject::None,
        json!({"resourceVersion": "9"}),
    );
    assert!(t["rows"][0].get("object").is_none());
    assert_eq!(IncludeObject::default(), IncludeObject::Metadata);

    let t = table(
        "",
        "ConfigMap",
        &[],
        now(),
        IncludeObject::Metadata,
        json!({"resourceVersion": "1"}),
    );
    assert_eq!(t["rows"], json!([]));
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 3);
}

fn widget() -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "w", "creationTimestamp": "2025-06-01T11:55:00Z", "labels": {"b": "x<y", "a": "1"}},
        "spec": {"cronSpec": "*/5 * * * *", "replicas": 3, "ratio": 2.5, "enabled": true, "items": [{"n": "a"}, {"n": "b"}]},
        "status": {"conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "False"}],
                   "lastRun": "2025-06-01T10:00:00Z", "bad": "yesterday"}})
}

#[test]
fn custom_resource_columns() {
    let defs = [
        json!({"name": "Schedule", "type": "string", "description": "When it runs.", "jsonPath": ".spec.cronSpec"}),
        json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}),
        json!({"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"}),
        json!({"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled"}),
        json!({"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
        // Several matches: Kubernetes prints the first.
        json!({"name": "Item", "type": "string", "jsonPath": ".spec.items[*].n"}),
        json!({"name": "Labels", "type": "string", "priority": 1, "jsonPath": ".metadata.labels"}),
        json!({"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"}),
        json!({"name": "Last Run", "type": "date", "jsonPath": ".status.lastRun"}),
        json!({"name": "Bad Date", "type": "date", "jsonPath": ".status.bad"}),
        // A value of the wrong type is null; a float truncates to an integer.
        json!({"name": "Count", "type": "integer", "jsonPath": ".spec.cronSpec"}),
        json!({"name": "Whole", "type": "integer", "jsonPath": ".spec.ratio"}),
        json!({"name": "Text", "type": "string", "jsonPath": ".spec.replicas"}),
        json!({"name": "Out Of Range", "type": "string", "jsonPath": ".spec.items[5].n"}),
    ];
    let cols = custom_columns(&defs);
    // Name first; no Age appended to a version that has columns.
    assert_eq!(cols.len(), defs.len() + 1);
    assert_eq!(cols[0]["name"], "Name");
    assert_eq!(cols[0]["format"], "name");
    assert_eq!(
        cols[1],
        json!({"name": "Schedule", "type": "string", "format": "", "description": "When it runs.", "priority": 0})
    );
    assert_eq!(cols[7]["priority"], 1);
    assert!(cols[2]["description"]
        .as_str()
        .unwrap()
        .contains(".spec.replicas"));

    let cells = custom_row(&defs, &widget(), now());
    assert_eq!(
        Value::from(cells),
        json!([
            "w",
            "*/5 * * * *",
            3,
            2.5,
            true,
            "False",
            "a",
            "{\"a\":\"1\",\"b\":\"x\\u003cy\"}",
            null,
            "120m",
            "<invalid>",
            null,
            2,
            "3",
            null
        ])
    );

    let t = custom_table(
        &defs[..1],
        &[widget()],
        now(),
        IncludeObject::Metadata,
        json!({"resourceVersion": "5"}),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 2);
    assert_eq!(t["rows"][0]["cells"], json!(["w", "*/5 * * * *"]));
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "w");
}

#[test]
fn custom_resource_without_columns_prints_age() {
    let cols = custom_columns(&[]);
    let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Name", "Age"]);
    assert_eq!(cols[1]["type"], "date");
    assert_eq!(
        custom_row(&[], &widget(), now()),
        vec![json!("w"), json!("5m")]
    );
    let t = custom_table(&[], &[widget()], now(), IncludeObject::None, json!({}));
    assert_eq!(t["rows"][0], json!({"cells": ["w", "5m"]}));
}

#[test]
fn json_paths() {
    let obj = json!({
        "metadata": {"name": "n", "labels": {"app.kubernetes.io/name": "web", "b": "2"}},
        "spec": {"items": [{"n": "a", "v": 1}, {"n": "b", "v": 2}, {"n": "c", "v": 3}], "empty": null},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}
    });
    let ok = |p: &str| json_path(&obj, p).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(ok(".metadata.name"), [json!("n")]);
    assert_eq!(ok("{.metadata.name}"), [json!("n")]);
    assert_eq!(ok("$.metadata.name"), [json!("n")]);
    assert_eq!(
        ok(".metadata.labels.app\\.kubernetes\\.io/name"),
        [json!("web")]
    );
    assert_eq!(
        ok(".metadata.labels['app.kubernetes.io/name']"),
        [json!("web")]
    );
    assert_eq!(ok(".spec.items[0].n"), [json!("a")]);
    assert_eq!(ok(".spec.items[-1].n"), [json!("c")]);
    assert_eq!(ok(".spec.items[-2].n"), [json!("b")]);
    assert_eq!(ok(".spec.items[*].n"), [json!("a"), json!("b"), json!("c")]);
    assert_eq!(ok(".spec.items[0:2].n"), [json!("a"), json!("b")]);
    assert_eq!(ok(".spec.items[::2].n"), [json!("a"), json!("c")]);
    assert_eq!(ok(".spec.items[?(@.v>1)].n"), [json!("b"), json!("c")]);
    assert_eq!(ok(".spec.items[?(@.n!='a')].v"), [json!(2), json!(3)]);
    assert_eq!(
        ok(".status.conditions[?(@.type==\"Ready\")].status"),
        [json!("True")]
    );
    assert_eq!(
        ok(".status.conditions[?(@.type=='Nope')].status"),
        Vec::<Value>::new()
    );
    assert_eq!(ok(".spec.items[?(@.v)].n").len(), 3);
    assert_eq!(ok(".metadata.labels.*"), [json!("web"), json!("2")]);
    assert_eq!(ok("..type"), [json!("Ready"), json!("Synced")]);
    assert_eq!(ok(".status..status"), [json!("True"), json!("False")]);
    assert_eq!(ok(".spec.missing.deeper"), Vec::<Value>::new());
    assert_eq!(ok(".spec.empty[0]"), Vec::<Value>::new());
    assert_eq!(ok(".metadata.name.deeper"), Vec::<Value>::new());
    assert!(json_path(&obj, ".spec.items[3]").is_err());
    assert!(json_path(&obj, ".metadata[0]").is_err());
    assert!(json_path(&obj, ".spec.items[").is_err());
    assert!(json_path(&obj, "spec").is_err());
}
