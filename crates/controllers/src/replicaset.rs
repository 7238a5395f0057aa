//! ReplicaSet and ReplicationController: keep `replicas` active pods made
//! from the template, adopting orphans that match the selector and
//! releasing owned pods that no longer match; create in slow-start batches
//! (1, 2, 4, ...; at most 500 per pass); delete surplus pods in
//! [`podutil::deletion_rank`] order; report replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas (minReadySeconds), observedGeneration
//! and the ReplicaFailure condition.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, Expectations, WorkQueue};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::podutil;
use crate::Ctx;

/// Most pods created or deleted in one pass (Kubernetes' burstReplicas).
pub const BURST: usize = 500;

/// What the controller needs from a ReplicaSet or ReplicationController.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// The selector; None when it is invalid or empty (selects nothing).
    fn selector(&self) -> Option<api::selector::LabelSelector>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status as JSON (to compare with what we would write).
    fn status_json(&self) -> Value;
}

impl ReplicaOwner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Option<api::selector::LabelSelector> {
        let sel = &self.spec.as_ref()?.selector;
        if podutil::selector_is_empty(sel) {
            return None;
        }
        api::selector::from_label_selector_json(&serde_json::to_value(sel).ok()?).ok()
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl ReplicaOwner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }
    fn selector(&self) -> Option<api::selector::LabelSelector> {
        let spec = self.spec.as_ref()?;
        // An RC without a selector selects its template's labels.
        let map = spec
            .selector
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| spec.template.as_ref()?.metadata.as_ref()?.labels.clone())?;
        if map.is_empty() {
            return None;
        }
        api::selector::from_label_selector_json(&json!({ "matchLabels": map })).ok()
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn status_json(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

/// What one pass decides, from the owner and the pods in its namespace.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Orphans to adopt (name, uid).
    pub adopt: Vec<(String, String)>,
    /// Owned pods whose labels no longer match (name, uid).
    pub release: Vec<(String, String)>,
    /// Pods to create.
    pub create: usize,
    /// Pods to delete (name, uid), best candidates first.
    pub delete: Vec<(String, String)>,
    /// The status counts after this pass's adoptions and releases.
    pub counts: Counts,
    /// Seconds until a ready pod becomes available.
    pub recheck_in: Option<i64>,
}

#[derive(Debug, Default, PartialEq, Clone, Copy)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

/// Decides a pass. `counting` is false while expectations are unmet: then
/// adoption and status still happen but nothing is created or deleted.
pub fn plan<O: ReplicaOwner>(owner: &O, pods: &[Arc<Pod>], now: Timestamp, counting: bool) -> Plan {
    let mut plan = Plan::default();
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let selector = owner.selector();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut owned: Vec<&Arc<Pod>> = Vec::new();
    for pod in pods {
        let labels = podutil::labels(&pod.metadata);
        let matches = selector.as_ref().is_some_and(|s| s.matches(&labels));
        let id = (
            pod.metadata.name.clone().unwrap_or_default(),
            pod.metadata.uid.clone().unwrap_or_default(),
        );
        match podutil::controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(pod);
                } else if !deleting {
                    plan.release.push(id);
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    plan.adopt.push(id);
                    owned.push(pod);
                }
            }
        }
    }
    let active: Vec<&Arc<Pod>> = owned
        .iter()
        .copied()
        .filter(|p| podutil::is_active(p))
        .collect();
    let min_ready = owner.min_ready_seconds();
    for p in &active {
        plan.counts.replicas += 1;
        let labels = podutil::labels(&p.metadata);
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            plan.counts.fully_labeled += 1;
        }
        if podutil::is_ready(p) {
            plan.counts.ready += 1;
        }
        if podutil::is_available(p, min_ready, now) {
            plan.counts.available += 1;
        } else if let Some(left) = podutil::available_in(p, min_ready, now) {
            plan.recheck_in = Some(plan.recheck_in.map_or(left, |r: i64| r.min(left)));
        }
    }
    if counting && !deleting {
        let want = owner.replicas().max(0) as usize;
        if active.len() < want {
            plan.create = (want - active.len()).min(BURST);
        } else if active.len() > want {
            let mut victims = active.clone();
            victims.sort_by_key(|p| podutil::deletion_rank(p));
            plan.delete = victims
                .iter()
                .take((active.len() - want).min(BURST))
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        p.metadata.uid.clone().unwrap_or_default(),
                    )
                })
                .collect();
        }
    }
    plan
}

