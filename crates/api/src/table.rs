//! Table printing: the meta.k8s.io/v1 Table `kubectl get` asks for
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the
//! columns and cells Kubernetes v1.33's server-side printers give each
//! kind. The server always prints wide: the priority-1 columns (what
//! `-o wide` shows) are in every row, and kubectl picks what to show.
//!
//! Built-in kinds without a printer get Kubernetes' default table (Name,
//! and Created At as an RFC 3339 timestamp). Custom resources get their
//! CRD version's `additionalPrinterColumns` ([`custom_columns`],
//! [`custom_row`], [`custom_table`]), or Name and Age when it has none.
//!
//! Objects are JSON values as stored. Where Kubernetes would print a value
//! its API server always defaults (a Service's type, a port's protocol,
//! `replicas`), a missing value prints as that default.

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Map, Value};

/// What each row carries in `object` (the `includeObject` parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No `object`.
    None,
    /// A `PartialObjectMetadata` with the object's `metadata`.
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// One column definition (metav1.TableColumnDefinition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: shown by `-o wide`.
    pub priority: i32,
}

impl Column {
    /// The column as it appears in a Table's `columnDefinitions`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME_DESCRIPTION: &str =
    "The object's name (metadata.name), unique among objects of its kind in its namespace.";
const CREATED_DESCRIPTION: &str =
    "When the server created the object (metadata.creationTimestamp), in UTC.";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DESCRIPTION,
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "How long ago the object was created (metadata.creationTimestamp).",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "The names of the containers in the pod template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "The images the pod template's containers run.",
);
const SELECTOR: Column = wide(
    "Selector",
    "string",
    "The label selector that picks the pods this object manages.",
);

const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Created At", "date", CREATED_DESCRIPTION)];

/// NodeMetrics and PodMetrics (metrics.k8s.io), as metrics-server prints them.
const RESOURCE_METRICS: &[Column] = &[
    NAME,
    col("CPU", "string", "CPU usage."),
    col("Memory", "string", "Memory usage."),
    col(
        "Window",
        "string",
        "The time window the usage was measured over.",
    ),
];

const POD: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready containers out of all containers."),
    col(
        "Status",
        "string",
        "A summary of the pod's and its containers' states.",
    ),
    col(
        "Restarts",
        "string",
        "How often the pod's containers restarted, and how long ago the last restart was.",
    ),
    AGE,
    wide("IP", "string", "The pod's first IP address."),
    wide("Node", "string", "The node the pod is bound to."),
    wide(
        "Nominated Node",
        "string",
        "The node the scheduler nominated while preempting for the pod.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "Readiness gates whose condition is True, out of all readiness gates.",
    ),
];

const POD_TEMPLATE: &[Column] = &[
    NAME,
    col(
        "Containers",
        "string",
        "The names of the template's containers.",
    ),
    col(
        "Images",
        "string",
        "The images the template's containers run.",
    ),
    col("Pod Labels", "string", "The labels of the template's pods."),
];

const POD_DISRUPTION_BUDGET: &[Column] = &[
    NAME,
    col("Min Available", "string", "Pods that must stay available."),
    col("Max Unavailable", "string", "Pods that may be unavailable."),
    col(
        "Allowed Disruptions",
        "integer",
        "Pods that may be disrupted now.",
    ),
    AGE,
];

const REPLICA_SET: &[Column] = &[
    NAME,
    col("Desired", "integer", "The number of pods wanted."),
    col("Current", "integer", "The number of pods there are."),
    col("Ready", "integer", "The number of pods that are ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const DAEMON_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Nodes that should run the daemon pod.",
    ),
    col("Current", "integer", "Nodes running the daemon pod."),
    col("Ready", "integer", "Nodes whose daemon pod is ready."),
    col(
        "Up-to-date",
        "integer",
        "Nodes running the current pod template.",
    ),
    col(
        "Available",
        "integer",
        "Nodes whose daemon pod is available.",
    ),
    col(
        "Node Selector",
        "string",
        "The node labels the daemon pods are restricted to.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB: &[Column] = &[
    NAME,
    col("Status", "string", "The job's state."),
    col(
        "Completions",
        "string",
        "Succeeded pods out of the completions wanted.",
    ),
    col(
        "Duration",
        "string",
        "How long the job ran (or has been running).",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOB: &[Column] = &[
    NAME,
    col("Schedule", "string", "The cron schedule."),
    col(
        "Timezone",
        "string",
        "The time zone the schedule is read in.",
    ),
    col("Suspend", "boolean", "Whether new runs are suspended."),
    col("Active", "integer", "The number of running jobs."),
    col(
        "Last Schedule",
        "string",
        "How long ago a job was last scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE: &[Column] = &[
    NAME,
    col("Type", "string", "How the service is exposed."),
    col("Cluster-IP", "string", "The service's cluster IP address."),
    col(
        "External-IP",
        "string",
        "Addresses the service is reachable at from outside the cluster.",
    ),
    col("Port(s)", "string", "The service's ports."),
    AGE,
    wide(
        "Selector",
        "string",
        "The labels of the pods the service routes to.",
    ),
];

const INGRESS: &[Column] = &[
    NAME,
    col("Class", "string", "The IngressClass serving the ingress."),
    col("Hosts", "string", "The hosts the rules match."),
    col("Address", "string", "Where the load balancer is reachable."),
    col("Ports", "string", "The ports the ingress serves on."),
    AGE,
];

const INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "The controller implementing the class.",
    ),
    col(
        "Parameters",
        "string",
        "The resource holding the class's parameters.",
    ),
    AGE,
];

const STATEFUL_SET: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready pods out of the replicas wanted."),
    AGE,
    CONTAINERS,
    IMAGES,
];

const ENDPOINTS: &[Column] = &[
    NAME,
    col("Endpoints", "string", "The first few address:port pairs."),
    AGE,
];

const NODE: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "The node's readiness and schedulability.",
    ),
    col("Roles", "string", "The node's roles, from its labels."),
    AGE,
    col("Version", "string", "The kubelet version."),
    wide("Internal-IP", "string", "The node's internal IP address."),
    wide("External-IP", "string", "The node's external IP address."),
    wide("OS-Image", "string", "The operating system image."),
    wide("Kernel-Version", "string", "The kernel version."),
    wide(
        "Container-Runtime",
        "string",
        "The container runtime and its version.",
    ),
];

const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "How long ago the event last occurred.",
    ),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Why the event happened, in one word."),
    col("Object", "string", "The object the event is about."),
    wide(
        "Subobject",
        "string",
        "The part of the object the event is about.",
    ),
    wide("Source", "string", "The component that reported the event."),
    col("Message", "string", "What happened."),
    wide(
        "First Seen",
        "string",
        "How long ago the event first occurred.",
    ),
    wide("Count", "string", "How often the event occurred."),
    Column {
        priority: 1,
        ..NAME
    },
];

const NAMESPACE: &[Column] = &[NAME, col("Status", "string", "The namespace's phase."), AGE];

const SECRET: &[Column] = &[
    NAME,
    col("Type", "string", "The secret's type."),
    col("Data", "string", "The number of data entries."),
    AGE,
];

const SERVICE_ACCOUNT: &[Column] = &[
    NAME,
    col("Secrets", "string", "The number of secrets listed."),
    AGE,
];

