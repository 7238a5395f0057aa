//! ServiceAccount: every active namespace has a `default` account
//! (re-created if deleted), as Kubernetes' serviceaccounts-controller does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, WorkQueue};

use crate::Ctx;

pub const DEFAULT: &str = "default";

/// Whether namespace `ns` needs its default account created.
pub fn needs_default(ns: &Namespace, has_default: bool) -> bool {
    let active = ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
    active && !has_default
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let ns_inf = ctx.informers.get::<Namespace>();
    let sa_inf = ctx.informers.get::<ServiceAccount>();
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
        sa_inf.on_change(move |ch: &Change<ServiceAccount>| {
            if let Change::Deleted(sa) = ch {
                if sa.metadata.name.as_deref() == Some(DEFAULT) {
                    q.add(sa.metadata.namespace.clone().unwrap_or_default());
                }
            }
        });
    }
    let namespaces: Store<Namespace> = ns_inf.store();
    let accounts: Store<ServiceAccount> = sa_inf.store();
    let client = ctx.client.clone();
    set.spawn(async move {
        ns_inf.wait_synced().await;
        sa_inf.wait_synced().await;
        let namespaces = Arc::new(namespaces);
        let accounts = Arc::new(accounts);
        run_workers(queue, 2, "serviceaccount-controller", move |ns: String| {
            let (namespaces, accounts, client) =
                (namespaces.clone(), accounts.clone(), client.clone());
            async move {
                let Some(namespace) = namespaces.get(&ObjectRef::new(&ns)) else {
                    return Ok(Next::Done);
                };
                let has = accounts.get(&ObjectRef::new(DEFAULT).within(&ns)).is_some();
                if !needs_default(&namespace, has) {
                    return Ok(Next::Done);
                }
                let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
                let sa = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(DEFAULT.into()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &sa).await {
                    Ok(_) => Ok(Next::Done),
                    // Exists already, or the namespace is going away.
                    Err(e) if runtime::is_conflict(&e) || runtime::is_not_found(&e) => {
                        Ok(Next::Done)
                    }
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
    fn which_namespaces_get_one() {
        let ns = |v| serde_json::from_value::<Namespace>(v).unwrap();
        let cases = [
            (ns(json!({"metadata": {"name": "a"}})), false, true),
            (ns(json!({"metadata": {"name": "a"}})), true, false),
            (
                ns(json!({"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}})),
                false,
                false,
            ),
            (
                ns(json!({"metadata": {"name": "a"}, "status": {"phase": "Terminating"}})),
                false,
                false,
            ),
        ];
        for (n, has, want) in cases {
            assert_eq!(needs_default(&n, has), want, "{n:?} {has}");
        }
    }
}