/// The status to write (as JSON) for `counts`, keeping conditions.
pub fn status_for(
    counts: Counts,
    generation: Option<i64>,
    failure: Option<&str>,
    old: &Value,
) -> Value {
    let mut conditions: Vec<Value> = old
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some("ReplicaFailure"))
        .collect();
    if let Some(message) = failure {
        let existing = old
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure"))
            });
        let since = existing
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(Timestamp::now().to_string()));
        conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": message,
            "lastTransitionTime": since,
        }));
    }
    let mut status = json!({
        "replicas": counts.replicas,
        "fullyLabeledReplicas": counts.fully_labeled,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "observedGeneration": generation.unwrap_or(0),
    });
    if !conditions.is_empty() {
        status["conditions"] = Value::Array(conditions);
    }
    status
}

/// Whether `new` differs from the stored status (zero counts are omitted
/// in stored JSON).
fn status_differs(old: &Value, new: &Value) -> bool {
    let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    [
        "replicas",
        "fullyLabeledReplicas",
        "readyReplicas",
        "availableReplicas",
        "observedGeneration",
    ]
    .iter()
    .any(|k| int(old, k) != int(new, k))
        || old.get("conditions").cloned().unwrap_or(Value::Null)
            != new.get("conditions").cloned().unwrap_or(Value::Null)
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    start_kind::<ReplicaSet>(ctx, set);
    start_kind::<ReplicationController>(ctx, set);
}

struct Controller<O: ReplicaOwner> {
    client: kube::Client,
    owners: kube::runtime::reflector::Store<O>,
    pods: kube::runtime::reflector::Store<Pod>,
    expectations: Expectations,
    recorder: runtime::Recorder,
    /// The last creation error per owner key, for ReplicaFailure.
    failures: std::sync::Mutex<BTreeMap<String, String>>,
}

