//! Job (batch/v1), as Kubernetes 1.33's job controller behaves:
//! completions and parallelism in NonIndexed and Indexed mode (completion
//! index annotation and label, hostname `{job}-{index}`,
//! JOB_COMPLETION_INDEX from the annotation), pods labelled with the
//! controller uid and job name and owned by the Job; tracking with the
//! `batch.kubernetes.io/job-tracking` finalizer (finished pods go into
//! status.uncountedTerminatedPods, then into succeeded/failed once their
//! finalizer is gone); backoffLimit with exponential back-off between
//! re-creations (10 s doubling, at most 6 min); activeDeadlineSeconds;
//! podFailurePolicy (FailJob, Ignore, Count on exit codes and pod
//! conditions); suspend; the interim FailureTarget and SuccessCriteriaMet
//! conditions followed by Failed or Complete once no pod is terminating;
//! ttlSecondsAfterFinished (the finished Job is deleted in the background).
//!
//! Not done: backoffLimitPerIndex/maxFailedIndexes (FailIndex),
//! successPolicy, adoption of orphan pods by a manual selector, managedBy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, Expectations, WorkQueue};
use serde_json::{json, Value};

use crate::podutil;
use crate::replicaset::error_text;
use crate::Ctx;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
const COMPONENT: &str = "job-controller";
pub const DEFAULT_BACKOFF: i64 = 10;
pub const MAX_BACKOFF: i64 = 360;
const MAX_PER_SYNC: usize = 500;
const MAX_UNCOUNTED: usize = 500;

// ---------------------------------------------------------------------------
// Facts about jobs and pods

fn spec(job: &Job) -> JobSpec {
    job.spec.clone().unwrap_or_default()
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
        .filter(|i: &i32| *i >= 0)
}

fn valid_index(job: &Job, pod: &Pod) -> Option<i32> {
    let completions = spec(job).completions.unwrap_or(0);
    completion_index(pod).filter(|i| *i < completions)
}

fn only_replace_failed(job: &Job) -> bool {
    let s = job.spec.as_ref();
    s.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || s.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Failed, or (unless only failed pods are replaced) being deleted before
/// succeeding.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// The Complete or Failed condition, when the job is finished.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    let st = job.status.as_ref()?;
    condition(st, "Complete").or_else(|| condition(st, "Failed"))
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition to `status`; true when something changed. A False
/// condition that does not exist is not added.
pub fn ensure_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref() != Some(reason)
            || c.message.as_deref() != Some(message)
        {
            *c = JobCondition {
                last_transition_time: if c.status != status {
                    Some(Time(now))
                } else {
                    c.last_transition_time.clone()
                },
                ..new_condition(type_, reason, message, now)
            };
            c.status = status.into();
            return true;
        }
        return false;
    }
    if status == "False" {
        return false;
    }
    conds.push(new_condition(type_, reason, message, now));
    true
}

// ---------------------------------------------------------------------------
// Pod failure policy

/// (FailJob message, whether the failure counts against backoffLimit, the
/// matching rule's action).
pub fn match_pod_failure_policy(
    policy: &PodFailurePolicy,
    pod: &Pod,
) -> (Option<String>, bool, Option<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    for (i, rule) in policy.rules.iter().enumerate() {
        let what = if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten());
            statuses
                .filter_map(|cs| {
                    let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
                    if code == 0 || req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                        return None;
                    }
                    let listed = req.values.contains(&code);
                    let hit = if req.operator == "In" { listed } else { !listed };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                            cs.name, rule.action
                        )
                    })
                })
                .next()
        } else if let Some(patterns) = &rule.on_pod_conditions {
            patterns.iter().find_map(|p| {
                status.conditions.iter().flatten().find_map(|c| {
                    (c.type_ == p.type_ && c.status == p.status).then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                            c.type_, rule.action
                        )
                    })
                })
            })
        } else {
            None
        };
        let Some(message) = what else { continue };
        match rule.action.as_str() {
            "Ignore" => return (None, false, Some("Ignore".into())),
            "Count" => return (None, true, Some("Count".into())),
            "FailJob" => return (Some(message), true, Some("FailJob".into())),
            "FailIndex" => return (None, true, Some("FailIndex".into())),
            _ => {}
        }
    }
    (None, true, None)
}

fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter()
        .filter(|p| is_pod_failed(p, job))
        .find_map(|p| match_pod_failure_policy(policy, p).0)
}

// ---------------------------------------------------------------------------
// Back-off

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backoff {
    pub failures_after_last_success: i32,
    pub last_failure: Option<Timestamp>,
}

/// When a pod finished (its containers' latest finishedAt), if known.
fn finished_time(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .filter_map(|c| {
            c.state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// The back-off after newly finished pods (Kubernetes' newBackoffRecord).
pub fn next_backoff(
    prev: Backoff,
    succeeded: &[Arc<Pod>],
    failed: &[Arc<Pod>],
    now: Timestamp,
) -> Backoff {
    let at = |p: &Arc<Pod>| finished_time(p).unwrap_or(now);
    let mut failed_times: Vec<Timestamp> = failed.iter().map(at).collect();
    failed_times.sort();
    if succeeded.is_empty() {
        if failed_times.is_empty() {
            return prev;
        }
        return Backoff {
            failures_after_last_success: prev.failures_after_last_success
                + failed_times.len() as i32,
            last_failure: failed_times.last().copied(),
        };
    }
    let last_success = succeeded.iter().map(at).max().unwrap();
    let after: Vec<&Timestamp> = failed_times.iter().filter(|t| **t > last_success).collect();
    Backoff {
        failures_after_last_success: after.len() as i32,
        last_failure: after.last().map(|t| **t),
    }
}

impl Backoff {
    /// How long before pods may be created again.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut secs = DEFAULT_BACKOFF;
        for _ in 1..self.failures_after_last_success {
            secs *= 2;
            if secs >= MAX_BACKOFF {
                secs = MAX_BACKOFF;
                break;
            }
        }
        let elapsed = self
            .last_failure
            .map_or(0, |t| now.as_millisecond() - t.as_millisecond());
        let left = secs * 1000 - elapsed;
        if left <= 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(left as u64)
        }
    }
}

// ---------------------------------------------------------------------------
// Completed indexes

/// "1,3-5,7" → {1,3,4,5,7}, ignoring what is at or past `completions`.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            for i in a.max(0)..=b.min(completions - 1) {
                out.insert(i);
            }
        }
    }
    out
}

pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

// ---------------------------------------------------------------------------
// manageJob: which pods to create and delete

#[derive(Debug, Default, PartialEq)]
pub struct Manage {
    /// Pods to delete (name, uid).
    pub delete: Vec<(String, String)>,
    /// Pods to create: their completion index (None: NonIndexed).
    pub create: Vec<Option<i32>>,
    /// Creations held back by the failure back-off for this long.
    pub wait: Option<Duration>,
}

fn id(p: &Pod) -> (String, String) {
    (p.metadata.name.clone().unwrap_or_default(), uid(p))
}

/// Active pods to delete: for Indexed jobs first those with an invalid or
/// repeated index, then the least valuable, until `at_least`.
fn pods_for_removal(job: &Job, active: &[Arc<Pod>], at_least: usize) -> Vec<(String, String)> {
    let mut rm: Vec<&Arc<Pod>> = Vec::new();
    let mut left: Vec<&Arc<Pod>> = Vec::new();
    if is_indexed(job) {
        let mut by_index: HashMap<i32, Vec<&Arc<Pod>>> = HashMap::new();
        for p in active {
            match valid_index(job, p) {
                None => rm.push(p),
                Some(i) => by_index.entry(i).or_default().push(p),
            }
        }
        let mut groups: Vec<_> = by_index.into_iter().collect();
        groups.sort_by_key(|(i, _)| *i);
        for (_, mut group) in groups {
            // Keep the most valuable (the last by deletion rank).
            group.sort_by_key(|p| podutil::deletion_rank(p));
            let keep = group.pop().unwrap();
            rm.extend(group);
            left.push(keep);
        }
    } else {
        left = active.iter().collect();
    }
    if rm.len() < at_least {
        left.sort_by_key(|p| podutil::deletion_rank(p));
        let n = at_least - rm.len();
        rm.extend(left.into_iter().take(n));
    }
    rm.into_iter().map(|p| id(p)).collect()
}

/// Decides manageJob: `succeeded` is the count (or completed indexes'
/// count) so far, `terminating` the pods being deleted.
pub fn manage(
    job: &Job,
    active: &[Arc<Pod>],
    succeeded: i32,
    succeeded_indexes: &BTreeSet<i32>,
    terminating: i32,
    backoff_left: Duration,
) -> Manage {
    let s = spec(job);
    let mut m = Manage::default();
    let n_active = active.len() as i32;
    if suspended(job) {
        m.delete = pods_for_removal(job, active, active.len());
        return m;
    }
    let parallelism = s.parallelism.unwrap_or(1).max(0);
    let want = match s.completions {
        None if succeeded > 0 => n_active,
        None => parallelism,
        Some(c) => (c - succeeded).min(parallelism).max(0),
    };
    let rm_at_least = (n_active - want).max(0) as usize;
    let mut delete = pods_for_removal(job, active, rm_at_least);
    delete.truncate(MAX_PER_SYNC);
    if !delete.is_empty() {
        m.delete = delete;
        return m;
    }
    let terminating = if only_replace_failed(job) {
        terminating
    } else {
        0
    };
    let diff = want - terminating - n_active;
    if diff <= 0 {
        return m;
    }
    if !backoff_left.is_zero() {
        m.wait = Some(backoff_left);
        return m;
    }
    let diff = (diff as usize).min(MAX_PER_SYNC);
    if is_indexed(job) {
        let busy: HashSet<i32> = active.iter().filter_map(|p| valid_index(job, p)).collect();
        let completions = s.completions.unwrap_or(0);
        m.create = (0..completions)
            .filter(|i| !succeeded_indexes.contains(i) && !busy.contains(i))
            .take(diff)
            .map(Some)
            .collect();
    } else {
        m.create = vec![None; diff];
    }
    m
}

/// A pod for the job (with the completion index, for Indexed jobs).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let s = spec(job);
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let mut template = s.template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(CONTROLLER_UID_LABEL.into(), uid.clone());
    labels.insert(JOB_NAME_LABEL.into(), name.clone());
    labels.insert(LEGACY_CONTROLLER_UID_LABEL.into(), uid);
    labels.insert(LEGACY_JOB_NAME_LABEL.into(), name.clone());
    let finalizers = meta.finalizers.get_or_insert_with(Default::default);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut generate_name = format!("{name}-");
    if let Some(ix) = index {
        labels.insert(COMPLETION_INDEX.into(), ix.to_string());
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), ix.to_string());
        let suffix = format!("-{ix}-");
        let keep = name.len().min(58usize.saturating_sub(suffix.len()));
        generate_name = format!("{}{suffix}", &name[..keep]);
        if let Some(ps) = template.spec.as_mut() {
            ps.hostname = Some(format!("{name}-{ix}"));
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..Default::default()
                }),
            };
            for c in ps
                .containers
                .iter_mut()
                .chain(ps.init_containers.iter_mut().flatten())
            {
                let list = c.env.get_or_insert_with(Default::default);
                if !list.iter().any(|e| e.name == env.name) {
                    list.push(env.clone());
                }
            }
        }
    }
    let owner = podutil::controller_ref("batch/v1", "Job", &job.metadata);
    podutil::pod_from_template(&template, &ns, &generate_name, owner)
}

// ---------------------------------------------------------------------------
// Status helpers

/// Moves uncounted uids whose pods lost their finalizer into the counters.
pub fn clean_uncounted(st: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let u = st
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    for (list, counter) in [
        (&mut u.succeeded, &mut st.succeeded),
        (&mut u.failed, &mut st.failed),
    ] {
        let Some(l) = list.as_mut() else { continue };
        let before = l.len();
        l.retain(|uid| with_finalizer.contains(uid));
        let moved = (before - l.len()) as i32;
        if moved > 0 {
            *counter = Some(counter.unwrap_or(0) + moved);
            changed = true;
        }
        if l.is_empty() {
            *list = None;
        }
    }
    changed
}

