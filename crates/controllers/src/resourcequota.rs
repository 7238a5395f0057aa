//! ResourceQuota usage, as Kubernetes' resourcequota controller reports it
//! in status.hard/status.used: object counts (`pods`, `services`,
//! `configmaps`, `secrets`, `persistentvolumeclaims`,
//! `replicationcontrollers`, `resourcequotas`, `services.nodeports`,
//! `services.loadbalancers`, and `count/<resource>[.<group>]` for any
//! resource), pod compute requests and limits (`requests.cpu` or `cpu`,
//! `limits.memory`, ...: the larger of the containers plus sidecars and
//! any init container, plus overhead, over pods that are not finished) and
//! `requests.storage` of claims. Recomputed when objects in the namespace
//! change and every 10 s. Quota scopes are not applied yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use api::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, WorkQueue};
use serde_json::json;

use crate::podutil;
use crate::Ctx;

const RESYNC: Duration = Duration::from_secs(10);

fn q(v: Option<&K8sQuantity>) -> Quantity {
    v.and_then(|q| Quantity::parse(&q.0)).unwrap_or_default()
}

/// A pod's effective request (or limit) of one resource.
pub fn pod_amount(pod: &Pod, resource: &str, limits: bool) -> Quantity {
    let Some(spec) = pod.spec.as_ref() else {
        return Quantity::default();
    };
    let of = |r: &Option<k8s_openapi::api::core::v1::ResourceRequirements>| {
        let r = r.as_ref();
        let map = if limits {
            r.and_then(|r| r.limits.as_ref())
        } else {
            r.and_then(|r| r.requests.as_ref())
        };
        q(map.and_then(|m| m.get(resource)))
    };
    let containers: Quantity = spec.containers.iter().map(|c| of(&c.resources)).sum();
    let mut sidecars = Quantity::default();
    let mut init_max = Quantity::default();
    for c in spec.init_containers.iter().flatten() {
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = sidecars + of(&c.resources);
        } else {
            let need = of(&c.resources) + sidecars;
            if need.milli > init_max.milli {
                init_max = need;
            }
        }
    }
    let running = containers + sidecars;
    let base = if init_max.milli > running.milli {
        init_max
    } else {
        running
    };
    base + q(spec.overhead.as_ref().and_then(|o| o.get(resource)))
}

/// The compute resource a quota name measures: (resource, limits?).
fn compute(name: &str) -> Option<(&str, bool)> {
    if let Some(r) = name.strip_prefix("requests.") {
        return (r != "storage").then_some((r, false));
    }
    if let Some(r) = name.strip_prefix("limits.") {
        return Some((r, true));
    }
    matches!(name, "cpu" | "memory" | "ephemeral-storage").then_some((name, false))
}

/// What is counted in one namespace.
#[derive(Default)]
pub struct Objects<'a> {
    pub pods: Vec<&'a Pod>,
    pub services: Vec<&'a Service>,
    pub claims: Vec<&'a PersistentVolumeClaim>,
    pub configmaps: usize,
    pub secrets: usize,
    pub rcs: usize,
    pub quotas: usize,
}

/// status.used for the quota's hard limits (None for names it cannot
/// measure from `objects`: the `count/` of other resources).
pub fn usage(name: &str, o: &Objects<'_>) -> Option<Quantity> {
    let count = |n: usize| Some(Quantity::from_milli(n as i128 * 1000));
    let active: Vec<&&Pod> = o.pods.iter().filter(|p| !podutil::is_terminal(p)).collect();
    match name {
        "pods" | "count/pods" => count(active.len()),
        "services" | "count/services" => count(o.services.len()),
        "configmaps" | "count/configmaps" => count(o.configmaps),
        "secrets" | "count/secrets" => count(o.secrets),
        "persistentvolumeclaims" | "count/persistentvolumeclaims" => count(o.claims.len()),
        "replicationcontrollers" | "count/replicationcontrollers" => count(o.rcs),
        "resourcequotas" | "count/resourcequotas" => count(o.quotas),
        "services.loadbalancers" => count(
            o.services
                .iter()
                .filter(|s| {
                    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
                })
                .count(),
        ),
        "services.nodeports" => count(
            o.services
                .iter()
                .filter(|s| {
                    matches!(
                        s.spec.as_ref().and_then(|s| s.type_.as_deref()),
                        Some("NodePort") | Some("LoadBalancer")
                    )
                })
                .map(|s| {
                    s.spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .map(|p| p.iter().filter(|p| p.node_port.is_some()).count())
                        .unwrap_or(0)
                })
                .sum(),
        ),
        "requests.storage" => Some(
            o.claims
                .iter()
                .map(|c| {
                    q(c.spec
                        .as_ref()
                        .and_then(|s| s.resources.as_ref())
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("storage")))
                })
                .sum(),
        ),
        other => {
            let (resource, limits) = compute(other)?;
            Some(active.iter().map(|p| pod_amount(p, resource, limits)).sum())
        }
    }
}