fn start_kind<O: ReplicaOwner>(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let owners_inf = ctx.informers.get::<O>();
    let pods_inf = ctx.informers.get::<Pod>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller::<O> {
        client: ctx.client.clone(),
        owners: owners_inf.store(),
        pods: pods_inf.store(),
        expectations: Expectations::new(),
        recorder: ctx.recorder(O::COMPONENT),
        failures: Default::default(),
    });
    {
        let q = queue.clone();
        let c2 = c.clone();
        owners_inf.on_change(move |ch: &Change<O>| {
            let key = key_of(ch.object().meta());
            if let Change::Deleted(_) = ch {
                c2.expectations.forget(&key);
            }
            q.add(key);
        });
    }
    {
        let q = queue.clone();
        let c2 = c.clone();
        pods_inf.on_change(move |ch: &Change<Pod>| {
            podutil::route_pod_change(
                &O::kind(&()),
                ch,
                &c2.expectations,
                |p| c2.matching_owners(p),
                |k| q.add(k),
            );
        });
    }
    let (oi, pi) = (owners_inf.clone(), pods_inf.clone());
    set.spawn(async move {
        oi.wait_synced().await;
        pi.wait_synced().await;
        run_workers(queue, 4, O::COMPONENT, move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl<O: ReplicaOwner> Controller<O> {
    fn matching_owners(&self, pod: &Pod) -> Vec<String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = podutil::labels(&pod.metadata);
        self.owners
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .filter(|o| o.selector().is_some_and(|s| s.matches(&labels)))
            .map(|o| key_of(o.meta()))
            .collect()
    }

    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(owner) = self
            .owners
            .get(&kube::runtime::reflector::ObjectRef::new(name).within(ns))
        else {
            self.expectations.forget(key);
            return Ok(Next::Done);
        };
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let counting = self.expectations.satisfied(key);
        let plan = plan(owner.as_ref(), &pods, Timestamp::now(), counting);
        let pod_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let meta = owner.meta();
        let controller_ref = podutil::controller_ref(&O::api_version(&()), &O::kind(&()), meta);
        for (pod, uid) in &plan.adopt {
            let patch = json!({
                "metadata": {
                    "ownerReferences": [controller_ref],
                    "uid": uid,
                }
            });
            match pod_api
                .patch(pod, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        for (pod, uid) in &plan.release {
            let patch = json!({
                "metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": meta.uid}],
                    "uid": uid,
                }
            });
            match pod_api
                .patch(pod, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut failure: Option<String> = self.failures.lock().unwrap().get(key).cloned();
        if plan.create > 0 {
            if let Some(template) = owner.template() {
                self.expectations.expect(key, plan.create as i64, 0);
                let prefix = format!("{name}-");
                let mut left = plan.create;
                let mut batch = 1usize;
                let mut created = 0usize;
                let mut error: Option<kube::Error> = None;
                while left > 0 && error.is_none() {
                    let n = batch.min(left);
                    let results = futures::future::join_all((0..n).map(|_| {
                        let pod = podutil::pod_from_template(
                            template,
                            ns,
                            &prefix,
                            controller_ref.clone(),
                        );
                        let api = pod_api.clone();
                        async move { api.create(&PostParams::default(), &pod).await }
                    }))
                    .await;
                    for r in results {
                        match r {
                            Ok(p) => {
                                created += 1;
                                self.recorder.normal(
                                    owner.as_ref(),
                                    "SuccessfulCreate",
                                    format!("Created pod: {}", p.metadata.name.unwrap_or_default()),
                                );
                            }
                            Err(e) => {
                                self.expectations.creation_observed(key);
                                self.recorder.warning(
                                    owner.as_ref(),
                                    "FailedCreate",
                                    format!("Error creating: {}", error_text(&e)),
                                );
                                if error.is_none() {
                                    error = Some(e);
                                }
                            }
                        }
                    }
                    left -= n;
                    batch *= 2;
                }
                // Creations never attempted will never be observed.
                for _ in 0..left {
                    self.expectations.creation_observed(key);
                }
                let _ = created;
                match &error {
                    Some(e) => {
                        failure = Some(error_text(e));
                        self.failures
                            .lock()
                            .unwrap()
                            .insert(key.to_owned(), error_text(e));
                    }
                    None => {
                        failure = None;
                        self.failures.lock().unwrap().remove(key);
                    }
                }
            }
        } else if plan.delete.is_empty() && counting && failure.is_some() {
            failure = None;
            self.failures.lock().unwrap().remove(key);
        }
        if !plan.delete.is_empty() {
            self.expectations.expect(key, 0, plan.delete.len() as i64);
            podutil::delete_pods(
                &pod_api,
                &plan.delete,
                key,
                &self.expectations,
                &self.recorder,
                owner.as_ref(),
            )
            .await;
        }
        let old = owner.status_json();
        let status = status_for(plan.counts, meta.generation, failure.as_deref(), &old);
        if status_differs(&old, &status) {
            crate::write_status::<O>(&self.client, ns, name, &status).await?;
        }
        Ok(match plan.recheck_in {
            Some(s) => Next::After(std::time::Duration::from_secs(s.max(1) as u64)),
            None => Next::Done,
        })
    }
}

pub(crate) fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Name helper for tests and other controllers.
pub fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_string(), "web".to_string()),
                                ("tier".to_string(), "fe".to_string()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
            }),
            status: None,
        }
    }

    /// name, labels, owner uid (None: orphan; Some(""): other controller),
    /// phase, ready since (seconds), node.
    fn pod(
        name: &str,
        labels: &[(&str, &str)],
        owner: Option<&str>,
        phase: &str,
        ready: Option<i64>,
    ) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "x".into(),
                        uid: if uid.is_empty() {
                            "other".into()
                        } else {
                            uid.into()
                        },
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                creation_timestamp: Some(Time(Timestamp::from_second(10).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    const WEB: &[(&str, &str)] = &[("app", "web"), ("tier", "fe")];
    const PARTIAL: &[(&str, &str)] = &[("app", "web")];
    const OTHER: &[(&str, &str)] = &[("app", "db")];

    #[test]
    fn plans() {
        let now = Timestamp::from_second(100).unwrap();
        struct Case {
            name: &'static str,
            replicas: i32,
            min_ready: i32,
            pods: Vec<Arc<Pod>>,
            counting: bool,
            create: usize,
            delete: Vec<&'static str>,
            adopt: Vec<&'static str>,
            release: Vec<&'static str>,
            counts: Counts,
        }
        let c = |replicas, ready, avail| Counts {
            replicas,
            fully_labeled: replicas,
            ready,
            available: avail,
        };
        let cases = vec![
            Case {
                name: "empty: create all",
                replicas: 3,
                min_ready: 0,
                pods: vec![],
                counting: true,
                create: 3,
                delete: vec![],
                adopt: vec![],
                release: vec![],
                counts: c(0, 0, 0),
            },
            Case {
                name: "expectations unmet: no creation",
                replicas: 3,
                min_ready: 0,
                pods: vec![],
                counting: false,
                create: 0,
                delete: vec![],
                adopt: vec![],
                release: vec![],
                counts: c(0, 0, 0),
            },
            Case {
                name: "one missing, orphan adopted, other's pod ignored",
                replicas: 3,
                min_ready: 0,
                pods: vec![
                    pod("a", WEB, Some("rs-uid"), "Running", Some(50)),
                    pod("orphan", WEB, None, "Running", None),
                    pod("foreign", WEB, Some(""), "Running", Some(50)),
                    pod("unrelated", OTHER, None, "Running", None),
                ],
                counting: true,
                create: 1,
                delete: vec![],
                adopt: vec!["orphan"],
                release: vec![],
                counts: c(2, 1, 1),
            },
            Case {
                name: "surplus: not-ready deleted before ready; finished pods do not count",
                replicas: 1,
                min_ready: 0,
                pods: vec![
                    pod("ready", WEB, Some("rs-uid"), "Running", Some(50)),
                    pod("pending", WEB, Some("rs-uid"), "Pending", None),
                    pod("running", WEB, Some("rs-uid"), "Running", None),
                    pod("done", WEB, Some("rs-uid"), "Succeeded", None),
                ],
                counting: true,
                create: 0,
                delete: vec!["pending", "running"],
                adopt: vec![],
                release: vec![],
                counts: c(3, 1, 1),
            },
            Case {
                name: "owned pod relabelled is released",
                replicas: 1,
                min_ready: 0,
                pods: vec![
                    pod("a", WEB, Some("rs-uid"), "Running", Some(50)),
                    pod("moved", OTHER, Some("rs-uid"), "Running", Some(50)),
                ],
                counting: true,
                create: 0,
                delete: vec![],
                adopt: vec![],
                release: vec!["moved"],
                counts: c(1, 1, 1),
            },
            Case {
                name: "minReadySeconds: ready but not yet available",
                replicas: 2,
                min_ready: 30,
                pods: vec![
                    pod("old", WEB, Some("rs-uid"), "Running", Some(10)),
                    pod("new", WEB, Some("rs-uid"), "Running", Some(90)),
                ],
                counting: true,
                create: 0,
                delete: vec![],
                adopt: vec![],
                release: vec![],
                counts: c(2, 2, 1),
            },
        ];
        for case in cases {
            let plan = plan(
                &rs(case.replicas, case.min_ready),
                &case.pods,
                now,
                case.counting,
            );
            let names =
                |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(plan.create, case.create, "{}", case.name);
            assert_eq!(names(&plan.delete), case.delete, "{}", case.name);
            assert_eq!(names(&plan.adopt), case.adopt, "{}", case.name);
            assert_eq!(names(&plan.release), case.release, "{}", case.name);
            assert_eq!(plan.counts, case.counts, "{}", case.name);
        }
        // Partially labelled pods count as replicas, not fully labelled.
        let plan = plan(
            &rs(1, 0),
            &[pod("p", PARTIAL, Some("rs-uid"), "Running", None)],
            now,
            true,
        );
        assert_eq!(plan.counts.replicas, 1);
        assert_eq!(plan.counts.fully_labeled, 0);
        // The recheck comes when the new pod becomes available.
        let plan = plan_for_recheck(now);
        assert_eq!(plan.recheck_in, Some(20));
    }

    fn plan_for_recheck(now: Timestamp) -> Plan {
        plan(
            &rs(1, 30),
            &[pod("new", WEB, Some("rs-uid"), "Running", Some(90))],
            now,
            true,
        )
    }

    #[test]
    fn rc_selector_defaults_to_template_labels() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}}}
        }))
        .unwrap();
        let sel = rc.selector().unwrap();
        assert!(sel.matches(&[("app".to_string(), "x".to_string())].into()));
        assert!(!sel.matches(&BTreeMap::new()));
    }

    #[test]
    fn status_and_failure_condition() {
        let counts = Counts {
            replicas: 2,
            fully_labeled: 2,
            ready: 1,
            available: 1,
        };
        let s = status_for(counts, Some(3), Some("quota exceeded"), &Value::Null);
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["conditions"][0]["type"], "ReplicaFailure");
        assert!(status_differs(&Value::Null, &s));
        let cleared = status_for(counts, Some(3), None, &s);
        assert!(cleared.get("conditions").is_none());
        assert!(!status_differs(&cleared, &cleared.clone()));
    }
}
