//! The watch cache: one store watch per resource, however many clients
//! watch it. Each cache keeps every object of its resource (decoded once,
//! shared) and a window of recent events; watches are served from the
//! window and lists with `resourceVersion=0` from the objects, as
//! kube-apiserver's cacher does.
//!
//! A cache starts on first use: it lists the resource's prefix, then
//! follows a store watch from that revision. If the store watch fails (its
//! history was compacted, the store restarted) the cache lists again and
//! ends every watch it was serving, so clients re-watch — the same contract
//! as a watch that times out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use serde_json::Value;
use store::{EventKind, Revision, Store};
use tokio::sync::{broadcast, watch};

/// Events kept for watchers resuming from a recent resourceVersion.
const HISTORY: usize = 10_000;
/// Events buffered per watcher before a slow one is dropped.
const BROADCAST: usize = 16_384;

/// One change, decoded once and shared by every watcher.
#[derive(Debug)]
pub struct CachedEvent {
    pub kind: EventKind,
    pub key: String,
    pub revision: Revision,
    /// The object after a put (resourceVersion set), before a delete.
    pub object: Arc<Value>,
    /// The object before this change, if it existed.
    pub prev: Option<Arc<Value>>,
    /// `object` as JSON, made by the first watcher that sends it and reused
    /// by the others.
    json: std::sync::OnceLock<Box<str>>,
}

impl CachedEvent {
    pub fn new(
        kind: EventKind,
        key: String,
        revision: Revision,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) -> CachedEvent {
        CachedEvent {
            kind,
            key,
            revision,
            object,
            prev,
            json: std::sync::OnceLock::new(),
        }
    }

    /// The object serialized once for every watcher.
    pub fn object_json(&self) -> &str {
        self.json.get_or_init(|| {
            serde_json::to_string(&*self.object)
                .expect("JSON values serialize")
                .into()
        })
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Value>>,
    revision: Revision,
    /// Events after `oldest`, in order.
    history: VecDeque<Arc<CachedEvent>>,
    oldest: Revision,
}

pub struct WatchCache {
    prefix: String,
    state: RwLock<State>,
    /// Made by the first watcher (its buffer is large) and dropped when the
    /// cache relists, which ends every watch it served.
    tx: Mutex<Option<broadcast::Sender<Arc<CachedEvent>>>>,
    ready: watch::Receiver<bool>,
}

/// Where a watch starts, as the cache sees it.
pub enum Start {
    /// The objects now (for ADDED events), then changes after `revision`.
    Snapshot {
        objects: Vec<Arc<Value>>,
        revision: Revision,
        rx: broadcast::Receiver<Arc<CachedEvent>>,
    },
    /// Replayed history after the requested revision, then live changes.
    Resume {
        events: Vec<Arc<CachedEvent>>,
        rx: broadcast::Receiver<Arc<CachedEvent>>,
    },
    /// The cache's window does not reach back that far (or not yet forward):
    /// the caller watches the store directly.
    Miss,
}

fn decode(value: &[u8], rev: Revision) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(value).ok()?;
    crate::object::set_meta(&mut obj, "resourceVersion", rev.to_string());
    Some(obj)
}

impl WatchCache {
    fn start(store: Arc<dyn Store>, prefix: String) -> Arc<WatchCache> {
        let (ready_tx, ready) = watch::channel(false);
        let cache = Arc::new(WatchCache {
            prefix,
            state: RwLock::new(State::default()),
            tx: Mutex::new(None),
            ready,
        });
        tokio::spawn(cache.clone().run(store, ready_tx));
        cache
    }

