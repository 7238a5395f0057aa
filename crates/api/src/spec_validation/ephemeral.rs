//! Ephemeral containers (`pods/ephemeralcontainers`, what `kubectl debug`
//! adds), as Kubernetes validates their update: they are only ever added;
//! an added one is named uniquely among all the pod's containers, has an
//! image, none of the fields that make no sense for a container started
//! once to look around (ports, probes, lifecycle, resources, restart
//! policy), and a `targetContainerName` that names one of the pod's
//! containers.

use std::collections::HashSet;

use serde_json::Value;

use super::{arr, at, normalized, str_of};
use crate::validation::{
    duplicate, forbidden, invalid, is_dns1123_label, not_found, required, Cause,
};

/// What an ephemeral container may not set.
const NOT_FOR_EPHEMERAL: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
    "restartPolicy",
];

/// Causes for changing the ephemeral containers of `old` to `new`'s.
pub(crate) fn update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    let (added, existing) = (
        arr(ns, "ephemeralContainers"),
        arr(os, "ephemeralContainers"),
    );
    let name_of = |c: &Value| str_of(c, "name").to_owned();
    for o in existing {
        match added.iter().find(|c| name_of(c) == name_of(o)) {
            None => out.push(forbidden(
                "spec.ephemeralContainers",
                &format!(
                    "existing ephemeral containers {:?} may not be removed",
                    name_of(o)
                ),
            )),
            Some(c) if normalized(c) != normalized(o) => out.push(forbidden(
                "spec.ephemeralContainers",
                &format!(
                    "existing ephemeral containers {:?} may not be changed",
                    name_of(o)
                ),
            )),
            Some(_) => {}
        }
    }
    let regular: HashSet<String> = arr(ns, "containers")
        .iter()
        .chain(arr(ns, "initContainers"))
        .map(name_of)
        .collect();
    let mut names = regular.clone();
    for (i, c) in added.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let name = name_of(c);
        if existing.iter().any(|o| name_of(o) == name) {
            names.insert(name);
            continue;
        }
        if name.is_empty() {
            out.push(required(&format!("{path}.name"), ""));
        } else {
            for e in is_dns1123_label(&name) {
                out.push(invalid(
                    &format!("{path}.name"),
                    &Value::from(name.as_str()),
                    &e,
                ));
            }
            if !names.insert(name.clone()) {
                out.push(duplicate(
                    &format!("{path}.name"),
                    &Value::from(name.as_str()),
                ));
            }
        }
        if str_of(c, "image").trim().is_empty() {
            out.push(required(&format!("{path}.image"), ""));
        }
        for key in NOT_FOR_EPHEMERAL {
            let set = c.get(*key).is_some_and(|v| match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            });
            if set {
                out.push(forbidden(
                    &format!("{path}.{key}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = c.get("targetContainerName").and_then(Value::as_str) {
            if !regular.contains(target) {
                out.push(not_found(
                    &format!("{path}.targetContainerName"),
                    &Value::from(target),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::*;
    use serde_json::json;

    fn pod(ephemeral: Value) -> Value {
        json!({"spec": {
            "containers": [{"name": "app", "image": "busybox:stable"}],
            "initContainers": [{"name": "setup", "image": "busybox:stable"}],
            "ephemeralContainers": ephemeral,
        }})
    }

    fn check(new: Value, old: Value) -> Vec<String> {
        let mut out = Vec::new();
        update(&pod(new), &pod(old), &mut out);
        messages(out)
    }

    #[test]
    fn added_containers_are_checked() {
        let dbg = json!({"name": "debugger", "image": "busybox:stable", "stdin": true, "tty": true,
                         "targetContainerName": "app"});
        assert_eq!(check(json!([dbg]), json!([])), Vec::<String>::new());
        // (the added container, the errors)
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (json!({"name": "app", "image": "busybox:stable"}),
             vec![r#"spec.ephemeralContainers[0].name: Duplicate value: "app""#]),
            (json!({"name": "Dbg", "image": "x"}),
             vec![r#"spec.ephemeralContainers[0].name: Invalid value: "Dbg": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"#]),
            (json!({"name": "d"}), vec!["spec.ephemeralContainers[0].image: Required value"]),
            (json!({"name": "d", "image": "x", "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "1"}}}),
             vec!["spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
                  "spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an Ephemeral Container"]),
            (json!({"name": "d", "image": "x", "targetContainerName": "nope"}),
             vec![r#"spec.ephemeralContainers[0].targetContainerName: Not found: "nope""#]),
        ];
        for (c, want) in cases {
            assert_eq!(check(json!([c]), json!([])), want, "{c}");
        }
    }

    #[test]
    fn existing_ones_stay_as_they_are() {
        let d = json!({"name": "d", "image": "x"});
        assert_eq!(
            check(json!([d.clone()]), json!([d.clone()])),
            Vec::<String>::new()
        );
        assert_eq!(
            check(json!([]), json!([d.clone()])),
            [
                r#"spec.ephemeralContainers: Forbidden: existing ephemeral containers "d" may not be removed"#
            ]
        );
        assert_eq!(
            check(json!([{"name": "d", "image": "y"}]), json!([d])),
            [
                r#"spec.ephemeralContainers: Forbidden: existing ephemeral containers "d" may not be changed"#
            ]
        );
    }
}
