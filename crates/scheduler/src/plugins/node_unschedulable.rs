//! NodeUnschedulable: nodes marked spec.unschedulable (cordoned) take only
//! pods tolerating the node.kubernetes.io/unschedulable:NoSchedule taint.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::podinfo::{tolerates, PodInfo};

pub const REASON: &str = "node(s) were unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        super::names::NODE_UNSCHEDULABLE
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if !node.unschedulable() {
            return Status::success();
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if pod.tolerations().iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use serde_json::json;

    #[test]
    fn table() {
        let cordoned = with(
            &node("a", "1", "1Gi", 10),
            json!({"spec": {"unschedulable": true}}),
        );
        let snap = snapshot(&[(node("n", "1", "1Gi", 10), vec![]), (cordoned, vec![])]);
        let tolerant = with(
            &pod("p", "0", "0"),
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let cases = [
            ("plain pod", pod("p", "0", "0"), vec!["ok", REASON]),
            ("tolerating pod", tolerant, vec!["ok", "ok"]),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_only(&NodeUnschedulable, &pod_info(&p), &snap)),
                want,
                "{name}"
            );
        }
    }
}
