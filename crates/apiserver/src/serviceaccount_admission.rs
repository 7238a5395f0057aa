//! The ServiceAccount admission plugin, for pods being created: the pod
//! runs as `serviceAccountName` (default `default`), and unless the pod or
//! its account turns `automountServiceAccountToken` off, every container
//! gets the `kube-api-access-*` projected volume (a bound token, the
//! cluster CA from `kube-root-ca.crt`, the namespace) at
//! /var/run/secrets/kubernetes.io/serviceaccount, as Kubernetes does.

use std::sync::Arc;

use serde_json::{json, Value};
use store::Store;

pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR: &str = "kubernetes.io/config.mirror";

/// Admits `pod` in namespace `ns`, reading its ServiceAccount from `store`;
/// Err: why the pod is forbidden (a mirror pod referencing what it may
/// not).
pub async fn admit(store: &Arc<dyn Store>, ns: &str, pod: &mut Value) -> Result<(), &'static str> {
    if is_mirror(pod) {
        return match mirror_pod_error(pod) {
            Some(e) => Err(e),
            None => Ok(()),
        };
    }
    let sa: Option<Value> = match service_account_name(pod) {
        Some(name) => {
            let key = format!("/registry/serviceaccounts/{ns}/{name}");
            match store.get(&key).await {
                Ok(Some(kv)) => serde_json::from_slice::<Value>(&kv.value).ok(),
                _ => None,
            }
        }
        None => None,
    };
    let sa_automount = sa
        .as_ref()
        .and_then(|sa| sa.get("automountServiceAccountToken")?.as_bool());
    inject(pod, sa_automount, &suffix());
    if let Some(secrets) = sa.as_ref().and_then(|sa| sa.get("imagePullSecrets")) {
        add_pull_secrets(pod, secrets);
    }
    Ok(())
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR))
        .is_some()
}

/// What Kubernetes' ServiceAccount admission forbids a mirror pod (a
/// static pod's copy, which the agent runs without the API): a service
/// account, any Secret (VisitPodSecretNames), a ServiceAccountToken
/// projection.
pub fn mirror_pod_error(pod: &Value) -> Option<&'static str> {
    let spec = pod.get("spec")?;
    let named = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    if named(spec.get("serviceAccountName")) {
        return Some("a mirror pod may not reference service accounts");
    }
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut secrets = !list(spec, "imagePullSecrets").is_empty();
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in list(spec, key) {
            secrets |= list(&c, "envFrom")
                .iter()
                .any(|e| e.get("secretRef").is_some());
            secrets |= list(&c, "env")
                .iter()
                .any(|e| e.pointer("/valueFrom/secretKeyRef").is_some());
        }
    }
    let volumes = list(spec, "volumes");
    for v in &volumes {
        secrets |= v.get("secret").is_some()
            || named(v.pointer("/azureFile/secretName"))
            || list(v.get("projected").unwrap_or(&Value::Null), "sources")
                .iter()
                .any(|s| s.get("secret").is_some());
        for (kind, field) in [
            ("cephfs", "secretRef"),
            ("cinder", "secretRef"),
            ("flexVolume", "secretRef"),
            ("rbd", "secretRef"),
            ("iscsi", "secretRef"),
            ("scaleIO", "secretRef"),
            ("storageos", "secretRef"),
            ("csi", "nodePublishSecretRef"),
        ] {
            secrets |= v.get(kind).and_then(|k| k.get(field)).is_some();
        }
    }
    if secrets {
        return Some("a mirror pod may not reference secrets");
    }
    let token = volumes.iter().any(|v| {
        list(v.get("projected").unwrap_or(&Value::Null), "sources")
            .iter()
            .any(|s| s.get("serviceAccountToken").is_some())
    });
    token.then_some("a mirror pod may not use ServiceAccountToken volume projections")
}

/// A pod without `imagePullSecrets` gets its account's, as Kubernetes'
/// ServiceAccount admission does (mirror pods excepted).
pub fn add_pull_secrets(pod: &mut Value, sa_secrets: &Value) {
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR))
        .is_some();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let has_own = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let sa_list: Vec<Value> = sa_secrets
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some(json!({"name": r.get("name")?.as_str()?})))
        .collect();
    if mirror || has_own || sa_list.is_empty() {
        return;
    }
    spec.insert("imagePullSecrets".into(), Value::Array(sa_list));
}

fn service_account_name(pod: &Value) -> Option<String> {
    let spec = pod.get("spec")?;
    spec.get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| Some("default".to_owned()))
}

/// Five characters as Kubernetes' generated names use.
fn suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| CHARS[rand::random_range(0..CHARS.len())] as char)
        .collect()
}

