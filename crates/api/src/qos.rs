//! A pod's quality-of-service class (`status.qosClass`), computed as
//! Kubernetes' `GetPodQOS` does, on the pod's JSON (so the API server and
//! the agent share it):
//!
//! * only `cpu` and `memory` count, and only quantities above zero;
//! * a container's request defaults to its limit (what API defaulting
//!   does for requests left out);
//! * `BestEffort`: no container (init containers included) requests or
//!   limits either;
//! * `Guaranteed`: every container limits both, and per resource the
//!   summed requests equal the summed limits;
//! * `Burstable`: everything else.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::quantity::Quantity;

pub const GUARANTEED: &str = "Guaranteed";
pub const BURSTABLE: &str = "Burstable";
pub const BEST_EFFORT: &str = "BestEffort";

fn positive(v: Option<&Value>) -> Option<i128> {
    v.and_then(Value::as_str)
        .and_then(Quantity::parse)
        .map(|q| q.milli)
        .filter(|m| *m > 0)
}

/// The QoS class of a pod spec (`{"containers": [...], ...}`).
pub fn spec_qos_class(spec: &Value) -> &'static str {
    let containers = ["containers", "initContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten();
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in containers {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        let mut limited = 0;
        for r in ["cpu", "memory"] {
            let l = positive(lim.and_then(|l| l.get(r)));
            let q = match req.and_then(|q| q.get(r)) {
                Some(v) => positive(Some(v)),
                None => l,
            };
            if let Some(q) = q {
                *requests.entry(r).or_default() += q;
            }
            if let Some(l) = l {
                limited += 1;
                *limits.entry(r).or_default() += l;
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return BEST_EFFORT;
    }
    if guaranteed && requests == limits {
        GUARANTEED
    } else {
        BURSTABLE
    }
}

/// The QoS class of a pod (`{"spec": {...}}`).
pub fn pod_qos_class(pod: &Value) -> &'static str {
    spec_qos_class(pod.get("spec").unwrap_or(&Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(requests: Value, limits: Value) -> Value {
        json!({"name": "c", "resources": {"requests": requests, "limits": limits}})
    }

    #[test]
    fn classes() {
        let none = json!(null);
        let cases = [
            (vec![json!({"name": "a"})], BEST_EFFORT),
            (vec![c(json!({}), json!({}))], BEST_EFFORT),
            // Only cpu and memory count; zero quantities do not.
            (
                vec![c(json!({"ephemeral-storage": "1Gi"}), none.clone())],
                BEST_EFFORT,
            ),
            (vec![c(json!({"cpu": "0"}), none.clone())], BEST_EFFORT),
            (
                vec![c(none.clone(), json!({"cpu": "1", "memory": "1Gi"}))],
                GUARANTEED,
            ),
            // Equal quantities written differently.
            (
                vec![c(
                    json!({"cpu": "1000m", "memory": "1024Mi"}),
                    json!({"cpu": "1", "memory": "1Gi"}),
                )],
                GUARANTEED,
            ),
            (vec![c(json!({"cpu": "1"}), none.clone())], BURSTABLE),
            (
                vec![c(
                    json!({"cpu": "500m", "memory": "1Gi"}),
                    json!({"cpu": "1", "memory": "1Gi"}),
                )],
                BURSTABLE,
            ),
            // Memory limit only.
            (vec![c(none.clone(), json!({"memory": "20Mi"}))], BURSTABLE),
            (
                vec![
                    c(none.clone(), json!({"cpu": "1", "memory": "1Gi"})),
                    json!({"name": "b"}),
                ],
                BURSTABLE,
            ),
        ];
        for (containers, want) in cases {
            let pod = json!({"spec": {"containers": containers}});
            assert_eq!(pod_qos_class(&pod), want, "{pod}");
        }
    }

    #[test]
    fn init_containers_count() {
        let pod = json!({"spec": {
            "containers": [c(json!(null), json!({"cpu": "1", "memory": "1Gi"}))],
            "initContainers": [{"name": "i"}],
        }});
        assert_eq!(pod_qos_class(&pod), BURSTABLE);
        let pod = json!({"spec": {
            "containers": [{"name": "a"}],
            "initContainers": [c(json!({"memory": "1Mi"}), json!(null))],
        }});
        assert_eq!(pod_qos_class(&pod), BURSTABLE);
    }
}
