//! VolumeBinding (basics): a pod's PersistentVolumeClaims must exist and be
//! bound (unbound claims wait for a binder), and the node must satisfy the
//! bound PersistentVolumes' node affinity.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{Code, CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::podinfo::{NodeTerm, PodInfo};

pub const UNBOUND_REASON: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const CONFLICT_REASON: &str = "node(s) had volume node affinity conflict";

const NAME: &str = super::names::VOLUME_BINDING;

pub struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

/// The node selector terms (ORed) of each bound volume.
struct State {
    volumes: Vec<Vec<NodeTerm>>,
}

impl PreFilterPlugin for VolumeBinding {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        if pod.pvcs.is_empty() {
            return Status::skip();
        }
        let mut volumes = Vec::new();
        for claim in &pod.pvcs {
            let Some(pvc) = snap
                .listers
                .pvcs
                .get(&ObjectRef::new(claim).within(&pod.namespace))
            else {
                return Status::unresolvable(format!(
                    "persistentvolumeclaim \"{claim}\" not found"
                ));
            };
            if pvc.metadata.deletion_timestamp.is_some() {
                return Status::unresolvable(format!(
                    "persistentvolumeclaim \"{claim}\" is being deleted"
                ));
            }
            let volume = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if volume.is_empty() {
                return Status::unresolvable(UNBOUND_REASON);
            }
            let Some(pv) = snap.listers.pvs.get(&ObjectRef::new(&volume)) else {
                return Status::unresolvable(format!("persistentvolume \"{volume}\" not found"));
            };
            if let Some(terms) = pv
                .spec
                .as_ref()
                .and_then(|s| s.node_affinity.as_ref())
                .and_then(|a| a.required.as_ref())
            {
                volumes.push(
                    terms
                        .node_selector_terms
                        .iter()
                        .map(NodeTerm::new)
                        .collect(),
                );
            }
        }
        if volumes.is_empty() {
            return Status::skip();
        }
        state.write(NAME, State { volumes });
        Status::success()
    }
}

impl FilterPlugin for VolumeBinding {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let Some(s) = state.read::<State>(NAME) else {
            return Status::success();
        };
        let labels = node.labels();
        for terms in &s.volumes {
            if !terms.iter().any(|t| t.matches(&node.name, labels)) {
                return Status::new(Code::UnschedulableAndUnresolvable, CONFLICT_REASON);
            }
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    #[test]
    fn table() {
        let mut s = snapshot(&[
            (node("a", "1", "1Gi", 10), vec![]),
            (node("b", "1", "1Gi", 10), vec![]),
        ]);
        let mut pvcs = Writer::<PersistentVolumeClaim>::default();
        for (name, vol) in [
            ("bound", Some("pv-a")),
            ("free", None),
            ("anywhere", Some("pv-any")),
        ] {
            let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"volumeName": vol}
            }))
            .unwrap();
            pvcs.apply_watcher_event(&Event::Apply(pvc));
        }
        let mut pvs = Writer::<PersistentVolume>::default();
        let pv_a: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv-a"},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}
        }))
        .unwrap();
        pvs.apply_watcher_event(&Event::Apply(pv_a));
        pvs.apply_watcher_event(&Event::Apply(
            serde_json::from_value(json!({"metadata": {"name": "pv-any"}})).unwrap(),
        ));
        s.listers.pvcs = pvcs.as_reader();
        s.listers.pvs = pvs.as_reader();
        let claim = |c: &str| {
            with(
                &pod("p", "0", "0"),
                json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": c}}]}}),
            )
        };
        let cases = [
            ("no volumes", pod("p", "0", "0"), vec!["ok", "ok"]),
            (
                "bound to a volume on a",
                claim("bound"),
                vec!["ok", CONFLICT_REASON],
            ),
            (
                "volume without affinity",
                claim("anywhere"),
                vec!["ok", "ok"],
            ),
            (
                "unbound",
                claim("free"),
                vec![UNBOUND_REASON, UNBOUND_REASON],
            ),
            (
                "missing",
                claim("nope"),
                vec!["persistentvolumeclaim \"nope\" not found"; 2],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&VolumeBinding, &pod_info(&p), &s)),
                want,
                "{name}"
            );
        }
    }
}
