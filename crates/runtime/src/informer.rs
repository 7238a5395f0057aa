//! An informer: one list+watch of a resource feeding a local cache and
//! change handlers, as client-go's shared informers do.
//!
//! Handlers see every add and update (with the object as the cache held it
//! before) and every delete. When the watch breaks and the informer lists
//! again, objects that vanished meanwhile are reported deleted and the rest
//! as updated, so level-triggered controllers re-check everything.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// One change of one object.
#[derive(Debug)]
pub enum Change<K> {
    /// Created, or seen for the first time.
    Added(Arc<K>),
    /// Changed (or re-listed): the object before and after.
    Updated { old: Arc<K>, new: Arc<K> },
    /// Deleted (or found gone on re-list): the last state seen.
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was when deleted).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }

    /// The object before this change, when there was one.
    pub fn old(&self) -> Option<&Arc<K>> {
        match self {
            Change::Updated { old, .. } => Some(old),
            _ => None,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// A cache of one resource kept by list+watch, with change handlers.
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: std::sync::Mutex<Option<reflector::store::Writer<K>>>,
    handlers: Arc<RwLock<Vec<Handler<K>>>>,
    /// True once the first list is in the cache. (kube's
    /// `Store::wait_until_ready` wakes only one of several waiters.)
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over `api` (namespaced or all namespaces) with the given
    /// watch selectors. Register handlers, then [`start`](Self::start) it.
    pub fn new(api: Api<K>, config: watcher::Config) -> Arc<Self> {
        let writer = reflector::store::Writer::<K>::default();
        Arc::new(Informer {
            api,
            config: config.any_semantic(),
            store: writer.as_reader(),
            writer: std::sync::Mutex::new(Some(writer)),
            handlers: Arc::new(RwLock::new(Vec::new())),
            synced: tokio::sync::watch::channel(false).0,
        })
    }

    /// The cache (empty until the first list arrived: see
    /// [`wait_synced`](Self::wait_synced)).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Calls `f` for every change from now on. Handlers run on the
    /// informer's task: they should only queue work.
    pub fn on_change(&self, f: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.write().unwrap().push(Box::new(f));
    }

    /// Waits until the first list is in the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether the first list is in the cache.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Starts listing and watching on a task of its own (once).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let mut writer = self
            .writer
            .lock()
            .unwrap()
            .take()
            .expect("informer started twice");
        let handlers = self.handlers.clone();
        let synced = self.synced.clone();
        let stream = watcher::watcher(self.api.clone(), self.config.clone()).default_backoff();
        let kind = K::kind(&()).to_string();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.map_err(|e| e));
            // Objects of a re-list in progress (by reference: the objects
            // themselves are held once, by the store).
            let mut relist: Option<HashSet<ObjectRef<K>>> = None;
            let mut first = true;
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::debug!(kind, error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                let reader = writer.as_reader();
                let mut changes = Vec::new();
                // Handlers get the store's own Arcs, so a component that
                // keeps what it is handed shares the cache's copy.
                match &event {
                    Event::Init => {
                        relist = Some(HashSet::new());
                        writer.apply_watcher_event(&event);
                    }
                    Event::InitApply(obj) => {
                        if let Some(seen) = relist.as_mut() {
                            seen.insert(ObjectRef::from_obj(obj));
                        }
                        writer.apply_watcher_event(&event);
                    }
                    Event::InitDone => {
                        let seen = relist.take().unwrap_or_default();
                        let before: HashMap<ObjectRef<K>, Arc<K>> = reader
                            .state()
                            .into_iter()
                            .map(|o| (ObjectRef::from_obj(o.as_ref()), o))
                            .collect();
                        writer.apply_watcher_event(&event);
                        if !first {
                            for (r, old) in &before {
                                if !seen.contains(r) {
                                    changes.push(Change::Deleted(old.clone()));
                                }
                            }
                        }
                        for r in &seen {
                            let Some(new) = reader.get(r) else { continue };
                            match before.get(r) {
                                Some(old) if !first => changes.push(Change::Updated {
                                    old: old.clone(),
                                    new,
                                }),
                                _ => changes.push(Change::Added(new)),
                            }
                        }
                        first = false;
                        synced.send_replace(true);
                    }
                    Event::Apply(obj) => {
                        let r = ObjectRef::from_obj(obj);
                        let old = reader.get(&r);
                        writer.apply_watcher_event(&event);
                        if let Some(new) = reader.get(&r) {
                            match old {
                                Some(old) => changes.push(Change::Updated { old, new }),
                                None => changes.push(Change::Added(new)),
                            }
                        }
                    }
                    Event::Delete(obj) => {
                        let last = reader
                            .get(&ObjectRef::from_obj(obj))
                            .unwrap_or_else(|| Arc::new(obj.clone()));
                        writer.apply_watcher_event(&event);
                        changes.push(Change::Deleted(last));
                    }
                }
                if !changes.is_empty() {
                    let handlers = handlers.read().unwrap();
                    for change in &changes {
                        for h in handlers.iter() {
                            h(change);
                        }
                    }
                }
            }
        })
    }
}
