//! Deployment: rolls a template out through ReplicaSets, as Kubernetes'
//! deployment controller does.
//!
//! - The ReplicaSet whose template equals the Deployment's (ignoring the
//!   `pod-template-hash` label) is the *new* one; it is created on demand
//!   as `{deployment}-{hash}` with that label added to its selector and
//!   template, and the next revision number in
//!   `deployment.kubernetes.io/revision` (so `kubectl rollout history` and
//!   `rollout undo` work; `rollout restart` is just a template change).
//! - RollingUpdate scales the new one up within `maxSurge` and the old ones
//!   down within `maxUnavailable` (integers or percents: surge rounds up,
//!   unavailable down; both 0 means 1 unavailable). Recreate scales all
//!   old ones to 0, waits until their pods are gone, then scales up.
//! - A paused Deployment is only scaled. Scaling during a rollout is
//!   proportional over the active ReplicaSets.
//! - Old ReplicaSets with no replicas beyond revisionHistoryLimit (10)
//!   are deleted oldest first.
//! - Status: replicas, updated/ready/available/unavailable, and the
//!   Available and Progressing conditions with Kubernetes' reasons and
//!   messages (ProgressDeadlineExceeded after progressDeadlineSeconds
//!   without progress), which `kubectl rollout status` reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, WorkQueue};
use serde_json::{json, Value};

use crate::podutil;
use crate::Ctx;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Resolves an int-or-percent against `total` (percent rounds up or down).
pub fn resolve(v: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let v = match v {
        Some(v) => v.clone(),
        None => IntOrString::String(default.to_owned()),
    };
    match v {
        IntOrString::Int(i) => i,
        IntOrString::String(s) => {
            let p: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
            let x = p * f64::from(total) / 100.0;
            if round_up {
                x.ceil() as i32
            } else {
                x.floor() as i32
            }
        }
    }
}

/// (maxSurge, maxUnavailable) of a RollingUpdate Deployment.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let replicas = replicas_of(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(ru.and_then(|r| r.max_surge.as_ref()), "25%", replicas, true);
    let unavailable = resolve(
        ru.and_then(|r| r.max_unavailable.as_ref()),
        "25%",
        replicas,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A template without the pod-template-hash label, for comparison.
fn template_without_hash(t: Option<&PodTemplateSpec>) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Some(labels) = v
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            v["metadata"].as_object_mut().unwrap().remove("labels");
        }
    }
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("creationTimestamp");
        if m.is_empty() {
            v.as_object_mut().unwrap().remove("metadata");
        }
    }
    v
}

/// The pod-template-hash for a template (FNV-1a over its canonical JSON and
/// the collision count, encoded with Kubernetes' safe alphabet).
pub fn template_hash(t: Option<&PodTemplateSpec>, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&template_without_hash(t)).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    let mut h: u32 = 0x811c9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x01000193);
    }
    safe_encode(&h.to_string())
}

/// Kubernetes' SafeEncodeString: digits and letters that avoid vowels and
/// look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[(b as usize) % ALPHANUMS.len()] as char)
        .collect()
}

/// How far to scale the new ReplicaSet in a rolling update.
pub fn new_rs_replicas(desired: i32, surge: i32, all_replicas: i32, new_replicas: i32) -> i32 {
    if new_replicas >= desired {
        return desired;
    }
    let max_total = desired + surge;
    if all_replicas >= max_total {
        return new_replicas;
    }
    let up = (max_total - all_replicas).min(desired - new_replicas);
    new_replicas + up
}

/// How many old pods a rolling update may remove now, and from which old
/// ReplicaSets (oldest first): first unhealthy pods (replicas beyond
/// available), then healthy ones while availability stays above
/// `desired - maxUnavailable`. Returns the new replica count per old RS.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new_rs: Option<(i32, i32)>,
    olds: &[(i32, i32)],
) -> Vec<i32> {
    let mut targets: Vec<i32> = olds.iter().map(|(r, _)| *r).collect();
    let old_total: i32 = targets.iter().sum();
    if old_total == 0 {
        return targets;
    }
    let (new_replicas, new_available) = new_rs.unwrap_or((0, 0));
    let all: i32 = old_total + new_replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = (new_replicas - new_available).max(0);
    let mut max_scaled_down = all - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    // Unhealthy pods first.
    for (i, (replicas, available)) in olds.iter().enumerate() {
        if max_scaled_down <= 0 {
            break;
        }
        let unhealthy = (replicas - available).max(0);
        let n = unhealthy.min(max_scaled_down);
        targets[i] -= n;
        max_scaled_down -= n;
    }
    // Then healthy ones, keeping minAvailable (availability as reported,
    // which removing unhealthy pods does not change).
    let available_now: i32 = olds.iter().map(|(_, a)| *a).sum::<i32>() + new_available;
    let mut total_down = available_now - min_available;
    for t in targets.iter_mut() {
        if total_down <= 0 {
            break;
        }
        let n = (*t).min(total_down);
        *t -= n;
        total_down -= n;
    }
    targets
}

