//! PodTopologySpread: DoNotSchedule constraints filter (skew of matching
//! pods across the topology's domains, minDomains, nodeAffinityPolicy /
//! nodeTaintsPolicy); ScheduleAnyway constraints score. (Kubernetes'
//! system default constraints, used for pods that set none, are not
//! applied.)

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
    MAX_NODE_SCORE,
};
use crate::podinfo::{untolerated, PodInfo, SpreadConstraint};

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL_REASON: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const NAME: &str = super::names::POD_TOPOLOGY_SPREAD;
const SCORE_KEY: &str = "PodTopologySpread/score";

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
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

/// Whether a node counts for a constraint (policies) and has every key.
fn eligible(
    pod: &PodInfo,
    node: &NodeInfo,
    c: &SpreadConstraint,
    all: &[&SpreadConstraint],
) -> bool {
    let labels = node.labels();
    if !all.iter().all(|c| labels.contains_key(&c.topology_key)) {
        return false;
    }
    if c.honor_node_affinity && !pod.node_affinity.matches_labels(&node.name, labels) {
        return false;
    }
    if c.honor_taints
        && untolerated(
            node.taints(),
            pod.tolerations(),
            &["NoSchedule", "NoExecute"],
        )
        .is_some()
    {
        return false;
    }
    true
}

/// Pods on the node the constraint counts: same namespace, not
/// terminating, selected.
fn count_on(pod: &PodInfo, node: &NodeInfo, c: &SpreadConstraint) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            !p.terminating && p.namespace == pod.namespace && c.selector.matches(p.labels())
        })
        .count() as i64
}

struct Domains {
    /// value → matching pods.
    counts: HashMap<String, i64>,
    /// The smallest count (0 when fewer domains than minDomains).
    min: i64,
}

fn domains(
    pod: &PodInfo,
    snap: &Snapshot,
    c: &SpreadConstraint,
    all: &[&SpreadConstraint],
    filter_nodes: Option<&[&NodeInfo]>,
) -> Domains {
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut visit = |node: &NodeInfo| {
        if !eligible(pod, node, c, all) {
            return;
        }
        let v = &node.labels()[&c.topology_key];
        let n = count_on(pod, node, c);
        match counts.get_mut(v.as_str()) {
            Some(x) => *x += n,
            None => {
                counts.insert(v.clone(), n);
            }
        }
    };
    match filter_nodes {
        Some(nodes) => nodes.iter().for_each(|n| visit(n)),
        None => snap.nodes.iter().for_each(|n| visit(n)),
    }
    let min = if (counts.len() as i32) < c.min_domains {
        0
    } else {
        counts.values().copied().min().unwrap_or(0)
    };
    Domains { counts, min }
}

struct FilterState {
    constraints: Vec<(SpreadConstraint, Domains)>,
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        let hard: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| c.hard).collect();
        if hard.is_empty() {
            return Status::skip();
        }
        let constraints = hard
            .iter()
            .map(|c| ((*c).clone(), domains(pod, snap, c, &hard, None)))
            .collect();
        state.write(NAME, FilterState { constraints });
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let Some(s) = state.read::<FilterState>(NAME) else {
            return Status::success();
        };
        let labels = node.labels();
        for (c, d) in &s.constraints {
            let Some(v) = labels.get(&c.topology_key) else {
                return Status::unresolvable(MISSING_LABEL_REASON);
            };
            let self_match = c.selector.matches(pod.labels()) as i64;
            let count = d.counts.get(v.as_str()).copied().unwrap_or(0);
            if count + self_match - d.min > c.max_skew as i64 {
                return Status::unschedulable(REASON);
            }
        }
        Status::success()
    }
}

struct ScoreState {
    /// (constraint, counts by value, weight)
    constraints: Vec<(SpreadConstraint, HashMap<String, i64>, f64)>,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snap: &Snapshot,
    ) -> Status {
        let soft: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| !c.hard).collect();
        if soft.is_empty() {
            return Status::skip();
        }
        let constraints = soft
            .iter()
            .map(|c| {
                // Per-host spreading only weighs the candidate nodes.
                let only = (c.topology_key == "kubernetes.io/hostname").then_some(nodes);
                let d = domains(pod, snap, c, &soft, only);
                let weight = ((d.counts.len() + 2) as f64).ln();
                ((*c).clone(), d.counts, weight)
            })
            .collect();
        state.write(SCORE_KEY, ScoreState { constraints });
        Status::success()
    }
}

