//! Security contexts: the pod's (validatePodSpecSecurityContext, sysctls)
//! and each container's (ValidateSecurityContext), with their Windows
//! options (`windows`).

use std::collections::HashSet;

use serde_json::Value;

use super::{arr, one_of, str_of};
use crate::validation::{duplicate, invalid, not_supported, required, Cause};

const ID_RANGE: &str = "must be between 0 and 2147483647, inclusive";

/// IsValidUserID / IsValidGroupID: 0..=2147483647.
fn id(v: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if !(0..=i64::from(i32::MAX)).contains(&n) {
            out.push(invalid(path, &Value::from(n), ID_RANGE));
        }
    }
}

/// `spec.securityContext` of a pod spec at `path`.
pub(crate) fn pod(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let sp = format!("{path}.securityContext");
    let Some(sc) = spec.get("securityContext").filter(|s| s.is_object()) else {
        share_process_namespace(spec, &sp, out);
        return;
    };
    id(sc.get("fsGroup"), &format!("{sp}.fsGroup"), out);
    id(sc.get("runAsUser"), &format!("{sp}.runAsUser"), out);
    id(sc.get("runAsGroup"), &format!("{sp}.runAsGroup"), out);
    for (i, g) in arr(sc, "supplementalGroups").iter().enumerate() {
        id(Some(g), &format!("{sp}.supplementalGroups[{i}]"), out);
    }
    share_process_namespace(spec, &sp, out);
    sysctls(spec, sc, &format!("{sp}.sysctls"), out);
    one_of(
        sc,
        "fsGroupChangePolicy",
        &sp,
        &["Always", "OnRootMismatch"],
        out,
    );
    seccomp(sc, &sp, out);
    apparmor(sc, &sp, out);
    one_of(
        sc,
        "supplementalGroupsPolicy",
        &sp,
        &["Merge", "Strict"],
        out,
    );
    super::windows::options(sc, &sp, out);
}

