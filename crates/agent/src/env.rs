//! A container's environment as kubelet builds it
//! (`makeEnvironmentVariables`): `envFrom` sources in order (ConfigMaps and
//! Secrets, with `prefix`; keys that are not valid variable names are
//! skipped), then `env` in order, each `value` expanded with `$(VAR)` against
//! what is defined so far; `valueFrom` reads a ConfigMap or Secret key, a
//! pod field (`fieldRef`) or a container resource (`resourceFieldRef`, a
//! missing limit falling back to the node's allocatable).
//!
//! A missing ConfigMap, Secret or key that is not `optional` is an error with
//! kubelet's message; the pod worker reports it as
//! `CreateContainerConfigError` and tries again on a later sync.
//! Then, as the kubelet adds them, the Docker-links variables of Services
//! ([`service_env`]): of the `kubernetes` Service in `default` always,
//! and of every Service of the pod's namespace unless
//! `enableServiceLinks: false` (`WEB_SERVICE_HOST`, `WEB_SERVICE_PORT`,
//! `WEB_PORT_80_TCP_ADDR`, ...); they come after the declared variables,
//! which win, and `$(VAR)` sees them.
//! ConfigMaps, Secrets and Services come through [`Objects`] (the API for
//! the real agent, [`StaticObjects`] in tests).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, ResourceFieldSelector,
    Secret, Service,
};
use kube::api::Api;

use crate::simulated::quantity_nanos;

/// Where ConfigMaps and Secrets are read from. `Ok(None)`: not found.
#[async_trait]
pub trait Objects: Send + Sync {
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String>;
    /// The Services of namespace `ns`.
    async fn services(&self, _ns: &str) -> Result<Vec<Service>, String> {
        Ok(Vec::new())
    }
    /// The host directory of the volume bound to claim `ns/name`
    /// (a hostPath or local PersistentVolume).
    async fn claim_path(&self, ns: &str, name: &str) -> Result<String, String> {
        Err(format!(
            "persistentvolumeclaim \"{ns}/{name}\" not supported"
        ))
    }
    /// A token for service account `ns/name` (TokenRequest):
    /// the token and its lifetime in seconds.
    async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        _audience: Option<&str>,
        _expiration_seconds: i64,
    ) -> Result<(String, i64), String> {
        Err(format!("no token for service account {ns}/{name}"))
    }
}

#[async_trait]
impl Objects for kube::Client {
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Api::<ConfigMap>::namespaced(self.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String> {
        Api::<Secret>::namespaced(self.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn services(&self, ns: &str) -> Result<Vec<Service>, String> {
        Api::<Service>::namespaced(self.clone(), ns)
            .list(&Default::default())
            .await
            .map(|l| l.items)
            .map_err(|e| e.to_string())
    }

    async fn claim_path(&self, ns: &str, name: &str) -> Result<String, String> {
        let claim = Api::<PersistentVolumeClaim>::namespaced(self.clone(), ns)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
        let pv_name = claim
            .spec
            .and_then(|s| s.volume_name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("PVC {ns}/{name} has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"))?;
        let pv = Api::<PersistentVolume>::all(self.clone())
            .get_opt(&pv_name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolume \"{pv_name}\" not found"))?;
        let spec = pv.spec.unwrap_or_default();
        spec.host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| format!("persistentvolume \"{pv_name}\" is neither hostPath nor local"))
    }

    async fn service_account_token(
        &self,
        ns: &str,
        name: &str,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<(String, i64), String> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_owned()]).unwrap_or_default(),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: None,
            },
            ..TokenRequest::default()
        };
        let r: TokenRequest =
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(self.clone(), ns)
                .create_subresource("token", name, &Default::default(), &req)
                .await
                .map_err(|e| e.to_string())?;
        let status = r.status.ok_or("TokenRequest without status")?;
        let ttl = r.spec.expiration_seconds.unwrap_or(expiration_seconds);
        Ok((status.token, ttl))
    }
}

/// ConfigMaps and Secrets held in memory, keyed by `ns/name`.
#[derive(Default)]
pub struct StaticObjects {
    pub config_maps: Mutex<HashMap<String, ConfigMap>>,
    pub secrets: Mutex<HashMap<String, Secret>>,
    pub services: Mutex<Vec<Service>>,
}

impl StaticObjects {
    pub fn put_config_map(&self, ns: &str, name: &str, data: &[(&str, &str)]) {
        let cm = ConfigMap {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ConfigMap::default()
        };
        self.config_maps
            .lock()
            .unwrap()
            .insert(format!("{ns}/{name}"), cm);
    }

