use super::*;

const NODE: &str = "node-1";

fn seen(_: &str) -> String {
    "2026-01-01T00:00:00Z".to_owned()
}

const WEB: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: c
    image: busybox
";

#[test]
fn manifest_names() {
    for (name, want) in [
        ("pod.yaml", true),
        ("pod.yml", true),
        ("pod.json", true),
        (".pod.yaml", false),
        ("pod.yaml.swp", false),
        ("pod.yaml~", false),
        ("pod.txt", false),
        (".yaml", false),
        ("README", false),
    ] {
        assert_eq!(is_manifest_name(name), want, "{name}");
    }
}

/// file content -> the static pod's key, or the start of the error.
#[test]
fn files_to_pods() {
    let cases: Vec<(&str, String, Result<&str, &str>)> =
        vec![
        ("yaml", WEB.to_owned(), Ok("default/web-node-1")),
        (
            "json",
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","namespace":"kube-system"},
               "spec":{"containers":[{"name":"c","image":"busybox"}]}}"#
                .to_owned(),
            Ok("kube-system/j-node-1"),
        ),
        (
            "leading document marker",
            format!("---\n{WEB}"),
            Ok("default/web-node-1"),
        ),
        (
            "first document counts, later ones are ignored",
            format!("{WEB}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: other}}\n"),
            Ok("default/web-node-1"),
        ),
        (
            "a ConfigMap first",
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\n---\n{WEB}"),
            Err("invalid pod: the object is a ConfigMap"),
        ),
        (
            "no kind",
            "apiVersion: v1\nmetadata: {name: x}\n".to_owned(),
            Err("Object 'Kind' is missing"),
        ),
        (
            "another version",
            WEB.replace("apiVersion: v1", "apiVersion: v2"),
            Err("invalid pod: the object is a Pod (v2)"),
        ),
        ("empty", String::new(), Err("")),
        ("not yaml", "{{{{".to_owned(), Err("not YAML or JSON")),
        ("a list", "- a\n- b\n".to_owned(), Err("the file does not hold an object")),
        (
            "no name",
            WEB.replace("  name: web\n", ""),
            Err("metadata.name: Required value"),
        ),
        (
            "bad name",
            WEB.replace("name: web", "name: Web_1"),
            Err("invalid pod: metadata.name"),
        ),
        (
            "no containers",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n".to_owned(),
            Err("invalid pod: spec.containers: Required value"),
        ),
    ];
    for (what, content, want) in cases {
        let got = decode(&content)
            .and_then(|p| static_pod(p, Path::new("/m/p.yaml"), NODE, "t"))
            .map(|p| runtime::key_of(&p.metadata));
        match (got, want) {
            (Ok(key), Ok(want)) => assert_eq!(key, want, "{what}"),
            (Err(e), Err(want)) => assert!(e.starts_with(want), "{what}: {e}"),
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn defaults_names_and_annotations() {
    let p = static_pod(
        decode(WEB).unwrap(),
        Path::new("/m/web.yaml"),
        NODE,
        "seen-at",
    )
    .unwrap();
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 32);
    assert!(uid.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(p.metadata.name.as_deref(), Some("web-node-1"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    assert_eq!(
        spec.tolerations.as_ref().unwrap(),
        &vec![Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Toleration::default()
        }]
    );
    let a = p.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[ANNOTATION_HASH], uid);
    assert_eq!(a[ANNOTATION_SOURCE], "file");
    assert_eq!(a[ANNOTATION_SEEN], "seen-at");
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    assert!(!is_mirror(&p));

    // A uid in the file is kept (and is the hash annotation).
    let with_uid = WEB.replace("  name: web\n", "  name: web\n  uid: fixed-uid\n");
    let p = static_pod(
        decode(&with_uid).unwrap(),
        Path::new("/m/web.yaml"),
        NODE,
        "t",
    )
    .unwrap();
    assert_eq!(p.metadata.uid.as_deref(), Some("fixed-uid"));
    assert_eq!(
        p.metadata.annotations.unwrap()[ANNOTATION_HASH],
        "fixed-uid"
    );
}

#[test]
fn hash_follows_content_node_and_file() {
    let uid = |content: &str, node: &str, file: &str| {
        static_pod(decode(content).unwrap(), Path::new(file), node, "t")
            .unwrap()
            .metadata
            .uid
            .unwrap()
    };
    let base = uid(WEB, NODE, "/m/web.yaml");
    // Deterministic, and blind to formatting.
    assert_eq!(base, uid(WEB, NODE, "/m/web.yaml"));
    let reformatted = "{\"kind\": \"Pod\", \"apiVersion\": \"v1\", \"metadata\": {\"labels\": {\"app\": \"web\"}, \"name\": \"web\"},
        \"spec\": {\"containers\": [{\"image\": \"busybox\", \"name\": \"c\"}]}}";
    assert_eq!(base, uid(reformatted, NODE, "/m/web.yaml"));
    assert_eq!(
        base,
        uid(&format!("# a comment\n{WEB}"), NODE, "/m/web.yaml")
    );
    // Not blind to what the pod is, where and from which file.
    assert_ne!(
        base,
        uid(&WEB.replace("busybox", "pause"), NODE, "/m/web.yaml")
    );
    assert_ne!(base, uid(WEB, "node-2", "/m/web.yaml"));
    assert_ne!(base, uid(WEB, NODE, "/m/web2.yaml"));
}

#[test]
fn mirror_pods() {
    let sp = static_pod(decode(WEB).unwrap(), Path::new("/m/web.yaml"), NODE, "t").unwrap();
    let hash = sp.metadata.uid.clone().unwrap();
    let m = mirror_pod(&sp, NODE, "node-uid");
    assert!(is_mirror(&m));
    assert!(is_mirror_of(&m, &sp));
    assert_eq!(m.metadata.uid, None);
    assert_eq!(m.status, None);
    assert_eq!(m.spec, sp.spec);
    assert_eq!(m.metadata.name, sp.metadata.name);
    let a = m.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[ANNOTATION_MIRROR], hash);
    assert_eq!(a[ANNOTATION_HASH], hash);
    assert_eq!(a[ANNOTATION_SOURCE], "file");
    let owners = m.metadata.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].api_version.as_str(),
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str(),
            owners[0].controller
        ),
        ("v1", "Node", NODE, "node-uid", Some(true))
    );
    // A changed file: the old mirror no longer matches.
    let edited = static_pod(
        decode(&WEB.replace("busybox", "pause")).unwrap(),
        Path::new("/m/web.yaml"),
        NODE,
        "t",
    )
    .unwrap();
    assert!(!is_mirror_of(&m, &edited));
    // Nor does a plain pod of that name.
    assert!(!is_mirror_of(&sp, &sp));
}

