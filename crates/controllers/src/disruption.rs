//! PodDisruptionBudget status, as Kubernetes' disruption controller keeps
//! it: expectedPods (from the scale of the pods' controllers, or the pod
//! count when minAvailable is an integer and pods have none),
//! currentHealthy (ready pods not being deleted), desiredHealthy (from
//! minAvailable or maxUnavailable, percents rounded up), and
//! disruptionsAllowed, with the DisruptionAllowed condition. The eviction
//! subresource of the API server reads and decrements it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, WorkQueue};
use serde_json::{json, Value};

use crate::podutil;
use crate::Ctx;

/// Resolves an int-or-percent against `total`, rounding up.
fn scaled(v: &IntOrString, total: i32) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            (p * f64::from(total) / 100.0).ceil() as i32
        }
    }
}

/// (expected, desiredHealthy) for a budget.
pub fn desired(
    pdb: &PodDisruptionBudget,
    pod_count: i32,
    controller_scale: Option<i32>,
) -> (i32, i32) {
    let spec = pdb.spec.clone().unwrap_or_default();
    match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (controller_scale.unwrap_or(pod_count), *n),
        (Some(pct), _) => {
            let expected = controller_scale.unwrap_or(pod_count);
            (expected, scaled(pct, expected))
        }
        (None, Some(max)) => {
            let expected = controller_scale.unwrap_or(pod_count);
            (expected, (expected - scaled(max, expected)).max(0))
        }
        (None, None) => (controller_scale.unwrap_or(pod_count), 0),
    }
}

/// The status for a budget (as JSON).
pub fn status(
    pdb: &PodDisruptionBudget,
    expected: i32,
    healthy: i32,
    desired_healthy: i32,
    now: &str,
) -> Value {
    let allowed = (healthy - desired_healthy).max(0);
    let old = pdb
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let (cstatus, reason, message) = if allowed > 0 {
        ("True", "SufficientPods", "")
    } else {
        ("False", "InsufficientPods", "")
    };
    let transition = old
        .iter()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == cstatus)
        .map(|c| c.last_transition_time.0.to_string())
        .unwrap_or_else(|| now.to_owned());
    json!({
        "observedGeneration": pdb.metadata.generation.unwrap_or(0),
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired_healthy,
        "disruptionsAllowed": allowed,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": cstatus,
            "reason": reason,
            "message": message,
            "observedGeneration": pdb.metadata.generation.unwrap_or(0),
            "lastTransitionTime": transition,
        }],
    })
}

