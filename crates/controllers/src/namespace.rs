//! Namespace: when a namespace is deleted, deletes every namespaced object
//! in it (every resource discovery lists, custom resources included), then
//! removes the `kubernetes` finalizer through /finalize so the API server
//! can remove the namespace. Status conditions tell what is left while it
//! is Terminating, as Kubernetes' namespace controller reports them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, WorkQueue};
use serde_json::{json, Value};

use crate::discovery;
use crate::Ctx;

pub const FINALIZER: &str = "kubernetes";

/// What was left in a namespace after a deletion pass.
#[derive(Debug, Default, PartialEq)]
pub struct Remaining {
    /// (resource with group, count), e.g. ("pods.", 2)
    pub objects: Vec<(String, usize)>,
    /// (finalizer, count) over the remaining objects
    pub finalizers: Vec<(String, usize)>,
    pub failures: Vec<String>,
}

/// The five conditions Kubernetes sets on a terminating namespace.
pub fn conditions(r: &Remaining, now: &str) -> Vec<Value> {
    let c = |t: &str, status: bool, reason: &str, message: String| {
        json!({
            "type": t,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        })
    };
    let objects: Vec<String> = r
        .objects
        .iter()
        .map(|(res, n)| format!("{res} has {n} resource instances"))
        .collect();
    let finalizers: Vec<String> = r
        .finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    vec![
        c(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        c(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if r.failures.is_empty() {
            c(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            c(
                "NamespaceDeletionContentFailure",
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    r.failures.len(),
                    r.failures.join(", ")
                ),
            )
        },
        if objects.is_empty() {
            c(
                "NamespaceContentRemaining",
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            c(
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", objects.join(", ")),
            )
        },
        if finalizers.is_empty() {
            c(
                "NamespaceFinalizersRemaining",
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            c(
                "NamespaceFinalizersRemaining",
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizers.join(", ")
                ),
            )
        },
    ]
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let ns_inf = ctx.informers.get::<Namespace>();
    let queue: WorkQueue<String> = WorkQueue::new();
    {
        let q = queue.clone();
        ns_inf.on_change(move |ch: &Change<Namespace>| {
            let ns = ch.object();
            if ns.metadata.deletion_timestamp.is_some() && !matches!(ch, Change::Deleted(_)) {
                q.add(ns.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let store: Store<Namespace> = ns_inf.store();
    let client = ctx.client.clone();
    set.spawn(async move {
        ns_inf.wait_synced().await;
        let store = Arc::new(store);
        run_workers(queue, 2, "namespace-controller", move |name: String| {
            let (store, client) = (store.clone(), client.clone());
            async move { reconcile(&client, &store, &name).await }
        })
        .await;
    });
}

async fn reconcile(
    client: &kube::Client,
    store: &Store<Namespace>,
    name: &str,
) -> Result<Next, kube::Error> {
    let Some(ns) = store.get(&ObjectRef::new(name)) else {
        return Ok(Next::Done);
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Next::Done);
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Next::Done);
    }
    let all = discovery::resources(client).await?;
    let mut remaining = Remaining::default();
    for r in discovery::deletable(&all).filter(|r| r.namespaced) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), name, &r.ar);
        let deleted = if r.supports("deletecollection") {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
                .map(|_| ())
        } else {
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    let mut res = Ok(());
                    for o in list.items {
                        let n = o.metadata.name.clone().unwrap_or_default();
                        if let Err(e) = api.delete(&n, &DeleteParams::background()).await {
                            if !runtime::is_not_found(&e) {
                                res = Err(e);
                            }
                        }
                    }
                    res
                }
                Err(e) => Err(e),
            }
        };
        let resource = format!("{}.{}", r.ar.plural, r.ar.group);
        if let Err(e) = deleted {
            if !runtime::is_not_found(&e) {
                remaining.failures.push(format!("{resource}: {e}"));
            }
        }
        match api.list(&ListParams::default()).await {
            Ok(list) if !list.items.is_empty() => {
                remaining.objects.push((resource, list.items.len()));
                for o in &list.items {
                    for f in o.metadata.finalizers.iter().flatten() {
                        match remaining.finalizers.iter_mut().find(|(x, _)| x == f) {
                            Some((_, n)) => *n += 1,
                            None => remaining.finalizers.push((f.clone(), 1)),
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(e) if runtime::is_not_found(&e) => {}
            Err(e) => remaining.failures.push(format!("{resource}: {e}")),
        }
    }
    let api: Api<Namespace> = Api::all(client.clone());
    if remaining.objects.is_empty() && remaining.failures.is_empty() {
        let mut ns = (*ns).clone();
        if let Some(spec) = ns.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        return match api
            .replace_subresource("finalize", name, &PostParams::default(), &ns)
            .await
        {
            Ok(_) => Ok(Next::Done),
            Err(e) if runtime::is_not_found(&e) => Ok(Next::Done),
            Err(e) => Err(e),
        };
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": conditions(&remaining, &now)}});
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if runtime::is_not_found(&e) => return Ok(Next::Done),
        Err(e) => return Err(e),
    }
    Ok(Next::After(Duration::from_secs(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminating_conditions() {
        let r = Remaining {
            objects: vec![("pods.".into(), 2)],
            finalizers: vec![("example.com/x".into(), 1)],
            failures: vec![],
        };
        let c = conditions(&r, "t");
        let by = |t: &str| c.iter().find(|x| x["type"] == t).unwrap().clone();
        assert_eq!(by("NamespaceContentRemaining")["status"], "True");
        assert_eq!(
            by("NamespaceContentRemaining")["message"],
            "Some resources are remaining: pods. has 2 resource instances"
        );
        assert_eq!(
            by("NamespaceFinalizersRemaining")["message"],
            "Some content in the namespace has finalizers remaining: example.com/x in 1 resource instances"
        );
        assert_eq!(by("NamespaceDeletionContentFailure")["status"], "False");
        let empty = conditions(&Remaining::default(), "t");
        assert!(empty.iter().all(|x| x["status"] == "False"));
    }
}
