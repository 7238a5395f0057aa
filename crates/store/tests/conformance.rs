//! One conformance suite for every `Store` backend: the same test bodies run
//! against the embedded SQLite store and against a real etcd started for the
//! test. A backend is done when it passes all of them.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use store::etcd::EtcdStore;
use store::sqlite::{SqliteConfig, SqliteStore};
use store::testutil::EtcdServer;
use store::{
    Compactor, CompactorConfig, Error, EventKind, ListOptions, Revision, Store, WatchStream,
    MAX_VALUE_BYTES,
};

/// A backend under test: a store plus the ability to reopen it as a new
/// process would (SQLite: reopen the file; etcd: kill -9 etcd and restart it).
#[async_trait]
trait Harness: Send + Sized {
    async fn new() -> Self;
    fn store(&self) -> Arc<dyn Store>;
    async fn reopen(&mut self);
    /// The target argument of the `rkube-store-writer` crash-test process.
    fn writer_target(&self) -> String;
}

struct Sqlite {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
}

impl Sqlite {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("state.db")
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("state.db"))).unwrap();
        Sqlite {
            dir,
            store: Arc::new(store),
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn reopen(&mut self) {
        self.store = Arc::new(SqliteStore::open(SqliteConfig::new(self.path())).unwrap());
    }
    fn writer_target(&self) -> String {
        format!("sqlite:{}", self.path().display())
    }
}

struct Etcd {
    server: EtcdServer,
    store: Arc<dyn Store>,
}

#[async_trait]
impl Harness for Etcd {
    async fn new() -> Self {
        let server = EtcdServer::start().await;
        let store = EtcdStore::connect(&[server.endpoint()]).await.unwrap();
        Etcd {
            server,
            store: Arc::new(store),
        }
    }
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
    async fn reopen(&mut self) {
        self.server.kill();
        self.server.restart().await;
        self.store = Arc::new(EtcdStore::connect(&[self.server.endpoint()]).await.unwrap());
    }
    fn writer_target(&self) -> String {
        format!("etcd:{}", self.server.endpoint())
    }
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(<super::Sqlite as super::Harness>::new().await).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(<super::Etcd as super::Harness>::new().await).await;
                }
            )*
        }
    };
}

conformance!(
    create_get_update_delete,
    failed_writes_consume_no_revision,
    list_is_sorted_and_paginates,
    pagination_is_consistent_under_concurrent_writes,
    list_at_an_old_revision,
    watch_delivers_in_order_with_previous_values,
    watch_resumes_from_a_revision,
    watch_from_now,
    watch_survives_reopen,
    compaction_makes_old_revisions_gone,
    compactor_compacts_in_the_background,
    concurrent_writers_get_unique_consecutive_revisions,
    kill_9_of_a_writer_loses_no_acknowledged_write,
    oversized_value_is_rejected,
    lists_larger_than_a_grpc_message,
);

fn val(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn create_get_update_delete<H: Harness>(h: H) {
    let s = h.store();
    let r0 = s.current_revision().await.unwrap();
    assert_eq!(s.get("/t/a").await.unwrap(), None);

    let r1 = s.create("/t/a", val("one")).await.unwrap();
    assert_eq!(r1, r0 + 1);
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"one"[..], r1, r1)
    );
    assert!(
        matches!(s.create("/t/a", val("x")).await, Err(Error::AlreadyExists(k)) if k == "/t/a")
    );

    match s.update("/t/a", val("stale"), r1 - 1).await {
        Err(Error::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!((key.as_str(), expected), ("/t/a", r1 - 1));
            assert_eq!(current.unwrap().value, b"one");
        }
        other => panic!("stale update: {other:?}"),
    }
    let r2 = s.update("/t/a", val("two"), r1).await.unwrap();
    assert_eq!(r2, r1 + 1);
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"two"[..], r1, r2)
    );

    assert!(matches!(
        s.update("/t/missing", val("x"), 1).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/t/missing", None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/t/a", Some(r1)).await,
        Err(Error::Conflict { .. })
    ));

    let (prev, r3) = s.delete("/t/a", Some(r2)).await.unwrap();
    assert_eq!(r3, r2 + 1);
    assert_eq!(
        (
            prev.value.as_slice(),
            prev.mod_revision,
            prev.create_revision
        ),
        (&b"two"[..], r2, r1)
    );
    assert_eq!(s.get("/t/a").await.unwrap(), None);

    // A key created again starts a new life.
    let r4 = s.create("/t/a", val("three")).await.unwrap();
    let kv = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));
    let (_, r5) = s.delete("/t/a", None).await.unwrap();
    assert_eq!(r5, r4 + 1);
    assert_eq!(s.current_revision().await.unwrap(), r5);
}

