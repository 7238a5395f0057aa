//! Type checking of request bodies against the Kubernetes types: a body
//! whose fields have the wrong JSON types is a 400, as Kubernetes' decoder
//! makes it, before anything is stored.

use api::registry::Resource;
use k8s_openapi::api as k;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
use serde::Deserialize;
use serde_json::Value;

use crate::status::{ApiError, ApiResult};

macro_rules! typed {
    ($res:expr, $obj:expr, { $($group:literal $kind:literal => $ty:ty,)* }) => {
        match ($res.group, $res.kind) {
            $( ($group, $kind) => <$ty>::deserialize($obj).map(|_| ()).map_err(|e| e.to_string()), )*
            _ => Ok(()),
        }
    };
}

pub fn check(res: &Resource, obj: &Value) -> ApiResult<()> {
    let result: Result<(), String> = typed!(res, obj, {
        "" "Pod" => k::core::v1::Pod,
        "" "Service" => k::core::v1::Service,
        "" "ConfigMap" => k::core::v1::ConfigMap,
        "" "Secret" => k::core::v1::Secret,
        "" "Namespace" => k::core::v1::Namespace,
        "" "Node" => k::core::v1::Node,
        "" "ServiceAccount" => k::core::v1::ServiceAccount,
        "" "Endpoints" => k::core::v1::Endpoints,
        "" "Event" => k::core::v1::Event,
        "" "LimitRange" => k::core::v1::LimitRange,
        "" "ResourceQuota" => k::core::v1::ResourceQuota,
        "" "PersistentVolume" => k::core::v1::PersistentVolume,
        "" "PersistentVolumeClaim" => k::core::v1::PersistentVolumeClaim,
        "" "ReplicationController" => k::core::v1::ReplicationController,
        "" "PodTemplate" => k::core::v1::PodTemplate,
        "apps" "Deployment" => k::apps::v1::Deployment,
        "apps" "ReplicaSet" => k::apps::v1::ReplicaSet,
        "apps" "StatefulSet" => k::apps::v1::StatefulSet,
        "apps" "DaemonSet" => k::apps::v1::DaemonSet,
        "apps" "ControllerRevision" => k::apps::v1::ControllerRevision,
        "batch" "Job" => k::batch::v1::Job,
        "batch" "CronJob" => k::batch::v1::CronJob,
        "policy" "PodDisruptionBudget" => k::policy::v1::PodDisruptionBudget,
        "coordination.k8s.io" "Lease" => k::coordination::v1::Lease,
        "discovery.k8s.io" "EndpointSlice" => k::discovery::v1::EndpointSlice,
        "events.k8s.io" "Event" => k::events::v1::Event,
        "networking.k8s.io" "Ingress" => k::networking::v1::Ingress,
        "networking.k8s.io" "IngressClass" => k::networking::v1::IngressClass,
        "networking.k8s.io" "NetworkPolicy" => k::networking::v1::NetworkPolicy,
        "rbac.authorization.k8s.io" "Role" => k::rbac::v1::Role,
        "rbac.authorization.k8s.io" "RoleBinding" => k::rbac::v1::RoleBinding,
        "rbac.authorization.k8s.io" "ClusterRole" => k::rbac::v1::ClusterRole,
        "rbac.authorization.k8s.io" "ClusterRoleBinding" => k::rbac::v1::ClusterRoleBinding,
        "storage.k8s.io" "StorageClass" => k::storage::v1::StorageClass,
        "scheduling.k8s.io" "PriorityClass" => k::scheduling::v1::PriorityClass,
        "apiextensions.k8s.io" "CustomResourceDefinition" => apiext::CustomResourceDefinition,
    });
    if res.group == "autoscaling" && res.kind == "HorizontalPodAutoscaler" {
        let r = if res.version == "v1" {
            k::autoscaling::v1::HorizontalPodAutoscaler::deserialize(obj).map(|_| ())
        } else {
            k::autoscaling::v2::HorizontalPodAutoscaler::deserialize(obj).map(|_| ())
        };
        return r.map_err(|e| cannot_handle(res, &e.to_string()));
    }
    result.map_err(|e| cannot_handle(res, &e))
}

fn cannot_handle(res: &Resource, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
        kind = res.kind,
        version = res.version
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_rejected() {
        let deploy = api::registry::find("apps", "v1", "deployments").unwrap();
        let ok = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
                        "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}},
                                 "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(check(deploy, &ok).is_ok());
        let mut bad = ok.clone();
        bad["spec"]["replicas"] = json!("three");
        let err = check(deploy, &bad).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: "),
            "{}",
            err.message
        );
    }
}
