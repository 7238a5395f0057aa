//! Shared machinery for rkube's components (controllers, scheduler, agent):
//! everything that talks to the API server the way client-go's informers
//! and work queues do, built on kube-rs's client and watcher.
//!
//! - [`informer`]: a watched cache of one resource with change handlers
//!   (adds, updates with the old object, deletes, including those missed
//!   while disconnected and found on re-list).
//! - [`workqueue`]: a de-duplicating queue of keys with per-key
//!   exponential back-off and delayed adds; one key is never processed by
//!   two workers at once.
//! - [`expectations`]: creations/deletions a controller made and has not yet
//!   seen in its cache, so it does not act twice on a stale cache.
//! - [`leader`]: leader election on a coordination.k8s.io Lease.
//! - [`events`]: a core/v1 Event recorder that aggregates repeats.
//! - [`client`]: building a client from a kubeconfig.

pub mod client;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod leader;
pub mod workqueue;

pub use events::Recorder;
pub use expectations::Expectations;
pub use informer::{Change, Informer};
pub use leader::LeaderElection;
pub use workqueue::WorkQueue;

/// `namespace/name` (or `name` for cluster-scoped objects), the key work
/// queues carry, as client-go's MetaNamespaceKeyFunc makes it.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// Splits a key made by [`key_of`] into (namespace, name).
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// Whether an API error is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether an API error is a 409 (conflict or already exists).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
