//! service-lb: Services of type LoadBalancer (without a
//! `loadBalancerClass` of another implementation) get the addresses of the
//! cluster's Ready nodes in `status.loadBalancer.ingress`, as k3s's
//! ServiceLB publishes them; the service proxy on each node then takes
//! traffic to those addresses at the service ports. A Service that stops
//! being a LoadBalancer has the addresses cleared.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, WorkQueue};
use serde_json::{json, Value};

use crate::Ctx;

/// The address a node is reached at from outside: its ExternalIP, else its
/// InternalIP; None for nodes that are not Ready.
pub fn node_address(node: &Node) -> Option<String> {
    let status = node.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    let addrs = status.addresses.as_ref()?;
    ["ExternalIP", "InternalIP"]
        .iter()
        .find_map(|t| addrs.iter().find(|a| a.type_ == *t))
        .map(|a| a.address.clone())
}

/// The ingress list the Service should have: None when it is not ours to
/// touch (another class), otherwise the wanted list (empty for a Service
/// that is not a LoadBalancer).
pub fn wanted(svc: &Service, node_addresses: &BTreeSet<String>) -> Option<Vec<Value>> {
    let spec = svc.spec.as_ref()?;
    if spec.load_balancer_class.is_some() {
        return None;
    }
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return Some(Vec::new());
    }
    Some(
        node_addresses
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect(),
    )
}

fn current(svc: &Service) -> Vec<Value> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|list| {
            list.iter()
                .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
                .collect()
        })
        .unwrap_or_default()
}

fn addresses(nodes: &Store<Node>) -> BTreeSet<String> {
    nodes
        .state()
        .iter()
        .filter_map(|n| node_address(n))
        .collect()
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let svc_inf = ctx.informers.get::<Service>();
    let node_inf = ctx.informers.get::<Node>();
    // Keys are "namespace/name".
    let queue: WorkQueue<String> = WorkQueue::new();
    let key = |s: &Service| {
        format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default()
        )
    };
    {
        let q = queue.clone();
        svc_inf.on_change(move |ch: &Change<Service>| {
            if !matches!(ch, Change::Deleted(_)) {
                q.add(key(ch.object()));
            }
        });
    }
    let services: Store<Service> = svc_inf.store();
    {
        // A node's readiness or address moves every LoadBalancer.
        let (q, services) = (queue.clone(), services.clone());
        node_inf.on_change(move |ch: &Change<Node>| {
            let before = ch.old().and_then(|n| node_address(n));
            if before.as_ref() == node_address(ch.object()).as_ref()
                && !matches!(ch, Change::Deleted(_))
            {
                return;
            }
            for s in services.state() {
                if s.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some("LoadBalancer") {
                    q.add(key(&s));
                }
            }
        });
    }
    let nodes: Store<Node> = node_inf.store();
    let client = ctx.client.clone();
    set.spawn(async move {
        svc_inf.wait_synced().await;
        node_inf.wait_synced().await;
        run_workers(queue, 1, "service-lb", move |key: String| {
            let (services, nodes, client) = (services.clone(), nodes.clone(), client.clone());
            async move {
                let (ns, name) = key.split_once('/').unwrap_or_default();
                let Some(svc) = services.get(&ObjectRef::new(name).within(ns)) else {
                    return Ok::<_, kube::Error>(Next::Done);
                };
                let Some(want) = wanted(&svc, &addresses(&nodes)) else {
                    return Ok(Next::Done);
                };
                if want == current(&svc) {
                    return Ok(Next::Done);
                }
                crate::write_status::<Service>(
                    &client,
                    ns,
                    name,
                    &json!({"loadBalancer": {"ingress": want}}),
                )
                .await?;
                Ok(Next::Done)
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: &str, addrs: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [{"type": "Ready", "status": ready}], "addresses": addrs}
        }))
        .unwrap()
    }

    #[test]
    fn node_addresses() {
        let rows = [
            (
                node(
                    "True",
                    json!([{"type": "InternalIP", "address": "10.0.0.1"}]),
                ),
                Some("10.0.0.1"),
            ),
            (
                node(
                    "True",
                    json!([{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "ExternalIP", "address": "203.0.113.5"}]),
                ),
                Some("203.0.113.5"),
            ),
            (
                node(
                    "False",
                    json!([{"type": "InternalIP", "address": "10.0.0.1"}]),
                ),
                None,
            ),
            (
                node("True", json!([{"type": "Hostname", "address": "n"}])),
                None,
            ),
        ];
        for (i, (n, want)) in rows.into_iter().enumerate() {
            assert_eq!(node_address(&n).as_deref(), want, "row {i}");
        }
    }

    #[test]
    fn wanted_ingress() {
        let svc = |spec: Value| -> Service {
            serde_json::from_value(
                json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec}),
            )
            .unwrap()
        };
        let nodes: BTreeSet<String> = ["10.0.0.2".to_owned(), "10.0.0.1".to_owned()].into();
        let rows = [
            (
                svc(json!({"type": "LoadBalancer"})),
                Some(vec![
                    json!({"ip": "10.0.0.1", "ipMode": "VIP"}),
                    json!({"ip": "10.0.0.2", "ipMode": "VIP"}),
                ]),
            ),
            (svc(json!({"type": "ClusterIP"})), Some(vec![])),
            (
                svc(json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/lb"})),
                None,
            ),
        ];
        for (i, (s, want)) in rows.into_iter().enumerate() {
            assert_eq!(wanted(&s, &nodes), want, "row {i}");
        }
    }
}
