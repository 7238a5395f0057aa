//! The ingress controller for `networking.k8s.io/v1` Ingresses of class
//! `rkube`: [`routes`], the pure routing table built from Ingresses,
//! IngressClasses, Services and EndpointSlices; [`proxy`], the HTTP/1.1
//! reverse proxy over it; [`serve`], which keeps the table current with
//! informers (rebuilt once per burst of changes) and serves plain HTTP.
//! Not built yet: HTTPS with SNI certificates, `status.loadBalancer`, and
//! creating the IngressClass `rkube`.

pub mod proxy;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::watcher;
use kube::Api;
use runtime::Informer;

pub use routes::{
    is_served, rkube_is_default, Decision, RouteTable, CLASS_NAME, CONTROLLER_NAME,
    DEFAULT_CLASS_ANNOTATION,
};

/// Where the ingress controller listens.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plain HTTP address.
    pub http_listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 80)),
        }
    }
}

/// Serves Ingresses of class `rkube` on `config.http_listen` until an
/// error. Until the first lists are in, every request gets 404 (an empty
/// table).
pub async fn serve(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("ingress: bind {}: {e}", config.http_listen))?;
    let shared = Arc::new(proxy::Shared::default());

    let ingresses: Arc<Informer<Ingress>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let classes: Arc<Informer<IngressClass>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let services: Arc<Informer<Service>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let slices: Arc<Informer<EndpointSlice>> = Informer::new(
        Api::all(client),
        watcher::Config::default().labels(crate::dns::SERVICE_NAME_LABEL),
    );
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let n = changed.clone();
        ingresses.on_change(move |_| n.notify_one());
        let n = changed.clone();
        classes.on_change(move |_| n.notify_one());
        let n = changed.clone();
        services.on_change(move |_| n.notify_one());
        let n = changed.clone();
        slices.on_change(move |_| n.notify_one());
    }
    let tasks = [
        ingresses.start(),
        classes.start(),
        services.start(),
        slices.start(),
    ];

    let rebuild = {
        let shared = shared.clone();
        tokio::spawn(async move {
            ingresses.wait_synced().await;
            classes.wait_synced().await;
            services.wait_synced().await;
            slices.wait_synced().await;
            loop {
                let ings: Vec<Ingress> = ingresses
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                let cls: Vec<IngressClass> = classes
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                let svcs: Vec<Service> = services
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                let eps: Vec<EndpointSlice> = slices
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                shared.set_table(RouteTable::build(&ings, &cls, &svcs, &eps));
                changed.notified().await;
            }
        })
    };

    tracing::info!(listen = %config.http_listen, "ingress: listening");
    proxy::serve_http(listener, shared).await;
    rebuild.abort();
    for t in tasks {
        t.abort();
    }
    Ok(())
}
