//! The running scheduler: informers feed the cache and the queue; one
//! thread runs scheduling cycles back to back (CPU only, no I/O); binding
//! (POST pods/NAME/binding), events, pod conditions and preemption's
//! writes happen on tokio tasks, binding with bounded concurrency, so the
//! next cycle never waits for the API server. The cache assumes each
//! placed pod at once, so the next cycle sees the previous decision.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use runtime::{Change, Informer, Recorder};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::cache::{Cache, Listers, Snapshot};
use crate::framework::{Nominations, Profile, ScheduleError};
use crate::podinfo::PodInfo;
use crate::queue::{ClusterEvent, SchedulingQueue};
use crate::{metrics, Config};

/// A pod's priority: spec.priority, else its PriorityClass's value, else
/// the global default class's, else 0 (what the Priority admission plugin
/// would have set).
pub fn resolve_priority(pod: &Pod, classes: &Store<PriorityClass>) -> i32 {
    let spec = pod.spec.as_ref();
    if let Some(p) = spec.and_then(|s| s.priority) {
        return p;
    }
    if let Some(name) = spec
        .and_then(|s| s.priority_class_name.as_deref())
        .filter(|n| !n.is_empty())
    {
        return classes
            .get(&ObjectRef::new(name))
            .map(|c| c.value)
            .unwrap_or(0);
    }
    classes
        .find(|c| c.global_default == Some(true))
        .map(|c| c.value)
        .unwrap_or(0)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Whether an update changed what scheduling reads (not just status).
fn spec_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

/// Whether a node update can make pods fit that did not.
fn node_changed(old: &Node, new: &Node) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old
            .status
            .as_ref()
            .map(|s| (&s.allocatable, &s.conditions, &s.images))
            != new
                .status
                .as_ref()
                .map(|s| (&s.allocatable, &s.conditions, &s.images))
}

struct Shared {
    client: kube::Client,
    profiles: HashMap<String, Profile>,
    cache: Mutex<Cache>,
    queue: SchedulingQueue,
    recorder: Recorder,
    classes: Store<PriorityClass>,
    listers: Listers,
    bindings: Semaphore,
    handle: tokio::runtime::Handle,
}