#[test]
fn reading_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("b.yaml"), WEB).unwrap();
    // Same pod name in a later file: a duplicate.
    std::fs::write(d.join("c.yml"), WEB).unwrap();
    std::fs::write(
        d.join("a.json"),
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    )
    .unwrap();
    std::fs::write(d.join("bad.yaml"), "kind: Service\napiVersion: v1\n").unwrap();
    std::fs::write(d.join(".hidden.yaml"), WEB.replace("web", "hidden")).unwrap();
    std::fs::write(d.join("notes.txt"), WEB.replace("web", "txt")).unwrap();
    std::fs::create_dir(d.join("sub.yaml")).unwrap();
    std::fs::write(d.join("sub.yaml/x.yaml"), WEB.replace("web", "sub")).unwrap();

    let (pods, skipped) = by_key(read_dir(d, NODE, &seen));
    assert_eq!(
        pods.keys().collect::<Vec<_>>(),
        vec!["default/a-node-1", "default/web-node-1"]
    );
    let skipped: Vec<(String, &str)> = skipped
        .iter()
        .map(|(p, e)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                e.split(':').next().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("bad.yaml".to_owned(), "invalid pod"),
            ("c.yml".to_owned(), "duplicate pod name default/web-node-1"),
        ]
    );
    // The uid includes the file path.
    let web = &pods["default/web-node-1"];
    assert_eq!(
        web.metadata.uid.as_deref().unwrap(),
        pod_hash(&decode(WEB).unwrap(), NODE, &d.join("b.yaml"))
    );
    // A missing directory: no pods.
    assert!(read_dir(&d.join("missing"), NODE, &seen).is_empty());
}

fn pod(key: &str, uid: &str) -> (String, Arc<Pod>) {
    let (ns, name) = key.split_once('/').unwrap();
    let mut p = Pod::default();
    p.metadata.namespace = Some(ns.into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(uid.into());
    (key.to_owned(), Arc::new(p))
}

#[test]
fn registry_changes() {
    let r = Registry::default();
    let changed = r.replace(BTreeMap::from([pod("d/a", "1"), pod("d/b", "2")]));
    assert_eq!(changed, vec!["d/a", "d/b"]);
    assert_eq!(r.uids(), HashSet::from(["1".into(), "2".into()]));
    assert!(r.find("d", "a").is_some());

    // Same again: nothing changed.
    assert!(r
        .replace(BTreeMap::from([pod("d/a", "1"), pod("d/b", "2")]))
        .is_empty());

    // a edited (new uid), b removed, c added.
    let changed = r.replace(BTreeMap::from([pod("d/a", "1b"), pod("d/c", "3")]));
    assert_eq!(changed, vec!["d/a", "d/b", "d/c"]);
    assert_eq!(r.get("d/a").unwrap().metadata.uid.as_deref(), Some("1b"));
    assert!(r.get("d/b").is_none());
    let gone = |key: &str| -> Vec<String> {
        r.gone(key)
            .iter()
            .map(|p| p.metadata.uid.clone().unwrap())
            .collect()
    };
    assert_eq!(gone("d/a"), vec!["1"]);
    assert_eq!(gone("d/b"), vec!["2"]);
    // Gone pods still count as running until stopped.
    assert_eq!(r.uids().len(), 4);
    assert!(r.by_uid("2").is_some());
    r.stopped("d/b", "2");
    assert!(gone("d/b").is_empty());
    assert!(r.by_uid("2").is_none());

    // a back to its first version before it was stopped: it stays.
    let changed = r.replace(BTreeMap::from([pod("d/a", "1"), pod("d/c", "3")]));
    assert_eq!(changed, vec!["d/a"]);
    assert_eq!(gone("d/a"), vec!["1b"]);
}

#[tokio::test]
async fn inotify_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let w = DirWatch::new(dir.path()).unwrap();
    async fn wait(w: &DirWatch) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
            .await
            .expect("no inotify event")
            .unwrap()
    }
    std::fs::write(dir.path().join("p.yaml"), WEB).unwrap();
    assert!(wait(&w).await);
    std::fs::remove_file(dir.path().join("p.yaml")).unwrap();
    assert!(wait(&w).await);
    // The directory itself goes: the watch ends.
    drop(dir);
    assert!(!wait(&w).await);
}
