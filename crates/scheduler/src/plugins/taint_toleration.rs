//! TaintToleration: a node's NoSchedule/NoExecute taints must be tolerated
//! (filter); untolerated PreferNoSchedule taints lower the score.

use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    default_normalize, CycleState, FilterPlugin, Plugin, PreScorePlugin, ScorePlugin, Status,
};
use crate::podinfo::{tolerates, untolerated, PodInfo};

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        super::names::TAINT_TOLERATION
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

/// Kubernetes' message for an untolerated taint.
pub fn reason(key: &str, value: &str) -> String {
    format!("node(s) had untolerated taint {{{key}: {value}}}")
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        match untolerated(
            node.taints(),
            pod.tolerations(),
            &["NoSchedule", "NoExecute"],
        ) {
            None => Status::success(),
            Some(t) => Status::unresolvable(reason(&t.key, t.value.as_deref().unwrap_or(""))),
        }
    }
}

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        _: &mut CycleState,
        _: &PodInfo,
        nodes: &[&NodeInfo],
        _: &Snapshot,
    ) -> Status {
        let any = nodes
            .iter()
            .any(|n| n.taints().iter().any(|t| t.effect == "PreferNoSchedule"));
        if any {
            Status::success()
        } else {
            Status::skip()
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let tolerations: Vec<_> = pod
            .tolerations()
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .collect();
        node.taints()
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !tolerations.iter().any(|t| tolerates(t, taint))
            })
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, _: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> k8s_openapi::api::core::v1::Node {
        with(
            &node(name, "1", "1Gi", 10),
            json!({"spec": {"taints": taints}}),
        )
    }

    #[test]
    fn filter_table() {
        let snap = snapshot(&[
            (node("clean", "1", "1Gi", 10), vec![]),
            (
                tainted(
                    "gpu",
                    json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]),
                ),
                vec![],
            ),
            (
                tainted(
                    "down",
                    json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
                ),
                vec![],
            ),
            (
                tainted("soft", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
                vec![],
            ),
        ]);
        let gpu = reason("gpu", "true");
        let down = reason("node.kubernetes.io/unreachable", "");
        let tol =
            |t: serde_json::Value| with(&pod("p", "0", "0"), json!({"spec": {"tolerations": t}}));
        let cases = [
            (
                "no tolerations",
                pod("p", "0", "0"),
                vec!["ok", &gpu, &down, "ok"],
            ),
            (
                "gpu equal",
                tol(json!([{"key": "gpu", "value": "true"}])),
                vec!["ok", "ok", &down, "ok"],
            ),
            (
                "gpu wrong value",
                tol(json!([{"key": "gpu", "value": "no"}])),
                vec!["ok", &gpu, &down, "ok"],
            ),
            (
                "exists all",
                tol(json!([{"operator": "Exists"}])),
                vec!["ok", "ok", "ok", "ok"],
            ),
            (
                "wrong effect",
                tol(
                    json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]),
                ),
                vec!["ok", &gpu, &down, "ok"],
            ),
        ];
        for (name, p, want) in cases {
            let got = verdicts(&filter_only(&TaintToleration, &pod_info(&p), &snap));
            assert_eq!(got, want, "{name}");
        }
        let st = TaintToleration.filter(
            &CycleState::default(),
            &pod_info(&pod("p", "0", "0")),
            &snap.nodes[2],
            &snap,
        );
        assert_eq!(
            st.code,
            crate::framework::Code::UnschedulableAndUnresolvable
        );
    }

    #[test]
    fn score_table() {
        let snap = snapshot(&[
            (node("clean", "1", "1Gi", 10), vec![]),
            (
                tainted("one", json!([{"key": "a", "effect": "PreferNoSchedule"}])),
                vec![],
            ),
            (
                tainted(
                    "two",
                    json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]),
                ),
                vec![],
            ),
        ]);
        let cases = [
            ("no tolerations", pod("p", "0", "0"), vec![100, 50, 0]),
            (
                "tolerates a",
                with(
                    &pod("p", "0", "0"),
                    json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
                ),
                vec![100, 100, 0],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                score_all(&TaintToleration, &pod_info(&p), &snap),
                want,
                "{name}"
            );
        }
    }
}
