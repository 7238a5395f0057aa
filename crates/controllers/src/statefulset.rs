//! StatefulSet (apps/v1), as Kubernetes 1.33's controller behaves: pods
//! `{set}-{ordinal}` (ordinals from `spec.ordinals.start`) with hostname
//! and subdomain, the `statefulset.kubernetes.io/pod-name`,
//! `apps.kubernetes.io/pod-index` and `controller-revision-hash` labels;
//! PVCs from volumeClaimTemplates (`{template}-{set}-{ordinal}`) created
//! before their pod, owned as persistentVolumeClaimRetentionPolicy says;
//! OrderedReady (one pod at a time, each Running and Ready before the
//! next; scale down from the highest ordinal) or Parallel management;
//! ControllerRevisions (see [`crate::history`]); RollingUpdate (partition,
//! maxUnavailable: pods not at the update revision are deleted from the
//! highest ordinal down and come back at it) or OnDelete; and the status
//! `kubectl rollout status statefulset` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, Expectations, WorkQueue};
use serde_json::{json, Value};

use crate::history::{self, UpdateRevision};
use crate::podutil;
use crate::Ctx;

const COMPONENT: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

// ---------------------------------------------------------------------------
// Facts about a set and its pods.

fn spec_replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

fn partition(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0)
}

/// rollingUpdate.maxUnavailable scaled against replicas (rounded up, at
/// least 1); None when unset (one at a time, Kubernetes' default path).
fn max_unavailable(set: &StatefulSet) -> Option<i32> {
    let mu = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?
        .max_unavailable
        .as_ref()?;
    Some(scaled(mu, spec_replicas(set), true).max(1))
}

/// An int-or-percent scaled against `total`.
pub fn scaled(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let v = p * i64::from(total);
            (if round_up {
                (v + 99).div_euclid(100)
            } else {
                v.div_euclid(100)
            }) as i32
        }
    }
}

/// The ordinal in a pod's name `{set}-{ordinal}` (None: not a member).
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let rest = pod_name.strip_prefix(set_name)?.strip_prefix('-')?;
    if rest.is_empty()
        || (rest.len() > 1 && rest.starts_with('0'))
        || !rest.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    rest.parse().ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && podutil::is_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && podutil::is_available(pod, min_ready, now)
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(history::POD_REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Pods and claims from the set.

/// `{template}-{set}-{ordinal}`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The PVCs a pod with `ordinal` uses (getPersistentVolumeClaims).
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return vec![];
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut claim = t.clone();
            let tname = name(&t.metadata).to_owned();
            claim.metadata = ObjectMeta {
                name: Some(claim_name(&tname, name(&set.metadata), ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: {
                    let mut l = t.metadata.labels.clone().unwrap_or_default();
                    l.extend(selector_labels.clone());
                    (!l.is_empty()).then_some(l)
                },
                annotations: t.metadata.annotations.clone(),
                ..Default::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// The pod with `ordinal` made from `template` at `revision`
/// (newStatefulSetPod + setPodRevision).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = name(&set.metadata);
    let ns = set.metadata.namespace.clone().unwrap_or_default();
    let owner = podutil::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    let mut pod = podutil::pod_from_template(template, &ns, "", owner);
    let pod_name = format!("{set_name}-{ordinal}");
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(history::POD_REVISION_LABEL.into(), revision.to_owned());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name);
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    // updateStorage: claim volumes first, then the template's others.
    let templates: Vec<String> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|ts| ts.iter().map(|t| name(&t.metadata).to_owned()).collect())
        .unwrap_or_default();
    if !templates.is_empty() {
        let mut volumes: Vec<Volume> = templates
            .iter()
            .map(|t| Volume {
                name: t.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(t, set_name, ordinal),
                    read_only: None,
                }),
                ..Default::default()
            })
            .collect();
        volumes.extend(
            spec.volumes
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|v| !templates.contains(&v.name)),
        );
        spec.volumes = Some(volumes);
    }
    pod
}

/// Whether the pod's labels carry its identity (identityMatches).
fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ord) = ordinal_of(name(&set.metadata), name(&pod.metadata)) else {
        return false;
    };
    let labels = podutil::labels(&pod.metadata);
    labels.get(POD_NAME_LABEL).map(String::as_str) == Some(name(&pod.metadata))
        && labels.get(POD_INDEX_LABEL) == Some(&ord.to_string())
}

// ---------------------------------------------------------------------------
// Retention policy: the ownerReferences a claim should carry.

fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        del(p.and_then(|p| p.when_deleted.as_ref())),
        del(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn plain_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name(meta).into(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// The claim's ownerReferences under the set's retention policy
/// (updateClaimOwnerRefForSetAndPod), or None when they are right.
/// `scaled_down`: the pod's ordinal is outside the set's range.
pub fn retention_refs(
    existing: &[OwnerReference],
    set: &StatefulSet,
    pod: &Pod,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = retention(set);
    let set_uid = set.metadata.uid.clone().unwrap_or_default();
    let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut refs = existing.to_vec();
    let set_ref = |refs: &mut Vec<OwnerReference>, want: bool, uid: &str, r: OwnerReference| {
        let has = refs.iter().any(|o| o.uid == uid);
        if want && !has && !uid.is_empty() {
            refs.push(r);
        } else if !want && has {
            refs.retain(|o| o.uid != uid);
        }
    };
    let (want_set, want_pod) = match (when_scaled, when_deleted) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    set_ref(
        &mut refs,
        want_set,
        &set_uid,
        plain_ref("apps/v1", "StatefulSet", &set.metadata),
    );
    set_ref(
        &mut refs,
        want_pod,
        &pod_uid,
        plain_ref("v1", "Pod", &pod.metadata),
    );
    (refs != existing).then_some(refs)
}

// ---------------------------------------------------------------------------
// The plan of one pass.

/// A pod slot in the set's range: the pod, or the one to create.
#[derive(Debug, Clone)]
enum Slot {
    Pod(Arc<Pod>),
    New(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Pod(p) => p,
            Slot::New(p) => p,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// What one pass does, in order.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to create (with their claims first).
    pub create: Vec<Pod>,
    /// Pods to delete (name, uid) with the reason (for events).
    pub delete: Vec<(String, String)>,
    /// Pods whose identity labels need fixing.
    pub relabel: Vec<String>,
    pub counts: Counts,
    /// Seconds until a ready pod becomes available.
    pub recheck_in: Option<i64>,
}

fn counts(pods: &[&Pod], min_ready: i32, now: Timestamp, current: &str, update: &str) -> Counts {
    let mut c = Counts::default();
    for p in pods {
        if is_created(p) {
            c.replicas += 1;
        }
        if is_running_and_ready(p) {
            c.ready += 1;
            if is_running_and_available(p, min_ready, now) {
                c.available += 1;
            }
        }
        if is_created(p) && !is_terminating(p) {
            let r = pod_revision(p);
            if r == current {
                c.current += 1;
            }
            if r == update {
                c.updated += 1;
            }
        }
    }
    c
}

/// The revisions a pass works with: names and templates.
pub struct Revisions<'a> {
    pub current: &'a str,
    pub update: &'a str,
    pub current_template: &'a PodTemplateSpec,
    pub update_template: &'a PodTemplateSpec,
}

/// Decides a pass over the set's own pods (updateStatefulSet).
/// `acting` is false while earlier creations/deletions are unobserved:
/// then only the status is computed.
pub fn plan(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    revs: &Revisions,
    now: Timestamp,
    acting: bool,
) -> Plan {
    let mut plan = Plan::default();
    let set_name = name(&set.metadata);
    let start = start_ordinal(set);
    let replicas = spec_replicas(set);
    let min_ready = min_ready_seconds(set);
    let mut slots: Vec<Option<Slot>> = vec![None; replicas as usize];
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for p in pods {
        let Some(ord) = ordinal_of(set_name, name(&p.metadata)) else {
            continue;
        };
        if ord >= start && ord < start + replicas {
            slots[(ord - start) as usize] = Some(Slot::Pod(p.clone()));
        } else {
            condemned.push(p.clone());
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(set_name, name(&p.metadata))));
    let part = partition(set);
    let slots: Vec<Slot> = slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.unwrap_or_else(|| {
                let ord = start + i as i32;
                // newVersionedStatefulSetPod: below the partition pods
                // are made at the current revision.
                let pod = if !is_on_delete(set) && (i as i32) < part {
                    new_pod(set, revs.current_template, ord, revs.current)
                } else {
                    new_pod(set, revs.update_template, ord, revs.update)
                };
                Slot::New(Box::new(pod))
            })
        })
        .collect();
    let existing: Vec<&Pod> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Pod(p) => Some(p.as_ref()),
            Slot::New(_) => None,
        })
        .chain(condemned.iter().map(|p| p.as_ref()))
        .collect();
    plan.counts = counts(&existing, min_ready, now, revs.current, revs.update);
    for p in &existing {
        if is_running_and_ready(p) && !is_terminating(p) {
            if let Some(left) = podutil::available_in(p, min_ready, now) {
                plan.recheck_in = Some(plan.recheck_in.map_or(left, |r: i64| r.min(left)));
            }
        }
    }
    if set.metadata.deletion_timestamp.is_some() || !acting {
        return plan;
    }
    let first_unhealthy: Option<String> = slots
        .iter()
        .map(Slot::pod)
        .find(|p| !is_healthy(p))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .map(|p| p.as_ref())
                .find(|p| !is_healthy(p))
        })
        .map(|p| name(&p.metadata).to_owned());
    let monotonic = !is_parallel(set);
    let id = |p: &Pod| {
        (
            name(&p.metadata).to_owned(),
            p.metadata.uid.clone().unwrap_or_default(),
        )
    };

    // Living replicas, in ordinal order.
    for slot in &slots {
        let exit = match slot {
            Slot::New(p) => {
                plan.create.push((**p).clone());
                true
            }
            Slot::Pod(p) => {
                if matches!(phase(p), "Failed" | "Succeeded") {
                    if !is_terminating(p) {
                        plan.delete.push(id(p));
                    }
                    true
                } else if monotonic
                    && (is_terminating(p)
                        || !is_running_and_ready(p)
                        || !is_running_and_available(p, min_ready, now))
                {
                    return plan;
                } else {
                    if !identity_matches(set, p) {
                        plan.relabel.push(name(&p.metadata).to_owned());
                    }
                    false
                }
            }
        };
        if exit && monotonic {
            return plan;
        }
    }

    // Condemned pods, highest ordinal first.
    for p in &condemned {
        if is_terminating(p) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(name(&p.metadata));
        if monotonic
            && !first
            && (!is_running_and_ready(p) || !is_running_and_available(p, min_ready, now))
        {
            return plan;
        }
        plan.delete.push(id(p));
        if monotonic {
            return plan;
        }
    }

    if is_on_delete(set) {
        return plan;
    }

    // Rolling update from the highest ordinal down to the partition.
    let update_min = part as usize;
    let healthy = |s: &Slot| matches!(s, Slot::Pod(p) if is_healthy(p));
    let revision = |s: &Slot| pod_revision(s.pod()).to_owned();
    let terminating = |s: &Slot| is_terminating(s.pod());
    match max_unavailable(set) {
        None => {
            for target in (update_min..slots.len()).rev() {
                let s = &slots[target];
                if revision(s) != revs.update && !terminating(s) {
                    if let Slot::Pod(p) = s {
                        plan.delete.push(id(p));
                        plan.counts.current -= 1;
                    }
                    return plan;
                }
                if !healthy(s) {
                    return plan;
                }
            }
        }
        Some(max) => {
            let unavailable = slots.iter().filter(|s| !healthy(s)).count() as i32;
            let mut budget = max - unavailable;
            for target in (update_min..slots.len()).rev() {
                if budget <= 0 {
                    break;
                }
                let s = &slots[target];
                if revision(s) != revs.update && !terminating(s) {
                    if let Slot::Pod(p) = s {
                        plan.delete.push(id(p));
                        plan.counts.current -= 1;
                        budget -= 1;
                    }
                }
            }
        }
    }
    plan
}