    async fn run(self: Arc<Self>, store: Arc<dyn Store>, ready: watch::Sender<bool>) {
        loop {
            let listed = match store.list(&self.prefix, Default::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "watch cache: list failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            {
                let mut st = self.state.write().unwrap();
                st.objects = listed
                    .items
                    .iter()
                    .filter_map(|kv| {
                        Some((
                            kv.key.clone(),
                            Arc::new(decode(&kv.value, kv.mod_revision)?),
                        ))
                    })
                    .collect();
                st.revision = listed.revision;
                st.oldest = listed.revision;
                st.history.clear();
                // Watchers of the previous generation end; they re-watch.
                *self.tx.lock().unwrap() = None;
            }
            let _ = ready.send(true);
            let mut events = match store.watch(&self.prefix, listed.revision).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(prefix = %self.prefix, error = %e, "watch cache: watch failed");
                    continue;
                }
            };
            while let Some(ev) = events.next().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        tracing::info!(prefix = %self.prefix, error = %e, "watch cache: store watch ended; relisting");
                        break;
                    }
                };
                self.apply(ev);
            }
        }
    }

    fn apply(&self, ev: store::WatchEvent) {
        let rev = ev.revision();
        let mut st = self.state.write().unwrap();
        let prev = st.objects.get(&ev.kv.key).cloned();
        let cached = match ev.kind {
            EventKind::Put => {
                let Some(obj) = decode(&ev.kv.value, rev) else {
                    return;
                };
                let obj = Arc::new(obj);
                st.objects.insert(ev.kv.key.clone(), obj.clone());
                CachedEvent::new(EventKind::Put, ev.kv.key, rev, obj, prev)
            }
            EventKind::Delete => {
                st.objects.remove(&ev.kv.key);
                // The deleted object, at the revision of its deletion.
                let last = prev.as_deref().cloned().or_else(|| {
                    ev.prev
                        .as_ref()
                        .and_then(|p| decode(&p.value, p.mod_revision))
                });
                let Some(mut obj) = last else { return };
                crate::object::set_meta(&mut obj, "resourceVersion", rev.to_string());
                CachedEvent::new(EventKind::Delete, ev.kv.key, rev, Arc::new(obj), prev)
            }
        };
        let cached = Arc::new(cached);
        st.revision = rev;
        st.history.push_back(cached.clone());
        while st.history.len() > HISTORY {
            if let Some(old) = st.history.pop_front() {
                st.oldest = old.revision;
            }
        }
        // Sent under the state lock: a watcher that subscribes under the
        // read lock sees each event exactly once, in history or live.
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(cached);
        }
    }

    async fn wait_ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Objects under `prefix` now, and the revision they are at.
    pub async fn snapshot(&self, prefix: &str) -> (Vec<Arc<Value>>, Revision) {
        self.wait_ready().await;
        let st = self.state.read().unwrap();
        let objects = st
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (objects, st.revision)
    }

    /// For each stored key-value, the cache's object when it holds that
    /// key at the same revision (decoded already, shared); None where it
    /// does not, or before its first list.
    pub fn objects_at(&self, kvs: &[store::KeyValue]) -> Vec<Option<Arc<Value>>> {
        if !*self.ready.borrow() {
            return Vec::new();
        }
        let st = self.state.read().unwrap();
        kvs.iter()
            .map(|kv| {
                let obj = st.objects.get(&kv.key)?;
                let rv = obj.pointer("/metadata/resourceVersion")?.as_str()?;
                (rv.parse::<Revision>().ok()? == kv.mod_revision).then(|| obj.clone())
            })
            .collect()
    }

    /// Starts a watch of `prefix` (inside this cache's prefix): `from` =
    /// None for "now, with the current objects first", Some(N) for "every
    /// change after N".
    pub async fn watch(&self, prefix: &str, from: Option<Revision>) -> Start {
        self.wait_ready().await;
        let st = self.state.read().unwrap();
        let rx = self
            .tx
            .lock()
            .unwrap()
            .get_or_insert_with(|| broadcast::channel(BROADCAST).0)
            .subscribe();
        match from {
            None => Start::Snapshot {
                objects: st
                    .objects
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                revision: st.revision,
                rx,
            },
            Some(n) if n >= st.oldest && n <= st.revision => Start::Resume {
                events: st
                    .history
                    .iter()
                    .filter(|e| e.revision > n && e.key.starts_with(prefix))
                    .cloned()
                    .collect(),
                rx,
            },
            // Later than this resource's last change: the usual case of an
            // informer that listed at the store's revision while other
            // resources moved it on. Every change after `n` is still to
            // come through `rx` (the caller checked that `n` is not beyond
            // the store), and older ones the watcher skips.
            Some(n) if n > st.revision => Start::Resume {
                events: Vec::new(),
                rx,
            },
            Some(_) => Start::Miss,
        }
    }
}

/// The caches of all resources, started on demand.
#[derive(Default)]
pub struct Caches {
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
}

