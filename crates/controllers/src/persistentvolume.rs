//! PersistentVolume binding and local-path provisioning, as Kubernetes'
//! persistentvolume-binder and k3s's local-path provisioner do them:
//!
//! - a Pending claim binds to the smallest Available volume of its class
//!   whose access modes, volume mode, capacity and label selector fit
//!   (both objects record the binding: `pv.spec.claimRef`,
//!   `pvc.spec.volumeName`, phases Bound, the bind-completed annotations);
//! - a claim with no fitting volume whose class is provisioned by
//!   `rancher.io/local-path` (the `local-path` class, created at start and
//!   marked default, as k3s ships it) gets a new hostPath volume
//!   `pvc-<uid>` under `<storage dir>/pvc-<uid>_<ns>_<name>`; with
//!   WaitForFirstConsumer it waits for the scheduler's
//!   `volume.kubernetes.io/selected-node` annotation (or a pod using the
//!   claim already bound to a node) and pins the volume to that node;
//! - a claim without a class uses the default class;
//! - when a claim goes, its volume is Released (Retain) or deleted
//!   (Delete).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use runtime::workqueue::{run_workers, Next};
use runtime::{key_of, Change, WorkQueue};
use serde_json::json;

use api::quantity::Quantity;

use crate::Ctx;

pub const LOCAL_PATH: &str = "rancher.io/local-path";
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

fn request_of(pvc: &PersistentVolumeClaim) -> Quantity {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0))
        .unwrap_or_default()
}

fn capacity_of(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0))
        .unwrap_or_default()
}

/// The class a claim asks for ("" = none), defaulting to the default class.
pub fn class_of(pvc: &PersistentVolumeClaim, default: Option<&str>) -> String {
    match pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()) {
        Some(c) => c,
        None => default.unwrap_or("").to_owned(),
    }
}

/// The best Available volume for a claim: the smallest that fits.
pub fn best_volume<'a>(
    pvc: &PersistentVolumeClaim,
    class: &str,
    volumes: &'a [Arc<PersistentVolume>],
) -> Option<&'a Arc<PersistentVolume>> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let want = request_of(pvc);
    let modes = spec.access_modes.clone().unwrap_or_default();
    let mode = spec
        .volume_mode
        .clone()
        .unwrap_or_else(|| "Filesystem".into());
    let uid = pvc.metadata.uid.clone();
    volumes
        .iter()
        .filter(|pv| {
            let s = pv.spec.clone().unwrap_or_default();
            let free = match &s.claim_ref {
                None => true,
                Some(r) => r.uid == uid && uid.is_some(),
            };
            let phase_ok = pv
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p == "Available" || p == "Pending");
            let labels = crate::podutil::labels(&pv.metadata);
            free && phase_ok
                && pv.metadata.deletion_timestamp.is_none()
                && s.storage_class_name.as_deref().unwrap_or("") == class
                && s.volume_mode.as_deref().unwrap_or("Filesystem") == mode
                && modes
                    .iter()
                    .all(|m| s.access_modes.as_ref().is_some_and(|a| a.contains(m)))
                && capacity_of(pv).milli >= want.milli
                && spec
                    .selector
                    .as_ref()
                    .is_none_or(|sel| crate::podutil::selector_matches(sel, &labels))
                && spec
                    .volume_name
                    .as_deref()
                    .is_none_or(|n| pv.metadata.name.as_deref() == Some(n))
        })
        .min_by_key(|pv| capacity_of(pv).milli)
}

struct Controller {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    storage_dir: String,
    recorder: runtime::Recorder,
}

