//! A container's environment (`env`, `envFrom`) and the downward API
//! selectors it shares with downwardAPI volumes, as Kubernetes validates
//! them (validateEnv, validateEnvFrom, validateObjectFieldSelector,
//! validateContainerResourceFieldSelector, validateDownwardAPIVolumeFile).

use serde_json::Value;

use super::{arr, label_name, str_of};
use crate::validation::{invalid, is_dns1123_subdomain, not_supported, required, Cause};

/// The pod fields an env var may take from the downward API.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The pod fields a downwardAPI volume file may hold.
const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

/// The container resources the downward API exposes (and the hugepages
/// ones by prefix).
const RESOURCE_FIELDS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

const ENV_NAME_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// IsRelaxedEnvVarName (the rule since RelaxedEnvironmentVariableValidation).
fn env_name_ok(name: &str) -> bool {
    name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// A container's `env` and `envFrom`; `cp` is the container's path.
pub(super) fn container_env(c: &Value, cp: &str, out: &mut Vec<Cause>) {
    for (j, e) in arr(c, "env").iter().enumerate() {
        let ep = format!("{cp}.env[{j}]");
        let name = str_of(e, "name");
        if name.is_empty() {
            out.push(required(&format!("{ep}.name"), ""));
        } else if !env_name_ok(name) {
            out.push(invalid(
                &format!("{ep}.name"),
                &Value::from(name),
                ENV_NAME_MSG,
            ));
        }
        if let Some(from) = e.get("valueFrom").filter(|f| !f.is_null()) {
            value_from(
                from,
                !str_of(e, "value").is_empty(),
                &format!("{ep}.valueFrom"),
                out,
            );
        }
    }
    let list = format!("{cp}.envFrom");
    for (j, e) in arr(c, "envFrom").iter().enumerate() {
        let ep = format!("{list}[{j}]");
        let prefix = str_of(e, "prefix");
        if !prefix.is_empty() && !env_name_ok(prefix) {
            out.push(invalid(
                &format!("{ep}.prefix"),
                &Value::from(prefix),
                ENV_NAME_MSG,
            ));
        }
        let mut sources = 0;
        for src in ["configMapRef", "secretRef"] {
            let Some(r) = e.get(src).filter(|r| !r.is_null()) else {
                continue;
            };
            sources += 1;
            let name = str_of(r, "name");
            if name.is_empty() {
                out.push(required(&format!("{ep}.{src}.name"), ""));
            } else {
                object_name(name, &format!("{ep}.{src}.name"), out);
            }
        }
        // Kubernetes reports these at the list, not the entry.
        match sources {
            0 => out.push(invalid(
                &list,
                &Value::from(""),
                "must specify one of: `configMapRef` or `secretRef`",
            )),
            1 => {}
            _ => out.push(invalid(
                &list,
                &Value::from(""),
                "may not have more than one field specified at a time",
            )),
        }
    }
}

fn object_name(name: &str, path: &str, out: &mut Vec<Cause>) {
    for e in is_dns1123_subdomain(name) {
        out.push(invalid(path, &Value::from(name), &e));
    }
}

/// An env var's `valueFrom`: exactly one source, and not next to `value`.
fn value_from(from: &Value, has_value: bool, path: &str, out: &mut Vec<Cause>) {
    let mut sources = 0;
    if let Some(f) = from.get("fieldRef").filter(|f| !f.is_null()) {
        sources += 1;
        field_selector(f, ENV_FIELD_PATHS, &format!("{path}.fieldRef"), out);
    }
    if let Some(r) = from.get("resourceFieldRef").filter(|r| !r.is_null()) {
        sources += 1;
        resource_selector(r, false, &format!("{path}.resourceFieldRef"), out);
    }
    for src in ["configMapKeyRef", "secretKeyRef"] {
        let Some(r) = from.get(src).filter(|r| !r.is_null()) else {
            continue;
        };
        sources += 1;
        let name = str_of(r, "name");
        object_name(name, &format!("{path}.{src}.name"), out);
        let key = str_of(r, "key");
        if key.is_empty() {
            out.push(required(&format!("{path}.{src}.key"), ""));
        } else {
            for e in super::config::config_key_errors(key) {
                out.push(invalid(&format!("{path}.{src}.key"), &Value::from(key), &e));
            }
        }
    }
    let empty = Value::from("");
    if sources == 0 {
        out.push(invalid(
            path,
            &empty,
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ));
    } else if has_value {
        out.push(invalid(
            path,
            &empty,
            "may not be specified when `value` is not empty",
        ));
    } else if sources > 1 {
        out.push(invalid(
            path,
            &empty,
            "may not have more than one field specified at a time",
        ));
    }
}

/// The pod fields the downward API can read at all (ConvertDownwardAPIFieldLabel);
/// `spec.host` is an old name of `spec.nodeName`.
fn convertible(path: &str) -> Option<&str> {
    match path {
        "spec.host" => Some("spec.nodeName"),
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.restartPolicy"
        | "spec.serviceAccountName"
        | "spec.schedulerName"
        | "status.phase"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Some(path),
        _ => None,
    }
}

/// `metadata.labels['key']` → ("metadata.labels", "key").
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let (field, key) = path.strip_suffix("']")?.split_once("['")?;
    (!field.is_empty()).then_some((field, key))
}