/// Proportional scaling: spreads `desired + surge` over active ReplicaSets
/// (given as current replica counts, largest first gets the remainder).
pub fn proportional(desired_total: i32, replicas: &[i32]) -> Vec<i32> {
    let current: i32 = replicas.iter().sum();
    if current == 0 || replicas.is_empty() {
        return replicas.to_vec();
    }
    let mut out: Vec<i32> = replicas
        .iter()
        .map(|r| ((i64::from(*r) * i64::from(desired_total)) / i64::from(current)) as i32)
        .collect();
    let mut left = desired_total - out.iter().sum::<i32>();
    // Remainders go to the largest first.
    let mut order: Vec<usize> = (0..replicas.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(replicas[*i]));
    let mut k = 0;
    while left != 0 && !order.is_empty() {
        let i = order[k % order.len()];
        if left > 0 {
            out[i] += 1;
            left -= 1;
        } else if out[i] > 0 {
            out[i] -= 1;
            left += 1;
        }
        k += 1;
        if k > 10 * order.len() + left.unsigned_abs() as usize {
            break;
        }
    }
    out
}

/// The status a Deployment gets from its ReplicaSets (conditions apart).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
}

fn counts(new_rs: Option<&ReplicaSet>, all: &[&ReplicaSet]) -> Counts {
    let st = |rs: &ReplicaSet, f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| {
        rs.status.as_ref().map(f).unwrap_or(0)
    };
    Counts {
        replicas: all.iter().map(|r| st(r, |s| s.replicas)).sum(),
        updated: new_rs.map(|r| st(r, |s| s.replicas)).unwrap_or(0),
        ready: all
            .iter()
            .map(|r| st(r, |s| s.ready_replicas.unwrap_or(0)))
            .sum(),
        available: all
            .iter()
            .map(|r| st(r, |s| s.available_replicas.unwrap_or(0)))
            .sum(),
    }
}

/// One condition as JSON, keeping lastTransitionTime when the status did
/// not change.
fn condition(
    old: &[Value],
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let prev = old.iter().find(|c| c["type"] == type_);
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match prev {
        Some(p) if p["status"] == status && p["reason"] == reason && p["message"] == message => {
            p["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({
        "type": type_,
        "status": status,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    })
}

/// The Progressing condition, as Kubernetes' deployment controller
/// computes it. `progressed`: the rollout moved since the last status.
pub fn progressing(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    c: &Counts,
    created_new: bool,
    progressed: bool,
    old: &[Value],
    now: Timestamp,
) -> Option<Value> {
    let spec = d.spec.as_ref()?;
    let now_s = now.to_string();
    let name = new_rs
        .and_then(|r| r.metadata.name.clone())
        .unwrap_or_default();
    if spec.paused == Some(true) {
        return Some(condition(
            old,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            &now_s,
        ));
    }
    let prev = old.iter().find(|x| x["type"] == "Progressing");
    if prev.is_some_and(|p| p["reason"] == "DeploymentPaused") {
        return Some(condition(
            old,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            &now_s,
        ));
    }
    let desired = replicas_of(d);
    let complete =
        c.updated == desired && c.replicas == desired && c.available == desired && new_rs.is_some();
    if complete {
        return Some(condition(
            old,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{name}\" has successfully progressed."),
            &now_s,
        ));
    }
    if created_new {
        return Some(condition(
            old,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{name}\""),
            &now_s,
        ));
    }
    if progressed {
        return Some(condition(
            old,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{name}\" is progressing."),
            &now_s,
        ));
    }
    if let (Some(deadline), Some(p)) = (spec.progress_deadline_seconds, prev) {
        if p["reason"] == "ProgressDeadlineExceeded" {
            return Some(p.clone());
        }
        let last: Option<Timestamp> = p["lastUpdateTime"].as_str().and_then(|s| s.parse().ok());
        if let Some(last) = last {
            if now.as_second() - last.as_second() > i64::from(deadline) {
                return Some(condition(
                    old,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{name}\" has timed out progressing."),
                    &now_s,
                ));
            }
        }
        return Some(p.clone());
    }
    if let Some(p) = prev {
        return Some(p.clone());
    }
    Some(condition(
        old,
        "Progressing",
        "True",
        "ReplicaSetUpdated",
        &format!("ReplicaSet \"{name}\" is progressing."),
        &now_s,
    ))
}