fn uncounted(st: &JobStatus) -> (HashSet<String>, HashSet<String>) {
    let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
    (
        u.succeeded.unwrap_or_default().into_iter().collect(),
        u.failed.unwrap_or_default().into_iter().collect(),
    )
}

/// Sets the final condition once nothing is uncounted or terminating.
pub fn enact_finished(
    st: &mut JobStatus,
    cond: &JobCondition,
    terminating: i32,
    now: Timestamp,
) -> bool {
    let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
    if u.succeeded.map_or(0, |l| l.len()) + u.failed.map_or(0, |l| l.len()) > 0 || terminating > 0 {
        return false;
    }
    let conds = st.conditions.get_or_insert_with(Default::default);
    ensure_condition(
        conds,
        &cond.type_,
        "True",
        cond.reason.as_deref().unwrap_or_default(),
        cond.message.as_deref().unwrap_or_default(),
        now,
    );
    if cond.type_ == "Complete" {
        st.completion_time = Some(Time(now));
    }
    true
}

/// A JSON merge patch turning `old` into `new`.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, ov) in o {
                match n.get(k) {
                    None => {
                        out.insert(k.clone(), Value::Null);
                    }
                    Some(nv) if nv != ov => {
                        out.insert(k.clone(), merge_diff(ov, nv));
                    }
                    _ => {}
                }
            }
            for (k, nv) in n {
                if !o.contains_key(k) {
                    out.insert(k.clone(), nv.clone());
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

// ---------------------------------------------------------------------------
// The controller

struct Controller {
    client: kube::Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    expectations: Expectations,
    /// Per job key: pod uids whose finalizer removal is not yet observed.
    rm_finalizers: Mutex<HashMap<String, HashSet<String>>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    recorder: runtime::Recorder,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let job_inf = ctx.informers.get::<Job>();
    let pod_inf = ctx.informers.get::<Pod>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        jobs: job_inf.store(),
        pods: pod_inf.store(),
        expectations: Expectations::new(),
        rm_finalizers: Default::default(),
        backoff: Default::default(),
        recorder: ctx.recorder(COMPONENT),
    });
    {
        let q = queue.clone();
        let c2 = c.clone();
        job_inf.on_change(move |ch: &Change<Job>| {
            let key = key_of(ch.object().meta());
            if let Change::Deleted(job) = ch {
                c2.expectations.forget(&key);
                c2.backoff.lock().unwrap().remove(&key);
                c2.rm_finalizers.lock().unwrap().remove(&key);
                // Its pods lose their tracking finalizer.
                let juid = job.metadata.uid.clone().unwrap_or_default();
                for p in c2.pods.state() {
                    if has_finalizer(&p)
                        && podutil::controller_of(&p.metadata).is_some_and(|r| r.uid == juid)
                    {
                        q.add(format!("pod:{}", key_of(&p.metadata)));
                    }
                }
                return;
            }
            q.add(key);
        });
    }
    {
        let q = queue.clone();
        let c2 = c.clone();
        pod_inf.on_change(move |ch: &Change<Pod>| {
            let pod = ch.object();
            let job_key = |p: &Pod| {
                podutil::controller_of(&p.metadata)
                    .filter(|r| r.kind == "Job" && r.api_version == "batch/v1")
                    .map(|r| {
                        format!(
                            "{}/{}",
                            p.metadata.namespace.as_deref().unwrap_or_default(),
                            r.name
                        )
                    })
            };
            let Some(key) = job_key(pod) else {
                if let Some(old) = ch.old().and_then(|o| job_key(o)) {
                    q.add(old);
                }
                return;
            };
            let pod_uid = uid(pod);
            match ch {
                Change::Added(_) => c2.expectations.creation_observed(&key),
                Change::Updated { old, new } => {
                    if new.metadata.deletion_timestamp.is_some()
                        && old.metadata.deletion_timestamp.is_none()
                    {
                        c2.expectations.deletion_observed(&key);
                    }
                    if !has_finalizer(new) {
                        c2.finalizer_observed(&key, &pod_uid);
                    }
                }
                Change::Deleted(_) => {
                    if pod.metadata.deletion_timestamp.is_none() {
                        c2.expectations.deletion_observed(&key);
                    }
                    c2.finalizer_observed(&key, &pod_uid);
                }
            }
            if has_finalizer(pod) && !matches!(ch, Change::Deleted(_)) {
                let (ns, name) = runtime::split_key(&key);
                let job = c2
                    .jobs
                    .get(&ObjectRef::new(name).within(ns.unwrap_or_default()));
                let orphan = match &job {
                    None => true,
                    Some(j) => {
                        j.metadata.uid.as_deref()
                            != podutil::controller_of(&pod.metadata).map(|r| r.uid.as_str())
                            || finished(j).is_some()
                    }
                };
                if orphan {
                    q.add(format!("pod:{}", key_of(&pod.metadata)));
                }
            }
            q.add(key);
        });
    }
    let (ji, pi) = (job_inf.clone(), pod_inf.clone());
    set.spawn(async move {
        ji.wait_synced().await;
        pi.wait_synced().await;
        run_workers(queue, 4, COMPONENT, move |key: String| {
            let c = c.clone();
            async move {
                match key.strip_prefix("pod:") {
                    Some(pod_key) => c.sync_orphan_pod(pod_key).await,
                    None => c.reconcile(&key).await,
                }
            }
        })
        .await;
    });
}

fn remove_finalizer_patch() -> Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})
}

fn error_is_gone(e: &kube::Error) -> bool {
    runtime::is_not_found(e)
}

impl Controller {
    fn finalizer_observed(&self, key: &str, pod_uid: &str) {
        if let Some(set) = self.rm_finalizers.lock().unwrap().get_mut(key) {
            set.remove(pod_uid);
        }
    }

