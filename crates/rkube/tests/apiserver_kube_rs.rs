//! The API server driven by kube-rs, the Rust client: typed CRUD, merge
//! and server-side-apply patches, list with selectors, and a watcher.

mod support;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use support::Server;

async fn client(s: &Server) -> Client {
    let kc = Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"k": value},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_core_flows() {
    let s = Server::start();
    let client = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &configmap("one", "1"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let err = cms
        .create(&PostParams::default(), &configmap("one", "1"))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("{other}"),
    }

    // Watch from the creation's resourceVersion while changing it.
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();

    let mut cm = cms.get("one").await.unwrap();
    cm.data.as_mut().unwrap().insert("k".into(), "2".into());
    let replaced = cms
        .replace("one", &PostParams::default(), &cm)
        .await
        .unwrap();
    // The old resourceVersion now conflicts.
    let err = cms
        .replace("one", &PostParams::default(), &cm)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );

    let patched = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"extra": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["extra"], "x");
    assert_ne!(
        patched.metadata.resource_version,
        replaced.metadata.resource_version
    );

    let applied = cms
        .patch(
            "two",
            &PatchParams::apply("kube-rs-test"),
            &Patch::Apply(configmap("two", "applied")),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.as_ref().unwrap()["k"], "applied");

    let listed = cms
        .list(&ListParams::default().labels("app=kube-rs"))
        .await
        .unwrap();
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    let paged = cms.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(paged.items.len(), 1);
    assert!(paged.metadata.continue_.is_some());

    cms.delete("one", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ev) = events.try_next().await.unwrap() {
        match ev {
            WatchEvent::Modified(cm) => {
                seen.push(format!("MODIFIED {}", cm.metadata.name.unwrap()))
            }
            WatchEvent::Added(cm) => seen.push(format!("ADDED {}", cm.metadata.name.unwrap())),
            WatchEvent::Deleted(cm) => {
                seen.push(format!("DELETED {}", cm.metadata.name.unwrap()));
                break;
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(
        seen,
        ["MODIFIED one", "MODIFIED one", "ADDED two", "DELETED one"]
    );
    assert!(cms.get_opt("one").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_runtime_watcher_sees_the_initial_state() {
    use kube::runtime::watcher;
    let s = Server::start();
    let client = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("pre", "1"))
        .await
        .unwrap();
    // The watcher lists (or streams the initial list), then watches.
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let mut init = Vec::new();
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            watcher::Event::Init => {}
            watcher::Event::InitApply(cm) => init.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(init, ["pre"]);
    cms.create(&PostParams::default(), &configmap("post", "1"))
        .await
        .unwrap();
    match tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("post")),
        other => panic!("unexpected {other:?}"),
    }
}
