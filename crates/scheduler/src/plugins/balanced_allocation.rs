//! NodeResourcesBalancedAllocation: prefers nodes where the pod leaves
//! CPU and memory equally used (score = (1 - std deviation of the used
//! fractions) × 100).

use std::sync::Arc;

use serde_json::Value;

use super::node_resources_fit::{allocatable_requested, ResourceWeight};
use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{CycleState, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::podinfo::PodInfo;
use crate::resources::{CPU, MEMORY};

pub struct BalancedAllocation {
    pub resources: Vec<String>,
}

impl BalancedAllocation {
    pub fn from_args(args: Option<&Value>) -> anyhow::Result<Self> {
        let mut resources = vec![CPU.to_owned(), MEMORY.to_owned()];
        if let Some(r) = args.and_then(|a| a.get("resources")) {
            let r: Vec<ResourceWeight> = serde_json::from_value(r.clone())?;
            resources = r.into_iter().map(|r| r.name).collect();
        }
        Ok(BalancedAllocation { resources })
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        super::names::BALANCED_ALLOCATION
    }
    fn as_pre_score(self: Arc<Self>) -> Option<Arc<dyn PreScorePlugin>> {
        Some(self)
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &Snapshot,
    ) -> Status {
        // A pod requesting none of the resources changes no balance.
        if self.resources.iter().all(|r| pod.requests.get(r) == 0) {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let mut fractions = Vec::with_capacity(self.resources.len());
        for r in &self.resources {
            let (cap, req) = allocatable_requested(pod, node, r, false);
            if cap == 0 {
                continue;
            }
            fractions.push((req as f64 / cap as f64).min(1.0));
        }
        let std = match fractions.len() {
            0 | 1 => 0.0,
            2 => (fractions[0] - fractions[1]).abs() / 2.0,
            n => {
                let mean = fractions.iter().sum::<f64>() / n as f64;
                (fractions.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
            }
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;

    #[test]
    fn table() {
        let snap = snapshot(&[
            (node("empty", "4", "4Gi", 10), vec![]),
            (node("cpu-heavy", "4", "4Gi", 10), vec![pod("x", "2", "0")]),
        ]);
        let plugin = BalancedAllocation::from_args(None).unwrap();
        let cases = [
            // 1/4 cpu, 1/4 memory: balanced on the empty node; 3/4 vs 1/4 on the other.
            ("balanced pod", pod("p", "1", "1Gi"), vec![100, 75]),
            ("cpu only", pod("p", "2", "0"), vec![75, 50]),
            ("no requests: skipped", pod("p", "0", "0"), vec![0, 0]),
        ];
        for (name, p, want) in cases {
            assert_eq!(score_all(&plugin, &pod_info(&p), &snap), want, "{name}");
        }
    }
}
