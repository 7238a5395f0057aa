//! Node IPAM: each node gets a pod CIDR (a /24 by default) from the
//! cluster CIDR (--cluster-cidr, 10.42.0.0/16 by default) in
//! spec.podCIDR/podCIDRs, as kube-controller-manager's range allocator
//! does. Ranges already on nodes are never handed out twice; a node that
//! has one keeps it (the field is immutable once set).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{Change, WorkQueue};
use serde_json::json;

use crate::Ctx;

/// An IPv4 cluster range cut into per-node subnets.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranges {
    base: u32,
    prefix: u8,
    node_prefix: u8,
}

impl Ranges {
    pub fn parse(cidr: &str, node_prefix: u8) -> Result<Ranges, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?}: only IPv4 cluster CIDRs are supported"))?;
        let prefix: u8 = len
            .parse()
            .map_err(|_| format!("{cidr:?}: bad prefix length"))?;
        if prefix > node_prefix || node_prefix > 30 {
            return Err(format!("{cidr:?} cannot hold /{node_prefix} node ranges"));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Ranges {
            base: u32::from(ip) & mask,
            prefix,
            node_prefix,
        })
    }

    pub fn count(&self) -> u32 {
        1u32 << (self.node_prefix - self.prefix)
    }

    pub fn nth(&self, i: u32) -> String {
        let ip = Ipv4Addr::from(self.base + (i << (32 - self.node_prefix)));
        format!("{ip}/{}", self.node_prefix)
    }

    /// The first range not in `used`.
    pub fn first_free(&self, used: &HashSet<String>) -> Option<String> {
        (0..self.count())
            .map(|i| self.nth(i))
            .find(|c| !used.contains(c))
    }
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>, ranges: Ranges) {
    let node_inf = ctx.informers.get::<Node>();
    let queue: WorkQueue<String> = WorkQueue::new();
    {
        let q = queue.clone();
        node_inf.on_change(move |ch: &Change<Node>| {
            let n = ch.object();
            if !matches!(ch, Change::Deleted(_))
                && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
            {
                q.add(n.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let nodes: Store<Node> = node_inf.store();
    let client = ctx.client.clone();
    // One worker: allocations must not race each other.
    let taken = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    set.spawn(async move {
        node_inf.wait_synced().await;
        run_workers(queue, 1, "node-ipam-controller", move |name: String| {
            let (nodes, client, ranges, taken) =
                (nodes.clone(), client.clone(), ranges.clone(), taken.clone());
            async move {
                let Some(node) = nodes.get(&ObjectRef::new(&name)) else {
                    return Ok(Next::Done);
                };
                if node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_ref())
                    .is_some()
                {
                    return Ok(Next::Done);
                }
                let mut used: HashSet<String> = nodes
                    .state()
                    .iter()
                    .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
                    .collect();
                used.extend(taken.lock().unwrap().iter().cloned());
                let Some(cidr) = ranges.first_free(&used) else {
                    tracing::warn!(node = %name, "no pod CIDR left for the node");
                    return Ok::<_, kube::Error>(Next::Done);
                };
                let api: Api<Node> = Api::all(client);
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                });
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                taken.lock().unwrap().insert(cidr);
                Ok(Next::Done)
            }
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = Ranges::parse("10.42.0.0/16", 24).unwrap();
        assert_eq!(r.count(), 256);
        assert_eq!(r.nth(0), "10.42.0.0/24");
        assert_eq!(r.nth(255), "10.42.255.0/24");
        let used: HashSet<String> = ["10.42.0.0/24".to_string(), "10.42.1.0/24".to_string()].into();
        assert_eq!(r.first_free(&used).as_deref(), Some("10.42.2.0/24"));
        let small = Ranges::parse("10.1.2.3/23", 24).unwrap();
        assert_eq!(small.nth(1), "10.1.3.0/24");
        let all: HashSet<String> = (0..2).map(|i| small.nth(i)).collect();
        assert_eq!(small.first_free(&all), None);
        assert!(Ranges::parse("10.0.0.0/25", 24).is_err());
        assert!(Ranges::parse("fd00::/64", 24).is_err());
    }
}
