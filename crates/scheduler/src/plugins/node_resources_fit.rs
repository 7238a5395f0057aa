//! NodeResourcesFit: the pod's requests (containers, init containers,
//! overhead, extended resources) and one more pod must fit the node's
//! allocatable minus what its pods request. Scores by a strategy:
//! LeastAllocated (default), MostAllocated or RequestedToCapacityRatio.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::podinfo::PodInfo;
use crate::resources::{CPU, EPHEMERAL_STORAGE, MEMORY};

#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// (utilization %, score 0..=100) points of a piecewise linear function.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

#[derive(Clone, Debug)]
pub struct NodeResourcesFit {
    pub strategy: Strategy,
    /// (resource, weight) scored.
    pub resources: Vec<(String, i64)>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            strategy: Strategy::LeastAllocated,
            resources: vec![(CPU.into(), 1), (MEMORY.into(), 1)],
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Args {
    #[serde(default)]
    scoring_strategy: Option<StrategyArgs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrategyArgs {
    #[serde(rename = "type", default)]
    type_: Option<String>,
    #[serde(default)]
    resources: Option<Vec<ResourceWeight>>,
    #[serde(default)]
    requested_to_capacity_ratio: Option<Shape>,
}

#[derive(Deserialize)]
pub(crate) struct ResourceWeight {
    pub name: String,
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
struct Shape {
    shape: Vec<ShapePoint>,
}

#[derive(Deserialize)]
struct ShapePoint {
    utilization: i64,
    score: i64,
}

impl NodeResourcesFit {
    pub fn from_args(args: Option<&Value>) -> anyhow::Result<Self> {
        let mut p = NodeResourcesFit::default();
        let Some(args) = args else { return Ok(p) };
        let args: Args = serde_json::from_value(args.clone())?;
        if let Some(s) = args.scoring_strategy {
            if let Some(r) = s.resources {
                p.resources = r.into_iter().map(|r| (r.name, r.weight)).collect();
            }
            p.strategy = match s.type_.as_deref().unwrap_or("LeastAllocated") {
                "LeastAllocated" => Strategy::LeastAllocated,
                "MostAllocated" => Strategy::MostAllocated,
                "RequestedToCapacityRatio" => {
                    let shape = s
                        .requested_to_capacity_ratio
                        .ok_or_else(|| anyhow::anyhow!("RequestedToCapacityRatio needs a shape"))?
                        .shape;
                    // Scores are 0..=10 in the configuration.
                    Strategy::RequestedToCapacityRatio(
                        shape
                            .into_iter()
                            .map(|p| (p.utilization, p.score * MAX_NODE_SCORE / 10))
                            .collect(),
                    )
                }
                other => anyhow::bail!("unknown scoring strategy {other:?}"),
            };
        }
        Ok(p)
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        super::names::NODE_RESOURCES_FIT
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
    fn as_score(self: Arc<Self>) -> Option<Arc<dyn ScorePlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(&self, _: &mut CycleState, _: &PodInfo, _: &Snapshot) -> Status {
        // The requests are computed once per pod (PodInfo).
        Status::success()
    }
}

/// The reasons a pod does not fit a node ("Too many pods",
/// "Insufficient cpu", ...); empty when it fits.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Cow<'static, str>> {
    let mut out = Vec::new();
    let (want, alloc, used) = (&pod.requests, &node.allocatable, &node.requested);
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        out.push(Cow::Borrowed("Too many pods"));
    }
    if want.milli_cpu > 0 && want.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push(Cow::Borrowed("Insufficient cpu"));
    }
    if want.memory > 0 && want.memory > alloc.memory - used.memory {
        out.push(Cow::Borrowed("Insufficient memory"));
    }
    if want.ephemeral_storage > 0
        && want.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push(Cow::Borrowed("Insufficient ephemeral-storage"));
    }
    for (name, v) in &want.scalar {
        if *v > 0 && *v > alloc.scalar(name) - used.scalar(name) {
            out.push(Cow::Owned(format!("Insufficient {name}")));
        }
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::Unschedulable,
                reasons,
                plugin: "",
            }
        }
    }
}

/// (allocatable, requested including the pod) of one resource, with
/// non-zero CPU/memory requests as scoring counts them.
pub fn allocatable_requested(
    pod: &PodInfo,
    node: &NodeInfo,
    resource: &str,
    non_zero: bool,
) -> (i64, i64) {
    let alloc = node.allocatable.get(resource);
    let req = match resource {
        CPU if non_zero => node.non_zero_cpu + pod.non_zero_cpu,
        MEMORY if non_zero => node.non_zero_mem + pod.non_zero_mem,
        CPU => node.requested.milli_cpu + pod.requests.milli_cpu,
        MEMORY => node.requested.memory + pod.requests.memory,
        EPHEMERAL_STORAGE => node.requested.ephemeral_storage + pod.requests.ephemeral_storage,
        other => node.requested.scalar(other) + pod.requests.scalar(other),
    };
    (alloc, req)
}

fn least(req: i64, cap: i64) -> i64 {
    if cap == 0 || req > cap {
        0
    } else {
        (cap - req) * MAX_NODE_SCORE / cap
    }
}

fn most(req: i64, cap: i64) -> i64 {
    if cap == 0 {
        0
    } else {
        req.min(cap) * MAX_NODE_SCORE / cap
    }
}

