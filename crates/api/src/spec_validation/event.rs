//! Events (core/v1, and events.k8s.io/v1 stored as them): an event is
//! recorded in its object's namespace (`default` for cluster-scoped
//! objects, or `kube-system` for newer events), as Kubernetes' legacy
//! event validation insists.

use serde_json::Value;

use crate::validation::{invalid, Cause};

pub(crate) fn event(obj: &Value, out: &mut Vec<Cause>) {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved = obj
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new_style = obj.get("eventTime").is_some_and(|t| !t.is_null());
    let ok = if involved.is_empty() {
        ns.is_empty() || ns == "default" || (new_style && ns == "kube-system")
    } else {
        ns == involved || new_style
    };
    if !ok {
        out.push(invalid(
            "involvedObject.namespace",
            &Value::from(involved),
            "does not match event.namespace",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::*;
    use serde_json::json;

    #[test]
    fn events_live_with_their_objects() {
        let check = |ns: &str, involved: Value, event_time: bool| {
            let mut e =
                json!({"metadata": {"name": "e", "namespace": ns}, "involvedObject": involved});
            if event_time {
                e["eventTime"] = json!("2026-01-01T00:00:00.000000Z");
            }
            let mut out = Vec::new();
            event(&e, &mut out);
            messages(out)
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(
            check("web", json!({"kind": "Pod", "namespace": "web"}), false),
            none
        );
        assert_eq!(check("default", json!({"kind": "Node"}), false), none);
        assert_eq!(check("kube-system", json!({"kind": "Node"}), true), none);
        assert_eq!(
            check("other", json!({"kind": "Pod", "namespace": "web"}), false),
            [r#"involvedObject.namespace: Invalid value: "web": does not match event.namespace"#]
        );
        assert_eq!(
            check("web", json!({"kind": "Node"}), false),
            [r#"involvedObject.namespace: Invalid value: "": does not match event.namespace"#]
        );
    }
}
