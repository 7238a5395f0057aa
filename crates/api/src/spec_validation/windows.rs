//! Windows security options (validateWindowsSecurityContextOptions) and
//! HostProcess pods (validateWindowsHostProcessPod): checked wherever a
//! pod or container security context may carry `windowsOptions`, as
//! Kubernetes does whatever the node's OS.

use serde_json::Value;

use super::arr;
use crate::validation::{invalid, is_dns1123_subdomain, Cause};

/// gmsaCredentialSpec's limit.
const MAX_GMSA_SPEC_KIB: usize = 64;
const MAX_DOMAIN: usize = 256;
const MAX_USER: usize = 104;

/// A NetBIOS domain: 1 to 15 characters, none of `\/:*?"<>|`, not
/// starting with a dot.
fn netbios(d: &str) -> bool {
    let bad = |c: char| "\\/:*?\"<>|".contains(c);
    let n = d.chars().count();
    (1..=15).contains(&n) && !d.starts_with('.') && !d.chars().any(bad)
}

/// DNS labels of letters, digits and inner hyphens, joined by dots.
fn dns_domain(d: &str) -> bool {
    d.split('.').all(|l| {
        let b = l.as_bytes();
        (1..=63).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

/// `windowsOptions` of a security context at `sp`.
pub(super) fn options(sc: &Value, sp: &str, out: &mut Vec<Cause>) {
    let Some(w) = sc.get("windowsOptions").filter(|w| w.is_object()) else {
        return;
    };
    let wp = format!("{sp}.windowsOptions");
    if let Some(name) = w.get("gmsaCredentialSpecName").and_then(Value::as_str) {
        for e in is_dns1123_subdomain(name) {
            out.push(invalid(
                &format!("{wp}.gmsaCredentialSpecName"),
                &Value::from(name),
                &e,
            ));
        }
    }
    if let Some(spec) = w.get("gmsaCredentialSpec").and_then(Value::as_str) {
        let field = format!("{wp}.gmsaCredentialSpec");
        if spec.is_empty() {
            out.push(invalid(
                &field,
                &Value::from(spec),
                "gmsaCredentialSpec cannot be an empty string",
            ));
        } else if spec.len() > MAX_GMSA_SPEC_KIB * 1024 {
            out.push(invalid(
                &field,
                &Value::from(spec),
                &format!("gmsaCredentialSpec size must be under {MAX_GMSA_SPEC_KIB} KiB"),
            ));
        }
    }
    if let Some(name) = w.get("runAsUserName").and_then(Value::as_str) {
        let field = format!("{wp}.runAsUserName");
        let v = Value::from(name);
        let mut bad = |msg: &str| out.push(invalid(&field, &v, msg));
        let parts: Vec<&str> = name.split('\\').collect();
        if name.is_empty() {
            bad("runAsUserName cannot be an empty string");
        } else if name.chars().any(|c| c.is_ascii_control()) {
            bad("runAsUserName cannot contain control characters");
        } else if parts.len() > 2 {
            bad("runAsUserName cannot contain more than one backslash");
        } else {
            let (domain, user) = match parts.as_slice() {
                [user] => (None, *user),
                [domain, user] => (Some(*domain), *user),
                _ => unreachable!("split gives one or two parts here"),
            };
            let d = domain.unwrap_or("");
            if d.len() >= MAX_DOMAIN {
                bad(&format!(
                    "runAsUserName's Domain length must be under {MAX_DOMAIN} characters"
                ));
            }
            if domain.is_some() && !(netbios(d) || dns_domain(d)) {
                bad("runAsUserName's Domain doesn't match the NetBios nor the DNS format");
            }
            if user.is_empty() {
                bad("runAsUserName's User cannot be empty");
            } else if user.len() > MAX_USER {
                bad(&format!(
                    "runAsUserName's User length must not be longer than {MAX_USER} characters"
                ));
            }
            if !user.is_empty() && user.chars().all(|c| c == '.' || c == ' ') {
                bad("runAsUserName's User cannot contain only periods or spaces");
            }
            if user.chars().any(|c| "\"/\\:;|=,+*?<>@[]".contains(c)) {
                bad("runAsUserName's User cannot contain the following characters: \"/\\:;|=,+*?<>@[]");
            }
        }
    }
}

/// HostProcess pods: every container one (set or inherited), the same
/// setting where pod and container both say, and the host's network.
pub(super) fn host_process_pod(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let pod_hp = spec
        .pointer("/securityContext/windowsOptions/hostProcess")
        .and_then(Value::as_bool);
    let (mut containers, mut host_process) = (0, 0);
    for (key, name) in [
        ("initContainers", "initContainers"),
        ("containers", "containers"),
        ("ephemeralContainers", "ephemeralContainers"),
    ] {
        for (i, c) in arr(spec, key).iter().enumerate() {
            containers += 1;
            let c_hp = c
                .pointer("/securityContext/windowsOptions/hostProcess")
                .and_then(Value::as_bool);
            if let (Some(p), Some(c)) = (pod_hp, c_hp) {
                if p != c {
                    out.push(invalid(
                        &format!("{path}.{name}[{i}].securityContext.windowsOptions.hostProcess"),
                        &Value::Bool(c),
                        &format!("pod hostProcess value must be identical if both are specified, was {p}"),
                    ));
                }
            }
            if c_hp.or(pod_hp) == Some(true) {
                host_process += 1;
            }
        }
    }
    if host_process == 0 {
        return;
    }
    if host_process != containers {
        out.push(invalid(
            path,
            &Value::from(""),
            "If pod contains any hostProcess containers then all containers must be HostProcess containers",
        ));
    }
    if spec.get("hostNetwork") != Some(&Value::Bool(true)) {
        out.push(invalid(
            &format!("{path}.hostNetwork"),
            &Value::Bool(false),
            "hostNetwork must be true if pod contains any hostProcess containers",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn causes(sc: Value) -> Vec<String> {
        let mut out = Vec::new();
        options(&sc, "sc", &mut out);
        out.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn windows_options() {
        let u = "sc.windowsOptions.runAsUserName";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (
                json!({"windowsOptions": {"gmsaCredentialSpecName": "gmsa-webapp", "gmsaCredentialSpec": "{}",
                    "runAsUserName": "NT AUTHORITY\\NETWORK SERVICE", "hostProcess": false}}),
                vec![],
            ),
            (json!({"windowsOptions": {"runAsUserName": "ContainerUser"}}), vec![]),
            (json!({"windowsOptions": {"runAsUserName": "corp.example.com\\alice"}}), vec![]),
            (
                json!({"windowsOptions": {"gmsaCredentialSpecName": "Bad_Name", "gmsaCredentialSpec": ""}}),
                vec![
                    r#"sc.windowsOptions.gmsaCredentialSpecName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#.into(),
                    r#"sc.windowsOptions.gmsaCredentialSpec: Invalid value: "": gmsaCredentialSpec cannot be an empty string"#.into(),
                ],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": ""}}),
                vec![format!(r#"{u}: Invalid value: "": runAsUserName cannot be an empty string"#)],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": "a\u{7}b"}}),
                vec![format!(r#"{u}: Invalid value: "a\u{{7}}b": runAsUserName cannot contain control characters"#)],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": "a\\b\\c"}}),
                vec![format!(r#"{u}: Invalid value: "a\\b\\c": runAsUserName cannot contain more than one backslash"#)],
            ),
            // A NetBIOS name may hold dots and dashes, but not start with a
            // dot (and then it is no DNS name either).
            (json!({"windowsOptions": {"runAsUserName": "-bad-.x\\y"}}), vec![]),
            (
                json!({"windowsOptions": {"runAsUserName": ".corp\\"}}),
                vec![
                    format!(r#"{u}: Invalid value: ".corp\\": runAsUserName's Domain doesn't match the NetBios nor the DNS format"#),
                    format!(r#"{u}: Invalid value: ".corp\\": runAsUserName's User cannot be empty"#),
                ],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": ". ."}}),
                vec![format!(r#"{u}: Invalid value: ". .": runAsUserName's User cannot contain only periods or spaces"#)],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": "al@ce"}}),
                vec![format!(r#"{u}: Invalid value: "al@ce": runAsUserName's User cannot contain the following characters: "/\:;|=,+*?<>@[]"#)],
            ),
            (
                json!({"windowsOptions": {"runAsUserName": "u".repeat(105)}}),
                vec![format!(r#"{u}: Invalid value: "{}": runAsUserName's User length must not be longer than 104 characters"#, "u".repeat(105))],
            ),
        ];
        for (sc, want) in cases {
            assert_eq!(causes(sc.clone()), want, "{sc}");
        }
    }

    #[test]
    fn host_process_pods() {
        let run = |spec: Value| {
            let mut out = Vec::new();
            host_process_pod(&spec, "spec", &mut out);
            out.iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>()
        };
        let hp = |v: bool| json!({"windowsOptions": {"hostProcess": v}});
        assert!(run(json!({"containers": [{"name": "a"}]})).is_empty());
        assert!(run(json!({"hostNetwork": true, "securityContext": hp(true),
            "containers": [{"name": "a"}, {"name": "b", "securityContext": hp(true)}]}))
        .is_empty());
        assert_eq!(
            run(json!({"securityContext": hp(true), "initContainers": [{"name": "i", "securityContext": hp(false)}],
                "containers": [{"name": "a"}]})),
            vec![
                "spec.initContainers[0].securityContext.windowsOptions.hostProcess: Invalid value: false: pod hostProcess value must be identical if both are specified, was true",
                r#"spec: Invalid value: "": If pod contains any hostProcess containers then all containers must be HostProcess containers"#,
                "spec.hostNetwork: Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers",
            ]
        );
    }
}
