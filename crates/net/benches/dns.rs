//! Cluster DNS benchmark (issue 7): queries per second and latency of the
//! cluster DNS server over UDP on loopback.
//!
//! The server is `net::dns::serve_fixed`: the query path of `rkube
//! server`'s DNS (the same handler, `resolve` and hickory-server), fed a
//! fixed index of N Services instead of informers. Every Service has an
//! EndpointSlice with 10 ready endpoints; a tenth of them are headless
//! (their A answer is the 10 addresses), the rest have a ClusterIP. Client
//! threads (one UDP socket each) send prepared A queries, a mix of
//! ClusterIP names (1 address), headless names (10 addresses) and unknown
//! names in known namespaces (NXDOMAIN), and check every answer's id,
//! rcode and answer count against what the name should get. Two rounds:
//! one query in flight per client (latency), then a window of queries in
//! flight per client (throughput). Each round stops after BENCH_QUERIES
//! answers or BENCH_SECONDS, whichever comes first. Then the same client
//! against a UDP echo server on the same runtime: the ceiling of loopback
//! UDP and this client on this machine, no DNS work.
//!
//! Client and server share the machine's cores: the figures are for both
//! together. Prints figures only.
//!
//!     cargo bench -p rkube-net --bench dns
//!
//! BENCH_SERVICES (1000), BENCH_QUERIES (200000 per round), BENCH_SECONDS
//! (10 per round), BENCH_CLIENTS (4), BENCH_WINDOW (16 in flight per
//! client), BENCH_MISS_PERCENT (10), BENCH_SERVER_THREADS (the runtime's
//! worker threads; default: the number of cores).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use net::dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use net::dns::proto::rr::{Name, RData, RecordType};
use net::dns::{Index, Zone, SERVICE_NAME_LABEL};

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

const NAMESPACES: usize = 10;
const HEADLESS_ENDPOINTS: usize = 10;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 10)) + i as u32)
}

fn headless(i: usize) -> bool {
    i % 10 == 5
}

/// The Services and their EndpointSlices.
fn objects(n: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..n {
        let ns = format!("ns-{}", i % NAMESPACES);
        let name = format!("svc-{i}");
        let ip = if headless(i) {
            "None".to_owned()
        } else {
            cluster_ip(i).to_string()
        };
        services.push(Service {
            metadata: meta(&ns, &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.clone()),
                cluster_ips: Some(vec![ip]),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut m = meta(&ns, &format!("{name}-abcde"));
        m.labels = Some([(SERVICE_NAME_LABEL.to_owned(), name.clone())].into());
        slices.push(EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: (0..HEADLESS_ENDPOINTS)
                .map(|j| Endpoint {
                    addresses: vec![Ipv4Addr::new(
                        10,
                        42,
                        (i / 20) as u8,
                        ((i % 20) * 12 + j) as u8,
                    )
                    .to_string()],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        });
    }
    (services, slices)
}

/// What a name should get.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    ClusterIp,
    Headless,
    Missing,
}

impl Kind {
    fn expected(self) -> (u8, u16) {
        match self {
            Kind::ClusterIp => (0, 1),
            Kind::Headless => (0, HEADLESS_ENDPOINTS as u16),
            Kind::Missing => (3, 0),
        }
    }
}

fn query(name: &str) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// The query list, in a fixed pseudo-random order: `miss` percent unknown
/// names, the rest the services' names.
fn queries(n: usize, miss: usize) -> Vec<(Vec<u8>, Kind)> {
    let mut out = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for k in 0..n.max(1) * 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % n.max(1) as u64) as usize;
        let ns = i % NAMESPACES;
        if (k * 7919) % 100 < miss {
            out.push((
                query(&format!("nope-{i}.ns-{ns}.svc.cluster.local.")),
                Kind::Missing,
            ));
        } else {
            let kind = if headless(i) {
                Kind::Headless
            } else {
                Kind::ClusterIp
            };
            out.push((query(&format!("svc-{i}.ns-{ns}.svc.cluster.local.")), kind));
        }
    }
    out
}

