//! Validation of the spec of each kind, with Kubernetes' field paths and
//! messages (pkg/apis/*/validation): what a create must satisfy
//! ([`validate`]) and what an update may change ([`validate_update`]).
//! One module per group of kinds; this one dispatches and holds the checks
//! they share (selectors, labels, ports, int-or-percent values, immutable
//! fields).

use serde_json::Value;

use crate::validation::{
    forbidden, invalid, is_qualified_name, is_valid_label_value, required, Cause,
};

mod apiextensions;
mod apps;
mod autoscaling;
mod batch;
mod config;
mod env;
mod ephemeral;
mod event;
mod networking;
mod pod;
mod policy;
mod probes;
mod rbac;
mod resize;
mod scheduling;
mod security;
mod service;
mod storage;
mod windows;

pub use pod::{is_quantity, VOLUME_SOURCES};
pub use resize::validate_resize;

/// Causes for an object of `group`/`kind` (metadata is validated elsewhere).
pub fn validate(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match (group, kind) {
        ("", "Pod") => {
            pod::pod_annotations(obj, &mut out);
            pod::pod_spec(spec, "spec", &mut out)
        }
        ("", "PodTemplate") => pod::template(at(obj, "template"), "template", None, &mut out),
        ("", "ReplicationController") => apps::replication_controller(spec, &mut out),
        ("apps", "Deployment") => apps::deployment(spec, &mut out),
        ("apps", "ReplicaSet") => apps::replica_set(spec, &mut out),
        ("apps", "StatefulSet") => apps::stateful_set(spec, &mut out),
        ("apps", "DaemonSet") => apps::daemon_set(spec, &mut out),
        ("batch", "Job") => batch::job_spec(spec, "spec", &mut out),
        ("batch", "CronJob") => batch::cron_job(obj, &mut out),
        ("", "Service") => service::service(spec, &mut out),
        ("", "ConfigMap") => config::config_map(obj, &mut out),
        ("", "Secret") => config::secret(obj, &mut out),
        ("", "PersistentVolumeClaim") => storage::pvc_spec(spec, "spec", &mut out),
        ("", "PersistentVolume") => storage::pv_spec(spec, &mut out),
        ("storage.k8s.io", "StorageClass") => storage::storage_class(obj, &mut out),
        ("networking.k8s.io", "Ingress") => networking::ingress(spec, &mut out),
        ("networking.k8s.io", "IngressClass") => networking::ingress_class(spec, &mut out),
        ("networking.k8s.io", "NetworkPolicy") => networking::network_policy(spec, &mut out),
        ("discovery.k8s.io", "EndpointSlice") => networking::endpoint_slice(obj, &mut out),
        ("rbac.authorization.k8s.io", "Role") => rbac::rules(obj, true, &mut out),
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac::rules(obj, false, &mut out),
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::binding(obj, true, &mut out),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::binding(obj, false, &mut out),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            policy::hpa(spec, &mut out);
            autoscaling::hpa_metrics_and_behavior(spec, &mut out)
        }
        ("policy", "PodDisruptionBudget") => policy::pdb(spec, &mut out),
        ("scheduling.k8s.io", "PriorityClass") => policy::priority_class(obj, &mut out),
        ("coordination.k8s.io", "Lease") => policy::lease(spec, &mut out),
        ("", "LimitRange") => policy::limit_range(spec, &mut out),
        ("", "ResourceQuota") => policy::resource_quota(spec, &mut out),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => apiextensions::crd(obj, &mut out),
        ("", "Node") => policy::node(spec, &mut out),
        ("", "Endpoints") => networking::endpoints(obj, &mut out),
        ("", "Event") => event::event(obj, &mut out),
        _ => {}
    }
    out
}

/// Causes for an update of `old` to `new`: the fields Kubernetes keeps
/// immutable, or lets change only in one direction. (`validate` runs on
/// `new` as well.)
pub fn validate_update(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match (group, kind) {
        ("", "Pod") => {
            pod::pod_update(new, old, &mut out);
            ephemeral::update(new, old, &mut out);
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(new, old, "/spec/selector", "spec.selector", &mut out)
        }
        ("apps", "StatefulSet") => apps::stateful_set_update(new, old, &mut out),
        ("batch", "Job") => batch::job_update(new, old, &mut out),
        ("", "Service") => service::service_update(new, old, &mut out),
        ("", "ConfigMap") => config::config_map_update(new, old, &mut out),
        ("", "Secret") => config::secret_update(new, old, &mut out),
        ("", "PersistentVolumeClaim") => storage::pvc_update(new, old, &mut out),
        ("", "PersistentVolume") => storage::pv_update(new, old, &mut out),
        ("storage.k8s.io", "StorageClass") => storage::storage_class_update(new, old, &mut out),
        ("networking.k8s.io", "IngressClass") => {
            immutable(new, old, "/spec/controller", "spec.controller", &mut out)
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            immutable(new, old, "/addressType", "addressType", &mut out)
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            rbac::binding_update(new, old, &mut out)
        }
        ("scheduling.k8s.io", "PriorityClass") => policy::priority_class_update(new, old, &mut out),
        ("", "Node") => policy::node_update(new, old, &mut out),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            apiextensions::crd_update(new, old, &mut out)
        }
        _ => {}
    }
    out
}

