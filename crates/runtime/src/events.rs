//! An Event recorder writing core/v1 Events (what `kubectl describe` and
//! `kubectl get events` show), as client-go's record package does: writes
//! happen on a background task so callers never wait, and a repeat of the
//! same event (object, type, reason, message) bumps `count` and
//! `lastTimestamp` of the first one instead of adding another.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use tokio::sync::mpsc;

/// Events waiting to be written; more are dropped (and logged), as
/// client-go drops them when its broadcaster is full.
const QUEUE: usize = 4096;
/// Remembered events for aggregation.
const CACHE: usize = 4096;

struct Pending {
    regarding: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

/// Cloneable handle; one background writer per recorder.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Pending>,
}

impl Recorder {
    /// A recorder reporting as `component` (e.g. `deployment-controller`).
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(client, component.to_owned(), rx));
        Recorder { tx }
    }

    /// Records a Normal event about `obj`.
    pub fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(obj.object_ref(&()), "Normal", reason, message)
    }

    /// Records a Warning event about `obj`.
    pub fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, message: String) {
        self.record(obj.object_ref(&()), "Warning", reason, message)
    }

    pub fn record(
        &self,
        regarding: ObjectReference,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        let p = Pending {
            regarding,
            type_,
            reason: reason.to_owned(),
            message,
        };
        if self.tx.try_send(p).is_err() {
            tracing::debug!(reason, "event queue full; event dropped");
        }
    }
}

/// An aggregated event's key: (uid or kind/ns/name, type, reason, message).
type EventKey = (String, &'static str, String, String);

async fn writer(client: kube::Client, component: String, mut rx: mpsc::Receiver<Pending>) {
    // key -> (namespace, name, count)
    let mut seen: HashMap<EventKey, (String, String, i32)> = HashMap::new();
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    while let Some(p) = rx.recv().await {
        let r = &p.regarding;
        let namespace = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let id = r.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}/{}",
                r.kind.as_deref().unwrap_or_default(),
                namespace,
                r.name.as_deref().unwrap_or_default()
            )
        });
        let key = (id, p.type_, p.reason.clone(), p.message.clone());
        let now = k8s_openapi::jiff::Timestamp::now();
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Some((ns, name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({
                "count": *count,
                "lastTimestamp": Time(now),
            });
            let api: Api<Event> = Api::namespaced(client.clone(), ns);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(e) if crate::is_not_found(&e) => {
                    // Expired or deleted: write a new one below.
                    seen.remove(&key);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "updating an event failed");
                    continue;
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            r.name.as_deref().unwrap_or("unknown"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: p.regarding.clone(),
            type_: Some(p.type_.to_owned()),
            reason: Some(p.reason.clone()),
            message: Some(p.message.clone()),
            source: Some(EventSource {
                component: Some(component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(if host.is_empty() {
                component.clone()
            } else {
                format!("{component}-{host}")
            }),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() >= CACHE {
                    seen.clear();
                }
                seen.insert(key, (namespace, name, 1));
            }
            Err(e) => tracing::debug!(error = %e, reason = %p.reason, "writing an event failed"),
        }
    }
}
