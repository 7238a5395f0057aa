//! Endpoints and EndpointSlices from Services with selectors and the pods
//! they select, as Kubernetes' endpoints and endpointslice controllers
//! make them:
//!
//! - a pod counts once it has an IP and is not finished; ready pods are
//!   `addresses`, the others `notReadyAddresses` (all ready with
//!   publishNotReadyAddresses); terminating pods leave Endpoints but stay
//!   in slices with `terminating: true` (`serving` tells whether they are
//!   still ready);
//! - named targetPorts resolve per pod through its container ports (a pod
//!   without the name is left out of that port);
//! - slices hold at most 100 endpoints, carry `kubernetes.io/service-name`
//!   and `endpointslice.kubernetes.io/managed-by`, and are owned by the
//!   Service (the garbage collector removes them with it); the Endpoints
//!   object is deleted with the Service by this controller.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, WorkQueue};

use crate::podutil;
use crate::Ctx;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
pub const MAX_PER_SLICE: usize = 100;

/// One pod's place behind a Service.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub ip: String,
    pub node: Option<String>,
    pub hostname: Option<String>,
    pub target: ObjectReference,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// (name, port, protocol, appProtocol) resolved for this pod.
    pub ports: Vec<(Option<String>, i32, String, Option<String>)>,
}

/// The selector of a Service that gets managed endpoints.
fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    svc.metadata.namespace == pod.metadata.namespace
        && sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Resolves a Service port's targetPort for a pod.
fn target_port(pod: &Pod, target: Option<&IntOrString>, port: i32, protocol: &str) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.as_ref()?.iter().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// The members of a Service, sorted by IP.
pub fn members(svc: &Service, pods: &[Arc<Pod>]) -> Vec<Member> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut out = Vec::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        if podutil::is_terminal(pod) {
            continue;
        }
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|i| !i.is_empty())
        else {
            continue;
        };
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = podutil::is_ready(pod);
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                target_port(pod, p.target_port.as_ref(), p.port, &protocol)
                    .map(|tp| (p.name.clone(), tp, protocol, p.app_protocol.clone()))
            })
            .collect();
        let pod_spec = pod.spec.as_ref();
        let hostname = pod_spec.and_then(|s| s.hostname.clone()).filter(|_| {
            pod_spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        });
        out.push(Member {
            ip,
            node: pod_spec.and_then(|s| s.node_name.clone()),
            hostname,
            target: ObjectReference {
                kind: Some("Pod".into()),
                namespace: pod.metadata.namespace.clone(),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            },
            ready: publish || (ready && !terminating),
            serving: publish || ready,
            terminating,
            ports,
        });
    }
    out.sort_by(|a, b| a.ip.cmp(&b.ip).then(a.target.name.cmp(&b.target.name)));
    out
}

/// Endpoints subsets: members grouped by their resolved ports.
/// A port as endpoints group by it: (name, port, protocol, appProtocol).
type PortKey = (Option<String>, i32, String, Option<String>);

pub fn subsets(svc: &Service, members: &[Member]) -> Vec<EndpointSubset> {
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let mut groups: Vec<(Vec<PortKey>, EndpointSubset)> = Vec::new();
    for m in members {
        if m.terminating && !publish {
            continue;
        }
        if m.ports.is_empty()
            && svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .is_some_and(|p| !p.is_empty())
        {
            continue;
        }
        let idx = match groups.iter().position(|(p, _)| *p == m.ports) {
            Some(i) => i,
            None => {
                let ports = m
                    .ports
                    .iter()
                    .map(|(name, port, protocol, app)| EndpointPort {
                        name: name.clone(),
                        port: *port,
                        protocol: Some(protocol.clone()),
                        app_protocol: app.clone(),
                    })
                    .collect::<Vec<_>>();
                groups.push((
                    m.ports.clone(),
                    EndpointSubset {
                        ports: (!ports.is_empty()).then_some(ports),
                        ..Default::default()
                    },
                ));
                groups.len() - 1
            }
        };
        let addr = EndpointAddress {
            ip: m.ip.clone(),
            hostname: m.hostname.clone(),
            node_name: m.node.clone(),
            target_ref: Some(m.target.clone()),
        };
        let subset = &mut groups[idx].1;
        if m.ready {
            subset.addresses.get_or_insert_with(Vec::new).push(addr);
        } else {
            subset
                .not_ready_addresses
                .get_or_insert_with(Vec::new)
                .push(addr);
        }
    }
    groups.into_iter().map(|(_, s)| s).collect()
}