    /// Removes the tracking finalizer of a pod whose job is gone or done.
    async fn sync_orphan_pod(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(pod) = self.pods.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Next::Done);
        };
        if !has_finalizer(&pod) {
            return Ok(Next::Done);
        }
        if let Some(r) = podutil::controller_of(&pod.metadata) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(Next::Done);
            }
            if let Some(job) = self.jobs.get(&ObjectRef::new(&r.name).within(ns)) {
                if job.metadata.uid.as_deref() == Some(r.uid.as_str()) && finished(&job).is_none() {
                    return Ok(Next::Done);
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(&remove_finalizer_patch()),
            )
            .await
        {
            Ok(_) => Ok(Next::Done),
            Err(e) if error_is_gone(&e) => Ok(Next::Done),
            Err(e) => Err(e),
        }
    }

    async fn write_status(&self, job: &mut Job, st: &JobStatus) -> Result<(), kube::Error> {
        let old =
            serde_json::to_value(job.status.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let new = serde_json::to_value(st).unwrap_or(Value::Null);
        let diff = merge_diff(&old, &new);
        if diff.as_object().is_some_and(|o| o.is_empty()) {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": job.metadata.resource_version},
            "status": diff,
        });
        let api: Api<Job> = Api::namespaced(
            self.client.clone(),
            job.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let updated = api
            .patch_status(
                job.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        *job = updated;
        Ok(())
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(cached) = self.jobs.get(&ObjectRef::new(name).within(ns)) else {
            self.expectations.forget(key);
            return Ok(Next::Done);
        };
        let mut job: Job = (*cached).clone();
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| podutil::controller_of(&p.metadata).is_some_and(|r| r.uid == job_uid))
            .collect();
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let now = Timestamp::now();
        if let Some(done) = finished(&job).cloned() {
            self.backoff.lock().unwrap().remove(key);
            for p in pods.iter().filter(|p| has_finalizer(p)) {
                match pod_api
                    .patch(
                        p.metadata.name.as_deref().unwrap_or_default(),
                        &PatchParams::default(),
                        &Patch::Strategic(&remove_finalizer_patch()),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if error_is_gone(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            return self.ttl_after_finished(&job, &done, now).await;
        }
        let s = spec(&job);
        let satisfied = self.expectations.satisfied(key);
        let expected_rm: HashSet<String> = self
            .rm_finalizers
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .unwrap_or_default();
        let mut st = job.status.clone().unwrap_or_default();
        if st.uncounted_terminated_pods.is_none() {
            st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        }
        let (unc_succeeded, unc_failed) = uncounted(&st);
        let active_pods: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| podutil::is_active(p))
            .cloned()
            .collect();
        let mut terminating = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && !podutil::is_terminal(p))
            .count() as i32;
        let mut active = active_pods.len() as i32;
        let indexed = is_indexed(&job);
        // Newly finished pods: still with a finalizer, not yet uncounted.
        let fresh = |p: &&Arc<Pod>| {
            has_finalizer(p)
                && !unc_succeeded.contains(&uid(p))
                && !unc_failed.contains(&uid(p))
                && !expected_rm.contains(&uid(p))
                && (!indexed || valid_index(&job, p).is_some())
        };
        let new_succeeded: Vec<Arc<Pod>> = pods
            .iter()
            .filter(fresh)
            .filter(|p| phase(p) == "Succeeded")
            .cloned()
            .collect();
        let new_failed: Vec<Arc<Pod>> = pods
            .iter()
            .filter(fresh)
            .filter(|p| is_pod_failed(p, &job))
            .cloned()
            .collect();
        let counted_failed = match &s.pod_failure_policy {
            Some(pol) => new_failed
                .iter()
                .filter(|p| match_pod_failure_policy(pol, p).1)
                .count(),
            None => new_failed.len(),
        } as i32;
        let mut succeeded =
            st.succeeded.unwrap_or(0) + new_succeeded.len() as i32 + unc_succeeded.len() as i32;
        let failed = st.failed.unwrap_or(0) + counted_failed + unc_failed.len() as i32;
        let mut ready = active_pods.iter().filter(|p| podutil::is_ready(p)).count() as i32;
        if st.start_time.is_none() && !suspended(&job) {
            st.start_time = Some(Time(now));
        }
        let prev_backoff = self
            .backoff
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default();
        let new_backoff = next_backoff(prev_backoff, &new_succeeded, &new_failed, now);
        let mut requeue: Option<Duration> = None;
        let mut finished_cond: Option<JobCondition> = condition(&st, "SuccessCriteriaMet").cloned();
        if finished_cond.is_none() {
            if let Some(ft) = condition(&st, "FailureTarget") {
                finished_cond = Some(new_condition(
                    "Failed",
                    ft.reason.as_deref().unwrap_or_default(),
                    ft.message.as_deref().unwrap_or_default(),
                    now,
                ));
            } else if let Some(msg) = fail_job_message(&job, &pods) {
                finished_cond = Some(new_condition(
                    "FailureTarget",
                    "PodFailurePolicy",
                    &msg,
                    now,
                ));
            }
        }
        let backoff_limit = s.backoff_limit.unwrap_or(6);
        if finished_cond.is_none() {
            let restarts_exceeded = s
                .template
                .spec
                .as_ref()
                .and_then(|p| p.restart_policy.as_deref())
                == Some("OnFailure")
                && {
                    let restarts: i32 = pods
                        .iter()
                        .filter(|p| matches!(phase(p), "Running" | "Pending"))
                        .filter_map(|p| p.status.as_ref())
                        .flat_map(|st| {
                            st.container_statuses
                                .iter()
                                .flatten()
                                .chain(st.init_container_statuses.iter().flatten())
                        })
                        .map(|c| c.restart_count)
                        .sum();
                    if backoff_limit == 0 {
                        restarts > 0
                    } else {
                        restarts >= backoff_limit
                    }
                };
            let started = st.start_time.as_ref().map(|t| t.0);
            if failed > backoff_limit || restarts_exceeded {
                finished_cond = Some(new_condition(
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else if let (Some(d), Some(start), false) =
                (s.active_deadline_seconds, started, suspended(&job))
            {
                let left_ms = d * 1000 - (now.as_millisecond() - start.as_millisecond());
                if left_ms <= 0 {
                    finished_cond = Some(new_condition(
                        "FailureTarget",
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                        now,
                    ));
                } else {
                    requeue = Some(Duration::from_millis(left_ms as u64));
                }
            }
        }
        let completions = s.completions.unwrap_or(0);
        let prev_indexes =
            parse_indexes(st.completed_indexes.as_deref().unwrap_or(""), completions);
        let mut succeeded_indexes = prev_indexes.clone();
        if indexed {
            for p in &pods {
                if phase(p) == "Succeeded" && has_finalizer(p) {
                    if let Some(i) = valid_index(&job, p) {
                        succeeded_indexes.insert(i);
                    }
                }
            }
            succeeded = succeeded_indexes.len() as i32;
        }
        let mut suspend_changed = false;
        let mut manage_err: Option<kube::Error> = None;
        if finished_cond.is_some() {
            let (deleted, deleted_ready, err) =
                self.delete_pods(&job, key, &active_pods, false).await;
            if deleted != active || !satisfied {
                finished_cond = None;
            }
            active -= deleted;
            terminating += deleted;
            ready -= deleted_ready;
            manage_err = err;
        } else {
            let mut manage_called = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                manage_called = true;
                let m = manage(
                    &job,
                    &active_pods,
                    succeeded,
                    &succeeded_indexes,
                    terminating,
                    new_backoff.remaining(now),
                );
                if !m.delete.is_empty() {
                    let victims: Vec<Arc<Pod>> = active_pods
                        .iter()
                        .filter(|p| m.delete.iter().any(|(_, u)| *u == uid(p)))
                        .cloned()
                        .collect();
                    let (deleted, deleted_ready, err) =
                        self.delete_pods(&job, key, &victims, true).await;
                    active -= deleted;
                    terminating += deleted;
                    ready -= deleted_ready;
                    manage_err = err;
                }
                if let Some(w) = m.wait {
                    requeue = Some(requeue.map_or(w, |r| r.min(w)));
                }
                if !m.create.is_empty() {
                    let (created, err) = self.create_pods(&job, key, &m.create).await;
                    active += created;
                    manage_err = err;
                }
            }
            let complete = match s.completions {
                None => succeeded > 0 && active == 0,
                Some(c) => succeeded >= c && active == 0,
            };
            if complete {
                finished_cond = Some(new_condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if manage_called {
                let conds = st.conditions.get_or_insert_with(Default::default);
                if suspended(&job) {
                    if ensure_condition(
                        conds,
                        "Suspended",
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    ) {
                        suspend_changed = true;
                        self.recorder
                            .normal(&job, "Suspended", "Job suspended".into());
                    }
                } else if ensure_condition(
                    conds,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                ) {
                    suspend_changed = true;
                    self.recorder.normal(&job, "Resumed", "Job resumed".into());
                    st.start_time = Some(Time(now));
                }
                if conds.is_empty() {
                    st.conditions = None;
                }
            }
        }
        let needs_update = suspend_changed
            || active != st.active.unwrap_or(0)
            || Some(ready) != st.ready
            || Some(terminating) != st.terminating;
        st.active = (active != 0).then_some(active);
        st.ready = Some(ready);
        st.terminating = Some(terminating);
        if indexed {
            st.completed_indexes = Some(format_indexes(&prev_indexes)).filter(|s| !s.is_empty());
        }

        // trackJobStatusAndRemoveFinalizers
        let mut needs_flush = needs_update
            || job
                .status
                .as_ref()
                .and_then(|s| s.uncounted_terminated_pods.as_ref())
                .is_none();
        let mut with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_finalizer(p))
            .map(|p| uid(p))
            .collect();
        if clean_uncounted(&mut st, &with_finalizer) {
            needs_flush = true;
        }
        let (unc_succeeded, unc_failed) = uncounted(&st);
        let mut new_succ_list: Vec<String> = unc_succeeded_ordered(&st, true);
        let mut new_fail_list: Vec<String> = unc_succeeded_ordered(&st, false);
        let mut new_indexes: Vec<i32> = Vec::new();
        let mut to_rm: Vec<Arc<Pod>> = Vec::new();
        let mut reached_max = false;
        let mut sorted = pods.clone();
        if indexed {
            sorted.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
        }
        for p in &sorted {
            let pu = uid(p);
            if !has_finalizer(p) || expected_rm.contains(&pu) {
                continue;
            }
            let failed_pod = is_pod_failed(p, &job);
            let can_remove = job.metadata.deletion_timestamp.is_some()
                || finished_cond.is_some()
                || phase(p) == "Succeeded"
                || failed_pod;
            if !can_remove {
                continue;
            }
            to_rm.push(p.clone());
            if phase(p) == "Succeeded" && !unc_failed.contains(&pu) {
                if indexed {
                    if let Some(ix) = valid_index(&job, p) {
                        if !prev_indexes.contains(&ix) {
                            new_indexes.push(ix);
                            needs_flush = true;
                        }
                    }
                } else if !unc_succeeded.contains(&pu) {
                    new_succ_list.push(pu.clone());
                    needs_flush = true;
                }
            } else if (failed_pod
                || finished_cond
                    .as_ref()
                    .is_some_and(|c| c.type_ != "SuccessCriteriaMet"))
                && !unc_failed.contains(&pu)
                && (!indexed || valid_index(&job, p).is_some())
            {
                // When the job is finishing every unfinished pod counts as
                // failed (unless the failure policy ignores it).
                let counts = s
                    .pod_failure_policy
                    .as_ref()
                    .is_none_or(|pol| match_pod_failure_policy(pol, p).1);
                if counts {
                    new_fail_list.push(pu.clone());
                    needs_flush = true;
                }
            }
            if new_indexes.len() + new_succ_list.len() + new_fail_list.len() >= MAX_UNCOUNTED {
                reached_max = true;
                break;
            }
        }
        {
            let u = st
                .uncounted_terminated_pods
                .get_or_insert_with(Default::default);
            u.succeeded = (!new_succ_list.is_empty()).then_some(new_succ_list);
            u.failed = (!new_fail_list.is_empty()).then_some(new_fail_list);
        }
        if indexed {
            let mut all = prev_indexes.clone();
            all.extend(new_indexes);
            st.succeeded = Some(all.len() as i32).filter(|n| *n > 0);
            st.completed_indexes = Some(format_indexes(&all)).filter(|s| !s.is_empty());
            if st.completed_indexes
                != job
                    .status
                    .as_ref()
                    .and_then(|s| s.completed_indexes.clone())
            {
                needs_flush = true;
            }
        }
        if let Some(c) = finished_cond.clone() {
            if c.type_ == "FailureTarget" {
                st.conditions
                    .get_or_insert_with(Default::default)
                    .push(c.clone());
                needs_flush = true;
                finished_cond = Some(new_condition(
                    "Failed",
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.as_deref().unwrap_or_default(),
                    now,
                ));
            } else if c.type_ == "SuccessCriteriaMet" {
                if condition(&st, "SuccessCriteriaMet").is_none() {
                    st.conditions
                        .get_or_insert_with(Default::default)
                        .push(c.clone());
                    needs_flush = true;
                }
                finished_cond = Some(new_condition(
                    "Complete",
                    c.reason.as_deref().unwrap_or_default(),
                    c.message.as_deref().unwrap_or_default(),
                    now,
                ));
            }
        }
        if needs_flush {
            self.write_status(&mut job, &st).await?;
            needs_flush = false;
        }
        // Remove finalizers now that the pods are recorded.
        let mut rm_ok = true;
        if !to_rm.is_empty() {
            {
                let mut map = self.rm_finalizers.lock().unwrap();
                let set = map.entry(key.to_owned()).or_default();
                set.extend(to_rm.iter().map(|p| uid(p)));
            }
            let results = futures::future::join_all(to_rm.iter().map(|p| {
                let api = pod_api.clone();
                let name = p.metadata.name.clone().unwrap_or_default();
                async move {
                    api.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Strategic(&remove_finalizer_patch()),
                    )
                    .await
                }
            }))
            .await;
            for (p, r) in to_rm.iter().zip(results) {
                match r {
                    Ok(_) => {
                        with_finalizer.remove(&uid(p));
                    }
                    Err(e) if error_is_gone(&e) => {
                        with_finalizer.remove(&uid(p));
                        self.finalizer_observed(key, &uid(p));
                    }
                    Err(e) => {
                        rm_ok = false;
                        self.finalizer_observed(key, &uid(p));
                        manage_err.get_or_insert(e);
                    }
                }
            }
        }
        if clean_uncounted(&mut st, &with_finalizer) {
            needs_flush = true;
        }
        if rm_ok {
            self.backoff
                .lock()
                .unwrap()
                .insert(key.to_owned(), new_backoff);
        }
        let mut job_finished = false;
        if let Some(c) = &finished_cond {
            if !reached_max && enact_finished(&mut st, c, terminating, now) {
                job_finished = true;
                needs_flush = true;
            }
        }
        if needs_flush {
            self.write_status(&mut job, &st).await?;
            if job_finished {
                let c = finished_cond.as_ref().unwrap();
                if c.type_ == "Complete" {
                    self.recorder
                        .normal(&job, "Completed", "Job completed".into());
                } else {
                    self.recorder.warning(
                        &job,
                        c.reason.as_deref().unwrap_or("Failed"),
                        c.message.clone().unwrap_or_default(),
                    );
                }
            }
        }
        if let Some(e) = manage_err {
            return Err(e);
        }
        if job_finished {
            if let Some(done) = finished(&job).cloned() {
                return self.ttl_after_finished(&job, &done, now).await;
            }
        }
        Ok(match requeue {
            Some(d) => Next::After(d.max(Duration::from_millis(100))),
            None => Next::Done,
        })
    }

    /// Deletes pods (first removing their finalizer when `uncount`, so they
    /// are not counted as failed): (deleted, of which ready, first error).
    async fn delete_pods(
        &self,
        job: &Job,
        key: &str,
        pods: &[Arc<Pod>],
        uncount: bool,
    ) -> (i32, i32, Option<kube::Error>) {
        if pods.is_empty() {
            return (0, 0, None);
        }
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.expectations.expect(key, 0, pods.len() as i64);
        if uncount {
            let mut map = self.rm_finalizers.lock().unwrap();
            map.entry(key.to_owned())
                .or_default()
                .extend(pods.iter().filter(|p| has_finalizer(p)).map(|p| uid(p)));
        }
        let results = futures::future::join_all(pods.iter().map(|p| {
            let api = api.clone();
            async move {
                let name = p.metadata.name.clone().unwrap_or_default();
                if uncount && has_finalizer(p) {
                    api.patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Strategic(&remove_finalizer_patch()),
                    )
                    .await?;
                }
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: p.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                api.delete(&name, &dp).await.map(|_| ())
            }
        }))
        .await;
        let (mut deleted, mut ready, mut err) = (0, 0, None);
        for (p, r) in pods.iter().zip(results) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    if podutil::is_ready(p) {
                        ready += 1;
                    }
                    self.recorder.normal(
                        job,
                        "SuccessfulDelete",
                        format!(
                            "Deleted pod: {}",
                            p.metadata.name.as_deref().unwrap_or_default()
                        ),
                    );
                }
                Err(e) => {
                    self.expectations.deletion_observed(key);
                    if uncount {
                        self.finalizer_observed(key, &uid(p));
                    }
                    if !error_is_gone(&e) {
                        self.recorder.warning(
                            job,
                            "FailedDelete",
                            format!("Error deleting: {}", error_text(&e)),
                        );
                        err.get_or_insert(e);
                    }
                }
            }
        }
        (deleted, ready, err)
    }

    /// Creates pods in slow-start batches: (created, first error).
    async fn create_pods(
        &self,
        job: &Job,
        key: &str,
        indexes: &[Option<i32>],
    ) -> (i32, Option<kube::Error>) {
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.expectations.expect(key, indexes.len() as i64, 0);
        let mut created = 0;
        let mut err: Option<kube::Error> = None;
        let mut batch = 1usize;
        let mut rest = indexes;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            let results = futures::future::join_all(now.iter().map(|ix| {
                let api = api.clone();
                let pod = pod_for(job, *ix);
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            for r in results {
                match r {
                    Ok(p) => {
                        created += 1;
                        self.recorder.normal(
                            job,
                            "SuccessfulCreate",
                            format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                        );
                    }
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        self.recorder.warning(
                            job,
                            "FailedCreate",
                            format!("Error creating: {}", error_text(&e)),
                        );
                        err.get_or_insert(e);
                    }
                }
            }
            if err.is_some() {
                for _ in rest {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch *= 2;
        }
        (created, err)
    }

    /// ttlSecondsAfterFinished: delete the finished Job (in the background)
    /// once the TTL has passed since it finished.
    async fn ttl_after_finished(
        &self,
        job: &Job,
        done: &JobCondition,
        now: Timestamp,
    ) -> Result<Next, kube::Error> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(Next::Done);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let at = done
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let left_ms = i64::from(ttl) * 1000 - (now.as_millisecond() - at.as_millisecond());
        if left_ms > 0 {
            return Ok(Next::After(Duration::from_millis(left_ms as u64)));
        }
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        // Check the TTL on a fresh copy, then delete that version only.
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(Next::Done);
        };
        if fresh
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished)
            != Some(ttl)
            || fresh.metadata.deletion_timestamp.is_some()
        {
            return Ok(Next::Done);
        }
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: fresh.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(Next::Done),
            Err(e) if error_is_gone(&e) => Ok(Next::Done),
            Err(e) => Err(e),
        }
    }
}