    pub fn put_secret(&self, ns: &str, name: &str, data: &[(&str, &[u8])]) {
        let s = Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        };
        self.secrets
            .lock()
            .unwrap()
            .insert(format!("{ns}/{name}"), s);
    }
}

#[async_trait]
impl Objects for StaticObjects {
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Ok(self
            .config_maps
            .lock()
            .unwrap()
            .get(&format!("{ns}/{name}"))
            .cloned())
    }

    async fn secret(&self, ns: &str, name: &str) -> Result<Option<Secret>, String> {
        Ok(self
            .secrets
            .lock()
            .unwrap()
            .get(&format!("{ns}/{name}"))
            .cloned())
    }

    async fn services(&self, ns: &str) -> Result<Vec<Service>, String> {
        Ok(self
            .services
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .cloned()
            .collect())
    }
}

/// The Docker-links variables of one Service with a cluster IP (none for
/// headless and ExternalName Services).
fn one_service_env(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(spec) = svc.spec.as_ref() else {
        return;
    };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    if ip.is_empty() || ip == "None" {
        return;
    }
    let name = svc
        .metadata
        .name
        .as_deref()
        .unwrap_or("")
        .to_uppercase()
        .replace('-', "_");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else {
        return;
    };
    let host_port = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.as_deref().unwrap_or("TCP").to_lowercase()
    };
    out.push((format!("{name}_SERVICE_HOST"), ip.to_owned()));
    out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
            let pn = pn.to_uppercase().replace('-', "_");
            out.push((format!("{name}_SERVICE_PORT_{pn}"), p.port.to_string()));
        }
    }
    out.push((
        format!("{name}_PORT"),
        format!("{}://{}", proto(first), host_port(first.port)),
    ));
    for p in ports {
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto(p).to_uppercase());
        out.push((
            prefix.clone(),
            format!("{}://{}", proto(p), host_port(p.port)),
        ));
        out.push((format!("{prefix}_PROTO"), proto(p)));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.to_owned()));
    }
}

/// The Service variables a pod's containers get: the `kubernetes`
/// Service's always, its namespace's Services' unless
/// `enableServiceLinks: false` (a namespace Service named like a master
/// one wins). A Service list that cannot be read gives none (logged).
pub async fn service_env(pod: &Pod, objects: &dyn Objects) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let mut chosen: BTreeMap<String, Service> = BTreeMap::new();
    if links {
        match objects.services(ns).await {
            Ok(list) => {
                for s in list {
                    chosen.insert(s.metadata.name.clone().unwrap_or_default(), s);
                }
            }
            Err(e) => {
                tracing::warn!(namespace = ns, error = %e, "listing services for environment variables")
            }
        }
    }
    if !chosen.contains_key("kubernetes") {
        let defaults = if ns == "default" && links {
            Vec::new()
        } else {
            objects.services("default").await.unwrap_or_default()
        };
        if let Some(k) = defaults
            .into_iter()
            .find(|s| s.metadata.name.as_deref() == Some("kubernetes"))
        {
            chosen.insert("kubernetes".into(), k);
        }
    }
    let mut out = Vec::new();
    for s in chosen.values() {
        one_service_env(s, &mut out);
    }
    out
}

/// What the node knows about a running pod that its spec does not say.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    pub host_ip: String,
    pub pod_ip: String,
    /// The node's allocatable resources (`cpu`, `memory`,
    /// `ephemeral-storage`): the value of a missing limit.
    pub allocatable: BTreeMap<String, String>,
}

/// `$(VAR)` expansion as Kubernetes does it: defined variables are
/// replaced, `$$` is an escaped `$`, anything else stays as written.
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    if let Some(v) = env.get(name) {
                        out.push_str(v);
                        i += 3 + end;
                        continue;
                    }
                }
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Kubernetes' `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || "-._".contains(c) => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The value of a pod field (`fieldRef.fieldPath`), as the downward API
/// gives it; `None` for a path it does not know.
pub fn pod_field(pod: &Pod, path: &str, ctx: &PodContext) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|k| k.strip_suffix("']"))
            .map(|k| {
                map.as_ref()
                    .and_then(|m| m.get(k).cloned())
                    .unwrap_or_default()
            })
    };
    let all = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| {
                format!(
                    "{k}=\"{}\"\n",
                    v.replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n")
                )
            })
            .collect::<String>()
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(&m.labels),
        "metadata.annotations" => all(&m.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        _ => {
            return keyed("metadata.labels['", &m.labels)
                .or_else(|| keyed("metadata.annotations['", &m.annotations))
        }
    })
}

