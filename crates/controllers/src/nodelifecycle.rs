//! Node lifecycle, as Kubernetes' node-lifecycle controller and taint
//! eviction do it:
//!
//! - every 5 s each node's health is judged from its heartbeats (the Lease
//!   in kube-node-lease and the Ready condition's lastHeartbeatTime), as
//!   seen by *this* controller's clock: a node silent for longer than the
//!   grace period (40 s) gets its conditions set to Unknown ("Kubelet
//!   stopped posting node status.") and its pods marked not ready;
//! - taints follow the Ready condition: `node.kubernetes.io/unreachable`
//!   (Unknown) or `node.kubernetes.io/not-ready` (False), each NoSchedule
//!   and NoExecute, and `node.kubernetes.io/unschedulable` NoSchedule for
//!   cordoned nodes; they go away when the node is healthy again;
//! - NoSchedule taints follow the other conditions (TaintNodesByCondition):
//!   MemoryPressure, DiskPressure, PIDPressure and NetworkUnavailable True
//!   give `node.kubernetes.io/memory-pressure`, `disk-pressure`,
//!   `pid-pressure` and `network-unavailable`;
//! - pods on a node with NoExecute taints they do not tolerate are
//!   deleted at once, those tolerating for tolerationSeconds when that
//!   time has passed since the taint's timeAdded (the API server gives
//!   every pod 300 s tolerations for not-ready/unreachable). Their
//!   controllers then replace them elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use runtime::Change;
use serde_json::json;

use crate::podutil;
use crate::Ctx;

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Conditions whose True status taints the node NoSchedule.
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", MEMORY_PRESSURE),
    ("DiskPressure", DISK_PRESSURE),
    ("PIDPressure", PID_PRESSURE),
    ("NetworkUnavailable", NETWORK_UNAVAILABLE),
];
const MANAGED: [&str; 7] = [
    UNREACHABLE,
    NOT_READY,
    UNSCHEDULABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    PID_PRESSURE,
    NETWORK_UNAVAILABLE,
];
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The node's Ready condition status ("True", "False", "Unknown", or None).
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The condition types that are True on `node` (besides Ready).
pub fn true_conditions(node: &Node) -> Vec<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.type_ != "Ready" && c.status == "True")
        .map(|c| c.type_.as_str())
        .collect()
}

/// The taints the controller manages that `node` should carry, given its
/// Ready status, whether it is cordoned and its other True conditions.
pub fn wanted_taints(
    ready: Option<&str>,
    unschedulable: bool,
    conditions: &[&str],
) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match ready {
        Some("False") => {
            out.push((NOT_READY, "NoSchedule"));
            out.push((NOT_READY, "NoExecute"));
        }
        Some("Unknown") => {
            out.push((UNREACHABLE, "NoSchedule"));
            out.push((UNREACHABLE, "NoExecute"));
        }
        _ => {}
    }
    if unschedulable {
        out.push((UNSCHEDULABLE, "NoSchedule"));
    }
    for (condition, taint) in CONDITION_TAINTS {
        if conditions.contains(&condition) {
            out.push((taint, "NoSchedule"));
        }
    }
    out
}

/// The node's taints with the managed ones replaced by `wanted` (keeping
/// timeAdded of those already there). None when nothing changes.
pub fn reconcile_taints(
    current: &[Taint],
    wanted: &[(&str, &str)],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let managed = |t: &Taint| MANAGED.contains(&t.key.as_str());
    let mut out: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    for (key, effect) in wanted {
        match current
            .iter()
            .find(|t| t.key == *key && t.effect == *effect)
        {
            Some(t) => out.push(t.clone()),
            None => out.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                time_added: (*effect == "NoExecute").then_some(Time(now)),
                value: None,
            }),
        }
    }
    let same = out.len() == current.len() && out.iter().all(|t| current.contains(t));
    (!same).then_some(out)
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => tol
            .key
            .as_deref()
            .is_none_or(|k| k.is_empty() || k == taint.key),
        _ => {
            tol.key.as_deref() == Some(taint.key.as_str())
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// When a pod on a node with these taints must go: Some(None) now,
/// Some(Some(t)) at t, None never.
pub fn eviction_time(pod: &Pod, taints: &[Taint]) -> Option<Option<Timestamp>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    let mut any = false;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        any = true;
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(None);
        }
        // Tolerated for the shortest of the matching tolerations; forever
        // if one has no limit.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let secs = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint
            .time_added
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let when = Timestamp::from_second(added.as_second() + secs).unwrap_or(added);
        at = Some(at.map_or(when, |a: Timestamp| a.min(when)));
    }
    if !any {
        return None;
    }
    at.map(Some)
}