struct Controller {
    client: kube::Client,
    deployments: Store<Deployment>,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: runtime::Recorder,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let d_inf = ctx.informers.get::<Deployment>();
    let rs_inf = ctx.informers.get::<ReplicaSet>();
    let pod_inf = ctx.informers.get::<Pod>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        deployments: d_inf.store(),
        replicasets: rs_inf.store(),
        pods: pod_inf.store(),
        recorder: ctx.recorder("deployment-controller"),
    });
    {
        let q = queue.clone();
        d_inf.on_change(move |ch: &Change<Deployment>| q.add(key_of(&ch.object().metadata)));
    }
    {
        let q = queue.clone();
        let c2 = c.clone();
        rs_inf.on_change(move |ch: &Change<ReplicaSet>| {
            for rs in [Some(ch.object()), ch.old()].into_iter().flatten() {
                match podutil::controller_of(&rs.metadata) {
                    Some(r) if r.kind == "Deployment" => q.add(format!(
                        "{}/{}",
                        rs.metadata.namespace.as_deref().unwrap_or_default(),
                        r.name
                    )),
                    Some(_) => {}
                    None => {
                        for k in c2.matching_deployments(rs) {
                            q.add(k);
                        }
                    }
                }
            }
        });
    }
    {
        // Recreate waits for old pods to go: a pod deletion wakes its
        // Deployment.
        let q = queue.clone();
        let c2 = c.clone();
        pod_inf.on_change(move |ch: &Change<Pod>| {
            if let Change::Deleted(pod) = ch {
                if let Some(k) = c2.deployment_of_pod(pod) {
                    q.add(k);
                }
            }
        });
    }
    set.spawn(async move {
        d_inf.wait_synced().await;
        rs_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        run_workers(queue, 4, "deployment-controller", move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl Controller {
    fn matching_deployments(&self, rs: &ReplicaSet) -> Vec<String> {
        let ns = rs.metadata.namespace.as_deref();
        let labels = podutil::labels(&rs.metadata);
        self.deployments
            .state()
            .iter()
            .filter(|d| d.metadata.namespace.as_deref() == ns)
            .filter(|d| {
                d.spec.as_ref().is_some_and(|s| {
                    !podutil::selector_is_empty(&s.selector)
                        && podutil::selector_matches(&s.selector, &labels)
                })
            })
            .map(|d| key_of(&d.metadata))
            .collect()
    }

    fn deployment_of_pod(&self, pod: &Pod) -> Option<String> {
        let ns = pod.metadata.namespace.as_deref()?;
        let r = podutil::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
        let rs = self.replicasets.get(&ObjectRef::new(&r.name).within(ns))?;
        let d = podutil::controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
        Some(format!("{ns}/{}", d.name))
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(d) = self.deployments.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Next::Done);
        };
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let Some(spec) = d.spec.clone() else {
            return Ok(Next::Done);
        };
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let selector = spec.selector.clone();
        if podutil::selector_is_empty(&selector) {
            return Ok(Next::Done);
        }
        // Claim ReplicaSets: owned ones, and orphans matching the selector.
        let mut owned: Vec<Arc<ReplicaSet>> = Vec::new();
        for rs in self.replicasets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let labels = podutil::labels(&rs.metadata);
            match podutil::controller_of(&rs.metadata) {
                Some(r) if r.uid == uid => owned.push(rs),
                Some(_) => {}
                None if podutil::selector_matches(&selector, &labels)
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let patch = json!({"metadata": {
                        "ownerReferences": [podutil::controller_ref("apps/v1", "Deployment", &d.metadata)],
                        "uid": rs.metadata.uid,
                    }});
                    match rs_api
                        .patch(
                            rs.metadata.name.as_deref().unwrap_or_default(),
                            &PatchParams::default(),
                            &Patch::Strategic(&patch),
                        )
                        .await
                    {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                None => {}
            }
        }
        owned.sort_by_key(|rs| {
            (
                rs.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or(0),
                rs.metadata.name.clone(),
            )
        });
        let want = template_without_hash(Some(&spec.template));
        let mut new_rs: Option<ReplicaSet> = owned
            .iter()
            .find(|rs| {
                template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == want
            })
            .map(|rs| (**rs).clone());
        let olds: Vec<Arc<ReplicaSet>> = owned
            .iter()
            .filter(|rs| Some(&rs.metadata.uid) != new_rs.as_ref().map(|n| &n.metadata.uid))
            .cloned()
            .collect();
        let max_old_revision = olds
            .iter()
            .map(|r| revision_of(&r.metadata))
            .max()
            .unwrap_or(0);
        let desired = replicas_of(&d);
        let paused = spec.paused == Some(true);
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let (surge, max_unavailable) = if recreate {
            (0, 0)
        } else {
            surge_and_unavailable(&d)
        };
        let mut created_new = false;
        let mut collision_count = d.status.as_ref().and_then(|s| s.collision_count);

        // The new ReplicaSet's revision is the next one.
        if let Some(rs) = &new_rs {
            let rev = revision_of(&rs.metadata);
            if rev <= max_old_revision && !paused {
                let patch = json!({"metadata": {"annotations": {REVISION: (max_old_revision + 1).to_string()}}});
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                new_rs = Some(
                    rs_api
                        .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?,
                );
            }
        } else if !paused {
            // Create it.
            let all_replicas: i32 = olds.iter().map(|r| rs_replicas(r)).sum();
            let initial = if recreate {
                if all_replicas > 0 {
                    0
                } else {
                    desired
                }
            } else {
                new_rs_replicas(desired, surge, all_replicas, 0)
            };
            loop {
                let hash = template_hash(Some(&spec.template), collision_count);
                let rs = new_replica_set(&d, &hash, max_old_revision + 1, initial, surge);
                match rs_api.create(&PostParams::default(), &rs).await {
                    Ok(rs) => {
                        self.recorder.normal(
                            d.as_ref(),
                            "ScalingReplicaSet",
                            format!(
                                "Scaled up replica set {} from 0 to {initial}",
                                rs.metadata.name.clone().unwrap_or_default()
                            ),
                        );
                        new_rs = Some(rs);
                        created_new = true;
                        break;
                    }
                    Err(e) if runtime::is_conflict(&e) => {
                        // Same name: ours if the template matches, else a
                        // hash collision.
                        let name = rs.metadata.name.clone().unwrap_or_default();
                        if let Some(existing) = rs_api.get_opt(&name).await? {
                            let same = template_without_hash(
                                existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                            ) == want;
                            let ours = podutil::controller_of(&existing.metadata)
                                .is_some_and(|r| r.uid == uid);
                            if same && ours {
                                new_rs = Some(existing);
                                break;
                            }
                        }
                        collision_count = Some(collision_count.unwrap_or(0) + 1);
                        if collision_count > Some(100) {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        // The Deployment carries its new ReplicaSet's revision (what
        // `kubectl rollout history` and `describe` show).
        if let Some(rs) = &new_rs {
            let rev = revision_of(&rs.metadata);
            if rev > 0 && revision_of(&d.metadata) != rev {
                let patch = json!({"metadata": {"annotations": {REVISION: rev.to_string()}}});
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
                match api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if runtime::is_not_found(&e) => return Ok(Next::Done),
                    Err(e) => return Err(e),
                }
            }
        }

        // Scale.
        let mut targets: BTreeMap<String, i32> = BTreeMap::new();
        let name_of = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
        let active: Vec<&ReplicaSet> = olds
            .iter()
            .map(|r| r.as_ref())
            .chain(new_rs.as_ref())
            .filter(|r| rs_replicas(r) > 0)
            .collect();
        let scaling_event = active.iter().any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|v| v != desired)
        });
        if paused || (scaling_event && active.len() > 1) {
            // Only scale: proportionally when several are active.
            if active.len() == 1 {
                targets.insert(name_of(active[0]), desired);
            } else if active.len() > 1 {
                let total = if paused { desired } else { desired + surge };
                let current: Vec<i32> = active.iter().map(|r| rs_replicas(r)).collect();
                for (rs, n) in active.iter().zip(proportional(total, &current)) {
                    targets.insert(name_of(rs), n);
                }
            } else if let Some(rs) = &new_rs {
                targets.insert(name_of(rs), desired);
            }
        } else if recreate {
            let old_replicas: i32 = olds.iter().map(|r| rs_replicas(r)).sum();
            for rs in &olds {
                if rs_replicas(rs) > 0 {
                    targets.insert(name_of(rs), 0);
                }
            }
            let old_pods_running = self.pods.state().iter().any(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && podutil::controller_of(&p.metadata).is_some_and(|r| {
                        olds.iter()
                            .any(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str()))
                    })
                    && !podutil::is_terminal(p)
            });
            if old_replicas == 0 && !old_pods_running {
                if let Some(rs) = &new_rs {
                    targets.insert(name_of(rs), desired);
                }
            }
        } else if let Some(rs) = &new_rs {
            let all: i32 = olds.iter().map(|r| rs_replicas(r)).sum::<i32>() + rs_replicas(rs);
            let n = new_rs_replicas(desired, surge, all, rs_replicas(rs)).min(desired);
            targets.insert(name_of(rs), n);
            // As Kubernetes: a pass that scales the new one up does not
            // also scale old ones down.
            if n <= rs_replicas(rs) {
                let new_state = (n, rs_available(rs));
                let old_state: Vec<(i32, i32)> = olds
                    .iter()
                    .map(|r| (rs_replicas(r), rs_available(r)))
                    .collect();
                for (rs, t) in olds.iter().zip(scale_down_old(
                    desired,
                    max_unavailable,
                    Some(new_state),
                    &old_state,
                )) {
                    if t != rs_replicas(rs) {
                        targets.insert(name_of(rs), t);
                    }
                }
            }
        }
        let mut scaled = false;
        let current: Vec<ReplicaSet> = olds
            .iter()
            .map(|r| (**r).clone())
            .chain(new_rs.clone())
            .collect();
        for rs in &current {
            let rs_name = name_of(rs);
            let Some(&target) = targets.get(&rs_name) else {
                continue;
            };
            let annotations_ok = rs.metadata.annotations.as_ref().is_some_and(|a| {
                a.get(DESIRED_REPLICAS) == Some(&desired.to_string())
                    && a.get(MAX_REPLICAS) == Some(&(desired + surge).to_string())
            });
            if target == rs_replicas(rs) && annotations_ok {
                continue;
            }
            let patch = json!({
                "metadata": {"annotations": {
                    DESIRED_REPLICAS: desired.to_string(),
                    MAX_REPLICAS: (desired + surge).to_string(),
                }},
                "spec": {"replicas": target},
            });
            match rs_api
                .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => {
                    let from = rs_replicas(rs);
                    if target != from {
                        scaled = true;
                        let dir = if target > from { "up" } else { "down" };
                        self.recorder.normal(
                            d.as_ref(),
                            "ScalingReplicaSet",
                            format!("Scaled {dir} replica set {rs_name} from {from} to {target}"),
                        );
                    }
                    if new_rs
                        .as_ref()
                        .is_some_and(|n| n.metadata.name == updated.metadata.name)
                    {
                        new_rs = Some(updated);
                    }
                }
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }

        // Clean up history.
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut dead: Vec<&Arc<ReplicaSet>> = olds
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                    && rs.metadata.deletion_timestamp.is_none()
                    && targets.get(&name_of(rs)).is_none_or(|t| *t == 0)
            })
            .collect();
        if dead.len() > limit {
            dead.sort_by_key(|rs| revision_of(&rs.metadata));
            for rs in &dead[..dead.len() - limit] {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: rs.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match rs_api.delete(&name_of(rs), &dp).await {
                    Ok(_) => {}
                    Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }

        // Status.
        let all: Vec<&ReplicaSet> = olds
            .iter()
            .map(|r| r.as_ref())
            .chain(new_rs.as_ref())
            .collect();
        let c = counts(new_rs.as_ref(), &all);
        let old_status = serde_json::to_value(&d.status).unwrap_or(Value::Null);
        let old_conditions: Vec<Value> = old_status["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let int = |k: &str| old_status[k].as_i64().unwrap_or(0) as i32;
        let progressed = scaled
            || c.updated != int("updatedReplicas")
            || c.ready != int("readyReplicas")
            || c.available != int("availableReplicas")
            || c.replicas != int("replicas");
        let now = Timestamp::now();
        let now_s = now.to_string();
        let mut conditions = Vec::new();
        let min_available = desired - max_unavailable;
        conditions.push(if c.available >= min_available {
            condition(
                &old_conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &now_s,
            )
        } else {
            condition(
                &old_conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &now_s,
            )
        });
        if let Some(p) = progressing(
            &d,
            new_rs.as_ref(),
            &c,
            created_new,
            progressed,
            &old_conditions,
            now,
        ) {
            conditions.push(p);
        }
        for c in &old_conditions {
            if c["type"] != "Available" && c["type"] != "Progressing" {
                conditions.push(c.clone());
            }
        }
        let mut status = json!({
            "observedGeneration": d.metadata.generation.unwrap_or(0),
            "replicas": c.replicas,
            "updatedReplicas": c.updated,
            "readyReplicas": c.ready,
            "availableReplicas": c.available,
            "unavailableReplicas": (desired - c.available).max(0),
            "conditions": conditions,
        });
        if let Some(cc) = collision_count {
            status["collisionCount"] = json!(cc);
        }
        let same = {
            let mut a = old_status.clone();
            let mut b = status.clone();
            for v in [&mut a, &mut b] {
                if let Some(m) = v.as_object_mut() {
                    m.retain(|_, x| !(x == &json!(0)));
                }
            }
            a == b
        };
        if !same {
            crate::write_status::<Deployment>(&self.client, ns, name, &status).await?;
        }
        // Come back for the progress deadline.
        let complete = c.updated == desired && c.available == desired && c.replicas == desired;
        if let (false, false, Some(deadline)) = (complete, paused, spec.progress_deadline_seconds) {
            return Ok(Next::After(Duration::from_secs(
                u64::try_from(deadline).unwrap_or(600).max(1) + 1,
            )));
        }
        Ok(Next::Done)
    }
}

/// The new ReplicaSet for a Deployment template.
fn new_replica_set(
    d: &Deployment,
    hash: &str,
    revision: i64,
    replicas: i32,
    surge: i32,
) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or_default());
    let mut template = spec.template.clone();
    let tm = template.metadata.get_or_insert_with(Default::default);
    tm.labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.into());
    let mut selector: LabelSelector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(Default::default)
        .insert(HASH_LABEL.into(), hash.into());
    let mut annotations: BTreeMap<String, String> = d
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            k != "kubectl.kubernetes.io/last-applied-configuration"
                && k != REVISION
                && k != REVISION_HISTORY
        })
        .collect();
    let desired = replicas_of(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
    annotations.insert(MAX_REPLICAS.into(), (desired + surge).to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: d.metadata.namespace.clone(),
            labels: tm.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![podutil::controller_ref(
                "apps/v1",
                "Deployment",
                &d.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent() {
        let cases = [
            (Some(IntOrString::Int(2)), 10, true, 2),
            (Some(IntOrString::String("25%".into())), 10, true, 3),
            (Some(IntOrString::String("25%".into())), 10, false, 2),
            (None, 4, true, 1),
            (None, 3, false, 0),
            (Some(IntOrString::String("100%".into())), 3, false, 3),
        ];
        for (v, total, up, want) in cases {
            assert_eq!(
                resolve(v.as_ref(), "25%", total, up),
                want,
                "{v:?} of {total}"
            );
        }
    }

    #[test]
    fn new_replica_set_scale_up() {
        // (desired, surge, all, new) -> new target
        let cases = [
            (3, 1, 3, 0, 1), // one surge pod
            (3, 1, 4, 1, 1), // at max total: wait
            (3, 1, 2, 1, 3), // old ones went down: up to desired
            (3, 0, 3, 0, 0), // no surge: wait for old to shrink
            (3, 1, 0, 0, 3), // fresh: all at once (bounded by desired)
            (3, 1, 5, 5, 3), // shrunk: down to desired
            (10, 3, 10, 0, 3),
        ];
        for (desired, surge, all, new, want) in cases {
            assert_eq!(
                new_rs_replicas(desired, surge, all, new),
                want,
                "{desired} {surge} {all} {new}"
            );
        }
    }

    #[test]
    fn old_replica_sets_scale_down() {
        // (desired, maxUnavailable, new (replicas, available), olds) -> targets
        type Case = (i32, i32, (i32, i32), Vec<(i32, i32)>, Vec<i32>);
        let cases: Vec<Case> = vec![
            // 3 desired, maxUnavailable 0: new has 1 available -> one old goes.
            (3, 0, (1, 1), vec![(3, 3)], vec![2]),
            // new not available yet: keep all old.
            (3, 0, (1, 0), vec![(3, 3)], vec![3]),
            // maxUnavailable 1: one old may go before new is up.
            (3, 1, (1, 0), vec![(3, 3)], vec![2]),
            // unhealthy old pods go first, even past availability.
            (3, 0, (1, 0), vec![(3, 1)], vec![3]),
            (3, 1, (0, 0), vec![(3, 1)], vec![2]),
            // oldest first.
            (4, 0, (2, 2), vec![(1, 1), (3, 3)], vec![0, 2]),
            // nothing old.
            (3, 1, (3, 3), vec![(0, 0)], vec![0]),
        ];
        for (desired, unavailable, new, olds, want) in cases {
            assert_eq!(
                scale_down_old(desired, unavailable, Some(new), &olds),
                want,
                "{desired} {unavailable} {new:?} {olds:?}"
            );
        }
    }

    #[test]
    fn proportional_scaling() {
        assert_eq!(proportional(10, &[5, 5]), vec![5, 5]);
        assert_eq!(proportional(12, &[5, 5]), vec![6, 6]);
        assert_eq!(proportional(11, &[6, 4]), vec![7, 4]);
        assert_eq!(proportional(4, &[6, 2]), vec![3, 1]);
        assert_eq!(proportional(3, &[]), Vec::<i32>::new());
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .unwrap();
        let mut with_hash = t.clone();
        with_hash
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), "abc".into());
        let h = template_hash(Some(&t), None);
        assert_eq!(h, template_hash(Some(&with_hash), None));
        assert_ne!(h, template_hash(Some(&t), Some(1)));
        assert!(
            h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{h}"
        );
    }

    #[test]
    fn progress_conditions() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "progressDeadlineSeconds": 60, "selector": {}, "template": {}}
        }))
        .unwrap();
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "d-1"}})).unwrap();
        let now = Timestamp::from_second(10_000).unwrap();
        let done = Counts {
            replicas: 2,
            updated: 2,
            ready: 2,
            available: 2,
        };
        let mid = Counts {
            replicas: 3,
            updated: 1,
            ready: 2,
            available: 2,
        };
        let reason = |v: Option<Value>| v.unwrap()["reason"].as_str().unwrap().to_owned();
        assert_eq!(
            reason(progressing(&d, Some(&rs), &done, false, false, &[], now)),
            "NewReplicaSetAvailable"
        );
        assert_eq!(
            reason(progressing(&d, Some(&rs), &mid, true, true, &[], now)),
            "NewReplicaSetCreated"
        );
        assert_eq!(
            reason(progressing(&d, Some(&rs), &mid, false, true, &[], now)),
            "ReplicaSetUpdated"
        );
        let stale = vec![json!({
            "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "lastUpdateTime": Timestamp::from_second(9_000).unwrap().to_string(),
            "lastTransitionTime": Timestamp::from_second(9_000).unwrap().to_string(),
        })];
        let exceeded = progressing(&d, Some(&rs), &mid, false, false, &stale, now).unwrap();
        assert_eq!(exceeded["reason"], "ProgressDeadlineExceeded");
        assert_eq!(exceeded["status"], "False");
        assert_eq!(
            exceeded["message"],
            "ReplicaSet \"d-1\" has timed out progressing."
        );
        let fresh = vec![json!({
            "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "lastUpdateTime": Timestamp::from_second(9_990).unwrap().to_string(),
        })];
        assert_eq!(
            reason(progressing(&d, Some(&rs), &mid, false, false, &fresh, now)),
            "ReplicaSetUpdated"
        );
    }
}
