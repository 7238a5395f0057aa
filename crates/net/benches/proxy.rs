//! Service proxy benchmark: renders 1,000 Services × 10 endpoints (plus
//! NodePorts on a tenth of them), programs them into a scratch nftables
//! table with `nft -f`, then times one endpoint change (the incremental
//! script) and removing one Service. Prints figures; needs root and nft
//! (prints "skipping" otherwise). The table is deleted at the end.
//!
//!     cargo bench -p rkube-net --bench proxy
//!
//! BENCH_SERVICES=N changes the number of Services.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use net::proxy::model::{Endpoint, Protocol, ServicePort};
use net::proxy::nft::{render, Options};

/// One `nft -f` transaction through the proxy's own apply.
fn nft(rt: &tokio::runtime::Runtime, script: &str) -> Duration {
    let started = Instant::now();
    rt.block_on(net::proxy::apply(script)).expect("nft -f");
    started.elapsed()
}

fn ports(services: usize, endpoints: usize, bump: Option<usize>) -> Vec<ServicePort> {
    (0..services)
        .map(|i| {
            let eps = (0..endpoints)
                .map(|j| Endpoint {
                    ip: Ipv4Addr::new(10, 42, (i / 20) as u8, ((i % 20) * 12 + j) as u8),
                    port: if bump == Some(i) && j == 0 {
                        8081
                    } else {
                        8080
                    },
                    ready: true,
                    serving: true,
                    terminating: false,
                    node: Some("n1".into()),
                })
                .collect();
            ServicePort {
                namespace: "bench".into(),
                name: format!("svc-{i}"),
                port_name: "http".into(),
                protocol: Protocol::Tcp,
                cluster_ips: vec![Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(100, 127, 0, 0)) + i as u32,
                )],
                port: 80,
                node_port: (i % 10 == 0).then_some(30000 + i as u16),
                external_ips: vec![],
                affinity_timeout: None,
                internal_local: false,
                external_local: false,
                endpoints: eps,
            }
        })
        .collect()
}

fn main() {
    let ok = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipping: nft not usable here (needs root and the nftables package)");
        return;
    }
    let services: usize = std::env::var("BENCH_SERVICES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = format!("rkube-bench-{}", std::process::id());
    let opts = Options {
        node: "n1".into(),
        masquerade_bridge: None,
    };

    let t = Instant::now();
    let all = ports(services, 10, None);
    let full = render(&opts, &all);
    let render_took = t.elapsed();
    let script = full.script(&table, None);
    println!(
        "{services} services x 10 endpoints: {} chains, script {} lines ({:.1} MiB)",
        full.chains.len(),
        script.lines().count(),
        script.len() as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  model -> ruleset render       {:>8.1} ms",
        render_took.as_secs_f64() * 1e3
    );
    let took = nft(&rt, &script);
    println!(
        "  first program (nft -f)        {:>8.1} ms",
        took.as_secs_f64() * 1e3
    );

    // One endpoint's port changes in one service: the incremental path.
    let mut times = Vec::new();
    let mut current = full;
    for round in 0..10 {
        let t = Instant::now();
        let next = render(&opts, &ports(services, 10, Some(round * 7 % services)));
        let s = next.script(&table, Some(&current));
        let diff = t.elapsed();
        let apply = nft(&rt, &s);
        times.push((diff, apply, s.lines().count()));
        current = next;
    }
    times.sort_by_key(|(d, a, _)| *d + *a);
    let (d, a, lines) = times[times.len() / 2];
    println!(
        "  one endpoint change (p50 of 10): diff {:.1} ms + nft {:.1} ms = {:.1} ms ({lines} script lines)",
        d.as_secs_f64() * 1e3,
        a.as_secs_f64() * 1e3,
        (d + a).as_secs_f64() * 1e3
    );

    // One service removed.
    let mut fewer = ports(services, 10, None);
    fewer.remove(services / 2);
    let next = render(&opts, &fewer);
    let s = next.script(&table, Some(&current));
    let took = nft(&rt, &s);
    println!(
        "  one service removed            {:>8.1} ms ({} script lines)",
        took.as_secs_f64() * 1e3,
        s.lines().count()
    );

    let _ = rt.block_on(net::proxy::remove(&table));
}