const PERSISTENT_VOLUME: &[Column] = &[
    NAME,
    col("Capacity", "string", "The volume's storage capacity."),
    col("Access Modes", "string", "How the volume can be mounted."),
    col(
        "Reclaim Policy",
        "string",
        "What happens to the volume when its claim goes.",
    ),
    col("Status", "string", "The volume's phase."),
    col("Claim", "string", "The claim bound to the volume."),
    col("StorageClass", "string", "The volume's storage class."),
    col(
        "VolumeAttributesClass",
        "string",
        "The volume's attributes class.",
    ),
    col("Reason", "string", "Why the volume is in its phase."),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

const PERSISTENT_VOLUME_CLAIM: &[Column] = &[
    NAME,
    col("Status", "string", "The claim's phase."),
    col("Volume", "string", "The volume bound to the claim."),
    col("Capacity", "string", "The bound volume's capacity."),
    col(
        "Access Modes",
        "string",
        "How the bound volume can be mounted.",
    ),
    col("StorageClass", "string", "The claim's storage class."),
    col(
        "VolumeAttributesClass",
        "string",
        "The claim's attributes class.",
    ),
    AGE,
    wide("VolumeMode", "string", "Filesystem or Block."),
];

const COMPONENT_STATUS: &[Column] = &[
    NAME,
    col("Status", "string", "Healthy, Unhealthy or Unknown."),
    col("Message", "string", "The health condition's message."),
    col("Error", "string", "The health condition's error."),
];

const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready pods out of the replicas wanted."),
    col(
        "Up-to-date",
        "string",
        "Pods running the current pod template.",
    ),
    col("Available", "string", "Pods that are available."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const HORIZONTAL_POD_AUTOSCALER: &[Column] = &[
    NAME,
    col("Reference", "string", "The object being scaled."),
    col("Targets", "string", "Current and target metric values."),
    col("MinPods", "string", "The fewest replicas to scale to."),
    col("MaxPods", "string", "The most replicas to scale to."),
    col("Replicas", "string", "The current number of replicas."),
    AGE,
];

const CONFIG_MAP: &[Column] = &[
    NAME,
    col("Data", "string", "The number of data entries."),
    AGE,
];

const NETWORK_POLICY: &[Column] = &[
    NAME,
    col("Pod-Selector", "string", "The pods the policy applies to."),
    AGE,
];

const ROLE_BINDING: &[Column] = &[
    NAME,
    col("Role", "string", "The role bound."),
    AGE,
    wide("Users", "string", "The users bound to the role."),
    wide("Groups", "string", "The groups bound to the role."),
    wide(
        "ServiceAccounts",
        "string",
        "The service accounts bound to the role.",
    ),
];

const LEASE: &[Column] = &[NAME, col("Holder", "string", "Who holds the lease."), AGE];

const STORAGE_CLASS: &[Column] = &[
    NAME,
    col("Provisioner", "string", "The volume provisioner."),
    col(
        "ReclaimPolicy",
        "string",
        "What happens to provisioned volumes when their claim goes.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "When claims are bound and provisioned.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "Whether volumes can be expanded.",
    ),
    AGE,
];

const CONTROLLER_REVISION: &[Column] = &[
    NAME,
    col("Controller", "string", "The object owning the revision."),
    col("Revision", "string", "The revision number."),
    AGE,
];

const RESOURCE_QUOTA: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Used out of hard for each quota that is not a limit.",
    ),
    col(
        "Limit",
        "string",
        "Used out of hard for each limits.* quota.",
    ),
    AGE,
];

const PRIORITY_CLASS: &[Column] = &[
    NAME,
    col("Value", "integer", "The priority."),
    col(
        "Global-Default",
        "boolean",
        "Whether pods without a class get this one.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "Whether pods of this class preempt lower-priority ones.",
    ),
];

const RUNTIME_CLASS: &[Column] = &[NAME, col("Handler", "string", "The runtime handler."), AGE];

const VOLUME_ATTACHMENT: &[Column] = &[
    NAME,
    Column {
        format: "name",
        ..col("Attacher", "string", "The driver attaching the volume.")
    },
    col("PV", "string", "The persistent volume attached."),
    col("Node", "string", "The node the volume is attached to."),
    col("Attached", "boolean", "Whether the volume is attached."),
    AGE,
];

const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col("AddressType", "string", "IPv4, IPv6 or FQDN."),
    col("Ports", "string", "The first few ports."),
    col("Endpoints", "string", "The first few endpoint addresses."),
    AGE,
];

const CSI_NODE: &[Column] = &[
    NAME,
    col(
        "Drivers",
        "integer",
        "The number of CSI drivers on the node.",
    ),
    AGE,
];

const CSI_DRIVER: &[Column] = &[
    NAME,
    col(
        "AttachRequired",
        "boolean",
        "Whether volumes need an attach step.",
    ),
    col(
        "PodInfoOnMount",
        "boolean",
        "Whether mounts get the pod's details.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "Whether the driver reports storage capacity.",
    ),
    col(
        "TokenRequests",
        "string",
        "Audiences of the service account tokens passed to the driver.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "Whether volumes are republished periodically.",
    ),
    col("Modes", "string", "The volume lifecycle modes."),
    AGE,
];

const WEBHOOK_CONFIGURATION: &[Column] = &[
    NAME,
    col("Webhooks", "integer", "The number of webhooks."),
    AGE,
];

const CERTIFICATE_SIGNING_REQUEST: &[Column] = &[
    NAME,
    AGE,
    col("SignerName", "string", "The signer asked to sign."),
    col("Requestor", "string", "Who made the request."),
    col(
        "RequestedDuration",
        "string",
        "How long the certificate should be valid.",
    ),
    col("Condition", "string", "Approved, Denied, Failed, Issued."),
];

/// The columns Kubernetes prints for a kind (Name first, except for
/// Events, where it is the last, wide column).
pub fn columns(group: &str, kind: &str) -> &'static [Column] {
    match (group, kind) {
        ("", "Pod") => POD,
        ("", "PodTemplate") => POD_TEMPLATE,
        ("policy", "PodDisruptionBudget") => POD_DISRUPTION_BUDGET,
        ("", "ReplicationController") | ("apps", "ReplicaSet") => REPLICA_SET,
        ("apps", "DaemonSet") => DAEMON_SET,
        ("batch", "Job") => JOB,
        ("batch", "CronJob") => CRON_JOB,
        ("", "Service") => SERVICE,
        ("networking.k8s.io", "Ingress") => INGRESS,
        ("networking.k8s.io", "IngressClass") => INGRESS_CLASS,
        ("apps", "StatefulSet") => STATEFUL_SET,
        ("", "Endpoints") => ENDPOINTS,
        ("", "Node") => NODE,
        ("", "Event") | ("events.k8s.io", "Event") => EVENT,
        ("", "Namespace") => NAMESPACE,
        ("", "Secret") => SECRET,
        ("", "ServiceAccount") => SERVICE_ACCOUNT,
        ("", "PersistentVolume") => PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => PERSISTENT_VOLUME_CLAIM,
        ("", "ComponentStatus") => COMPONENT_STATUS,
        ("apps", "Deployment") => DEPLOYMENT,
        ("autoscaling", "HorizontalPodAutoscaler") => HORIZONTAL_POD_AUTOSCALER,
        ("", "ConfigMap") => CONFIG_MAP,
        ("networking.k8s.io", "NetworkPolicy") => NETWORK_POLICY,
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
        ("coordination.k8s.io", "Lease") => LEASE,
        ("storage.k8s.io", "StorageClass") => STORAGE_CLASS,
        ("apps", "ControllerRevision") => CONTROLLER_REVISION,
        ("", "ResourceQuota") => RESOURCE_QUOTA,
        ("scheduling.k8s.io", "PriorityClass") => PRIORITY_CLASS,
        ("node.k8s.io", "RuntimeClass") => RUNTIME_CLASS,
        ("storage.k8s.io", "VolumeAttachment") => VOLUME_ATTACHMENT,
        ("discovery.k8s.io", "EndpointSlice") => ENDPOINT_SLICE,
        ("storage.k8s.io", "CSINode") => CSI_NODE,
        ("storage.k8s.io", "CSIDriver") => CSI_DRIVER,
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => WEBHOOK_CONFIGURATION,
        ("certificates.k8s.io", "CertificateSigningRequest") => CERTIFICATE_SIGNING_REQUEST,
        ("metrics.k8s.io", "NodeMetrics" | "PodMetrics") => RESOURCE_METRICS,
        // Role, ClusterRole, LimitRange, CustomResourceDefinition, ...
        _ => DEFAULT_COLUMNS,
    }
}

// ---------------------------------------------------------------------------
// Durations and timestamps
// ---------------------------------------------------------------------------