struct Controller {
    client: kube::Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    services: Store<Service>,
    claims: Store<PersistentVolumeClaim>,
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    rcs: Store<ReplicationController>,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let quota_inf = ctx.informers.get::<ResourceQuota>();
    let queue: WorkQueue<String> = WorkQueue::new();
    macro_rules! watch_ns {
        ($ty:ty) => {{
            let inf = ctx.informers.get::<$ty>();
            let q = queue.clone();
            let quotas = quota_inf.store();
            inf.on_change(move |ch: &Change<$ty>| {
                let ns = ch.object().metadata.namespace.clone().unwrap_or_default();
                if quotas
                    .state()
                    .iter()
                    .any(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
                {
                    q.add(ns);
                }
            });
            inf
        }};
    }
    let pod_inf = watch_ns!(Pod);
    let svc_inf = watch_ns!(Service);
    let pvc_inf = watch_ns!(PersistentVolumeClaim);
    let cm_inf = watch_ns!(ConfigMap);
    let secret_inf = watch_ns!(Secret);
    let rc_inf = watch_ns!(ReplicationController);
    {
        let q = queue.clone();
        quota_inf.on_change(move |ch: &Change<ResourceQuota>| {
            q.add(ch.object().metadata.namespace.clone().unwrap_or_default());
        });
    }
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        quotas: quota_inf.store(),
        pods: pod_inf.store(),
        services: svc_inf.store(),
        claims: pvc_inf.store(),
        configmaps: cm_inf.store(),
        secrets: secret_inf.store(),
        rcs: rc_inf.store(),
    });
    set.spawn(async move {
        quota_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        svc_inf.wait_synced().await;
        pvc_inf.wait_synced().await;
        cm_inf.wait_synced().await;
        secret_inf.wait_synced().await;
        rc_inf.wait_synced().await;
        run_workers(queue, 2, "resourcequota-controller", move |ns: String| {
            let c = c.clone();
            async move { c.reconcile(&ns).await }
        })
        .await;
    });
}

