//! The cluster DNS server: authoritative for the cluster domain and the
//! reverse zones of the cluster's addresses, fed by informers on Services
//! and EndpointSlices, served over UDP and TCP with hickory-server.
//!
//! [`serve`] keeps an [`Index`] rebuilt after every burst of changes (one
//! rebuild per burst, off the query path); each query reads the current
//! index and answers with [`resolve`], a pure function. Until the first
//! lists are in, queries get SERVFAIL (so a client retries instead of
//! caching a wrong NXDOMAIN). Nothing is ever forwarded: names outside the
//! cluster domain get REFUSED.

mod records;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use runtime::Informer;

pub use hickory_proto as proto;
pub use records::{dashed, resolve, Answer, Index, Zone, SERVICE_NAME_LABEL};

/// Where and how the DNS server answers.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP address to listen on.
    pub listen: SocketAddr,
    /// The cluster domain, e.g. "cluster.local".
    pub cluster_domain: String,
    /// TTL of every answer, in seconds.
    pub ttl: u32,
    /// Publish the server as the cluster DNS Service (see [`Publish`]).
    pub publish: Option<Publish>,
}

/// Where pods find this DNS server: the `kube-dns` Service in kube-system
/// at `service_ip` (ports 53/UDP "dns" and 53/TCP "dns-tcp", no selector)
/// and an EndpointSlice pointing at `address` and the ports actually
/// bound, which the service proxy DNATs to. The listen port may then be
/// any (0), so several servers can share a host.
#[derive(Clone, Debug)]
pub struct Publish {
    pub service_ip: std::net::IpAddr,
    pub address: std::net::Ipv4Addr,
}

/// The label marking the EndpointSlice the DNS server publishes itself in.
pub const PUBLISHED_BY: &str = "rkube-dns";

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            cluster_domain: "cluster.local".into(),
            ttl: 5,
            publish: None,
        }
    }
}

/// The index queries read, swapped whole after each rebuild.
struct State {
    current: RwLock<Arc<(Index, Zone)>>,
    synced: AtomicBool,
}

impl State {
    fn answer(
        &self,
        name: &hickory_proto::rr::Name,
        qtype: hickory_proto::rr::RecordType,
    ) -> Answer {
        let current = self.current.read().unwrap().clone();
        resolve(&current.0, &current.1, name, qtype)
    }
}

/// Serves cluster DNS on `config.listen` (UDP and TCP) until an error.
pub async fn serve(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let udp = tokio::net::UdpSocket::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("dns: bind udp {}: {e}", config.listen))?;
    // TCP on the port UDP got (the same one when the config says 0).
    let udp_addr = udp.local_addr()?;
    let tcp = tokio::net::TcpListener::bind(udp_addr)
        .await
        .map_err(|e| anyhow::anyhow!("dns: bind tcp {udp_addr}: {e}"))?;
    if let Some(publish) = config.publish.clone() {
        let client = client.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            loop {
                match publish_service(&client, &publish, udp_addr.port()).await {
                    Ok(()) => {
                        tracing::info!(service_ip = %publish.service_ip, address = %publish.address, port = udp_addr.port(), "dns: published as kube-system/kube-dns");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "dns: publishing kube-dns failed; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    let state = Arc::new(State {
        current: RwLock::new(Arc::new((
            Index::default(),
            Zone::new(&config.cluster_domain, config.ttl),
        ))),
        synced: AtomicBool::new(false),
    });

    let services: Arc<Informer<Service>> =
        Informer::new(Api::all(client.clone()), watcher::Config::default());
    let slices: Arc<Informer<EndpointSlice>> = Informer::new(
        Api::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
    );
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let n = changed.clone();
        services.on_change(move |_| n.notify_one());
        let n = changed.clone();
        slices.on_change(move |_| n.notify_one());
    }
    let svc_task = services.start();
    let slice_task = slices.start();

    // Rebuild the index after every burst of changes.
    let rebuild = {
        let state = state.clone();
        let (services, slices) = (services.clone(), slices.clone());
        let changed = changed.clone();
        let config = config.clone();
        tokio::spawn(async move {
            services.wait_synced().await;
            slices.wait_synced().await;
            loop {
                let svcs = services.store().state();
                let eps = slices.store().state();
                let index = Index::build(
                    svcs.iter().map(|s| s.as_ref()),
                    eps.iter().map(|s| s.as_ref()),
                );
                let serial = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(1);
                let mut zone = Zone::new(&config.cluster_domain, config.ttl);
                zone.serial = serial;
                *state.current.write().unwrap() = Arc::new((index, zone));
                if !state.synced.swap(true, Ordering::SeqCst) {
                    tracing::info!(services = svcs.len(), "dns: serving");
                }
                changed.notified().await;
            }
        })
    };

    tracing::info!(listen = %udp_addr, domain = %config.cluster_domain, "dns: listening");
    let result = answer_queries(udp, tcp, state).await;
    svc_task.abort();
    slice_task.abort();
    rebuild.abort();
    result
}