impl Shared {
    fn pod_info(&self, pod: &Arc<Pod>) -> PodInfo {
        PodInfo::new(pod.clone(), resolve_priority(pod, &self.classes))
    }

    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(crate::DEFAULT_SCHEDULER_NAME);
        self.profiles.contains_key(name)
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Added(pod) => self.pod_seen(None, pod),
            Change::Updated { old, new } => self.pod_seen(Some(old), new),
            Change::Deleted(pod) => {
                let key = runtime::key_of(&pod.metadata);
                self.queue.delete(&key);
                if !node_name(pod).is_empty() || self.cache.lock().unwrap().is_assumed(&key) {
                    self.cache.lock().unwrap().remove_pod(&key);
                    self.queue.move_all(ClusterEvent::AssignedPodDelete);
                }
            }
        }
    }

    fn pod_seen(&self, old: Option<&Arc<Pod>>, pod: &Arc<Pod>) {
        let key = runtime::key_of(&pod.metadata);
        if !node_name(pod).is_empty() {
            // Bound: leaves the queue, counts in the cache (confirming an
            // assumed pod) unless it finished.
            self.queue.delete(&key);
            if is_terminal(pod) {
                self.cache.lock().unwrap().remove_pod(&key);
                self.queue.move_all(ClusterEvent::AssignedPodDelete);
                return;
            }
            let info = Arc::new(self.pod_info(pod));
            self.cache.lock().unwrap().set_pod(info);
            let was_bound = old.is_some_and(|o| !node_name(o).is_empty());
            if !was_bound {
                self.queue.move_all(ClusterEvent::AssignedPodAdd);
            } else if old.is_some_and(|o| o.metadata.labels != pod.metadata.labels) {
                self.queue.move_all(ClusterEvent::AssignedPodUpdate);
            }
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) || !self.responsible(pod) {
            self.queue.delete(&key);
            return;
        }
        if self.cache.lock().unwrap().is_assumed(&key) {
            return; // being bound; the informer has not seen it yet
        }
        let info = Arc::new(self.pod_info(pod));
        match old {
            None => self.queue.add(info),
            Some(old) => self.queue.update(info, spec_changed(old, pod)),
        }
    }

    fn on_node(&self, change: &Change<Node>) {
        match change {
            Change::Added(n) => {
                self.cache.lock().unwrap().set_node(n.clone());
                self.queue.move_all(ClusterEvent::NodeAdd);
            }
            Change::Updated { old, new } => {
                self.cache.lock().unwrap().set_node(new.clone());
                if node_changed(old, new) {
                    self.queue.move_all(ClusterEvent::NodeUpdate);
                }
            }
            Change::Deleted(n) => {
                self.cache
                    .lock()
                    .unwrap()
                    .remove_node(n.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    /// The scheduling loop (its own thread).
    fn schedule_loop(self: Arc<Self>) {
        let mut snap = Snapshot {
            listers: self.listers.clone(),
            ..Snapshot::default()
        };
        let mut next_start = 0usize;
        let no_nominations = Nominations::new();
        let m = metrics::get();
        loop {
            let Some(popped) = self.queue.pop(Duration::from_secs(1)) else {
                if self.queue.is_closed() {
                    return;
                }
                continue;
            };
            let info = popped.info;
            let Some(profile) = self.profiles.get(&info.scheduler_name) else {
                self.queue.done(&info.key);
                continue;
            };
            let start = Instant::now();
            self.cache.lock().unwrap().update_snapshot(&mut snap);
            let nominations = if self.queue.has_nominated() {
                self.nominations()
            } else {
                no_nominations.clone()
            };
            let result = profile.schedule(&info, &snap, &mut next_start, &nominations);
            match result {
                Ok(r) => {
                    m.attempt_duration.observe(start.elapsed());
                    let mut placed = info.with_node(&r.node);
                    placed.nominated_node.clear();
                    let placed = Arc::new(placed);
                    self.cache.lock().unwrap().assume_pod(placed.clone());
                    self.queue.done(&info.key);
                    if !info.nominated_node.is_empty() {
                        self.queue.nominate(info.clone(), "");
                    }
                    self.clone().bind(placed, popped.attempts, popped.since);
                }
                Err(ScheduleError::Fit(mut fe)) => {
                    let mut nominated = None;
                    if let Some(pf) = profile.post_filter.first() {
                        m.preemption_attempts.fetch_add(1, Relaxed);
                        let r = pf.post_filter(profile, &info, &snap, &fe.diagnosis, &nominations);
                        fe.diagnosis.post_filter_msg = r.message.clone();
                        if let Some(node) = &r.nominated_node {
                            nominated = Some(node.clone());
                            self.queue.nominate(info.clone(), node);
                            for p in &r.clear_nominations {
                                self.queue.nominate(p.clone(), "");
                            }
                            self.clone().preempt(
                                info.clone(),
                                node.clone(),
                                r.victims,
                                r.clear_nominations,
                            );
                        }
                    }
                    m.attempt_duration.observe(start.elapsed());
                    m.attempt(&info.scheduler_name, metrics::UNSCHEDULABLE);
                    let msg = fe.to_string();
                    tracing::debug!(pod = %info.key, %msg, "unschedulable");
                    self.queue
                        .failed(&info, popped.cycle, fe.diagnosis.rejected_by.clone(), false);
                    self.clone()
                        .report_failure(info, "Unschedulable", msg, nominated);
                }
                Err(ScheduleError::NoNodes) => {
                    m.attempt(&info.scheduler_name, metrics::UNSCHEDULABLE);
                    self.queue.failed(&info, popped.cycle, Vec::new(), false);
                    let msg = ScheduleError::NoNodes.to_string();
                    self.clone()
                        .report_failure(info, "Unschedulable", msg, None);
                }
                Err(e) => {
                    m.attempt(&info.scheduler_name, metrics::ERROR);
                    self.queue.failed(&info, popped.cycle, Vec::new(), true);
                    self.clone()
                        .report_failure(info, "SchedulerError", e.to_string(), None);
                }
            }
        }
    }

    /// Pods waiting for their victims to go (few).
    fn nominations(&self) -> Nominations {
        self.queue.nominated_all()
    }

    /// POSTs the binding; on success a Scheduled event, on failure the pod
    /// leaves the cache and goes back to the queue.
    fn bind(self: Arc<Self>, placed: Arc<PodInfo>, attempts: u32, since: Instant) {
        let me = self.clone();
        self.handle.spawn(async move {
            let _permit = me.bindings.acquire().await;
            let started = Instant::now();
            let api: Api<Pod> = Api::namespaced(me.client.clone(), &placed.namespace);
            let binding = Binding {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(placed.name.clone()),
                    namespace: Some(placed.namespace.clone()),
                    uid: Some(placed.uid.clone()).filter(|u| !u.is_empty()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(placed.node_name.clone()),
                    ..Default::default()
                },
            };
            let res = api
                .create_subresource::<Binding, serde_json::Value>(
                    "binding",
                    &placed.name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
            let m = metrics::get();
            m.binding_duration.observe(started.elapsed());
            match res {
                Ok(_) => {
                    me.cache
                        .lock()
                        .unwrap()
                        .finish_binding(&placed.key, Instant::now());
                    m.attempt(&placed.scheduler_name, metrics::SCHEDULED);
                    m.e2e_duration.observe(since.elapsed());
                    me.recorder.normal(
                        placed.pod.as_ref(),
                        "Scheduled",
                        format!(
                            "Successfully assigned {} to {}",
                            placed.key, placed.node_name
                        ),
                    );
                }
                Err(e) => {
                    me.cache.lock().unwrap().forget_pod(&placed.key);
                    m.attempt(&placed.scheduler_name, metrics::ERROR);
                    if runtime::is_not_found(&e) {
                        return; // deleted meanwhile
                    }
                    tracing::debug!(pod = %placed.key, error = %e, "binding failed");
                    let mut back = (*placed).clone();
                    back.node_name.clear();
                    me.queue.add_after_error(Arc::new(back), attempts);
                    me.recorder.warning(
                        placed.pod.as_ref(),
                        "FailedScheduling",
                        format!("Binding rejected: {e}"),
                    );
                }
            }
        });
    }

    /// FailedScheduling event and the PodScheduled=False condition (only
    /// written when it changes), with nominatedNodeName after preemption.
    fn report_failure(
        self: Arc<Self>,
        info: Arc<PodInfo>,
        reason: &'static str,
        msg: String,
        nominated: Option<String>,
    ) {
        self.recorder
            .warning(info.pod.as_ref(), "FailedScheduling", msg.clone());
        let status = info.pod.status.as_ref();
        let same = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(msg.as_str())
            });
        let nominated_same = nominated.is_none()
            || status.and_then(|s| s.nominated_node_name.as_ref()) == nominated.as_ref();
        if same && nominated_same {
            return;
        }
        let me = self.clone();
        self.handle.spawn(async move {
            let api: Api<Pod> = Api::namespaced(me.client.clone(), &info.namespace);
            let mut status = json!({
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": reason,
                    "message": msg,
                    "lastProbeTime": null,
                    "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
                }]
            });
            if let Some(n) = nominated {
                status["nominatedNodeName"] = json!(n);
            }
            let patch = json!({"status": status});
            if let Err(e) = api
                .patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                if !runtime::is_not_found(&e) {
                    tracing::debug!(pod = %info.key, error = %e, "updating the PodScheduled condition failed");
                }
            }
        });
    }

    /// Deletes the victims (marking them DisruptionTarget first) and clears
    /// the nominations of lower-priority pods that lost the node.
    fn preempt(
        self: Arc<Self>,
        pod: Arc<PodInfo>,
        node: String,
        victims: Vec<Arc<PodInfo>>,
        cleared: Vec<Arc<PodInfo>>,
    ) {
        let me = self.clone();
        metrics::get()
            .preemption_victims
            .fetch_add(victims.len() as u64, Relaxed);
        self.handle.spawn(async move {
            for v in victims {
                let api: Api<Pod> = Api::namespaced(me.client.clone(), &v.namespace);
                let cond = json!({"status": {"conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "PreemptionByScheduler",
                    "message": format!("{}: preempting to accommodate a higher priority pod", pod.scheduler_name),
                    "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
                }]}});
                let _ = api.patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(&cond)).await;
                match api.delete(&v.name, &DeleteParams::default()).await {
                    Ok(_) => me.recorder.normal(
                        v.pod.as_ref(),
                        "Preempted",
                        format!("Preempted by pod {} on node {}", pod.uid, node),
                    ),
                    Err(e) if runtime::is_not_found(&e) => {}
                    Err(e) => tracing::warn!(victim = %v.key, error = %e, "preempting a pod failed"),
                }
            }
            for p in cleared {
                let api: Api<Pod> = Api::namespaced(me.client.clone(), &p.namespace);
                let patch = json!({"status": {"nominatedNodeName": null}});
                let _ = api.patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        });
    }
}

