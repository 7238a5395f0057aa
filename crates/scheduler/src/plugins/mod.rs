//! The in-tree plugins, one module each, and the registry that builds them
//! by name.

use std::sync::Arc;

use serde_json::Value;

use crate::framework::Plugin;

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

/// Plugin names, as in Kubernetes.
pub mod names {
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    pub const NODE_NAME: &str = "NodeName";
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    pub const NODE_PORTS: &str = "NodePorts";
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    pub const BALANCED_ALLOCATION: &str = "NodeResourcesBalancedAllocation";
    pub const VOLUME_BINDING: &str = "VolumeBinding";
    pub const POD_TOPOLOGY_SPREAD: &str = "PodTopologySpread";
    pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
    pub const IMAGE_LOCALITY: &str = "ImageLocality";
    pub const DEFAULT_PREEMPTION: &str = "DefaultPreemption";
}

use names::*;

/// Every plugin this scheduler knows, in Kubernetes' default order, with
/// its default score weight (0: no Score).
pub const DEFAULT_PLUGINS: &[(&str, i64)] = &[
    (NODE_UNSCHEDULABLE, 0),
    (NODE_NAME, 0),
    (TAINT_TOLERATION, 3),
    (NODE_AFFINITY, 2),
    (NODE_PORTS, 0),
    (NODE_RESOURCES_FIT, 1),
    (VOLUME_BINDING, 0),
    (POD_TOPOLOGY_SPREAD, 2),
    (INTER_POD_AFFINITY, 2),
    (DEFAULT_PREEMPTION, 0),
    (BALANCED_ALLOCATION, 1),
    (IMAGE_LOCALITY, 1),
];

/// Builds a plugin by name with its pluginConfig args (if any).
pub fn new_plugin(name: &str, args: Option<&Value>) -> anyhow::Result<Arc<dyn Plugin>> {
    Ok(match name {
        NODE_UNSCHEDULABLE => Arc::new(node_unschedulable::NodeUnschedulable),
        NODE_NAME => Arc::new(node_name::NodeName),
        TAINT_TOLERATION => Arc::new(taint_toleration::TaintToleration),
        NODE_AFFINITY => Arc::new(node_affinity::NodeAffinity),
        NODE_PORTS => Arc::new(node_ports::NodePorts),
        NODE_RESOURCES_FIT => Arc::new(node_resources_fit::NodeResourcesFit::from_args(args)?),
        BALANCED_ALLOCATION => Arc::new(balanced_allocation::BalancedAllocation::from_args(args)?),
        VOLUME_BINDING => Arc::new(volume_binding::VolumeBinding),
        POD_TOPOLOGY_SPREAD => Arc::new(pod_topology_spread::PodTopologySpread),
        INTER_POD_AFFINITY => Arc::new(inter_pod_affinity::InterPodAffinity),
        IMAGE_LOCALITY => Arc::new(image_locality::ImageLocality),
        DEFAULT_PREEMPTION => Arc::new(crate::preemption::DefaultPreemption),
        other => anyhow::bail!("unknown scheduler plugin {other:?}"),
    })
}

#[cfg(test)]
pub(crate) mod test {
    //! Helpers for the plugins' table tests.
    use crate::cache::Snapshot;
    use crate::framework::{
        Code, CycleState, FilterPlugin, PreFilterPlugin, PreScorePlugin, ScorePlugin, Status,
    };
    use crate::podinfo::PodInfo;

    /// PreFilter then Filter on every node; a PreFilter rejection or Skip
    /// stands for every node.
    pub fn filter_all<P: PreFilterPlugin + FilterPlugin>(
        p: &P,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> Vec<Status> {
        let mut state = CycleState::default();
        let pre = p.pre_filter(&mut state, pod, snap);
        snap.nodes
            .iter()
            .map(|n| match pre.code {
                Code::Success => p.filter(&state, pod, n, snap),
                Code::Skip => Status::success(),
                _ => pre.clone(),
            })
            .collect()
    }

    /// Filter alone on every node.
    pub fn filter_only<P: FilterPlugin>(p: &P, pod: &PodInfo, snap: &Snapshot) -> Vec<Status> {
        let state = CycleState::default();
        snap.nodes
            .iter()
            .map(|n| p.filter(&state, pod, n, snap))
            .collect()
    }

    /// PreScore, Score and NormalizeScore over all nodes (Skip: zeros).
    pub fn score_all<P: PreScorePlugin + ScorePlugin>(
        p: &P,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> Vec<i64> {
        let mut state = CycleState::default();
        let nodes: Vec<_> = snap.nodes.iter().map(|n| n.as_ref()).collect();
        if p.pre_score(&mut state, pod, &nodes, snap).code == Code::Skip {
            return vec![0; nodes.len()];
        }
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| p.score(&state, pod, n, snap))
            .collect();
        p.normalize(&state, pod, &nodes, &mut s);
        s
    }

    /// Score and NormalizeScore without PreScore.
    pub fn score_only<P: ScorePlugin>(p: &P, pod: &PodInfo, snap: &Snapshot) -> Vec<i64> {
        let state = CycleState::default();
        let nodes: Vec<_> = snap.nodes.iter().map(|n| n.as_ref()).collect();
        let mut s: Vec<i64> = nodes
            .iter()
            .map(|n| p.score(&state, pod, n, snap))
            .collect();
        p.normalize(&state, pod, &nodes, &mut s);
        s
    }

    /// "ok" or the first reason of each status.
    pub fn verdicts(sts: &[Status]) -> Vec<String> {
        sts.iter()
            .map(|s| {
                if s.is_success() {
                    "ok".to_owned()
                } else {
                    s.reasons.join(", ")
                }
            })
            .collect()
    }
}