/// `requests.cpu`, `limits.memory`... of container `c`, divided by the
/// divisor and rounded up as kubelet does (`ConvertResourceCPUToString`,
/// `ConvertResourceMemoryToString`).
pub fn resource_field(
    c: &Container,
    sel: &ResourceFieldSelector,
    ctx: &PodContext,
) -> Result<String, String> {
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", sel.resource))?;
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage")
        || !matches!(kind, "limits" | "requests")
    {
        return Err(format!("unsupported container resource : {}", sel.resource));
    }
    let res = c.resources.as_ref();
    let set = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        _ => res.and_then(|r| r.requests.as_ref()),
    }
    .and_then(|m| m.get(resource))
    .map(|q| q.0.clone());
    let value = match (set, kind) {
        (Some(v), _) => v,
        (None, "limits") => ctx
            .allocatable
            .get(resource)
            .cloned()
            .unwrap_or_else(|| "0".into()),
        (None, _) => "0".into(),
    };
    let nanos = quantity_nanos(&value).ok_or_else(|| format!("invalid quantity {value}"))?;
    let divisor = sel.divisor.as_ref().map_or("1", |d| d.0.as_str());
    let div = quantity_nanos(divisor)
        .filter(|d| *d > 0)
        .ok_or_else(|| format!("invalid divisor {divisor}"))?;
    let ceil = |a: i128, b: i128| (a + b - 1).div_euclid(b);
    Ok(if resource == "cpu" {
        // In milli-units, each rounded up.
        let milli = ceil(nanos, 1_000_000);
        let dmilli = ceil(div, 1_000_000).max(1);
        ceil(milli, dmilli)
    } else {
        let v = ceil(nanos, 1_000_000_000);
        let d = ceil(div, 1_000_000_000).max(1);
        ceil(v, d)
    }
    .to_string())
}

fn config_map_not_found(name: &str) -> String {
    format!("configmap \"{name}\" not found")
}

fn secret_not_found(name: &str) -> String {
    format!("secret \"{name}\" not found")
}

/// The container's environment, in definition order (a later definition
/// of a name replaces the earlier value in place), or kubelet's message
/// for why it cannot be built.
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    ctx: &PodContext,
    objects: &dyn Objects,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let services = service_env(pod, objects).await;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if map.insert(k.clone(), v.clone()).is_some() {
            if let Some(e) = out.iter_mut().find(|(n, _)| *n == k) {
                e.1 = v;
            }
        } else {
            out.push((k, v));
        }
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let pairs: Vec<(String, String)> = if let Some(r) = &from.config_map_ref {
            match objects.config_map(ns, &r.name).await? {
                Some(cm) => cm.data.unwrap_or_default().into_iter().collect(),
                None if r.optional == Some(true) => continue,
                None => return Err(config_map_not_found(&r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secret(ns, &r.name).await? {
                Some(s) => s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if r.optional == Some(true) => continue,
                None => return Err(secret_not_found(&r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in pairs {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                set(&mut out, k, v);
            } else {
                tracing::info!(pod = ?pod.metadata.name, key = k, "skipping invalid environment variable name");
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let defined: HashMap<String, String> =
                services.iter().chain(out.iter()).cloned().collect();
            Some(expand(v, &defined))
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                Some(
                    pod_field(pod, &f.field_path, ctx)
                        .ok_or_else(|| format!("unsupported fieldPath: {}", f.field_path))?,
                )
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    None | Some("") => Some(c),
                    Some(n) => pod
                        .spec
                        .iter()
                        .flat_map(|s| {
                            s.containers
                                .iter()
                                .chain(s.init_containers.iter().flatten())
                        })
                        .find(|x| x.name == n),
                };
                let target = target.ok_or_else(|| {
                    format!(
                        "container {} not found",
                        r.container_name.as_deref().unwrap_or_default()
                    )
                })?;
                Some(resource_field(target, r, ctx)?)
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match objects.config_map(ns, &r.name).await? {
                    None if optional => None,
                    None => return Err(config_map_not_found(&r.name)),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match objects.secret(ns, &r.name).await? {
                    None if optional => None,
                    None => return Err(secret_not_found(&r.name)),
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => Some(String::from_utf8_lossy(&v.0).into_owned()),
                        None if optional => None,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else {
                None
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            set(&mut out, e.name.clone(), v);
        }
    }
    for (k, v) in services {
        if !out.iter().any(|(n, _)| *n == k) {
            out.push((k, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