/// The admission itself: `sa_automount` is the account's own setting.
pub fn inject(pod: &mut Value, sa_automount: Option<bool>, suffix: &str) {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR))
        .is_some()
    {
        return;
    }
    let Some(name) = service_account_name(pod) else {
        return;
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or(sa_automount)
        .unwrap_or(true);
    if !automount {
        return;
    }
    let volume = format!("kube-api-access-{suffix}");
    let mut mounted = false;
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let mounts = c
                .as_object_mut()
                .map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
            let Some(mounts) = mounts.and_then(Value::as_array_mut) else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
            {
                continue;
            }
            mounts.push(json!({"name": volume, "mountPath": MOUNT_PATH, "readOnly": true}));
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn table() {
        let two = json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]});
        // (what, pod, the account's setting, volume injected, account name)
        let cases = [
            (
                "default account, automount",
                pod(two.clone()),
                None,
                true,
                "default",
            ),
            (
                "named account",
                pod(json!({"serviceAccountName": "robot", "containers": [{"name": "a"}]})),
                None,
                true,
                "robot",
            ),
            (
                "the deprecated field names the account",
                pod(json!({"serviceAccount": "old", "containers": [{"name": "a"}]})),
                None,
                true,
                "old",
            ),
            (
                "the account opts out",
                pod(two.clone()),
                Some(false),
                false,
                "default",
            ),
            (
                "the pod opts out, whatever the account says",
                pod(json!({"automountServiceAccountToken": false, "containers": [{"name": "a"}]})),
                Some(true),
                false,
                "default",
            ),
            (
                "the pod opts in over the account",
                pod(json!({"automountServiceAccountToken": true, "containers": [{"name": "a"}]})),
                Some(false),
                true,
                "default",
            ),
            (
                "a container mounting the path itself keeps it",
                pod(
                    json!({"containers": [{"name": "a", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}]}),
                ),
                None,
                false,
                "default",
            ),
        ];
        for (what, mut p, sa, injected, account) in cases {
            inject(&mut p, sa, "abcde");
            let vols = p["spec"]["volumes"].as_array().cloned().unwrap_or_default();
            let has = vols.iter().any(|v| v["name"] == "kube-api-access-abcde");
            assert_eq!(has, injected, "{what}: {p}");
            assert_eq!(p["spec"]["serviceAccountName"], account, "{what}");
            assert_eq!(p["spec"]["serviceAccount"], account, "{what}");
            if injected {
                for key in ["containers", "initContainers"] {
                    for c in p["spec"][key].as_array().into_iter().flatten() {
                        assert!(
                            c["volumeMounts"].as_array().unwrap().iter().any(|m| m
                                == &json!({"name": "kube-api-access-abcde", "mountPath": MOUNT_PATH, "readOnly": true})),
                            "{what}: {c}"
                        );
                    }
                }
                let sources = &vols[0]["projected"]["sources"];
                assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
                assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
                assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
            }
        }
        let mut mirror = json!({"metadata": {"annotations": {MIRROR: "x"}}, "spec": {"containers": [{"name": "a"}]}});
        inject(&mut mirror, None, "abcde");
        assert!(mirror["spec"].get("volumes").is_none());
    }

    #[test]
    fn mirror_pods_may_not_reference() {
        let mirror =
            |spec: Value| json!({"metadata": {"annotations": {MIRROR: "h"}}, "spec": spec});
        let c = |extra: Value| {
            let mut c = json!({"name": "c", "image": "busybox"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"containers": [c]})
        };
        let sa = "a mirror pod may not reference service accounts";
        let secrets = "a mirror pod may not reference secrets";
        let token = "a mirror pod may not use ServiceAccountToken volume projections";
        let cases: Vec<(&str, Value, Option<&str>)> = vec![
            ("plain", c(json!({})), None),
            (
                "configMap and hostPath volumes",
                json!({"containers": [], "volumes": [
                {"name": "a", "configMap": {"name": "x"}}, {"name": "b", "hostPath": {"path": "/x"}}]}),
                None,
            ),
            (
                "service account",
                json!({"serviceAccountName": "default", "containers": []}),
                Some(sa),
            ),
            (
                "pull secret",
                json!({"imagePullSecrets": [{"name": "r"}], "containers": []}),
                Some(secrets),
            ),
            (
                "env secretKeyRef",
                c(
                    json!({"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
                ),
                Some(secrets),
            ),
            (
                "envFrom secretRef",
                c(json!({"envFrom": [{"secretRef": {"name": "s"}}]})),
                Some(secrets),
            ),
            (
                "secret volume",
                json!({"containers": [], "volumes": [{"name": "s", "secret": {"secretName": "s"}}]}),
                Some(secrets),
            ),
            (
                "projected secret",
                json!({"containers": [], "volumes": [{"name": "s", "projected": {"sources": [{"secret": {"name": "s"}}]}}]}),
                Some(secrets),
            ),
            (
                "csi secret",
                json!({"containers": [], "volumes": [{"name": "s", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "s"}}}]}),
                Some(secrets),
            ),
            (
                "token projection",
                json!({"containers": [], "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]}),
                Some(token),
            ),
        ];
        for (what, spec, want) in cases {
            assert_eq!(mirror_pod_error(&mirror(spec.clone())), want, "{what}");
            // No mirror pod: not this check's business.
            assert!(!is_mirror(&json!({"spec": spec})));
        }
    }

    #[test]
    fn pull_secrets_from_the_account() {
        let sa = json!([{"name": "regcred"}, {"bogus": 1}]);
        let cases = [
            (
                json!({"spec": {"containers": []}}),
                Some(json!([{"name": "regcred"}])),
            ),
            (
                json!({"spec": {"imagePullSecrets": [{"name": "own"}], "containers": []}}),
                Some(json!([{"name": "own"}])),
            ),
            (
                json!({"metadata": {"annotations": {MIRROR: "x"}}, "spec": {"containers": []}}),
                None,
            ),
        ];
        for (mut pod, want) in cases {
            add_pull_secrets(&mut pod, &sa);
            assert_eq!(pod["spec"].get("imagePullSecrets").cloned(), want, "{pod}");
        }
        let mut pod = json!({"spec": {"containers": []}});
        add_pull_secrets(&mut pod, &json!([]));
        assert!(pod["spec"].get("imagePullSecrets").is_none());
    }
}
