//! NodePorts: a pod's host ports must be free on the node.

use std::sync::Arc;

use crate::cache::{NodeInfo, Snapshot};
use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::podinfo::PodInfo;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        super::names::NODE_PORTS
    }
    fn as_pre_filter(self: Arc<Self>) -> Option<Arc<dyn PreFilterPlugin>> {
        Some(self)
    }
    fn as_filter(self: Arc<Self>) -> Option<Arc<dyn FilterPlugin>> {
        Some(self)
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> Status {
        if pod.ports.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let clash = pod
            .ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if clash {
            Status::unschedulable(REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test::*;
    use crate::testutil::*;
    use serde_json::json;

    fn port_pod(name: &str, port: i32, ip: &str, proto: &str) -> k8s_openapi::api::core::v1::Pod {
        with(
            &pod(name, "0", "0"),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": port, "hostIP": ip, "protocol": proto}]}]}}),
        )
    }

    #[test]
    fn table() {
        let snap = snapshot(&[
            (node("free", "1", "1Gi", 10), vec![]),
            (
                node("tcp8080", "1", "1Gi", 10),
                vec![port_pod("x", 8080, "", "TCP")],
            ),
            (
                node("ip8080", "1", "1Gi", 10),
                vec![port_pod("y", 8080, "10.0.0.1", "TCP")],
            ),
        ]);
        let cases = [
            (
                "same port any ip",
                port_pod("p", 8080, "", "TCP"),
                vec!["ok", REASON, REASON],
            ),
            (
                "udp differs",
                port_pod("p", 8080, "", "UDP"),
                vec!["ok", "ok", "ok"],
            ),
            (
                "other ip",
                port_pod("p", 8080, "10.0.0.2", "TCP"),
                vec!["ok", REASON, "ok"],
            ),
            (
                "other port",
                port_pod("p", 9090, "", "TCP"),
                vec!["ok", "ok", "ok"],
            ),
            ("no ports", pod("p", "0", "0"), vec!["ok", "ok", "ok"]),
        ];
        for (name, p, want) in cases {
            assert_eq!(
                verdicts(&filter_all(&NodePorts, &pod_info(&p), &snap)),
                want,
                "{name}"
            );
        }
    }
}
