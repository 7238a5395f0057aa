//! NodeName: a pod naming a node (spec.nodeName) fits only that node.

use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        super::names::NODE_NAME
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if pod.node_name.is_empty() || pod.node_name == node.name {
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

    #[test]
    fn table() {
        let snap = snapshot(&[
            (node("a", "1", "1Gi", 10), vec![]),
            (node("b", "1", "1Gi", 10), vec![]),
        ]);
        let cases = [
            ("", vec!["ok", "ok"]),
            ("b", vec![REASON, "ok"]),
            ("c", vec![REASON, REASON]),
        ];
        for (want_node, want) in cases {
            let mut p = pod_info(&pod("p", "0", "0"));
            p.node_name = want_node.into();
            assert_eq!(
                verdicts(&filter_only(&NodeName, &p, &snap)),
                want,
                "{want_node}"
            );
        }
    }
}
