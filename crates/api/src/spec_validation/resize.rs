//! In-place resize (`pods/resize`), as Kubernetes 1.33 validates it: only
//! the CPU and memory requests and limits of the pod's containers change;
//! none of them may be removed; the pod's QoS class stays what it is.
//! (The new spec must otherwise be valid: requests within limits.)

use serde_json::Value;

use super::{arr, at, normalized};
use crate::validation::{forbidden, invalid, Cause};

const RESIZABLE: [&str; 2] = ["cpu", "memory"];

/// Causes for resizing `old`'s containers to `new`'s.
pub fn validate_resize(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    for (i, (n, o)) in arr(ns, "containers")
        .iter()
        .zip(arr(os, "containers"))
        .enumerate()
    {
        let path = format!("spec.containers[{i}].resources");
        for set in ["requests", "limits"] {
            let (nr, or) = (at(at(n, "resources"), set), at(at(o, "resources"), set));
            let other = |r: &Value| -> Value {
                let mut m = r.as_object().cloned().unwrap_or_default();
                for k in RESIZABLE {
                    m.remove(k);
                }
                normalized(&Value::Object(m))
            };
            if other(nr) != other(or) {
                out.push(forbidden(
                    &path,
                    "only cpu and memory resources are mutable",
                ));
            }
            for r in RESIZABLE {
                if or.get(r).is_some() && nr.get(r).is_none() {
                    let what = if set == "limits" {
                        "limits"
                    } else {
                        "requests"
                    };
                    out.push(forbidden(
                        &format!("{path}.{set}[{r}]"),
                        &format!("resource {what} cannot be removed"),
                    ));
                }
            }
        }
    }
    let was = old
        .pointer("/status/qosClass")
        .and_then(Value::as_str)
        .unwrap_or_else(|| crate::qos::pod_qos_class(old));
    if crate::qos::pod_qos_class(new) != was {
        out.push(invalid(
            "spec",
            &Value::from(was),
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::messages;
    use super::*;
    use serde_json::json;

    fn pod(resources: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
               "status": {"qosClass": crate::qos::spec_qos_class(&json!({"containers": [{"resources": resources}]}))}})
    }

    #[test]
    fn what_a_resize_may_do() {
        let burstable = json!({"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}});
        let cases: Vec<(Value, Vec<&str>)> = vec![
            // Limits and requests move within the class.
            (json!({"requests": {"cpu": "150m", "memory": "32Mi"}, "limits": {"cpu": "400m", "memory": "128Mi"}}), vec![]),
            // Requests up to the limits: Guaranteed.
            (json!({"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}),
             vec![r#"spec: Invalid value: "Burstable": Pod QOS Class may not change as a result of resizing"#]),
            (json!({"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "200m"}}),
             vec!["spec.containers[0].resources.limits[memory]: Forbidden: resource limits cannot be removed"]),
            (json!({"requests": {"cpu": "100m", "memory": "32Mi", "ephemeral-storage": "1Gi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}),
             vec!["spec.containers[0].resources: Forbidden: only cpu and memory resources are mutable"]),
        ];
        for (to, want) in cases {
            assert_eq!(
                messages(validate_resize(&pod(to.clone()), &pod(burstable.clone()))),
                want,
                "{to}"
            );
        }
        // BestEffort may not gain requests.
        assert_eq!(
            messages(validate_resize(
                &pod(json!({"requests": {"memory": "40Mi"}})),
                &pod(json!({}))
            )),
            [
                r#"spec: Invalid value: "BestEffort": Pod QOS Class may not change as a result of resizing"#
            ]
        );
    }
}
