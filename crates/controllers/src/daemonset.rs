//! DaemonSet (apps/v1), as Kubernetes 1.33's controller behaves: one pod
//! per node that should run it (the template's nodeName, nodeSelector and
//! required node affinity, and the node's NoSchedule/NoExecute taints
//! against the pod's tolerations plus the default DaemonSet tolerations);
//! pods are made with a required node affinity on the node's
//! `metadata.name` (the scheduler binds them), the `controller-revision-hash`
//! and `pod-template-generation` labels; ControllerRevisions named
//! `{ds}-{hash}` (see [`crate::history`]); RollingUpdate with maxUnavailable
//! or maxSurge, or OnDelete; and the status `kubectl rollout status
//! daemonset` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, Expectations, WorkQueue};
use serde_json::{json, Value};

use crate::history;
use crate::podutil;
use crate::statefulset::scaled;
use crate::Ctx;

const COMPONENT: &str = "daemonset-controller";
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Most pods created or deleted in one pass (burstReplicas).
const BURST: usize = 250;

fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Scheduling predicates.

/// The tolerations every DaemonSet pod gets (AddOrUpdateDaemonPodTolerations).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// Adds the default tolerations to `spec` (an equal toleration is kept,
/// one matching in key/operator/value/effect is replaced).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(host_network) {
        let same = |o: &Toleration| {
            o.key == t.key
                && o.operator.as_deref().unwrap_or("Equal")
                    == t.operator.as_deref().unwrap_or("Equal")
                && o.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
                && o.effect.as_deref().unwrap_or("") == t.effect.as_deref().unwrap_or("")
        };
        match tolerations.iter_mut().find(|o| same(o)) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// Toleration.ToleratesTaint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty()) {
        if k != taint.key {
            return false;
        }
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether some taint passing `filter` is tolerated by none of `tolerations`.
fn untolerated(
    taints: &[Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> bool {
    taints
        .iter()
        .filter(|t| filter(t))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = podutil::labels(&node.metadata);
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(name(&node.metadata)))
        })
}

/// A required node selector: any term matches.
pub fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

/// nodeSelector and required node affinity (GetRequiredNodeAffinity).
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = podutil::labels(&node.metadata);
    let selector_ok = spec
        .node_selector
        .as_ref()
        .is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| node_selector_matches(sel, node));
    selector_ok && affinity_ok
}

/// NodeShouldRunDaemonPod: (should run, should continue running).
pub fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if n != name(&node.metadata) {
            return (false, false);
        }
    }
    add_default_tolerations(&mut spec);
    if !fits_node_affinity(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    if untolerated(&taints, &tolerations, |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    }) {
        return (
            false,
            !untolerated(&taints, &tolerations, |t| t.effect == "NoExecute"),
        );
    }
    (true, true)
}

/// The node a daemon pod is for: its nodeName, else its affinity's
/// `metadata.name` matchFields (GetTargetNodeName).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_owned());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_ref()?.iter().find_map(|r| {
            (r.key == "metadata.name" && r.operator == "In")
                .then(|| r.values.as_ref()?.first().cloned())
                .flatten()
        })
    })
}

/// ReplaceDaemonSetPodNodeNameNodeAffinity.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_owned()]),
        }]),
        match_expressions: None,
    };
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    match na
        .required_during_scheduling_ignored_during_execution
        .as_mut()
    {
        Some(sel) => sel.node_selector_terms = vec![term],
        None => {
            na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                node_selector_terms: vec![term],
            })
        }
    }
    a
}

// ---------------------------------------------------------------------------
// Pods.

/// The template generation (the deprecated annotation, else the
/// object's generation).
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .and_then(|g| g.parse().ok())
}

/// A pod for `node` (CreatePodTemplate + the node affinity).
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let template: PodTemplateSpec = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let owner = podutil::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let mut pod =
        podutil::pod_from_template(&template, &ns, &format!("{}-", name(&ds.metadata)), owner);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    let generation = template_generation(ds).or(ds.metadata.generation);
    if let Some(g) = generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    labels.insert(history::POD_REVISION_LABEL.into(), hash.to_owned());
    let spec = pod.spec.get_or_insert_with(Default::default);
    add_default_tolerations(spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    pod
}