#[derive(Default)]
struct Tally {
    latencies: Vec<u64>,
    cluster_ip: usize,
    headless: usize,
    nxdomain: usize,
    /// Answers whose rcode or answer count is not what the name should
    /// get (rcode, answers).
    unexpected: Vec<(u8, u16)>,
    lost: usize,
    last_answer: Option<Instant>,
}

impl Tally {
    fn answered(&self) -> usize {
        self.latencies.len()
    }

    fn merge(&mut self, o: Tally) {
        self.latencies.extend(o.latencies);
        self.cluster_ip += o.cluster_ip;
        self.headless += o.headless;
        self.nxdomain += o.nxdomain;
        self.unexpected.extend(o.unexpected);
        self.lost += o.lost;
        self.last_answer = self.last_answer.max(o.last_answer);
    }
}

/// One client: keeps `window` queries in flight until `quota` answers or
/// the deadline. `check`: whether answers are DNS answers to check (not
/// for the echo baseline).
fn client(
    server: SocketAddr,
    qs: Arc<Vec<(Vec<u8>, Kind)>>,
    offset: usize,
    window: usize,
    quota: usize,
    deadline: Instant,
    check: bool,
) -> Tally {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut slots: Vec<Option<(Instant, Kind)>> = vec![None; 65536];
    let mut t = Tally::default();
    let mut next_id: u16 = 1;
    let mut next_q = offset;
    let mut in_flight = 0usize;
    let mut sent = 0usize;
    let mut packet = Vec::new();
    let mut send = |slots: &mut Vec<Option<(Instant, Kind)>>, next_id: &mut u16| {
        let (q, kind) = &qs[next_q % qs.len()];
        next_q += 1;
        packet.clear();
        packet.extend_from_slice(q);
        packet[..2].copy_from_slice(&next_id.to_be_bytes());
        slots[*next_id as usize] = Some((Instant::now(), *kind));
        *next_id = next_id.wrapping_add(1);
        sock.send(&packet).unwrap();
    };
    let mut buf = vec![0u8; 4096];
    while t.answered() < quota && Instant::now() < deadline {
        while in_flight < window && sent < quota {
            send(&mut slots, &mut next_id);
            in_flight += 1;
            sent += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) if n >= 12 => {
                let now = Instant::now();
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let Some((at, kind)) = slots[id as usize].take() else {
                    continue; // late answer to a query counted lost
                };
                in_flight -= 1;
                t.latencies.push(now.duration_since(at).as_nanos() as u64);
                t.last_answer = Some(now);
                if !check {
                    continue;
                }
                let rcode = buf[3] & 0x0f;
                let answers = u16::from_be_bytes([buf[6], buf[7]]);
                if buf[2] & 0x80 == 0 || (rcode, answers) != kind.expected() {
                    t.unexpected.push((rcode, answers));
                    continue;
                }
                match kind {
                    Kind::ClusterIp => t.cluster_ip += 1,
                    Kind::Headless => t.headless += 1,
                    Kind::Missing => t.nxdomain += 1,
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // 200 ms without an answer: what is in flight is lost;
                // skip ahead so a late answer matches no new query.
                for s in slots.iter_mut() {
                    if s.take().is_some() {
                        t.lost += 1;
                    }
                }
                in_flight = 0;
                sent = t.answered();
                next_id = next_id.wrapping_add(4096);
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
    t
}

/// One round: `clients` threads, `window` in flight each.
fn round(
    server: SocketAddr,
    qs: &Arc<Vec<(Vec<u8>, Kind)>>,
    clients: usize,
    window: usize,
    total: usize,
    limit: Duration,
    check: bool,
) -> (Tally, Duration) {
    let start = Instant::now();
    let deadline = start + limit;
    let quota = total.div_ceil(clients);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let qs = qs.clone();
            let offset = c * qs.len() / clients;
            std::thread::spawn(move || client(server, qs, offset, window, quota, deadline, check))
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.join().unwrap());
    }
    let took = all.last_answer.map_or(limit, |l| l.duration_since(start));
    (all, took)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn report(what: &str, mut t: Tally, took: Duration, check: bool) {
    t.latencies.sort_unstable();
    let n = t.answered();
    println!(
        "  {what:<34} {:>9.0} queries/s  ({n} in {:.2} s)  latency p50 {:.0} us  p99 {:.0} us  max {:.0} us",
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        percentile(&t.latencies, 50.0),
        percentile(&t.latencies, 99.0),
        percentile(&t.latencies, 100.0),
    );
    if check {
        println!(
            "  {:<34} A ClusterIP {}  A headless (10 addresses) {}  NXDOMAIN {}  unexpected {}  lost {}",
            "answers:",
            t.cluster_ip,
            t.headless,
            t.nxdomain,
            t.unexpected.len(),
            t.lost
        );
        if let Some((rcode, answers)) = t.unexpected.first() {
            println!("    first unexpected answer: rcode {rcode}, {answers} answers");
        }
    } else if t.lost > 0 {
        println!("  {:<34} lost {}", "", t.lost);
    }
}

/// A UDP echo server: the baseline.
async fn echo(sock: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let _ = sock.send_to(&buf[..n], from).await;
    }
}

fn main() {
    let services = count("BENCH_SERVICES", 1000).max(1);
    let total = count("BENCH_QUERIES", 200_000).max(1);
    let limit = Duration::from_secs(count("BENCH_SECONDS", 10).max(1) as u64);
    let clients = count("BENCH_CLIENTS", 4).max(1);
    let window = count("BENCH_WINDOW", 16).clamp(1, 1024);
    let miss = count("BENCH_MISS_PERCENT", 10).min(100);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_threads = count("BENCH_SERVER_THREADS", cores).max(1);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .enable_all()
        .build()
        .unwrap();
    let (svcs, slices) = objects(services);
    let t = Instant::now();
    let index = Index::build(&svcs, &slices);
    let build = t.elapsed();
    let (addr, echo_addr) = rt.block_on(async {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        tokio::spawn(net::dns::serve_fixed(
            udp,
            None,
            index,
            Zone::new("cluster.local", 5),
        ));
        let e = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = e.local_addr().unwrap();
        tokio::spawn(echo(e));
        (addr, echo_addr)
    });

    // The answers are what the names should get (checked in full once).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe
        .send_to(&query("svc-0.ns-0.svc.cluster.local."), addr)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = probe.recv_from(&mut buf).expect("the DNS server answers");
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(
        matches!(&m.answers[..], [r] if r.data == RData::A(net::dns::proto::rr::rdata::A(cluster_ip(0)))),
        "svc-0: {:?}",
        m.answers
    );

    let qs = Arc::new(queries(services, miss));
    println!(
        "cluster DNS benchmark: {services} services ({} headless x {HEADLESS_ENDPOINTS} endpoints) in {NAMESPACES} namespaces, index built in {:.1} ms; \
         {cores} cores shared by the server ({server_threads} runtime threads) and {clients} client threads; \
         UDP on loopback; A queries, {miss}% unknown names",
        services / 10 + usize::from(services % 10 > 5),
        build.as_secs_f64() * 1e3
    );
    println!(
        "rounds of at most {total} answers or {} s:",
        limit.as_secs()
    );
    // Warm up (not counted).
    let _ = round(
        addr,
        &qs,
        clients,
        window,
        total / 20,
        Duration::from_secs(1),
        true,
    );
    let (t, took) = round(addr, &qs, clients, 1, total, limit, true);
    report(&format!("{clients} clients x 1 in flight"), t, took, true);
    let (t, took) = round(addr, &qs, clients, window, total, limit, true);
    report(
        &format!("{clients} clients x {window} in flight"),
        t,
        took,
        true,
    );
    let (t, took) = round(echo_addr, &qs, clients, window, total, limit, false);
    report(
        &format!("baseline: UDP echo, {clients} x {window}"),
        t,
        took,
        false,
    );
    rt.shutdown_timeout(Duration::from_secs(1));
}