/// Marks nodes missing a constraint's key (they score 0).
const IGNORED: i64 = -1;

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let Some(s) = state.read::<ScoreState>(SCORE_KEY) else {
            return 0;
        };
        let labels = node.labels();
        let mut score = 0.0;
        for (c, counts, weight) in &s.constraints {
            let Some(v) = labels.get(&c.topology_key) else {
                return IGNORED;
            };
            let n = counts.get(v.as_str()).copied().unwrap_or(0);
            score += n as f64 * weight + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, state: &CycleState, _: &PodInfo, _: &[&NodeInfo], scores: &mut [i64]) {
        if state.read::<ScoreState>(SCORE_KEY).is_none() {
            return;
        }
        let valid = scores.iter().copied().filter(|s| *s != IGNORED);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = if *s == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{json, Value};

    fn zoned(name: &str, zone: &str) -> Node {
        with(
            &node(name, "4", "8Gi", 20),
            json!({"metadata": {"labels": {"zone": zone}}}),
        )
    }

    fn web(name: &str) -> Pod {
        with(
            &pod(name, "0", "0"),
            json!({"metadata": {"labels": {"app": "web"}}}),
        )
    }

    fn spread(constraints: Value) -> Pod {
        with(
            &web("p"),
            json!({"spec": {"topologySpreadConstraints": constraints}}),
        )
    }

    fn c(key: &str, skew: i32, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    #[test]
    fn filter_table() {
        // z1: a (2 web), b (0); z2: c (1 web); d has no zone.
        let s = snapshot(&[
            (zoned("a", "z1"), vec![web("w1"), web("w2")]),
            (zoned("b", "z1"), vec![]),
            (
                zoned("c", "z2"),
                vec![
                    web("w3"),
                    with(&web("other-ns"), json!({"metadata": {"namespace": "x"}})),
                ],
            ),
            (node("d", "4", "8Gi", 20), vec![]),
        ]);
        let (r, m) = (REASON, MISSING_LABEL_REASON);
        let mut min3 = c("zone", 1, "DoNotSchedule");
        min3["minDomains"] = json!(3);
        let mut ignore_affinity = c("zone", 1, "DoNotSchedule");
        ignore_affinity["nodeAffinityPolicy"] = json!("Ignore");
        let with_selector =
            |p: Pod, zone: &str| with(&p, json!({"spec": {"nodeSelector": {"zone": zone}}}));
        let cases = [
            (
                "zone skew 1",
                spread(json!([c("zone", 1, "DoNotSchedule")])),
                vec![r, r, "ok", m],
            ),
            (
                "zone skew 2",
                spread(json!([c("zone", 2, "DoNotSchedule")])),
                vec!["ok", "ok", "ok", m],
            ),
            // hostname domains: a 2, b 0, c 1, d 0 → min 0.
            (
                "hostname skew 1",
                spread(json!([c("kubernetes.io/hostname", 1, "DoNotSchedule")])),
                vec![r, "ok", r, "ok"],
            ),
            (
                "minDomains above domain count: min is 0",
                spread(json!([min3])),
                vec![r, r, r, m],
            ),
            // Only z1 nodes count when the selector pins z1: min = 2, so z1 is fine.
            (
                "node affinity honoured",
                with_selector(spread(json!([c("zone", 1, "DoNotSchedule")])), "z1"),
                vec!["ok", "ok", "ok", m],
            ),
            (
                "node affinity ignored",
                with_selector(spread(json!([ignore_affinity])), "z1"),
                vec![r, r, "ok", m],
            ),
            (
                "soft constraints do not filter",
                spread(json!([c("zone", 1, "ScheduleAnyway")])),
                vec!["ok", "ok", "ok", "ok"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&PodTopologySpread, &pod_info(&p), &s)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn taints_policy() {
        let tainted = with(
            &zoned("t", "z3"),
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        );
        let s = snapshot(&[
            (zoned("a", "z1"), vec![web("w1")]),
            (zoned("b", "z2"), vec![web("w2")]),
            (tainted, vec![]),
        ]);
        let mut honor = c("zone", 1, "DoNotSchedule");
        honor["nodeTaintsPolicy"] = json!("Honor");
        // Ignored (default): z3 counts with 0, so z1/z2 are at skew 2.
        let got = verdicts(&filter_all(
            &PodTopologySpread,
            &pod_info(&spread(json!([c("zone", 1, "DoNotSchedule")]))),
            &s,
        ));
        assert_eq!(got, vec![REASON, REASON, "ok"]);
        let got = verdicts(&filter_all(
            &PodTopologySpread,
            &pod_info(&spread(json!([honor]))),
            &s,
        ));
        assert_eq!(got, vec!["ok", "ok", "ok"]);
    }

    #[test]
    fn score_table() {
        let s = snapshot(&[
            (zoned("a", "z1"), vec![web("w1"), web("w2")]),
            (zoned("b", "z2"), vec![web("w3")]),
            (zoned("c", "z3"), vec![]),
            (node("d", "4", "8Gi", 20), vec![]),
        ]);
        let got = score_all(
            &PodTopologySpread,
            &pod_info(&spread(json!([c("zone", 1, "ScheduleAnyway")]))),
            &s,
        );
        // Raw: round(n × ln(5)): 3, 2, 0 → 100 × (3 + 0 - s) / 3.
        assert_eq!(got, vec![0, 33, 100, 0]);
        assert_eq!(
            score_all(&PodTopologySpread, &pod_info(&web("p")), &s),
            vec![0, 0, 0, 0]
        );
    }
}