async fn failed_writes_consume_no_revision<H: Harness>(h: H) {
    let s = h.store();
    let r = s.create("/t/k", val("v")).await.unwrap();
    for _ in 0..3 {
        assert!(s.create("/t/k", val("v")).await.is_err());
        assert!(s.update("/t/k", val("v"), r + 100).await.is_err());
        assert!(s.delete("/t/nope", None).await.is_err());
    }
    assert_eq!(s.current_revision().await.unwrap(), r);
    assert_eq!(s.update("/t/k", val("w"), r).await.unwrap(), r + 1);
}

async fn list_is_sorted_and_paginates<H: Harness>(h: H) {
    let s = h.store();
    // Inserted out of order, with neighbours on either side of the prefix.
    for i in (0..25).rev() {
        s.create(&format!("/reg/pods/p{i:02}"), val(&i.to_string()))
            .await
            .unwrap();
    }
    s.create("/reg/pod", val("outside")).await.unwrap();
    s.create("/reg/pods0", val("outside")).await.unwrap();
    s.create("/reg/podsx/y", val("outside")).await.unwrap();

    let all = s.list("/reg/pods/", ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.clone()).collect();
    let want: Vec<_> = (0..25).map(|i| format!("/reg/pods/p{i:02}")).collect();
    assert_eq!(keys, want);
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await.unwrap());
    assert_eq!(s.count("/reg/pods/").await.unwrap(), 25);
    assert_eq!(s.count("/reg/").await.unwrap(), 28);

    let mut seen = Vec::new();
    let mut start = None;
    loop {
        let page = s
            .list(
                "/reg/pods/",
                ListOptions {
                    limit: 10,
                    start: start.clone(),
                    revision: all.revision,
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 10);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start = Some(format!("{}\0", page.items.last().unwrap().key));
    }
    assert_eq!(seen, want);
}