pub fn start(ctx: &Ctx, set: &mut tokio::task::JoinSet<()>, storage_dir: String) {
    let pvc_inf = ctx.informers.get::<PersistentVolumeClaim>();
    let pv_inf = ctx.informers.get::<PersistentVolume>();
    let sc_inf = ctx.informers.get::<StorageClass>();
    let pod_inf = ctx.informers.get::<Pod>();
    // Keys: "claim:ns/name" and "volume:name".
    let queue: WorkQueue<String> = WorkQueue::new();
    {
        let q = queue.clone();
        pvc_inf.on_change(move |ch: &Change<PersistentVolumeClaim>| {
            let o = ch.object();
            q.add(format!("claim:{}", key_of(&o.metadata)));
            if let Some(v) = o.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                q.add(format!("volume:{v}"));
            }
        });
    }
    {
        let q = queue.clone();
        pv_inf.on_change(move |ch: &Change<PersistentVolume>| {
            let o = ch.object();
            q.add(format!(
                "volume:{}",
                o.metadata.name.clone().unwrap_or_default()
            ));
        });
    }
    {
        // A pod bound to a node may decide where a waiting claim goes.
        let q = queue.clone();
        pod_inf.on_change(move |ch: &Change<Pod>| {
            let p = ch.object();
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none() {
                return;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            for v in p
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
            {
                if let Some(c) = &v.persistent_volume_claim {
                    q.add(format!("claim:{ns}/{}", c.claim_name));
                }
            }
        });
    }
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        claims: pvc_inf.store(),
        volumes: pv_inf.store(),
        classes: sc_inf.store(),
        pods: pod_inf.store(),
        storage_dir,
        recorder: ctx.recorder("persistentvolume-controller"),
    });
    set.spawn(async move {
        c.ensure_local_path_class().await;
        pvc_inf.wait_synced().await;
        pv_inf.wait_synced().await;
        sc_inf.wait_synced().await;
        pod_inf.wait_synced().await;
        run_workers(queue, 1, "persistentvolume-binder", move |key: String| {
            let c = c.clone();
            async move {
                if let Some(k) = key.strip_prefix("claim:") {
                    c.sync_claim(k).await
                } else if let Some(k) = key.strip_prefix("volume:") {
                    c.sync_volume(k).await
                } else {
                    Ok(Next::Done)
                }
            }
        })
        .await;
    });
}