struct Monitor {
    client: kube::Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    grace: Duration,
    /// node -> (heartbeat signature, when we saw it change)
    seen: Mutex<HashMap<String, (String, Instant)>>,
    recorder: runtime::Recorder,
    /// Woken when a node's taints no longer match its conditions (a
    /// pressure condition came or went): taint at once, as Kubernetes'
    /// controller does on node updates, not at the next period.
    retaint: tokio::sync::Notify,
}

/// Whether `node`'s managed taints differ from what its conditions call
/// for.
fn taints_stale(node: &Node) -> bool {
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let wanted = wanted_taints(ready_status(node), unschedulable, &true_conditions(node));
    reconcile_taints(&current, &wanted, Timestamp::now()).is_some()
}

fn heartbeat(node: &Node, lease: Option<&Lease>) -> String {
    let lease_time = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let ready_beat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    format!("{lease_time}|{ready_beat}")
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>, grace: Duration) {
    let node_inf = ctx.informers.get::<Node>();
    let lease_inf = ctx.informers.get::<Lease>();
    let pod_inf = ctx.informers.get::<Pod>();
    let m = Arc::new(Monitor {
        client: ctx.client.clone(),
        nodes: node_inf.store(),
        pods: pod_inf.store(),
        grace,
        seen: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("node-controller"),
        retaint: tokio::sync::Notify::new(),
    });
    let leases = lease_inf.store();
    {
        let m2 = m.clone();
        let leases = leases.clone();
        node_inf.on_change(move |ch: &Change<Node>| {
            let node = ch.object();
            let name = node.metadata.name.clone().unwrap_or_default();
            if let Change::Deleted(_) = ch {
                m2.seen.lock().unwrap().remove(&name);
                return;
            }
            let lease = leases
                .get(&kube::runtime::reflector::ObjectRef::new(&name).within("kube-node-lease"));
            m2.observe(&name, heartbeat(node, lease.as_deref()));
            if taints_stale(node) {
                m2.retaint.notify_one();
            }
        });
    }
    {
        let m2 = m.clone();
        let nodes = node_inf.store();
        lease_inf.on_change(move |ch: &Change<Lease>| {
            let lease = ch.object();
            if lease.metadata.namespace.as_deref() != Some("kube-node-lease")
                || matches!(ch, Change::Deleted(_))
            {
                return;
            }
            let name = lease.metadata.name.clone().unwrap_or_default();
            if let Some(node) = nodes.get(&kube::runtime::reflector::ObjectRef::new(&name)) {
                m2.observe(&name, heartbeat(&node, Some(lease)));
            }
        });
    }
    set.spawn(async move {
        node_inf.wait_synced().await;
        lease_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        loop {
            if let Err(e) = m.pass().await {
                tracing::debug!(error = %e, "node lifecycle pass failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(MONITOR_PERIOD) => {}
                _ = m.retaint.notified() => {}
            }
        }
    });
}

impl Monitor {
    fn observe(&self, node: &str, signature: String) {
        let mut seen = self.seen.lock().unwrap();
        match seen.get(node) {
            Some((s, _)) if *s == signature => {}
            _ => {
                seen.insert(node.to_owned(), (signature, Instant::now()));
            }
        }
    }

    async fn pass(&self) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let node_api: Api<Node> = Api::all(self.client.clone());
        for node in self.nodes.state() {
            let name = node.metadata.name.clone().unwrap_or_default();
            let silent = {
                let mut seen = self.seen.lock().unwrap();
                let entry = seen
                    .entry(name.clone())
                    .or_insert_with(|| (String::new(), Instant::now()));
                entry.1.elapsed() > self.grace
            };
            let mut ready = ready_status(&node).map(str::to_owned);
            if silent && ready.as_deref() != Some("Unknown") {
                self.mark_unknown(&node_api, &node, now).await?;
                ready = Some("Unknown".into());
                self.recorder.normal(
                    node.as_ref(),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
            // A node just marked Unknown has no True conditions left.
            let conditions = if silent {
                Vec::new()
            } else {
                true_conditions(&node)
            };
            let current = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let taints = match reconcile_taints(
                &current,
                &wanted_taints(ready.as_deref(), unschedulable, &conditions),
                now,
            ) {
                Some(new) => {
                    let patch = json!({"spec": {"taints": new}, "metadata": {"resourceVersion": node.metadata.resource_version}});
                    match node_api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if runtime::is_conflict(&e) || runtime::is_not_found(&e) => continue,
                        Err(e) => return Err(e),
                    }
                    new
                }
                None => current,
            };
            self.evict(&name, &taints, now).await?;
        }
        Ok(())
    }

    async fn mark_unknown(
        &self,
        api: &Api<Node>,
        node: &Node,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            if !conditions.iter().any(|c| c.type_ == t) {
                conditions.push(k8s_openapi::api::core::v1::NodeCondition {
                    type_: t.into(),
                    ..Default::default()
                });
            }
        }
        for c in conditions.iter_mut() {
            if ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                .contains(&c.type_.as_str())
                && c.status != "Unknown"
            {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                if c.last_heartbeat_time.is_none() {
                    c.last_heartbeat_time = Some(Time(now));
                }
            }
        }
        let patch = json!({"status": {"conditions": conditions}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if runtime::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        // Its pods are not ready any more.
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(name.as_str())
                || podutil::is_terminal(&pod)
            {
                continue;
            }
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let mut changed = false;
            for c in conditions
                .iter_mut()
                .filter(|c| c.type_ == "Ready" || c.type_ == "ContainersReady")
            {
                if c.status != "False" {
                    c.status = "False".into();
                    c.last_transition_time = Some(Time(now));
                    if c.type_ == "Ready" {
                        c.reason = Some("NodeNotReady".into());
                    }
                    changed = true;
                }
            }
            if !changed {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let patch = json!({"status": {"conditions": conditions}});
            match api
                .patch_status(
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn evict(&self, node: &str, taints: &[Taint], now: Timestamp) -> Result<(), kube::Error> {
        if !taints.iter().any(|t| t.effect == "NoExecute") {
            return Ok(());
        }
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node)
                || pod.metadata.deletion_timestamp.is_some()
                || podutil::is_terminal(&pod)
            {
                continue;
            }
            let due = match eviction_time(&pod, taints) {
                Some(None) => true,
                Some(Some(at)) => at <= now,
                None => false,
            };
            if !due {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            self.recorder.normal(
                pod.as_ref(),
                "TaintManagerEviction",
                format!("Marking for deletion Pod {ns}/{name}"),
            );
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(|s| Time(Timestamp::from_second(s).unwrap())),
            value: None,
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn taints_follow_readiness() {
        let now = Timestamp::from_second(100).unwrap();
        let custom = taint("dedicated", "NoSchedule", None);
        let cases: Vec<(Option<&str>, bool, Vec<Taint>, Option<Vec<&str>>)> = vec![
            (Some("True"), false, vec![], None),
            (Some("True"), false, vec![custom.clone()], None),
            (
                Some("Unknown"),
                false,
                vec![custom.clone()],
                Some(vec!["dedicated", UNREACHABLE, UNREACHABLE]),
            ),
            (
                Some("False"),
                false,
                vec![],
                Some(vec![NOT_READY, NOT_READY]),
            ),
            (
                Some("True"),
                false,
                vec![taint(UNREACHABLE, "NoExecute", Some(1))],
                Some(vec![]),
            ),
            (Some("True"), true, vec![], Some(vec![UNSCHEDULABLE])),
            (None, false, vec![], None),
        ];
        for (ready, cordoned, current, want) in cases {
            let got = reconcile_taints(&current, &wanted_taints(ready, cordoned, &[]), now);
            let keys = got
                .as_ref()
                .map(|t| t.iter().map(|t| t.key.as_str()).collect::<Vec<_>>());
            assert_eq!(keys, want, "{ready:?} {cordoned}");
        }
        // An existing taint keeps its timeAdded.
        let kept = reconcile_taints(
            &[taint(UNREACHABLE, "NoExecute", Some(5))],
            &wanted_taints(Some("Unknown"), false, &[]),
            now,
        )
        .unwrap();
        let ne = kept.iter().find(|t| t.effect == "NoExecute").unwrap();
        assert_eq!(ne.time_added.as_ref().unwrap().0.as_second(), 5);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn taints_follow_pressure_conditions() {
        let now = Timestamp::from_second(100).unwrap();
        let custom = taint("dedicated", "NoSchedule", None);
        let disk = taint(DISK_PRESSURE, "NoSchedule", None);
        // (ready, True conditions, current taints, wanted keys or None: unchanged)
        let cases: Vec<(Option<&str>, Vec<&str>, Vec<Taint>, Option<Vec<&str>>)> = vec![
            (
                Some("True"),
                vec!["MemoryPressure"],
                vec![],
                Some(vec![MEMORY_PRESSURE]),
            ),
            (
                Some("True"),
                vec!["DiskPressure"],
                vec![custom.clone()],
                Some(vec!["dedicated", DISK_PRESSURE]),
            ),
            (Some("True"), vec!["DiskPressure"], vec![disk.clone()], None),
            (
                Some("True"),
                vec![],
                vec![disk.clone(), custom.clone()],
                Some(vec!["dedicated"]),
            ),
            (
                Some("True"),
                vec!["PIDPressure"],
                vec![],
                Some(vec![PID_PRESSURE]),
            ),
            (
                Some("True"),
                vec!["NetworkUnavailable"],
                vec![],
                Some(vec![NETWORK_UNAVAILABLE]),
            ),
            (
                Some("True"),
                vec!["MemoryPressure", "DiskPressure", "PIDPressure"],
                vec![],
                Some(vec![MEMORY_PRESSURE, DISK_PRESSURE, PID_PRESSURE]),
            ),
            // Unknown conditions are not True: no pressure taints.
            (
                Some("Unknown"),
                vec![],
                vec![disk.clone()],
                Some(vec![UNREACHABLE, UNREACHABLE]),
            ),
            (
                Some("False"),
                vec!["DiskPressure"],
                vec![],
                Some(vec![NOT_READY, NOT_READY, DISK_PRESSURE]),
            ),
            // Conditions it does not know leave taints alone.
            (Some("True"), vec!["SomethingElse"], vec![], None),
        ];
        for (ready, conditions, current, want) in cases {
            let got = reconcile_taints(&current, &wanted_taints(ready, false, &conditions), now);
            let keys = got
                .as_ref()
                .map(|t| t.iter().map(|t| t.key.as_str()).collect::<Vec<_>>());
            assert_eq!(keys, want, "{ready:?} {conditions:?}");
            if let Some(new) = got {
                for t in new.iter().filter(|t| t.key.ends_with("-pressure")) {
                    assert_eq!(t.effect, "NoSchedule");
                    assert!(
                        t.time_added.is_none(),
                        "NoSchedule taints carry no timeAdded"
                    );
                }
            }
        }
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "DiskPressure", "status": "True"},
                {"type": "MemoryPressure", "status": "False"},
                {"type": "PIDPressure", "status": "Unknown"}
            ]}
        }))
        .unwrap();
        assert_eq!(true_conditions(&node), ["DiskPressure"]);
    }

    #[test]
    fn eviction_times() {
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).unwrap()
        };
        let unreachable = vec![taint(UNREACHABLE, "NoExecute", Some(1000))];
        let at = |s: i64| Some(Some(Timestamp::from_second(s).unwrap()));
        let cases = vec![
            (pod(json!([])), Some(None)),
            (
                pod(
                    json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
                ),
                at(1300),
            ),
            (
                pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}])),
                None,
            ),
            (pod(json!([{"operator": "Exists"}])), None),
            (
                pod(json!([{"key": "other", "operator": "Exists", "effect": "NoExecute"}])),
                Some(None),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                eviction_time(&p, &unreachable),
                want,
                "{:?}",
                p.spec.unwrap().tolerations
            );
        }
        assert_eq!(
            eviction_time(&pod(json!([])), &[taint("x", "NoSchedule", None)]),
            None
        );
    }
}