/// Piecewise linear interpolation through `shape` (sorted by utilization).
fn ratio(shape: &[(i64, i64)], req: i64, cap: i64) -> i64 {
    let util = if cap == 0 || req > cap {
        100
    } else {
        req * 100 / cap
    };
    let Some(first) = shape.first() else { return 0 };
    if util <= first.0 {
        return first.1;
    }
    for w in shape.windows(2) {
        let ((u0, s0), (u1, s1)) = (w[0], w[1]);
        if util <= u1 {
            if u1 == u0 {
                return s1;
            }
            return s0 + (s1 - s0) * (util - u0) / (u1 - u0);
        }
    }
    shape.last().unwrap().1
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> i64 {
        let (mut total, mut weights) = (0i64, 0i64);
        for (name, w) in &self.resources {
            let (cap, req) = allocatable_requested(pod, node, name, true);
            if cap == 0 {
                continue;
            }
            let s = match &self.strategy {
                Strategy::LeastAllocated => least(req, cap),
                Strategy::MostAllocated => most(req, cap),
                Strategy::RequestedToCapacityRatio(shape) => ratio(shape, req, cap),
            };
            total += s * w;
            weights += w;
        }
        if weights == 0 {
            return 0;
        }
        match self.strategy {
            Strategy::RequestedToCapacityRatio(_) => {
                ((total as f64) / (weights as f64)).round() as i64
            }
            _ => total / weights,
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
    fn filter_table() {
        let gpu_node = with(
            &node("gpu", "4", "4Gi", 10),
            json!({"status": {"allocatable": {"example.com/gpu": "2"}}}),
        );
        let snap = snapshot(&[
            (
                node("small", "1", "1Gi", 10),
                vec![pod("x", "500m", "512Mi")],
            ),
            (node("big", "8", "16Gi", 10), vec![]),
            (node("full", "8", "16Gi", 1), vec![pod("y", "0", "0")]),
            (gpu_node, vec![]),
        ]);
        let gpu_pod = with(
            &pod("p", "1", "0"),
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}}]}}),
        );
        let init_pod = with(
            &pod("p", "100m", "0"),
            json!({"spec": {"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "6"}}}]}}),
        );
        let overhead_pod = with(
            &pod("p", "400m", "0"),
            json!({"spec": {"overhead": {"cpu": "200m"}}}),
        );
        let cases = [
            (
                "fits everywhere with room",
                pod("p", "100m", "100Mi"),
                vec!["ok", "ok", "Too many pods", "ok"],
            ),
            (
                "cpu",
                pod("p", "1", "0"),
                vec!["Insufficient cpu", "ok", "Too many pods", "ok"],
            ),
            (
                "cpu and memory",
                pod("p", "2", "2Gi"),
                vec![
                    "Insufficient cpu, Insufficient memory",
                    "ok",
                    "Too many pods",
                    "ok",
                ],
            ),
            (
                "extended resource",
                gpu_pod,
                vec![
                    "Insufficient cpu, Insufficient example.com/gpu",
                    "Insufficient example.com/gpu",
                    "Too many pods, Insufficient example.com/gpu",
                    "ok",
                ],
            ),
            (
                "init container max",
                init_pod,
                vec![
                    "Insufficient cpu",
                    "ok",
                    "Too many pods",
                    "Insufficient cpu",
                ],
            ),
            (
                "overhead counts",
                overhead_pod,
                vec!["Insufficient cpu", "ok", "Too many pods", "ok"],
            ),
            (
                "no requests",
                pod("p", "0", "0"),
                vec!["ok", "ok", "Too many pods", "ok"],
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(
                    &NodeResourcesFit::default(),
                    &pod_info(&p),
                    &snap
                )),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn score_table() {
        // 4 cores / 8Gi; one node half used.
        let snap = snapshot(&[
            (node("empty", "4", "8Gi", 10), vec![]),
            (node("half", "4", "8Gi", 10), vec![pod("x", "2", "4Gi")]),
        ]);
        let p = pod("p", "1", "2Gi");
        let most = NodeResourcesFit::from_args(Some(
            &json!({"scoringStrategy": {"type": "MostAllocated"}}),
        ))
        .unwrap();
        let ratio = NodeResourcesFit::from_args(Some(&json!({"scoringStrategy": {
            "type": "RequestedToCapacityRatio",
            "resources": [{"name": "cpu", "weight": 1}],
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0}, {"utilization": 100, "score": 10}]}}})))
        .unwrap();
        let cases: [(&str, &NodeResourcesFit, Vec<i64>); 3] = [
            (
                "least allocated",
                &NodeResourcesFit::default(),
                vec![75, 25],
            ),
            ("most allocated", &most, vec![25, 75]),
            ("ratio on cpu", &ratio, vec![25, 75]),
        ];
        for (name, plugin, want) in cases {
            assert_eq!(score_only(plugin, &pod_info(&p), &snap), want, "{name}");
        }
        // Pods without requests count as 100m / 200Mi.
        let s = score_only(
            &NodeResourcesFit::default(),
            &pod_info(&pod("p", "0", "0")),
            &snap,
        );
        assert_eq!(
            s,
            vec![
                (3900 * 100 / 4000 + (8192 - 200) * 100 / 8192) / 2,
                (1900 * 100 / 4000 + (8192 - 4096 - 200) * 100 / 8192) / 2
            ]
        );
    }

    #[test]
    fn unknown_strategy_is_an_error() {
        assert!(
            NodeResourcesFit::from_args(Some(&json!({"scoringStrategy": {"type": "Nope"}})))
                .is_err()
        );
    }
}