impl Caches {
    /// The cache of the resource whose objects live under `prefix` (the
    /// all-namespaces prefix).
    pub fn get(&self, store: &Arc<dyn Store>, prefix: &str) -> Arc<WatchCache> {
        self.caches
            .lock()
            .unwrap()
            .entry(prefix.to_owned())
            .or_insert_with(|| WatchCache::start(store.clone(), prefix.to_owned()))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"metadata": {"name": name}})).unwrap()
    }

    async fn next(rx: &mut broadcast::Receiver<Arc<CachedEvent>>) -> Arc<CachedEvent> {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn snapshot_resume_and_miss() {
        let (_d, s) = crate::test_support::sqlite_store();
        let r1 = s.create("/registry/pods/a/p1", obj("p1")).await.unwrap();
        s.create("/registry/pods/b/p2", obj("p2")).await.unwrap();
        let caches = Caches::default();
        let cache = caches.get(&s, "/registry/pods/");
        let (objs, rev) = cache.snapshot("/registry/pods/a/").await;
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0]["metadata"]["resourceVersion"], r1.to_string());
        assert!(
            Arc::ptr_eq(&cache, &caches.get(&s, "/registry/pods/")),
            "one cache per resource"
        );

        let Start::Snapshot {
            objects,
            revision,
            mut rx,
        } = cache.watch("/registry/pods/", None).await
        else {
            panic!()
        };
        assert_eq!((objects.len(), revision), (2, rev));
        let r3 = s
            .update("/registry/pods/a/p1", obj("p1"), r1)
            .await
            .unwrap();
        let ev = next(&mut rx).await;
        assert_eq!((ev.kind, ev.revision), (EventKind::Put, r3));
        assert!(ev.prev.is_some());
        let (_, r4) = s.delete("/registry/pods/b/p2", None).await.unwrap();
        let ev = next(&mut rx).await;
        assert_eq!((ev.kind, ev.revision), (EventKind::Delete, r4));
        assert_eq!(ev.object["metadata"]["resourceVersion"], r4.to_string());

        // Resume from before the update, filtered to namespace a.
        let Start::Resume { events, .. } = cache.watch("/registry/pods/a/", Some(rev)).await else {
            panic!()
        };
        assert_eq!(
            events.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![r3]
        );
        // Older than the cache's window: the caller goes to the store.
        assert!(matches!(
            cache.watch("/registry/pods/", Some(r1 - 1)).await,
            Start::Miss
        ));

        // Other resources move the store on: a watch from the store's
        // revision (an informer's list) is served by the cache, and gets
        // the next change of its own resource.
        let other = s
            .create("/registry/configmaps/a/c", obj("c"))
            .await
            .unwrap();
        let Start::Resume { events, mut rx } = cache.watch("/registry/pods/", Some(other)).await
        else {
            panic!("a watch ahead of the cache's last change resumes from it")
        };
        assert!(events.is_empty());
        let r5 = s.create("/registry/pods/a/p5", obj("p5")).await.unwrap();
        let ev = next(&mut rx).await;
        assert_eq!((ev.kind, ev.revision), (EventKind::Put, r5));
    }

    #[tokio::test]
    async fn stored_objects_are_taken_from_the_cache_at_their_revision() {
        let (_d, s) = crate::test_support::sqlite_store();
        let r1 = s.create("/registry/pods/a/p1", obj("p1")).await.unwrap();
        let caches = Caches::default();
        let cache = caches.get(&s, "/registry/pods/");
        let (objs, _) = cache.snapshot("/registry/pods/").await;
        let mut rx = match cache.watch("/registry/pods/", None).await {
            Start::Snapshot { rx, .. } => rx,
            _ => panic!(),
        };
        let r2 = s.create("/registry/pods/a/p2", obj("p2")).await.unwrap();
        next(&mut rx).await;
        let listed = s.list("/registry/pods/", Default::default()).await.unwrap();
        let at = cache.objects_at(&listed.items);
        assert_eq!(at.len(), 2);
        assert!(
            Arc::ptr_eq(at[0].as_ref().unwrap(), &objs[0]),
            "shared, not copied"
        );
        assert_eq!(
            at[1].as_ref().unwrap()["metadata"]["resourceVersion"],
            r2.to_string()
        );
        // Another revision of a key, or a key the cache does not hold.
        let stale = store::KeyValue {
            mod_revision: r1 + 100,
            ..listed.items[0].clone()
        };
        let unknown = store::KeyValue {
            key: "/registry/pods/a/p9".into(),
            ..listed.items[0].clone()
        };
        assert_eq!(cache.objects_at(&[stale, unknown]), vec![None, None]);
    }
}
