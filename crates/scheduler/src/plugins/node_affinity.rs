//! NodeAffinity: nodeSelector and required node affinity (labels and
//! matchFields metadata.name) filter; preferred terms score by weight.

use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    default_normalize, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreScorePlugin,
    ScorePlugin, Status,
};
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        super::names::NODE_AFFINITY
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> Status {
        if pod.node_affinity.is_empty() {
            return Status::skip();
        }
        // A required term with an empty list of terms matches no node.
        if pod
            .node_affinity
            .terms
            .as_ref()
            .is_some_and(|t| t.is_empty())
        {
            return Status::unresolvable(REASON);
        }
        Status::success()
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if pod.node_affinity.matches_labels(&node.name, node.labels()) {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &Snapshot,
    ) -> Status {
        if pod.preferred_node_affinity.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        pod.preferred_node_affinity
            .iter()
            .filter(|(_, t)| t.matches(&node.name, node.labels()))
            .map(|(w, _)| *w as i64)
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> k8s_openapi::api::core::v1::Node {
        with(
            &node(name, "1", "1Gi", 10),
            json!({"metadata": {"labels": labels}}),
        )
    }

    fn snap() -> Snapshot {
        snapshot(&[
            (
                labelled("a", json!({"zone": "z1", "disk": "ssd", "cores": "8"})),
                vec![],
            ),
            (labelled("b", json!({"zone": "z2", "cores": "2"})), vec![]),
            (labelled("c", json!({})), vec![]),
        ])
    }

    fn required(terms: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        with(
            &pod("p", "0", "0"),
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}),
        )
    }

    #[test]
    fn filter_table() {
        let r = REASON;
        let cases = [
            ("nothing", pod("p", "0", "0"), vec!["ok", "ok", "ok"]),
            (
                "nodeSelector",
                with(
                    &pod("p", "0", "0"),
                    json!({"spec": {"nodeSelector": {"zone": "z2"}}}),
                ),
                vec![r, "ok", r],
            ),
            (
                "In",
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}]),
                ),
                vec!["ok", "ok", r],
            ),
            (
                "NotIn",
                required(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1"]}]}]),
                ),
                vec![r, "ok", "ok"],
            ),
            (
                "Exists",
                required(json!([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}])),
                vec!["ok", r, r],
            ),
            (
                "DoesNotExist",
                required(
                    json!([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}]),
                ),
                vec![r, "ok", "ok"],
            ),
            (
                "Gt",
                required(
                    json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
                ),
                vec!["ok", r, r],
            ),
            (
                "Lt",
                required(
                    json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]),
                ),
                vec![r, "ok", r],
            ),
            (
                "terms are ORed",
                required(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}])),
                vec!["ok", r, "ok"],
            ),
            (
                "expressions are ANDed",
                required(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["z1", "z2"]},
                    {"key": "disk", "operator": "Exists"}]}])),
                vec!["ok", r, r],
            ),
            (
                "empty term matches nothing",
                required(json!([{}])),
                vec![r, r, r],
            ),
            ("no terms", required(json!([])), vec![r, r, r]),
        ];
        let s = snap();
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&NodeAffinity, &pod_info(&p), &s)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn score_table() {
        let preferred = |terms: serde_json::Value| {
            with(
                &pod("p", "0", "0"),
                json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}}}),
            )
        };
        let cases = [
            ("none", pod("p", "0", "0"), vec![0, 0, 0]),
            (
                "weights add up",
                preferred(json!([
                    {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
                    {"weight": 6, "preference": {"matchExpressions": [{"key": "cores", "operator": "Exists"}]}}])),
                vec![100, 75, 0],
            ),
        ];
        let s = snap();
        for (name, p, want) in cases {
            assert_eq!(score_all(&NodeAffinity, &pod_info(&p), &s), want, "{name}");
        }
    }
}