impl Controller {
    async fn reconcile(&self, ns: &str) -> Result<Next, kube::Error> {
        let quotas: Vec<Arc<ResourceQuota>> = self
            .quotas
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .collect();
        if quotas.is_empty() {
            return Ok(Next::Done);
        }
        let in_ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.namespace.as_deref() == Some(ns)
        };
        let pods = self.pods.state();
        let services = self.services.state();
        let claims = self.claims.state();
        let objects = Objects {
            pods: pods
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .map(|p| p.as_ref())
                .collect(),
            services: services
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .map(|p| p.as_ref())
                .collect(),
            claims: claims
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .map(|p| p.as_ref())
                .collect(),
            configmaps: self
                .configmaps
                .state()
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .count(),
            secrets: self
                .secrets
                .state()
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .count(),
            rcs: self
                .rcs
                .state()
                .iter()
                .filter(|p| in_ns(&p.metadata))
                .count(),
            quotas: quotas.len(),
        };
        let mut counted: BTreeMap<String, Quantity> = BTreeMap::new();
        for quota in &quotas {
            let hard = quota
                .spec
                .as_ref()
                .and_then(|s| s.hard.clone())
                .unwrap_or_default();
            let mut used: BTreeMap<String, String> = BTreeMap::new();
            for name in hard.keys() {
                let amount = match usage(name, &objects) {
                    Some(a) => a,
                    None => match counted.get(name) {
                        Some(a) => *a,
                        None => {
                            let a = self.count_other(ns, name).await.unwrap_or_default();
                            counted.insert(name.clone(), a);
                            a
                        }
                    },
                };
                used.insert(name.clone(), amount.to_string());
            }
            let hard_s: BTreeMap<String, String> =
                hard.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            let old_used: BTreeMap<String, String> = quota
                .status
                .as_ref()
                .and_then(|s| s.used.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            let old_hard: BTreeMap<String, String> = quota
                .status
                .as_ref()
                .and_then(|s| s.hard.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            if old_used == used && old_hard == hard_s {
                continue;
            }
            let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
            let name = quota.metadata.name.clone().unwrap_or_default();
            // One merge patch: new values, and nulls for keys that went
            // (readers never see a half-written status).
            let with_removals = |new: &BTreeMap<String, String>, old: &BTreeMap<String, String>| {
                let mut m = serde_json::Map::new();
                for k in old.keys().filter(|k| !new.contains_key(*k)) {
                    m.insert(k.clone(), serde_json::Value::Null);
                }
                for (k, v) in new {
                    m.insert(k.clone(), json!(v));
                }
                serde_json::Value::Object(m)
            };
            let patch = json!({"status": {
                "hard": with_removals(&hard_s, &old_hard),
                "used": with_removals(&used, &old_used),
            }});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Next::After(RESYNC))
    }

    /// `count/<resource>[.<group>]` of anything else, by listing it.
    async fn count_other(&self, ns: &str, name: &str) -> Option<Quantity> {
        let target = name.strip_prefix("count/")?;
        let (plural, group) = target.split_once('.').unwrap_or((target, ""));
        let all = crate::discovery::resources(&self.client).await.ok()?;
        let res = all
            .iter()
            .find(|r| r.ar.plural == plural && r.ar.group == group && r.namespaced)?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &res.ar);
        let list = api.list_metadata(&ListParams::default()).await.ok()?;
        Some(Quantity::from_milli(list.items.len() as i128 * 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_requests_include_init_sidecars_and_overhead() {
        let p = pod(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                    {"name": "b", "image": "x", "resources": {"requests": {"cpu": "200m"}}}
                ],
                "initContainers": [
                    {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
                    {"name": "big", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}
                ],
                "overhead": {"cpu": "10m"}
            }
        }));
        // cpu: max(100+200+50, 1000+50) + 10
        assert_eq!(pod_amount(&p, "cpu", false).to_string(), "1060m");
        // memory: max(64Mi, 32Mi)
        assert_eq!(pod_amount(&p, "memory", false).to_string(), "64Mi");
        assert_eq!(pod_amount(&p, "memory", true).to_string(), "128Mi");
    }

    #[test]
    fn usage_table() {
        let running = pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "250m"}}}]}, "status": {"phase": "Running"}}),
        );
        let done = pod(
            json!({"metadata": {"name": "b"}, "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}, "status": {"phase": "Succeeded"}}),
        );
        let np: Service = serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}, {"port": 81, "nodePort": 30002}]}})).unwrap();
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}})).unwrap();
        let o = Objects {
            pods: vec![&running, &done],
            services: vec![&np],
            claims: vec![&pvc],
            configmaps: 3,
            secrets: 1,
            rcs: 0,
            quotas: 1,
        };
        let cases = [
            ("pods", Some("1")),
            ("count/pods", Some("1")),
            ("requests.cpu", Some("250m")),
            ("cpu", Some("250m")),
            ("limits.cpu", Some("0")),
            ("services", Some("1")),
            ("services.nodeports", Some("2")),
            ("services.loadbalancers", Some("0")),
            ("configmaps", Some("3")),
            ("persistentvolumeclaims", Some("1")),
            ("requests.storage", Some("1Gi")),
            ("count/deployments.apps", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                usage(name, &o).map(|q| q.to_string()).as_deref(),
                want,
                "{name}"
            );
        }
    }
}