async fn pagination_is_consistent_under_concurrent_writes<H: Harness>(h: H) {
    let s = h.store();
    for i in 0..200 {
        s.create(&format!("/c/{i:04}"), val("0")).await.unwrap();
    }
    let snapshot: BTreeMap<String, Vec<u8>> = s
        .list("/c/", ListOptions::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();

    let churn = {
        let s = s.clone();
        tokio::spawn(async move {
            for round in 1..=3 {
                for i in (0..200).step_by(7) {
                    let key = format!("/c/{i:04}");
                    if let Some(kv) = s.get(&key).await.unwrap() {
                        s.update(&key, val(&round.to_string()), kv.mod_revision)
                            .await
                            .unwrap();
                    }
                }
                s.delete(&format!("/c/{:04}", round * 11), None)
                    .await
                    .unwrap();
                s.create(&format!("/c/{:04}x", round * 13), val("new"))
                    .await
                    .unwrap();
            }
        })
    };

    let first = s
        .list(
            "/c/",
            ListOptions {
                limit: 17,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let at = first.revision;
    let mut got: Vec<(String, Vec<u8>)> = first
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let mut more = first.more;
    let mut start = first.items.last().map(|kv| format!("{}\0", kv.key));
    while more {
        tokio::task::yield_now().await;
        let page = s
            .list(
                "/c/",
                ListOptions {
                    limit: 17,
                    start: start.clone(),
                    revision: at,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, at);
        assert!(page.items.iter().all(|kv| kv.mod_revision <= at));
        got.extend(
            page.items
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone())),
        );
        more = page.more;
        start = page.items.last().map(|kv| format!("{}\0", kv.key));
    }
    churn.await.unwrap();
    // Every page was read at the first page's revision: together they are
    // the snapshot at that revision, whatever was written meanwhile.
    let at_rev: BTreeMap<_, _> = s
        .list(
            "/c/",
            ListOptions {
                revision: at,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(got.into_iter().collect::<BTreeMap<_, _>>(), at_rev);
    assert!(at_rev.len() >= 197 && at_rev.len() <= 203);
    assert_eq!(snapshot.len(), 200);
}

async fn list_at_an_old_revision<H: Harness>(h: H) {
    let s = h.store();
    let r1 = s.create("/o/a", val("a1")).await.unwrap();
    s.create("/o/b", val("b1")).await.unwrap();
    let at = s.current_revision().await.unwrap();
    s.update("/o/a", val("a2"), r1).await.unwrap();
    s.delete("/o/b", None).await.unwrap();
    s.create("/o/c", val("c1")).await.unwrap();

    let old = s
        .list(
            "/o/",
            ListOptions {
                revision: at,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let old: Vec<_> = old
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(old, vec![("/o/a", &b"a1"[..]), ("/o/b", &b"b1"[..])]);
    let now = s.list("/o/", ListOptions::default()).await.unwrap();
    let now: Vec<_> = now
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(now, vec![("/o/a", &b"a2"[..]), ("/o/c", &b"c1"[..])]);

    let future = s.current_revision().await.unwrap() + 10;
    assert!(matches!(
        s.list(
            "/o/",
            ListOptions {
                revision: future,
                ..Default::default()
            }
        )
        .await,
        Err(Error::FutureRevision { .. })
    ));
}

async fn next_event(w: &mut WatchStream) -> store::WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event within 10s")
        .expect("watch stream ended")
        .expect("watch event")
}

async fn watch_delivers_in_order_with_previous_values<H: Harness>(h: H) {
    let s = h.store();
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch("/w/", from).await.unwrap();
    let r1 = s.create("/w/a", val("1")).await.unwrap();
    s.create("/x/ignored", val("x")).await.unwrap();
    let r2 = s.update("/w/a", val("2"), r1).await.unwrap();
    let r3 = s.create("/w/b", val("b")).await.unwrap();
    let (_, r4) = s.delete("/w/a", None).await.unwrap();

    let e = next_event(&mut w).await;
    assert_eq!(
        (
            e.kind,
            e.kv.key.as_str(),
            e.kv.value.as_slice(),
            e.revision()
        ),
        (EventKind::Put, "/w/a", &b"1"[..], r1)
    );
    assert_eq!(e.kv.create_revision, r1);
    assert!(e.prev.is_none());
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision(), e.kv.value.as_slice()),
        (EventKind::Put, r2, &b"2"[..])
    );
    assert_eq!(
        e.prev
            .as_ref()
            .map(|p| (p.value.as_slice(), p.mod_revision)),
        Some((&b"1"[..], r1))
    );
    let e = next_event(&mut w).await;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/w/b", r3));
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Delete, "/w/a", r4)
    );
    assert_eq!(
        e.prev
            .as_ref()
            .map(|p| (p.value.as_slice(), p.mod_revision)),
        Some((&b"2"[..], r2))
    );

    // Many watchers of one prefix all see the same ordered history.
    let base = s.current_revision().await.unwrap();
    let mut watchers = Vec::new();
    for _ in 0..20 {
        watchers.push(s.watch("/m/", base).await.unwrap());
    }
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(s.create(&format!("/m/{i}"), val("v")).await.unwrap());
    }
    for w in &mut watchers {
        for want in &revs {
            assert_eq!(next_event(w).await.revision(), *want);
        }
    }
}

async fn watch_resumes_from_a_revision<H: Harness>(h: H) {
    let s = h.store();
    let mut revs = Vec::new();
    for i in 0..10 {
        revs.push(s.create(&format!("/r/{i}"), val("v")).await.unwrap());
    }
    // Strictly after revs[4]: events 5..10, already history, then live ones.
    let mut w = s.watch("/r/", revs[4]).await.unwrap();
    for want in &revs[5..] {
        assert_eq!(next_event(&mut w).await.revision(), *want);
    }
    let live = s.create("/r/live", val("v")).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), live);
}

async fn watch_from_now<H: Harness>(h: H) {
    let s = h.store();
    s.create("/n/old", val("v")).await.unwrap();
    let mut w = s.watch("/n/", 0).await.unwrap();
    let r = s.create("/n/new", val("v")).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/n/new", r));
}

async fn watch_survives_reopen<H: Harness>(mut h: H) {
    let s = h.store();
    let from = s.current_revision().await.unwrap();
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(s.create(&format!("/p/{i}"), val("v")).await.unwrap());
    }
    drop(s);
    h.reopen().await;
    let s = h.store();
    let mut w = s.watch("/p/", from).await.unwrap();
    for want in &revs {
        assert_eq!(next_event(&mut w).await.revision(), *want);
    }
    let after = s.create("/p/after", val("v")).await.unwrap();
    assert_eq!(after, revs[4] + 1, "revisions continue after a restart");
    assert_eq!(next_event(&mut w).await.revision(), after);
}