/// Kubernetes' `duration.HumanDuration`: about two significant figures
/// (`45s`, `119s`, `3m5s`, `65m`, `3h10m`, `47h`, `2d3h`, `400d`, `2y70d`,
/// `9y`); up to a second in the future reads `0s`, more is `<invalid>`.
pub fn human_duration(d: chrono::Duration) -> String {
    fn two(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    }
    // Whole seconds, truncated toward zero as Go's int(d.Seconds()) does.
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return two(minutes, "m", seconds % 60, "s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return two(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return two(hours / 24, "d", hours % 24, "h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return two(hours / 24 / 365, "y", (hours / 24) % 365, "d");
    }
    format!("{}y", hours / 24 / 365)
}

/// An RFC 3339 timestamp; None when absent, null, unparsable or Go's zero
/// time (`0001-01-01T00:00:00Z`).
fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    non_zero(DateTime::parse_from_rfc3339(v.as_str()?).ok()?)
}

fn non_zero(t: DateTime<FixedOffset>) -> Option<DateTime<Utc>> {
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    (t.timestamp() != GO_ZERO_TIME).then(|| t.with_timezone(&Utc))
}

fn time_at(obj: &Value, ptr: &str) -> Option<DateTime<Utc>> {
    parse_time(at(obj, ptr))
}

/// Kubernetes' translateTimestampSince.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(time_at(obj, "/metadata/creationTimestamp"), now))
}

fn latest(current: &mut Option<DateTime<Utc>>, t: Option<DateTime<Utc>>) {
    if let Some(t) = t {
        if current.is_none_or(|c| c < t) {
            *current = Some(t);
        }
    }
}

// ---------------------------------------------------------------------------
// Reading JSON
// ---------------------------------------------------------------------------

static NULL: Value = Value::Null;

fn at<'a>(obj: &'a Value, ptr: &str) -> &'a Value {
    obj.pointer(ptr).unwrap_or(&NULL)
}

/// A field is set (Go: a non-nil pointer).
fn has(obj: &Value, ptr: &str) -> bool {
    !at(obj, ptr).is_null()
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    at(obj, ptr).as_str().unwrap_or("")
}

fn opt_int(obj: &Value, ptr: &str) -> Option<i64> {
    let v = at(obj, ptr);
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

fn int(obj: &Value, ptr: &str) -> i64 {
    opt_int(obj, ptr).unwrap_or(0)
}

fn flag(obj: &Value, ptr: &str) -> bool {
    at(obj, ptr).as_bool().unwrap_or(false)
}

fn list<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    at(obj, ptr).as_array().map_or(&[], Vec::as_slice)
}

fn map_len(obj: &Value, ptr: &str) -> usize {
    at(obj, ptr).as_object().map_or(0, Map::len)
}

fn strs<'a>(obj: &'a Value, ptr: &str) -> Vec<&'a str> {
    list(obj, ptr).iter().filter_map(Value::as_str).collect()
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() {
        default
    } else {
        v
    }
}

/// A resource.Quantity or IntOrString as printed: its string form.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn name(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