/// The slices' contents: (ports, endpoints) chunks of at most 100.
pub fn slice_contents(members: &[Member]) -> Vec<(Vec<SlicePort>, Vec<SliceEndpoint>)> {
    let mut by_ports: Vec<(Vec<PortKey>, Vec<SliceEndpoint>)> = Vec::new();
    for m in members {
        let ep = SliceEndpoint {
            addresses: vec![m.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(m.ready),
                serving: Some(m.serving),
                terminating: Some(m.terminating),
            }),
            hostname: m.hostname.clone(),
            node_name: m.node.clone(),
            target_ref: Some(m.target.clone()),
            ..Default::default()
        };
        match by_ports.iter_mut().find(|(p, _)| *p == m.ports) {
            Some((_, eps)) => eps.push(ep),
            None => by_ports.push((m.ports.clone(), vec![ep])),
        }
    }
    let mut out = Vec::new();
    for (ports, eps) in by_ports {
        let ports: Vec<SlicePort> = ports
            .into_iter()
            .map(|(name, port, protocol, app)| SlicePort {
                name: Some(name.unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol),
                app_protocol: app,
            })
            .collect();
        for chunk in eps.chunks(MAX_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    out
}

struct Controller {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let svc_inf = ctx.informers.get::<Service>();
    let pod_inf = ctx.informers.get::<Pod>();
    let ep_inf = ctx.informers.get::<Endpoints>();
    let slice_inf = ctx.informers.get::<EndpointSlice>();
    let queue: WorkQueue<String> = WorkQueue::new();
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        services: svc_inf.store(),
        pods: pod_inf.store(),
        endpoints: ep_inf.store(),
        slices: slice_inf.store(),
    });
    {
        let q = queue.clone();
        svc_inf.on_change(move |ch: &Change<Service>| q.add(key_of(&ch.object().metadata)));
    }
    {
        let q = queue.clone();
        let services = svc_inf.store();
        pod_inf.on_change(move |ch: &Change<Pod>| {
            let pods: Vec<&Arc<Pod>> = [Some(ch.object()), ch.old()]
                .into_iter()
                .flatten()
                .collect();
            let ns = ch.object().metadata.namespace.as_deref();
            for svc in services.state() {
                if svc.metadata.namespace.as_deref() == ns && pods.iter().any(|p| selects(&svc, p))
                {
                    q.add(key_of(&svc.metadata));
                }
            }
        });
    }
    {
        // Someone else changed our objects: put them right.
        let q = queue.clone();
        slice_inf.on_change(move |ch: &Change<EndpointSlice>| {
            let s = ch.object();
            let labels = s.metadata.labels.as_ref();
            if labels
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str)
                == Some(MANAGED_BY)
            {
                if let Some(svc) = labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                    q.add(format!(
                        "{}/{svc}",
                        s.metadata.namespace.as_deref().unwrap_or_default()
                    ));
                }
            }
        });
    }
    let infs = (svc_inf, pod_inf, ep_inf, slice_inf);
    set.spawn(async move {
        infs.0.wait_synced().await;
        infs.1.wait_synced().await;
        infs.2.wait_synced().await;
        infs.3.wait_synced().await;
        run_workers(queue, 4, "endpoint-controller", move |key: String| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        })
        .await;
    });
}

