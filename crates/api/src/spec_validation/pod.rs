//! Pods and pod templates: containers (names, images, ports, quantities,
//! volume mounts), volumes, policies; and what a pod update may change
//! (ValidatePodUpdate).

use std::collections::HashSet;

use serde_json::Value;

use super::{arr, at, nonnegative, normalized, port_number, str_of};
use crate::validation::{
    forbidden, invalid, is_dns1123_label, is_dns1123_subdomain, not_supported, required, Cause,
};

/// A pod template; `selector` (when given) must select its labels.
pub(crate) fn template(t: &Value, path: &str, selector: Option<&Value>, out: &mut Vec<Cause>) {
    if t.is_null() || t.as_object().is_some_and(|m| m.is_empty()) {
        out.push(required(&format!("{path}.spec.containers"), ""));
        return;
    }
    if let Some(sel) = selector {
        if let Ok(s) = crate::selector::from_label_selector_json(sel) {
            let labels = t.pointer("/metadata/labels");
            if !s.is_empty() && !s.matches_value(labels) {
                let shown = labels.cloned().unwrap_or(Value::Object(Default::default()));
                out.push(invalid(
                    &format!("{path}.metadata.labels"),
                    &shown,
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    super::labels(
        t.pointer("/metadata/labels"),
        &format!("{path}.metadata.labels"),
        out,
    );
    pod_spec(at(t, "spec"), &format!("{path}.spec"), out);
}

pub(crate) fn pod_spec(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        out.push(required(&format!("{path}.containers"), ""));
    }
    let volumes = volumes(spec, path, out);
    let mut names = HashSet::new();
    let grace = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let host_users = super::security::host_users(spec);
    for (key, list) in [
        ("initContainers", arr(spec, "initContainers")),
        ("containers", containers),
    ] {
        let init = key == "initContainers";
        for (i, c) in list.iter().enumerate() {
            let cp = format!("{path}.{key}[{i}]");
            container(c, &cp, &mut names, &volumes, out);
            super::security::container(c, &cp, host_users, out);
            super::probes::container(c, &cp, init, grace, out);
            container_restart_policy(c, &cp, init, out);
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str) {
        if !matches!(p, "Always" | "OnFailure" | "Never") {
            out.push(not_supported(
                &format!("{path}.restartPolicy"),
                &Value::from(p),
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
    if let Some(p) = spec.get("dnsPolicy").and_then(Value::as_str) {
        if !matches!(
            p,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        ) {
            out.push(not_supported(
                &format!("{path}.dnsPolicy"),
                &Value::from(p),
                &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
            ));
        }
    }
    if let Some(s) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if s <= 0 {
            out.push(invalid(
                &format!("{path}.activeDeadlineSeconds"),
                &Value::from(s),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    nonnegative(
        spec.get("terminationGracePeriodSeconds"),
        &format!("{path}.terminationGracePeriodSeconds"),
        out,
    );
    super::labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
        out,
    );
    super::security::pod(spec, path, out);
    super::windows::host_process_pod(spec, path, out);
    super::scheduling::affinity(spec, path, out);
    dns_config(spec, path, out);
    gates(spec, path, out);
    super::scheduling::topology_spread(spec, path, out);
    names_and_hosts(spec, path, out);
    super::scheduling::tolerations(spec, path, out);
    for (i, a) in arr(spec, "hostAliases").iter().enumerate() {
        let ap = format!("{path}.hostAliases[{i}]");
        super::ip_address(at(a, "ip"), &format!("{ap}.ip"), out);
        for (j, h) in arr(a, "hostnames").iter().enumerate() {
            for e in is_dns1123_subdomain(h.as_str().unwrap_or("")) {
                out.push(invalid(&format!("{ap}.hostnames[{j}]"), h, &e));
            }
        }
    }
    if let Some(p) = spec.get("priorityClassName").and_then(Value::as_str) {
        subdomain(p, &format!("{path}.priorityClassName"), out);
    }
    if let Some(p) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if !matches!(p, "PreemptLowerPriority" | "Never") {
            out.push(not_supported(
                &format!("{path}.preemptionPolicy"),
                &Value::from(p),
                &["PreemptLowerPriority", "Never"],
            ));
        }
    }
    if let Some(os) = spec.get("os").filter(|o| o.is_object()) {
        match str_of(os, "name") {
            "" => out.push(required(&format!("{path}.os.name"), "cannot be empty")),
            "linux" | "windows" => {}
            n => out.push(not_supported(
                &format!("{path}.os"),
                &Value::from(n),
                &["linux", "windows"],
            )),
        }
    }
}

fn subdomain(v: &str, path: &str, out: &mut Vec<Cause>) {
    if !v.is_empty() {
        for e in is_dns1123_subdomain(v) {
            out.push(invalid(path, &Value::from(v), &e));
        }
    }
}

/// serviceAccountName, nodeName (DNS subdomains), hostname and subdomain
/// (DNS labels).
fn names_and_hosts(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    for key in ["serviceAccountName", "nodeName"] {
        subdomain(str_of(spec, key), &format!("{path}.{key}"), out);
    }
    for key in ["hostname", "subdomain"] {
        let v = str_of(spec, key);
        if !v.is_empty() {
            for e in is_dns1123_label(v) {
                out.push(invalid(&format!("{path}.{key}"), &Value::from(v), &e));
            }
        }
    }
}

/// readinessGates (qualified condition types) and schedulingGates
/// (qualified names, no duplicates).
fn gates(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    for (i, g) in arr(spec, "readinessGates").iter().enumerate() {
        super::label_name(
            str_of(g, "conditionType"),
            &format!("{path}.readinessGates[{i}].conditionType"),
            out,
        );
    }
    let mut seen = HashSet::new();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        let gp = format!("{path}.schedulingGates[{i}]");
        let name = str_of(g, "name");
        super::label_name(name, &gp, out);
        if !seen.insert(name) {
            out.push(duplicate(&gp, name));
        }
    }
}

const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_CHARS: usize = 2048;

/// validatePodDNSConfig (with RelaxedDNSSearchValidation, on by default
/// since v1.33: search domains may hold `_` and be `.`).
fn dns_config(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let cp = format!("{path}.dnsConfig");
    let config = spec.get("dnsConfig").filter(|c| !c.is_null());
    let nameservers = config.map(|c| arr(c, "nameservers")).unwrap_or(&[]);
    if str_of(spec, "dnsPolicy") == "None" {
        let Some(_) = config else {
            out.push(required(
                &cp,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        };
        if nameservers.is_empty() {
            out.push(required(
                &format!("{cp}.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(config) = config else {
        return;
    };
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        out.push(invalid(
            &format!("{cp}.nameservers"),
            at(config, "nameservers"),
            &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        super::ip_address(ns, &format!("{cp}.nameservers[{i}]"), out);
    }
    let searches: Vec<&str> = arr(config, "searches")
        .iter()
        .map(|s| s.as_str().unwrap_or(""))
        .collect();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        out.push(invalid(
            &format!("{cp}.searches"),
            at(config, "searches"),
            &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        ));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_CHARS {
        out.push(invalid(
            &format!("{cp}.searches"),
            at(config, "searches"),
            &format!(
                "must not have more than {MAX_DNS_SEARCH_CHARS} characters (including spaces) in the search list"
            ),
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        if *s == "." {
            continue;
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        for e in is_dns1123_subdomain_with_underscore(trimmed) {
            out.push(invalid(
                &format!("{cp}.searches[{i}]"),
                &Value::from(trimmed),
                &e,
            ));
        }
    }
    for (i, o) in arr(config, "options").iter().enumerate() {
        if str_of(o, "name").is_empty() {
            out.push(required(&format!("{cp}.options[{i}]"), "must not be empty"));
        }
    }
}

/// IsDNS1123SubdomainWithUnderscore.
fn is_dns1123_subdomain_with_underscore(s: &str) -> Vec<String> {
    let label_ok = |l: &str| {
        let l = l.strip_prefix('_').unwrap_or(l);
        let b = l.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty()
            && alnum(&b[0])
            && alnum(&b[b.len() - 1])
            && b.iter().all(|c| alnum(c) || *c == b'-' || *c == b'_')
    };
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_owned());
    }
    if !s.split('.').all(label_ok) {
        errs.push(crate::validation::regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character",
            "_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    errs
}

/// A container's own restartPolicy: only `Always`, and only for init
/// containers (sidecars).
fn container_restart_policy(c: &Value, cp: &str, init: bool, out: &mut Vec<Cause>) {
    let Some(p) = c.get("restartPolicy").filter(|p| !p.is_null()) else {
        return;
    };
    let rp = format!("{cp}.restartPolicy");
    if !init {
        out.push(forbidden(&rp, "may not be set for non-init containers"));
    } else if p.as_str() != Some("Always") {
        out.push(not_supported(&rp, p, &["Always"]));
    }
}

/// Volume names (required, DNS labels, unique); returns them.
fn volumes(spec: &Value, path: &str, out: &mut Vec<Cause>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let vp = format!("{path}.volumes[{i}].name");
        let name = str_of(v, "name");
        if name.is_empty() {
            out.push(required(&vp, ""));
            continue;
        }
        for e in is_dns1123_label(name) {
            out.push(invalid(&vp, &Value::from(name), &e));
        }
        if !names.insert(name.to_owned()) {
            out.push(duplicate(&vp, name));
        }
        volume_source(v, &format!("{path}.volumes[{i}]"), out);
    }
    names
}

/// Volume sources (VolumeSource's fields), in the order Kubernetes
/// looks for them.
pub const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "downwardAPI",
    "fc",
    "azureFile",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "configMap",
    "storageos",
    "csi",
    "ephemeral",
    "image",
    "projected",
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

/// One volume's source: exactly one, with the fields its kind requires
/// (the sources rkube's agent mounts are checked in depth).
fn volume_source(v: &Value, vp: &str, out: &mut Vec<Cause>) {
    if super::one_volume_source(v, VOLUME_SOURCES, vp, out) == 0 {
        return;
    }
    let need = |src: &str, field: &str, out: &mut Vec<Cause>| {
        if let Some(x) = v.get(src).filter(|x| x.is_object()) {
            if str_of(x, field).is_empty() {
                out.push(required(&format!("{vp}.{src}.{field}"), ""));
            }
        }
    };
    need("hostPath", "path", out);
    need("secret", "secretName", out);
    need("configMap", "name", out);
    need("persistentVolumeClaim", "claimName", out);
    if let Some(t) = v.get("hostPath").and_then(|h| h.get("type")) {
        if !HOST_PATH_TYPES.contains(&t.as_str().unwrap_or("?")) {
            out.push(not_supported(
                &format!("{vp}.hostPath.type"),
                t,
                &HOST_PATH_TYPES[1..],
            ));
        }
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        let Some(x) = v.get(src) else { continue };
        if let Some(m) = x.get("defaultMode") {
            file_mode(m, &format!("{vp}.{src}.defaultMode"), out);
        }
        for (j, item) in arr(x, "items").iter().enumerate() {
            if src == "downwardAPI" {
                // Kubernetes reports a downwardAPI file's errors at the
                // volume source, without the item's index.
                downward_api_file(item, &format!("{vp}.downwardAPI"), out);
                continue;
            }
            let ip = format!("{vp}.{src}.items[{j}]");
            if str_of(item, "key").is_empty() {
                out.push(required(&format!("{ip}.key"), ""));
            }
            relative_path(item.get("path"), &format!("{ip}.path"), out);
            if let Some(m) = item.get("mode") {
                file_mode(m, &format!("{ip}.mode"), out);
            }
        }
    }
    if let Some(p) = v.get("projected").filter(|p| p.is_object()) {
        projected_sources(p, &format!("{vp}.projected"), out);
    }
    if let Some(nfs) = v.get("nfs").filter(|n| n.is_object()) {
        let np = format!("{vp}.nfs");
        if str_of(nfs, "server").is_empty() {
            out.push(required(&format!("{np}.server"), ""));
        }
        let path = str_of(nfs, "path");
        if path.is_empty() {
            out.push(required(&format!("{np}.path"), ""));
        }
        if !path.starts_with('/') {
            out.push(invalid(
                &format!("{np}.path"),
                &Value::from(path),
                "must be an absolute path",
            ));
        }
    }
}

/// A downwardAPI file (of a volume or a projection) at `fp`: its path,
/// its field or resource, its mode.
fn downward_api_file(item: &Value, fp: &str, out: &mut Vec<Cause>) {
    relative_path(item.get("path"), &format!("{fp}.path"), out);
    super::env::downward_api_file(item, fp, out);
    if let Some(m) = item.get("mode") {
        file_mode(m, &format!("{fp}.mode"), out);
    }
}

/// A projected volume's sources (validateProjectionSources): one kind
/// each, the token's lifetime and path, no path twice.
fn projected_sources(p: &Value, pp: &str, out: &mut Vec<Cause>) {
    let mut paths = HashSet::new();
    let mut seen = |path: &str, name: &Value, out: &mut Vec<Cause>| {
        if !path.is_empty() && !paths.insert(path.to_owned()) {
            out.push(invalid(pp, name, "conflicting duplicate paths"));
        }
    };
    for (k, s) in arr(p, "sources").iter().enumerate() {
        let sp = format!("{pp}.sources[{k}]");
        let mut kinds = 0;
        for src in ["secret", "configMap"] {
            let Some(x) = s.get(src).filter(|x| !x.is_null()) else {
                continue;
            };
            kinds += 1;
            if str_of(x, "name").is_empty() {
                out.push(required(&format!("{sp}.{src}.name"), ""));
            }
            for (j, item) in arr(x, "items").iter().enumerate() {
                let ip = format!("{sp}.{src}.items[{j}]");
                if str_of(item, "key").is_empty() {
                    out.push(required(&format!("{ip}.key"), ""));
                }
                relative_path(item.get("path"), &format!("{ip}.path"), out);
                if let Some(m) = item.get("mode") {
                    file_mode(m, &format!("{ip}.mode"), out);
                }
                seen(str_of(item, "path"), at(x, "name"), out);
            }
        }
        if let Some(d) = s.get("downwardAPI").filter(|x| !x.is_null()) {
            kinds += 1;
            for item in arr(d, "items") {
                downward_api_file(item, &format!("{sp}.downwardAPI"), out);
                let path = str_of(item, "path");
                seen(path, &Value::from(path), out);
            }
        }
        if let Some(t) = s.get("serviceAccountToken").filter(|x| !x.is_null()) {
            kinds += 1;
            let tp = format!("{sp}.serviceAccountToken.expirationSeconds");
            if let Some(e) = t.get("expirationSeconds").and_then(Value::as_i64) {
                if e < 600 {
                    out.push(invalid(
                        &tp,
                        &Value::from(e),
                        "may not specify a duration less than 10 minutes",
                    ));
                }
                if e > 1 << 32 {
                    out.push(invalid(
                        &tp,
                        &Value::from(e),
                        "may not specify a duration larger than 2^32 seconds",
                    ));
                }
            }
            // Kubernetes names the projection's path here, not the token's.
            if str_of(t, "path").is_empty() {
                out.push(required(&format!("{pp}.path"), ""));
            }
        }
        if s.get("clusterTrustBundle").is_some_and(|x| !x.is_null()) {
            kinds += 1;
        }
        if kinds > 1 {
            out.push(crate::validation::forbidden(
                &sp,
                "may not specify more than 1 volume type",
            ));
        }
    }
}

/// A file mode: 0 to 0777.
fn file_mode(m: &Value, field: &str, out: &mut Vec<Cause>) {
    if !m.as_i64().is_some_and(|n| (0..=0o777).contains(&n)) {
        out.push(invalid(
            field,
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        ));
    }
}

/// A path inside a volume: required, relative, without `..`.
fn relative_path(p: Option<&Value>, field: &str, out: &mut Vec<Cause>) {
    let s = p.and_then(Value::as_str).unwrap_or("");
    if s.is_empty() {
        out.push(required(field, ""));
        return;
    }
    if s.starts_with('/') {
        out.push(invalid(field, &Value::from(s), "must be a relative path"));
    }
    if s.split('/').any(|part| part == "..") {
        out.push(invalid(field, &Value::from(s), "must not contain '..'"));
    }
}

fn duplicate(field: &str, value: &str) -> Cause {
    crate::validation::duplicate(field, &Value::from(value))
}

fn container(
    c: &Value,
    cp: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
    out: &mut Vec<Cause>,
) {
    let name = str_of(c, "name");
    if name.is_empty() {
        out.push(required(&format!("{cp}.name"), ""));
    } else {
        for e in is_dns1123_label(name) {
            out.push(invalid(&format!("{cp}.name"), &Value::from(name), &e));
        }
        if !names.insert(name.to_owned()) {
            out.push(duplicate(&format!("{cp}.name"), name));
        }
    }
    if c.get("image")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        out.push(required(&format!("{cp}.image"), ""));
    }
    if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str) {
        if !matches!(p, "Always" | "IfNotPresent" | "Never") {
            out.push(not_supported(
                &format!("{cp}.imagePullPolicy"),
                &Value::from(p),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
    }
    for (j, p) in arr(c, "ports").iter().enumerate() {
        let pp = format!("{cp}.ports[{j}]");
        port_number(
            p.get("containerPort"),
            &format!("{pp}.containerPort"),
            true,
            out,
        );
        port_number(p.get("hostPort"), &format!("{pp}.hostPort"), false, out);
        super::protocol(p, &pp, out);
    }
    for set in ["requests", "limits"] {
        if let Some(m) = c
            .pointer(&format!("/resources/{set}"))
            .and_then(Value::as_object)
        {
            for (res, q) in m {
                if !is_quantity(q) {
                    out.push(invalid(
                        &format!("{cp}.resources.{set}[{res}]"),
                        q,
                        "must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
                    ));
                } else if quantity(q).is_some_and(|q| q.milli < 0) {
                    out.push(invalid(
                        &format!("{cp}.resources.{set}[{res}]"),
                        q,
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }
    // A request above its limit.
    let (req, lim) = (
        c.pointer("/resources/requests").and_then(Value::as_object),
        c.pointer("/resources/limits").and_then(Value::as_object),
    );
    if let (Some(req), Some(lim)) = (req, lim) {
        for (res, r) in req {
            if let (Some(rq), Some(lq)) = (quantity(r), lim.get(res).and_then(quantity)) {
                if rq.milli > lq.milli {
                    out.push(invalid(
                        &format!("{cp}.resources.requests"),
                        r,
                        &format!(
                            "must be less than or equal to {res} limit of {}",
                            quantity_str(&lim[res])
                        ),
                    ));
                }
            }
        }
    }
    for (j, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = format!("{cp}.volumeMounts[{j}]");
        let vname = str_of(m, "name");
        if vname.is_empty() {
            out.push(required(&format!("{mp}.name"), ""));
        } else if !volumes.contains(vname) {
            out.push(Cause {
                reason: "FieldValueNotFound",
                field: format!("{mp}.name"),
                message: format!("Not found: {vname:?}"),
            });
        }
        if str_of(m, "mountPath").is_empty() {
            out.push(required(&format!("{mp}.mountPath"), ""));
        }
    }
    super::env::container_env(c, cp, out);
}

fn quantity(v: &Value) -> Option<crate::quantity::Quantity> {
    match v {
        Value::String(s) => crate::quantity::Quantity::parse(s),
        Value::Number(n) => crate::quantity::Quantity::parse(&n.to_string()),
        _ => None,
    }
}

fn quantity_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Kubernetes' quantity syntax: a number with an optional SI/binary suffix
/// or exponent (`100m`, `1.5Gi`, `2e3`).
pub fn is_quantity(v: &Value) -> bool {
    let s = match v {
        Value::String(s) => s.as_str(),
        Value::Number(_) => return true,
        _ => return false,
    };
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        e if e.starts_with(['e', 'E']) => {
            let rest = e[1..].strip_prefix(['+', '-']).unwrap_or(&e[1..]);
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit())
        }
        _ => false,
    }
}

/// Kubernetes' message for a pod spec change outside what may change.
pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// ValidatePodUpdate: images, activeDeadlineSeconds (set, or lowered),
/// added tolerations (and new tolerationSeconds), a negative grace period
/// raised to 1, removed scheduling gates. Everything else in the spec is
/// fixed once the pod exists.
const MIRROR: &str = "kubernetes.io/config.mirror";

/// Kubernetes' ValidatePodSpecificAnnotations for the mirror pod
/// annotation: a mirror pod is bound to its node from the start.
pub(crate) fn pod_annotations(pod: &Value, out: &mut Vec<Cause>) {
    if let Some(v) = pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR))
    {
        if str_of(at(pod, "spec"), "nodeName").is_empty() {
            out.push(invalid(
                &format!("metadata.annotations[{MIRROR}]"),
                v,
                "must set spec.nodeName if mirror pod annotation is set",
            ));
        }
    }
}

/// The mirror pod annotation can be neither added, changed nor removed
/// by an update (ValidatePodSpecificAnnotationUpdates).
fn mirror_annotation_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let get = |p: &Value| {
        p.pointer("/metadata/annotations")
            .and_then(|a| a.get(MIRROR))
            .cloned()
    };
    let field = format!("metadata.annotations[{MIRROR}]");
    match (get(new), get(old)) {
        (Some(n), Some(o)) if n == o => {}
        (None, None) => {}
        (_, Some(_)) => out.push(forbidden(
            &field,
            "may not remove or update mirror pod annotation",
        )),
        (Some(_), None) => out.push(forbidden(&field, "may not add mirror pod annotation")),
    }
}

pub(crate) fn pod_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    mirror_annotation_update(new, old, out);
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    for key in ["containers", "initContainers"] {
        let (nc, oc) = (arr(ns, key), arr(os, key));
        if nc.len() != oc.len() {
            out.push(forbidden(
                &format!("spec.{key}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in nc.iter().enumerate() {
            let image = str_of(c, "image");
            if image.is_empty() {
                out.push(required(&format!("spec.{key}[{i}].image"), ""));
            } else if image.trim() != image {
                out.push(invalid(
                    &format!("spec.{key}[{i}].image"),
                    &Value::from(image),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    // Existing tolerations stay, but for their tolerationSeconds.
    let without_seconds = |t: &Value| {
        let mut t = normalized(t);
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tolerations: Vec<Value> = arr(ns, "tolerations").iter().map(without_seconds).collect();
    if arr(os, "tolerations")
        .iter()
        .any(|t| !new_tolerations.contains(&without_seconds(t)))
    {
        out.push(forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    if normalized(ns) == normalized(os) {
        return;
    }
    match (
        ns.get("activeDeadlineSeconds").and_then(Value::as_i64),
        os.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (Some(n), _) if !(0..=i32::MAX as i64).contains(&n) => {
            out.push(invalid(
                "spec.activeDeadlineSeconds",
                &Value::from(n),
                "must be between 0 and 2147483647, inclusive",
            ));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            out.push(invalid(
                "spec.activeDeadlineSeconds",
                &Value::from(n),
                "must be less than or equal to previous value",
            ));
            return;
        }
        (None, Some(_)) => out.push(invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    // The new spec with what may change taken from the old one must be the
    // old spec.
    let mut munged = ns.clone();
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if let Some(list) = m.get_mut(key).and_then(Value::as_array_mut) {
            for (c, o) in list.iter_mut().zip(arr(os, key)) {
                if let Some(c) = c.as_object_mut() {
                    match o.get("image") {
                        Some(i) => c.insert("image".into(), i.clone()),
                        None => c.remove("image"),
                    };
                }
            }
        }
    }
    let mut restore = |key: &str| match os.get(key) {
        Some(v) => {
            m.insert(key.to_owned(), v.clone());
        }
        None => {
            m.remove(key);
        }
    };
    restore("activeDeadlineSeconds");
    restore("tolerations");
    // Ephemeral containers change through their own subresource, checked
    // by `ephemeral::update`.
    restore("ephemeralContainers");
    let grace = |s: &Value| {
        s.get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
    };
    if grace(os).is_some_and(|g| g < 0) && grace(ns) == Some(1) {
        restore("terminationGracePeriodSeconds");
    }
    let gates = |s: &Value| arr(s, "schedulingGates").to_vec();
    if gates(ns).iter().all(|g| gates(os).contains(g)) {
        restore("schedulingGates");
    }
    if normalized(&munged) != normalized(os) {
        out.push(forbidden("spec", POD_UPDATE_FORBIDDEN));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{messages, update, want};
    use super::super::validate;
    use super::*;
    use serde_json::json;

    fn deploy(labels: Value, containers: Value) -> Value {
        json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}}})
    }

    #[test]
    fn cases() {
        let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
            ("apps", "Deployment", deploy(json!({"app": "web"}), json!([{"name": "c", "image": "i"}])), vec![]),
            (
                "apps",
                "Deployment",
                deploy(json!({"app": "other"}), json!([{"name": "c", "image": "i"}])),
                vec![r#"spec.template.metadata.labels: Invalid value: {"app":"other"}: `selector` does not match template `labels`"#],
            ),
            (
                "apps",
                "Deployment",
                deploy(json!({"app": "web"}), json!([{"name": "c"}, {"name": "c", "image": "i", "ports": [{"containerPort": 70000}]}])),
                vec![
                    "spec.template.spec.containers[0].image: Required value",
                    r#"spec.template.spec.containers[1].name: Duplicate value: "c""#,
                    "spec.template.spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ],
            ),
            ("", "Pod", json!({"spec": {}}), vec!["spec.containers: Required value"]),
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [
                    {"name": "none"},
                    {"name": "two", "emptyDir": {}, "configMap": {"name": "x"}},
                    {"name": "hp", "hostPath": {"type": "Pipe"}},
                    {"name": "s", "secret": {"defaultMode": 1000, "items": [{"path": "/abs"}, {"key": "k", "path": "a/../b", "mode": -1}]}},
                    {"name": "cm", "configMap": {}},
                    {"name": "pvc", "persistentVolumeClaim": {"readOnly": true}},
                    {"name": "ok", "projected": {"sources": [], "defaultMode": 420}},
                ]}}),
                vec![
                    "spec.volumes[0]: Required value: must specify a volume type",
                    "spec.volumes[1].configMap: Forbidden: may not specify more than 1 volume type",
                    "spec.volumes[2].hostPath.path: Required value",
                    r#"spec.volumes[2].hostPath.type: Unsupported value: "Pipe": supported values: "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket""#,
                    "spec.volumes[3].secret.secretName: Required value",
                    "spec.volumes[3].secret.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
                    "spec.volumes[3].secret.items[0].key: Required value",
                    r#"spec.volumes[3].secret.items[0].path: Invalid value: "/abs": must be a relative path"#,
                    r#"spec.volumes[3].secret.items[1].path: Invalid value: "a/../b": must not contain '..'"#,
                    "spec.volumes[3].secret.items[1].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
                    "spec.volumes[4].configMap.name: Required value",
                    "spec.volumes[5].persistentVolumeClaim.claimName: Required value",
                ],
            ),
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [
                    {"name": "d", "downwardAPI": {"items": [{"path": "../up", "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}]}},
                    {"name": "p", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 60}},
                        {"secret": {"name": "s", "items": [{"key": "k", "path": "token"}]}, "configMap": {"name": "c"}},
                        {"serviceAccountToken": {"expirationSeconds": 3600}},
                        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}]}}]}},
                    {"name": "n", "nfs": {"server": "fs.example", "path": "exports/data"}},
                ]}}),
                vec![
                    r#"spec.volumes[0].downwardAPI.path: Invalid value: "../up": must not contain '..'"#,
                    r#"spec.volumes[0].downwardAPI.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid""#,
                    "spec.volumes[1].projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes",
                    "spec.volumes[1].projected.sources[1]: Forbidden: may not specify more than 1 volume type",
                    r#"spec.volumes[1].projected.path: Required value"#,
                    r#"spec.volumes[2].nfs.path: Invalid value: "exports/data": must be an absolute path"#,
                ],
            ),
            (
                "",
                "Pod",
                json!({"spec": {"containers": [{"name": "Bad_Name", "image": "i", "resources": {"limits": {"cpu": "lots"}}}]}}),
                vec![
                    "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                    "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
                ],
            ),
            (
                "",
                "Pod",
                json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}], "containers": [{"name": "c", "image": "i",
                    "volumeMounts": [{"name": "data", "mountPath": "/d"}],
                    "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}),
                vec![
                    r#"spec.volumes[1].name: Duplicate value: "v""#,
                    r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
                    r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#,
                ],
            ),
            (
                "batch",
                "Job",
                json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}}),
                vec![r#"spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#],
            ),
            ("", "Service", json!({"spec": {"type": "ClusterIP"}}), vec!["spec.ports: Required value"]),
            ("", "Service", json!({"spec": {"clusterIP": "None"}}), vec![]),
            (
                "",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "name": "a"}, {"port": 0}]}}),
                vec![
                    "spec.ports[1].name: Required value",
                    "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
        ];
        for (group, kind, obj, want) in cases {
            let got = messages(validate(group, kind, &obj));
            assert_eq!(got, want, "{kind}: {obj}");
        }
    }

    #[test]
    fn dns_names_and_gates() {
        let pod = |extra: Value| {
            let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            json!({"metadata": {"name": "p"}, "spec": spec})
        };
        let many = |n: usize, f: &dyn Fn(usize) -> String| -> Vec<Value> {
            (0..n).map(|i| json!(f(i))).collect()
        };
        let label_err = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
        let subdomain_err = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.10", "2001:db8::1"],
                    "searches": ["svc.cluster.local.", "_tcp.example.com", "."], "options": [{"name": "ndots", "value": "2"}]},
                    "hostname": "web-0", "subdomain": "web", "priorityClassName": "high.priority", "nodeName": "node-1",
                    "hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local"]}], "nodeSelector": {"kubernetes.io/os": "linux"},
                    "readinessGates": [{"conditionType": "example.com/ready"}], "schedulingGates": [{"name": "example.com/wait"}],
                    "preemptionPolicy": "Never", "os": {"name": "linux"}}),
                vec![],
            ),
            (
                json!({"dnsPolicy": "None"}),
                vec!["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None".into()],
            ),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {"searches": ["a"]}}),
                vec!["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None".into()],
            ),
            (
                json!({"dnsConfig": {"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "dns.local"], "options": [{"value": "1"}]}}),
                vec![
                    r#"spec.dnsConfig.nameservers: Invalid value: ["1.1.1.1","8.8.8.8","9.9.9.9","dns.local"]: must not have more than 3 nameservers"#.into(),
                    r#"spec.dnsConfig.nameservers[3]: Invalid value: "dns.local": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into(),
                    "spec.dnsConfig.options[0]: Required value: must not be empty".into(),
                ],
            ),
            (
                json!({"dnsConfig": {"searches": many(33, &|i| format!("s{i}"))}}),
                vec![format!("spec.dnsConfig.searches: Invalid value: {}: must not have more than 32 search paths", json!(many(33, &|i| format!("s{i}"))))],
            ),
            (
                json!({"dnsConfig": {"searches": many(9, &|i| format!("{i}{}", "a".repeat(250)))}}),
                vec![format!(
                    "spec.dnsConfig.searches: Invalid value: {}: must not have more than 2048 characters (including spaces) in the search list",
                    json!(many(9, &|i| format!("{i}{}", "a".repeat(250))))
                )],
            ),
            (
                json!({"dnsConfig": {"searches": ["Bad.Domain."]}}),
                vec![r#"spec.dnsConfig.searches[0]: Invalid value: "Bad.Domain": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*')"#.into()],
            ),
            (
                json!({"hostname": "Web_0", "subdomain": "a_b", "nodeName": "Node_1", "serviceAccountName": "SA",
                    "priorityClassName": "High"}),
                vec![
                    format!(r#"spec.serviceAccountName: Invalid value: "SA": {subdomain_err}"#),
                    format!(r#"spec.nodeName: Invalid value: "Node_1": {subdomain_err}"#),
                    format!(r#"spec.hostname: Invalid value: "Web_0": {label_err}"#),
                    format!(r#"spec.subdomain: Invalid value: "a_b": {label_err}"#),
                    format!(r#"spec.priorityClassName: Invalid value: "High": {subdomain_err}"#),
                ],
            ),
            (
                json!({"hostAliases": [{"ip": "300.1.1.1", "hostnames": ["Bad_Host"]}]}),
                vec![
                    r#"spec.hostAliases[0].ip: Invalid value: "300.1.1.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#.into(),
                    format!(r#"spec.hostAliases[0].hostnames[0]: Invalid value: "Bad_Host": {subdomain_err}"#),
                ],
            ),
            (
                json!({"nodeSelector": {"bad key": "-v-"}}),
                vec![
                    r#"spec.nodeSelector: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#.into(),
                    r#"spec.nodeSelector: Invalid value: "-v-": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#.into(),
                ],
            ),
            (
                json!({"schedulingGates": [{"name": "gate"}, {"name": "gate"}], "readinessGates": [{"conditionType": "bad/x/y"}]}),
                vec![
                    r#"spec.readinessGates[0].conditionType: Invalid value: "bad/x/y": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#.into(),
                    r#"spec.schedulingGates[1]: Duplicate value: "gate""#.into(),
                ],
            ),
            (
                json!({"preemptionPolicy": "Always", "os": {"name": "plan9"}}),
                vec![
                    r#"spec.preemptionPolicy: Unsupported value: "Always": supported values: "PreemptLowerPriority", "Never""#.into(),
                    r#"spec.os: Unsupported value: "plan9": supported values: "linux", "windows""#.into(),
                ],
            ),
            (json!({"os": {}}), vec!["spec.os.name: Required value: cannot be empty".into()]),
        ];
        for (extra, want) in cases {
            let obj = pod(extra.clone());
            assert_eq!(messages(validate("", "Pod", &obj)), want, "{extra}");
        }
    }

    #[test]
    fn shared_name_rules() {
        // IsValidPortName checks every rule; IsQualifiedName reports an
        // empty name's syntax too.
        assert_eq!(
            super::super::port_name_errors("-8080-"),
            vec![
                "must contain at least one letter (a-z)",
                "must not begin or end with a hyphen"
            ]
        );
        assert_eq!(
            crate::validation::is_qualified_name("example.com/").len(),
            2
        );
    }

    #[test]
    fn quantities() {
        for ok in ["1", "100m", "1.5Gi", "2e3", "+1", "0.5", "64Mi", "1E-3"] {
            assert!(is_quantity(&json!(ok)), "{ok}");
        }
        for bad in ["lots", "1.2.3", "", "Gi", "1Gb", "1e"] {
            assert!(!is_quantity(&json!(bad)), "{bad}");
        }
    }

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn mirror_pod_annotation() {
        let mirror = |ann: Option<&str>, node: Option<&str>| {
            let mut p = json!({"metadata": {"name": "p", "annotations": {}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
            if let Some(a) = ann {
                p["metadata"]["annotations"][MIRROR] = json!(a);
            }
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            p
        };
        let mut out = Vec::new();
        pod_annotations(&mirror(Some("h"), None), &mut out);
        assert_eq!(
            messages(out),
            vec!["metadata.annotations[kubernetes.io/config.mirror]: Invalid value: \"h\": must set spec.nodeName if mirror pod annotation is set"]
        );
        let mut out = Vec::new();
        pod_annotations(&mirror(Some("h"), Some("n")), &mut out);
        pod_annotations(&mirror(None, None), &mut out);
        assert!(out.is_empty());

        let field = "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: ";
        let cases = [
            (Some("h"), Some("h"), None),
            (None, None, None),
            (
                Some("h2"),
                Some("h"),
                Some("may not remove or update mirror pod annotation"),
            ),
            (
                None,
                Some("h"),
                Some("may not remove or update mirror pod annotation"),
            ),
            (Some("h"), None, Some("may not add mirror pod annotation")),
        ];
        for (new, old, want) in cases {
            let mut out = Vec::new();
            mirror_annotation_update(&mirror(new, Some("n")), &mirror(old, Some("n")), &mut out);
            let want: Vec<String> = want.into_iter().map(|w| format!("{field}{w}")).collect();
            assert_eq!(messages(out), want, "{new:?} <- {old:?}");
        }
    }

    #[test]
    fn pod_updates() {
        let base = json!({
            "containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "activeDeadlineSeconds": 100,
            "nodeName": "n1",
        });
        let with = |f: &dyn Fn(&mut Value)| {
            let mut s = base.clone();
            f(&mut s);
            pod(s)
        };
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("same", pod(base.clone()), vec![]),
            (
                "image",
                with(&|s| s["containers"][0]["image"] = json!("busybox:2")),
                vec![],
            ),
            (
                "lower deadline",
                with(&|s| s["activeDeadlineSeconds"] = json!(50)),
                vec![],
            ),
            (
                "raise deadline",
                with(&|s| s["activeDeadlineSeconds"] = json!(500)),
                vec!["spec.activeDeadlineSeconds Invalid"],
            ),
            (
                "unset deadline",
                with(&|s| {
                    s.as_object_mut().unwrap().remove("activeDeadlineSeconds");
                }),
                vec!["spec.activeDeadlineSeconds Invalid"],
            ),
            (
                "add toleration",
                with(&|s| {
                    s["tolerations"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"key": "x", "operator": "Exists"}))
                }),
                vec![],
            ),
            (
                "toleration seconds",
                with(&|s| s["tolerations"][0]["tolerationSeconds"] = json!(10)),
                vec![],
            ),
            (
                "remove toleration",
                with(&|s| s["tolerations"] = json!([])),
                vec!["spec.tolerations Forbidden"],
            ),
            (
                "port",
                with(&|s| s["containers"][0]["ports"][0]["containerPort"] = json!(81)),
                vec!["spec Forbidden"],
            ),
            (
                "node",
                with(&|s| s["nodeName"] = json!("n2")),
                vec!["spec Forbidden"],
            ),
            (
                "add container",
                with(&|s| {
                    s["containers"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"name": "d", "image": "i"}))
                }),
                vec!["spec.containers Forbidden"],
            ),
            (
                "empty image",
                with(&|s| s["containers"][0]["image"] = json!("")),
                vec!["spec.containers[0].image Required"],
            ),
            (
                "nulls are unset",
                with(&|s| s["nodeSelector"] = Value::Null),
                vec![],
            ),
        ];
        let old = pod(base.clone());
        for (name, new, w) in cases {
            assert_eq!(update("", "Pod", &new, &old), want(&w), "{name}");
        }
        let msg = messages(super::super::validate_update(
            "",
            "Pod",
            &with(&|s| s["nodeName"] = json!("n2")),
            &old,
        ));
        assert_eq!(
            msg,
            vec![format!("spec: Forbidden: {POD_UPDATE_FORBIDDEN}")]
        );
    }
}