/// labels.FormatLabels: `k=v` sorted by key, `<none>` when empty.
fn format_labels(v: &Value) -> String {
    let Some(m) = v.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, scalar(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// metav1.LabelSelectorAsSelector(...).String(): requirements sorted by
/// key, set values sorted; null and empty selectors print empty.
fn label_selector(sel: &Value) -> Result<String, ()> {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            reqs.push((k.clone(), format!("{k}={}", scalar(v))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "/key").to_owned();
        let values: BTreeSet<&str> = strs(e, "/values").into_iter().collect();
        let values = values.into_iter().collect::<Vec<_>>().join(",");
        let text = match s(e, "/operator") {
            "In" if !values.is_empty() => format!("{key} in ({values})"),
            "NotIn" if !values.is_empty() => format!("{key} notin ({values})"),
            "Exists" if values.is_empty() => key.clone(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(()),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// metav1.FormatLabelSelector: `<none>` when empty, `<error>` when invalid.
fn format_label_selector(sel: &Value) -> String {
    match label_selector(sel) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s,
        Err(()) => "<error>".into(),
    }
}

/// The names and images of a pod spec's containers, comma-separated.
fn containers_images(pod_spec: &Value) -> (Value, Value) {
    let cs = list(pod_spec, "/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// `a,b,c + 2 more...`, or `<unset>` for none (listWithMoreString).
fn list_with_more(items: &[String], total: usize) -> String {
    const MAX: usize = 3;
    if total > MAX {
        format!("{} + {} more...", items[..MAX].join(","), total - MAX)
    } else if items.is_empty() {
        "<unset>".into()
    } else {
        items.join(",")
    }
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

/// The cells of one object's row, in [`columns`] order (wide columns
/// included).
pub fn row(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match (group, kind) {
        ("", "Pod") => pod_row(obj, now),
        ("", "PodTemplate") => {
            let (c, i) = containers_images(at(obj, "/template/spec"));
            vec![
                name(obj),
                c,
                i,
                json!(format_labels(at(obj, "/template/metadata/labels"))),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let bound = |ptr: &str| {
                if has(obj, ptr) {
                    scalar(at(obj, ptr))
                } else {
                    "N/A".into()
                }
            };
            vec![
                name(obj),
                json!(bound("/spec/minAvailable")),
                json!(bound("/spec/maxUnavailable")),
                json!(int(obj, "/status/disruptionsAllowed")),
                age(obj, now),
            ]
        }
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            let (c, i) = containers_images(at(obj, "/spec/template/spec"));
            let selector = if kind == "ReplicationController" {
                format_labels(at(obj, "/spec/selector"))
            } else {
                format_label_selector(at(obj, "/spec/selector"))
            };
            vec![
                name(obj),
                json!(replicas(obj)),
                json!(int(obj, "/status/replicas")),
                json!(int(obj, "/status/readyReplicas")),
                age(obj, now),
                c,
                i,
                json!(selector),
            ]
        }
        ("apps", "DaemonSet") => {
            let (c, i) = containers_images(at(obj, "/spec/template/spec"));
            vec![
                name(obj),
                json!(int(obj, "/status/desiredNumberScheduled")),
                json!(int(obj, "/status/currentNumberScheduled")),
                json!(int(obj, "/status/numberReady")),
                json!(int(obj, "/status/updatedNumberScheduled")),
                json!(int(obj, "/status/numberAvailable")),
                json!(format_labels(at(obj, "/spec/template/spec/nodeSelector"))),
                age(obj, now),
                c,
                i,
                json!(format_label_selector(at(obj, "/spec/selector"))),
            ]
        }
        ("batch", "Job") => job_row(obj, now),
        ("batch", "CronJob") => {
            let (c, i) = containers_images(at(obj, "/spec/jobTemplate/spec/template/spec"));
            let last = match time_at(obj, "/status/lastScheduleTime") {
                Some(t) => since(Some(t), now),
                None => "<none>".into(),
            };
            let suspend = match at(obj, "/spec/suspend").as_bool() {
                Some(true) => "True",
                // Defaulted to false.
                _ => "False",
            };
            vec![
                name(obj),
                json!(s(obj, "/spec/schedule")),
                json!(at(obj, "/spec/timeZone").as_str().unwrap_or("<none>")),
                json!(suspend),
                json!(list(obj, "/status/active").len()),
                json!(last),
                age(obj, now),
                c,
                i,
                json!(format_label_selector(at(
                    obj,
                    "/spec/jobTemplate/spec/selector"
                ))),
            ]
        }
        ("", "Service") => service_row(obj, now),
        ("networking.k8s.io", "Ingress") => ingress_row(obj, now),
        ("networking.k8s.io", "IngressClass") => {
            let parameters = if has(obj, "/spec/parameters") {
                let mut p = s(obj, "/spec/parameters/kind").to_owned();
                if let Some(g) = at(obj, "/spec/parameters/apiGroup").as_str() {
                    p = format!("{p}.{g}");
                }
                format!("{p}/{}", s(obj, "/spec/parameters/name"))
            } else {
                "<none>".into()
            };
            vec![
                name(obj),
                json!(s(obj, "/spec/controller")),
                json!(parameters),
                age(obj, now),
            ]
        }
        ("apps", "StatefulSet") => {
            let (c, i) = containers_images(at(obj, "/spec/template/spec"));
            vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    int(obj, "/status/readyReplicas"),
                    replicas(obj)
                )),
                age(obj, now),
                c,
                i,
            ]
        }
        ("", "Endpoints") => vec![name(obj), json!(format_endpoints(obj)), age(obj, now)],
        ("", "Node") => node_row(obj, now),
        ("", "Event") => event_row(&EventView::core(obj), now),
        ("events.k8s.io", "Event") => event_row(&EventView::events_v1(obj), now),
        ("", "Namespace") => vec![
            name(obj),
            // Set to Active on creation.
            json!(or(s(obj, "/status/phase"), "Active")),
            age(obj, now),
        ],
        ("", "Secret") => vec![
            name(obj),
            json!(or(s(obj, "/type"), "Opaque")),
            json!(map_len(obj, "/data")),
            age(obj, now),
        ],
        ("", "ServiceAccount") => {
            vec![name(obj), json!(list(obj, "/secrets").len()), age(obj, now)]
        }
        ("", "PersistentVolume") => persistent_volume_row(obj, now),
        ("", "PersistentVolumeClaim") => persistent_volume_claim_row(obj, now),
        ("", "ComponentStatus") => {
            let healthy = list(obj, "/conditions")
                .iter()
                .find(|c| c["type"] == "Healthy");
            let (status, message, error) = match healthy {
                Some(c) => (
                    if c["status"] == "True" {
                        "Healthy"
                    } else {
                        "Unhealthy"
                    },
                    s(c, "/message"),
                    s(c, "/error"),
                ),
                None => ("Unknown", "", ""),
            };
            vec![name(obj), json!(status), json!(message), json!(error)]
        }
        ("apps", "Deployment") => {
            let (c, i) = containers_images(at(obj, "/spec/template/spec"));
            let selector =
                label_selector(at(obj, "/spec/selector")).unwrap_or_else(|()| "<invalid>".into());
            vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    int(obj, "/status/readyReplicas"),
                    replicas(obj)
                )),
                json!(int(obj, "/status/updatedReplicas")),
                json!(int(obj, "/status/availableReplicas")),
                age(obj, now),
                c,
                i,
                json!(selector),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let reference = format!(
                "{}/{}",
                s(obj, "/spec/scaleTargetRef/kind"),
                s(obj, "/spec/scaleTargetRef/name")
            );
            // minReplicas defaults to 1.
            let min = opt_int(obj, "/spec/minReplicas").unwrap_or(1);
            vec![
                name(obj),
                json!(reference),
                json!(hpa_targets(obj)),
                json!(min.to_string()),
                json!(int(obj, "/spec/maxReplicas")),
                json!(int(obj, "/status/currentReplicas")),
                age(obj, now),
            ]
        }
        ("", "ConfigMap") => vec![
            name(obj),
            json!(map_len(obj, "/data") + map_len(obj, "/binaryData")),
            age(obj, now),
        ],
        ("networking.k8s.io", "NetworkPolicy") => {
            // A missing podSelector is the empty one, printed the same.
            vec![
                name(obj),
                json!(format_label_selector(at(obj, "/spec/podSelector"))),
                age(obj, now),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for subject in list(obj, "/subjects") {
                let n = s(subject, "/name").to_owned();
                match s(subject, "/kind") {
                    "ServiceAccount" => sas.push(format!("{}/{n}", s(subject, "/namespace"))),
                    "User" => users.push(n),
                    "Group" => groups.push(n),
                    _ => {}
                }
            }
            vec![
                name(obj),
                json!(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                age(obj, now),
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name(obj),
            json!(s(obj, "/spec/holderIdentity")),
            age(obj, now),
        ],
        ("storage.k8s.io", "StorageClass") => {
            let mut n = s(obj, "/metadata/name").to_owned();
            let annotation = |k: &str| {
                at(obj, "/metadata/annotations")
                    .get(k)
                    .and_then(Value::as_str)
                    == Some("true")
            };
            if annotation("storageclass.kubernetes.io/is-default-class")
                || annotation("storageclass.beta.kubernetes.io/is-default-class")
            {
                n.push_str(" (default)");
            }
            vec![
                json!(n),
                json!(s(obj, "/provisioner")),
                json!(or(s(obj, "/reclaimPolicy"), "Delete")),
                json!(or(s(obj, "/volumeBindingMode"), "Immediate")),
                json!(flag(obj, "/allowVolumeExpansion")),
                age(obj, now),
            ]
        }
        ("apps", "ControllerRevision") => {
            let owner = list(obj, "/metadata/ownerReferences")
                .iter()
                .find(|o| o["controller"] == true);
            let controller = match owner {
                Some(o) => {
                    let api_version = s(o, "/apiVersion");
                    let group = api_version.split_once('/').map_or("", |(g, _)| g);
                    let kind = s(o, "/kind");
                    let group_kind = if group.is_empty() {
                        kind.to_owned()
                    } else {
                        format!("{kind}.{group}")
                    };
                    if group_kind.is_empty() {
                        s(o, "/name").to_owned()
                    } else {
                        format!("{}/{}", group_kind.to_lowercase(), s(o, "/name"))
                    }
                }
                None => "<none>".into(),
            };
            vec![
                name(obj),
                json!(controller),
                json!(int(obj, "/revision")),
                age(obj, now),
            ]
        }
        ("", "ResourceQuota") => {
            let mut hard: Vec<(&String, &Value)> = at(obj, "/status/hard")
                .as_object()
                .map(|h| h.iter().collect())
                .unwrap_or_default();
            hard.sort_by(|a, b| a.0.cmp(b.0));
            let (mut requests, mut limits) = (Vec::new(), Vec::new());
            for (resource, limit) in hard {
                let used = match at(obj, "/status/used").get(resource.as_str()) {
                    Some(v) => scalar(v),
                    None => "0".into(),
                };
                let text = format!("{resource}: {used}/{}", scalar(limit));
                if resource.starts_with("limits.") {
                    limits.push(text);
                } else {
                    requests.push(text);
                }
            }
            vec![
                name(obj),
                json!(requests.join(", ")),
                json!(limits.join(", ")),
                age(obj, now),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name(obj),
            json!(int(obj, "/value")),
            json!(flag(obj, "/globalDefault")),
            age(obj, now),
            json!(or(s(obj, "/preemptionPolicy"), "PreemptLowerPriority")),
        ],
        ("node.k8s.io", "RuntimeClass") => {
            vec![name(obj), json!(s(obj, "/handler")), age(obj, now)]
        }
        ("storage.k8s.io", "VolumeAttachment") => vec![
            name(obj),
            json!(s(obj, "/spec/attacher")),
            json!(s(obj, "/spec/source/persistentVolumeName")),
            json!(s(obj, "/spec/nodeName")),
            json!(flag(obj, "/status/attached")),
            age(obj, now),
        ],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports = list(obj, "/ports");
            let shown: Vec<String> = ports
                .iter()
                .take(3)
                .map(|p| match (p.get("port"), p.get("name")) {
                    (Some(n), _) if n.is_number() => n.to_string(),
                    (_, Some(Value::String(n))) => n.clone(),
                    _ => "*".into(),
                })
                .collect();
            let addresses: Vec<String> = list(obj, "/endpoints")
                .iter()
                .flat_map(|e| strs(e, "/addresses"))
                .map(str::to_owned)
                .collect();
            let shown_addresses: Vec<String> = addresses.iter().take(3).cloned().collect();
            vec![
                name(obj),
                json!(s(obj, "/addressType")),
                json!(list_with_more(&shown, ports.len())),
                json!(list_with_more(&shown_addresses, addresses.len())),
                age(obj, now),
            ]
        }
        ("storage.k8s.io", "CSINode") => vec![
            name(obj),
            json!(list(obj, "/spec/drivers").len()),
            age(obj, now),
        ],
        ("storage.k8s.io", "CSIDriver") => {
            let token_requests = if has(obj, "/spec/tokenRequests") {
                list(obj, "/spec/tokenRequests")
                    .iter()
                    .map(|t| s(t, "/audience"))
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                "<unset>".into()
            };
            let modes = strs(obj, "/spec/volumeLifecycleModes").join(",");
            vec![
                name(obj),
                json!(at(obj, "/spec/attachRequired").as_bool().unwrap_or(true)),
                json!(flag(obj, "/spec/podInfoOnMount")),
                json!(flag(obj, "/spec/storageCapacity")),
                json!(token_requests),
                json!(flag(obj, "/spec/requiresRepublish")),
                // Defaulted to Persistent.
                json!(or(&modes, "Persistent")),
                age(obj, now),
            ]
        }
        (
            "admissionregistration.k8s.io",
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration",
        ) => vec![
            name(obj),
            json!(list(obj, "/webhooks").len()),
            age(obj, now),
        ],
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            let conditions = list(obj, "/status/conditions");
            let has_condition = |t: &str| conditions.iter().any(|c| c["type"] == t);
            let mut status = if has_condition("Denied") {
                "Denied"
            } else if has_condition("Approved") {
                "Approved"
            } else {
                "Pending"
            }
            .to_owned();
            if has_condition("Failed") {
                status.push_str(",Failed");
            }
            if !s(obj, "/status/certificate").is_empty() {
                status.push_str(",Issued");
            }
            let duration = match opt_int(obj, "/spec/expirationSeconds") {
                Some(secs) => human_duration(chrono::Duration::seconds(secs)),
                None => "<none>".into(),
            };
            vec![
                name(obj),
                age(obj, now),
                json!(or(s(obj, "/spec/signerName"), "<none>")),
                json!(s(obj, "/spec/username")),
                json!(duration),
                json!(status),
            ]
        }
        ("metrics.k8s.io", "NodeMetrics" | "PodMetrics") => {
            // A pod's usage is its containers' summed.
            let usages: Vec<&Value> = match obj.get("usage") {
                Some(u) => vec![u],
                None => obj
                    .get("containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("usage"))
                    .collect(),
            };
            let total = |k: &str| -> String {
                let parts: Vec<&str> = usages
                    .iter()
                    .filter_map(|u| u.get(k).and_then(Value::as_str))
                    .collect();
                match parts[..] {
                    [one] => one.to_owned(),
                    _ => parts
                        .iter()
                        .filter_map(|p| crate::quantity::Quantity::parse(p))
                        .sum::<crate::quantity::Quantity>()
                        .to_string(),
                }
            };
            vec![
                name(obj),
                json!(total("cpu")),
                json!(total("memory")),
                json!(s(obj, "/window")),
            ]
        }
        _ => {
            let created = time_at(obj, "/metadata/creationTimestamp")
                .map_or("0001-01-01T00:00:00Z".into(), |t| {
                    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                });
            vec![name(obj), json!(created)]
        }
    }
}

/// `spec.replicas`, which Kubernetes defaults to 1.
fn replicas(obj: &Value) -> i64 {
    opt_int(obj, "/spec/replicas").unwrap_or(1)
}

fn condition_true(obj: &Value, ptr: &str, ty: &str) -> bool {
    list(obj, ptr)
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn pod_row(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // The API server sets Pending on creation.
    let phase = or(s(pod, "/status/phase"), "Pending");
    let mut reason = or(s(pod, "/status/reason"), phase).to_owned();
    for c in list(pod, "/status/conditions") {
        if c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }

    let init_specs = list(pod, "/spec/initContainers");
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| s(c, "/name") == name)
            .is_some_and(|c| s(c, "/restartPolicy") == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();
    let total = list(pod, "/spec/containers").len() + sidecars;

    let (mut restarts, mut sidecar_restarts, mut ready) = (0i64, 0i64, 0usize);
    let (mut last_restart, mut last_sidecar_restart) = (None, None);
    let mut initializing = false;
    for (i, c) in list(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let finished = time_at(c, "/lastState/terminated/finishedAt");
        restarts += int(c, "/restartCount");
        latest(&mut last_restart, finished);
        let sidecar = is_sidecar(s(c, "/name"));
        if sidecar {
            sidecar_restarts += int(c, "/restartCount");
            latest(&mut last_sidecar_restart, finished);
        }
        let terminated = has(c, "/state/terminated");
        if terminated && int(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && flag(c, "/started") {
            if flag(c, "/ready") {
                ready += 1;
            }
            continue;
        }
        let waiting = s(c, "/state/waiting/reason");
        reason = if terminated {
            match s(c, "/state/terminated/reason") {
                "" if int(c, "/state/terminated/signal") != 0 => {
                    format!("Init:Signal:{}", int(c, "/state/terminated/signal"))
                }
                "" => format!("Init:ExitCode:{}", int(c, "/state/terminated/exitCode")),
                r => format!("Init:{r}"),
            }
        } else if !waiting.is_empty() && waiting != "PodInitializing" {
            format!("Init:{waiting}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "/status/conditions", "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += int(c, "/restartCount");
            latest(
                &mut last_restart,
                time_at(c, "/lastState/terminated/finishedAt"),
            );
            let waiting = s(c, "/state/waiting/reason");
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if has(c, "/state/terminated") {
                reason = match s(c, "/state/terminated/reason") {
                    "" if int(c, "/state/terminated/signal") != 0 => {
                        format!("Signal:{}", int(c, "/state/terminated/signal"))
                    }
                    "" => format!("ExitCode:{}", int(c, "/state/terminated/exitCode")),
                    r => r.to_owned(),
                };
            } else if flag(c, "/ready") && has(c, "/state/running") {
                has_running = true;
                ready += 1;
            }
        }
        // Some container still runs: not Completed after all.
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "/status/conditions", "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if has(pod, "/metadata/deletionTimestamp") {
        if s(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    let ip = list(pod, "/status/podIPs")
        .first()
        .map_or_else(|| s(pod, "/status/podIP"), |p| s(p, "/ip"));
    let gates = list(pod, "/spec/readinessGates");
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let conditions = list(pod, "/status/conditions");
        let passed = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        age(pod, now),
        json!(or(ip, "<none>")),
        json!(or(s(pod, "/spec/nodeName"), "<none>")),
        json!(or(s(pod, "/status/nominatedNodeName"), "<none>")),
        json!(gates),
    ]
}

/// The TableRow conditions Kubernetes attaches to a finished pod's row.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match s(pod, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

fn job_row(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match opt_int(job, "/spec/completions") {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int(job, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        time_at(job, "/status/startTime"),
        time_at(job, "/status/completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    // The first condition of a type decides.
    let conditions = list(job, "/status/conditions");
    let is = |ty: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == ty)
            .is_some_and(|c| c["status"] == "True")
    };
    let status = if is("Complete") {
        "Complete"
    } else if is("Failed") {
        "Failed"
    } else if has(job, "/metadata/deletionTimestamp") {
        "Terminating"
    } else if is("Suspended") {
        "Suspended"
    } else if is("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (c, i) = containers_images(at(job, "/spec/template/spec"));
    vec![
        name(job),
        json!(status),
        json!(completions),
        json!(duration),
        age(job, now),
        c,
        i,
        json!(format_label_selector(at(job, "/spec/selector"))),
    ]
}

fn service_row(svc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ty = or(s(svc, "/spec/type"), "ClusterIP");
    let cluster_ip = list(svc, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(svc, "/spec/clusterIP"));
    let external_ips = strs(svc, "/spec/externalIPs");
    let external = match ty {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut all: Vec<String> = load_balancer_addresses(svc).into_iter().collect();
            all.extend(external_ips.iter().map(|ip| ip.to_string()));
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_owned(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = or(s(p, "/protocol"), "TCP");
            match int(p, "/nodePort") {
                n if n > 0 => format!("{}:{n}/{protocol}", int(p, "/port")),
                _ => format!("{}/{protocol}", int(p, "/port")),
            }
        })
        .collect();
    vec![
        name(svc),
        json!(ty),
        json!(or(cluster_ip, "<none>")),
        json!(external),
        json!(or(&ports.join(","), "<none>")),
        age(svc, now),
        json!(format_labels(at(svc, "/spec/selector"))),
    ]
}

/// The load balancer's IPs (else hostnames), sorted and deduplicated.
fn load_balancer_addresses(obj: &Value) -> BTreeSet<String> {
    list(obj, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| or(s(i, "/ip"), s(i, "/hostname")).to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

fn ingress_row(ing: &Value, now: DateTime<Utc>) -> Vec<Value> {
    const MAX: usize = 3;
    let rules = list(ing, "/spec/rules");
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = s(rule, "/host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if list(ing, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name(ing),
        json!(at(ing, "/spec/ingressClassName")
            .as_str()
            .unwrap_or("<none>")),
        json!(hosts),
        json!(load_balancer_addresses(ing)
            .into_iter()
            .collect::<Vec<_>>()
            .join(",")),
        json!(ports),
        age(ing, now),
    ]
}

/// formatEndpoints: up to three `ip:port`s, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(ep, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let (mut shown, mut count, mut more) = (Vec::new(), 0usize, false);
    for subset in subsets {
        let addresses = list(subset, "/addresses");
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(s(a, "/ip").to_owned());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(a, "/ip");
                let port = int(port, "/port");
                shown.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    if more {
        format!("{} + {} more...", shown.join(","), count - MAX)
    } else {
        shown.join(",")
    }
}

fn node_row(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let ready = list(node, "/status/conditions")
        .iter()
        .rev()
        .find(|c| c["type"] == "Ready");
    let mut status = vec![match ready {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(node, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, "/metadata/labels").as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_owned());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(role) = v.as_str().filter(|r| !r.is_empty()) {
                    roles.insert(role.to_owned());
                }
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |ty: &str| {
        list(node, "/status/addresses")
            .iter()
            .find(|a| a["type"] == ty)
            .map_or("<none>", |a| s(a, "/address"))
    };
    vec![
        name(node),
        json!(status.join(",")),
        json!(or(&roles, "<none>")),
        age(node, now),
        json!(s(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or(s(node, "/status/nodeInfo/osImage"), "<unknown>")),
        json!(or(s(node, "/status/nodeInfo/kernelVersion"), "<unknown>")),
        json!(or(
            s(node, "/status/nodeInfo/containerRuntimeVersion"),
            "<unknown>"
        )),
    ]
}

/// An Event's printed fields, from core/v1 or events.k8s.io/v1.
struct EventView<'a> {
    obj: &'a Value,
    first: &'static str,
    last: &'static str,
    count: &'static str,
    source: &'static str,
    regarding: &'static str,
    message: &'static str,
    controller: &'static str,
}

impl<'a> EventView<'a> {
    fn core(obj: &'a Value) -> Self {
        EventView {
            obj,
            first: "/firstTimestamp",
            last: "/lastTimestamp",
            count: "/count",
            source: "/source",
            regarding: "/involvedObject",
            message: "/message",
            controller: "/reportingComponent",
        }
    }

    fn events_v1(obj: &'a Value) -> Self {
        EventView {
            obj,
            first: "/deprecatedFirstTimestamp",
            last: "/deprecatedLastTimestamp",
            count: "/deprecatedCount",
            source: "/deprecatedSource",
            regarding: "/regarding",
            message: "/note",
            controller: "/reportingController",
        }
    }
}

fn event_row(e: &EventView, now: DateTime<Utc>) -> Vec<Value> {
    let obj = e.obj;
    let first = match time_at(obj, e.first) {
        Some(t) => since(Some(t), now),
        None => since(time_at(obj, "/eventTime"), now),
    };
    let mut last = match time_at(obj, e.last) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(obj, e.count);
    if has(obj, "/series") {
        last = since(time_at(obj, "/series/lastObservedTime"), now);
        count = int(obj, "/series/count");
    } else if count == 0 {
        // Singleton events of the new API have no count.
        count = 1;
    }
    let regarding = at(obj, e.regarding);
    let kind = s(regarding, "/kind").to_lowercase();
    let target = match s(regarding, "/name") {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = or(s(at(obj, e.source), "/component"), s(obj, e.controller));
    let host = or(s(at(obj, e.source), "/host"), s(obj, "/reportingInstance"));
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(regarding, "/fieldPath")),
        json!(source),
        json!(s(obj, e.message).trim()),
        json!(first),
        json!(count),
        name(obj),
    ]
}

/// helper.GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order.
fn access_modes(modes: &[&str]) -> String {
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| modes.contains(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta storage-class annotation wins over spec.storageClassName.
fn storage_class(obj: &Value) -> &str {
    at(obj, "/metadata/annotations")
        .get("volume.beta.kubernetes.io/storage-class")
        .and_then(Value::as_str)
        .unwrap_or_else(|| s(obj, "/spec/storageClassName"))
}

fn persistent_volume_row(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = if has(pv, "/spec/claimRef") {
        format!(
            "{}/{}",
            s(pv, "/spec/claimRef/namespace"),
            s(pv, "/spec/claimRef/name")
        )
    } else {
        String::new()
    };
    let phase = if has(pv, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        // New volumes start Pending.
        or(s(pv, "/status/phase"), "Pending")
    };
    vec![
        name(pv),
        json!(scalar(at(pv, "/spec/capacity/storage"))),
        json!(access_modes(&strs(pv, "/spec/accessModes"))),
        json!(or(s(pv, "/spec/persistentVolumeReclaimPolicy"), "Retain")),
        json!(phase),
        json!(claim),
        json!(storage_class(pv)),
        json!(at(pv, "/spec/volumeAttributesClassName")
            .as_str()
            .unwrap_or("<unset>")),
        json!(s(pv, "/status/reason")),
        age(pv, now),
        json!(or(s(pv, "/spec/volumeMode"), "Filesystem")),
    ]
}

fn persistent_volume_claim_row(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if has(pvc, "/metadata/deletionTimestamp") {
        "Terminating"
    } else {
        // New claims start Pending.
        or(s(pvc, "/status/phase"), "Pending")
    };
    let volume = s(pvc, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            scalar(at(pvc, "/status/capacity/storage")),
            access_modes(&strs(pvc, "/status/accessModes")),
        )
    };
    vec![
        name(pvc),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(at(pvc, "/spec/volumeAttributesClassName")
            .as_str()
            .unwrap_or("<unset>")),
        age(pvc, now),
        json!(or(s(pvc, "/spec/volumeMode"), "Filesystem")),
    ]
}

/// The Targets column: `cpu: 50%/80%, memory: <unknown>/1Gi + 1 more...`.
/// Reads autoscaling/v2 (`spec.metrics`) and autoscaling/v1
/// (`targetCPUUtilizationPercentage`); with neither, the 80% CPU
/// utilization target Kubernetes defaults to.
fn hpa_targets(hpa: &Value) -> String {
    const MAX: usize = 2;
    let metrics = list(hpa, "/spec/metrics");
    if metrics.is_empty() {
        let current = opt_int(hpa, "/status/currentCPUUtilizationPercentage")
            .map_or("<unknown>".into(), |c| format!("{c}%"));
        let target = opt_int(hpa, "/spec/targetCPUUtilizationPercentage").unwrap_or(80);
        return format!("cpu: {current}/{target}%");
    }
    // A *resource.Quantity as Go prints it; a nil one is `<nil>`.
    let quantity = |v: &Value| match v {
        Value::Null => "<nil>".to_owned(),
        v => scalar(v),
    };
    let statuses = list(hpa, "/status/currentMetrics");
    let mut shown = Vec::new();
    for (i, spec) in metrics.iter().enumerate() {
        // The status of the same source, by position, when reported.
        let status = |field: &str| {
            statuses
                .get(i)
                .map(|st| at(st, &format!("/{field}")))
                .filter(|v| !v.is_null())
        };
        let text = match s(spec, "/type") {
            ty @ ("External" | "Object") => {
                let field = if ty == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = at(spec, &format!("/{field}/target"));
                if has(target, "/averageValue") {
                    let current = status(field)
                        .map(|st| at(st, "/current/averageValue"))
                        .filter(|v| !v.is_null())
                        .map_or("<unknown>".into(), quantity);
                    format!("{current}/{} (avg)", quantity(at(target, "/averageValue")))
                } else {
                    let current = status(field)
                        .map_or("<unknown>".into(), |st| quantity(at(st, "/current/value")));
                    format!("{current}/{}", quantity(at(target, "/value")))
                }
            }
            "Pods" => {
                let current = status("pods").map_or("<unknown>".into(), |st| {
                    quantity(at(st, "/current/averageValue"))
                });
                format!(
                    "{current}/{}",
                    quantity(at(spec, "/pods/target/averageValue"))
                )
            }
            ty @ ("Resource" | "ContainerResource") => {
                let field = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let source = at(spec, &format!("/{field}"));
                let resource = s(source, "/name");
                if has(source, "/target/averageValue") {
                    let current = status(field).map_or("<unknown>".into(), |st| {
                        quantity(at(st, "/current/averageValue"))
                    });
                    format!(
                        "{resource}: {current}/{}",
                        quantity(at(source, "/target/averageValue"))
                    )
                } else {
                    let current = status(field)
                        .and_then(|st| opt_int(st, "/current/averageUtilization"))
                        .map_or("<unknown>".into(), |u| format!("{u}%"));
                    let target = opt_int(source, "/target/averageUtilization")
                        .map_or("<auto>".into(), |u| format!("{u}%"));
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".into(),
        };
        shown.push(text);
    }
    if shown.len() > MAX {
        let more = shown.len() - MAX;
        format!("{} + {more} more...", shown[..MAX].join(", "))
    } else {
        shown.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
    }
}

fn assemble(
    columns: Vec<Value>,
    rows: Vec<(Vec<Value>, Option<Value>, &Value)>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, conditions, obj)| {
            let mut r = Map::new();
            r.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                r.insert("conditions".into(), c);
            }
            if let Some(o) = row_object(obj, include) {
                r.insert("object".into(), o);
            }
            Value::Object(r)
        })
        .collect();
    let metadata = if list_meta.is_null() {
        json!({})
    } else {
        list_meta
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A meta.k8s.io/v1 Table of built-in objects of one kind. `list_meta` is
/// the table's `metadata` (`resourceVersion`, `continue`,
/// `remainingItemCount`).
pub fn table(
    group: &str,
    kind: &str,
    objs: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let columns = columns(group, kind).iter().map(Column::to_json).collect();
    let rows = objs
        .iter()
        .map(|o| {
            let conditions = match (group, kind) {
                ("", "Pod") => pod_row_conditions(o),
                _ => None,
            };
            (row(group, kind, o, now), conditions, o)
        })
        .collect();
    assemble(columns, rows, include, list_meta)
}

// ---------------------------------------------------------------------------
// Custom resources
// ---------------------------------------------------------------------------

/// A CRD version with no `additionalPrinterColumns` prints its age.
fn default_printer_columns() -> Vec<Value> {
    vec![json!({
        "name": "Age",
        "type": "date",
        "description": CREATED_DESCRIPTION,
        "jsonPath": ".metadata.creationTimestamp",
    })]
}

fn effective_printer_columns(defs: &[Value]) -> std::borrow::Cow<'_, [Value]> {
    if defs.is_empty() {
        std::borrow::Cow::Owned(default_printer_columns())
    } else {
        std::borrow::Cow::Borrowed(defs)
    }
}

/// The `columnDefinitions` for a CRD version's `additionalPrinterColumns`
/// (`name`, `type`, `format`, `description`, `priority`, `jsonPath`): Name
/// first, then the columns as given; a version without columns gets Age
/// (a `date` column on `.metadata.creationTimestamp`), as Kubernetes
/// serves it. No Age is added to a version that has columns.
pub fn custom_columns(defs: &[Value]) -> Vec<Value> {
    let defs = effective_printer_columns(defs);
    let mut out = vec![NAME.to_json()];
    for d in defs.iter() {
        let path = s(d, "/jsonPath");
        let description = match s(d, "/description") {
            "" => format!("Printer column at JSONPath {path}."),
            given => given.to_owned(),
        };
        out.push(json!({
            "name": s(d, "/name"),
            "type": s(d, "/type"),
            "format": s(d, "/format"),
            "description": description,
            "priority": int(d, "/priority"),
        }));
    }
    out
}

/// The cells of a custom resource's row, in [`custom_columns`] order.
/// Each column takes the first value its JSONPath finds (a missing value,
/// or a path that does not evaluate, is null); `integer`, `number` and
/// `boolean` columns keep only values of that type, `date` columns print
/// how long ago the RFC 3339 time was, `string` columns print the value as
/// text (objects and arrays as JSON).
pub fn custom_row(defs: &[Value], obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let defs = effective_printer_columns(defs);
    let mut cells = vec![name(obj)];
    for d in defs.iter() {
        let value = json_path(obj, s(d, "/jsonPath"))
            .ok()
            .and_then(|mut found| (!found.is_empty()).then(|| found.swap_remove(0)));
        cells.push(match value {
            Some(v) => custom_cell(s(d, "/type"), &v, now),
            None => Value::Null,
        });
    }
    cells
}

/// apiextensions' cellForJSONValue, and text for string columns.
fn custom_cell(ty: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match (ty, v) {
        (_, Value::Null) => Value::Null,
        ("string", v) => json!(go_text(v)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            None => json!(n.as_f64().unwrap_or(0.0) as i64),
        },
        ("number", Value::Number(n)) => json!(n.as_f64().unwrap_or(0.0)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(t)) => {
            if t.is_empty() || t == "null" {
                json!("<unknown>")
            } else {
                match DateTime::parse_from_rfc3339(t) {
                    Ok(t) => json!(since(non_zero(t), now)),
                    Err(_) => json!("<invalid>"),
                }
            }
        }
        _ => Value::Null,
    }
}

/// A Table of custom resources printed with a CRD version's
/// `additionalPrinterColumns` (see [`custom_columns`]).
pub fn custom_table(
    printer_columns: &[Value],
    objs: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let columns = custom_columns(printer_columns);
    let rows = objs
        .iter()
        .map(|o| (custom_row(printer_columns, o, now), None, o))
        .collect();
    assemble(columns, rows, include, list_meta)
}

/// How Go's text/template prints a value (client-go jsonpath's
/// PrintResults): strings as they are, numbers as `%v` does, objects and
/// arrays as compact JSON.
fn go_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Null => "<nil>".into(),
        other => {
            let mut out = String::new();
            go_json(other, &mut out);
            out
        }
    }
}

/// Go's `%v` for a float64: the shortest representation, in exponent form
/// below 1e-4 and from 1e21 on.
fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return format!("{f}");
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..21).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// encoding/json's output: keys sorted, `<`, `>` and `&` escaped.
fn go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(&Value::String(k.clone()), out);
                out.push(':');
                go_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(x, out);
            }
            out.push(']');
        }
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e21 {
                out.push_str(&format!("{f:.0}"));
            } else {
                out.push_str(&n.to_string());
            }
        }
        other => {
            let text = other.to_string();
            for c in text.chars() {
                match c {
                    '<' => out.push_str("\\u003c"),
                    '>' => out.push_str("\\u003e"),
                    '&' => out.push_str("\\u0026"),
                    '\u{2028}' => out.push_str("\\u2028"),
                    '\u{2029}' => out.push_str("\\u2029"),
                    c => out.push(c),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// JSONPath
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Segment {
    /// `.name`, `['name']`
    Field(String),
    /// `..name`
    Descendant(String),
    /// `.*`, `[*]`
    Wildcard,
    /// `[start:end:step]`; `[n]` is `[n:n+1]`.
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `[?(@.path op literal)]`, `[?(@.path)]`
    Filter(Vec<Segment>, Option<(String, Operand)>),
}

#[derive(Debug)]
enum Operand {
    Literal(Value),
    Path(Vec<Segment>),
}

/// Evaluates a JSONPath the way client-go's jsonpath does for printer
/// columns (missing keys allowed): `.a.b`, `.a[0]`, `.a[-1]`, `.a[1:3]`,
/// `.a[*].b`, `.*`, `..b`, `['a.b']`, `.a\.b`, and filters such as
/// `.status.conditions[?(@.type=="Ready")].status`. The path may be
/// wrapped in `{}` and start with `$`. All matches, in order; an error for
/// a path that does not parse or an index out of range.
pub fn json_path(obj: &Value, path: &str) -> Result<Vec<Value>, String> {
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        p = inner.trim();
    }
    let p = p.strip_prefix('$').unwrap_or(p);
    let segments = parse_path(p)?;
    Ok(eval_path(&segments, vec![obj])?
        .into_iter()
        .cloned()
        .collect())
}

fn parse_path(p: &str) -> Result<Vec<Segment>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                let (name, next) = read_name(&chars, i + 2);
                if name.is_empty() {
                    return Err(format!("invalid JSONPath {p:?}: empty name after '..'"));
                }
                out.push(Segment::Descendant(name));
                i = next;
            }
            '.' if chars.get(i + 1) == Some(&'*') => {
                out.push(Segment::Wildcard);
                i += 2;
            }
            '.' => {
                let (name, next) = read_name(&chars, i + 1);
                // A bare "." selects the current object.
                if !name.is_empty() {
                    out.push(Segment::Field(name));
                }
                i = next;
            }
            '[' => {
                let end = matching_bracket(&chars, i)
                    .ok_or_else(|| format!("invalid JSONPath {p:?}: unclosed '['"))?;
                let inner: String = chars[i + 1..end].iter().collect();
                out.push(
                    parse_bracket(inner.trim())
                        .map_err(|e| format!("invalid JSONPath {p:?}: {e}"))?,
                );
                i = end + 1;
            }
            c if c.is_whitespace() => i += 1,
            c => return Err(format!("invalid JSONPath {p:?}: unexpected {c:?}")),
        }
    }
    Ok(out)
}

/// A field name up to the next unescaped `.` or `[`; `\.` is a dot.
fn read_name(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                name.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, i)
}

/// The `]` closing the `[` at `open`, skipping quotes and parentheses.
fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let (mut depth, mut quote) = (0i32, None::<char>);
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if (q == '\'' || q == '"') && s.len() >= 2 && s.ends_with(q) {
        Some(s[1..s.len() - 1].to_owned())
    } else {
        None
    }
}

fn parse_bracket(inner: &str) -> Result<Segment, String> {
    if inner == "*" {
        return Ok(Segment::Wildcard);
    }
    if let Some(key) = unquote(inner) {
        return Ok(Segment::Field(key));
    }
    if let Some(f) = inner.strip_prefix('?') {
        let f = f.trim();
        let f = f
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or("a filter must read [?(...)]")?;
        return parse_filter(f.trim());
    }
    let number = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("bad array index {s:?}"))
        }
    };
    let parts: Vec<&str> = inner.split(':').collect();
    match parts.as_slice() {
        [n] => {
            let n = number(n)?.ok_or("empty array index")?;
            // [-1] runs to the end.
            let end = if n == -1 { None } else { Some(n + 1) };
            Ok(Segment::Slice(Some(n), end, None))
        }
        [a, b] => Ok(Segment::Slice(number(a)?, number(b)?, None)),
        [a, b, c] => Ok(Segment::Slice(number(a)?, number(b)?, number(c)?)),
        _ => Err(format!("bad array subscript {inner:?}")),
    }
}

fn parse_filter(f: &str) -> Result<Segment, String> {
    const OPS: [&str; 6] = ["==", "!=", "<=", ">=", "<", ">"];
    // The first operator outside quotes.
    let mut quote = None;
    let mut found = None;
    for (j, c) in f.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, _) => {
                if let Some(op) = OPS.iter().find(|op| f[j..].starts_with(**op)) {
                    found = Some((j, *op));
                    break;
                }
            }
        }
    }
    let relative = |s: &str| -> Result<Vec<Segment>, String> {
        let s = s.trim();
        let rest = s
            .strip_prefix('@')
            .ok_or_else(|| format!("filter operand {s:?} must start with @"))?;
        parse_path(rest)
    };
    match found {
        None => Ok(Segment::Filter(relative(f)?, None)),
        Some((j, op)) => {
            let left = relative(&f[..j])?;
            let right = f[j + op.len()..].trim();
            let operand = if right.starts_with('@') {
                Operand::Path(relative(right)?)
            } else if let Some(text) = unquote(right) {
                Operand::Literal(Value::String(text))
            } else {
                Operand::Literal(
                    serde_json::from_str(right)
                        .map_err(|_| format!("bad filter operand {right:?}"))?,
                )
            };
            Ok(Segment::Filter(left, Some((op.to_owned(), operand))))
        }
    }
}

