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

/// Admits `pod` in namespace `ns`, reading its ServiceAccount from `store`.
pub async fn admit(store: &Arc<dyn Store>, ns: &str, pod: &mut Value) {
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