// ---- shared checks ----

pub(crate) fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// Exactly one of `sources` set in `obj` (a pod volume, a PV's spec):
/// each after the first is Forbidden, none is Required on `path`.
/// Returns how many are set.
pub(crate) fn one_volume_source(
    obj: &Value,
    sources: &[&str],
    path: &str,
    out: &mut Vec<crate::validation::Cause>,
) -> usize {
    let mut found = 0;
    for key in sources {
        if obj.get(*key).is_none_or(Value::is_null) {
            continue;
        }
        found += 1;
        if found > 1 {
            out.push(crate::validation::forbidden(
                &format!("{path}.{key}"),
                "may not specify more than 1 volume type",
            ));
        }
    }
    if found == 0 {
        out.push(crate::validation::required(
            path,
            "must specify a volume type",
        ));
    }
    found
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether a field is absent (or null, as Go reads it).
pub(crate) fn unset(v: Option<&Value>) -> bool {
    v.is_none_or(Value::is_null)
}

/// Kubernetes' ValidateNonnegativeField.
pub(crate) fn nonnegative(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = v.and_then(Value::as_i64).filter(|n| *n < 0) {
        out.push(invalid(
            path,
            &Value::from(n),
            "must be greater than or equal to 0",
        ));
    }
}

/// A port number that must be 1..65535 (0 allowed when optional).
pub(crate) fn port_number(
    v: Option<&Value>,
    path: &str,
    required_field: bool,
    out: &mut Vec<Cause>,
) {
    match v.and_then(Value::as_i64) {
        None if required_field => out.push(required(path, "")),
        None => {}
        Some(0) if !required_field => {}
        Some(p) if !(1..=65535).contains(&p) => out.push(invalid(
            path,
            &Value::from(p),
            "must be between 1 and 65535, inclusive",
        )),
        Some(_) => {}
    }
}

/// IsValidPortName: an IANA service name.
/// `protocol` of a port, when set: one of TCP, UDP, SCTP.
pub(crate) fn protocol(port: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(proto) = port.get("protocol").and_then(Value::as_str) {
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            out.push(crate::validation::not_supported(
                &format!("{path}.protocol"),
                &Value::from(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

pub(crate) fn port_name_errors(name: &str) -> Vec<String> {
    // Each rule is checked on its own, as IsValidPortName does.
    let mut errs = Vec::new();
    let b = name.as_bytes();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_owned());
    }
    if b.is_empty()
        || !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !b.iter().any(u8::is_ascii_lowercase) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// ValidatePortNumOrName: an int-or-string port is a number in 1..65535
/// or an IANA service name (an absent port is the number 0).
pub(crate) fn port_num_or_name(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    match v {
        Some(Value::String(s)) => {
            for e in port_name_errors(s) {
                out.push(invalid(path, &Value::from(s.as_str()), &e));
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&n) {
                out.push(invalid(
                    path,
                    &Value::from(n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
    }
}

/// ValidateLabelName: a label key is a qualified name.
pub(crate) fn label_name(key: &str, path: &str, out: &mut Vec<Cause>) {
    for e in is_qualified_name(key) {
        out.push(invalid(path, &Value::from(key), &e));
    }
}

/// IsValidIP (sloppy parsing as Go's netutils does: leading zeros allowed
/// in IPv4 octets).
pub(crate) fn ip_address(v: &Value, path: &str, out: &mut Vec<Cause>) {
    let s = v.as_str().unwrap_or("");
    if !is_ip_sloppy(s) {
        out.push(invalid(
            path,
            &Value::from(s),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
}

fn is_ip_sloppy(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) && {
                p.parse::<u16>().is_ok_and(|n| n <= 255)
            }
        })
}

/// Which of `supported` a string field holds: NotSupported when set to
/// anything else (an absent field is not checked).
pub(crate) fn one_of(v: &Value, key: &str, path: &str, supported: &[&str], out: &mut Vec<Cause>) {
    if let Some(s) = v.get(key).and_then(Value::as_str) {
        if !supported.contains(&s) {
            out.push(crate::validation::not_supported(
                &format!("{path}.{key}"),
                &Value::from(s),
                supported,
            ));
        }
    }
}

/// ValidateLabels: keys are qualified names, values label values.
pub(crate) fn labels(map: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(m) = map.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for e in is_qualified_name(k) {
            out.push(invalid(path, &Value::from(k.as_str()), &e));
        }
        for e in is_valid_label_value(v.as_str().unwrap_or("")) {
            out.push(invalid(path, v, &e));
        }
    }
}

/// ValidateLabelSelector.
pub(crate) fn label_selector(sel: &Value, path: &str, out: &mut Vec<Cause>) {
    if sel.is_null() {
        return;
    }
    for (i, r) in arr(sel, "matchExpressions").iter().enumerate() {
        let rp = format!("{path}.matchExpressions[{i}]");
        let op = str_of(r, "operator");
        let values = arr(r, "values");
        match op {
            "In" | "NotIn" if values.is_empty() => out.push(required(
                &format!("{rp}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(forbidden(
                &format!("{rp}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => out.push(invalid(
                &format!("{rp}.operator"),
                &Value::from(op),
                "not a valid selector operator",
            )),
        }
        label_name(str_of(r, "key"), &format!("{rp}.key"), out);
        for (j, v) in values.iter().enumerate() {
            for e in is_valid_label_value(v.as_str().unwrap_or("")) {
                out.push(invalid(&format!("{rp}.values[{j}]"), v, &e));
            }
        }
    }
    labels(sel.get("matchLabels"), &format!("{path}.matchLabels"), out);
}

/// The number an int-or-percent holds (`"25%"` is 25).
pub(crate) fn int_or_percent(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
}

/// ValidatePositiveIntOrPercent (plus IsNotMoreThan100Percent when
/// `max_100`).
pub(crate) fn positive_int_or_percent(
    v: Option<&Value>,
    path: &str,
    max_100: bool,
    out: &mut Vec<Cause>,
) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return;
    };
    match v {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                out.push(invalid(path, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"));
                return;
            }
        }
        Value::Number(_) => nonnegative(Some(v), path, out),
        _ => {}
    }
    if max_100 && v.is_string() && int_or_percent(v).is_some_and(|n| n > 100) {
        out.push(invalid(path, v, "must not be greater than 100%"));
    }
}

/// Removes what Go's semantic equality does not tell apart from an unset
/// field: nulls, empty lists, empty maps.
pub(crate) fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

pub(crate) fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    normalized(a.unwrap_or(&Value::Null)) == normalized(b.unwrap_or(&Value::Null))
}

/// ValidateImmutableField: `field: Invalid value: NEW: field is immutable`.
pub(crate) fn immutable(
    new: &Value,
    old: &Value,
    pointer: &str,
    field: &str,
    out: &mut Vec<Cause>,
) {
    let (n, o) = (new.pointer(pointer), old.pointer(pointer));
    if !same(n, o) {
        out.push(invalid(
            field,
            n.unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

/// Test helpers: the causes of a create or update as (field, reason)
/// pairs, and as `field: message` lines.
#[cfg(test)]
pub(crate) mod testing {
    use serde_json::Value;

    pub fn create(group: &str, kind: &str, obj: &Value) -> Vec<(String, &'static str)> {
        super::validate(group, kind, obj)
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect()
    }

    pub fn update(
        group: &str,
        kind: &str,
        new: &Value,
        old: &Value,
    ) -> Vec<(String, &'static str)> {
        super::validate_update(group, kind, new, old)
            .into_iter()
            .map(|c| (c.field, c.reason))
            .collect()
    }

    pub fn messages(causes: Vec<crate::validation::Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    /// `(field, reason)` pairs from `"field Reason"` shorthand, where
    /// Reason is one of Invalid, Required, NotSupported, Forbidden,
    /// Duplicate, NotFound, TooLong.
    pub fn want(items: &[&str]) -> Vec<(String, &'static str)> {
        items
            .iter()
            .map(|s| {
                let (field, reason) = s.rsplit_once(' ').unwrap();
                let reason = match reason {
                    "Invalid" => "FieldValueInvalid",
                    "Required" => "FieldValueRequired",
                    "NotSupported" => "FieldValueNotSupported",
                    "Forbidden" => "FieldValueForbidden",
                    "Duplicate" => "FieldValueDuplicate",
                    "NotFound" => "FieldValueNotFound",
                    "TooLong" => "FieldValueTooLong",
                    other => panic!("unknown reason {other}"),
                };
                (field.to_owned(), reason)
            })
            .collect()
    }
}
