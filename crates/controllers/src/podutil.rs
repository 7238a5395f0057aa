//! Pod facts controllers share: activity, readiness, availability,
//! controller references, pods from templates, and the order in which
//! surplus pods are deleted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// Not finished and not being deleted: counts towards replicas.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// When the Ready condition became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => (now.as_second() - since.as_second()) >= i64::from(min_ready_seconds),
    }
}

/// The seconds until a ready pod becomes available (None: never/already).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    let since = ready_since(pod)??;
    let left = i64::from(min_ready_seconds) - (now.as_second() - since.as_second());
    (left > 0).then_some(left)
}

/// The ownerReference with controller=true.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller ownerReference to `owner`.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod from a template, owned by `owner` (generateName `PREFIX-`).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether a label selector (as typed in the object) matches `labels`.
/// An invalid selector matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    match serde_json::to_value(selector)
        .ok()
        .and_then(|v| api::selector::from_label_selector_json(&v).ok())
    {
        Some(s) => s.matches(labels),
        None => false,
    }
}

/// Whether a selector selects nothing or everything-by-accident: Kubernetes
/// never adopts with an empty selector.
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Sort key for choosing which pods to delete first (smallest first), as
/// Kubernetes' ActivePods ordering: unassigned before assigned, Pending
/// before Unknown before Running, not ready before ready, ready for less
/// time before longer, more restarts before fewer, newer before older.
pub fn deletion_rank(pod: &Pod) -> (u8, u8, u8, i64, i64, i64) {
    let assigned = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = ready_since(pod);
    let ready_at = ready.flatten().map(|t| t.as_second()).unwrap_or(0);
    let restarts: i64 = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| i64::from(c.restart_count)).sum())
        .unwrap_or(0);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (
        assigned as u8,
        phase,
        ready.is_some() as u8,
        // Ready more recently (larger timestamp) goes first.
        -ready_at,
        -restarts,
        -created,
    )
}

/// Routes a pod change to the keys of the controllers of `kind` that must
/// look again, as every pod-owning controller does: the owner named by the
/// pod's controller reference (old and new, when it changed), or, for an
/// orphan, every controller whose selector matches it (`matching`).
/// Creations and deletions are counted against the owner's expectations
/// (a graceful delete counts when it starts).
pub fn route_pod_change(
    kind: &str,
    change: &runtime::Change<Pod>,
    expectations: &runtime::Expectations,
    matching: impl Fn(&Pod) -> Vec<String>,
    mut add: impl FnMut(String),
) {
    use runtime::Change;
    let owner = |p: &Pod| {
        controller_of(&p.metadata)
            .filter(|r| r.kind == kind)
            .map(|r| {
                format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    r.name
                )
            })
    };
    match change {
        Change::Added(pod) => match owner(pod) {
            Some(k) => {
                expectations.creation_observed(&k);
                add(k);
            }
            None => matching(pod).into_iter().for_each(&mut add),
        },
        Change::Updated { old, new } => {
            let (ok, nk) = (owner(old), owner(new));
            if new.metadata.deletion_timestamp.is_some()
                && old.metadata.deletion_timestamp.is_none()
            {
                if let Some(k) = &nk {
                    expectations.deletion_observed(k);
                }
            }
            if ok != nk {
                if let Some(k) = ok.clone() {
                    add(k);
                }
            }
            match nk {
                Some(k) => add(k),
                None => {
                    if old.metadata.labels != new.metadata.labels || ok.is_some() {
                        matching(new).into_iter().for_each(&mut add);
                    }
                }
            }
        }
        Change::Deleted(pod) => {
            if let Some(k) = owner(pod) {
                if pod.metadata.deletion_timestamp.is_none() {
                    expectations.deletion_observed(&k);
                }
                add(k);
            }
        }
    }
}

/// Deletes pods by (name, uid) concurrently, uid as precondition, with
/// SuccessfulDelete/FailedDelete events on `owner`. A failed delete will
/// never be observed, so it comes off `key`'s expectations. Returns the
/// first failure other than 404.
pub async fn delete_pods<K: kube::Resource<DynamicType = ()>>(
    api: &kube::Api<Pod>,
    pods: &[(String, String)],
    key: &str,
    expectations: &runtime::Expectations,
    recorder: &runtime::Recorder,
    owner: &K,
) -> Option<kube::Error> {
    use kube::api::{DeleteParams, Preconditions};
    let results = futures::future::join_all(pods.iter().map(|(pod, uid)| {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        async move { (pod, api.delete(pod, &dp).await) }
    }))
    .await;
    let mut first = None;
    for (pod, r) in results {
        match r {
            Ok(_) => recorder.normal(owner, "SuccessfulDelete", format!("Deleted pod: {pod}")),
            Err(e) => {
                expectations.deletion_observed(key);
                if !runtime::is_not_found(&e) {
                    recorder.warning(
                        owner,
                        "FailedDelete",
                        format!("Error deleting: {}", crate::replicaset::error_text(&e)),
                    );
                    first.get_or_insert(e);
                }
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready_at: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(1000).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deletion_order() {
        let mut pods = [
            pod("ready-old", Some("n"), "Running", Some(100)),
            pod("ready-new", Some("n"), "Running", Some(200)),
            pod("running-not-ready", Some("n"), "Running", None),
            pod("pending-assigned", Some("n"), "Pending", None),
            pod("unassigned", None, "Pending", None),
        ];
        pods.sort_by_key(deletion_rank);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "unassigned",
                "pending-assigned",
                "running-not-ready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn availability() {
        let now = Timestamp::from_second(1000).unwrap();
        let cases = [
            (None, 0, false, None),
            (Some(990), 0, true, None),
            (Some(990), 5, true, None),
            (Some(990), 30, false, Some(20)),
        ];
        for (ready_at, min_ready, available, left) in cases {
            let p = pod("p", Some("n"), "Running", ready_at);
            assert_eq!(
                is_available(&p, min_ready, now),
                available,
                "{ready_at:?} {min_ready}"
            );
            assert_eq!(
                available_in(&p, min_ready, now),
                left,
                "{ready_at:?} {min_ready}"
            );
        }
        assert!(is_active(&pod("p", None, "Running", None)));
        assert!(!is_active(&pod("p", None, "Succeeded", None)));
    }
}
