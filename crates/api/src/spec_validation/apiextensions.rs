//! CustomResourceDefinition (apiextensions.k8s.io/v1), as the
//! apiextensions-apiserver validates one: its name is `<plural>.<group>`,
//! the group a domain, the scope and names well formed, exactly one
//! storage version among uniquely named versions, a structural schema for
//! every version, well-formed printer columns and scale paths; group and
//! plural (and, once established, scope and kind) never change.

use serde_json::Value;

use super::{arr, at, immutable, str_of};
use crate::validation::{
    forbidden, invalid, is_dns1035_label, is_dns1123_subdomain, not_supported, required, Cause,
};

const SCOPES: &[&str] = &["Cluster", "Namespaced"];
const COLUMN_TYPES: &str = "boolean,date,integer,number,string";

/// ValidateCustomResourceDefinition (metadata.name beyond the generic
/// rules, spec).
pub(crate) fn crd(obj: &Value, out: &mut Vec<Cause>) {
    let spec = at(obj, "spec");
    let names = at(spec, "names");
    let (group, plural) = (str_of(spec, "group"), str_of(names, "plural"));
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != format!("{plural}.{group}") {
        out.push(invalid(
            "metadata.name",
            &Value::from(name),
            r#"must be spec.names.plural+"."+spec.group"#,
        ));
    }
    if group.is_empty() {
        out.push(required("spec.group", ""));
    } else if let errs @ [_, ..] = is_dns1123_subdomain(group).as_slice() {
        out.push(invalid("spec.group", &Value::from(group), &errs.join(",")));
    } else if !group.contains('.') {
        out.push(invalid(
            "spec.group",
            &Value::from(group),
            "should be a domain with at least one dot",
        ));
    }
    match spec.get("scope").and_then(Value::as_str).unwrap_or("") {
        "" => out.push(required("spec.scope", "")),
        s if !SCOPES.contains(&s) => out.push(not_supported("spec.scope", &Value::from(s), SCOPES)),
        _ => {}
    }

    let versions = arr(spec, "versions");
    let mut seen = std::collections::HashSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let vname = str_of(v, "name");
        if !seen.insert(vname) {
            unique = false;
        }
        if v.get("storage") == Some(&Value::Bool(true)) {
            storage += 1;
        }
        if let errs @ [_, ..] = is_dns1035_label(vname).as_slice() {
            out.push(invalid(
                &format!("{path}.name"),
                &Value::from(vname),
                &errs.join(","),
            ));
        }
        let status = at(v, "subresources").get("status").is_some();
        match v.pointer("/schema/openAPIV3Schema") {
            Some(schema) if schema.is_object() => root_schema(
                schema,
                &format!("{path}.schema.openAPIV3Schema"),
                status,
                out,
            ),
            _ => out.push(required(
                &format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
        }
        subresources(at(v, "subresources"), &format!("{path}.subresources"), out);
        for (j, col) in arr(v, "additionalPrinterColumns").iter().enumerate() {
            column(col, &format!("{path}.additionalPrinterColumns[{j}]"), out);
        }
    }
    if !unique {
        out.push(invalid(
            "spec.versions",
            &Value::from(summary(versions)),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        out.push(invalid(
            "spec.versions",
            &Value::from(summary(versions)),
            "must have exactly one version marked as storage version",
        ));
    }

    for (key, value) in [
        ("plural", plural),
        ("singular", str_of(names, "singular")),
        ("kind", str_of(names, "kind")),
        ("listKind", str_of(names, "listKind")),
    ] {
        if value.is_empty() {
            out.push(required(&format!("spec.names.{key}"), ""));
        }
    }
    crd_names(names, "spec.names", out);
}

/// The versions as Go prints the list in an error (names only).
fn summary(versions: &[Value]) -> String {
    let names: Vec<&str> = versions.iter().map(|v| str_of(v, "name")).collect();
    format!("[{}]", names.join(" "))
}

/// ValidateCustomResourceDefinitionNames.
fn crd_names(names: &Value, path: &str, out: &mut Vec<Cause>) {
    let label = |key: &str, value: &str, lower: bool, out: &mut Vec<Cause>| {
        if value.is_empty() {
            return;
        }
        let checked = if lower {
            value.to_lowercase()
        } else {
            value.to_owned()
        };
        let errs = is_dns1035_label(&checked);
        if !errs.is_empty() {
            let detail = if lower {
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                )
            } else {
                errs.join(",")
            };
            out.push(invalid(
                &format!("{path}.{key}"),
                &Value::from(value),
                &detail,
            ));
        }
    };
    label("plural", str_of(names, "plural"), false, out);
    label("singular", str_of(names, "singular"), false, out);
    label("kind", str_of(names, "kind"), true, out);
    label("listKind", str_of(names, "listKind"), true, out);
    for key in ["shortNames", "categories"] {
        for (i, s) in arr(names, key).iter().enumerate() {
            let s = s.as_str().unwrap_or("");
            let errs = is_dns1035_label(s);
            if !errs.is_empty() {
                out.push(invalid(
                    &format!("{path}.{key}[{i}]"),
                    &Value::from(s),
                    &errs.join(","),
                ));
            }
        }
    }
    let (kind, list_kind) = (str_of(names, "kind"), str_of(names, "listKind"));
    if !kind.is_empty() && kind == list_kind {
        out.push(invalid(
            &format!("{path}.listKind"),
            &Value::from(list_kind),
            "kind and listKind may not be the same",
        ));
    }
}

/// ValidateCustomResourceColumnDefinition.
fn column(col: &Value, path: &str, out: &mut Vec<Cause>) {
    if str_of(col, "name").is_empty() {
        out.push(required(&format!("{path}.name"), ""));
    }
    let detail = format!("must be one of {COLUMN_TYPES}");
    match str_of(col, "type") {
        "" => out.push(required(&format!("{path}.type"), &detail)),
        t if !COLUMN_TYPES.split(',').any(|c| c == t) => {
            out.push(invalid(&format!("{path}.type"), &Value::from(t), &detail))
        }
        _ => {}
    }
    if str_of(col, "jsonPath").is_empty() {
        out.push(required(&format!("{path}.JSONPath"), ""));
    }
}

/// ValidateCustomResourceDefinitionSubresources: the scale paths.
fn subresources(sub: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(scale) = sub.get("scale").filter(|s| s.is_object()) else {
        return;
    };
    for (key, under) in [
        ("specReplicasPath", ".spec"),
        ("statusReplicasPath", ".status"),
    ] {
        let field = format!("{path}.scale.{key}");
        match str_of(scale, key) {
            "" => out.push(required(&field, "")),
            p if !p.starts_with(&format!("{under}.")) => out.push(invalid(
                &field,
                &Value::from(p),
                &format!("should be a json path under {under}"),
            )),
            _ => {}
        }
    }
    if let Some(p) = scale.get("labelSelectorPath").and_then(Value::as_str) {
        if !p.starts_with(".spec.") && !p.starts_with(".status.") {
            out.push(invalid(
                &format!("{path}.scale.labelSelectorPath"),
                &Value::from(p),
                "should be a json path under either .spec or .status",
            ));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Field,
    Item,
}

fn root_schema(s: &Value, path: &str, status: bool, out: &mut Vec<Cause>) {
    if s.get("nullable") == Some(&Value::Bool(true)) {
        out.push(forbidden(
            &format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    if status {
        let t = str_of(s, "type");
        if !t.is_empty() && t != "object" {
            out.push(invalid(
                &format!("{path}.type"),
                &Value::from(t),
                r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
            ));
        }
    }
    schema(s, path, Level::Root, out);
}

/// The structural schema rules and the OpenAPI restrictions, recursively.
fn schema(s: &Value, path: &str, lvl: Level, out: &mut Vec<Cause>) {
    let Some(m) = s.as_object() else {
        return;
    };
    let flag = |k: &str| m.get(k) == Some(&Value::Bool(true));
    let t = str_of(s, "type");
    if m.contains_key("$ref") {
        // (Kubernetes then skips the structural checks of this schema.)
        out.push(forbidden(&format!("{path}.$ref"), "$ref is not supported"));
        return;
    }
    if flag("uniqueItems") {
        out.push(forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        out.push(invalid(
            &format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    let properties = m.get("properties").and_then(Value::as_object);
    if let Some(extra) = m.get("additionalProperties") {
        let allows_all = extra == &Value::Bool(true);
        if properties.is_some_and(|p| !p.is_empty()) && !allows_all {
            out.push(forbidden(
                &format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
    }
    if flag("x-kubernetes-embedded-resource") && t != "object" {
        let field = format!("{path}.type");
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        out.push(if t.is_empty() {
            required(&field, detail)
        } else {
            invalid(&field, &Value::from(t), detail)
        });
    } else if t.is_empty()
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(required(&format!("{path}.type"), detail));
    }
    if lvl == Level::Root && !t.is_empty() && t != "object" {
        out.push(invalid(
            &format!("{path}.type"),
            &Value::from(t),
            "must be object at the root",
        ));
    }
    if !t.is_empty() && !["array", "boolean", "integer", "number", "object", "string"].contains(&t)
    {
        out.push(not_supported(
            &format!("{path}.type"),
            &Value::from(t),
            &["array", "boolean", "integer", "number", "object", "string"],
        ));
    }
    if t == "array" && !m.contains_key("items") {
        out.push(required(&format!("{path}.items"), "must be specified"));
    }
    for (name, p) in properties.into_iter().flatten() {
        schema(p, &format!("{path}.properties[{name}]"), Level::Field, out);
    }
    if let Some(extra) = m.get("additionalProperties").filter(|e| e.is_object()) {
        schema(
            extra,
            &format!("{path}.additionalProperties"),
            Level::Field,
            out,
        );
    }
    if let Some(items) = m.get("items") {
        if items.is_array() {
            out.push(forbidden(
                &format!("{path}.items"),
                "items must be a schema object and not an array",
            ));
        } else {
            schema(items, &format!("{path}.items"), Level::Item, out);
        }
    }
}

/// validateCustomResourceDefinitionSpecUpdate: group and plural never
/// change; scope and kind not once established (rkube establishes a CRD
/// as it is created).
pub(crate) fn crd_update(new: &Value, old: &Value, out: &mut Vec<Cause>) {
    immutable(new, old, "/spec/scope", "spec.scope", out);
    immutable(new, old, "/spec/names/kind", "spec.names.kind", out);
    immutable(new, old, "/spec/group", "spec.group", out);
    immutable(new, old, "/spec/names/plural", "spec.names.plural", out);
}

#[cfg(test)]
mod tests {
    use super::super::testing::{messages, update};
    use serde_json::{json, Value};

    fn good() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                          "listKind": "WidgetList", "shortNames": ["wd"]},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "size": {"type": "integer"},
                            "tags": {"type": "array", "items": {"type": "string"}},
                            "port": {"x-kubernetes-int-or-string": true},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                        "status": {"type": "object"}}}},
                    "subresources": {"status": {}, "scale": {
                        "specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                }],
            },
        })
    }

    /// JSON merge patch (RFC 7386).
    fn merge(target: &mut Value, patch: &Value) {
        let Some(p) = patch.as_object() else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }

    fn with(patch: Value) -> Value {
        let mut v = good();
        merge(&mut v, &patch);
        v
    }

    fn errors(obj: &Value) -> Vec<String> {
        messages(super::super::validate(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            obj,
        ))
    }

    #[test]
    fn a_well_formed_crd_passes() {
        assert_eq!(errors(&good()), Vec::<String>::new());
    }

    /// (what changes, the one error it causes).
    #[test]
    fn each_rule_with_kubernetes_message() {
        let version = |v: Value| {
            let mut base = good()["spec"]["versions"][0].clone();
            merge(&mut base, &v);
            json!({"spec": {"versions": [base]}})
        };
        let schema = |s: Value| {
            let mut v = version(json!({"subresources": null}));
            v["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = s;
            v
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!({"metadata": {"name": "gadgets.example.com"}}),
             r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#),
            (json!({"metadata": {"name": "widgets.example"}, "spec": {"group": "example"}}),
             r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#),
            (json!({"spec": {"scope": "Global"}}),
             r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#),
            (json!({"spec": {"scope": null}}), "spec.scope: Required value"),
            (json!({"spec": {"names": {"singular": "Widget_1"}}}),
             r#"spec.names.singular: Invalid value: "Widget_1": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#),
            (json!({"spec": {"names": {"listKind": "Widget"}}}),
             r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#),
            (json!({"spec": {"names": {"kind": null}}}), "spec.names.kind: Required value"),
            (version(json!({"storage": false})),
             "spec.versions: Invalid value: \"[v1]\": must have exactly one version marked as storage version"),
            (version(json!({"name": "V1"})),
             r#"spec.versions[0].name: Invalid value: "V1": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#),
            (version(json!({"schema": null})),
             "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
            (schema(json!({"type": "string"})),
             r#"spec.versions[0].schema.openAPIV3Schema.type: Invalid value: "string": must be object at the root"#),
            (schema(json!({"properties": {"spec": {"type": "object"}}})),
             "spec.versions[0].schema.openAPIV3Schema.type: Required value: must not be empty at the root"),
            (schema(json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}})),
             "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields"),
            (schema(json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}})),
             "spec.versions[0].schema.openAPIV3Schema.properties[l].items.type: Required value: must not be empty for specified array items"),
            (schema(json!({"type": "object", "properties": {"l": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}})),
             "spec.versions[0].schema.openAPIV3Schema.properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
            (schema(json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false})),
             "spec.versions[0].schema.openAPIV3Schema.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
            (schema(json!({"type": "object", "properties": {"r": {"$ref": "#/definitions/x"}}})),
             "spec.versions[0].schema.openAPIV3Schema.properties[r].$ref: Forbidden: $ref is not supported"),
            (schema(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
             "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
            (version(json!({"additionalPrinterColumns": [{"name": "Size", "type": "int", "jsonPath": ".spec.size"}]})),
             r#"spec.versions[0].additionalPrinterColumns[0].type: Invalid value: "int": must be one of boolean,date,integer,number,string"#),
            (version(json!({"additionalPrinterColumns": [{"name": "Size", "type": "integer"}]})),
             "spec.versions[0].additionalPrinterColumns[0].JSONPath: Required value"),
            (version(json!({"subresources": {"scale": {"specReplicasPath": ".status.x", "statusReplicasPath": ".status.size"}}})),
             r#"spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.x": should be a json path under .spec"#),
        ];
        for (patch, want) in cases {
            let got = errors(&with(patch.clone()));
            assert_eq!(got, vec![want.to_owned()], "{patch}");
        }
        // Two versions of one name: unique names and one storage version.
        let mut two = good();
        let v = two["spec"]["versions"][0].clone();
        two["spec"]["versions"].as_array_mut().unwrap().push(v);
        assert_eq!(
            errors(&two),
            [
                "spec.versions: Invalid value: \"[v1 v1]\": must contain unique version names",
                "spec.versions: Invalid value: \"[v1 v1]\": must have exactly one version marked as storage version",
            ]
        );
    }

    #[test]
    fn names_and_scope_stay() {
        let old = good();
        let new = with(json!({"spec": {"scope": "Cluster", "group": "other.io",
            "names": {"kind": "Gadget", "plural": "gadgets", "shortNames": ["g"]}}}));
        let fields: Vec<String> = update(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &new,
            &old,
        )
        .into_iter()
        .map(|(f, _)| f)
        .collect();
        assert_eq!(
            fields,
            [
                "spec.scope",
                "spec.names.kind",
                "spec.group",
                "spec.names.plural"
            ]
        );
        let ok = with(json!({"spec": {"names": {"shortNames": ["w"]}}}));
        assert!(update(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            &ok,
            &old
        )
        .is_empty());
    }
}
