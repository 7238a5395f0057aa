//! Per-kind rules the generic REST storage consults: what is reset on
//! create, which kinds track generation, how deletion is graceful, and
//! validation. (Kubernetes keeps these in each registry's strategy.go.)

use api::registry::Resource;
use serde_json::{json, Value};

use crate::object;
use crate::status::Cause;

fn is(res: &Resource, group: &str, kind: &str) -> bool {
    res.group == group && res.kind == kind
}

pub fn has_status_subresource(res: &Resource) -> bool {
    res.subresources.iter().any(|s| s.name == "status")
}

/// Kinds whose metadata.generation counts spec changes.
pub fn has_generation(res: &Resource) -> bool {
    !matches!(
        (res.group, res.kind),
        (
            "",
            "Event"
                | "ConfigMap"
                | "Secret"
                | "Endpoints"
                | "Node"
                | "Namespace"
                | "ServiceAccount"
        ) | ("coordination.k8s.io", "Lease")
            | ("events.k8s.io", "Event")
            | ("discovery.k8s.io", "EndpointSlice")
    )
}

/// Deletion without a propagationPolicy orphans dependents for these kinds
/// (the legacy defaults Kubernetes keeps for extensions-era objects). For
/// apps/v1 and batch/v1 the default is background.
pub fn default_orphans(_res: &Resource) -> bool {
    false
}

/// The grace period of a deletion, if the object must wait for it: pods
/// bound to a node wait for the node to stop them.
pub fn graceful_deletion(res: &Resource, obj: &Value, requested: Option<i64>) -> Option<i64> {
    if !is(res, "", "Pod") {
        return None;
    }
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let default = obj
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    // Kubernetes turns a requested 0 into 1 unless the client forces it
    // (grace 0 from the node itself finishes the deletion).
    match requested.unwrap_or(default) {
        0 => None,
        g if g < 0 => None,
        g => Some(g),
    }
}

/// Whether a namespace still has `spec.finalizers` (the namespace
/// controller's `kubernetes` one): it stays Terminating until they are
/// removed through the finalize subresource.
pub fn spec_finalizers_pending(res: &Resource, obj: &Value) -> bool {
    is(res, "", "Namespace")
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// Whether a deleting object stays until its node finishes it.
pub fn waits_for_node(res: &Resource, obj: &Value) -> bool {
    is(res, "", "Pod")
        && obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
        && graceful_deletion(res, obj, None).is_some()
        && object::meta(obj)
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0
}

static TOLERATION_SECONDS: std::sync::OnceLock<(i64, i64)> = std::sync::OnceLock::new();

/// Sets the tolerationSeconds new pods get for the not-ready and
/// unreachable NoExecute taints (kube-apiserver's
/// --default-not-ready-toleration-seconds and
/// --default-unreachable-toleration-seconds; 300 each by default). Once
/// per process.
pub fn set_default_toleration_seconds(not_ready: i64, unreachable: i64) {
    let _ = TOLERATION_SECONDS.set((not_ready, unreachable));
}

/// The DefaultTolerationSeconds admission plugin: a pod that does not
/// tolerate the not-ready/unreachable NoExecute taints gets tolerations
/// for them, bounded in time, so it is evicted from a failed node.
fn default_toleration_seconds(pod: &mut Value) {
    let (not_ready, unreachable) = *TOLERATION_SECONDS.get().unwrap_or(&(300, 300));
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", not_ready),
        ("node.kubernetes.io/unreachable", unreachable),
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (k == key || (k.is_empty() && op == "Exists"))
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": seconds,
            }));
        }
    }
}

/// A Job without `manualSelector: true` selects its pods by its own uid,
/// and its template carries the labels that selector needs (Kubernetes'
/// generated selector).
fn generate_job_selector(job: &mut Value) {
    let uid = object::meta_str(job, "uid").unwrap_or_default().to_owned();
    let name = object::name(job).to_owned();
    if job.pointer("/spec/manualSelector") == Some(&json!(true)) || uid.is_empty() {
        return;
    }
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if !template.is_object() {
        return;
    }
    let meta = template
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !meta.is_object() {
        return;
    }
    let labels = meta
        .as_object_mut()
        .unwrap()
        .entry("labels")
        .or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            l.insert(k.into(), json!(v));
        }
    }
}

/// Resets what a client may not set on create.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
    match (res.group, res.kind) {
        ("", "Pod") => {
            let qos = crate::defaults::pod_qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            default_toleration_seconds(obj);
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            let spec = obj.get("spec").cloned().unwrap_or(json!({}));
            if spec.get("finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        ("", "PersistentVolume") => obj["status"] = json!({"phase": "Pending"}),
        ("", "PersistentVolumeClaim") => obj["status"] = json!({"phase": "Pending"}),
        ("", "Service") => obj["status"] = json!({"loadBalancer": {}}),
        ("", "Node") => {}
        ("batch", "Job") => {
            generate_job_selector(obj);
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd_status(obj),
        _ if has_status_subresource(res) => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    crate::defaults::apply(res, obj);
}

pub fn prepare_for_update(res: &Resource, new: &mut Value, old: &Value) {
    if is(res, "", "Service") {
        crate::alloc::drop_type_dependent_fields(old, new);
        // Allocated addresses stay when an update leaves them out (unless
        // the Service becomes an ExternalName, which has none).
        let external = new.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
        for field in ["clusterIP", "clusterIPs"] {
            if !external && new.pointer(&format!("/spec/{field}")).is_none() {
                if let Some(v) = old.pointer(&format!("/spec/{field}")).cloned() {
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.insert(field.to_owned(), v);
                    }
                }
            }
        }
    }
    if is(res, "apiextensions.k8s.io", "CustomResourceDefinition") {
        crd_status(new);
    }
    crate::defaults::apply(res, new);
}

/// What the CRD controllers of Kubernetes report once names are accepted
/// and the resource is served: this server serves a CRD as soon as it is
/// stored, so it is Established from the start.
fn crd_status(crd: &mut Value) {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v["storage"] == json!(true) && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    let now = object::now_rfc3339();
    let since = |t: &str| -> Value {
        crd.pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let conditions = json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
    ]);
    crd["status"] =
        json!({"acceptedNames": names, "conditions": conditions, "storedVersions": stored});
}

/// Validation of a pod written through `pods/resize`: the new pod as a
/// whole, and the resize (`api::spec_validation::validate_resize`) instead
/// of the pod update rules.
pub fn validate_resize(res: &Resource, obj: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = validate(res, obj, None);
    causes.extend(causes_of(api::spec_validation::validate_resize(obj, old)));
    causes
}

fn causes_of(causes: Vec<api::validation::Cause>) -> Vec<Cause> {
    causes
        .into_iter()
        .map(|c| Cause {
            reason: c.reason.to_owned(),
            message: c.message,
            field: c.field,
        })
        .collect()
}

/// Validation: metadata and spec for every kind, plus what an update may
/// not change (`api::spec_validation::validate_update`).
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let rule = api::validation::name_rule(res);
    let mut causes = api::validation::validate_object_meta(object::meta(obj), res.namespaced, rule);
    causes.extend(api::spec_validation::validate(res.group, res.kind, obj));
    if let Some(old) = old {
        causes.extend(api::spec_validation::validate_update(
            res.group, res.kind, obj, old,
        ));
    }
    causes_of(causes)
}