fn eval_path<'a>(
    segments: &[Segment],
    mut current: Vec<&'a Value>,
) -> Result<Vec<&'a Value>, String> {
    for seg in segments {
        let mut next = Vec::new();
        for v in current {
            match seg {
                Segment::Field(name) => {
                    if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                        next.push(x);
                    }
                }
                Segment::Descendant(name) => {
                    let mut stack = vec![v];
                    while let Some(x) = stack.pop() {
                        match x {
                            Value::Object(m) => {
                                if let Some(found) = m.get(name) {
                                    next.push(found);
                                }
                                stack.extend(m.values().rev());
                            }
                            Value::Array(a) => stack.extend(a.iter().rev()),
                            _ => {}
                        }
                    }
                }
                Segment::Wildcard => match v {
                    Value::Object(m) => {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        next.extend(keys.into_iter().map(|k| &m[k.as_str()]));
                    }
                    Value::Array(a) => next.extend(a.iter()),
                    _ => {}
                },
                Segment::Slice(..) | Segment::Filter(..) if v.is_null() => {}
                Segment::Slice(start, end, step) => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| "not an array and cannot be indexed".to_owned())?;
                    let len = a.len() as i64;
                    let mut from = start.unwrap_or(0);
                    if from < 0 {
                        from += len;
                    }
                    let mut to = end.unwrap_or(len);
                    if to < 0 {
                        to += len;
                    }
                    if from == to {
                        continue;
                    }
                    if from < 0 || from >= len || to < 0 || to > len {
                        return Err(format!("array index out of bounds: length {len}"));
                    }
                    if from > to {
                        return Err(format!(
                            "starting index {from} is greater than ending index {to}"
                        ));
                    }
                    let step = match step {
                        Some(s) if *s <= 0 => return Err("step must be > 0".into()),
                        Some(s) => *s as usize,
                        None => 1,
                    };
                    next.extend(a[from as usize..to as usize].iter().step_by(step));
                }
                Segment::Filter(left, cmp) => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| "not an array and cannot be filtered".to_owned())?;
                    for item in a {
                        if filter_passes(item, left, cmp.as_ref())? {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    Ok(current)
}

fn filter_passes(
    item: &Value,
    left: &[Segment],
    cmp: Option<&(String, Operand)>,
) -> Result<bool, String> {
    let lefts = eval_path(left, vec![item])?;
    let Some(l) = single(&lefts)? else {
        return Ok(false);
    };
    let Some((op, operand)) = cmp else {
        return Ok(true);
    };
    let r = match operand {
        Operand::Literal(v) => v,
        Operand::Path(p) => {
            let rights = eval_path(p, vec![item])?;
            match single(&rights)? {
                Some(r) => r,
                None => return Ok(false),
            }
        }
    };
    let ordering = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    Ok(match op.as_str() {
        "==" => ordering.map_or(l == r, |o| o.is_eq()),
        "!=" => ordering.map_or(l != r, |o| o.is_ne()),
        "<" => ordering.is_some_and(|o| o.is_lt()),
        ">" => ordering.is_some_and(|o| o.is_gt()),
        "<=" => ordering.is_some_and(|o| o.is_le()),
        ">=" => ordering.is_some_and(|o| o.is_ge()),
        _ => false,
    })
}

fn single<'a>(found: &[&'a Value]) -> Result<Option<&'a Value>, String> {
    match found {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err("can only compare one element at a time".into()),
    }
}
