//! The garbage collector: deletes objects whose owners are gone, as
//! Kubernetes' does.
//!
//! It watches every deletable resource (from discovery, refreshed so new
//! CRDs join) and keeps a graph of ownerReferences by uid. For each object
//! it checks its owners: when none exists any more (a live GET confirms
//! absence, so a stale cache never causes a delete) the object is deleted
//! (background, or foreground when an owner waits for its dependents);
//! when some owners remain, references to the vanished ones are removed.
//! Owners being deleted with the `orphan` finalizer first have their
//! dependents' references to them removed; owners with the
//! `foregroundDeletion` finalizer have their dependents deleted and keep
//! the finalizer until no dependent with blockOwnerDeletion is left.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use runtime::workqueue::{run_workers, Next};
use runtime::WorkQueue;
use serde_json::json;

use crate::discovery::{self, Res};
use crate::Ctx;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// How often discovery is refreshed to pick up new resources (CRDs).
const REDISCOVER: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
struct Node {
    ar: Arc<ApiResource>,
    namespaced: bool,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
    resource_version: Option<String>,
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> dependent uids
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn dependents_of(&self, uid: &str) -> Vec<(String, Node)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }

    /// Inserts or replaces a node; returns the uids to look at.
    fn upsert(&mut self, uid: &str, node: Node) -> Vec<String> {
        let mut wake = Vec::new();
        let old = self.nodes.insert(uid.to_owned(), node.clone());
        if let Some(old) = &old {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(uid);
                }
            }
        }
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_owned());
        }
        let owners_changed = old.as_ref().is_none_or(|o| {
            o.owners.iter().map(|r| &r.uid).collect::<Vec<_>>()
                != node.owners.iter().map(|r| &r.uid).collect::<Vec<_>>()
        });
        if !node.owners.is_empty() && owners_changed {
            wake.push(uid.to_owned());
        }
        if node.deleting
            && node
                .finalizers
                .iter()
                .any(|f| f == ORPHAN || f == FOREGROUND)
        {
            wake.push(uid.to_owned());
        }
        // A dependent starting to be deleted may unblock a foreground owner.
        if node.deleting && !old.as_ref().is_some_and(|o| o.deleting) {
            wake.extend(node.owners.iter().map(|o| o.uid.clone()));
        }
        wake
    }

    /// Removes a node; returns the uids to look at (its dependents and
    /// owners).
    fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut wake: Vec<String> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        if let Some(old) = self.nodes.remove(uid) {
            for o in &old.owners {
                if let Some(set) = self.dependents.get_mut(&o.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&o.uid);
                    }
                }
                wake.push(o.uid.clone());
            }
        }
        wake
    }
}

struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    resources: Mutex<Vec<Res>>,
    queue: WorkQueue<String>,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>) {
    let c = Arc::new(Collector {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        resources: Mutex::new(Vec::new()),
        queue: WorkQueue::new(),
    });
    set.spawn(async move {
        let mut watched: HashSet<(String, String)> = HashSet::new();
        let mut watchers = tokio::task::JoinSet::new();
        let mut synced_once = false;
        loop {
            match discovery::resources(&c.client).await {
                Ok(all) => {
                    let mut pending = Vec::new();
                    for r in discovery::deletable(&all) {
                        if !r.supports("watch") || r.ar.plural == "events" {
                            continue;
                        }
                        let id = (r.ar.group.clone(), r.ar.plural.clone());
                        if watched.insert(id) {
                            let (tx, rx) = tokio::sync::oneshot::channel();
                            watchers.spawn(watch_resource(c.clone(), r.clone(), tx));
                            pending.push(rx);
                        }
                    }
                    *c.resources.lock().unwrap() = all;
                    if !synced_once {
                        // Act only once the whole graph is known.
                        for rx in pending {
                            let _ = rx.await;
                        }
                        synced_once = true;
                        let q = c.queue.clone();
                        let c2 = c.clone();
                        watchers.spawn(async move {
                            run_workers(q, 4, "garbage-collector", move |uid: String| {
                                let c = c2.clone();
                                async move { c.process(&uid).await }
                            })
                            .await;
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
            }
            tokio::time::sleep(REDISCOVER).await;
        }
    });
}

/// Keeps the graph up to date for one resource; `synced` fires after the
/// first list.
async fn watch_resource(c: Arc<Collector>, r: Res, synced: tokio::sync::oneshot::Sender<()>) {
    let ar = Arc::new(r.ar.clone());
    let api: Api<DynamicObject> = Api::all_with(c.client.clone(), &r.ar);
    let stream = watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut synced = Some(synced);
    let mut seen: HashSet<String> = HashSet::new();
    let mut relist: Option<HashSet<String>> = None;
    let node_of = |o: &DynamicObject| Node {
        ar: ar.clone(),
        namespaced: r.namespaced,
        namespace: o.metadata.namespace.clone(),
        name: o.metadata.name.clone().unwrap_or_default(),
        owners: o.metadata.owner_references.clone().unwrap_or_default(),
        deleting: o.metadata.deletion_timestamp.is_some(),
        finalizers: o.metadata.finalizers.clone().unwrap_or_default(),
        resource_version: o.metadata.resource_version.clone(),
    };
    while let Some(ev) = stream.next().await {
        let Ok(ev) = ev else { continue };
        let mut wake = Vec::new();
        {
            let mut g = c.graph.lock().unwrap();
            match ev {
                Event::Init => relist = Some(HashSet::new()),
                Event::InitApply(o) | Event::Apply(o) => {
                    if let Some(uid) = o.metadata.uid.clone() {
                        if let Some(r) = relist.as_mut() {
                            r.insert(uid.clone());
                        }
                        seen.insert(uid.clone());
                        wake = g.upsert(&uid, node_of(&o));
                    }
                }
                Event::Delete(o) => {
                    if let Some(uid) = o.metadata.uid.as_deref() {
                        seen.remove(uid);
                        wake = g.remove(uid);
                    }
                }
                Event::InitDone => {
                    let now = relist.take().unwrap_or_default();
                    for gone in seen.difference(&now).cloned().collect::<Vec<_>>() {
                        wake.extend(g.remove(&gone));
                    }
                    seen = now;
                    if let Some(tx) = synced.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
        for uid in wake {
            c.queue.add(uid);
        }
    }
}

/// What an owner reference points at, as far as deletion goes.
#[derive(Debug, PartialEq)]
enum OwnerState {
    Solid,
    Dangling,
    WaitingForDependents,
}

impl Collector {
    async fn process(&self, uid: &str) -> Result<Next, kube::Error> {
        let Some(node) = self.graph.lock().unwrap().nodes.get(uid).cloned() else {
            return Ok(Next::Done);
        };
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            return self.orphan_dependents(uid, &node).await;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            return self.delete_dependents(uid, &node).await;
        }
        if node.owners.is_empty() || node.deleting {
            return Ok(Next::Done);
        }
        let mut solid = 0;
        let mut gone: Vec<String> = Vec::new();
        let mut waiting = 0;
        for owner in &node.owners {
            match self.owner_state(&node, owner).await? {
                OwnerState::Solid => solid += 1,
                OwnerState::Dangling => gone.push(owner.uid.clone()),
                OwnerState::WaitingForDependents => {
                    waiting += 1;
                    gone.push(owner.uid.clone());
                }
            }
        }
        let api = self.api_for(&node);
        if solid == 0 {
            let has_dependents = !self.graph.lock().unwrap().dependents_of(uid).is_empty();
            let policy = if waiting > 0 && has_dependents {
                PropagationPolicy::Foreground
            } else if node.finalizers.iter().any(|f| f == ORPHAN) {
                PropagationPolicy::Orphan
            } else if node.finalizers.iter().any(|f| f == FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            };
            tracing::debug!(kind = %node.ar.kind, name = %node.name, ?policy, "deleting an object whose owners are gone");
            let dp = DeleteParams {
                propagation_policy: Some(policy),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            return match api.delete(&node.name, &dp).await {
                Ok(_) => Ok(Next::Done),
                Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => Ok(Next::Done),
                Err(e) => Err(e),
            };
        }
        if !gone.is_empty() {
            let keep: Vec<&OwnerReference> = node
                .owners
                .iter()
                .filter(|o| !gone.contains(&o.uid))
                .collect();
            self.patch_owners(&api, &node, uid, &keep).await?;
        }
        Ok(Next::Done)
    }

    async fn owner_state(
        &self,
        node: &Node,
        owner: &OwnerReference,
    ) -> Result<OwnerState, kube::Error> {
        let known = self.graph.lock().unwrap().nodes.get(&owner.uid).cloned();
        if let Some(o) = known {
            if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) {
                return Ok(OwnerState::WaitingForDependents);
            }
            return Ok(OwnerState::Solid);
        }
        // Not in the graph: ask the API (the graph may lag behind).
        let res = {
            let all = self.resources.lock().unwrap();
            discovery::find(&all, &owner.api_version, &owner.kind).cloned()
        };
        let Some(res) = res else {
            // A kind nobody serves: the owner cannot exist.
            return Ok(OwnerState::Dangling);
        };
        let api: Api<DynamicObject> = if res.namespaced {
            match &node.namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &res.ar),
                // A cluster-scoped dependent cannot have a namespaced owner.
                None => return Ok(OwnerState::Dangling),
            }
        } else {
            Api::all_with(self.client.clone(), &res.ar)
        };
        match api.get_opt(&owner.name).await? {
            None => Ok(OwnerState::Dangling),
            Some(o) if o.metadata.uid.as_deref() != Some(owner.uid.as_str()) => {
                Ok(OwnerState::Dangling)
            }
            Some(o) => {
                let fin = o.metadata.finalizers.unwrap_or_default();
                if o.metadata.deletion_timestamp.is_some() && fin.iter().any(|f| f == FOREGROUND) {
                    Ok(OwnerState::WaitingForDependents)
                } else {
                    Ok(OwnerState::Solid)
                }
            }
        }
    }

    fn api_for(&self, node: &Node) -> Api<DynamicObject> {
        match (&node.namespace, node.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, node.ar.as_ref()),
            _ => Api::all_with(self.client.clone(), node.ar.as_ref()),
        }
    }

    /// Rewrites a node's ownerReferences (compare-and-swap on its
    /// resourceVersion).
    async fn patch_owners(
        &self,
        api: &Api<DynamicObject>,
        node: &Node,
        uid: &str,
        keep: &[&OwnerReference],
    ) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {
            "ownerReferences": keep,
            "uid": uid,
            "resourceVersion": node.resource_version,
        }});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if runtime::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn remove_finalizer(
        &self,
        node: &Node,
        uid: &str,
        finalizer: &str,
    ) -> Result<(), kube::Error> {
        let left: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {
            "finalizers": left,
            "uid": uid,
            "resourceVersion": node.resource_version,
        }});
        match self
            .api_for(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if runtime::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn orphan_dependents(&self, uid: &str, node: &Node) -> Result<Next, kube::Error> {
        let deps = self.graph.lock().unwrap().dependents_of(uid);
        for (dep_uid, dep) in deps {
            let keep: Vec<&OwnerReference> = dep.owners.iter().filter(|o| o.uid != uid).collect();
            self.patch_owners(&self.api_for(&dep), &dep, &dep_uid, &keep)
                .await?;
        }
        self.remove_finalizer(node, uid, ORPHAN).await?;
        Ok(Next::Done)
    }

    async fn delete_dependents(&self, uid: &str, node: &Node) -> Result<Next, kube::Error> {
        let deps = self.graph.lock().unwrap().dependents_of(uid);
        let mut blocking = 0;
        for (dep_uid, dep) in &deps {
            let blocks = dep
                .owners
                .iter()
                .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
            if blocks {
                blocking += 1;
            }
            if dep.deleting {
                continue;
            }
            let has_own = !self.graph.lock().unwrap().dependents_of(dep_uid).is_empty();
            let dp = DeleteParams {
                propagation_policy: Some(if has_own {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                }),
                preconditions: Some(Preconditions {
                    uid: Some(dep_uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.api_for(dep).delete(&dep.name, &dp).await {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) || runtime::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if blocking == 0 {
            self.remove_finalizer(node, uid, FOREGROUND).await?;
            return Ok(Next::Done);
        }
        // Woken again as dependents go; look again in a while regardless.
        Ok(Next::After(Duration::from_secs(5)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(owners: &[&str], deleting: bool, finalizers: &[&str]) -> Node {
        Node {
            ar: Arc::new(ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&())),
            namespaced: true,
            namespace: Some("default".into()),
            name: "x".into(),
            owners: owners
                .iter()
                .map(|u| OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: format!("owner-{u}"),
                    uid: u.to_string(),
                    block_owner_deletion: Some(true),
                    controller: None,
                })
                .collect(),
            deleting,
            finalizers: finalizers.iter().map(|s| s.to_string()).collect(),
            resource_version: None,
        }
    }

    #[test]
    fn graph_wakes_the_right_objects() {
        let mut g = Graph::default();
        // An owner with no owners: nothing to check.
        assert!(g.upsert("o", node(&[], false, &[])).is_empty());
        // A new dependent is checked once.
        assert_eq!(g.upsert("d", node(&["o"], false, &[])), vec!["d"]);
        assert!(g.upsert("d", node(&["o"], false, &[])).is_empty());
        assert_eq!(g.dependents_of("o").len(), 1);
        // The owner being deleted with a finalizer is worked on.
        assert_eq!(g.upsert("o", node(&[], true, &[FOREGROUND])), vec!["o"]);
        // A dependent going away wakes its owner; the owner going away
        // wakes its dependents.
        assert_eq!(g.remove("d"), vec!["o"]);
        assert!(g.dependents_of("o").is_empty());
        g.upsert("d2", node(&["o"], false, &[]));
        assert_eq!(g.remove("o"), vec!["d2"]);
        // Owners changing re-checks.
        assert_eq!(g.upsert("d2", node(&["o", "p"], false, &[])), vec!["d2"]);
        assert_eq!(g.dependents_of("p").len(), 1);
    }
}
