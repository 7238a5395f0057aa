//! Defaulting: the values Kubernetes fills in when a client leaves them
//! out, so that what clients read back (and controllers act on) is what a
//! Kubernetes cluster would show.

use api::registry::Resource;

mod pod;
use serde_json::{json, Map, Value};

/// Sets `obj[key] = value` unless present.
fn default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key.to_owned()).or_insert(value);
    }
}

fn object_at<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = Value::Object(Map::new());
    }
    &mut obj[key]
}

fn each_in(obj: &mut Value, key: &str, f: impl Fn(&mut Value)) {
    if let Some(items) = obj.get_mut(key).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(f);
    }
}

/// The label every Namespace carries with its own name (selectable, e.g.
/// by NetworkPolicy namespaceSelectors); set on create and update.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn apply(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Namespace") => {
            if let Some(name) = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
            {
                let meta = object_at(obj, "metadata");
                object_at(meta, "labels")[NAMESPACE_NAME_LABEL] = json!(name);
            }
        }
        ("", "Pod") => pod::pod(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let spec = object_at(obj, "spec");
            let names = object_at(spec, "names");
            if let Some(kind) = names
                .get("kind")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
            {
                default(names, "singular", json!(kind.to_lowercase()));
                default(names, "listKind", json!(format!("{kind}List")));
            }
            default(object_at(spec, "conversion"), "strategy", json!("None"));
        }
        ("", "PodTemplate") => pod::template(object_at(obj, "template")),
        ("", "ReplicationController") => {
            let spec = object_at(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "minReadySeconds", json!(0));
            pod::template(object_at(spec, "template"));
        }
        ("apps", "Deployment") => {
            let spec = object_at(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            let strategy = object_at(spec, "strategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = object_at(strategy, "rollingUpdate");
                default(ru, "maxUnavailable", json!("25%"));
                default(ru, "maxSurge", json!("25%"));
            }
            pod::template(object_at(spec, "template"));
        }
        ("apps", "ReplicaSet") => {
            let spec = object_at(obj, "spec");
            default(spec, "replicas", json!(1));
            pod::template(object_at(spec, "template"));
        }
        ("apps", "StatefulSet") => {
            let spec = object_at(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            let strategy = object_at(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                default(object_at(strategy, "rollingUpdate"), "partition", json!(0));
            }
            pod::template(object_at(spec, "template"));
        }
        ("apps", "DaemonSet") => {
            let spec = object_at(obj, "spec");
            default(spec, "revisionHistoryLimit", json!(10));
            let strategy = object_at(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = object_at(strategy, "rollingUpdate");
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
            pod::template(object_at(spec, "template"));
        }
        ("batch", "Job") => job_spec(object_at(obj, "spec")),
        ("batch", "CronJob") => {
            let spec = object_at(obj, "spec");
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            let jt = object_at(spec, "jobTemplate");
            job_spec(object_at(jt, "spec"));
        }
        ("", "Service") => service_spec(object_at(obj, "spec")),
        ("", "Secret") => {
            default(obj, "type", json!("Opaque"));
            merge_string_data(obj);
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            each_in(obj, "subjects", |s| {
                let group = match s.get("kind").and_then(Value::as_str) {
                    Some("User" | "Group") => "rbac.authorization.k8s.io",
                    _ => "",
                };
                default(s, "apiGroup", json!(group));
            });
        }
        ("storage.k8s.io", "StorageClass") => {
            default(obj, "reclaimPolicy", json!("Delete"));
            default(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            default(obj, "preemptionPolicy", json!("PreemptLowerPriority"))
        }
        ("networking.k8s.io", "NetworkPolicy") => network_policy(object_at(obj, "spec")),
        ("", "LimitRange") => each_in(object_at(obj, "spec"), "limits", limit_range_item),
        ("", "PersistentVolumeClaim") => {
            default(object_at(obj, "spec"), "volumeMode", json!("Filesystem"))
        }
        ("", "PersistentVolume") => {
            let spec = object_at(obj, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
        }
        _ => {}
    }
}

/// `stringData` is write-only: its entries go into `data` (base64), as
/// Kubernetes' conversion does before anything is stored.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(m) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(plain)) = m.remove("stringData") else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    let data = data.as_object_mut().unwrap();
    for (k, v) in plain {
        let text = v.as_str().unwrap_or("");
        data.insert(
            k,
            json!(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
}

fn network_policy(spec: &mut Value) {
    for dir in ["ingress", "egress"] {
        each_in(spec, dir, |rule| {
            each_in(rule, "ports", |p| default(p, "protocol", json!("TCP")))
        });
    }
    if spec.get("policyTypes").is_none_or(Value::is_null) {
        let mut types = vec![json!("Ingress")];
        if spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty())
        {
            types.push(json!("Egress"));
        }
        spec["policyTypes"] = json!(types);
    }
}

/// A Container limit's default is its max, its default request the default
/// (or else the min).
fn limit_range_item(item: &mut Value) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let copy_missing = |item: &mut Value, from: &str, to: &str| {
        let src = item.get(from).and_then(Value::as_object).cloned();
        if let Some(src) = src {
            let dst = object_at(item, to);
            for (k, v) in src {
                default(dst, &k, v);
            }
        }
    };
    copy_missing(item, "max", "default");
    copy_missing(item, "default", "defaultRequest");
    copy_missing(item, "min", "defaultRequest");
}

fn job_spec(spec: &mut Value) {
    let (completions, parallelism) = (
        spec.get("completions").cloned(),
        spec.get("parallelism").cloned(),
    );
    if completions.is_none() && parallelism.is_none() {
        default(spec, "completions", json!(1));
    }
    default(spec, "parallelism", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", Value::Null);
    if spec.get("manualSelector") == Some(&Value::Null) {
        spec.as_object_mut().unwrap().remove("manualSelector");
    }
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    pod::template(object_at(spec, "template"));
}

fn service_spec(spec: &mut Value) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    if ty != "ExternalName" {
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && spec.get("sessionAffinityConfig").is_none_or(Value::is_null)
    {
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
    }
    each_in(spec, "ports", |p| {
        default(p, "protocol", json!("TCP"));
        if p.get("targetPort").is_none() {
            if let Some(port) = p.get("port").cloned() {
                p["targetPort"] = port;
            }
        }
    });
}

/// The pod's QoS class from its containers' requests and limits
/// (Kubernetes' GetPodQOS: [`api::qos`]).
pub fn pod_qos_class(pod: &Value) -> &'static str {
    api::qos::pod_qos_class(pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let cases = [
            (
                json!({"spec": {"containers": [{"name": "a"}]}}),
                "BestEffort",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
                "Guaranteed",
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
                "Burstable",
            ),
            (
                json!({"spec": {"containers": [
                    {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "b"}
                ]}}),
                "Burstable",
            ),
        ];
        for (pod, want) in cases {
            assert_eq!(pod_qos_class(&pod), want, "{pod}");
        }
    }

    #[test]
    fn kind_defaults() {
        let cases = [
            (
                "secrets",
                json!({"stringData": {"a": "hi"}, "data": {"b": "Yg=="}}),
                json!({"type": "Opaque", "data": {"a": "aGk=", "b": "Yg=="}}),
            ),
            (
                "rolebindings",
                json!({"subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
                json!({"subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"},
                    {"kind": "ServiceAccount", "name": "s", "apiGroup": ""}]}),
            ),
            (
                "storageclasses",
                json!({"provisioner": "p"}),
                json!({"provisioner": "p", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
            ),
            (
                "networkpolicies",
                json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
                json!({"spec": {"egress": [{"ports": [{"port": 53, "protocol": "TCP"}]}], "policyTypes": ["Ingress", "Egress"]}}),
            ),
            (
                "limitranges",
                json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
                json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"},
                    "default": {"cpu": "2"}, "defaultRequest": {"cpu": "2", "memory": "1Mi"}}]}}),
            ),
        ];
        for (plural, mut obj, want) in cases {
            let res = api::registry::all()
                .iter()
                .find(|r| r.plural == plural)
                .unwrap_or_else(|| panic!("{plural}"));
            apply(res, &mut obj);
            assert_eq!(obj, want, "{plural}");
        }
    }

    #[test]
    fn namespaces_carry_their_name_label() {
        let res = api::registry::find("", "v1", "namespaces").unwrap();
        let cases = [
            (
                json!({"metadata": {"name": "team"}}),
                json!({NAMESPACE_NAME_LABEL: "team"}),
            ),
            (
                json!({"metadata": {"name": "team", "labels": {"a": "b", NAMESPACE_NAME_LABEL: "forged"}}}),
                json!({"a": "b", NAMESPACE_NAME_LABEL: "team"}),
            ),
        ];
        for (mut ns, labels) in cases {
            apply(res, &mut ns);
            assert_eq!(ns["metadata"]["labels"], labels);
        }
    }
}
