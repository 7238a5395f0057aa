//! The controller manager: one module per controller, each reconciling
//! observed state towards desired state through the API.
//!
//! Every controller has the same shape (client-go's): it registers change
//! handlers on shared [`Informers`] that turn changes into keys on its own
//! [`runtime::WorkQueue`], and a `reconcile(key)` that reads the *current*
//! objects from the informer caches (never the event that woke it),
//! computes what to write with pure functions (unit-tested with tables),
//! and writes through the API. Failures are retried with back-off.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use kube::runtime::watcher;
use kube::{Api, Resource};
use runtime::Informer;
use serde::de::DeserializeOwned;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podgc;
pub mod podutil;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;

/// Shared informers, one per resource type, created on first use.
pub struct Informers {
    client: kube::Client,
    map: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    started: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Informers {
            client,
            map: Mutex::new(HashMap::new()),
            started: Mutex::new(Vec::new()),
        }
    }

    /// The informer of all `K` in all namespaces.
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut map = self.map.lock().unwrap();
        if let Some(i) = map.get(&TypeId::of::<K>()) {
            return i.downcast_ref::<Arc<Informer<K>>>().unwrap().clone();
        }
        let informer = Informer::new(
            Api::<K>::all(self.client.clone()),
            watcher::Config::default(),
        );
        map.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        let i = informer.clone();
        self.started.lock().unwrap().push(Box::new(move || {
            i.start();
        }));
        informer
    }

    /// Starts every informer handed out so far.
    pub fn start(&self) {
        for start in self.started.lock().unwrap().drain(..) {
            start();
        }
    }
}

/// What every controller gets.
#[derive(Clone)]
pub struct Ctx {
    pub client: kube::Client,
    pub informers: Arc<Informers>,
}

impl Ctx {
    pub fn recorder(&self, component: &str) -> runtime::Recorder {
        runtime::Recorder::new(self.client.clone(), component)
    }
}

/// Writes `status` (a merge patch through the status subresource) of a
/// namespaced object; an object deleted meanwhile is not an error.
pub async fn write_status<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &serde_json::Value,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({ "status": status });
    match api
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if runtime::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Settings of the controller manager (kube-controller-manager's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Pod network range nodes get their podCIDR from (None: no IPAM).
    pub cluster_cidr: Option<String>,
    /// Prefix length of each node's range.
    pub node_cidr_mask_size: u8,
    /// How long a node may be silent before it is Unknown.
    pub node_monitor_grace_period: std::time::Duration,
    /// Finished pods kept before the oldest are deleted.
    pub terminated_pod_gc_threshold: usize,
    /// Where local-path volumes live on the nodes.
    pub storage_dir: String,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every
    /// namespace (None: not published).
    pub root_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster_cidr: None,
            node_cidr_mask_size: 24,
            node_monitor_grace_period: std::time::Duration::from_secs(40),
            terminated_pod_gc_threshold: 12_500,
            storage_dir: "/var/lib/rkube/storage".into(),
            root_ca: None,
        }
    }
}

/// Runs every controller until the returned future is dropped (leadership
/// lost) or the process ends. Everything it starts is owned by it.
pub async fn run(client: kube::Client, config: Config) {
    let ctx = Ctx {
        client: client.clone(),
        informers: Arc::new(Informers::new(client)),
    };
    let mut set = tokio::task::JoinSet::new();
    replicaset::start(&ctx, &mut set);
    deployment::start(&ctx, &mut set);
    endpoints::start(&ctx, &mut set);
    serviceaccount::start(&ctx, &mut set);
    servicelb::start(&ctx, &mut set);
    if let Some(ca) = config.root_ca.clone() {
        rootcacertpublisher::start(&ctx, ca, &mut set);
    }
    namespace::start(&ctx, &mut set);
    garbagecollector::start(&ctx, &mut set);
    job::start(&ctx, &mut set);
    cronjob::start(&ctx, &mut set);
    statefulset::start(&ctx, &mut set);
    daemonset::start(&ctx, &mut set);
    nodelifecycle::start(&ctx, &mut set, config.node_monitor_grace_period);
    podgc::start(&ctx, &mut set, config.terminated_pod_gc_threshold);
    disruption::start(&ctx, &mut set);
    resourcequota::start(&ctx, &mut set);
    persistentvolume::start(&ctx, &mut set, config.storage_dir.clone());
    if let Some(cidr) = &config.cluster_cidr {
        match nodeipam::Ranges::parse(cidr, config.node_cidr_mask_size) {
            Ok(ranges) => nodeipam::start(&ctx, &mut set, ranges),
            Err(e) => tracing::error!(error = %e, "node IPAM disabled"),
        }
    }
    ctx.informers.start();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a controller task failed");
        }
    }
    futures::future::pending::<()>().await
}