/// The status to write (completeRollingUpdate included).
pub fn status_for(
    set: &StatefulSet,
    counts: &Counts,
    current: &str,
    update: &str,
    collision_count: i32,
) -> Value {
    let (mut current_replicas, mut current_revision) = (counts.current, current.to_owned());
    if !is_on_delete(set) && counts.updated == counts.replicas && counts.ready == counts.replicas {
        current_replicas = counts.updated;
        current_revision = update.to_owned();
    }
    let mut status = json!({
        "observedGeneration": set.metadata.generation.unwrap_or(0),
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "currentReplicas": current_replicas,
        "updatedReplicas": counts.updated,
        "currentRevision": current_revision,
        "updateRevision": update,
        "collisionCount": collision_count,
    });
    // Conditions are kept as they are.
    if let Some(c) = set.status.as_ref().and_then(|s| s.conditions.as_ref()) {
        status["conditions"] = serde_json::to_value(c).unwrap_or(Value::Null);
    }
    status
}

fn status_differs(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    [
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "currentReplicas",
        "updatedReplicas",
        "collisionCount",
    ]
    .iter()
    .any(|k| int(old, k) != int(new, k))
        || ["currentRevision", "updateRevision"]
            .iter()
            .any(|k| s(old, k) != s(new, k))
}

// ---------------------------------------------------------------------------
// The controller.