/// Closes the queue when the scheduler's future is dropped.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.queue.close();
    }
}

fn informer<K>(client: &kube::Client) -> Arc<Informer<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    Informer::new(Api::<K>::all(client.clone()), watcher::Config::default())
}

fn cluster_informer<K>(client: &kube::Client) -> Arc<Informer<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Informer::new(Api::<K>::all(client.clone()), watcher::Config::default())
}

pub async fn run(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let profiles = config.build()?;
    let classes = cluster_informer::<PriorityClass>(&client);
    let nodes = cluster_informer::<Node>(&client);
    let pods = informer::<Pod>(&client);
    let namespaces = cluster_informer::<Namespace>(&client);
    let pvcs = informer::<PersistentVolumeClaim>(&client);
    let pvs = cluster_informer::<PersistentVolume>(&client);
    let pdbs = informer::<PodDisruptionBudget>(&client);
    let listers = Listers {
        namespaces: namespaces.store(),
        pvcs: pvcs.store(),
        pvs: pvs.store(),
        pdbs: pdbs.store(),
    };
    let shared = Arc::new(Shared {
        recorder: Recorder::new(client.clone(), "default-scheduler"),
        client: client.clone(),
        profiles,
        cache: Mutex::new(Cache::default()),
        queue: SchedulingQueue::new(),
        classes: classes.store(),
        listers,
        bindings: Semaphore::new(config.parallelism.max(1)),
        handle: tokio::runtime::Handle::current(),
    });
    let _guard = StopGuard(shared.clone());
    let mut tasks = Vec::new();
    // Priorities are read when pods arrive: classes first.
    tasks.push(classes.start());
    classes.wait_synced().await;
    {
        let s = shared.clone();
        nodes.on_change(move |c| s.on_node(c));
        let s = shared.clone();
        pods.on_change(move |c| s.on_pod(c));
        let s = shared.clone();
        namespaces.on_change(move |c| {
            if c.old()
                .is_none_or(|o| o.metadata.labels != c.object().metadata.labels)
            {
                s.queue.move_all(ClusterEvent::NamespaceChange);
            }
        });
        let s = shared.clone();
        pvcs.on_change(move |_| s.queue.move_all(ClusterEvent::VolumeChange));
        let s = shared.clone();
        pvs.on_change(move |_| s.queue.move_all(ClusterEvent::VolumeChange));
    }
    tasks.push(nodes.start());
    tasks.push(namespaces.start());
    tasks.push(pvcs.start());
    tasks.push(pvs.start());
    tasks.push(pdbs.start());
    nodes.wait_synced().await;
    tasks.push(pods.start());
    pods.wait_synced().await;
    tracing::info!(profiles = shared.profiles.len(), "scheduler started");
    let thread = {
        let s = shared.clone();
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || s.schedule_loop())?
    };
    struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for t in &self.0 {
                t.abort();
            }
        }
    }
    let _tasks = AbortOnDrop(tasks);
    // Housekeeping: expire assumed pods, publish sizes.
    let m = metrics::get();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if thread.is_finished() {
            anyhow::bail!("the scheduling thread stopped");
        }
        let (nodes, pods, assumed) = {
            let mut c = shared.cache.lock().unwrap();
            let expired = c.cleanup_expired(Instant::now());
            if expired > 0 {
                tracing::warn!(
                    expired,
                    "assumed pods expired without their binding being seen"
                );
            }
            (c.node_count(), c.pod_count(), c.assumed_count())
        };
        let q = shared.queue.sizes();
        m.queue_active
            .store((q.active + q.in_flight) as u64, Relaxed);
        m.queue_backoff.store(q.backoff as u64, Relaxed);
        m.queue_unschedulable.store(q.unschedulable as u64, Relaxed);
        m.cache_nodes.store(nodes as u64, Relaxed);
        m.cache_pods.store(pods as u64, Relaxed);
        m.cache_assumed.store(assumed as u64, Relaxed);
    }
}