/// Serves a fixed `index` on sockets the caller bound (UDP, and TCP when
/// given) until an error: the query path of [`serve`] (the same handler
/// and hickory-server) without the API server and informers behind it.
/// For benchmarks (`cargo bench -p rkube-net --bench dns`) and tests.
pub async fn serve_fixed(
    udp: tokio::net::UdpSocket,
    tcp: Option<tokio::net::TcpListener>,
    index: Index,
    zone: Zone,
) -> anyhow::Result<()> {
    let state = Arc::new(State {
        current: RwLock::new(Arc::new((index, zone))),
        synced: AtomicBool::new(true),
    });
    answer_queries(udp, tcp, state).await
}

/// Answers queries on `udp` and `tcp` from `state` until an error.
async fn answer_queries(
    udp: tokio::net::UdpSocket,
    tcp: impl Into<Option<tokio::net::TcpListener>>,
    state: Arc<State>,
) -> anyhow::Result<()> {
    let mut server = hickory_server::Server::new(Handler { state });
    server.register_socket(udp);
    if let Some(tcp) = tcp.into() {
        server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
    }
    server
        .block_until_done()
        .await
        .map_err(|e| anyhow::anyhow!("dns server: {e}"))
}

/// Creates `obj`, or, when it exists, replaces what `fields` name with
/// `obj`'s (a restart with another port only moves the endpoint). Not
/// server-side apply: its list keys would fold the UDP and TCP port 53
/// entries into one.
async fn create_or_update<K>(
    api: &Api<K>,
    name: &str,
    obj: &K,
    fields: &[&str],
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    use kube::api::PostParams;
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => return Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let current = serde_json::to_value(api.get(name).await?)?;
    let wanted = serde_json::to_value(obj)?;
    let mut next = current.clone();
    for f in fields {
        let (parent, key) = match f.split_once('.') {
            Some((parent, key)) => (Some(parent), key),
            None => (None, *f),
        };
        let (from, to) = match parent {
            Some(p) => (&wanted[p], &mut next[p]),
            None => (&wanted, &mut next),
        };
        to[key] = from[key].clone();
    }
    if next != current {
        let next: K = serde_json::from_value(next)?;
        api.replace(name, &PostParams::default(), &next).await?;
    }
    Ok(())
}

/// Puts the `kube-dns` Service and its EndpointSlice in place.
async fn publish_service(client: &kube::Client, p: &Publish, port: u16) -> anyhow::Result<()> {
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "rkube-dns"},
        },
        "spec": {
            "clusterIP": p.service_ip.to_string(),
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    }))?;
    let services = Api::<Service>::namespaced(client.clone(), "kube-system");
    create_or_update(&services, "kube-dns", &service, &["spec.ports"]).await?;
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-rkube",
            "namespace": "kube-system",
            "labels": {
                SERVICE_NAME_LABEL: "kube-dns",
                "endpointslice.kubernetes.io/managed-by": PUBLISHED_BY,
            },
        },
        "addressType": "IPv4",
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
        "endpoints": [{"addresses": [p.address.to_string()], "conditions": {"ready": true}}],
    }))?;
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "kube-system");
    create_or_update(&slices, "kube-dns-rkube", &slice, &["ports", "endpoints"]).await?;
    Ok(())
}

