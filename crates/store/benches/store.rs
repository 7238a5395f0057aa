//! Datastore benchmark: the embedded SQLite backend next to a real etcd on
//! the same machine, in one run. Prints a table.
//!
//!     cargo bench -p rkube-store --bench store
//!
//! BENCH_SCALE=0.1 shrinks every count, for a quick check that the bench
//! still runs (CI does not run benches).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use store::etcd::EtcdStore;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::testutil::EtcdServer;
use store::{ListOptions, Store};

struct Figures {
    seq_ops: f64,
    seq_p50: Duration,
    seq_p99: Duration,
    conc_ops: f64,
    conc_p50: Duration,
    conc_p99: Duration,
    list_full: Duration,
    list_paged: Duration,
    watch_p50: Duration,
    watch_p99: Duration,
    watch_events: usize,
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * scale) as usize).max(1)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn run(store: Arc<dyn Store>) -> Figures {
    // Sequential durable writes from one client.
    let n = scaled(2000);
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        store
            .create(&format!("/seq/{i:08}"), vec![b'x'; 1024])
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    let seq_ops = n as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    let (seq_p50, seq_p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // 16 concurrent clients.
    let per = scaled(1000);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for i in 0..per {
                    let t = Instant::now();
                    store
                        .create(&format!("/conc/{c:02}/{i:08}"), vec![b'x'; 1024])
                        .await
                        .unwrap();
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let conc_ops = (16 * per) as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    let (conc_p50, conc_p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));

    // A range of 10k keys (about the size of a pod object each: 2 KiB).
    let keys = scaled(10_000);
    let loaders: Vec<_> = (0..16)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (c..keys).step_by(16) {
                    store
                        .create(&format!("/range/{i:08}"), vec![b'p'; 2048])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for l in loaders {
        l.await.unwrap();
    }
    let mut full = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let res = store.list("/range/", ListOptions::default()).await.unwrap();
        assert_eq!(res.items.len(), keys);
        full.push(t.elapsed());
    }
    full.sort();
    let t = Instant::now();
    let mut start = None;
    let mut revision = 0;
    let mut seen = 0;
    loop {
        let page = store
            .list(
                "/range/",
                ListOptions {
                    limit: 500,
                    start: start.clone(),
                    revision,
                },
            )
            .await
            .unwrap();
        revision = page.revision;
        seen += page.items.len();
        if !page.more {
            break;
        }
        start = Some(format!("{}\0", page.items.last().unwrap().key));
    }
    assert_eq!(seen, keys);
    let list_paged = t.elapsed();

    // Watch delivery latency to 100 watchers, writes paced at 200/s.
    let base = Instant::now();
    let events = scaled(200);
    let from = store.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let mut w = store.watch("/watch/", from).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(events);
            while lat.len() < events {
                let ev = w.next().await.unwrap().unwrap();
                let sent = u64::from_le_bytes(ev.kv.value[..8].try_into().unwrap());
                lat.push(base.elapsed() - Duration::from_nanos(sent));
            }
            lat
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    for i in 0..events {
        tick.tick().await;
        let sent = base.elapsed().as_nanos() as u64;
        store
            .create(&format!("/watch/{i:08}"), sent.to_le_bytes().to_vec())
            .await
            .unwrap();
    }
    let mut lat = Vec::new();
    for w in watchers {
        lat.extend(w.await.unwrap());
    }
    lat.sort();
    Figures {
        seq_ops,
        seq_p50,
        seq_p99,
        conc_ops,
        conc_p50,
        conc_p99,
        list_full: full[full.len() / 2],
        list_paged,
        watch_p50: percentile(&lat, 0.5),
        watch_p99: percentile(&lat, 0.99),
        watch_events: lat.len(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; any filter argument is ignored.
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("state.db"))).unwrap());
    eprintln!("benchmarking sqlite ...");
    let s = run(sqlite).await;

    let etcd_server = EtcdServer::start().await;
    let etcd = Arc::new(EtcdStore::connect(&[etcd_server.endpoint()]).await.unwrap());
    eprintln!("benchmarking etcd ...");
    let e = run(etcd).await;

    let keys = scaled(10_000);
    let rows: Vec<(String, String, String)> = vec![
        (
            "sequential writes/s (1 client)".into(),
            format!("{:.0}", s.seq_ops),
            format!("{:.0}", e.seq_ops),
        ),
        (
            "  p50 / p99".into(),
            format!("{} / {}", ms(s.seq_p50), ms(s.seq_p99)),
            format!("{} / {}", ms(e.seq_p50), ms(e.seq_p99)),
        ),
        (
            "concurrent writes/s (16 clients)".into(),
            format!("{:.0}", s.conc_ops),
            format!("{:.0}", e.conc_ops),
        ),
        (
            "  p50 / p99".into(),
            format!("{} / {}", ms(s.conc_p50), ms(s.conc_p99)),
            format!("{} / {}", ms(e.conc_p50), ms(e.conc_p99)),
        ),
        (
            format!("list {keys} keys, one range"),
            ms(s.list_full),
            ms(e.list_full),
        ),
        (
            format!("list {keys} keys, pages of 500"),
            ms(s.list_paged),
            ms(e.list_paged),
        ),
        (
            format!(
                "watch latency p50 / p99 (100 watchers, {} deliveries)",
                s.watch_events
            ),
            format!("{} / {}", ms(s.watch_p50), ms(s.watch_p99)),
            format!("{} / {}", ms(e.watch_p50), ms(e.watch_p99)),
        ),
    ];
    println!();
    println!(
        "{:<58} {:>22} {:>22}",
        "datastore benchmark", "sqlite", "etcd"
    );
    for (name, a, b) in rows {
        println!("{name:<58} {a:>22} {b:>22}");
    }
}