impl Controller {
    async fn reconcile(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let ep_api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // The Service is gone: so are its Endpoints (slices follow by
            // garbage collection).
            if self
                .endpoints
                .get(&ObjectRef::new(name).within(ns))
                .is_some()
            {
                match ep_api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if runtime::is_not_found(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(Next::Done);
        };
        if selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let members = members(&svc, &pods);
        self.sync_endpoints(&ep_api, &svc, name, ns, &members)
            .await?;
        self.sync_slices(&svc, name, ns, &members).await?;
        Ok(Next::Done)
    }

    async fn sync_endpoints(
        &self,
        api: &Api<Endpoints>,
        svc: &Service,
        name: &str,
        ns: &str,
        members: &[Member],
    ) -> Result<(), kube::Error> {
        let subsets = subsets(svc, members);
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let want_subsets = (!subsets.is_empty()).then_some(subsets);
        if let Some(cur) = &current {
            if cur.subsets == want_subsets
                && cur.metadata.labels.clone().unwrap_or_default() == labels
            {
                return Ok(());
            }
        }
        let mut ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: (!labels.is_empty()).then_some(labels),
                ..Default::default()
            },
            subsets: want_subsets,
        };
        let r = match current {
            Some(cur) => {
                ep.metadata.resource_version = cur.metadata.resource_version.clone();
                ep.metadata.annotations = cur.metadata.annotations.clone();
                api.replace(name, &PostParams::default(), &ep).await
            }
            None => api.create(&PostParams::default(), &ep).await,
        };
        match r {
            Ok(_) => Ok(()),
            // A stale cache: the next event brings us back.
            Err(e) if runtime::is_conflict(&e) => Err(e),
            Err(e) if runtime::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn sync_slices(
        &self,
        svc: &Service,
        name: &str,
        ns: &str,
        members: &[Member],
    ) -> Result<(), kube::Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let mut existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                            && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    })
            })
            .collect();
        existing.sort_by_key(|s| s.metadata.name.clone());
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let mut wanted = slice_contents(members);
        if wanted.is_empty() {
            // An empty slice still tells consumers the Service has none.
            let ports = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|p| SlicePort {
                    name: Some(p.name.unwrap_or_default()),
                    port: match p.target_port {
                        Some(IntOrString::Int(i)) => Some(i),
                        None => Some(p.port),
                        _ => None,
                    },
                    protocol: Some(p.protocol.unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol,
                })
                .collect();
            wanted.push((ports, Vec::new()));
        }
        let owner = podutil::controller_ref("v1", "Service", &svc.metadata);
        let family = svc
            .spec
            .as_ref()
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first().cloned())
            .unwrap_or_else(|| "IPv4".into());
        for (i, (ports, endpoints)) in wanted.into_iter().enumerate() {
            let mut slice = EndpointSlice {
                metadata: ObjectMeta {
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(ns.into()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                },
                address_type: family.clone(),
                endpoints,
                ports: Some(ports),
            };
            match existing.get(i) {
                Some(cur) => {
                    if cur.endpoints == slice.endpoints
                        && cur.ports == slice.ports
                        && cur.metadata.labels == slice.metadata.labels
                        && cur.address_type == slice.address_type
                    {
                        continue;
                    }
                    slice.metadata.name = cur.metadata.name.clone();
                    slice.metadata.generate_name = None;
                    slice.metadata.resource_version = cur.metadata.resource_version.clone();
                    let n = cur.metadata.name.clone().unwrap_or_default();
                    match api.replace(&n, &PostParams::default(), &slice).await {
                        Ok(_) => {}
                        Err(e) if runtime::is_not_found(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    api.create(&PostParams::default(), &slice).await?;
                }
            }
        }
        let used = slice_contents(members).len().max(1);
        for extra in existing.iter().skip(used) {
            match api
                .delete(
                    extra.metadata.name.as_deref().unwrap_or_default(),
                    &DeleteParams::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "metrics", "port": 9090, "targetPort": 9091}
                ]
            }
        });
        if let Some(spec) = extra.as_object() {
            for (k, val) in spec {
                v["spec"][k] = val.clone();
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn pod(
        name: &str,
        ip: Option<&str>,
        ready: bool,
        deleting: bool,
        http_port: Option<i32>,
    ) -> Arc<Pod> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("{name}-uid"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if let Some(p) = http_port {
            v["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": p}]);
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn members_and_subsets() {
        let pods = vec![
            pod("b", Some("10.0.0.2"), true, false, Some(8080)),
            pod("a", Some("10.0.0.1"), false, false, Some(8080)),
            pod("noip", None, true, false, Some(8080)),
            pod("gone", Some("10.0.0.3"), true, true, Some(8080)),
            pod("other-port", Some("10.0.0.4"), true, false, Some(8081)),
        ];
        let s = svc(json!({}));
        let m = members(&s, &pods);
        let ips: Vec<&str> = m.iter().map(|m| m.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        let gone = &m[2];
        assert!(gone.terminating && gone.serving && !gone.ready);
        assert_eq!(m[0].ports[0].1, 8080);
        assert_eq!(m[0].ports[1].1, 9091);

        let groups = subsets(&s, &m);
        // Two port sets: 8080 and 8081; the terminating pod is left out.
        assert_eq!(groups.len(), 2);
        let first = &groups[0];
        assert_eq!(first.addresses.as_ref().unwrap().len(), 1);
        assert_eq!(first.addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(
            first.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.1"
        );
        assert_eq!(groups[1].ports.as_ref().unwrap()[0].port, 8081);

        // publishNotReadyAddresses: everyone is ready, terminating included.
        let p = svc(json!({"publishNotReadyAddresses": true}));
        let m = members(&p, &pods);
        assert!(m.iter().all(|m| m.ready));
        let groups = subsets(&p, &m);
        assert_eq!(groups[0].addresses.as_ref().unwrap().len(), 3);
    }

    #[test]
    fn named_port_missing_drops_the_port() {
        let s = svc(json!({}));
        let m = members(&s, &[pod("x", Some("10.0.0.9"), true, false, None)]);
        assert_eq!(m[0].ports.len(), 1);
        assert_eq!(m[0].ports[0].1, 9091);
    }

    #[test]
    fn slices_hold_at_most_100() {
        let s = svc(json!({}));
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    Some(&format!("10.1.{}.{}", i / 200, i % 200)),
                    true,
                    false,
                    Some(8080),
                )
            })
            .collect();
        let m = members(&s, &pods);
        let slices = slice_contents(&m);
        assert_eq!(
            slices.iter().map(|(_, e)| e.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        let c = slices[0].1[0].conditions.clone().unwrap();
        assert_eq!(
            (c.ready, c.serving, c.terminating),
            (Some(true), Some(true), Some(false))
        );
    }

    #[test]
    fn no_selector_no_endpoints() {
        let mut s = svc(json!({}));
        s.spec.as_mut().unwrap().selector = None;
        assert!(members(&s, &[pod("x", Some("10.0.0.9"), true, false, Some(1))]).is_empty());
        let ext = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        assert!(selector(&ext).is_none());
    }
}
