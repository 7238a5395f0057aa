//! Pod volumes as kubelet sets them up before a pod's containers run, and
//! the container mounts for them.
//!
//! Each volume lives under `<pod dir>/volumes/kubernetes.io~<type>/<name>`
//! (the pod dir is `<data-dir>/agent/pods/<uid>`): [`empty_dir`] (disk, or
//! a tmpfs for medium `Memory`), [`host_path`] (the host path itself, after
//! its `type` check), configMap, secret, downwardAPI and projected
//! ([`projection`]'s files written by [`atomic`] so that later syncs follow
//! updates), and persistentVolumeClaim bound to a hostPath or local
//! PersistentVolume. Projected service account tokens come from the
//! TokenRequest API and are renewed after 80% of their lifetime.
//! [`teardown`] unmounts and removes a pod's volumes.

pub mod atomic;
pub mod empty_dir;
pub mod host_path;
pub mod projection;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMapProjection, Container, Pod, SecretProjection, Volume};

use crate::cri::Mount;
use crate::env::{expand, Objects, PodContext};

/// A volume's host path, and whether kubelet mounts it read-only always
/// (configMap, secret, downwardAPI, projected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub path: PathBuf,
    pub read_only: bool,
}

/// Service account tokens issued for projected volumes, by pod, account,
/// audience and lifetime.
#[derive(Default)]
pub struct Tokens {
    cache: Mutex<HashMap<String, (String, Instant, Instant)>>,
}

impl Tokens {
    #[allow(clippy::too_many_arguments)]
    async fn get(
        &self,
        pod_uid: &str,
        ns: &str,
        sa: &str,
        audience: Option<&str>,
        expiration: i64,
        objects: &dyn Objects,
    ) -> Result<String, String> {
        let key = format!(
            "{pod_uid}/{ns}/{sa}/{}/{expiration}",
            audience.unwrap_or_default()
        );
        let now = Instant::now();
        if let Some((t, _, refresh)) = self.cache.lock().unwrap().get(&key) {
            if now < *refresh {
                return Ok(t.clone());
            }
        }
        let (token, ttl) = objects
            .service_account_token(ns, sa, audience, expiration)
            .await?;
        // kubelet renews at 80% of the lifetime (or after 24 h).
        let refresh = now + Duration::from_secs((ttl.max(1) as u64 * 8 / 10).min(86_400));
        self.cache
            .lock()
            .unwrap()
            .insert(key, (token.clone(), now, refresh));
        Ok(token)
    }

    /// Forgets the tokens of pod `uid`.
    pub fn forget(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.cache
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

fn plugin_dir(pod_dir: &Path, kind: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{kind}"))
        .join(name)
}

async fn setup_one(
    pod: &Pod,
    v: &Volume,
    ctx: &PodContext,
    objects: &dyn Objects,
    tokens: &Tokens,
    pod_dir: &Path,
) -> Result<Prepared, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let files = |kind: &str| Prepared {
        path: plugin_dir(pod_dir, kind, &v.name),
        read_only: true,
    };
    let write = |p: &Prepared, payload: &projection::Payload| {
        atomic::write(&p.path, payload).map_err(|e| e.to_string())
    };
    if let Some(e) = &v.empty_dir {
        let path = plugin_dir(pod_dir, "empty-dir", &v.name);
        empty_dir::setup(&path, e)?;
        return Ok(Prepared {
            path,
            read_only: false,
        });
    }
    if let Some(h) = &v.host_path {
        host_path::check(&h.path, h.type_.as_deref().unwrap_or_default())?;
        return Ok(Prepared {
            path: PathBuf::from(&h.path),
            read_only: false,
        });
    }
    if let Some(c) = &v.config_map {
        let p = files("configmap");
        let mut payload = projection::Payload::new();
        let src = ConfigMapProjection {
            items: c.items.clone(),
            name: c.name.clone(),
            optional: c.optional,
        };
        projection::config_map(
            &mut payload,
            ns,
            &src,
            c.default_mode.unwrap_or(projection::DEFAULT_MODE),
            objects,
        )
        .await?;
        write(&p, &payload)?;
        return Ok(p);
    }
    if let Some(s) = &v.secret {
        let p = files("secret");
        let mut payload = projection::Payload::new();
        let src = SecretProjection {
            items: s.items.clone(),
            name: s.secret_name.clone().unwrap_or_default(),
            optional: s.optional,
        };
        projection::secret(
            &mut payload,
            ns,
            &src,
            s.default_mode.unwrap_or(projection::DEFAULT_MODE),
            objects,
        )
        .await?;
        write(&p, &payload)?;
        return Ok(p);
    }
    if let Some(d) = &v.downward_api {
        let p = files("downward-api");
        let mut payload = projection::Payload::new();
        projection::downward_api(
            &mut payload,
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(projection::DEFAULT_MODE),
            ctx,
        )?;
        write(&p, &payload)?;
        return Ok(p);
    }
    if let Some(src) = &v.projected {
        let p = files("projected");
        let mut payload = projection::Payload::new();
        projection::projected(&mut payload, pod, src, ctx, objects, tokens).await?;
        write(&p, &payload)?;
        return Ok(p);
    }
    if let Some(c) = &v.persistent_volume_claim {
        let path = objects.claim_path(ns, &c.claim_name).await?;
        return Ok(Prepared {
            path: PathBuf::from(path),
            read_only: c.read_only == Some(true),
        });
    }
    Err("unsupported volume type".to_owned())
}

/// Sets up every volume of the pod (idempotent; configMap, secret,
/// downwardAPI and projected contents are refreshed). The first failure is
/// kubelet's `MountVolume.SetUp failed for volume "x" : ...` message.
pub async fn setup(
    pod: &Pod,
    ctx: &PodContext,
    objects: &dyn Objects,
    tokens: &Tokens,
    pod_dir: &Path,
) -> Result<BTreeMap<String, Prepared>, String> {
    let mut out = BTreeMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        match setup_one(pod, v, ctx, objects, tokens, pod_dir).await {
            Ok(p) => {
                out.insert(v.name.clone(), p);
            }
            Err(e) => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume \"{}\" : {e}",
                    v.name
                ))
            }
        }
    }
    Ok(out)
}

/// Container `c`'s mounts of the prepared volumes; `env` expands
/// `subPathExpr`. A subPath directory is created when missing.
pub fn container_mounts(
    c: &Container,
    volumes: &BTreeMap<String, Prepared>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    let env: HashMap<String, String> = env.iter().cloned().collect();
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes.get(&m.name).ok_or_else(|| {
            format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, c.name
            )
        })?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => expand(e, &env),
            _ => String::new(),
        };
        if Path::new(&sub).is_absolute() || sub.split('/').any(|p| p == "..") {
            return Err(format!("invalid subpath \"{sub}\""));
        }
        let host = if sub.is_empty() {
            v.path.clone()
        } else {
            let p = v.path.join(&sub);
            if std::fs::symlink_metadata(&p).is_err() {
                std::fs::create_dir_all(&p).map_err(|e| format!("failed to create subPath directory for volumeMount \"{}\" of container \"{}\": {e}", m.name, c.name))?;
            }
            p
        };
        out.push(Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only == Some(true) || v.read_only,
        });
    }
    Ok(out)
}

/// Unmounts (tmpfs emptyDirs) and removes the pod dir.
pub fn teardown(pod_dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(pod_dir.join("volumes").join("kubernetes.io~empty-dir")) {
        for e in rd.flatten() {
            empty_dir::teardown(&e.path());
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

#[cfg(test)]
mod tests;
