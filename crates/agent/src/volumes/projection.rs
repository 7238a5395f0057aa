//! The files of configMap, secret, downwardAPI and projected volumes
//! (kubelet's `MakePayload`s): relative path → contents and mode.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIVolumeFile, KeyToPath, Pod, SecretProjection,
};

use super::atomic::File;
use super::Tokens;
use crate::env::{self, Objects, PodContext};

pub type Payload = BTreeMap<String, File>;

/// The default mode of configMap, secret, downwardAPI and projected files.
pub const DEFAULT_MODE: i32 = 0o644;

fn add_items(
    out: &mut Payload,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    what: &str,
) -> Result<(), String> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k,
                    File {
                        data: v,
                        mode: default_mode as u32,
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            File {
                                data: v.clone(),
                                mode: it.mode.unwrap_or(default_mode) as u32,
                            },
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "{what} references non-existent config key: {}",
                            it.key
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn config_map(
    out: &mut Payload,
    ns: &str,
    src: &ConfigMapProjection,
    default_mode: i32,
    objects: &dyn Objects,
) -> Result<(), String> {
    let name = src.name.as_str();
    let optional = src.optional == Some(true);
    let Some(cm) = objects.config_map(ns, name).await? else {
        return if optional {
            Ok(())
        } else {
            Err(format!("configmap \"{name}\" not found"))
        };
    };
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    add_items(
        out,
        data,
        src.items.as_ref(),
        default_mode,
        optional,
        "configMap",
    )
}

pub async fn secret(
    out: &mut Payload,
    ns: &str,
    src: &SecretProjection,
    default_mode: i32,
    objects: &dyn Objects,
) -> Result<(), String> {
    let name = src.name.as_str();
    let optional = src.optional == Some(true);
    let Some(s) = objects.secret(ns, name).await? else {
        return if optional {
            Ok(())
        } else {
            Err(format!("secret \"{name}\" not found"))
        };
    };
    let data = s
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    add_items(
        out,
        data,
        src.items.as_ref(),
        default_mode,
        optional,
        "secret",
    )
}

pub fn downward_api(
    out: &mut Payload,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    ctx: &PodContext,
) -> Result<(), String> {
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            env::pod_field(pod, &f.field_path, ctx)
                .ok_or_else(|| format!("unsupported fieldPath: {}", f.field_path))?
        } else if let Some(r) = &it.resource_field_ref {
            let cname = r.container_name.as_deref().unwrap_or_default();
            let c = pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == cname)
                .ok_or_else(|| format!("container {cname} not found"))?;
            env::resource_field(c, r, ctx)?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            File {
                data: value.into_bytes(),
                mode: it.mode.unwrap_or(default_mode) as u32,
            },
        );
    }
    Ok(())
}

/// A projected volume: its sources in order.
pub async fn projected(
    out: &mut Payload,
    pod: &Pod,
    src: &k8s_openapi::api::core::v1::ProjectedVolumeSource,
    ctx: &PodContext,
    objects: &dyn Objects,
    tokens: &Tokens,
) -> Result<(), String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    for s in src.sources.iter().flatten() {
        if let Some(c) = &s.config_map {
            config_map(out, ns, c, mode, objects).await?;
        }
        if let Some(c) = &s.secret {
            secret(out, ns, c, mode, objects).await?;
        }
        if let Some(d) = &s.downward_api {
            downward_api(out, pod, d.items.as_deref().unwrap_or_default(), mode, ctx)?;
        }
        if let Some(t) = &s.service_account_token {
            let sa = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .unwrap_or("default");
            let token = tokens
                .get(
                    pod.metadata.uid.as_deref().unwrap_or_default(),
                    ns,
                    sa,
                    t.audience.as_deref(),
                    t.expiration_seconds.unwrap_or(3600),
                    objects,
                )
                .await?;
            out.insert(
                t.path.clone(),
                File {
                    data: token.into_bytes(),
                    mode: mode as u32,
                },
            );
        }
    }
    Ok(())
}