struct Controller {
    client: kube::Client,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    rcs: Store<ReplicationController>,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let pdb_inf = ctx.informers.get::<PodDisruptionBudget>();
    let pod_inf = ctx.informers.get::<Pod>();
    let rs_inf = ctx.informers.get::<ReplicaSet>();
    let d_inf = ctx.informers.get::<Deployment>();
    let ss_inf = ctx.informers.get::<StatefulSet>();
    let rc_inf = ctx.informers.get::<ReplicationController>();
    let queue: WorkQueue<String> = WorkQueue::new();
    {
        let q = queue.clone();
        pdb_inf.on_change(move |ch: &Change<PodDisruptionBudget>| {
            q.add(key_of(&ch.object().metadata))
        });
    }
    {
        let q = queue.clone();
        let pdbs = pdb_inf.store();
        pod_inf.on_change(move |ch: &Change<Pod>| {
            let ns = ch.object().metadata.namespace.as_deref();
            for pdb in pdbs.state() {
                if pdb.metadata.namespace.as_deref() != ns {
                    continue;
                }
                let sel = pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.clone())
                    .unwrap_or_default();
                let hit = [Some(ch.object()), ch.old()]
                    .into_iter()
                    .flatten()
                    .any(|p| podutil::selector_matches(&sel, &podutil::labels(&p.metadata)));
                if hit {
                    q.add(key_of(&pdb.metadata));
                }
            }
        });
    }
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        pdbs: pdb_inf.store(),
        pods: pod_inf.store(),
        replicasets: rs_inf.store(),
        deployments: d_inf.store(),
        statefulsets: ss_inf.store(),
        rcs: rc_inf.store(),
    });
    set.spawn(async move {
        pdb_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        rs_inf.wait_synced().await;
        d_inf.wait_synced().await;
        ss_inf.wait_synced().await;
        rc_inf.wait_synced().await;
        run_workers(queue, 2, "disruption-controller", move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl Controller {
    /// The replicas of the pod's controller (a Deployment for its
    /// ReplicaSets), identified by uid so each counts once.
    fn scale_of(&self, pod: &Pod, ns: &str) -> Option<(String, i32)> {
        let r = podutil::controller_of(&pod.metadata)?;
        match r.kind.as_str() {
            "ReplicaSet" => {
                let rs = self.replicasets.get(&ObjectRef::new(&r.name).within(ns))?;
                if let Some(d) =
                    podutil::controller_of(&rs.metadata).filter(|d| d.kind == "Deployment")
                {
                    let dep = self.deployments.get(&ObjectRef::new(&d.name).within(ns))?;
                    return Some((
                        d.uid.clone(),
                        dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                    ));
                }
                Some((
                    r.uid.clone(),
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            "StatefulSet" => {
                let ss = self.statefulsets.get(&ObjectRef::new(&r.name).within(ns))?;
                Some((
                    r.uid.clone(),
                    ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            "ReplicationController" => {
                let rc = self.rcs.get(&ObjectRef::new(&r.name).within(ns))?;
                Some((
                    r.uid.clone(),
                    rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ))
            }
            _ => None,
        }
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(pdb) = self.pdbs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Next::Done);
        };
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| podutil::selector_matches(&selector, &podutil::labels(&p.metadata)))
            .filter(|p| !podutil::is_terminal(p))
            .collect();
        let healthy = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && podutil::is_ready(p))
            .count() as i32;
        let mut controllers: BTreeMap<String, i32> = BTreeMap::new();
        let mut uncontrolled = HashSet::new();
        for p in &pods {
            match self.scale_of(p, ns) {
                Some((uid, n)) => {
                    controllers.insert(uid, n);
                }
                None => {
                    uncontrolled.insert(p.metadata.name.clone());
                }
            }
        }
        let scale = (!controllers.is_empty() && uncontrolled.is_empty())
            .then(|| controllers.values().sum());
        let (expected, desired_healthy) = desired(&pdb, pods.len() as i32, scale);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let new = status(&pdb, expected, healthy, desired_healthy, &now);
        let old = serde_json::to_value(&pdb.status).unwrap_or(Value::Null);
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
        let same = [
            "observedGeneration",
            "expectedPods",
            "currentHealthy",
            "desiredHealthy",
            "disruptionsAllowed",
        ]
        .iter()
        .all(|k| int(&old, k) == int(&new, k))
            && old.pointer("/conditions/0/status") == new.pointer("/conditions/0/status");
        if !same {
            crate::write_status::<PodDisruptionBudget>(&self.client, ns, name, &new).await?;
        }
        Ok(Next::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({"metadata": {"name": "b", "generation": 1}, "spec": spec}))
            .unwrap()
    }

    #[test]
    fn desired_healthy() {
        let cases = [
            (json!({"minAvailable": 2}), 3, None, (3, 2)),
            (json!({"minAvailable": "50%"}), 3, Some(5), (5, 3)),
            (json!({"maxUnavailable": 1}), 3, Some(4), (4, 3)),
            (json!({"maxUnavailable": "25%"}), 3, Some(10), (10, 7)),
            (json!({"maxUnavailable": 5}), 3, Some(3), (3, 0)),
        ];
        for (spec, pods, scale, want) in cases {
            assert_eq!(desired(&pdb(spec.clone()), pods, scale), want, "{spec}");
        }
    }

    #[test]
    fn status_and_condition() {
        let s = status(&pdb(json!({"minAvailable": 2})), 3, 3, 2, "t");
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        let s = status(&pdb(json!({"minAvailable": 2})), 3, 1, 2, "t");
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["status"], "False");
    }
}
