//! root-ca-cert-publisher: every active namespace has the ConfigMap
//! `kube-root-ca.crt` holding the cluster CA (`ca.crt`), re-created when
//! deleted and put back when edited, as Kubernetes' controller does. Pods'
//! `kube-api-access-*` volumes project it next to their token.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, Informer, WorkQueue};

use crate::Ctx;

pub const NAME: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";

/// What to do in a namespace, given its ConfigMap (if any).
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Create,
    Update,
}

pub fn action(ns: &Namespace, current: Option<&ConfigMap>, ca: &str) -> Action {
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    if !active {
        return Action::Nothing;
    }
    match current {
        None => Action::Create,
        Some(cm)
            if cm
                .data
                .as_ref()
                .and_then(|d| d.get(KEY))
                .map(String::as_str)
                != Some(ca) =>
        {
            Action::Update
        }
        Some(_) => Action::Nothing,
    }
}

fn config_map(ns: &str, ca: &str, from: Option<&ConfigMap>) -> ConfigMap {
    let mut cm = from.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    });
    cm.data = Some(BTreeMap::from([(KEY.to_owned(), ca.to_owned())]));
    cm
}

pub fn start(ctx: &Ctx, ca: String, set: &mut tokio::task::JoinSet<()>) {
    let ns_inf = ctx.informers.get::<Namespace>();
    // Only the one ConfigMap of each namespace.
    let cm_inf = Informer::new(
        Api::<ConfigMap>::all(ctx.client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    );
    let queue: WorkQueue<String> = WorkQueue::new();
    {
        let q = queue.clone();
        ns_inf.on_change(move |ch: &Change<Namespace>| {
            if !matches!(ch, Change::Deleted(_)) {
                q.add(ch.object().metadata.name.clone().unwrap_or_default());
            }
        });
    }
    {
        let q = queue.clone();
        cm_inf.on_change(move |ch: &Change<ConfigMap>| {
            q.add(ch.object().metadata.namespace.clone().unwrap_or_default());
        });
    }
    let namespaces: Store<Namespace> = ns_inf.store();
    let maps: Store<ConfigMap> = cm_inf.store();
    let client = ctx.client.clone();
    let ca = Arc::new(ca);
    set.spawn(async move {
        // The informer is this controller's own: it stops with it.
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _watch = AbortOnDrop(cm_inf.start());
        ns_inf.wait_synced().await;
        cm_inf.wait_synced().await;
        run_workers(queue, 2, "root-ca-cert-publisher", move |ns: String| {
            let (namespaces, maps, client, ca) =
                (namespaces.clone(), maps.clone(), client.clone(), ca.clone());
            async move {
                let Some(namespace) = namespaces.get(&ObjectRef::new(&ns)) else {
                    return Ok(Next::Done);
                };
                let current = maps.get(&ObjectRef::new(NAME).within(&ns));
                let api: Api<ConfigMap> = Api::namespaced(client, &ns);
                let result = match action(&namespace, current.as_deref(), &ca) {
                    Action::Nothing => return Ok(Next::Done),
                    Action::Create => api
                        .create(&PostParams::default(), &config_map(&ns, &ca, None))
                        .await
                        .map(|_| ()),
                    Action::Update => api
                        .replace(
                            NAME,
                            &PostParams::default(),
                            &config_map(&ns, &ca, current.as_deref()),
                        )
                        .await
                        .map(|_| ()),
                };
                match result {
                    Ok(()) => Ok(Next::Done),
                    // Raced with another write: the informer brings it back.
                    Err(e) if runtime::is_conflict(&e) || runtime::is_not_found(&e) => {
                        Ok(Next::Done)
                    }
                    // The namespace is terminating.
                    Err(kube::Error::Api(s)) if s.code == 403 => Ok(Next::Done),
                    Err(e) => Err(e),
                }
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions() {
        let ns = |v| serde_json::from_value::<Namespace>(v).unwrap();
        let cm = |data: serde_json::Value| {
            serde_json::from_value::<ConfigMap>(json!({"metadata": {"name": NAME}, "data": data}))
                .unwrap()
        };
        let active = ns(json!({"metadata": {"name": "a"}}));
        let terminating =
            ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}}));
        let cases = [
            (&active, None, Action::Create),
            (&active, Some(cm(json!({"ca.crt": "CA"}))), Action::Nothing),
            (
                &active,
                Some(cm(json!({"ca.crt": "other"}))),
                Action::Update,
            ),
            (&active, Some(cm(json!({}))), Action::Update),
            (&terminating, None, Action::Nothing),
        ];
        for (n, current, want) in cases {
            assert_eq!(action(n, current.as_ref(), "CA"), want, "{current:?}");
        }
        let made = config_map("a", "CA", Some(&cm(json!({"x": "y"}))));
        assert_eq!(
            made.data.unwrap(),
            BTreeMap::from([("ca.crt".into(), "CA".into())])
        );
    }
}
