//! The built-in resources: what discovery lists and the REST storage serves.

#[derive(Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const GET_ONLY: &[&str] = &["get"];
/// Read-only resources computed when asked (metrics.k8s.io).
const GET_LIST: &[&str] = &["get", "list"];
const GPU: &[&str] = &["get", "patch", "update"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

macro_rules! sub {
    ($name:literal, $group:literal, $version:literal, $kind:literal, $verbs:expr) => {
        Subresource {
            name: $name,
            group: $group,
            version: $version,
            kind: $kind,
            verbs: $verbs,
        }
    };
}

macro_rules! res {
    ($group:literal $version:literal $kind:literal $plural:literal $singular:literal ns=$ns:literal
     short=[$($short:literal),*] cat=[$($cat:literal),*] verbs=$verbs:expr, subs=[$($sub:expr),* $(,)?]) => {
        Resource {
            group: $group, version: $version, kind: $kind, plural: $plural, singular: $singular,
            namespaced: $ns, short_names: &[$($short),*], categories: &[$($cat),*], verbs: $verbs,
            subresources: &[$($sub),*],
        }
    };
}

static RESOURCES: &[Resource] = &[
    // core/v1
    res!("" "v1" "Binding" "bindings" "binding" ns=true short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    res!("" "v1" "ComponentStatus" "componentstatuses" "componentstatus" ns=false short=["cs"] cat=[] verbs=&["get", "list"], subs=[]),
    res!("" "v1" "ConfigMap" "configmaps" "configmap" ns=true short=["cm"] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "Endpoints" "endpoints" "endpoints" ns=true short=["ep"] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "Event" "events" "event" ns=true short=["ev"] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "LimitRange" "limitranges" "limitrange" ns=true short=["limits"] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "Namespace" "namespaces" "namespace" ns=false short=["ns"] cat=[] verbs=NO_DELETECOLLECTION, subs=[
        sub!("finalize", "", "v1", "Namespace", &["update"]),
        sub!("status", "", "v1", "Namespace", GPU),
    ]),
    res!("" "v1" "Node" "nodes" "node" ns=false short=["no"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("proxy", "", "v1", "NodeProxyOptions", PROXY),
        sub!("status", "", "v1", "Node", GPU),
    ]),
    res!("" "v1" "PersistentVolumeClaim" "persistentvolumeclaims" "persistentvolumeclaim" ns=true short=["pvc"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "", "v1", "PersistentVolumeClaim", GPU),
    ]),
    res!("" "v1" "PersistentVolume" "persistentvolumes" "persistentvolume" ns=false short=["pv"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "", "v1", "PersistentVolume", GPU),
    ]),
    res!("" "v1" "Pod" "pods" "pod" ns=true short=["po"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("attach", "", "v1", "PodAttachOptions", &["create", "get"]),
        sub!("binding", "", "v1", "Binding", CREATE_ONLY),
        sub!("ephemeralcontainers", "", "v1", "Pod", GPU),
        sub!("eviction", "policy", "v1", "Eviction", CREATE_ONLY),
        sub!("exec", "", "v1", "PodExecOptions", &["create", "get"]),
        sub!("log", "", "v1", "Pod", GET_ONLY),
        sub!("portforward", "", "v1", "PodPortForwardOptions", &["create", "get"]),
        sub!("proxy", "", "v1", "PodProxyOptions", PROXY),
        sub!("resize", "", "v1", "Pod", GPU),
        sub!("status", "", "v1", "Pod", GPU),
    ]),
    res!("" "v1" "PodTemplate" "podtemplates" "podtemplate" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "ReplicationController" "replicationcontrollers" "replicationcontroller" ns=true short=["rc"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("scale", "autoscaling", "v1", "Scale", GPU),
        sub!("status", "", "v1", "ReplicationController", GPU),
    ]),
    res!("" "v1" "ResourceQuota" "resourcequotas" "resourcequota" ns=true short=["quota"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "", "v1", "ResourceQuota", GPU),
    ]),
    res!("" "v1" "Secret" "secrets" "secret" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("" "v1" "ServiceAccount" "serviceaccounts" "serviceaccount" ns=true short=["sa"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE_ONLY),
    ]),
    res!("" "v1" "Service" "services" "service" ns=true short=["svc"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("proxy", "", "v1", "ServiceProxyOptions", PROXY),
        sub!("status", "", "v1", "Service", GPU),
    ]),
    // apps/v1
    res!("apps" "v1" "ControllerRevision" "controllerrevisions" "controllerrevision" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("apps" "v1" "DaemonSet" "daemonsets" "daemonset" ns=true short=["ds"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("status", "apps", "v1", "DaemonSet", GPU),
    ]),
    res!("apps" "v1" "Deployment" "deployments" "deployment" ns=true short=["deploy"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("scale", "autoscaling", "v1", "Scale", GPU),
        sub!("status", "apps", "v1", "Deployment", GPU),
    ]),
    res!("apps" "v1" "ReplicaSet" "replicasets" "replicaset" ns=true short=["rs"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("scale", "autoscaling", "v1", "Scale", GPU),
        sub!("status", "apps", "v1", "ReplicaSet", GPU),
    ]),
    res!("apps" "v1" "StatefulSet" "statefulsets" "statefulset" ns=true short=["sts"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("scale", "autoscaling", "v1", "Scale", GPU),
        sub!("status", "apps", "v1", "StatefulSet", GPU),
    ]),
    // events.k8s.io/v1
    res!("events.k8s.io" "v1" "Event" "events" "event" ns=true short=["ev"] cat=[] verbs=ALL_VERBS, subs=[]),
    // authentication.k8s.io/v1
    res!("authentication.k8s.io" "v1" "SelfSubjectReview" "selfsubjectreviews" "selfsubjectreview" ns=false short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    res!("authentication.k8s.io" "v1" "TokenReview" "tokenreviews" "tokenreview" ns=false short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    // authorization.k8s.io/v1
    res!("authorization.k8s.io" "v1" "LocalSubjectAccessReview" "localsubjectaccessreviews" "localsubjectaccessreview" ns=true short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    res!("authorization.k8s.io" "v1" "SelfSubjectAccessReview" "selfsubjectaccessreviews" "selfsubjectaccessreview" ns=false short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    res!("authorization.k8s.io" "v1" "SelfSubjectRulesReview" "selfsubjectrulesreviews" "selfsubjectrulesreview" ns=false short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    res!("authorization.k8s.io" "v1" "SubjectAccessReview" "subjectaccessreviews" "subjectaccessreview" ns=false short=[] cat=[] verbs=CREATE_ONLY, subs=[]),
    // autoscaling
    res!("autoscaling" "v2" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" ns=true short=["hpa"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("status", "autoscaling", "v2", "HorizontalPodAutoscaler", GPU),
    ]),
    res!("autoscaling" "v1" "HorizontalPodAutoscaler" "horizontalpodautoscalers" "horizontalpodautoscaler" ns=true short=["hpa"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("status", "autoscaling", "v1", "HorizontalPodAutoscaler", GPU),
    ]),
    // batch/v1
    res!("batch" "v1" "CronJob" "cronjobs" "cronjob" ns=true short=["cj"] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("status", "batch", "v1", "CronJob", GPU),
    ]),
    res!("batch" "v1" "Job" "jobs" "job" ns=true short=[] cat=["all"] verbs=ALL_VERBS, subs=[
        sub!("status", "batch", "v1", "Job", GPU),
    ]),
    // metrics.k8s.io/v1beta1: usage from the node agents, not stored
    // (apiserver::resource_metrics).
    res!("metrics.k8s.io" "v1beta1" "NodeMetrics" "nodes" "" ns=false short=[] cat=[] verbs=GET_LIST, subs=[]),
    res!("metrics.k8s.io" "v1beta1" "PodMetrics" "pods" "" ns=true short=[] cat=[] verbs=GET_LIST, subs=[]),
    // networking.k8s.io/v1
    res!("networking.k8s.io" "v1" "IngressClass" "ingressclasses" "ingressclass" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("networking.k8s.io" "v1" "Ingress" "ingresses" "ingress" ns=true short=["ing"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "networking.k8s.io", "v1", "Ingress", GPU),
    ]),
    res!("networking.k8s.io" "v1" "NetworkPolicy" "networkpolicies" "networkpolicy" ns=true short=["netpol"] cat=[] verbs=ALL_VERBS, subs=[]),
    // policy/v1
    res!("policy" "v1" "PodDisruptionBudget" "poddisruptionbudgets" "poddisruptionbudget" ns=true short=["pdb"] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "policy", "v1", "PodDisruptionBudget", GPU),
    ]),
    // rbac.authorization.k8s.io/v1
    res!("rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" "clusterrolebindings" "clusterrolebinding" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("rbac.authorization.k8s.io" "v1" "ClusterRole" "clusterroles" "clusterrole" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("rbac.authorization.k8s.io" "v1" "RoleBinding" "rolebindings" "rolebinding" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("rbac.authorization.k8s.io" "v1" "Role" "roles" "role" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    // storage.k8s.io/v1
    res!("storage.k8s.io" "v1" "CSIDriver" "csidrivers" "csidriver" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("storage.k8s.io" "v1" "CSINode" "csinodes" "csinode" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("storage.k8s.io" "v1" "StorageClass" "storageclasses" "storageclass" ns=false short=["sc"] cat=[] verbs=ALL_VERBS, subs=[]),
    res!("storage.k8s.io" "v1" "VolumeAttachment" "volumeattachments" "volumeattachment" ns=false short=[] cat=[] verbs=ALL_VERBS, subs=[
        sub!("status", "storage.k8s.io", "v1", "VolumeAttachment", GPU),
    ]),
    // apiextensions.k8s.io/v1
    res!("apiextensions.k8s.io" "v1" "CustomResourceDefinition" "customresourcedefinitions" "customresourcedefinition" ns=false short=["crd", "crds"] cat=["api-extensions"] verbs=ALL_VERBS, subs=[
        sub!("status", "apiextensions.k8s.io", "v1", "CustomResourceDefinition", GPU),
    ]),
    // scheduling.k8s.io/v1
    res!("scheduling.k8s.io" "v1" "PriorityClass" "priorityclasses" "priorityclass" ns=false short=["pc"] cat=[] verbs=ALL_VERBS, subs=[]),
    // coordination.k8s.io/v1
    res!("coordination.k8s.io" "v1" "Lease" "leases" "lease" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
    // discovery.k8s.io/v1
    res!("discovery.k8s.io" "v1" "EndpointSlice" "endpointslices" "endpointslice" ns=true short=[] cat=[] verbs=ALL_VERBS, subs=[]),
];

pub fn all() -> &'static [Resource] {
    RESOURCES
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// An API group as discovery lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: &'static str,
    pub versions: Vec<&'static str>,
    pub preferred: &'static str,
}

/// Groups in Kubernetes' discovery order, versions preferred-first.
pub fn groups() -> Vec<Group> {
    const ORDER: &[(&str, &[&str])] = &[
        ("", &["v1"]),
        ("apps", &["v1"]),
        ("events.k8s.io", &["v1"]),
        ("authentication.k8s.io", &["v1"]),
        ("authorization.k8s.io", &["v1"]),
        ("autoscaling", &["v2", "v1"]),
        ("batch", &["v1"]),
        ("networking.k8s.io", &["v1"]),
        ("policy", &["v1"]),
        ("rbac.authorization.k8s.io", &["v1"]),
        ("storage.k8s.io", &["v1"]),
        ("apiextensions.k8s.io", &["v1"]),
        ("scheduling.k8s.io", &["v1"]),
        ("coordination.k8s.io", &["v1"]),
        ("discovery.k8s.io", &["v1"]),
        ("metrics.k8s.io", &["v1beta1"]),
    ];
    ORDER
        .iter()
        .map(|(name, versions)| Group {
            name,
            versions: versions.to_vec(),
            preferred: versions[0],
        })
        .collect()
}

/// Where a resource's objects live in the store, as Kubernetes lays out
/// etcd: `/registry/<resource>/...` for core and the legacy groups,
/// `/registry/<group>/<resource>/...` for the rest. All versions of one
/// group/resource share a prefix.
pub fn storage_prefix(res: &Resource, namespace: Option<&str>) -> String {
    let base = match (res.group, res.plural) {
        ("", "services") => "/registry/services/specs".to_owned(),
        ("", "endpoints") => "/registry/services/endpoints".to_owned(),
        ("", "nodes") => "/registry/minions".to_owned(),
        ("", p)
        | (
            "apps"
            | "batch"
            | "autoscaling"
            | "policy"
            | "networking.k8s.io"
            | "storage.k8s.io"
            | "rbac.authorization.k8s.io"
            | "scheduling.k8s.io"
            | "coordination.k8s.io",
            p,
        ) => format!("/registry/{p}"),
        ("discovery.k8s.io", "endpointslices") => "/registry/endpointslices".to_owned(),
        (g, p) => format!("/registry/{g}/{p}"),
    };
    match namespace {
        Some(ns) => format!("{base}/{ns}/"),
        None => format!("{base}/"),
    }
}

pub fn storage_key(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", storage_prefix(res, namespace))
}
