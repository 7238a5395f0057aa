//! Field selectors: `metadata.name=web,status.phase!=Running`, with the
//! fields Kubernetes supports for each kind.

use serde_json::Value;

use crate::registry::Resource;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub equal: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Splits on unescaped commas and unescapes `\,` `\=` `\\`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                parts.last_mut().unwrap().push('\\');
                parts.last_mut().unwrap().push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().unwrap().push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for part in split_escaped(s, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            requirements.push(FieldRequirement {
                field: field.trim().to_owned(),
                value: unescape(value.trim()),
                equal,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn matches(&self, obj: &Value, res: &Resource) -> bool {
        self.requirements.iter().all(|r| {
            let actual = field_value(res, obj, &r.field).unwrap_or_default();
            (actual == r.value) == r.equal
        })
    }
}

/// The fields a kind can be selected by, besides metadata.name and
/// metadata.namespace.
fn supported(res: &Resource) -> &'static [&'static str] {
    match (res.group, res.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("events.k8s.io", "Event") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("", "Node") => &["spec.unschedulable"],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => &["status.replicas"],
        ("batch", "Job") => &["status.successful"],
        ("", "Service") => &["spec.clusterIP", "spec.type"],
        ("", "PersistentVolume") | ("", "PersistentVolumeClaim") => &[],
        _ => &[],
    }
}

/// Checks every field of the selector is selectable for the kind.
pub fn check_supported(res: &Resource, sel: &FieldSelector) -> Result<(), String> {
    for r in &sel.requirements {
        if r.field == "metadata.name" || r.field == "metadata.namespace" {
            continue;
        }
        if !supported(res).contains(&r.field.as_str()) {
            return Err(format!("field label not supported: {}", r.field));
        }
    }
    Ok(())
}

/// The value of a selectable field as a string ("" when unset).
pub fn field_value(res: &Resource, obj: &Value, field: &str) -> Option<String> {
    if res.kind == "Event" && res.group.is_empty() && field == "source" {
        return obj
            .pointer("/source/component")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    if field == "status.podIPs" {
        return obj
            .pointer("/status/podIPs/0/ip")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    let pointer = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => None,
        None => match field {
            // Unset booleans read as false, as Kubernetes' field sets do.
            "spec.hostNetwork" | "spec.unschedulable" => Some("false".into()),
            "status.replicas" | "status.successful" => Some("0".into()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_match_and_support() {
        let pods = crate::registry::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let cases = [
            ("metadata.name=p", true),
            ("metadata.name==p", true),
            ("metadata.name!=p", false),
            ("spec.nodeName=n1,status.phase=Running", true),
            ("status.phase!=Running", false),
            ("spec.nodeName=", false),
            ("spec.hostNetwork=false", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap();
            assert!(check_supported(pods, &s).is_ok(), "{sel}");
            assert_eq!(s.matches(&pod, pods), want, "{sel}");
        }
        let s = FieldSelector::parse("spec.bogus=x").unwrap();
        assert_eq!(
            check_supported(pods, &s).unwrap_err(),
            "field label not supported: spec.bogus"
        );
        assert!(FieldSelector::parse("nonsense").is_err());
        let s = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.requirements[0].value, "a,b");
    }
}