struct Controller {
    client: kube::Client,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    recorder: runtime::Recorder,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let sets_inf = ctx.informers.get::<StatefulSet>();
    let pods_inf = ctx.informers.get::<Pod>();
    let claims_inf = ctx.informers.get::<PersistentVolumeClaim>();
    let revs_inf = ctx.informers.get::<ControllerRevision>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        sets: sets_inf.store(),
        pods: pods_inf.store(),
        claims: claims_inf.store(),
        revisions: revs_inf.store(),
        expectations: Expectations::new(),
        recorder: ctx.recorder(COMPONENT),
    });
    {
        let (q, c2) = (queue.clone(), c.clone());
        sets_inf.on_change(move |ch: &Change<StatefulSet>| {
            let key = key_of(ch.object().meta());
            if let Change::Deleted(_) = ch {
                c2.expectations.forget(&key);
            }
            q.add(key);
        });
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        pods_inf.on_change(move |ch: &Change<Pod>| {
            podutil::route_pod_change(
                "StatefulSet",
                ch,
                &c2.expectations,
                |p| c2.matching_sets(p),
                |k| q.add(k),
            );
        });
    }
    {
        let q = queue.clone();
        revs_inf.on_change(move |ch: &Change<ControllerRevision>| {
            let r = ch.object();
            if let Some(o) = podutil::controller_of(&r.metadata).filter(|o| o.kind == "StatefulSet")
            {
                q.add(format!(
                    "{}/{}",
                    r.metadata.namespace.as_deref().unwrap_or_default(),
                    o.name
                ));
            }
        });
    }
    {
        // A claim going away unblocks a pod waiting for it.
        let (q, c2) = (queue.clone(), c.clone());
        claims_inf.on_change(move |ch: &Change<PersistentVolumeClaim>| {
            if let Change::Deleted(claim) | Change::Updated { new: claim, .. } = ch {
                let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
                for s in c2.sets.state() {
                    if s.metadata.namespace.as_deref() == Some(ns)
                        && name(&claim.metadata).contains(&format!("-{}-", name(&s.metadata)))
                    {
                        q.add(key_of(&s.metadata));
                    }
                }
            }
        });
    }
    let infs = (
        sets_inf.clone(),
        pods_inf.clone(),
        claims_inf.clone(),
        revs_inf.clone(),
    );
    set.spawn(async move {
        infs.0.wait_synced().await;
        infs.1.wait_synced().await;
        infs.2.wait_synced().await;
        infs.3.wait_synced().await;
        run_workers(queue, 4, COMPONENT, move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

fn set_selector(set: &StatefulSet) -> Option<api::selector::LabelSelector> {
    let sel = &set.spec.as_ref()?.selector;
    if podutil::selector_is_empty(sel) {
        return None;
    }
    api::selector::from_label_selector_json(&serde_json::to_value(sel).ok()?).ok()
}

fn error_text(e: &kube::Error) -> String {
    crate::replicaset::error_text(e)
}

impl Controller {
    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = podutil::labels(&pod.metadata);
        self.sets
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| set_selector(s).is_some_and(|sel| sel.matches(&labels)))
            .map(|s| key_of(&s.metadata))
            .collect()
    }

    /// Adopts orphans and releases pods no longer selected; returns the
    /// set's pods.
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        pod_api: &Api<Pod>,
    ) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let selector = set_selector(set);
        let set_name = name(&set.metadata);
        let deleting = set.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for p in self.pods.state() {
            if p.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let matches = selector
                .as_ref()
                .is_some_and(|s| s.matches(&podutil::labels(&p.metadata)))
                && ordinal_of(set_name, name(&p.metadata)).is_some();
            match podutil::controller_of(&p.metadata) {
                Some(r) if r.uid == uid => {
                    if matches || deleting {
                        owned.push(p);
                    } else {
                        let patch = json!({"metadata": {
                            "ownerReferences": [{"$patch": "delete", "uid": uid}],
                            "uid": p.metadata.uid,
                        }});
                        match pod_api
                            .patch(
                                name(&p.metadata),
                                &PatchParams::default(),
                                &Patch::Strategic(&patch),
                            )
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                Some(_) => {}
                None if matches && !deleting && !is_terminating(&p) => {
                    let patch = json!({"metadata": {
                        "ownerReferences": [podutil::controller_ref("apps/v1", "StatefulSet", &set.metadata)],
                        "uid": p.metadata.uid,
                    }});
                    match pod_api
                        .patch(
                            name(&p.metadata),
                            &PatchParams::default(),
                            &Patch::Strategic(&patch),
                        )
                        .await
                    {
                        Ok(_) => owned.push(p),
                        Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                None => {}
            }
        }
        Ok(owned)
    }

    /// Finds or makes the current and update revisions
    /// (getStatefulSetRevisions); returns (current, update, collisionCount).
    async fn revisions_for(
        &self,
        set: &StatefulSet,
    ) -> Result<
        (
            Arc<ControllerRevision>,
            Arc<ControllerRevision>,
            i32,
            Vec<Arc<ControllerRevision>>,
        ),
        kube::Error,
    > {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revs = history::owned(&self.revisions.state(), ns, uid);
        let patch = history::template_patch(&serde_json::to_value(set).unwrap_or_default());
        let mut collision = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let update: Arc<ControllerRevision> = match history::find_update_revision(&revs, &patch) {
            UpdateRevision::Latest(n) => revs
                .iter()
                .find(|r| name(&r.metadata) == n)
                .unwrap()
                .clone(),
            UpdateRevision::Renumber(n, number) => {
                let r = api
                    .patch(
                        &n,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({ "revision": number })),
                    )
                    .await?;
                Arc::new(r)
            }
            UpdateRevision::Create(number) => {
                let labels = set
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone());
                let owner = podutil::controller_ref("apps/v1", "StatefulSet", &set.metadata);
                let mut rev =
                    history::new_revision(&set.metadata, owner, labels, patch.clone(), number);
                loop {
                    let hash = history::hash_revision(&patch, Some(collision));
                    rev.metadata.name = Some(history::revision_name(name(&set.metadata), &hash));
                    rev.metadata
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(history::HASH_LABEL.into(), hash);
                    match api.create(&PostParams::default(), &rev).await {
                        Ok(r) => break Arc::new(r),
                        Err(e) if runtime::is_conflict(&e) => {
                            let existing = api.get(name(&rev.metadata)).await?;
                            if history::data_equals(&existing, &patch) {
                                break Arc::new(existing);
                            }
                            collision += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_default();
        let current = revs
            .iter()
            .find(|r| name(&r.metadata) == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision, revs))
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, set_name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(set) = self.sets.get(&ObjectRef::new(set_name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Next::Done);
        };
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pods = self.claim_pods(&set, &pod_api).await?;
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let (current, update, collision, revs) = self.revisions_for(&set).await?;
        let update_template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let current_template: PodTemplateSpec = history::template_of(&current)
            .and_then(|t| serde_json::from_value(t).ok())
            .unwrap_or_else(|| update_template.clone());
        let revisions = Revisions {
            current: name(&current.metadata),
            update: name(&update.metadata),
            current_template: &current_template,
            update_template: &update_template,
        };
        let acting = self.expectations.satisfied(key);
        let plan = plan(&set, &pods, &revisions, Timestamp::now(), acting);

        // Claims of existing pods follow the retention policy.
        if acting {
            self.fix_claims(&set, &pods).await?;
        }
        for p in &plan.relabel {
            if let Some(ord) = ordinal_of(set_name, p) {
                let patch = json!({"metadata": {"labels": {POD_NAME_LABEL: p, POD_INDEX_LABEL: ord.to_string()}}});
                match pod_api
                    .patch(p, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if runtime::is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut error: Option<kube::Error> = None;
        let mut waiting = false;
        if !plan.create.is_empty() {
            self.expectations.expect(key, plan.create.len() as i64, 0);
            let results =
                futures::future::join_all(plan.create.iter().map(|pod| self.create_pod(&set, pod)))
                    .await;
            for r in results {
                match r {
                    Ok(true) => {}
                    Ok(false) => {
                        self.expectations.creation_observed(key);
                        waiting = true;
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        error.get_or_insert(e);
                    }
                }
            }
        }
        if !plan.delete.is_empty() {
            self.expectations.expect(key, 0, plan.delete.len() as i64);
            for (pod, uid) in &plan.delete {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pod_api.delete(pod, &dp).await {
                    Ok(_) => self.recorder.normal(
                        set.as_ref(),
                        "SuccessfulDelete",
                        format!("delete Pod {pod} in StatefulSet {set_name} successful"),
                    ),
                    Err(e) => {
                        self.expectations.deletion_observed(key);
                        if !runtime::is_not_found(&e) {
                            self.recorder.warning(
                                set.as_ref(),
                                "FailedDelete",
                                format!(
                                    "delete Pod {pod} in StatefulSet {set_name} failed error: {}",
                                    error_text(&e)
                                ),
                            );
                            error.get_or_insert(e);
                        }
                    }
                }
            }
        }

        let status = status_for(
            &set,
            &plan.counts,
            revisions.current,
            revisions.update,
            collision,
        );
        let old = serde_json::to_value(&set.status).unwrap_or(Value::Null);
        if status_differs(&old, &status) {
            crate::write_status::<StatefulSet>(&self.client, ns, set_name, &status).await?;
        }

        // History: keep live revisions and revisionHistoryLimit others.
        let mut live: BTreeSet<String> = pods.iter().map(|p| pod_revision(p).to_owned()).collect();
        live.insert(
            status["currentRevision"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        live.insert(name(&update.metadata).to_owned());
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut all = revs;
        if !all.iter().any(|r| r.metadata.name == update.metadata.name) {
            all.push(update.clone());
        }
        history::sort(&mut all);
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        for r in history::to_truncate(&all, &live, limit) {
            match rev_api.delete(&r, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        if waiting {
            return Ok(Next::After(std::time::Duration::from_secs(1)));
        }
        Ok(match plan.recheck_in {
            Some(s) => Next::After(std::time::Duration::from_secs(s.max(1) as u64)),
            None => Next::Done,
        })
    }

    /// Creates the pod's claims (unless present), then the pod.
    /// Ok(false): not created yet (a claim is still being deleted).
    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<bool, kube::Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = name(&set.metadata);
        let pod_name = name(&pod.metadata);
        let ord = ordinal_of(set_name, pod_name).unwrap_or(0);
        let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for mut claim in claims_for(set, ord) {
            let cname = name(&claim.metadata).to_owned();
            if let Some(existing) = self.claims.get(&ObjectRef::new(&cname).within(ns)) {
                if existing.metadata.deletion_timestamp.is_some() {
                    // The old claim is still going: try again later.
                    return Ok(false);
                }
                continue;
            }
            // whenDeleted=Delete: the set owns the claim from the start.
            if let Some(refs) = retention_refs(&[], set, &Pod::default(), false) {
                claim.metadata.owner_references = Some(refs).filter(|r| !r.is_empty());
            }
            match claim_api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {cname} Pod {pod_name} in StatefulSet {set_name} success"
                    ),
                ),
                Err(e) if runtime::is_conflict(&e) => {}
                Err(e) => {
                    self.recorder.warning(
                        set,
                        "FailedCreate",
                        format!(
                            "create Claim {cname} for Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                            error_text(&e)
                        ),
                    );
                    return Err(e);
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(true)
            }
            Err(e) => {
                if !runtime::is_conflict(&e) {
                    self.recorder.warning(
                        set,
                        "FailedCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                            error_text(&e)
                        ),
                    );
                }
                Err(e)
            }
        }
    }

    /// Sets the claims' ownerReferences as the retention policy says.
    async fn fix_claims(&self, set: &StatefulSet, pods: &[Arc<Pod>]) -> Result<(), kube::Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or_default();
        let set_name = name(&set.metadata);
        let (start, replicas) = (start_ordinal(set), spec_replicas(set));
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for p in pods {
            if is_terminating(p) {
                continue;
            }
            let Some(ord) = ordinal_of(set_name, name(&p.metadata)) else {
                continue;
            };
            let scaled_down = ord < start || ord >= start + replicas;
            for claim in claims_for(set, ord) {
                let cname = name(&claim.metadata);
                let Some(existing) = self.claims.get(&ObjectRef::new(cname).within(ns)) else {
                    continue;
                };
                let refs = existing
                    .metadata
                    .owner_references
                    .clone()
                    .unwrap_or_default();
                if let Some(new) = retention_refs(&refs, set, p, scaled_down) {
                    let patch = json!({"metadata": {
                        "ownerReferences": new,
                        "resourceVersion": existing.metadata.resource_version,
                    }});
                    match api
                        .patch(cname, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if runtime::is_not_found(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}], "volumes": [{"name": "tmp", "emptyDir": {}}]}
        }))
        .unwrap()
    }

    fn sts(replicas: i32, parallel: bool) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("set-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
                pod_management_policy: Some(if parallel { "Parallel" } else { "OrderedReady" }.into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: template("a"),
                volume_claim_templates: Some(vec![serde_json::from_value(json!({
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }))
                .unwrap()]),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// state: "new" (Pending), "run" (Running, not ready), "ready",
    /// "term" (ready, terminating), "fail".
    fn pod(ord: i32, rev: &str, state: &str) -> Arc<Pod> {
        let mut p = new_pod(&sts(1, false), &template("a"), ord, rev);
        p.metadata.uid = Some(format!("uid-{ord}"));
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(10).unwrap()));
        if state == "term" {
            p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(20).unwrap()));
        }
        let ready = matches!(state, "ready" | "term");
        p.status = Some(PodStatus {
            phase: Some(
                match state {
                    "new" => "Pending",
                    "fail" => "Failed",
                    _ => "Running",
                }
                .into(),
            ),
            conditions: ready.then(|| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(10).unwrap())),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        Arc::new(p)
    }

    fn names(v: &[(String, String)]) -> Vec<String> {
        v.iter().map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn pods_from_the_set() {
        let set = sts(3, false);
        let p = new_pod(&set, &template("a"), 2, "web-abc");
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l["controller-revision-hash"], "web-abc");
        assert_eq!(l["app"], "web");
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.unwrap();
        assert_eq!(vols[0].name, "data");
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert_eq!(vols[1].name, "tmp");
        let claims = claims_for(&set, 2);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claims[0].metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        for bad in ["web", "web-", "web-01", "web-x", "webx-1", "web-1-2"] {
            assert_eq!(ordinal_of("web", bad), None, "{bad}");
        }
    }

    #[test]
    fn plans() {
        let now = Timestamp::from_second(100).unwrap();
        let (a, b) = (template("a"), template("b"));
        struct Case {
            name: &'static str,
            set: StatefulSet,
            pods: Vec<Arc<Pod>>,
            update: &'static str,
            create: Vec<&'static str>,
            delete: Vec<&'static str>,
        }
        let with = |mut s: StatefulSet, f: &dyn Fn(&mut StatefulSetSpec)| {
            f(s.spec.as_mut().unwrap());
            s
        };
        let rolling = |partition: Option<i32>, mu: Option<i32>| StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition,
                max_unavailable: mu.map(IntOrString::Int),
            }),
        };
        let cases = vec![
            Case {
                name: "ordered: first pod only",
                set: sts(3, false),
                pods: vec![],
                update: "r1",
                create: vec!["web-0"],
                delete: vec![],
            },
            Case {
                name: "ordered: waits for web-0 to be ready",
                set: sts(3, false),
                pods: vec![pod(0, "r1", "run")],
                update: "r1",
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "ordered: next after a ready pod",
                set: sts(3, false),
                pods: vec![pod(0, "r1", "ready")],
                update: "r1",
                create: vec!["web-1"],
                delete: vec![],
            },
            Case {
                name: "parallel: all at once",
                set: sts(3, true),
                pods: vec![pod(0, "r1", "new")],
                update: "r1",
                create: vec!["web-1", "web-2"],
                delete: vec![],
            },
            Case {
                name: "ordered: scale down from the highest ordinal, one at a time",
                set: sts(1, false),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r1", "ready"),
                ],
                update: "r1",
                create: vec![],
                delete: vec!["web-2"],
            },
            Case {
                name: "ordered: scale down waits for a terminating pod",
                set: sts(1, false),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r1", "term"),
                ],
                update: "r1",
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "parallel: scale down all at once",
                set: sts(1, true),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r1", "run"),
                ],
                update: "r1",
                create: vec![],
                delete: vec!["web-2", "web-1"],
            },
            Case {
                name: "failed pod is deleted (and recreated later)",
                set: sts(2, false),
                pods: vec![pod(0, "r1", "fail"), pod(1, "r1", "ready")],
                update: "r1",
                create: vec![],
                delete: vec!["web-0"],
            },
            Case {
                name: "rolling update: highest ordinal first",
                set: sts(3, false),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r1", "ready"),
                ],
                update: "r2",
                create: vec![],
                delete: vec!["web-2"],
            },
            Case {
                name: "rolling update: waits for the updated pod to be ready",
                set: sts(3, false),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r2", "run"),
                ],
                update: "r2",
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "rolling update: next one down",
                set: sts(3, false),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r2", "ready"),
                ],
                update: "r2",
                create: vec![],
                delete: vec!["web-1"],
            },
            Case {
                name: "rolling update: partition 2 keeps web-0 and web-1",
                set: with(sts(3, false), &|s| {
                    s.update_strategy = Some(rolling(Some(2), None))
                }),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r2", "ready"),
                ],
                update: "r2",
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "rolling update: maxUnavailable 2",
                set: with(sts(3, true), &|s| {
                    s.update_strategy = Some(rolling(None, Some(2)))
                }),
                pods: vec![
                    pod(0, "r1", "ready"),
                    pod(1, "r1", "ready"),
                    pod(2, "r1", "ready"),
                ],
                update: "r2",
                create: vec![],
                delete: vec!["web-2", "web-1"],
            },
            Case {
                name: "OnDelete: old pods stay",
                set: with(sts(2, false), &|s| {
                    s.update_strategy = Some(StatefulSetUpdateStrategy {
                        type_: Some("OnDelete".into()),
                        rolling_update: None,
                    })
                }),
                pods: vec![pod(0, "r1", "ready"), pod(1, "r1", "ready")],
                update: "r2",
                create: vec![],
                delete: vec![],
            },
            Case {
                name: "ordinals.start 5",
                set: with(sts(2, true), &|s| {
                    s.ordinals =
                        Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) })
                }),
                pods: vec![pod(0, "r1", "ready")],
                update: "r1",
                create: vec!["web-5", "web-6"],
                delete: vec!["web-0"],
            },
        ];
        for case in cases {
            let revs = Revisions {
                current: "r1",
                update: case.update,
                current_template: &a,
                update_template: &b,
            };
            let plan = plan(&case.set, &case.pods, &revs, now, true);
            let created: Vec<String> = plan
                .create
                .iter()
                .map(|p| name(&p.metadata).to_owned())
                .collect();
            assert_eq!(created, case.create, "{}", case.name);
            assert_eq!(names(&plan.delete), case.delete, "{}", case.name);
            // Nothing happens while expectations are pending.
            let idle = plan_idle(&case.set, &case.pods, &revs, now);
            assert!(
                idle.create.is_empty() && idle.delete.is_empty(),
                "{}",
                case.name
            );
        }
    }

    fn plan_idle(set: &StatefulSet, pods: &[Arc<Pod>], revs: &Revisions, now: Timestamp) -> Plan {
        plan(set, pods, revs, now, false)
    }

    #[test]
    fn partition_creates_below_it_at_the_current_revision() {
        let now = Timestamp::from_second(100).unwrap();
        let (a, b) = (template("a"), template("b"));
        let mut set = sts(3, true);
        set.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        let revs = Revisions {
            current: "r1",
            update: "r2",
            current_template: &a,
            update_template: &b,
        };
        let plan = plan(&set, &[], &revs, now, true);
        let got: Vec<(String, String)> = plan
            .create
            .iter()
            .map(|p| (name(&p.metadata).to_owned(), pod_revision(p).to_owned()))
            .collect();
        assert_eq!(
            got,
            [("web-0", "r1"), ("web-1", "r1"), ("web-2", "r2")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        let image = plan.create[0].spec.as_ref().unwrap().containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("a"));
    }

    #[test]
    fn status_and_rollout_completion() {
        let now = Timestamp::from_second(100).unwrap();
        let a = template("a");
        let set = sts(2, false);
        let revs = Revisions {
            current: "r1",
            update: "r2",
            current_template: &a,
            update_template: &a,
        };
        // Mid-update: one old, one new.
        let pods = vec![pod(0, "r1", "ready"), pod(1, "r2", "run")];
        let p = plan(&set, &pods, &revs, now, true);
        assert_eq!(
            p.counts,
            Counts {
                replicas: 2,
                ready: 1,
                available: 1,
                current: 1,
                updated: 1
            }
        );
        let s = status_for(&set, &p.counts, "r1", "r2", 0);
        assert_eq!(s["currentRevision"], "r1");
        assert_eq!(s["updateRevision"], "r2");
        // All updated and ready: the update revision becomes current.
        let pods = vec![pod(0, "r2", "ready"), pod(1, "r2", "ready")];
        let p = plan(&set, &pods, &revs, now, true);
        let s = status_for(&set, &p.counts, "r1", "r2", 0);
        assert_eq!(s["currentRevision"], "r2");
        assert_eq!(s["currentReplicas"], 2);
        assert_eq!(s["observedGeneration"], 1);
        assert!(status_differs(&Value::Null, &s));
        assert!(!status_differs(&s, &s.clone()));
    }

    #[test]
    fn retention_policy_owner_refs() {
        let p = pod(1, "r1", "ready");
        let cases = [
            // whenDeleted, whenScaled, scaled down -> owner kinds
            ("Retain", "Retain", false, vec![]),
            ("Delete", "Retain", false, vec!["StatefulSet"]),
            ("Delete", "Retain", true, vec!["StatefulSet"]),
            ("Retain", "Delete", false, vec![]),
            ("Retain", "Delete", true, vec!["Pod"]),
            ("Delete", "Delete", false, vec!["StatefulSet"]),
            ("Delete", "Delete", true, vec!["Pod"]),
        ];
        for (deleted, scaled, down, want) in cases {
            let mut set = sts(1, false);
            set.spec
                .as_mut()
                .unwrap()
                .persistent_volume_claim_retention_policy = Some(
                serde_json::from_value(json!({"whenDeleted": deleted, "whenScaled": scaled}))
                    .unwrap(),
            );
            let refs = retention_refs(&[], &set, &p, down).unwrap_or_default();
            let kinds: Vec<&str> = refs.iter().map(|r| r.kind.as_str()).collect();
            assert_eq!(kinds, want, "{deleted} {scaled} {down}");
            // Applying again changes nothing.
            assert!(retention_refs(&refs, &set, &p, down).is_none());
        }
        // Retain/Retain removes refs a previous policy set.
        let set = sts(1, false);
        let stale = vec![plain_ref("apps/v1", "StatefulSet", &set.metadata)];
        assert_eq!(retention_refs(&stale, &set, &p, false), Some(vec![]));
    }

    #[test]
    fn scaling_int_or_percent() {
        assert_eq!(scaled(&IntOrString::Int(2), 10, true), 2);
        assert_eq!(scaled(&IntOrString::String("25%".into()), 10, true), 3);
        assert_eq!(scaled(&IntOrString::String("25%".into()), 10, false), 2);
    }
}
