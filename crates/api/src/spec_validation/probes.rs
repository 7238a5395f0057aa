//! Container probes (liveness, readiness, startup) and lifecycle hooks
//! (postStart, preStop): one handler each, its ports and scheme, the probe
//! timings (validateProbe, validateHandler, validateLifecycle).
//!
//! Kubernetes validates defaulted objects: a probe's zero timings and
//! thresholds become 1/10/1/3, an httpGet's empty path "/" and empty
//! scheme "HTTP"; so an absent or zero field passes here too.

use serde_json::Value;

use super::{arr, at, nonnegative, port_num_or_name, unset};
use crate::validation::{forbidden, invalid, not_supported, required, Cause};

/// The probes and lifecycle hooks of a regular container, or of an init
/// container (`init`), where only restartable (sidecar) ones may have
/// them. `grace` is the pod's terminationGracePeriodSeconds.
pub(crate) fn container(c: &Value, cp: &str, init: bool, grace: Option<i64>, out: &mut Vec<Cause>) {
    let sidecar = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
    if init && !sidecar {
        for key in [
            "lifecycle",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
        ] {
            if !unset(c.get(key)) {
                out.push(forbidden(
                    &format!("{cp}.{key}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
        return;
    }
    if let Some(l) = c.get("lifecycle").filter(|l| !l.is_null()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get(hook).filter(|h| !h.is_null()) {
                handler(h, &format!("{cp}.lifecycle.{hook}"), false, grace, out);
            }
        }
    }
    for (key, kind) in [
        ("livenessProbe", Kind::Liveness),
        ("readinessProbe", Kind::Readiness),
        ("startupProbe", Kind::Startup),
    ] {
        if let Some(p) = c.get(key).filter(|p| !p.is_null()) {
            probe(p, &format!("{cp}.{key}"), kind, out);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

fn probe(p: &Value, path: &str, kind: Kind, out: &mut Vec<Cause>) {
    handler(p, path, true, None, out);
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(p.get(field), &format!("{path}.{field}"), out);
    }
    let grace = p
        .get("terminationGracePeriodSeconds")
        .filter(|g| !g.is_null());
    if let Some(g) = grace.and_then(Value::as_i64).filter(|g| *g <= 0) {
        out.push(invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            &Value::from(g),
            "must be greater than 0",
        ));
    }
    match kind {
        Kind::Liveness | Kind::Startup => {
            // 0 (or absent) is defaulted to 1.
            let s = p
                .get("successThreshold")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if s != 0 && s != 1 {
                out.push(invalid(
                    &format!("{path}.successThreshold"),
                    &Value::from(s),
                    "must be 1",
                ));
            }
        }
        Kind::Readiness => {
            if let Some(g) = grace {
                out.push(invalid(
                    &format!("{path}.terminationGracePeriodSeconds"),
                    g,
                    "must not be set for readinessProbes",
                ));
            }
        }
    }
}

/// validateHandler: exactly one of the handler types (a probe's exec,
/// httpGet, tcpSocket, grpc; a hook's exec, httpGet, tcpSocket, sleep).
fn handler(h: &Value, path: &str, is_probe: bool, grace: Option<i64>, out: &mut Vec<Cause>) {
    let kinds: &[&str] = if is_probe {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    } else {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    };
    let mut found = false;
    for kind in kinds {
        let Some(action) = h.get(*kind).filter(|a| !a.is_null()) else {
            continue;
        };
        let ap = format!("{path}.{kind}");
        if found {
            out.push(forbidden(&ap, "may not specify more than 1 handler type"));
            continue;
        }
        found = true;
        match *kind {
            "exec" => {
                if arr(action, "command").is_empty() {
                    out.push(required(&format!("{ap}.command"), ""));
                }
            }
            "httpGet" => http_get(action, &ap, out),
            "tcpSocket" => port_num_or_name(action.get("port"), &format!("{ap}.port"), out),
            "grpc" => {
                let port = action.get("port").and_then(Value::as_i64).unwrap_or(0);
                port_num_or_name(Some(&Value::from(port)), &format!("{ap}.port"), out);
            }
            _ => sleep(action, &ap, grace, out),
        }
    }
    if !found {
        out.push(required(path, "must specify a handler type"));
    }
}

fn http_get(action: &Value, path: &str, out: &mut Vec<Cause>) {
    port_num_or_name(action.get("port"), &format!("{path}.port"), out);
    match action.get("scheme").and_then(Value::as_str) {
        None | Some("" | "HTTP" | "HTTPS") => {}
        Some(s) => out.push(not_supported(
            &format!("{path}.scheme"),
            &Value::from(s),
            &["HTTP", "HTTPS"],
        )),
    }
    for h in arr(action, "httpHeaders") {
        let name = h.get("name").and_then(Value::as_str).unwrap_or("");
        let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            out.push(invalid(
                &format!("{path}.httpHeaders"),
                &Value::from(name),
                &crate::validation::regex_error(
                    "a valid HTTP header must consist of alphanumeric characters or '-'",
                    "[-A-Za-z0-9]+",
                    &["X-Header-Name"],
                ),
            ));
        }
    }
}

/// validateSleepAction (with PodLifecycleSleepActionAllowZero, on by
/// default since v1.33): 0..=terminationGracePeriodSeconds.
fn sleep(action: &Value, path: &str, grace: Option<i64>, out: &mut Vec<Cause>) {
    let Some(grace) = grace else {
        return;
    };
    let seconds = at(action, "seconds").as_i64().unwrap_or(0);
    if seconds < 0 || seconds > grace {
        out.push(invalid(
            path,
            &Value::from(seconds),
            &format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::super::validate;
    use serde_json::{json, Value};

    /// A Pod whose one container (or init container, when `init`) has
    /// `extra` merged in.
    fn pod(extra: Value, init: bool) -> Value {
        let mut c = json!({"name": "c", "image": "busybox"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let spec = if init {
            json!({"terminationGracePeriodSeconds": 30, "initContainers": [c],
                "containers": [{"name": "main", "image": "busybox"}]})
        } else {
            json!({"terminationGracePeriodSeconds": 30, "containers": [c]})
        };
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn probes_and_hooks() {
        let c = "spec.containers[0]";
        let ic = "spec.initContainers[0]";
        let cases: Vec<(Value, bool, Vec<String>)> = vec![
            // Valid: one handler each, defaults left out, named ports.
            (
                json!({"livenessProbe": {"httpGet": {"port": "http", "scheme": "HTTPS"}, "successThreshold": 1},
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "successThreshold": 3},
                    "startupProbe": {"grpc": {"port": 9000}, "successThreshold": 0},
                    "lifecycle": {"preStop": {"sleep": {"seconds": 5}}, "postStart": {"exec": {"command": ["true"]}}}}),
                false,
                vec![],
            ),
            (
                json!({"livenessProbe": {"exec": {"command": ["true"]}, "httpGet": {"port": 80}}}),
                false,
                vec![format!("{c}.livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type")],
            ),
            (
                json!({"readinessProbe": {"periodSeconds": 5}}),
                false,
                vec![format!("{c}.readinessProbe: Required value: must specify a handler type")],
            ),
            (
                json!({"livenessProbe": {"exec": {"command": []}, "initialDelaySeconds": -1, "timeoutSeconds": -2,
                    "periodSeconds": -3, "failureThreshold": -4}}),
                false,
                vec![
                    format!("{c}.livenessProbe.exec.command: Required value"),
                    format!("{c}.livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0"),
                    format!("{c}.livenessProbe.timeoutSeconds: Invalid value: -2: must be greater than or equal to 0"),
                    format!("{c}.livenessProbe.periodSeconds: Invalid value: -3: must be greater than or equal to 0"),
                    format!("{c}.livenessProbe.failureThreshold: Invalid value: -4: must be greater than or equal to 0"),
                ],
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 2}}),
                false,
                vec![format!("{c}.livenessProbe.successThreshold: Invalid value: 2: must be 1")],
            ),
            (
                json!({"startupProbe": {"tcpSocket": {"port": 80}, "successThreshold": -1}}),
                false,
                vec![
                    format!("{c}.startupProbe.successThreshold: Invalid value: -1: must be greater than or equal to 0"),
                    format!("{c}.startupProbe.successThreshold: Invalid value: -1: must be 1"),
                ],
            ),
            (
                json!({"livenessProbe": {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 0}}),
                false,
                vec![format!("{c}.livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0")],
            ),
            (
                json!({"readinessProbe": {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 10}}),
                false,
                vec![format!("{c}.readinessProbe.terminationGracePeriodSeconds: Invalid value: 10: must not be set for readinessProbes")],
            ),
            (
                json!({"livenessProbe": {"httpGet": {"port": 0, "scheme": "FTP"}}}),
                false,
                vec![
                    format!("{c}.livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"),
                    format!(r#"{c}.livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS""#),
                ],
            ),
            (
                json!({"livenessProbe": {"httpGet": {"port": 80, "httpHeaders": [{"name": "X Bad", "value": "v"}]}}}),
                false,
                vec![format!(r#"{c}.livenessProbe.httpGet.httpHeaders: Invalid value: "X Bad": a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')"#)],
            ),
            (
                json!({"readinessProbe": {"tcpSocket": {"port": "Web_Port"}}}),
                false,
                vec![
                    format!(r#"{c}.readinessProbe.tcpSocket.port: Invalid value: "Web_Port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#),
                ],
            ),
            (
                json!({"readinessProbe": {"tcpSocket": {"port": "8080"}}}),
                false,
                vec![
                    format!(r#"{c}.readinessProbe.tcpSocket.port: Invalid value: "8080": must contain at least one letter (a-z)"#),
                ],
            ),
            (
                json!({"startupProbe": {"grpc": {"port": 70000}}}),
                false,
                vec![format!("{c}.startupProbe.grpc.port: Invalid value: 70000: must be between 1 and 65535, inclusive")],
            ),
            (
                json!({"startupProbe": {"grpc": {}}}),
                false,
                vec![format!("{c}.startupProbe.grpc.port: Invalid value: 0: must be between 1 and 65535, inclusive")],
            ),
            (
                json!({"lifecycle": {"postStart": {}, "preStop": {"exec": {"command": ["a"]}, "sleep": {"seconds": 1}}}}),
                false,
                vec![
                    format!("{c}.lifecycle.postStart: Required value: must specify a handler type"),
                    format!("{c}.lifecycle.preStop.sleep: Forbidden: may not specify more than 1 handler type"),
                ],
            ),
            (
                json!({"lifecycle": {"preStop": {"sleep": {"seconds": 31}}}}),
                false,
                vec![format!("{c}.lifecycle.preStop.sleep: Invalid value: 31: must be non-negative and less than terminationGracePeriodSeconds (30)")],
            ),
            (
                json!({"livenessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}),
                true,
                vec![
                    format!("{ic}.lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always"),
                    format!("{ic}.livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"),
                ],
            ),
            (
                json!({"restartPolicy": "Always", "livenessProbe": {"exec": {"command": ["true"]}, "grpc": {"port": 1}}}),
                true,
                vec![format!("{ic}.livenessProbe.grpc: Forbidden: may not specify more than 1 handler type")],
            ),
            (
                json!({"restartPolicy": "OnFailure"}),
                true,
                vec![format!(r#"{ic}.restartPolicy: Unsupported value: "OnFailure": supported values: "Always""#)],
            ),
            (
                json!({"restartPolicy": "Always"}),
                false,
                vec![format!("{c}.restartPolicy: Forbidden: may not be set for non-init containers")],
            ),
        ];
        for (extra, init, want) in cases {
            let obj = pod(extra.clone(), init);
            assert_eq!(messages(validate("", "Pod", &obj)), want, "{extra}");
        }
    }

    #[test]
    fn templates_are_checked_too() {
        let deploy = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [
                {"name": "c", "image": "i", "readinessProbe": {"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}}]}}}});
        assert_eq!(
            messages(validate("apps", "Deployment", &deploy)),
            vec!["spec.template.spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"]
        );
    }
}