/// ObjectFieldSelector: apiVersion v1 and a field the context allows.
fn field_selector(f: &Value, allowed: &[&str], path: &str, out: &mut Vec<Cause>) {
    let version = str_of(f, "apiVersion");
    let field = str_of(f, "fieldPath");
    if version.is_empty() {
        out.push(required(&format!("{path}.apiVersion"), ""));
        return;
    }
    if field.is_empty() {
        out.push(required(&format!("{path}.fieldPath"), ""));
        return;
    }
    let fp = format!("{path}.fieldPath");
    let converted = if version != "v1" {
        Err(format!("unsupported pod version: {version}"))
    } else if let Some((base, _)) = subscripted(field) {
        if matches!(base, "metadata.annotations" | "metadata.labels") {
            Ok(field)
        } else {
            Err(format!("field label does not support subscript: {field}"))
        }
    } else {
        convertible(field).ok_or_else(|| format!("field label not supported: {field}"))
    };
    let internal = match converted {
        Ok(p) => p,
        Err(e) => {
            out.push(invalid(
                &fp,
                &Value::from(field),
                &format!("error converting fieldPath: {e}"),
            ));
            return;
        }
    };
    match subscripted(internal) {
        Some(("metadata.annotations", key)) => label_name(&key.to_lowercase(), path, out),
        Some(("metadata.labels", key)) => label_name(key, path, out),
        Some((base, _)) => out.push(not_supported(
            path,
            &Value::from(base),
            &["metadata.annotations", "metadata.labels"],
        )),
        None if !allowed.contains(&internal) => {
            out.push(not_supported(&fp, &Value::from(internal), allowed))
        }
        None => {}
    }
}

/// ResourceFieldSelector: a resource the downward API exposes and a
/// divisor that suits it; a volume file must name its container.
fn resource_selector(r: &Value, volume: bool, path: &str, out: &mut Vec<Cause>) {
    let resource = str_of(r, "resource");
    if volume && str_of(r, "containerName").is_empty() {
        out.push(required(&format!("{path}.containerName"), ""));
    } else if resource.is_empty() {
        out.push(required(&format!("{path}.resource"), ""));
    } else if !RESOURCE_FIELDS.contains(&resource)
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        out.push(not_supported(
            &format!("{path}.resource"),
            &Value::from(resource),
            RESOURCE_FIELDS,
        ));
    }
    let divisor = match r.get("divisor") {
        Some(Value::String(s)) => crate::quantity::Quantity::parse(s),
        Some(Value::Number(n)) => crate::quantity::Quantity::parse(&n.to_string()),
        _ => None,
    };
    let Some(d) = divisor.filter(|d| d.milli != 0) else {
        return;
    };
    const SIZES: &str = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";
    let size_ok = (0..=6).any(|k| d.milli == 1000 * 1000i128.pow(k) && (k == 0 || !d.binary))
        || (1..=6).any(|k| d.milli == 1000 * 1024i128.pow(k) && d.binary);
    let detail = match resource {
        "limits.cpu" | "requests.cpu" if d.milli != 1 && d.milli != 1000 => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource".to_owned())
        }
        "limits.memory" | "requests.memory" if !size_ok => Some(format!(
            "only divisor's values {SIZES} are supported with the memory resource"
        )),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !size_ok => Some(format!(
            "only divisor's values {SIZES} are supported with the local ephemeral storage resource"
        )),
        r if (r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-"))
            && !size_ok =>
        {
            Some(format!(
                "only divisor's values {SIZES} are supported with the hugepages resource"
            ))
        }
        _ => None,
    };
    if let Some(detail) = detail {
        out.push(invalid(
            &format!("{path}.divisor"),
            &Value::from(resource),
            &detail,
        ));
    }
}