fn unc_succeeded_ordered(st: &JobStatus, succeeded: bool) -> Vec<String> {
    let u = st.uncounted_terminated_pods.clone().unwrap_or_default();
    if succeeded { u.succeeded } else { u.failed }.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition,
        PodSpec, PodStatus, PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn job(completions: Option<i32>, parallelism: i32, indexed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "pi".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Container {
                            name: "c".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str, index: Option<i32>, exit: Option<i32>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                finalizers: Some(vec![TRACKING_FINALIZER.into()]),
                annotations: index.map(|i| [(COMPLETION_INDEX.to_string(), i.to_string())].into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "Job".into(),
                    name: "pi".into(),
                    uid: "job-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: exit.map(|code| {
                    vec![ContainerStatus {
                        name: "c".into(),
                        state: Some(ContainerState {
                            terminated: Some(ContainerStateTerminated {
                                exit_code: code,
                                finished_at: Some(Time(Timestamp::from_second(1000).unwrap())),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn manage_plans() {
        let none = BTreeSet::new();
        struct Case {
            name: &'static str,
            job: Job,
            active: Vec<Arc<Pod>>,
            succeeded: i32,
            done: BTreeSet<i32>,
            backoff: u64,
            create: Vec<Option<i32>>,
            delete: Vec<&'static str>,
            wait: bool,
        }
        let mut suspended_job = job(Some(3), 2, false);
        suspended_job.spec.as_mut().unwrap().suspend = Some(true);
        let cases = vec![
            Case {
                name: "start: parallelism pods",
                job: job(Some(3), 2, false),
                active: vec![],
                succeeded: 0,
                done: none.clone(),
                backoff: 0,
                create: vec![None, None],
                delete: vec![],
                wait: false,
            },
            Case {
                name: "never more than remaining completions",
                job: job(Some(3), 2, false),
                active: vec![pod("a", "Running", None, None)],
                succeeded: 2,
                done: none.clone(),
                backoff: 0,
                create: vec![],
                delete: vec![],
                wait: false,
            },
            Case {
                name: "surplus deleted",
                job: job(Some(3), 1, false),
                active: vec![
                    pod("a", "Running", None, None),
                    pod("b", "Pending", None, None),
                ],
                succeeded: 0,
                done: none.clone(),
                backoff: 0,
                create: vec![],
                delete: vec!["b"],
                wait: false,
            },
            Case {
                name: "back-off holds creation",
                job: job(Some(3), 2, false),
                active: vec![],
                succeeded: 0,
                done: none.clone(),
                backoff: 5,
                create: vec![],
                delete: vec![],
                wait: true,
            },
            Case {
                name: "no completions: parallelism until one succeeds",
                job: job(None, 3, false),
                active: vec![pod("a", "Running", None, None)],
                succeeded: 1,
                done: none.clone(),
                backoff: 0,
                create: vec![],
                delete: vec![],
                wait: false,
            },
            Case {
                name: "indexed: first pending indexes",
                job: job(Some(5), 3, true),
                active: vec![pod("a", "Running", Some(1), None)],
                succeeded: 1,
                done: [0].into(),
                backoff: 0,
                create: vec![Some(2), Some(3)],
                delete: vec![],
                wait: false,
            },
            Case {
                name: "indexed: duplicate and out-of-range indexes deleted",
                job: job(Some(3), 3, true),
                active: vec![
                    pod("a", "Running", Some(1), None),
                    pod("b", "Pending", Some(1), None),
                    pod("c", "Running", Some(7), None),
                ],
                succeeded: 0,
                done: none.clone(),
                backoff: 0,
                create: vec![],
                delete: vec!["c", "b"],
                wait: false,
            },
            Case {
                name: "suspended: all active pods go",
                job: suspended_job,
                active: vec![
                    pod("a", "Running", None, None),
                    pod("b", "Running", None, None),
                ],
                succeeded: 0,
                done: none.clone(),
                backoff: 0,
                create: vec![],
                delete: vec!["a", "b"],
                wait: false,
            },
        ];
        for c in cases {
            let m = manage(
                &c.job,
                &c.active,
                c.succeeded,
                &c.done,
                0,
                Duration::from_secs(c.backoff),
            );
            assert_eq!(m.create, c.create, "{}", c.name);
            let mut del: Vec<_> = m.delete.iter().map(|(n, _)| n.as_str()).collect();
            let mut want = c.delete.clone();
            if c.name.starts_with("suspended") {
                del.sort();
                want.sort();
            }
            assert_eq!(del, want, "{}", c.name);
            assert_eq!(m.wait.is_some(), c.wait, "{}", c.name);
        }
    }

    #[test]
    fn backoff_doubles_to_six_minutes() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let b = |n, secs_ago: i64| Backoff {
            failures_after_last_success: n,
            last_failure: Some(Timestamp::from_second(1000 - secs_ago).unwrap()),
        };
        let cases = [
            (0, 0, 0),
            (1, 0, 10),
            (1, 4, 6),
            (2, 0, 20),
            (3, 0, 40),
            (6, 0, 320),
            (7, 0, 360),
            (20, 0, 360),
            (2, 30, 0),
        ];
        for (n, ago, want) in cases {
            assert_eq!(
                b(n, ago).remaining(t0),
                Duration::from_secs(want),
                "{n} failures {ago}s ago"
            );
        }
        // New failures add up; a success after them resets.
        let failed = [
            pod("f1", "Failed", None, Some(1)),
            pod("f2", "Failed", None, Some(1)),
        ];
        let r = next_backoff(Backoff::default(), &[], &failed, t0);
        assert_eq!(r.failures_after_last_success, 2);
        let ok = [pod("s", "Succeeded", None, Some(0))];
        let mut later_ok = (*ok[0]).clone();
        later_ok
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[0]
            .state
            .as_mut()
            .unwrap()
            .terminated
            .as_mut()
            .unwrap()
            .finished_at = Some(Time(Timestamp::from_second(2000).unwrap()));
        let r = next_backoff(r, &[Arc::new(later_ok)], &failed, t0);
        assert_eq!(r, Backoff::default());
    }

    #[test]
    fn pod_failure_policy_rules() {
        let policy = PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    on_exit_codes: None,
                },
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
                PodFailurePolicyRule {
                    action: "Count".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some("c".into()),
                        operator: "NotIn".into(),
                        values: vec![1, 2],
                    }),
                    on_pod_conditions: None,
                },
            ],
        };
        let r = match_pod_failure_policy(&policy, &pod("p", "Failed", None, Some(42)));
        assert_eq!(
            r,
            (
                Some("Container c for pod default/p failed with exit code 42 matching FailJob rule at index 1".into()),
                true,
                Some("FailJob".into())
            )
        );
        assert_eq!(
            match_pod_failure_policy(&policy, &pod("p", "Failed", None, Some(3))),
            (None, true, Some("Count".into()))
        );
        // No rule matches exit code 1: counted, no action.
        assert_eq!(
            match_pod_failure_policy(&policy, &pod("p", "Failed", None, Some(1))),
            (None, true, None)
        );
        let mut disrupted = (*pod("p", "Failed", None, Some(42))).clone();
        disrupted.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            ..Default::default()
        }]);
        assert_eq!(
            match_pod_failure_policy(&policy, &disrupted),
            (None, false, Some("Ignore".into()))
        );
    }

    #[test]
    fn indexes_and_status_helpers() {
        let set = parse_indexes("0-2,4,6-7", 7);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 4, 6]);
        assert_eq!(format_indexes(&set), "0-2,4,6");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        let mut st = JobStatus {
            succeeded: Some(1),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        assert!(clean_uncounted(&mut st, &["b".to_string()].into()));
        assert_eq!((st.succeeded, st.failed), (Some(2), Some(1)));
        assert_eq!(
            st.uncounted_terminated_pods.as_ref().unwrap().succeeded,
            Some(vec!["b".to_string()])
        );
        assert_eq!(st.uncounted_terminated_pods.as_ref().unwrap().failed, None);
        let now = Timestamp::from_second(5).unwrap();
        let complete = new_condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        );
        // Still uncounted: not yet.
        assert!(!enact_finished(&mut st, &complete, 0, now));
        assert!(clean_uncounted(&mut st, &HashSet::new()));
        // Terminating pods hold it too.
        assert!(!enact_finished(&mut st, &complete, 1, now));
        assert!(enact_finished(&mut st, &complete, 0, now));
        assert_eq!(st.completion_time, Some(Time(now)));
        assert_eq!(
            finished(&Job {
                status: Some(st),
                ..Default::default()
            })
            .unwrap()
            .type_,
            "Complete"
        );
        // Merge diff removes keys with null.
        let d = merge_diff(
            &json!({"a": 1, "u": {"succeeded": ["x"]}}),
            &json!({"a": 2, "u": {}}),
        );
        assert_eq!(d, json!({"a": 2, "u": {"succeeded": null}}));
    }

    #[test]
    fn pods_from_the_template() {
        let j = job(Some(3), 3, true);
        let p = pod_for(&j, Some(2));
        let labels = p.metadata.labels.clone().unwrap();
        assert_eq!(labels[CONTROLLER_UID_LABEL], "job-uid");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_JOB_NAME_LABEL], "pi");
        assert_eq!(labels[COMPLETION_INDEX], "2");
        assert_eq!(labels["app"], "pi");
        assert_eq!(p.metadata.annotations.unwrap()[COMPLETION_INDEX], "2");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            p.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let spec = p.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        assert_eq!(
            spec.containers[0].env.as_ref().unwrap()[0].name,
            "JOB_COMPLETION_INDEX"
        );
        let p = pod_for(&job(Some(1), 1, false), None);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(p.spec.unwrap().hostname.is_none());
        assert_eq!(p.metadata.owner_references.unwrap()[0].kind, "Job");
    }

    #[test]
    fn failed_pods() {
        let j = job(Some(1), 1, false);
        assert!(is_pod_failed(&pod("p", "Failed", None, Some(1)), &j));
        let mut deleting = (*pod("p", "Running", None, None)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        assert!(is_pod_failed(&deleting, &j));
        // Replacing only failed pods: a terminating pod is not failed yet.
        let mut only_failed = j.clone();
        only_failed.spec.as_mut().unwrap().pod_replacement_policy = Some("Failed".into());
        assert!(!is_pod_failed(&deleting, &only_failed));
    }
}