/// IsPodUpdated: the hash label (or the template generation) is current.
fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = podutil::labels(&pod.metadata);
    (!hash.is_empty() && labels.get(history::POD_REVISION_LABEL).map(String::as_str) == Some(hash))
        || generation.is_some_and(|g| labels.get(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Oldest first; with equal times, running before pending (as
/// podByCreationTimestampAndPhase).
fn by_age(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        (
            p.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0),
            phase(p) != "Running",
            p.metadata.name.clone(),
        )
    });
}

// ---------------------------------------------------------------------------
// The plan of one pass.

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete (name, uid).
    pub delete: Vec<(String, String)>,
    /// Failed pods found (for events).
    pub failed: Vec<String>,
    pub counts: Counts,
    pub recheck_in: Option<i64>,
}

fn id(p: &Pod) -> (String, String) {
    (
        name(&p.metadata).to_owned(),
        p.metadata.uid.clone().unwrap_or_default(),
    )
}

fn max_surge_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.as_ref())
        .map(|v| scaled(v, desired, true))
        .unwrap_or(0);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| scaled(v, desired, true))
        .unwrap_or(if surge > 0 { 0 } else { 1 });
    if desired > 0 && surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// Decides a pass: `pods` are the set's own pods (claimed), `nodes` all
/// nodes, `hash` the current revision's hash. `acting` false: status only.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
    acting: bool,
) -> Plan {
    let mut plan = Plan::default();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let generation = template_generation(ds);
    let surge_allowed = {
        let desired = nodes.iter().filter(|n| should_run(ds, n).0).count() as i32;
        max_surge_unavailable(ds, desired).0 > 0
    };
    let is_rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        != Some("OnDelete");
    // Pods by node (terminal pods being deleted are left out).
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in pods {
        if podutil::is_terminal(p) && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    for v in by_node.values_mut() {
        by_age(v);
    }
    let node_names: BTreeSet<&str> = nodes.iter().map(|n| name(&n.metadata)).collect();

    // Status (updateDaemonSetStatus), from the state before this pass.
    let mut run: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for node in nodes {
        let (should, cont) = should_run(ds, node);
        run.insert(name(&node.metadata).to_owned(), (should, cont));
        let on = by_node.get(name(&node.metadata)).filter(|v| !v.is_empty());
        if should {
            plan.counts.desired += 1;
            let Some(on) = on else { continue };
            plan.counts.current += 1;
            let p = &on[0];
            if podutil::is_ready(p) {
                plan.counts.ready += 1;
                if podutil::is_available(p, min_ready, now) {
                    plan.counts.available += 1;
                } else if let Some(left) = podutil::available_in(p, min_ready, now) {
                    plan.recheck_in = Some(plan.recheck_in.map_or(left, |r: i64| r.min(left)));
                }
            }
            if is_updated(p, hash, generation) {
                plan.counts.updated += 1;
            }
        } else if on.is_some() {
            plan.counts.misscheduled += 1;
        }
    }
    if !acting || ds.metadata.deletion_timestamp.is_some() {
        return plan;
    }

    // manage: pods that should be there and pods that should not.
    for node in nodes {
        let node_name = name(&node.metadata);
        let (should, cont) = run[node_name];
        let on = by_node.get(node_name);
        match on {
            None if should => plan.create.push(node_name.to_owned()),
            _ if cont => {
                let mut running: Vec<&Arc<Pod>> = Vec::new();
                for p in on.into_iter().flatten() {
                    if p.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    match phase(p) {
                        "Failed" => {
                            plan.failed.push(name(&p.metadata).to_owned());
                            plan.delete.push(id(p));
                        }
                        "Succeeded" => plan.delete.push(id(p)),
                        _ => running.push(p),
                    }
                }
                if !surge_allowed {
                    // More than one: keep the oldest.
                    plan.delete.extend(running.iter().skip(1).map(|p| id(p)));
                    continue;
                }
                if running.len() <= 1 {
                    if running.is_empty() && should {
                        plan.create.push(node_name.to_owned());
                    }
                    continue;
                }
                // Surging: keep the oldest new and the oldest old pod.
                let (mut oldest_new, mut oldest_old): (Option<&Arc<Pod>>, Option<&Arc<Pod>>) =
                    (None, None);
                for p in &running {
                    if is_updated(p, hash, generation) {
                        if oldest_new.is_none() {
                            oldest_new = Some(p);
                            continue;
                        }
                    } else if oldest_old.is_none() {
                        oldest_old = Some(p);
                        continue;
                    }
                    plan.delete.push(id(p));
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                    if !podutil::is_ready(old) || podutil::is_available(new, min_ready, now) {
                        plan.delete.push(id(old));
                    }
                }
            }
            Some(v) if !cont => {
                plan.delete.extend(
                    v.iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .map(|p| id(p)),
                );
            }
            _ => {}
        }
    }
    // Unscheduled pods meant for nodes that no longer exist.
    for (node, v) in &by_node {
        if !node_names.contains(node.as_str()) {
            plan.delete.extend(
                v.iter()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_none_or(str::is_empty)
                    })
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| id(p)),
            );
        }
    }

    // rollingUpdate.
    if is_rolling {
        let desired = plan.counts.desired;
        let (max_surge, max_unavailable) = max_surge_unavailable(ds, desired);
        // Every node that should run a pod, plus nodes with pods.
        let mut nodes_with: BTreeMap<String, Vec<Arc<Pod>>> = by_node.clone();
        for (n, (should, _)) in &run {
            if *should {
                nodes_with.entry(n.clone()).or_default();
            }
        }
        type NewOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);
        let find = |v: &[Arc<Pod>]| -> Option<NewOld> {
            let (mut new, mut old) = (None, None);
            for p in v.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                let slot = if is_updated(p, hash, generation) {
                    &mut new
                } else {
                    &mut old
                };
                if slot.is_some() {
                    return None;
                }
                *slot = Some(p.clone());
            }
            Some((new, old))
        };
        let available = |p: &Pod| podutil::is_available(p, min_ready, now);
        if max_surge == 0 {
            let mut unavailable = 0;
            let mut allowed: Vec<(String, String)> = Vec::new();
            let mut candidates: Vec<(String, String)> = Vec::new();
            for v in nodes_with.values() {
                let Some((new, old)) = find(v) else {
                    unavailable += 1;
                    continue;
                };
                match (new, old) {
                    (None, None) | (Some(_), Some(_)) => unavailable += 1,
                    (Some(new), None) => {
                        if !available(&new) {
                            unavailable += 1;
                        }
                    }
                    (None, Some(old)) => {
                        if !available(&old) {
                            allowed.push(id(&old));
                            unavailable += 1;
                        } else if unavailable < max_unavailable {
                            candidates.push(id(&old));
                        }
                    }
                }
            }
            let remaining =
                (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
            allowed.extend(candidates.into_iter().take(remaining));
            for a in allowed {
                if !plan.delete.contains(&a) {
                    plan.delete.push(a);
                }
            }
        } else {
            let mut surge = 0;
            let mut available_count = 0;
            let mut allowed_new: Vec<String> = Vec::new();
            let mut candidate_new: Vec<String> = Vec::new();
            let mut should_not_run: Vec<(String, String)> = Vec::new();
            for (node, v) in &nodes_with {
                let Some((new, old)) = find(v) else {
                    surge += 1;
                    continue;
                };
                match (&old, &new) {
                    (Some(o), _) if available(o) => available_count += 1,
                    (None, Some(n)) if available(n) => available_count += 1,
                    _ => {}
                }
                let should = run.get(node).is_some_and(|r| r.0);
                match (old, new) {
                    (None, _) => {}
                    (Some(old), None) => {
                        if !available(&old) {
                            if !should {
                                plan.delete.push(id(&old));
                                continue;
                            }
                            allowed_new.push(node.clone());
                        } else {
                            if !should {
                                should_not_run.push(id(&old));
                                continue;
                            }
                            if surge >= max_surge {
                                continue;
                            }
                            candidate_new.push(node.clone());
                        }
                    }
                    (Some(old), Some(new)) => {
                        if !available(&new) {
                            surge += 1;
                            continue;
                        }
                        plan.delete.push(id(&old));
                    }
                }
            }
            let deletable =
                (available_count - desired).clamp(0, should_not_run.len() as i32) as usize;
            plan.delete
                .extend(should_not_run.into_iter().take(deletable));
            let remaining = (max_surge - surge).clamp(0, candidate_new.len() as i32) as usize;
            allowed_new.extend(candidate_new.into_iter().take(remaining));
            for n in allowed_new {
                if !plan.create.contains(&n) {
                    plan.create.push(n);
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    plan.delete.retain(|d| seen.insert(d.clone()));
    plan.create.truncate(BURST);
    plan.delete.truncate(BURST);
    plan
}

pub fn status_for(
    ds: &DaemonSet,
    c: &Counts,
    collision_count: Option<i32>,
    observe: bool,
) -> Value {
    let observed = if observe {
        ds.metadata.generation.unwrap_or(0)
    } else {
        ds.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0)
    };
    let mut s = json!({
        "desiredNumberScheduled": c.desired,
        "currentNumberScheduled": c.current,
        "numberMisscheduled": c.misscheduled,
        "numberReady": c.ready,
        "numberAvailable": c.available,
        "updatedNumberScheduled": c.updated,
        "numberUnavailable": c.desired - c.available,
        "observedGeneration": observed,
    });
    if let Some(cc) = collision_count {
        s["collisionCount"] = json!(cc);
    }
    s
}

fn status_differs(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberMisscheduled",
        "numberReady",
        "numberAvailable",
        "updatedNumberScheduled",
        "numberUnavailable",
        "observedGeneration",
        "collisionCount",
    ]
    .iter()
    .any(|k| int(old, k) != int(new, k))
}

// ---------------------------------------------------------------------------
// The controller.

struct Controller {
    client: kube::Client,
    sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
    recorder: runtime::Recorder,
}

fn ds_selector(ds: &DaemonSet) -> Option<api::selector::LabelSelector> {
    let sel = &ds.spec.as_ref()?.selector;
    if podutil::selector_is_empty(sel) {
        return None;
    }
    api::selector::from_label_selector_json(&serde_json::to_value(sel).ok()?).ok()
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let ds_inf = ctx.informers.get::<DaemonSet>();
    let pods_inf = ctx.informers.get::<Pod>();
    let nodes_inf = ctx.informers.get::<Node>();
    let revs_inf = ctx.informers.get::<ControllerRevision>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        sets: ds_inf.store(),
        pods: pods_inf.store(),
        nodes: nodes_inf.store(),
        revisions: revs_inf.store(),
        expectations: Expectations::new(),
        recorder: ctx.recorder(COMPONENT),
    });
    {
        let (q, c2) = (queue.clone(), c.clone());
        ds_inf.on_change(move |ch: &Change<DaemonSet>| {
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
                "DaemonSet",
                ch,
                &c2.expectations,
                |p| c2.matching_sets(p),
                |k| q.add(k),
            );
        });
    }
    {
        let (q, c2) = (queue.clone(), c.clone());
        nodes_inf.on_change(move |ch: &Change<Node>| {
            let relevant = match ch {
                Change::Added(_) | Change::Deleted(_) => true,
                Change::Updated { old, new } => {
                    old.metadata.labels != new.metadata.labels
                        || old.spec.as_ref().and_then(|s| s.taints.clone())
                            != new.spec.as_ref().and_then(|s| s.taints.clone())
                }
            };
            if relevant {
                for ds in c2.sets.state() {
                    q.add(key_of(&ds.metadata));
                }
            }
        });
    }
    {
        let q = queue.clone();
        revs_inf.on_change(move |ch: &Change<ControllerRevision>| {
            let r = ch.object();
            if let Some(o) = podutil::controller_of(&r.metadata).filter(|o| o.kind == "DaemonSet") {
                q.add(format!(
                    "{}/{}",
                    r.metadata.namespace.as_deref().unwrap_or_default(),
                    o.name
                ));
            }
        });
    }
    let infs = (
        ds_inf.clone(),
        pods_inf.clone(),
        nodes_inf.clone(),
        revs_inf.clone(),
    );
    set.spawn(async move {
        infs.0.wait_synced().await;
        infs.1.wait_synced().await;
        infs.2.wait_synced().await;
        infs.3.wait_synced().await;
        run_workers(queue, 2, COMPONENT, move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl Controller {
    fn matching_sets(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = podutil::labels(&pod.metadata);
        self.sets
            .state()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .filter(|s| ds_selector(s).is_some_and(|sel| sel.matches(&labels)))
            .map(|s| key_of(&s.metadata))
            .collect()
    }

    /// Adopts orphans and releases pods no longer selected.
    async fn claim_pods(
        &self,
        ds: &DaemonSet,
        pod_api: &Api<Pod>,
    ) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let selector = ds_selector(ds);
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for p in self.pods.state() {
            if p.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let matches = selector
                .as_ref()
                .is_some_and(|s| s.matches(&podutil::labels(&p.metadata)));
            let patch = match podutil::controller_of(&p.metadata) {
                Some(r) if r.uid == uid => {
                    if matches || deleting {
                        owned.push(p);
                        continue;
                    }
                    json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": p.metadata.uid}})
                }
                None if matches && !deleting && p.metadata.deletion_timestamp.is_none() => {
                    owned.push(p.clone());
                    json!({"metadata": {
                        "ownerReferences": [podutil::controller_ref("apps/v1", "DaemonSet", &ds.metadata)],
                        "uid": p.metadata.uid,
                    }})
                }
                _ => continue,
            };
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
        Ok(owned)
    }

    /// constructHistory: the current revision (made or renumbered) and the
    /// old ones; returns (hash, old revisions).
    async fn history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(String, Vec<Arc<ControllerRevision>>), kube::Error> {
        let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let revs = history::owned(&self.revisions.state(), ns, uid);
        let ds_json = serde_json::to_value(ds).unwrap_or_default();
        let patch = history::template_patch(&ds_json);
        let (mut current, old): (Vec<_>, Vec<_>) = revs
            .into_iter()
            .partition(|r| history::data_equals(r, &patch));
        let next = history::next_revision(&old);
        let label = |r: &ControllerRevision| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(history::POD_REVISION_LABEL).cloned())
                .unwrap_or_else(|| name(&r.metadata).to_owned())
        };
        if let Some(cur) = current.pop() {
            // Duplicates of the current revision go.
            for dup in &current {
                let _ = api
                    .delete(name(&dup.metadata), &DeleteParams::default())
                    .await;
            }
            if cur.revision < next {
                api.patch(
                    name(&cur.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({ "revision": next })),
                )
                .await?;
            }
            return Ok((label(&cur), old));
        }
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let template = ds_json
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_default();
        let hash = history::hash_template(&template, collision);
        let mut labels = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(history::POD_REVISION_LABEL.into(), hash.clone());
        let owner = podutil::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
        let mut rev = history::new_revision(&ds.metadata, owner, Some(labels), patch.clone(), next);
        rev.metadata.name = Some(history::revision_name(name(&ds.metadata), &hash));
        match api.create(&PostParams::default(), &rev).await {
            Ok(_) => Ok((hash, old)),
            Err(e) if runtime::is_conflict(&e) => {
                let existing = api.get(name(&rev.metadata)).await?;
                if history::data_equals(&existing, &patch) {
                    return Ok((label(&existing), old));
                }
                // A hash collision: count it and try again.
                let ds_api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
                let cc = collision.unwrap_or(0) + 1;
                ds_api
                    .patch_status(
                        name(&ds.metadata),
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"collisionCount": cc}})),
                    )
                    .await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, ds_name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(ds) = self.sets.get(&ObjectRef::new(ds_name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Next::Done);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pods = self.claim_pods(&ds, &pod_api).await?;
        let (hash, old) = self.history(&ds).await?;
        let nodes = self.nodes.state();
        let acting = self.expectations.satisfied(key);
        let plan = plan(&ds, &nodes, &pods, &hash, Timestamp::now(), acting);
        let mut error: Option<kube::Error> = None;
        for f in &plan.failed {
            self.recorder.warning(
                ds.as_ref(),
                "FailedDaemonPod",
                format!("Found failed daemon pod {ns}/{f}, will try to kill it"),
            );
        }
        if !plan.create.is_empty() || !plan.delete.is_empty() {
            self.expectations
                .expect(key, plan.create.len() as i64, plan.delete.len() as i64);
        }
        // Creations in slow-start batches.
        let mut batch = 1usize;
        let mut pos = 0usize;
        while pos < plan.create.len() {
            let nodes = &plan.create[pos..(pos + batch).min(plan.create.len())];
            let results = futures::future::join_all(nodes.iter().map(|n| {
                let pod = new_pod(&ds, n, &hash);
                let api = pod_api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            pos += nodes.len();
            let mut failed = false;
            for r in results {
                match r {
                    Ok(p) => self.recorder.normal(
                        ds.as_ref(),
                        "SuccessfulCreate",
                        format!("Created pod: {}", name(&p.metadata)),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        self.recorder.warning(
                            ds.as_ref(),
                            "FailedCreate",
                            format!("Error creating: {}", crate::replicaset::error_text(&e)),
                        );
                        failed = true;
                        error.get_or_insert(e);
                    }
                }
            }
            if failed {
                for _ in pos..plan.create.len() {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch *= 2;
        }
        if let Some(e) = podutil::delete_pods(
            &pod_api,
            &plan.delete,
            key,
            &self.expectations,
            &self.recorder,
            ds.as_ref(),
        )
        .await
        {
            error.get_or_insert(e);
        }

        // cleanupHistory: old revisions beyond the limit whose hash no pod
        // carries.
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        if old.len() > limit {
            let live: BTreeSet<String> = pods
                .iter()
                .filter_map(|p| {
                    podutil::labels(&p.metadata)
                        .get(history::POD_REVISION_LABEL)
                        .cloned()
                })
                .collect();
            let mut to_kill = old.len() - limit;
            let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
            for r in &old {
                if to_kill == 0 {
                    break;
                }
                let h = podutil::labels(&r.metadata)
                    .get(history::POD_REVISION_LABEL)
                    .cloned()
                    .unwrap_or_default();
                if live.contains(&h) {
                    continue;
                }
                match rev_api
                    .delete(name(&r.metadata), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if runtime::is_not_found(&e) => {}
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
                to_kill -= 1;
            }
        }

        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let status = status_for(&ds, &plan.counts, collision, acting && error.is_none());
        let old_status = serde_json::to_value(&ds.status).unwrap_or(Value::Null);
        if status_differs(&old_status, &status) {
            crate::write_status::<DaemonSet>(&self.client, ns, ds_name, &status).await?;
        }
        if let Some(e) = error {
            return Err(e);
        }
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        Ok(match plan.recheck_in {
            Some(s) => Next::After(std::time::Duration::from_secs(s.max(1) as u64)),
            None if min_ready > 0 && plan.counts.ready != plan.counts.available => {
                Next::After(std::time::Duration::from_secs(min_ready as u64))
            }
            None => Next::Done,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ds(extra: Value) -> DaemonSet {
        let mut v = json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "x"}]}
                },
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
            }
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        })
    }

    /// state: "pending", "ready", "running" (not ready), "failed", "deleting".
    fn pod(name_: &str, node: &str, hash: &str, state: &str, created: i64) -> Arc<Pod> {
        let d = ds(json!({}));
        let mut p = new_pod(&d, node, hash);
        p.metadata.name = Some(name_.into());
        p.metadata.uid = Some(format!("{name_}-uid"));
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        if state == "deleting" {
            p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(50).unwrap()));
        }
        p.status = Some(PodStatus {
            phase: Some(
                match state {
                    "pending" => "Pending",
                    "failed" => "Failed",
                    _ => "Running",
                }
                .into(),
            ),
            conditions: matches!(state, "ready" | "deleting").then(|| {
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

    #[test]
    fn predicates() {
        let plain = ds(json!({}));
        let n = node("n1", &[("disk", "ssd")], &[]);
        assert_eq!(should_run(&plain, &n), (true, true));
        // nodeSelector.
        let sel = ds(json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "hdd"}}}}}));
        assert_eq!(should_run(&sel, &n), (false, false));
        // Required node affinity.
        let aff = |op: &str, vals: Value| {
            ds(
                json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "disk", "operator": op, "values": vals}]}
                ]}}}}}}}),
            )
        };
        assert!(should_run(&aff("In", json!(["ssd"])), &n).0);
        assert!(!should_run(&aff("NotIn", json!(["ssd"])), &n).0);
        assert!(should_run(&aff("Exists", json!([])), &n).0);
        assert!(!should_run(&aff("DoesNotExist", json!([])), &n).0);
        // Taints: NoSchedule keeps running pods, NoExecute does not.
        let ns = node("n2", &[], &[("dedicated", "NoSchedule")]);
        assert_eq!(should_run(&plain, &ns), (false, true));
        let ne = node("n3", &[], &[("dedicated", "NoExecute")]);
        assert_eq!(should_run(&plain, &ne), (false, false));
        let tol = ds(
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}}}),
        );
        assert_eq!(should_run(&tol, &ne), (true, true));
        // The default tolerations cover the node condition taints.
        for (key, effect) in [
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ] {
            assert!(
                should_run(&plain, &node("n", &[], &[(key, effect)])).0,
                "{key}"
            );
        }
        assert!(
            !should_run(
                &plain,
                &node(
                    "n",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")]
                )
            )
            .0
        );
        let hn = ds(json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}));
        assert!(
            should_run(
                &hn,
                &node(
                    "n",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")]
                )
            )
            .0
        );
        // A template nodeName picks one node.
        let pinned = ds(json!({"spec": {"template": {"spec": {"nodeName": "n9"}}}}));
        assert!(!should_run(&pinned, &n).0);
    }

    #[test]
    fn pods_for_nodes() {
        let d = ds(
            json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}}}}),
        );
        let p = new_pod(&d, "n1", "h1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l["controller-revision-hash"], "h1");
        assert_eq!(l["pod-template-generation"], "2");
        assert_eq!(target_node(&p).as_deref(), Some("n1"));
        let spec = p.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);
        // Adding the defaults twice changes nothing.
        let mut again = spec.clone();
        add_default_tolerations(&mut again);
        assert_eq!(again.tolerations, spec.tolerations);
    }

    #[test]
    fn plans() {
        let now = Timestamp::from_second(100).unwrap();
        let three = vec![
            node("n1", &[], &[]),
            node("n2", &[], &[]),
            node("n3", &[], &[]),
        ];
        struct Case {
            name: &'static str,
            ds: DaemonSet,
            nodes: Vec<Arc<Node>>,
            pods: Vec<Arc<Pod>>,
            create: Vec<&'static str>,
            delete: Vec<&'static str>,
            counts: Counts,
        }
        let c = |desired, current, mis, ready, available, updated| Counts {
            desired,
            current,
            misscheduled: mis,
            ready,
            available,
            updated,
        };
        let surge = ds(
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}),
        );
        let cases = vec![
            Case {
                name: "one pod per node",
                ds: ds(json!({})),
                nodes: three.clone(),
                pods: vec![],
                create: vec!["n1", "n2", "n3"],
                delete: vec![],
                counts: c(3, 0, 0, 0, 0, 0),
            },
            Case {
                name: "tainted node gets none; a pod on it that cannot stay goes",
                ds: ds(json!({})),
                nodes: vec![node("n1", &[], &[]), node("t", &[], &[("x", "NoExecute")])],
                pods: vec![
                    pod("a", "n1", "h2", "ready", 1),
                    pod("b", "t", "h2", "ready", 1),
                ],
                create: vec![],
                delete: vec!["b"],
                counts: c(1, 1, 1, 1, 1, 1),
            },
            Case {
                name: "extra pods on a node: keep the oldest; failed pods deleted",
                ds: ds(json!({})),
                nodes: three.clone(),
                pods: vec![
                    pod("new", "n1", "h2", "ready", 5),
                    pod("old", "n1", "h2", "ready", 1),
                    pod("f", "n2", "h2", "failed", 1),
                    pod("c", "n3", "h2", "ready", 1),
                ],
                create: vec![],
                delete: vec!["new", "f"],
                counts: c(3, 3, 0, 2, 2, 3),
            },
            Case {
                name: "pod for a vanished node goes",
                ds: ds(json!({})),
                nodes: vec![node("n1", &[], &[])],
                pods: vec![
                    pod("a", "n1", "h2", "ready", 1),
                    pod("gone", "n9", "h2", "pending", 1),
                ],
                create: vec![],
                delete: vec!["gone"],
                counts: c(1, 1, 0, 1, 1, 1),
            },
            Case {
                name: "rolling update, maxUnavailable 1: one old pod deleted",
                ds: ds(json!({})),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h1", "ready", 1),
                    pod("b", "n2", "h1", "ready", 1),
                    pod("c", "n3", "h1", "ready", 1),
                ],
                create: vec![],
                delete: vec!["a"],
                counts: c(3, 3, 0, 3, 3, 0),
            },
            Case {
                name: "rolling update waits while a new pod is unavailable",
                ds: ds(json!({})),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h2", "running", 1),
                    pod("b", "n2", "h1", "ready", 1),
                    pod("c", "n3", "h1", "ready", 1),
                ],
                create: vec![],
                delete: vec![],
                counts: c(3, 3, 0, 2, 2, 1),
            },
            Case {
                name: "rolling update replaces unavailable old pods at once",
                ds: ds(json!({})),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h1", "running", 1),
                    pod("b", "n2", "h1", "running", 1),
                    pod("c", "n3", "h1", "ready", 1),
                ],
                create: vec![],
                delete: vec!["a", "b"],
                counts: c(3, 3, 0, 1, 1, 0),
            },
            Case {
                name: "surge: a new pod beside the old one",
                ds: surge.clone(),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h1", "ready", 1),
                    pod("b", "n2", "h1", "ready", 1),
                    pod("c", "n3", "h1", "ready", 1),
                ],
                create: vec!["n1"],
                delete: vec![],
                counts: c(3, 3, 0, 3, 3, 0),
            },
            Case {
                name: "surge: the old pod goes once the new one is available",
                ds: surge.clone(),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h1", "ready", 1),
                    pod("a2", "n1", "h2", "ready", 5),
                    pod("b", "n2", "h1", "ready", 1),
                    pod("c", "n3", "h1", "ready", 1),
                ],
                create: vec!["n2"],
                delete: vec!["a"],
                counts: c(3, 3, 0, 3, 3, 0),
            },
            Case {
                name: "OnDelete: old pods stay",
                ds: ds(
                    json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}),
                ),
                nodes: three.clone(),
                pods: vec![
                    pod("a", "n1", "h1", "ready", 1),
                    pod("b", "n2", "h1", "ready", 1),
                ],
                create: vec!["n3"],
                delete: vec![],
                counts: c(3, 2, 0, 2, 2, 0),
            },
        ];
        for case in cases {
            let p = plan(&case.ds, &case.nodes, &case.pods, "h2", now, true);
            let deleted: Vec<String> = p.delete.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(p.create, case.create, "{}", case.name);
            assert_eq!(deleted, case.delete, "{}", case.name);
            assert_eq!(p.counts, case.counts, "{}", case.name);
            let idle = plan(&case.ds, &case.nodes, &case.pods, "h2", now, false);
            assert!(
                idle.create.is_empty() && idle.delete.is_empty(),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn status() {
        let d = ds(json!({}));
        let s = status_for(&d, &c3(), None, true);
        assert_eq!(s["observedGeneration"], 2);
        assert_eq!(s["numberUnavailable"], 1);
        assert!(status_differs(&Value::Null, &s));
        assert!(!status_differs(&s, &s.clone()));
    }

    fn c3() -> Counts {
        Counts {
            desired: 3,
            current: 3,
            misscheduled: 0,
            ready: 2,
            available: 2,
            updated: 3,
        }
    }
}
