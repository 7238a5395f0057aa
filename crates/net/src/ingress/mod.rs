//! The ingress controller for `networking.k8s.io/v1` Ingresses of class
//! `rkube`: [`routes`], the pure routing table built from Ingresses,
//! IngressClasses, Services and EndpointSlices; [`tls`], the pure SNI
//! certificate table built from the Ingresses' `spec.tls` and their
//! `kubernetes.io/tls` Secrets, with the rustls resolver over it; [`proxy`],
//! the HTTP/1.1 reverse proxy over both; [`serve`], which keeps the tables
//! current with informers (rebuilt once per burst of changes, swapped
//! whole) and serves plain HTTP and HTTPS (TLS terminated here, SNI picks
//! the certificate, a self-signed default one otherwise). Plain-HTTP
//! requests for hosts with a certificate are redirected to https (308).
//! [`serve`] also creates the IngressClass `rkube` (the default class) when
//! missing and sets each served Ingress's `status.loadBalancer.ingress` to the
//! nodes' InternalIP addresses.

pub mod proxy;
pub mod routes;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Secret, Service};
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
    /// HTTPS address.
    pub https_listen: SocketAddr,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            http_listen: SocketAddr::from(([0, 0, 0, 0], 80)),
            https_listen: SocketAddr::from(([0, 0, 0, 0], 443)),
        }
    }
}

/// Serves Ingresses of class `rkube` on `config.http_listen` and
/// `config.https_listen` until an error. Until the first lists are in,
/// every request gets 404 (an empty table) and every TLS handshake the
/// default certificate.
pub async fn serve(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("ingress: bind {}: {e}", config.http_listen))?;
    let tls_listener = tokio::net::TcpListener::bind(config.https_listen)
        .await
        .map_err(|e| anyhow::anyhow!("ingress: bind {}: {e}", config.https_listen))?;
    let https_port = tls_listener.local_addr()?.port();
    let certs = Arc::new(tls::Certs::new()?);
    let tls_config = certs.server_config()?;
    let shared = Arc::new(proxy::Shared::default());
    shared.redirect_to_https(certs.clone(), https_port);
    ensure_class(&client).await;

    let ingresses: Arc<Informer<Ingress>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let classes: Arc<Informer<IngressClass>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let services: Arc<Informer<Service>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let nodes: Arc<Informer<Node>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let slices: Arc<Informer<EndpointSlice>> = Informer::new(
        Api::all(client.clone()),
        watcher::Config::default().labels(crate::dns::SERVICE_NAME_LABEL),
    );
    // Only TLS Secrets: the API server supports this field selector.
    let secrets: Arc<Informer<Secret>> = Informer::new(
        Api::all(client.clone()),
        watcher::Config::default().fields(&format!("type={}", tls::TLS_SECRET_TYPE)),
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
        let n = changed.clone();
        nodes.on_change(move |_| n.notify_one());
        let n = changed.clone();
        secrets.on_change(move |_| n.notify_one());
    }
    let tasks = [
        ingresses.start(),
        classes.start(),
        services.start(),
        slices.start(),
        nodes.start(),
        secrets.start(),
    ];

    let rebuild = {
        let shared = shared.clone();
        let certs = certs.clone();
        tokio::spawn(async move {
            ingresses.wait_synced().await;
            classes.wait_synced().await;
            services.wait_synced().await;
            slices.wait_synced().await;
            nodes.wait_synced().await;
            secrets.wait_synced().await;
            let mut cache = tls::KeyCache::default();
            let mut reported: Vec<String> = Vec::new();
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
                let secs: Vec<Secret> = secrets
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                let (table, problems) = tls::CertTable::build(&ings, &cls, &secs, &mut cache);
                certs.set_table(table);
                // Each problem once while it lasts, not on every rebuild.
                for p in problems.iter().filter(|p| !reported.contains(p)) {
                    tracing::warn!("ingress TLS: {p}");
                }
                reported = problems;
                let ns: Vec<Node> = nodes
                    .store()
                    .state()
                    .iter()
                    .map(|i| (**i).clone())
                    .collect();
                update_status(&client, &ings, &cls, &node_ips(&ns)).await;
                changed.notified().await;
            }
        })
    };

    tracing::info!(http = %config.http_listen, https = %tls_listener.local_addr()?, "ingress: listening");
    tokio::join!(
        proxy::serve_http(listener, shared.clone()),
        proxy::serve_https(tls_listener, tls_config, shared),
    );
    rebuild.abort();
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The IngressClass `rkube` this controller creates when missing: the
/// cluster's default class.
pub fn default_class() -> IngressClass {
    IngressClass {
        metadata: kube::api::ObjectMeta {
            name: Some(CLASS_NAME.into()),
            annotations: Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::networking::v1::IngressClassSpec {
            controller: Some(CONTROLLER_NAME.into()),
            ..Default::default()
        }),
    }
}

/// Creates the IngressClass `rkube` unless it exists (an existing one is
/// left as the administrator has it). Retries a few times while the API
/// server is starting; failures are logged, not fatal.
async fn ensure_class(client: &kube::Client) {
    let api: Api<IngressClass> = Api::all(client.clone());
    for _ in 0..10 {
        match api.get_opt(CLASS_NAME).await {
            Ok(Some(_)) => return,
            Ok(None) => match api.create(&Default::default(), &default_class()).await {
                Ok(_) => {
                    tracing::info!("ingress: created IngressClass {CLASS_NAME}");
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => return,
                Err(e) => tracing::warn!("ingress: create IngressClass: {e}"),
            },
            Err(e) => tracing::warn!("ingress: get IngressClass: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The InternalIP addresses of the nodes, sorted and without duplicates:
/// what every served Ingress's `status.loadBalancer.ingress` lists.
pub fn node_ips(nodes: &[Node]) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The IPs `ing`'s status lists now.
fn status_ips(ing: &Ingress) -> Vec<String> {
    ing.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

/// Patches the status of every served Ingress whose addresses differ.
async fn update_status(
    client: &kube::Client,
    ings: &[Ingress],
    classes: &[IngressClass],
    ips: &[String],
) {
    let rkube_default = rkube_is_default(classes);
    for ing in ings.iter().filter(|i| is_served(i, rkube_default)) {
        if status_ips(ing) == ips {
            continue;
        }
        let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
            continue;
        };
        let entries: Vec<serde_json::Value> =
            ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": entries}}});
        let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
        if let Err(e) = api
            .patch_status(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(ingress = %format!("{ns}/{name}"), "ingress: status: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
