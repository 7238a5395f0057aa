//! A quick end-to-end check of the etcd backend against a real etcd (the
//! full, backend-independent suite is `conformance.rs`). Checks the etcd
//! specifics: the revisions filled into revision errors, watch confirmation,
//! restarts of etcd.

use std::time::Duration;

use futures::StreamExt;
use store::etcd::EtcdStore;
use store::testutil::{etcd_available, EtcdServer};
use store::{Error, EventKind, ListOptions, Store, WatchStream};

async fn next(w: &mut WatchStream) -> store::Result<store::WatchEvent> {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch item within 10s")
        .expect("watch stream ended")
}

fn keys(items: &[store::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_end_to_end() {
    if !etcd_available() {
        eprintln!("etcd not installed; skipping");
        return;
    }
    let mut server = EtcdServer::start().await;
    let etcd_url = server.endpoint().replace("http://", "etcd://");
    let s = EtcdStore::connect(&[etcd_url]).await.unwrap();

    // An empty etcd is at revision 1.
    assert_eq!(s.current_revision().await.unwrap(), 1);
    let from = s.current_revision().await.unwrap();
    let mut w = s.watch("/s/", from).await.unwrap();

    // create / already exists
    let r1 = s.create("/s/a", b"1".to_vec()).await.unwrap();
    assert_eq!(r1, 2);
    assert!(matches!(
        s.create("/s/a", b"x".to_vec()).await,
        Err(Error::AlreadyExists(k)) if k == "/s/a"
    ));
    let kv = s.get("/s/a").await.unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));
    assert!(s.get("/s/none").await.unwrap().is_none());

    // update: compare-and-swap
    let r2 = s.update("/s/a", b"2".to_vec(), r1).await.unwrap();
    assert_eq!(r2, r1 + 1);
    match s.update("/s/a", b"3".to_vec(), r1).await {
        Err(Error::Conflict {
            key,
            expected,
            current: Some(cur),
        }) => {
            assert_eq!((key.as_str(), expected), ("/s/a", r1));
            assert_eq!((cur.mod_revision, cur.value.as_slice()), (r2, &b"2"[..]));
        }
        other => panic!("stale update: {other:?}"),
    }
    assert!(matches!(
        s.update("/s/none", b"x".to_vec(), 5).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.create("/s/big", vec![0; store::MAX_VALUE_BYTES + 1])
            .await,
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(
        s.current_revision().await.unwrap(),
        r2,
        "failures write nothing"
    );

    // delete, with and without a precondition
    let r3 = s.create("/s/b", b"b".to_vec()).await.unwrap();
    assert!(matches!(
        s.delete("/s/b", Some(r3 - 1)).await,
        Err(Error::Conflict {
            current: Some(_),
            ..
        })
    ));
    let (gone, r4) = s.delete("/s/b", Some(r3)).await.unwrap();
    assert_eq!(
        (gone.key.as_str(), gone.mod_revision, r4),
        ("/s/b", r3, r3 + 1)
    );
    assert!(matches!(
        s.delete("/s/b", None).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/s/b", Some(r3)).await,
        Err(Error::NotFound(_))
    ));

    // watch: puts and deletes with previous values
    let e = next(&mut w).await.unwrap();
    assert_eq!(
        (e.kind, e.revision(), e.prev.is_none()),
        (EventKind::Put, r1, true)
    );
    let e = next(&mut w).await.unwrap();
    assert_eq!(e.revision(), r2);
    assert_eq!(e.prev.as_ref().unwrap().value, b"1");
    let e = next(&mut w).await.unwrap();
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/s/b", r3));
    let e = next(&mut w).await.unwrap();
    assert_eq!((e.kind, e.kv.key.as_str()), (EventKind::Delete, "/s/b"));
    assert_eq!((e.revision(), e.kv.value.len()), (r4, 0));
    assert_eq!(e.prev.as_ref().unwrap().mod_revision, r3);

    // list pagination, consistent at the first page's revision
    for i in 0..7 {
        s.create(&format!("/l/{i}"), vec![i as u8]).await.unwrap();
    }
    s.create("/lz", b"outside".to_vec()).await.unwrap();
    let page = s
        .list(
            "/l/",
            ListOptions {
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&page.items), ["/l/0", "/l/1", "/l/2"]);
    assert!(page.more);
    let at = page.revision;
    assert_eq!(at, s.current_revision().await.unwrap());
    s.create("/l/00", b"later".to_vec()).await.unwrap();
    s.delete("/l/5", None).await.unwrap();
    let mut all = keys(&page.items)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mut last = page.items.last().unwrap().key.clone();
    loop {
        let page = s
            .list(
                "/l/",
                ListOptions {
                    limit: 3,
                    start: Some(format!("{last}\0")),
                    revision: at,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, at);
        all.extend(page.items.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        last = page.items.last().unwrap().key.clone();
    }
    assert_eq!(
        all,
        ["/l/0", "/l/1", "/l/2", "/l/3", "/l/4", "/l/5", "/l/6"]
    );
    assert_eq!(s.count("/l/").await.unwrap(), 7);
    assert_eq!(s.count("").await.unwrap(), 9);
    let everything = s.list("", ListOptions::default()).await.unwrap();
    assert_eq!(everything.items.len(), 9);
    assert!(!everything.more);
    // A start past the prefix's keys: an empty page.
    let past = s
        .list(
            "/l/",
            ListOptions {
                start: Some("/l0".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(past.items.is_empty() && !past.more, "{past:?}");
    let mut all_keys = s.watch("", 0).await.unwrap();

    let r = s.create("/x", b"x".to_vec()).await.unwrap();
    assert_eq!(next(&mut all_keys).await.unwrap().revision(), r);
    drop(all_keys);

    // future revision: the current one is filled in
    let now = s.current_revision().await.unwrap();
    match s
        .list(
            "/l/",
            ListOptions {
                revision: now + 5,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (now + 5, now));
        }
        other => panic!("future list: {other:?}"),
    }
    assert!(matches!(
        s.compact(now + 5).await,
        Err(Error::FutureRevision { .. })
    ));

    // compaction: the compacted revision is filled in
    s.compact(now).await.unwrap();
    s.compact(now).await.unwrap();
    s.compact(now - 3).await.unwrap();
    match s
        .list(
            "/l/",
            ListOptions {
                revision: at,
                ..Default::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (at, now)),
        other => panic!("compacted list: {other:?}"),
    }
    let at_now = s
        .list(
            "/l/",
            ListOptions {
                revision: now,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_now.items.len(), 7);
    let mut old = s.watch("/l/", at).await.unwrap();
    match next(&mut old).await {
        Err(Error::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (at, now)),
        other => panic!("compacted watch: {other:?}"),
    }
    assert!(old.next().await.is_none(), "an error ends the watch");
    // Watching from `now - 1` is still possible (history from `now` kept).
    let mut edge = s.watch("", now - 1).await.unwrap();
    assert_eq!(next(&mut edge).await.unwrap().revision(), now);
    // The live watch from before is unaffected by compaction.
    let r = s.create("/s/c", b"c".to_vec()).await.unwrap();
    assert_eq!(next(&mut w).await.unwrap().revision(), r);

    // "from now" watches see a write made right after watch() returns.
    for i in 0..20 {
        let mut live = s.watch("/now/", 0).await.unwrap();
        let r = s.create(&format!("/now/{i}"), b"v".to_vec()).await.unwrap();
        assert_eq!(next(&mut live).await.unwrap().revision(), r);
    }

    // kill -9 and restart: the data and revisions survive, the open watch
    // ends with an error, a new client works.
    let before = s.current_revision().await.unwrap();
    server.kill();
    let err = tokio::time::timeout(Duration::from_secs(30), w.next())
        .await
        .expect("the watch notices etcd is gone")
        .expect("an error, not a silent end");
    assert!(err.is_err(), "{err:?}");
    server.restart().await;
    let s = EtcdStore::connect(&[server.endpoint()]).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), before);
    assert_eq!(s.get("/s/a").await.unwrap().unwrap().value, b"2");
    assert_eq!(s.create("/s/d", b"d".to_vec()).await.unwrap(), before + 1);
}