/// Kubernetes keeps hostPID and shareProcessNamespace in the internal
/// pod security context, hence the path.
fn share_process_namespace(spec: &Value, sp: &str, out: &mut Vec<Cause>) {
    if spec.get("shareProcessNamespace") == Some(&Value::Bool(true))
        && spec.get("hostPID") == Some(&Value::Bool(true))
    {
        out.push(invalid(
            &format!("{sp}.shareProcessNamespace"),
            &Value::Bool(true),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
}

/// Whether the pod shares the host's user namespace (hostUsers unset or
/// true).
pub(crate) fn host_users(spec: &Value) -> bool {
    spec.pointer("/securityContext/hostUsers") != Some(&Value::Bool(false))
}

/// A container's `securityContext` (`cp` is the container's path).
pub(crate) fn container(c: &Value, cp: &str, host_users: bool, out: &mut Vec<Cause>) {
    let Some(sc) = c.get("securityContext").filter(|s| s.is_object()) else {
        return;
    };
    let sp = format!("{cp}.securityContext");
    id(sc.get("runAsUser"), &format!("{sp}.runAsUser"), out);
    id(sc.get("runAsGroup"), &format!("{sp}.runAsGroup"), out);
    if let Some(pm) = sc.get("procMount").and_then(Value::as_str) {
        if !matches!(pm, "Default" | "Unmasked") {
            out.push(not_supported(
                &format!("{sp}.procMount"),
                &Value::from(pm),
                &["Default", "Unmasked"],
            ));
        }
        if host_users && pm == "Unmasked" {
            out.push(invalid(
                &format!("{sp}.procMount"),
                &Value::from(pm),
                "`hostUsers` must be false to use `Unmasked`",
            ));
        }
    }
    seccomp(sc, &sp, out);
    if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(false)) {
        if sc.get("privileged") == Some(&Value::Bool(true)) {
            out.push(invalid(
                &sp,
                sc,
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
        let adds = sc
            .pointer("/capabilities/add")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for cap in adds {
            if cap.as_str() == Some("CAP_SYS_ADMIN") {
                out.push(invalid(
                    &sp,
                    sc,
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                ));
            }
        }
    }
    apparmor(sc, &sp, out);
    super::windows::options(sc, &sp, out);
}

/// validateSeccompProfileField.
fn seccomp(sc: &Value, sp: &str, out: &mut Vec<Cause>) {
    let Some(p) = sc.get("seccompProfile").filter(|p| p.is_object()) else {
        return;
    };
    let path = format!("{sp}.seccompProfile");
    let ty = str_of(p, "type");
    match ty {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => out.push(required(
            &format!("{path}.type"),
            "type is required when seccompProfile is set",
        )),
        other => out.push(not_supported(
            &format!("{path}.type"),
            &Value::from(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
    let local = p.get("localhostProfile").filter(|l| !l.is_null());
    let lp = format!("{path}.localhostProfile");
    if ty == "Localhost" {
        match local {
            None => out.push(required(&lp, "must be set when seccomp type is Localhost")),
            Some(l) => local_descending_path(l.as_str().unwrap_or(""), &lp, out),
        }
    } else if local.is_some() {
        out.push(invalid(
            &lp,
            p,
            "can only be set when seccomp type is Localhost",
        ));
    }
}

/// validateLocalDescendingPath: relative, without `..`.
fn local_descending_path(p: &str, path: &str, out: &mut Vec<Cause>) {
    if p.starts_with('/') {
        out.push(invalid(path, &Value::from(p), "must be a relative path"));
    }
    if p.split(['/', '\\']).any(|part| part == "..") {
        out.push(invalid(path, &Value::from(p), "must not contain '..'"));
    }
}

/// ValidateAppArmorProfileField.
fn apparmor(sc: &Value, sp: &str, out: &mut Vec<Cause>) {
    let Some(p) = sc.get("appArmorProfile").filter(|p| p.is_object()) else {
        return;
    };
    let path = format!("{sp}.appArmorProfile");
    let lp = format!("{path}.localhostProfile");
    let local = p.get("localhostProfile").filter(|l| !l.is_null());
    match str_of(p, "type") {
        "Localhost" => match local.map(|l| l.as_str().unwrap_or("")) {
            None => out.push(required(&lp, "must be set when AppArmor type is Localhost")),
            Some(l) => {
                if l.trim() != l {
                    out.push(invalid(
                        &lp,
                        &Value::from(l),
                        "must not be padded with whitespace",
                    ));
                } else if l.is_empty() {
                    out.push(required(&lp, "must be set when AppArmor type is Localhost"));
                }
                if l.len() > 4095 {
                    out.push(crate::validation::too_long(&lp, 4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(l) = local {
                out.push(invalid(
                    &lp,
                    l,
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => out.push(required(
            &format!("{path}.type"),
            "type is required when appArmorProfile is set",
        )),
        other => out.push(not_supported(
            &format!("{path}.type"),
            &Value::from(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

/// The regex IsValidSysctlName matches, as the message quotes it.
const SYSCTL_RE: &str = r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

fn sysctl_segment_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && inner(&b[0])
        && inner(&b[b.len() - 1])
        && b.iter().all(|c| inner(c) || *c == b'-' || *c == b'_')
}

fn is_valid_sysctl_name(name: &str) -> bool {
    name.len() <= 253 && name.split(['.', '/']).all(sysctl_segment_ok)
}

/// Which namespace a sysctl belongs to ("net", "ipc" or neither), after
/// Kubernetes' normalization of `/`-separated names.
fn sysctl_namespace(name: &str) -> &'static str {
    let normalized: String = match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_owned(),
    };
    let n = normalized.as_str();
    if n.starts_with("net.") {
        "net"
    } else if n == "kernel.sem"
        || n.starts_with("kernel.shm")
        || n.starts_with("kernel.msg")
        || n.starts_with("fs.mqueue.")
    {
        "ipc"
    } else {
        ""
    }
}

fn sysctls(spec: &Value, sc: &Value, path: &str, out: &mut Vec<Cause>) {
    let mut names = HashSet::new();
    let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
    let host_ipc = spec.get("hostIPC") == Some(&Value::Bool(true));
    for (i, s) in arr(sc, "sysctls").iter().enumerate() {
        let np = format!("{path}[{i}].name");
        let name = str_of(s, "name");
        if name.is_empty() {
            out.push(required(&np, ""));
        } else if !is_valid_sysctl_name(name) {
            out.push(invalid(
                &np,
                &Value::from(name),
                &format!("must have at most 253 characters and match regex {SYSCTL_RE}"),
            ));
        } else if names.contains(name) {
            out.push(duplicate(&np, &Value::from(name)));
        }
        match sysctl_namespace(name) {
            "net" if host_network => out.push(invalid(
                &np,
                &Value::from(name),
                "may not be specified when 'hostNetwork' is true",
            )),
            "ipc" if host_ipc => out.push(invalid(
                &np,
                &Value::from(name),
                "may not be specified when 'hostIPC' is true",
            )),
            _ => {}
        }
        names.insert(name.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::super::validate;
    use serde_json::{json, Value};

    fn pod(spec_extra: Value, container_sc: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        if !container_sc.is_null() {
            spec["containers"][0]["securityContext"] = container_sc;
        }
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn security_contexts() {
        let s = "spec.securityContext";
        let c = "spec.containers[0].securityContext";
        let cases: Vec<(Value, Value, Vec<String>)> = vec![
            (
                json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 0, "fsGroup": 2000,
                    "supplementalGroups": [1, 2], "fsGroupChangePolicy": "OnRootMismatch",
                    "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"},
                    "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"}, {"name": "net/ipv4/ip_local_port_range", "value": "1 2"}]}}),
                json!({"runAsUser": 0, "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"]},
                    "procMount": "Default", "seccompProfile": {"type": "RuntimeDefault"}}),
                vec![],
            ),
            (
                json!({"securityContext": {"runAsUser": -1, "runAsGroup": 2147483648_i64, "fsGroup": -5, "supplementalGroups": [1, -1]}}),
                Value::Null,
                vec![
                    format!("{s}.fsGroup: Invalid value: -5: must be between 0 and 2147483647, inclusive"),
                    format!("{s}.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"),
                    format!("{s}.runAsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive"),
                    format!("{s}.supplementalGroups[1]: Invalid value: -1: must be between 0 and 2147483647, inclusive"),
                ],
            ),
            (
                json!({}),
                json!({"runAsUser": -1, "runAsGroup": -2}),
                vec![
                    format!("{c}.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"),
                    format!("{c}.runAsGroup: Invalid value: -2: must be between 0 and 2147483647, inclusive"),
                ],
            ),
            (
                json!({}),
                json!({"allowPrivilegeEscalation": false, "privileged": true}),
                vec![format!(r#"{c}: Invalid value: {{"allowPrivilegeEscalation":false,"privileged":true}}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true"#)],
            ),
            (
                json!({}),
                json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["CAP_SYS_ADMIN"]}}),
                vec![format!(r#"{c}: Invalid value: {{"allowPrivilegeEscalation":false,"capabilities":{{"add":["CAP_SYS_ADMIN"]}}}}: cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"#)],
            ),
            (
                json!({}),
                json!({"procMount": "Masked"}),
                vec![format!(r#"{c}.procMount: Unsupported value: "Masked": supported values: "Default", "Unmasked""#)],
            ),
            (
                json!({}),
                json!({"procMount": "Unmasked"}),
                vec![format!(r#"{c}.procMount: Invalid value: "Unmasked": `hostUsers` must be false to use `Unmasked`"#)],
            ),
            (json!({"securityContext": {"hostUsers": false}}), json!({"procMount": "Unmasked"}), vec![]),
            (
                json!({"securityContext": {"seccompProfile": {"type": "Localhost"}}}),
                json!({"seccompProfile": {"type": "Sometimes"}}),
                vec![
                    format!(r#"{c}.seccompProfile.type: Unsupported value: "Sometimes": supported values: "Localhost", "RuntimeDefault", "Unconfined""#),
                    format!("{s}.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost"),
                ],
            ),
            (
                json!({"securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "/etc/../p.json"}}}),
                json!({"seccompProfile": {"localhostProfile": "p.json", "type": "RuntimeDefault"}}),
                vec![
                    format!(r#"{c}.seccompProfile.localhostProfile: Invalid value: {{"localhostProfile":"p.json","type":"RuntimeDefault"}}: can only be set when seccomp type is Localhost"#),
                    format!(r#"{s}.seccompProfile.localhostProfile: Invalid value: "/etc/../p.json": must be a relative path"#),
                    format!(r#"{s}.seccompProfile.localhostProfile: Invalid value: "/etc/../p.json": must not contain '..'"#),
                ],
            ),
            (
                json!({"securityContext": {"seccompProfile": {}}}),
                Value::Null,
                vec![format!("{s}.seccompProfile.type: Required value: type is required when seccompProfile is set")],
            ),
            (
                json!({"securityContext": {"fsGroupChangePolicy": "Sometimes", "supplementalGroupsPolicy": "Loose"}}),
                Value::Null,
                vec![
                    format!(r#"{s}.fsGroupChangePolicy: Unsupported value: "Sometimes": supported values: "Always", "OnRootMismatch""#),
                    format!(r#"{s}.supplementalGroupsPolicy: Unsupported value: "Loose": supported values: "Merge", "Strict""#),
                ],
            ),
            (
                json!({"securityContext": {"sysctls": [{"name": ""}, {"name": "Kernel.Bad"}, {"name": "kernel.shmmax"}, {"name": "kernel.shmmax"}]}}),
                Value::Null,
                vec![
                    format!("{s}.sysctls[0].name: Required value"),
                    format!(r#"{s}.sysctls[1].name: Invalid value: "Kernel.Bad": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"#),
                    format!(r#"{s}.sysctls[3].name: Duplicate value: "kernel.shmmax""#),
                ],
            ),
            (
                json!({"hostNetwork": true, "hostIPC": true, "securityContext": {"sysctls": [{"name": "net.core.somaxconn"}, {"name": "kernel.msgmax"}, {"name": "kernel.pid_max"}]}}),
                Value::Null,
                vec![
                    format!(r#"{s}.sysctls[0].name: Invalid value: "net.core.somaxconn": may not be specified when 'hostNetwork' is true"#),
                    format!(r#"{s}.sysctls[1].name: Invalid value: "kernel.msgmax": may not be specified when 'hostIPC' is true"#),
                ],
            ),
            (
                json!({"hostPID": true, "shareProcessNamespace": true}),
                Value::Null,
                vec![format!("{s}.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled")],
            ),
            (
                json!({"securityContext": {"appArmorProfile": {"type": "Localhost"}}}),
                json!({"appArmorProfile": {"type": "Unconfined", "localhostProfile": "x"}}),
                vec![
                    format!(r#"{c}.appArmorProfile.localhostProfile: Invalid value: "x": can only be set when AppArmor type is Localhost"#),
                    format!("{s}.appArmorProfile.localhostProfile: Required value: must be set when AppArmor type is Localhost"),
                ],
            ),
        ];
        for (spec, sc, want) in cases {
            let obj = pod(spec.clone(), sc.clone());
            assert_eq!(messages(validate("", "Pod", &obj)), want, "{spec} {sc}");
        }
    }
}