struct Handler {
    state: Arc<State>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let resp_edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            e
        });
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);

        let query = match request.request_info() {
            Ok(info) => Some(info.query.original().clone()),
            Err(_) => None,
        };
        let answer = match (request.metadata.op_code, &query) {
            (OpCode::Query, Some(q)) if q.query_class() == DNSClass::IN => {
                if self.state.synced.load(Ordering::SeqCst) {
                    Some(self.state.answer(q.name(), q.query_type()))
                } else {
                    metadata.response_code = ResponseCode::ServFail;
                    None
                }
            }
            (OpCode::Query, Some(_)) => {
                metadata.response_code = ResponseCode::Refused;
                None
            }
            (OpCode::Query, None) => {
                metadata.response_code = ResponseCode::FormErr;
                None
            }
            _ => {
                metadata.response_code = ResponseCode::NotImp;
                None
            }
        };
        let result = match &answer {
            Some(a) => {
                metadata.response_code = a.rcode;
                metadata.authoritative = a.rcode != ResponseCode::Refused;
                response_handle
                    .send_response(builder.build(
                        metadata,
                        a.answers.iter(),
                        std::iter::empty(),
                        a.authority.iter(),
                        a.additionals.iter(),
                    ))
                    .await
            }
            None => {
                response_handle
                    .send_response(builder.build(
                        metadata,
                        std::iter::empty(),
                        std::iter::empty(),
                        std::iter::empty(),
                        std::iter::empty(),
                    ))
                    .await
            }
        };
        match result {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "dns: send response failed");
                let mut m = Metadata::response_from_request(&request.metadata);
                m.response_code = ResponseCode::ServFail;
                let h = hickory_proto::op::Header {
                    metadata: m,
                    counts: Default::default(),
                };
                ResponseInfo::from(h)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use k8s_openapi::api::core::v1::ServiceSpec;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// `serve_fixed` answers from the index it was given, over UDP and
    /// TCP, with the handler `serve` uses (names outside the domain
    /// refused).
    #[tokio::test]
    async fn serve_fixed_answers_from_its_index() {
        let svc: Service = Service {
            metadata: kube::api::ObjectMeta {
                namespace: Some("ns".into()),
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.43.0.7".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let index = Index::build([&svc], std::iter::empty());
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let server = tokio::spawn(serve_fixed(
            udp,
            Some(tcp),
            index,
            Zone::new("cluster.local", 5),
        ));

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let table = [
            ("web.ns.svc.cluster.local.", ResponseCode::NoError, 1),
            ("nope.ns.svc.cluster.local.", ResponseCode::NXDomain, 0),
            ("example.com.", ResponseCode::Refused, 0),
        ];
        for (i, (name, rcode, answers)) in table.into_iter().enumerate() {
            let id = 100 + i as u16;
            client.send_to(&query(id, name), addr).await.unwrap();
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .expect("answer in 5 s")
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.metadata.id, id, "{name}");
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert_eq!(m.answers.len(), answers, "{name}");
        }

        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let q = query(7, "web.ns.svc.cluster.local.");
        conn.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        conn.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.unwrap();
        let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut body).await.unwrap();
        let m = Message::from_vec(&body).unwrap();
        match &m.answers[..] {
            [r] => assert_eq!(
                r.data,
                RData::A(hickory_proto::rr::rdata::A("10.43.0.7".parse().unwrap()))
            ),
            other => panic!("answers: {other:?}"),
        }
        server.abort();
    }
}
