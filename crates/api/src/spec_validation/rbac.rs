//! rbac.authorization.k8s.io: policy rules (verbs, resources or
//! non-resource URLs), bindings' roleRef and subjects; a binding's roleRef
//! never changes.

use serde_json::Value;

use super::{arr, at, str_of};
use crate::validation::{invalid, is_dns1123_subdomain, not_supported, required, Cause};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Role (namespaced) and ClusterRole rules.
pub(crate) fn rules(obj: &Value, namespaced: bool, out: &mut Vec<Cause>) {
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        let p = format!("rules[{i}]");
        if arr(rule, "verbs").is_empty() {
            out.push(required(
                &format!("{p}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = arr(rule, "nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                out.push(invalid(
                    &format!("{p}.nonResourceURLs"),
                    at(rule, "nonResourceURLs"),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !arr(rule, "apiGroups").is_empty()
                || !arr(rule, "resources").is_empty()
                || !arr(rule, "resourceNames").is_empty()
            {
                out.push(invalid(
                    &format!("{p}.nonResourceURLs"),
                    at(rule, "nonResourceURLs"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if arr(rule, "apiGroups").is_empty() {
            out.push(required(
                &format!("{p}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if arr(rule, "resources").is_empty() {
            out.push(required(
                &format!("{p}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// ValidateRBACName: a path segment.
fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ['/', '%']
        .into_iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// RoleBinding (namespaced) and ClusterRoleBinding.
pub(crate) fn binding(obj: &Value, namespaced: bool, out: &mut Vec<Cause>) {
    let role_ref = at(obj, "roleRef");
    let group = str_of(role_ref, "apiGroup");
    if group != GROUP {
        out.push(not_supported(
            "roleRef.apiGroup",
            &Value::from(group),
            &[GROUP],
        ));
    }
    let kind = str_of(role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        out.push(not_supported("roleRef.kind", &Value::from(kind), kinds));
    }
    let name = str_of(role_ref, "name");
    if name.is_empty() {
        out.push(required("roleRef.name", ""));
    } else {
        for e in path_segment_errors(name) {
            out.push(invalid("roleRef.name", &Value::from(name), &e));
        }
    }
    for (i, s) in arr(obj, "subjects").iter().enumerate() {
        subject(s, namespaced, &format!("subjects[{i}]"), out);
    }
}

fn subject(s: &Value, namespaced: bool, path: &str, out: &mut Vec<Cause>) {
    let name = str_of(s, "name");
    if name.is_empty() {
        out.push(required(&format!("{path}.name"), ""));
    }
    let group = str_of(s, "apiGroup");
    match str_of(s, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for e in is_dns1123_subdomain(name) {
                    out.push(invalid(&format!("{path}.name"), &Value::from(name), &e));
                }
            }
            if !group.is_empty() {
                out.push(not_supported(
                    &format!("{path}.apiGroup"),
                    &Value::from(group),
                    &[""],
                ));
            }
            if !namespaced && str_of(s, "namespace").is_empty() {
                out.push(required(&format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                out.push(not_supported(
                    &format!("{path}.apiGroup"),
                    &Value::from(group),
                    &[GROUP],
                ));
            }
        }
        other => out.push(not_supported(
            &format!("{path}.kind"),
            &Value::from(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// A binding's roleRef is fixed: Kubernetes' answer is to delete and
/// recreate the binding.
pub(crate) fn binding_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    if !super::same(new.get("roleRef"), old.get("roleRef")) {
        out.push(invalid(
            "roleRef",
            at(new, "roleRef"),
            "cannot change roleRef",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{create, messages, update, want};
    use serde_json::{json, Value};

    fn rb(kind: &str, subjects: Value) -> Value {
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "view"}, "subjects": subjects})
    }

    #[test]
    fn creates() {
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "Role",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
                vec![],
            ),
            (
                "Role",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}]}),
                vec!["rules[0].verbs Required"],
            ),
            (
                "Role",
                json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                vec!["rules[0].nonResourceURLs Invalid"],
            ),
            (
                "ClusterRole",
                json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
                vec![],
            ),
            (
                "ClusterRole",
                json!({"rules": [{"verbs": ["get"]}]}),
                vec!["rules[0].apiGroups Required", "rules[0].resources Required"],
            ),
            (
                "RoleBinding",
                rb(
                    "Role",
                    json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
                {"kind": "ServiceAccount", "name": "default", "namespace": "default"}]),
                ),
                vec![],
            ),
            (
                "RoleBinding",
                rb(
                    "Secret",
                    json!([{"kind": "Robot", "name": "r"}, {"kind": "User", "name": ""}]),
                ),
                vec![
                    "roleRef.kind NotSupported",
                    "subjects[0].kind NotSupported",
                    "subjects[1].name Required",
                    "subjects[1].apiGroup NotSupported",
                ],
            ),
            (
                "ClusterRoleBinding",
                rb(
                    "Role",
                    json!([{"kind": "ServiceAccount", "name": "default"}]),
                ),
                vec![
                    "roleRef.kind NotSupported",
                    "subjects[0].namespace Required",
                ],
            ),
            (
                "ClusterRoleBinding",
                json!({"roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": ""}}),
                vec!["roleRef.apiGroup NotSupported", "roleRef.name Required"],
            ),
        ];
        for (kind, obj, w) in cases {
            assert_eq!(
                create("rbac.authorization.k8s.io", kind, &obj),
                want(&w),
                "{kind}: {obj}"
            );
        }
    }

    #[test]
    fn role_ref_is_fixed() {
        let old = rb("ClusterRole", json!([]));
        assert_eq!(
            update(
                "rbac.authorization.k8s.io",
                "RoleBinding",
                &rb("ClusterRole", json!([{"kind": "User", "name": "bob"}])),
                &old
            ),
            vec![]
        );
        let new = rb("Role", json!([]));
        assert_eq!(
            messages(super::super::validate_update(
                "rbac.authorization.k8s.io",
                "RoleBinding",
                &new,
                &old
            )),
            vec![
                r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"view"}: cannot change roleRef"#
            ]
        );
    }
}
