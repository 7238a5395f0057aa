//! PersistentVolumeClaims, PersistentVolumes and StorageClasses: access
//! modes, sizes, exactly one volume source, policies; what updates may
//! change (a bound claim may grow, a volume keeps its source, a class its
//! provisioner and parameters).

use serde_json::Value;

use super::{arr, at, normalized, same};
use crate::quantity::Quantity;
use crate::validation::{forbidden, invalid, is_qualified_name, not_supported, required, Cause};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// The volume sources a PersistentVolume may name (one of them).
const PV_SOURCES: &[&str] = &[
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "hostPath",
    "glusterfs",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flocker",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn quantity(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// A quantity that must parse and be above zero.
fn positive_quantity(v: &Value, path: &str, out: &mut Vec<Cause>) {
    match quantity(v) {
        None => out.push(invalid(
            path,
            v,
            "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
        )),
        Some(q) if q.milli <= 0 => out.push(invalid(path, v, "must be greater than zero")),
        Some(_) => {}
    }
}

fn access_modes(spec: &Value, path: &str, detail: &str, out: &mut Vec<Cause>) {
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        out.push(required(&format!("{path}.accessModes"), detail));
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            out.push(not_supported(
                &format!("{path}.accessModes"),
                m,
                ACCESS_MODES,
            ));
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        out.push(forbidden(
            &format!("{path}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn volume_mode(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str) {
        if !matches!(m, "Block" | "Filesystem") {
            out.push(not_supported(
                &format!("{path}.volumeMode"),
                &Value::from(m),
                &["Block", "Filesystem"],
            ));
        }
    }
}

/// ValidatePersistentVolumeClaimSpec at `path`.
pub(crate) fn pvc_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    access_modes(spec, path, "at least 1 access mode is required", out);
    let storage_path = format!("{path}.resources[storage]");
    match spec.pointer("/resources/requests/storage") {
        None | Some(Value::Null) => out.push(required(&storage_path, "")),
        Some(q) => positive_quantity(q, &storage_path, out),
    }
    volume_mode(spec, path, out);
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        super::label_selector(sel, &format!("{path}.selector"), out);
    }
}

/// ValidatePersistentVolumeClaimUpdate: only the size of a bound claim may
/// grow, and the volume name may be set once (by the binder).
pub(crate) fn pvc_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let strip = |spec: &Value, bound: bool| {
        let mut s = normalized(spec);
        if let Some(m) = s.as_object_mut() {
            if old
                .pointer("/spec/volumeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                m.remove("volumeName");
            }
            if bound {
                if let Some(r) = m
                    .get_mut("resources")
                    .and_then(|r| r.get_mut("requests"))
                    .and_then(Value::as_object_mut)
                {
                    r.remove("storage");
                }
            }
        }
        normalized(&s)
    };
    let bound = new.pointer("/status/phase").and_then(Value::as_str) == Some("Bound")
        || old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    if strip(at(new, "spec"), bound) != strip(at(old, "spec"), bound) {
        out.push(forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let size = |v: &Value| {
        v.pointer("/spec/resources/requests/storage")
            .and_then(quantity)
    };
    if let (Some(n), Some(o)) = (size(new), size(old)) {
        if n.milli < o.milli {
            out.push(forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        }
    }
}

pub(crate) fn pv_spec(spec: &Value, out: &mut Vec<Cause>) {
    access_modes(spec, "spec", "", out);
    let capacity = spec.get("capacity").and_then(Value::as_object);
    match capacity {
        None => out.push(required("spec.capacity", "")),
        Some(c) if c.is_empty() => out.push(required("spec.capacity", "")),
        Some(c) => {
            if !c.contains_key("storage") || c.len() > 1 {
                out.push(not_supported(
                    "spec.capacity",
                    at(spec, "capacity"),
                    &["storage"],
                ));
            }
            for (k, q) in c {
                positive_quantity(q, &format!("spec.capacity[{k}]"), out);
            }
        }
    }
    super::one_volume_source(spec, PV_SOURCES, "spec", out);
    if let Some(p) = spec.get("hostPath").and_then(|h| h.get("path")) {
        if p.as_str().is_none_or(str::is_empty) {
            out.push(required("spec.hostPath.path", ""));
        }
    }
    if let Some(p) = spec.get("local").and_then(|h| h.get("path")) {
        if p.as_str().is_none_or(str::is_empty) {
            out.push(required("spec.local.path", ""));
        }
    }
    if let Some(p) = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
    {
        if !matches!(p, "Delete" | "Recycle" | "Retain") {
            out.push(not_supported(
                "spec.persistentVolumeReclaimPolicy",
                &Value::from(p),
                &["Delete", "Recycle", "Retain"],
            ));
        }
    }
    volume_mode(spec, "spec", out);
}

/// ValidatePersistentVolumeUpdate: the source and volume mode stay, and a
/// node affinity once set.
pub(crate) fn pv_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let source = |v: &Value| -> Vec<(String, Value)> {
        PV_SOURCES
            .iter()
            .filter_map(|s| {
                v.pointer(&format!("/spec/{s}"))
                    .filter(|v| !v.is_null())
                    .map(|v| ((*s).to_owned(), normalized(v)))
            })
            .collect()
    };
    if source(new) != source(old) {
        out.push(forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    // Kubernetes names this field without its `spec.` prefix.
    super::immutable(new, old, "/spec/volumeMode", "volumeMode", out);
    if !old.pointer("/spec/nodeAffinity").is_none_or(Value::is_null) {
        super::immutable(new, old, "/spec/nodeAffinity", "nodeAffinity", out);
    }
}

pub(crate) fn storage_class(obj: &Value, out: &mut Vec<Cause>) {
    let provisioner = obj.get("provisioner").and_then(Value::as_str).unwrap_or("");
    if provisioner.is_empty() {
        out.push(required("provisioner", ""));
    } else {
        for e in is_qualified_name(&provisioner.to_lowercase()) {
            out.push(invalid("provisioner", &Value::from(provisioner), &e));
        }
    }
    if let Some(params) = obj.get("parameters").and_then(Value::as_object) {
        if params.len() > 512 {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: "parameters".into(),
                message: "Too long: must have at most 512 items".into(),
            });
        }
        let total: usize = params
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > 256 * 1024 {
            out.push(crate::validation::too_long("parameters", 256 * 1024));
        }
        for k in params.keys().filter(|k| k.is_empty()) {
            out.push(invalid(
                "parameters",
                &Value::from(k.as_str()),
                "field can not be empty.",
            ));
        }
    }
    if let Some(p) = obj.get("reclaimPolicy").and_then(Value::as_str) {
        if !matches!(p, "Delete" | "Retain") {
            out.push(not_supported(
                "reclaimPolicy",
                &Value::from(p),
                &["Delete", "Retain"],
            ));
        }
    }
    if let Some(m) = obj.get("volumeBindingMode").and_then(Value::as_str) {
        if !matches!(m, "Immediate" | "WaitForFirstConsumer") {
            out.push(not_supported(
                "volumeBindingMode",
                &Value::from(m),
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
    }
}

pub(crate) fn storage_class_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    if !same(new.get("parameters"), old.get("parameters")) {
        out.push(forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if new.get("provisioner") != old.get("provisioner") {
        out.push(forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if new.get("reclaimPolicy") != old.get("reclaimPolicy") {
        out.push(forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    super::immutable(new, old, "/volumeBindingMode", "volumeBindingMode", out);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, update, want};
    use serde_json::{json, Value};

    fn pvc(spec: Value) -> Value {
        json!({"spec": spec})
    }

    #[test]
    fn creates() {
        let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
            (
                "",
                "PersistentVolumeClaim",
                pvc(
                    json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}),
                ),
                vec![],
            ),
            (
                "",
                "PersistentVolumeClaim",
                pvc(json!({"resources": {}})),
                vec![
                    "spec.accessModes Required",
                    "spec.resources[storage] Required",
                ],
            ),
            (
                "",
                "PersistentVolumeClaim",
                pvc(
                    json!({"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0"}}}),
                ),
                vec![
                    "spec.accessModes NotSupported",
                    "spec.resources[storage] Invalid",
                ],
            ),
            (
                "",
                "PersistentVolume",
                pvc(
                    json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}),
                ),
                vec![],
            ),
            (
                "",
                "PersistentVolume",
                pvc(json!({})),
                vec![
                    "spec.accessModes Required",
                    "spec.capacity Required",
                    "spec Required",
                ],
            ),
            (
                "",
                "PersistentVolume",
                pvc(
                    json!({"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi", "cpu": "1"},
                "hostPath": {"path": "/d"}, "nfs": {"server": "s", "path": "/"}, "persistentVolumeReclaimPolicy": "Keep"}),
                ),
                vec![
                    "spec.capacity NotSupported",
                    "spec.nfs Forbidden",
                    "spec.persistentVolumeReclaimPolicy NotSupported",
                ],
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                json!({"provisioner": "rkube.io/hostpath", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}),
                vec![],
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                json!({"reclaimPolicy": "Recycle", "volumeBindingMode": "Later"}),
                vec![
                    "provisioner Required",
                    "reclaimPolicy NotSupported",
                    "volumeBindingMode NotSupported",
                ],
            ),
        ];
        for (group, kind, obj, w) in cases {
            assert_eq!(create(group, kind, &obj), want(&w), "{kind}: {obj}");
        }
    }

    #[test]
    fn updates() {
        let claim = |size: &str, volume: &str, phase: &str| {
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, "volumeName": volume},
                "status": {"phase": phase}})
        };
        let pv = |path: &str, mode: &str| {
            json!({"spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}, "hostPath": {"path": path},
                "volumeMode": mode, "claimRef": {"name": "c"}}})
        };
        let sc = |params: Value, provisioner: &str| json!({"provisioner": provisioner, "parameters": params, "reclaimPolicy": "Delete"});
        let cases: Vec<(&str, &str, Value, Value, Vec<&str>)> = vec![
            (
                "",
                "PersistentVolumeClaim",
                claim("1Gi", "pv1", "Pending"),
                claim("1Gi", "", "Pending"),
                vec![],
            ),
            (
                "",
                "PersistentVolumeClaim",
                claim("1Gi", "pv2", "Bound"),
                claim("1Gi", "pv1", "Bound"),
                vec!["spec Forbidden"],
            ),
            (
                "",
                "PersistentVolumeClaim",
                claim("2Gi", "pv1", "Bound"),
                claim("1Gi", "pv1", "Bound"),
                vec![],
            ),
            (
                "",
                "PersistentVolumeClaim",
                claim("2Gi", "", "Pending"),
                claim("1Gi", "", "Pending"),
                vec!["spec Forbidden"],
            ),
            (
                "",
                "PersistentVolumeClaim",
                claim("512Mi", "pv1", "Bound"),
                claim("1Gi", "pv1", "Bound"),
                vec!["spec.resources.requests.storage Forbidden"],
            ),
            (
                "",
                "PersistentVolume",
                pv("/d", "Filesystem"),
                pv("/d", "Filesystem"),
                vec![],
            ),
            (
                "",
                "PersistentVolume",
                pv("/e", "Block"),
                pv("/d", "Filesystem"),
                vec![
                    "spec.persistentvolumesource Forbidden",
                    "volumeMode Invalid",
                ],
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                sc(json!({"a": "1"}), "p"),
                sc(json!({"a": "1"}), "p"),
                vec![],
            ),
            (
                "storage.k8s.io",
                "StorageClass",
                sc(json!({"a": "2"}), "q"),
                sc(json!({"a": "1"}), "p"),
                vec!["parameters Forbidden", "provisioner Forbidden"],
            ),
        ];
        for (group, kind, new, old, w) in cases {
            assert_eq!(update(group, kind, &new, &old), want(&w), "{kind}: {new}");
        }
    }
}
