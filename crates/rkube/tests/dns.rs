//! Cluster DNS (`net::dns::serve`) in-process against a real `rkube
//! server`, objects made with the real kubectl, queried over UDP and TCP
//! with hickory-proto messages.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use net::dns::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use net::dns::proto::rr::{Name, RData, RecordType};
use support::{eventually, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = request(name, qtype);
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        sock.send_to(&req, addr).await.unwrap();
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
        {
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(&req[..2], &buf[..2], "response id");
            return m;
        }
    }
    panic!("no UDP answer from {addr} for {name} {qtype}");
}

async fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
    let req = request(name, qtype);
    conn.write_all(&(req.len() as u16).to_be_bytes())
        .await
        .unwrap();
    conn.write_all(&req).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut len))
        .await
        .expect("TCP answer timed out")
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    conn.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn free_port() -> u16 {
    // A port free for UDP and TCP alike.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: default
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [10.42.0.5]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.42.0.6]
  hostname: db-1
  conditions: {ready: false}
ports: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: example.com
"#;

#[test]
fn cluster_dns_answers_from_the_api() {
    let s = Server::start_with(&["--disable-scheduler"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let kubeconfig = s.kubeconfig();
    let server = rt.spawn(async move {
        let client = runtime::client::from_kubeconfig(&kubeconfig).await.unwrap();
        net::dns::serve(
            client,
            net::dns::Config {
                listen: addr,
                cluster_domain: "cluster.local".into(),
                ttl: 5,
                publish: None,
            },
        )
        .await
    });

    s.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    let cluster_ip: IpAddr = s
        .ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .parse()
        .expect("web has a ClusterIP");

    // A: the ClusterIP, over UDP, in any case, then over TCP.
    let m = eventually(20, "web's A record", || {
        let m = rt.block_on(udp(addr, "web.default.svc.cluster.local.", RecordType::A));
        (m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()).then_some(m)
    });
    assert!(!server.is_finished(), "dns server ended");
    assert_eq!(addresses(&m), vec![cluster_ip]);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, 5);
    let m = rt.block_on(udp(addr, "WEB.Default.Svc.Cluster.Local.", RecordType::A));
    assert_eq!(addresses(&m), vec![cluster_ip]);
    let m = rt.block_on(tcp(addr, "web.default.svc.cluster.local.", RecordType::A));
    assert_eq!(addresses(&m), vec![cluster_ip]);

    // Headless: ready endpoints only; the stable hostname.
    let m = eventually(20, "db's endpoints", || {
        let m = rt.block_on(udp(addr, "db.default.svc.cluster.local.", RecordType::A));
        (!m.answers.is_empty()).then_some(m)
    });
    assert_eq!(addresses(&m), vec!["10.42.0.5".parse::<IpAddr>().unwrap()]);
    let m = rt.block_on(udp(
        addr,
        "db-0.db.default.svc.cluster.local.",
        RecordType::A,
    ));
    assert_eq!(addresses(&m), vec!["10.42.0.5".parse::<IpAddr>().unwrap()]);

    // SRV for named ports.
    let m = rt.block_on(udp(
        addr,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    let srv: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        srv,
        vec![(5432, "db-0.db.default.svc.cluster.local.".to_string())]
    );
    let m = rt.block_on(udp(
        addr,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    let srv: Vec<(u16, String)> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.port, s.target.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        srv,
        vec![(80, "web.default.svc.cluster.local.".to_string())]
    );

    // ExternalName: a CNAME, not followed out of the cluster.
    let m = rt.block_on(udp(addr, "ext.default.svc.cluster.local.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    match &m.answers[..] {
        [r] => match &r.data {
            RData::CNAME(c) => assert_eq!(c.0.to_string(), "example.com."),
            other => panic!("expected a CNAME, got {other:?}"),
        },
        other => panic!("expected one CNAME, got {other:?}"),
    }

    // PTR for the ClusterIP and a headless endpoint.
    let IpAddr::V4(v4) = cluster_ip else {
        panic!("IPv4 ClusterIP expected")
    };
    let o = v4.octets();
    let reverse = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
    let m = rt.block_on(udp(addr, &reverse, RecordType::PTR));
    match &m.answers[..] {
        [r] => match &r.data {
            RData::PTR(p) => assert_eq!(p.0.to_string(), "web.default.svc.cluster.local."),
            other => panic!("expected a PTR, got {other:?}"),
        },
        other => panic!("expected one PTR for {reverse}, got {other:?}"),
    }
    let m = rt.block_on(udp(addr, "5.0.42.10.in-addr.arpa.", RecordType::PTR));
    assert_eq!(m.answers.len(), 1, "{m:?}");

    // NXDOMAIN with the SOA; NODATA; REFUSED outside the cluster domain.
    let m = rt.block_on(udp(addr, "nope.default.svc.cluster.local.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "{m:?}"
    );
    let m = rt.block_on(udp(addr, "web.default.svc.cluster.local.", RecordType::TXT));
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(
        m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "{m:?}"
    );
    let m = rt.block_on(udp(addr, "example.org.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());

    // Changes show within a bounded wait: a deleted service is gone, a
    // new endpoint appears.
    s.ok(&["delete", "service", "web"]);
    eventually(10, "web gone from DNS", || {
        let m = rt.block_on(udp(addr, "web.default.svc.cluster.local.", RecordType::A));
        (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
    });
    s.ok(&[
        "patch",
        "endpointslice",
        "db-1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/1/conditions/ready","value":true}]"#,
    ]);
    eventually(10, "db-1 ready in DNS", || {
        let m = rt.block_on(udp(addr, "db.default.svc.cluster.local.", RecordType::A));
        (addresses(&m).len() == 2).then_some(())
    });
    assert!(!server.is_finished(), "dns server ended");
    server.abort();
}

/// `rkube server --dns-listen` runs the same DNS server in the server
/// process.
#[test]
fn the_server_serves_cluster_dns_when_asked() {
    let port = free_port();
    let listen = format!("--dns-listen=127.0.0.1:{port}");
    let s = Server::start_with(&[
        "--disable-scheduler",
        "--disable-controller-manager",
        &listen,
        "--cluster-domain=example.internal",
    ]);
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "--clusterip=10.43.7.7",
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    eventually(20, "the service's A record", || {
        let m = rt.block_on(udp(
            addr,
            "web.default.svc.example.internal.",
            RecordType::A,
        ));
        let ips: Vec<IpAddr> = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
        (ips == [IpAddr::from([10, 43, 7, 7])]).then_some(())
    });
    // The default domain is not served when another one is configured.
    let m = rt.block_on(udp(addr, "web.default.svc.cluster.local.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}