impl Controller {
    /// k3s ships a default `local-path` class; so does rkube.
    async fn ensure_local_path_class(&self) {
        let api: Api<StorageClass> = Api::all(self.client.clone());
        let sc: StorageClass = serde_json::from_value(json!({
            "metadata": {"name": "local-path", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": LOCAL_PATH,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))
        .unwrap();
        if let Err(e) = api.create(&PostParams::default(), &sc).await {
            if !runtime::is_conflict(&e) {
                tracing::debug!(error = %e, "creating the local-path StorageClass");
            }
        }
    }

    fn default_class(&self) -> Option<String> {
        self.classes
            .state()
            .iter()
            .find(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .map(String::as_str)
                    == Some("true")
            })
            .and_then(|c| c.metadata.name.clone())
    }

    async fn sync_claim(&self, key: &str) -> Result<Next, kube::Error> {
        let (ns, name) = runtime::split_key(key);
        let ns = ns.unwrap_or_default();
        let Some(pvc) = self.claims.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Next::Done);
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Ok(Next::Done);
        }
        let phase = pvc
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
        let volumes = self.volumes.state();
        if let (Some(vn), "Bound") = (&volume_name, phase.as_str()) {
            // Bound: nothing to do unless the volume vanished.
            if !volumes
                .iter()
                .any(|v| v.metadata.name.as_deref() == Some(vn))
            {
                self.set_claim_phase(ns, name, "Lost").await?;
            }
            return Ok(Next::Done);
        }
        let class = class_of(&pvc, self.default_class().as_deref());
        if let Some(pv) = best_volume(&pvc, &class, &volumes) {
            let pv = pv.clone();
            self.bind(&pvc, &pv).await?;
            return Ok(Next::Done);
        }
        let sc = self.classes.get(&ObjectRef::new(&class));
        let Some(sc) = sc.filter(|sc| sc.provisioner == LOCAL_PATH) else {
            let message = if class.is_empty() {
                "no persistent volumes available for this claim and no storage class is set"
                    .to_owned()
            } else {
                format!("storageclass.storage.k8s.io \"{class}\" not found or not provisioned here")
            };
            self.recorder.normal(pvc.as_ref(), "FailedBinding", message);
            return Ok(Next::Done);
        };
        let mut node = pvc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SELECTED_NODE).cloned());
        if sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") && node.is_none() {
            node = self.consumer_node(ns, name);
            if node.is_none() {
                self.recorder.normal(
                    pvc.as_ref(),
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding".into(),
                );
                return Ok(Next::Done);
            }
        }
        let pv = self.provision(&pvc, &sc, &class, node.as_deref()).await?;
        self.bind(&pvc, &pv).await?;
        Ok(Next::Done)
    }

    /// The node of a scheduled pod that uses the claim.
    fn consumer_node(&self, ns: &str, claim: &str) -> Option<String> {
        self.pods.state().iter().find_map(|p| {
            if p.metadata.namespace.as_deref() != Some(ns) {
                return None;
            }
            let spec = p.spec.as_ref()?;
            let uses = spec.volumes.iter().flatten().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            });
            uses.then(|| spec.node_name.clone()).flatten()
        })
    }

    async fn provision(
        &self,
        pvc: &PersistentVolumeClaim,
        sc: &StorageClass,
        class: &str,
        node: Option<&str>,
    ) -> Result<Arc<PersistentVolume>, kube::Error> {
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let size = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage").cloned())
            .unwrap_or_else(|| K8sQuantity("1Gi".into()));
        let mut spec = json!({
            "capacity": {"storage": size},
            "accessModes": pvc.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": sc.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class,
            "volumeMode": pvc.spec.as_ref().and_then(|s| s.volume_mode.clone()).unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": format!("{}/pvc-{uid}_{ns}_{name}", self.storage_dir), "type": "DirectoryOrCreate"},
        });
        if let Some(n) = node {
            spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}
            ]}]}});
        }
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": format!("pvc-{uid}"), "annotations": {"pv.kubernetes.io/provisioned-by": LOCAL_PATH}},
            "spec": spec,
        }))
        .unwrap();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let created = match api.create(&PostParams::default(), &pv).await {
            Ok(pv) => pv,
            Err(e) if runtime::is_conflict(&e) => api.get(&format!("pvc-{uid}")).await?,
            Err(e) => return Err(e),
        };
        self.recorder.normal(
            pvc,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume pvc-{uid}"),
        );
        Ok(Arc::new(created))
    }

    async fn bind(
        &self,
        pvc: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<(), kube::Error> {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let pv_api: Api<PersistentVolume> = Api::all(self.client.clone());
        let claim_ref = json!({
            "kind": "PersistentVolumeClaim", "apiVersion": "v1",
            "namespace": ns, "name": name, "uid": pvc.metadata.uid,
        });
        let patch = json!({
            "metadata": {"resourceVersion": pv.metadata.resource_version, "annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"claimRef": claim_ref},
        });
        pv_api
            .patch(&pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        pv_api
            .patch_status(
                &pv_name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"phase": "Bound"}})),
            )
            .await?;
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let patch = json!({
            "metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}},
            "spec": {"volumeName": pv_name},
        });
        pvc_api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let mut capacity = BTreeMap::new();
        if let Some(c) = pv
            .spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
        {
            capacity.insert("storage".to_string(), c.clone());
        }
        let status = json!({"status": {
            "phase": "Bound",
            "accessModes": pv.spec.as_ref().and_then(|s| s.access_modes.clone()),
            "capacity": capacity,
        }});
        pvc_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
        Ok(())
    }

    async fn set_claim_phase(&self, ns: &str, name: &str, phase: &str) -> Result<(), kube::Error> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        match api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"phase": phase}})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if runtime::is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A volume whose claim is gone is released or deleted.
    async fn sync_volume(&self, name: &str) -> Result<Next, kube::Error> {
        let Some(pv) = self.volumes.get(&ObjectRef::new(name)) else {
            return Ok(Next::Done);
        };
        let spec = pv.spec.clone().unwrap_or_default();
        let Some(claim) = spec.claim_ref.clone() else {
            return Ok(Next::Done);
        };
        let phase = pv
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let ns = claim.namespace.clone().unwrap_or_default();
        let cname = claim.name.clone().unwrap_or_default();
        let present = self
            .claims
            .get(&ObjectRef::new(&cname).within(&ns))
            .is_some_and(|c| c.metadata.uid == claim.uid);
        if present || phase == "Released" || phase == "Failed" {
            return Ok(Next::Done);
        }
        // Ask the API before acting on a possibly stale cache.
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        if let Some(c) = api.get_opt(&cname).await? {
            if c.metadata.uid == claim.uid {
                return Ok(Next::Done);
            }
        }
        let pv_api: Api<PersistentVolume> = Api::all(self.client.clone());
        match spec.persistent_volume_reclaim_policy.as_deref() {
            Some("Delete") => match pv_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if runtime::is_not_found(&e) => {}
                Err(e) => return Err(e),
            },
            _ => {
                pv_api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": {"phase": "Released"}})),
                    )
                    .await?;
            }
        }
        Ok(Next::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(
        name: &str,
        class: &str,
        size: &str,
        modes: &[&str],
        claimed: bool,
    ) -> Arc<PersistentVolume> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class, "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"}
        });
        if claimed {
            v["spec"]["claimRef"] = json!({"name": "other", "namespace": "ns", "uid": "other"});
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn pvc(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "c-uid"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        });
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn picks_the_smallest_fitting_volume() {
        let vols = vec![
            pv("big", "", "10Gi", &["ReadWriteOnce"], false),
            pv(
                "small",
                "",
                "1Gi",
                &["ReadWriteOnce", "ReadOnlyMany"],
                false,
            ),
            pv("tiny", "", "500Mi", &["ReadWriteOnce"], false),
            pv("taken", "", "1Gi", &["ReadWriteOnce"], true),
            pv("classy", "gold", "1Gi", &["ReadWriteOnce"], false),
            pv("rwx", "", "1Gi", &["ReadWriteMany"], false),
        ];
        let name = |v: Option<&Arc<PersistentVolume>>| v.map(|v| v.metadata.name.clone().unwrap());
        let claim = pvc(json!({"storageClassName": ""}));
        assert_eq!(
            name(best_volume(&claim, "", &vols)).as_deref(),
            Some("small")
        );
        assert_eq!(
            name(best_volume(&claim, "gold", &vols)).as_deref(),
            Some("classy")
        );
        let many = pvc(json!({"accessModes": ["ReadWriteMany"]}));
        assert_eq!(name(best_volume(&many, "", &vols)).as_deref(), Some("rwx"));
        let huge = pvc(json!({"resources": {"requests": {"storage": "100Gi"}}}));
        assert_eq!(name(best_volume(&huge, "", &vols)), None);
        let picky = pvc(json!({"selector": {"matchLabels": {"tier": "slow"}}}));
        assert_eq!(name(best_volume(&picky, "", &vols)), None);
        let named = pvc(json!({"volumeName": "big"}));
        assert_eq!(name(best_volume(&named, "", &vols)).as_deref(), Some("big"));
    }

    #[test]
    fn default_class() {
        assert_eq!(class_of(&pvc(json!({})), Some("local-path")), "local-path");
        assert_eq!(
            class_of(&pvc(json!({"storageClassName": ""})), Some("local-path")),
            ""
        );
        assert_eq!(
            class_of(
                &pvc(json!({"storageClassName": "gold"})),
                Some("local-path")
            ),
            "gold"
        );
    }
}
