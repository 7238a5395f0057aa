use serde_json::{json, Value};

use super::*;

fn v2(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": spec,
        "status": status,
    })
}

fn target_ref() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

/// (what, v2 object, expected v1 object)
fn cases() -> Vec<(&'static str, Value, Value)> {
    vec![
        (
            "cpu utilization only: plain v1 fields, no annotations",
            v2(
                json!({"scaleTargetRef": target_ref(), "minReplicas": 1, "maxReplicas": 5,
                       "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                           "target": {"type": "Utilization", "averageUtilization": 60}}}]}),
                json!({"currentReplicas": 2, "desiredReplicas": 3,
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                           "current": {"averageUtilization": 45, "averageValue": "45m"}}}]}),
            ),
            json!({
                "apiVersion": "autoscaling/v1",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"scaleTargetRef": target_ref(), "minReplicas": 1, "maxReplicas": 5,
                         "targetCPUUtilizationPercentage": 60},
                "status": {"currentReplicas": 2, "desiredReplicas": 3,
                           "currentCPUUtilizationPercentage": 45},
            }),
        ),
        (
            "other metrics, conditions and behavior go to annotations",
            v2(
                json!({"scaleTargetRef": target_ref(), "maxReplicas": 10,
                       "metrics": [
                           {"type": "Resource", "resource": {"name": "memory",
                               "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                           {"type": "Pods", "pods": {"metric": {"name": "qps"},
                               "target": {"type": "AverageValue", "averageValue": "10"}}},
                       ],
                       "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}),
                json!({"desiredReplicas": 1,
                       "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}),
            ),
            json!({
                "apiVersion": "autoscaling/v1",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web", "namespace": "default", "annotations": {
                    HPA_METRICS: json!([
                        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}},
                        {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
                    ]).to_string(),
                    HPA_BEHAVIOR: json!({"scaleDown": {"stabilizationWindowSeconds": 60}}).to_string(),
                    HPA_CONDITIONS: json!([{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]).to_string(),
                }},
                "spec": {"scaleTargetRef": target_ref(), "maxReplicas": 10},
                "status": {"desiredReplicas": 1},
            }),
        ),
    ]
}

#[test]
fn v2_to_v1_table() {
    for (what, v2obj, want) in cases() {
        let got = convert(v2obj, "autoscaling", "v1");
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn v1_to_v2_restores_what_v2_had() {
    for (what, v2obj, v1obj) in cases() {
        let mut want = v2obj.clone();
        // v1 has no averageValue next to the CPU utilization.
        if let Some(c) = want.pointer_mut("/status/currentMetrics/0/resource/current") {
            c.as_object_mut().unwrap().remove("averageValue");
        }
        assert_eq!(convert(v1obj, "autoscaling", "v2"), want, "{what}");
    }
}

#[test]
fn every_metric_type_survives_a_round_trip_through_v1() {
    let metrics = json!([
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}}},
        {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
            "target": {"type": "AverageValue", "averageValue": "200m"}}},
        {"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"},
            "metric": {"name": "rps", "selector": {"matchLabels": {"a": "b"}}},
            "target": {"type": "Value", "value": "2k"}}},
        {"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"},
            "metric": {"name": "lat"}, "target": {"type": "AverageValue", "averageValue": "3"}}},
        {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "x"}}},
            "target": {"type": "AverageValue", "averageValue": "30"}}},
        {"type": "External", "external": {"metric": {"name": "lag"}, "target": {"type": "Value", "value": "5"}}},
    ]);
    let current = json!([
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}},
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "7"}}},
        {"type": "External", "external": {"metric": {"name": "lag"}, "current": {"value": "4"}}},
    ]);
    let original = v2(
        json!({"scaleTargetRef": target_ref(), "minReplicas": 2, "maxReplicas": 9, "metrics": metrics}),
        json!({"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": current}),
    );
    let v1 = convert(original.clone(), "autoscaling", "v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
    assert!(v1["spec"].get("metrics").is_none());
    assert_eq!(convert(v1, "autoscaling", "v2"), original);
}

#[test]
fn same_version_and_other_kinds_only_get_their_api_version() {
    let hpa = v2(json!({"maxReplicas": 3}), json!({}));
    assert_eq!(convert(hpa.clone(), "autoscaling", "v2"), hpa);
    let cr = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget", "spec": {"x": 1}});
    assert_eq!(
        convert(cr, "example.com", "v1"),
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"x": 1}})
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod"});
    assert_eq!(convert(pod.clone(), "", "v1"), pod);
    assert_eq!(
        storage_version("autoscaling", "HorizontalPodAutoscaler"),
        Some("v2")
    );
    assert_eq!(storage_version("apps", "Deployment"), None);
}

#[test]
fn a_v1_object_without_status_gets_none() {
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "a"}, "spec": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 80}});
    let got = convert(v1, "autoscaling", "v2");
    assert!(got.get("status").is_none(), "{got}");
    assert_eq!(
        got["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}