/// One file of a downwardAPI volume (or projection): a field or a
/// container resource, not both. `ip` is the item's path.
pub(super) fn downward_api_file(item: &Value, ip: &str, out: &mut Vec<Cause>) {
    let field = item.get("fieldRef").filter(|f| !f.is_null());
    let resource = item.get("resourceFieldRef").filter(|r| !r.is_null());
    match (field, resource) {
        (Some(f), r) => {
            field_selector(f, VOLUME_FIELD_PATHS, &format!("{ip}.fieldRef"), out);
            if r.is_some() {
                out.push(invalid(
                    ip,
                    &Value::from("resource"),
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                ));
            }
        }
        (None, Some(r)) => resource_selector(r, true, &format!("{ip}.resourceFieldRef"), out),
        (None, None) => out.push(required(
            ip,
            "one of fieldRef and resourceFieldRef is required",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn causes(c: Value) -> Vec<String> {
        let mut out = Vec::new();
        container_env(&c, "c", &mut out);
        out.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn env_and_env_from() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"env": [
                    {"name": "PLAIN", "value": "x"},
                    {"name": "my.var-1 ok"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                    {"name": "OLD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.host"}}},
                    {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}},
                    {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a.b"}}}],
                    "envFrom": [{"prefix": "P_", "configMapRef": {"name": "cm"}}, {"secretRef": {"name": "s"}}]}),
                vec![],
            ),
            (
                json!({"env": [
                    {"name": ""},
                    {"name": "A=B"},
                    {"name": "X", "valueFrom": {}},
                    {"name": "Y", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "Z", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "Bad", "key": ""}}}]}),
                vec![
                    "c.env[0].name: Required value",
                    r#"c.env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                    r#"c.env[2].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
                    r#"c.env[3].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#,
                    r#"c.env[4].valueFrom.configMapKeyRef.name: Invalid value: "Bad": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                    "c.env[4].valueFrom.configMapKeyRef.key: Required value",
                    r#"c.env[4].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
                ],
            ),
            (
                json!({"env": [
                    {"name": "A", "valueFrom": {"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}},
                    {"name": "B", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.containers"}}},
                    {"name": "C", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.phase"}}},
                    {"name": "D", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}}},
                    {"name": "E", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name['x']"}}},
                    {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}),
                vec![
                    r#"c.env[0].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.name": error converting fieldPath: unsupported pod version: v2"#,
                    r#"c.env[1].valueFrom.fieldRef.fieldPath: Invalid value: "spec.containers": error converting fieldPath: field label not supported: spec.containers"#,
                    r#"c.env[2].valueFrom.fieldRef.fieldPath: Unsupported value: "status.phase": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs""#,
                    r#"c.env[4].valueFrom.fieldRef.fieldPath: Invalid value: "metadata.name['x']": error converting fieldPath: field label does not support subscript: metadata.name['x']"#,
                    "c.env[5].valueFrom.fieldRef.apiVersion: Required value",
                ],
            ),
            (
                json!({"env": [
                    {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}},
                    {"name": "B", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "2"}}},
                    {"name": "C", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024"}}},
                    {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1k"}}},
                    {"name": "E", "valueFrom": {"resourceFieldRef": {"resource": "requests.hugepages-2Mi", "divisor": "1Gi"}}},
                    {"name": "F", "valueFrom": {"resourceFieldRef": {}}}]}),
                vec![
                    r#"c.env[0].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory""#,
                    r#"c.env[1].valueFrom.resourceFieldRef.divisor: Invalid value: "limits.cpu": only divisor's values 1m and 1 are supported with the cpu resource"#,
                    r#"c.env[2].valueFrom.resourceFieldRef.divisor: Invalid value: "limits.memory": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"#,
                    "c.env[5].valueFrom.resourceFieldRef.resource: Required value",
                ],
            ),
            (
                json!({"envFrom": [{}, {"configMapRef": {"name": "a"}, "secretRef": {"name": ""}}, {"prefix": "a=", "secretRef": {"name": "S"}}]}),
                vec![
                    r#"c.envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#,
                    "c.envFrom[1].secretRef.name: Required value",
                    r#"c.envFrom: Invalid value: "": may not have more than one field specified at a time"#,
                    r#"c.envFrom[2].prefix: Invalid value: "a=": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                    r#"c.envFrom[2].secretRef.name: Invalid value: "S": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                ],
            ),
        ];
        for (c, want) in cases {
            assert_eq!(causes(c.clone()), want, "{c}");
        }
    }

    #[test]
    fn downward_api_files() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"path": "l", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}),
                vec![],
            ),
            (
                json!({"path": "c", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}),
                vec![],
            ),
            (
                json!({"path": "n", "fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}),
                vec![
                    r#"i.fieldRef.fieldPath: Unsupported value: "spec.nodeName": supported values: "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid""#,
                ],
            ),
            (
                json!({"path": "c", "resourceFieldRef": {"resource": "limits.cpu"}}),
                vec!["i.resourceFieldRef.containerName: Required value"],
            ),
            (
                json!({"path": "x", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}, "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}),
                vec![
                    r#"i: Invalid value: "resource": fieldRef and resourceFieldRef can not be specified simultaneously"#,
                ],
            ),
            (
                json!({"path": "x"}),
                vec!["i: Required value: one of fieldRef and resourceFieldRef is required"],
            ),
        ];
        for (item, want) in cases {
            let mut out = Vec::new();
            downward_api_file(&item, "i", &mut out);
            let got: Vec<String> = out
                .iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect();
            assert_eq!(got, want, "{item}");
        }
    }
}