async fn compaction_makes_old_revisions_gone<H: Harness>(h: H) {
    let s = h.store();
    let r1 = s.create("/k/a", val("1")).await.unwrap();
    let r2 = s.update("/k/a", val("2"), r1).await.unwrap();
    s.create("/k/b", val("b")).await.unwrap();
    s.delete("/k/b", None).await.unwrap();
    let r3 = s.update("/k/a", val("3"), r2).await.unwrap();
    let keep = s.create("/k/c", val("c")).await.unwrap();
    s.compact(keep).await.unwrap();
    s.compact(keep).await.unwrap(); // again: harmless
    let later = s.update("/k/a", val("4"), r3).await.unwrap();

    match s
        .list(
            "/k/",
            ListOptions {
                revision: r2,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted { requested, .. }) => assert_eq!(requested, r2),
        other => panic!("list at compacted revision: {other:?}"),
    }
    let at_keep = s
        .list(
            "/k/",
            ListOptions {
                revision: keep,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let at_keep: Vec<_> = at_keep
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(at_keep, vec![("/k/a", &b"3"[..]), ("/k/c", &b"c"[..])]);
    assert_eq!(s.get("/k/a").await.unwrap().unwrap().value, b"4");
    assert_eq!(s.count("/k/").await.unwrap(), 2);

    let err = match s.watch("/k/", r1).await {
        Err(e) => e,
        Ok(mut w) => w
            .next()
            .await
            .expect("an error, not the end")
            .expect_err("compacted watch"),
    };
    assert!(matches!(err, Error::Compacted { .. }), "{err:?}");
    let mut w = s.watch("/k/", keep).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision(), later);
}

async fn compactor_compacts_in_the_background<H: Harness>(h: H) {
    let s = h.store();
    let first = s.create("/bg/a", val("1")).await.unwrap();
    let _compactor = Compactor::start(
        s.clone(),
        CompactorConfig {
            interval: Duration::from_millis(150),
        },
    );
    let mut rev = first;
    for i in 0..100 {
        rev = s.update("/bg/a", val(&i.to_string()), rev).await.unwrap();
        let old = s
            .list(
                "/bg/",
                ListOptions {
                    revision: first,
                    ..Default::default()
                },
            )
            .await;
        if matches!(old, Err(Error::Compacted { .. })) {
            assert_eq!(s.get("/bg/a").await.unwrap().unwrap().mod_revision, rev);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the compactor never compacted revision {first}");
}

async fn concurrent_writers_get_unique_consecutive_revisions<H: Harness>(h: H) {
    const WRITERS: usize = 64;
    const WRITES: usize = 500;
    let s = h.store();
    let start = s.current_revision().await.unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut revs = Vec::with_capacity(WRITES);
                for i in 0..WRITES {
                    let key = format!("/cw/{w:02}/{i:03}");
                    revs.push((
                        key.clone(),
                        s.create(&key, key.clone().into_bytes()).await.unwrap(),
                    ));
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let revs: HashSet<Revision> = all.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        revs.len(),
        WRITERS * WRITES,
        "a revision was handed out twice"
    );
    let end = s.current_revision().await.unwrap();
    assert_eq!(
        end - start,
        (WRITERS * WRITES) as i64,
        "revisions are consecutive"
    );
    assert!(revs.iter().all(|r| *r > start && *r <= end));
    let listed = s.list("/cw/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.items.len(), WRITERS * WRITES);
    let by_key: BTreeMap<_, _> = listed
        .items
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    for (key, rev) in &all {
        assert_eq!(by_key.get(key), Some(rev), "{key}");
    }
}

async fn kill_9_of_a_writer_loses_no_acknowledged_write<H: Harness>(mut h: H) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rkube-store-writer"))
        .args([h.writer_target(), "/crash/".into(), "8".into()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < 600 {
        let line = lines.next().expect("writer exited early").unwrap();
        let (key, rev) = line.split_once(' ').unwrap();
        acked.push((key.to_owned(), rev.parse::<Revision>().unwrap()));
    }
    child.kill().unwrap(); // SIGKILL, mid-loop: writes are in flight
    child.wait().unwrap();
    // Whatever the writer printed before it died was acknowledged.
    acked.extend(lines.map_while(|l| l.ok()).filter_map(|l| {
        let (k, r) = l.split_once(' ')?;
        Some((k.to_owned(), r.parse().ok()?))
    }));

    h.reopen().await;
    let s = h.store();
    for (key, rev) in &acked {
        let kv = s
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!(kv.mod_revision, *rev);
    }
    // The store stays writable and its revision is past everything acked.
    let max = acked.iter().map(|(_, r)| *r).max().unwrap();
    assert!(s.create("/crash/after", val("v")).await.unwrap() > max);
}

async fn oversized_value_is_rejected<H: Harness>(h: H) {
    let s = h.store();
    let before = s.current_revision().await.unwrap();
    match s.create("/big", vec![7; MAX_VALUE_BYTES + 1]).await {
        Err(Error::ValueTooLarge { key, size, limit }) => {
            assert_eq!(
                (key.as_str(), size, limit),
                ("/big", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES)
            );
        }
        other => panic!("oversized create: {other:?}"),
    }
    assert_eq!(s.current_revision().await.unwrap(), before);
    assert_eq!(s.get("/big").await.unwrap(), None);
    let r = s.create("/big", vec![7; 1024 * 1024]).await.unwrap();
    assert!(matches!(
        s.update("/big", vec![7; MAX_VALUE_BYTES + 1], r).await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(
        s.get("/big").await.unwrap().unwrap().value.len(),
        1024 * 1024
    );
}

async fn lists_larger_than_a_grpc_message<H: Harness>(h: H) {
    let s = h.store();
    // 48 x 128 KiB = 6 MiB in one list, past gRPC's default 4 MiB.
    for i in 0..48 {
        s.create(&format!("/big/{i:02}"), vec![b'x'; 128 * 1024])
            .await
            .unwrap();
    }
    let all = s.list("/big/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 48);
    assert!(all.items.iter().all(|kv| kv.value.len() == 128 * 1024));
}

// ---- backend-specific: opening bad databases ----

#[test]
fn sqlite_rejects_a_corrupt_file_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    type Corrupt = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Corrupt, &str)> = vec![
        (
            "garbage",
            Box::new(|p| std::fs::write(p, vec![0x5a; 64 * 1024]).unwrap()),
            "not a database",
        ),
        (
            "foreign sqlite",
            Box::new(|p| {
                let c = rusqlite_foreign(p);
                drop(c);
            }),
            "not an rkube datastore",
        ),
        (
            "directory",
            Box::new(|p| std::fs::create_dir(p).unwrap()),
            "",
        ),
        (
            "truncated header",
            Box::new(|p| std::fs::write(p, b"SQLite format 3\0garbage").unwrap()),
            "",
        ),
    ];
    for (name, make, want) in cases {
        let path = dir.path().join(name.replace(' ', "_"));
        make(&path);
        let err = match SqliteStore::open(SqliteConfig::new(&path)) {
            Err(e) => e,
            Ok(_) => panic!("{name}: opened"),
        };
        let msg = err.to_string();
        assert!(matches!(err, Error::Open { .. }), "{name}: {err:?}");
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
        assert!(msg.contains(want), "{name}: {msg}");
    }
}

/// A valid SQLite database that some other program made.
fn rusqlite_foreign(path: &std::path::Path) -> std::process::Output {
    Command::new("sqlite3")
        .arg(path)
        .arg("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .output()
        .expect("sqlite3 is installed by scripts/setup")
}

#[tokio::test]
async fn sqlite_corrupted_page_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(SqliteConfig::new(&path)).unwrap();
        for i in 0..2000 {
            s.create(&format!("/x/{i:05}"), vec![1; 500]).await.unwrap();
        }
    }
    // Let the writer thread close and checkpoint, then smash pages in the middle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let wal = dir.path().join("state.db-wal");
    if wal.exists() {
        std::fs::remove_file(&wal).ok();
    }
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8192] {
        *b = 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
    match SqliteStore::open(SqliteConfig::new(&path)) {
        Err(Error::Open { reason, .. }) => assert!(!reason.is_empty()),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("a corrupt database opened"),
    }
}

#[tokio::test]
async fn etcd_unreachable_endpoint_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        EtcdStore::connect(std::slice::from_ref(&endpoint)),
    )
    .await;
    match res.expect("connect gives up within 30s") {
        Err(Error::Open { location, .. }) => assert!(location.contains(&endpoint)),
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}
