//! Table printing: the meta.k8s.io/v1 Table `kubectl get` asks for, with
//! the columns Kubernetes' printers give each kind (priority 1 = `-o wide`).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

const fn col(name: &'static str, type_: &'static str, priority: i32) -> Column {
    Column {
        name,
        type_,
        format: "",
        description: "",
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = col("Age", "string", 0);

/// Kubernetes' duration.HumanDuration.
pub fn human_duration(d: chrono::Duration) -> String {
    /// `3m5s`, or `3m` when the smaller unit is zero.
    fn two(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    }
    let seconds = d.num_seconds();
    let (minutes, hours) = (seconds / 60, seconds / 3600);
    match () {
        _ if seconds < -1 => "<invalid>".into(),
        _ if seconds < 0 => "0s".into(),
        _ if seconds < 60 * 2 => format!("{seconds}s"),
        _ if minutes < 10 => two(minutes, "m", seconds % 60, "s"),
        _ if minutes < 60 * 3 => format!("{minutes}m"),
        _ if hours < 8 => two(hours, "h", minutes % 60, "m"),
        _ if hours < 48 => format!("{hours}h"),
        _ if hours < 24 * 8 => two(hours / 24, "d", hours % 24, "h"),
        _ if hours < 24 * 365 * 2 => format!("{}d", hours / 24),
        _ if hours < 24 * 365 * 8 => two(hours / 24 / 365, "y", (hours / 24) % 365, "d"),
        _ => format!("{}y", hours / 24 / 365),
    }
}

fn since(ts: Option<&Value>, now: DateTime<Utc>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => human_duration(now - t.with_timezone(&Utc)),
        None => "<unknown>".into(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(obj.pointer("/metadata/creationTimestamp"), now))
}

fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_owned()
    }
}

fn arr<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn map_str(obj: &Value, ptr: &str) -> String {
    let Some(m) = obj.pointer(ptr).and_then(Value::as_object) else {
        return String::new();
    };
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A metav1.LabelSelector in its string form (`app=web,tier in (a,b)`).
fn selector_str(sel: &Value) -> String {
    crate::selector::from_label_selector_json(sel)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn containers_images(spec: &Value) -> (String, String) {
    let cs = arr(spec, "/containers");
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c["image"].as_str().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

/// The columns for a built-in kind.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    let c = |v: &[Column]| v.to_vec();
    match (group, kind) {
        ("", "Pod") => c(&[NAME, col("Ready", "string", 0), col("Status", "string", 0), col("Restarts", "string", 0), AGE,
            col("IP", "string", 1), col("Node", "string", 1), col("Nominated Node", "string", 1), col("Readiness Gates", "string", 1)]),
        ("", "Namespace") => c(&[NAME, col("Status", "string", 0), AGE]),
        ("", "ConfigMap") => c(&[NAME, col("Data", "integer", 0), AGE]),
        ("", "Secret") => c(&[NAME, col("Type", "string", 0), col("Data", "integer", 0), AGE]),
        ("", "ServiceAccount") => c(&[NAME, col("Secrets", "integer", 0), AGE]),
        ("", "Service") => c(&[NAME, col("Type", "string", 0), col("Cluster-IP", "string", 0), col("External-IP", "string", 0),
            col("Port(s)", "string", 0), AGE, col("Selector", "string", 1)]),
        ("", "Endpoints") => c(&[NAME, col("Endpoints", "string", 0), AGE]),
        ("", "Node") => c(&[NAME, col("Status", "string", 0), col("Roles", "string", 0), AGE, col("Version", "string", 0),
            col("Internal-IP", "string", 1), col("External-IP", "string", 1), col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1), col("Container-Runtime", "string", 1)]),
        ("", "Event") => c(&[col("Last Seen", "string", 0), col("Type", "string", 0), col("Reason", "string", 0),
            col("Object", "string", 0), col("Message", "string", 0)]),
        ("", "PersistentVolumeClaim") => c(&[NAME, col("Status", "string", 0), col("Volume", "string", 0), col("Capacity", "string", 0),
            col("Access Modes", "string", 0), col("StorageClass", "string", 0), col("VolumeAttributesClass", "string", 0), AGE,
            col("VolumeMode", "string", 1)]),
        ("", "PersistentVolume") => c(&[NAME, col("Capacity", "string", 0), col("Access Modes", "string", 0), col("Reclaim Policy", "string", 0),
            col("Status", "string", 0), col("Claim", "string", 0), col("StorageClass", "string", 0), col("VolumeAttributesClass", "string", 0),
            col("Reason", "string", 0), AGE, col("VolumeMode", "string", 1)]),
        ("apps", "Deployment") => c(&[NAME, col("Ready", "string", 0), col("Up-to-date", "integer", 0), col("Available", "integer", 0), AGE,
            col("Containers", "string", 1), col("Images", "string", 1), col("Selector", "string", 1)]),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => c(&[NAME, col("Desired", "integer", 0), col("Current", "integer", 0),
            col("Ready", "integer", 0), AGE, col("Containers", "string", 1), col("Images", "string", 1), col("Selector", "string", 1)]),
        ("apps", "StatefulSet") => c(&[NAME, col("Ready", "string", 0), AGE, col("Containers", "string", 1), col("Images", "string", 1)]),
        ("apps", "DaemonSet") => c(&[NAME, col("Desired", "integer", 0), col("Current", "integer", 0), col("Ready", "integer", 0),
            col("Up-to-date", "integer", 0), col("Available", "integer", 0), col("Node Selector", "string", 0), AGE,
            col("Containers", "string", 1), col("Images", "string", 1), col("Selector", "string", 1)]),
        ("apps", "ControllerRevision") => c(&[NAME, col("Controller", "string", 0), col("Revision", "integer", 0), AGE]),
        ("batch", "Job") => c(&[NAME, col("Status", "string", 0), col("Completions", "string", 0), col("Duration", "string", 0), AGE,
            col("Containers", "string", 1), col("Images", "string", 1), col("Selector", "string", 1)]),
        ("batch", "CronJob") => c(&[NAME, col("Schedule", "string", 0), col("Timezone", "string", 0), col("Suspend", "boolean", 0),
            col("Active", "integer", 0), col("Last Schedule", "string", 0), AGE, col("Containers", "string", 1), col("Images", "string", 1),
            col("Selector", "string", 1)]),
        ("coordination.k8s.io", "Lease") => c(&[NAME, col("Holder", "string", 0), AGE]),
        ("networking.k8s.io", "Ingress") => c(&[NAME, col("Class", "string", 0), col("Hosts", "string", 0), col("Address", "string", 0),
            col("Ports", "string", 0), AGE]),
        ("networking.k8s.io", "IngressClass") => c(&[NAME, col("Controller", "string", 0), col("Parameters", "string", 0), AGE]),
        ("networking.k8s.io", "NetworkPolicy") => c(&[NAME, col("Pod-Selector", "string", 0), AGE]),
        ("storage.k8s.io", "StorageClass") => c(&[NAME, col("Provisioner", "string", 0), col("ReclaimPolicy", "string", 0),
            col("VolumeBindingMode", "string", 0), col("AllowVolumeExpansion", "string", 0), AGE]),
        ("scheduling.k8s.io", "PriorityClass") => c(&[NAME, col("Value", "integer", 0), col("Global-Default", "boolean", 0), AGE,
            col("PreemptionPolicy", "string", 0)]),
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => c(&[NAME, col("Created At", "date", 0)]),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => c(&[NAME, col("Role", "string", 0), AGE,
            col("Users", "string", 1), col("Groups", "string", 1), col("ServiceAccounts", "string", 1)]),
        ("policy", "PodDisruptionBudget") => c(&[NAME, col("Min Available", "string", 0), col("Max Unavailable", "string", 0),
            col("Allowed Disruptions", "integer", 0), AGE]),
        ("autoscaling", "HorizontalPodAutoscaler") => c(&[NAME, col("Reference", "string", 0), col("Targets", "string", 0),
            col("MinPods", "string", 0), col("MaxPods", "integer", 0), col("Replicas", "integer", 0), AGE]),
        ("discovery.k8s.io", "EndpointSlice") => c(&[NAME, col("AddressType", "string", 0), col("Ports", "string", 0),
            col("Endpoints", "string", 0), AGE]),
        _ => vec![NAME, Column { name: "Created At", type_: "date", format: "", description: "CreationTimestamp is a timestamp representing the server time when this object was created.", priority: 0 }],
    }
}

fn pod_status(pod: &Value) -> (String, i64, String) {
    let mut reason = s(pod, "/status/phase").to_owned();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_owned();
    }
    let mut restarts = 0;
    let init_specs = arr(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (idx, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        if c.pointer("/state/terminated/exitCode")
            .and_then(Value::as_i64)
            == Some(0)
        {
            continue;
        }
        if c.pointer("/state/running").is_some()
            && c.pointer("/started") == Some(&Value::Bool(true))
        {
            continue;
        }
        initializing = true;
        reason = if let Some(t) = c.pointer("/state/terminated") {
            let r = t["reason"].as_str().unwrap_or("");
            if r.is_empty() {
                if t["signal"].as_i64().unwrap_or(0) != 0 {
                    format!("Init:Signal:{}", t["signal"])
                } else {
                    format!("Init:ExitCode:{}", t["exitCode"])
                }
            } else {
                format!("Init:{r}")
            }
        } else if let Some(r) = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .filter(|r| *r != "PodInitializing")
        {
            format!("Init:{r}")
        } else {
            format!("Init:{idx}/{init_specs}")
        };
        break;
    }
    let mut ready = 0;
    let statuses = arr(pod, "/status/containerStatuses");
    if !initializing {
        let mut has_running = false;
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            if let Some(r) = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
            {
                reason = r.to_owned();
            } else if let Some(t) = c.pointer("/state/terminated") {
                reason = match t["reason"].as_str().filter(|r| !r.is_empty()) {
                    Some(r) => r.to_owned(),
                    None if t["signal"].as_i64().unwrap_or(0) != 0 => {
                        format!("Signal:{}", t["signal"])
                    }
                    None => format!("ExitCode:{}", t["exitCode"]),
                };
            } else if c["ready"] == json!(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    } else {
        restarts += statuses
            .iter()
            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
            .sum::<i64>();
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        reason = if s(pod, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    if reason.is_empty() {
        reason = "Pending".into();
    }
    (
        reason,
        restarts,
        format!("{ready}/{}", arr(pod, "/spec/containers").len()),
    )
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = arr(svc, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", p["port"]),
                _ => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn external_ip(svc: &Value) -> String {
    let ty = s(svc, "/spec/type");
    let explicit: Vec<&str> = arr(svc, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match ty {
        "ClusterIP" | "" | "NodePort" => {
            if explicit.is_empty() {
                "<none>".into()
            } else {
                explicit.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .map(str::to_owned)
                })
                .collect();
            ips.extend(explicit.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_owned(),
        _ => "<unknown>".into(),
    }
}

fn node_status(node: &Value) -> String {
    let mut parts = Vec::new();
    let ready = arr(node, "/status/conditions")
        .iter()
        .find(|c| c["type"] == "Ready");
    parts.push(match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready",
        Some(_) | None if ready.is_some() => "NotReady",
        _ => "Unknown",
    });
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(r.to_owned())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_owned)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_address(node: &Value, ty: &str) -> String {
    arr(node, "/status/addresses")
        .iter()
        .find(|a| a["type"] == ty)
        .and_then(|a| a["address"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| "<none>".into())
}

fn job_status(job: &Value) -> String {
    let conds = arr(job, "/status/conditions");
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    if has("Complete") {
        "Complete".into()
    } else if has("Failed") {
        "Failed".into()
    } else if job.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating".into()
    } else if has("Suspended") {
        "Suspended".into()
    } else if has("FailureTarget") {
        "FailureTarget".into()
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet".into()
    } else {
        "Running".into()
    }
}

/// The cells of one object, in `columns` order.
pub fn row(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    match (group, kind) {
        ("", "Pod") => {
            let (status, restarts, ready) = pod_status(obj);
            let nominated = or_none(s(obj, "/status/nominatedNodeName"));
            let gates = arr(obj, "/spec/readinessGates");
            let gates = if gates.is_empty() {
                "<none>".to_owned()
            } else {
                let conds = arr(obj, "/status/conditions");
                let ok = gates
                    .iter()
                    .filter(|g| {
                        conds
                            .iter()
                            .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
                    })
                    .count();
                format!("{ok}/{}", gates.len())
            };
            vec![
                name,
                json!(ready),
                json!(status),
                json!(restarts.to_string()),
                age(obj, now),
                json!(or_none(s(obj, "/status/podIP"))),
                json!(or_none(s(obj, "/spec/nodeName"))),
                json!(nominated),
                json!(gates),
            ]
        }
        ("", "Namespace") => vec![name, json!(s(obj, "/status/phase")), age(obj, now)],
        ("", "ConfigMap") => {
            let n = obj["data"].as_object().map_or(0, |m| m.len())
                + obj["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age(obj, now)]
        }
        ("", "Secret") => {
            let n = obj["data"].as_object().map_or(0, |m| m.len());
            vec![name, json!(s(obj, "/type")), json!(n), age(obj, now)]
        }
        ("", "ServiceAccount") => vec![name, json!(arr(obj, "/secrets").len()), age(obj, now)],
        ("", "Service") => {
            let cluster_ip = or_none(s(obj, "/spec/clusterIP"));
            let sel = map_str(obj, "/spec/selector");
            vec![
                name,
                json!(s(obj, "/spec/type")),
                json!(cluster_ip),
                json!(external_ip(obj)),
                json!(service_ports(obj)),
                age(obj, now),
                json!(or_none(&sel)),
            ]
        }
        ("", "Endpoints") => {
            let mut eps = Vec::new();
            for sub in arr(obj, "/subsets") {
                for a in arr(sub, "/addresses") {
                    for p in arr(sub, "/ports") {
                        eps.push(format!("{}:{}", a["ip"].as_str().unwrap_or(""), p["port"]));
                    }
                    if arr(sub, "/ports").is_empty() {
                        eps.push(a["ip"].as_str().unwrap_or("").to_owned());
                    }
                }
            }
            let shown = if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![name, json!(or_none(&shown)), age(obj, now)]
        }
        ("", "Node") => vec![
            name,
            json!(node_status(obj)),
            json!(node_roles(obj)),
            age(obj, now),
            json!(s(obj, "/status/nodeInfo/kubeletVersion")),
            json!(node_address(obj, "InternalIP")),
            json!(node_address(obj, "ExternalIP")),
            json!(or_unknown(s(obj, "/status/nodeInfo/osImage"))),
            json!(or_unknown(s(obj, "/status/nodeInfo/kernelVersion"))),
            json!(or_unknown(s(
                obj,
                "/status/nodeInfo/containerRuntimeVersion"
            ))),
        ],
        ("", "Event") => {
            let last = obj
                .pointer("/lastTimestamp")
                .filter(|v| !v.is_null())
                .or_else(|| obj.pointer("/eventTime").filter(|v| !v.is_null()))
                .or_else(|| obj.pointer("/metadata/creationTimestamp"));
            let object = format!(
                "{}/{}",
                s(obj, "/involvedObject/kind").to_lowercase(),
                s(obj, "/involvedObject/name")
            );
            vec![
                json!(since(last, now)),
                json!(s(obj, "/type")),
                json!(s(obj, "/reason")),
                json!(object),
                json!(s(obj, "/message")),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let modes: Vec<&str> = arr(obj, "/status/accessModes")
                .iter()
                .filter_map(Value::as_str)
                .map(short_mode)
                .collect();
            vec![
                name,
                json!(s(obj, "/status/phase")),
                json!(s(obj, "/spec/volumeName")),
                json!(s(obj, "/status/capacity/storage")),
                json!(modes.join(",")),
                json!(or_unset(s(obj, "/spec/storageClassName"))),
                json!("<unset>"),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("", "PersistentVolume") => {
            let modes: Vec<&str> = arr(obj, "/spec/accessModes")
                .iter()
                .filter_map(Value::as_str)
                .map(short_mode)
                .collect();
            let claim = if obj.pointer("/spec/claimRef").is_some() {
                format!(
                    "{}/{}",
                    s(obj, "/spec/claimRef/namespace"),
                    s(obj, "/spec/claimRef/name")
                )
            } else {
                String::new()
            };
            vec![
                name,
                json!(s(obj, "/spec/capacity/storage")),
                json!(modes.join(",")),
                json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
                json!(s(obj, "/status/phase")),
                json!(claim),
                json!(s(obj, "/spec/storageClassName")),
                json!("<unset>"),
                json!(s(obj, "/status/reason")),
                age(obj, now),
                json!(s(obj, "/spec/volumeMode")),
            ]
        }
        ("apps", "Deployment") => {
            let (c, im) =
                containers_images(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                json!(i(obj, "/status/updatedReplicas")),
                json!(i(obj, "/status/availableReplicas")),
                age(obj, now),
                json!(c),
                json!(im),
                json!(selector_str(
                    obj.pointer("/spec/selector").unwrap_or(&Value::Null)
                )),
            ]
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            let (c, im) =
                containers_images(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
            let sel = obj.pointer("/spec/selector").unwrap_or(&Value::Null);
            let sel = if kind == "ReplicationController" {
                map_str(obj, "/spec/selector")
            } else {
                selector_str(sel)
            };
            vec![
                name,
                json!(i(obj, "/spec/replicas")),
                json!(i(obj, "/status/replicas")),
                json!(i(obj, "/status/readyReplicas")),
                age(obj, now),
                json!(c),
                json!(im),
                json!(sel),
            ]
        }
        ("apps", "StatefulSet") => {
            let (c, im) =
                containers_images(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    i(obj, "/status/readyReplicas"),
                    i(obj, "/spec/replicas")
                )),
                age(obj, now),
                json!(c),
                json!(im),
            ]
        }
        ("apps", "DaemonSet") => {
            let (c, im) =
                containers_images(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
            let ns = map_str(obj, "/spec/template/spec/nodeSelector");
            vec![
                name,
                json!(i(obj, "/status/desiredNumberScheduled")),
                json!(i(obj, "/status/currentNumberScheduled")),
                json!(i(obj, "/status/numberReady")),
                json!(i(obj, "/status/updatedNumberScheduled")),
                json!(i(obj, "/status/numberAvailable")),
                json!(or_none(&ns)),
                age(obj, now),
                json!(c),
                json!(im),
                json!(selector_str(
                    obj.pointer("/spec/selector").unwrap_or(&Value::Null)
                )),
            ]
        }
        ("apps", "ControllerRevision") => {
            let owner = arr(obj, "/metadata/ownerReferences")
                .iter()
                .find(|o| o["controller"] == json!(true));
            let controller = owner.map_or("<none>".to_owned(), |o| {
                let group = o["apiVersion"]
                    .as_str()
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("");
                format!(
                    "{}.{group}/{}",
                    o["kind"].as_str().unwrap_or("").to_lowercase(),
                    o["name"].as_str().unwrap_or("")
                )
            });
            vec![
                name,
                json!(controller),
                json!(i(obj, "/revision")),
                age(obj, now),
            ]
        }
        ("batch", "Job") => {
            let (c, im) =
                containers_images(obj.pointer("/spec/template/spec").unwrap_or(&Value::Null));
            let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(n) => format!("{}/{n}", i(obj, "/status/succeeded")),
                None => {
                    let p = i(obj, "/spec/parallelism");
                    if p > 1 {
                        format!("{}/1 of {p}", i(obj, "/status/succeeded"))
                    } else {
                        format!("{}/1", i(obj, "/status/succeeded"))
                    }
                }
            };
            let start = obj
                .pointer("/status/startTime")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let end = obj
                .pointer("/status/completionTime")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            let duration = match (start, end) {
                (Some(s), Some(e)) => human_duration(e - s),
                (Some(s), None) => human_duration(now - s.with_timezone(&Utc)),
                _ => String::new(),
            };
            vec![
                name,
                json!(job_status(obj)),
                json!(completions),
                json!(duration),
                age(obj, now),
                json!(c),
                json!(im),
                json!(selector_str(
                    obj.pointer("/spec/selector").unwrap_or(&Value::Null)
                )),
            ]
        }
        ("batch", "CronJob") => {
            let (c, im) = containers_images(
                obj.pointer("/spec/jobTemplate/spec/template/spec")
                    .unwrap_or(&Value::Null),
            );
            let last = obj.pointer("/status/lastScheduleTime");
            let last = if last.is_some() {
                since(last, now)
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(s(obj, "/spec/schedule")),
                json!(or_none(s(obj, "/spec/timeZone"))),
                json!(obj
                    .pointer("/spec/suspend")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)),
                json!(arr(obj, "/status/active").len()),
                json!(last),
                age(obj, now),
                json!(c),
                json!(im),
                json!(or_none(&selector_str(
                    obj.pointer("/spec/jobTemplate/spec/selector")
                        .unwrap_or(&Value::Null)
                ))),
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name, json!(s(obj, "/spec/holderIdentity")), age(obj, now)]
        }
        ("networking.k8s.io", "Ingress") => {
            let hosts: Vec<&str> = arr(obj, "/spec/rules")
                .iter()
                .filter_map(|r| r["host"].as_str())
                .collect();
            let addrs: Vec<&str> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()))
                .collect();
            let ports = if arr(obj, "/spec/tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(or_none(s(obj, "/spec/ingressClassName"))),
                json!(if hosts.is_empty() {
                    "*".to_owned()
                } else {
                    hosts.join(",")
                }),
                json!(addrs.join(",")),
                json!(ports),
                age(obj, now),
            ]
        }
        ("networking.k8s.io", "IngressClass") => {
            let params = if obj.pointer("/spec/parameters").is_some() {
                format!(
                    "{}/{}",
                    s(obj, "/spec/parameters/kind"),
                    s(obj, "/spec/parameters/name")
                )
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(s(obj, "/spec/controller")),
                json!(params),
                age(obj, now),
            ]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            let sel = selector_str(obj.pointer("/spec/podSelector").unwrap_or(&Value::Null));
            vec![name, json!(or_none(&sel)), age(obj, now)]
        }
        ("storage.k8s.io", "StorageClass") => {
            let mut n = s(obj, "/metadata/name").to_owned();
            if s(
                obj,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true"
            {
                n.push_str(" (default)");
            }
            vec![
                json!(n),
                json!(s(obj, "/provisioner")),
                json!(or_default(s(obj, "/reclaimPolicy"), "Delete")),
                json!(or_default(s(obj, "/volumeBindingMode"), "Immediate")),
                json!(obj
                    .pointer("/allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string()),
                age(obj, now),
            ]
        }
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(i(obj, "/value")),
            json!(obj
                .pointer("/globalDefault")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age(obj, now),
            json!(or_default(
                s(obj, "/preemptionPolicy"),
                "PreemptLowerPriority"
            )),
        ],
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            vec![name, json!(s(obj, "/metadata/creationTimestamp"))]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let subjects = arr(obj, "/subjects");
            let pick = |k: &str| -> String {
                subjects
                    .iter()
                    .filter(|x| x["kind"] == k)
                    .map(|x| {
                        if k == "ServiceAccount" {
                            format!(
                                "{}/{}",
                                x["namespace"].as_str().unwrap_or(""),
                                x["name"].as_str().unwrap_or("")
                            )
                        } else {
                            x["name"].as_str().unwrap_or("").to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj, "/roleRef/kind"),
                    s(obj, "/roleRef/name")
                )),
                age(obj, now),
                json!(pick("User")),
                json!(pick("Group")),
                json!(pick("ServiceAccount")),
            ]
        }
        ("policy", "PodDisruptionBudget") => {
            let v = |p: &str| {
                obj.pointer(p)
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        o => o.to_string(),
                    })
                    .unwrap_or_else(|| "N/A".into())
            };
            vec![
                name,
                json!(v("/spec/minAvailable")),
                json!(v("/spec/maxUnavailable")),
                json!(i(obj, "/status/disruptionsAllowed")),
                age(obj, now),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let reference = format!(
                "{}/{}",
                s(obj, "/spec/scaleTargetRef/kind"),
                s(obj, "/spec/scaleTargetRef/name")
            );
            let min = obj
                .pointer("/spec/minReplicas")
                .and_then(Value::as_i64)
                .map_or("<unset>".to_owned(), |m| m.to_string());
            vec![
                name,
                json!(reference),
                json!("<unknown>"),
                json!(min),
                json!(i(obj, "/spec/maxReplicas")),
                json!(i(obj, "/status/currentReplicas")),
                age(obj, now),
            ]
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(obj, "/ports")
                .iter()
                .map(|p| p["port"].to_string())
                .collect();
            let addrs: Vec<&str> = arr(obj, "/endpoints")
                .iter()
                .flat_map(|e| arr(e, "/addresses"))
                .filter_map(Value::as_str)
                .collect();
            let shown = if addrs.len() > 3 {
                format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
            } else {
                addrs.join(",")
            };
            vec![
                name,
                json!(s(obj, "/addressType")),
                json!(if ports.is_empty() {
                    "<unset>".to_owned()
                } else {
                    ports.join(",")
                }),
                json!(if shown.is_empty() {
                    "<unset>".to_owned()
                } else {
                    shown
                }),
                age(obj, now),
            ]
        }
        _ => vec![name, json!(s(obj, "/metadata/creationTimestamp"))],
    }
}

fn or_unknown(v: &str) -> String {
    if v.is_empty() {
        "<unknown>".into()
    } else {
        v.to_owned()
    }
}

fn or_unset(v: &str) -> String {
    if v.is_empty() {
        "<unset>".into()
    } else {
        v.to_owned()
    }
}

fn or_default(v: &str, d: &str) -> String {
    if v.is_empty() {
        d.into()
    } else {
        v.to_owned()
    }
}

fn short_mode(m: &str) -> &str {
    match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

fn column_json(c: &Column) -> Value {
    json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority})
}

fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
        })),
    }
}

fn assemble(
    columns: Vec<Value>,
    rows: Vec<(Vec<Value>, &Value)>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, obj)| {
            let mut r = json!({"cells": cells});
            if let Some(o) = row_object(obj, include) {
                r["object"] = o;
            }
            r
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns, "rows": rows})
}

/// A Table of built-in objects of one kind.
pub fn table(
    group: &str,
    kind: &str,
    objs: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    let columns = columns(group, kind).iter().map(column_json).collect();
    let rows = objs.iter().map(|o| (row(group, kind, o, now), o)).collect();
    assemble(columns, rows, include, list_meta)
}

/// A Table from a CRD version's additionalPrinterColumns: Name, the
/// columns, and Age when no column is named so (as Kubernetes adds it).
pub fn custom_table(
    printer_columns: &[Value],
    objs: &[Value],
    now: DateTime<Utc>,
    include: IncludeObject,
    list_meta: Value,
) -> Value {
    if printer_columns.is_empty() {
        return table("", "", objs, now, include, list_meta);
    }
    let mut columns = vec![column_json(&NAME)];
    for c in printer_columns {
        columns.push(json!({
            "name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")),
            "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0)),
        }));
    }
    let has_age = printer_columns.iter().any(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("age"))
    });
    if !has_age {
        columns.push(column_json(&AGE));
    }
    let rows = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(s(o, "/metadata/name"))];
            for c in printer_columns {
                let v = json_path(o, c["jsonPath"].as_str().unwrap_or(""));
                let cell = match (c["type"].as_str(), v) {
                    (Some("date"), Some(Value::String(t))) => {
                        json!(since(Some(&Value::String(t)), now))
                    }
                    (_, Some(v)) => v,
                    (_, None) => Value::Null,
                };
                cells.push(cell);
            }
            if !has_age {
                cells.push(age(o, now));
            }
            (cells, o)
        })
        .collect();
    assemble(columns, rows, include, list_meta)
}

/// The JSONPath subset printer columns use: `.a.b`, `.a[0].b`, `.a[*].b`.
pub fn json_path(obj: &Value, path: &str) -> Option<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut current = vec![obj.clone()];
    let mut many = false;
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, Some(rest.trim_end_matches(']'))),
            None => (seg, None),
        };
        let mut next = Vec::new();
        for v in current {
            let v = if field.is_empty() {
                Some(v)
            } else {
                v.get(field).cloned()
            };
            let Some(v) = v else { continue };
            match index {
                None => next.push(v),
                Some("*") => {
                    many = true;
                    next.extend(v.as_array().cloned().unwrap_or_default());
                }
                Some(n) => {
                    if let (Ok(n), Some(a)) = (n.parse::<usize>(), v.as_array()) {
                        if let Some(x) = a.get(n) {
                            next.push(x.clone());
                        }
                    }
                }
            }
        }
        current = next;
    }
    if many {
        let parts: Vec<String> = current
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                o => o.to_string(),
            })
            .collect();
        if parts.is_empty() {
            None
        } else {
            Some(json!(parts.join(",")))
        }
    } else {
        current.into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn human_durations() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (185, "3m5s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 600, "3h10m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (730 * 86400, "2y"),
            (800 * 86400, "2y70d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(chrono::Duration::seconds(secs)),
                want,
                "{secs}s"
            );
        }
    }

    #[test]
    fn rows() {
        let t = "2026-01-10T11:55:00Z";
        let cases: Vec<(&str, &str, Value, Vec<Value>)> = vec![
            (
                "",
                "ConfigMap",
                json!({"metadata": {"name": "c", "creationTimestamp": t}, "data": {"a": "1", "b": "2"}}),
                vec![json!("c"), json!(2), json!("5m")],
            ),
            (
                "",
                "Pod",
                json!({"metadata": {"name": "p", "creationTimestamp": t}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
                "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 1, "state": {"running": {}}},
                    {"name": "b", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
                vec![
                    json!("p"),
                    json!("1/2"),
                    json!("CrashLoopBackOff"),
                    json!("3"),
                    json!("5m"),
                    json!("10.42.0.5"),
                    json!("n1"),
                    json!("<none>"),
                    json!("<none>"),
                ],
            ),
            (
                "",
                "Pod",
                json!({"metadata": {"name": "p", "creationTimestamp": t, "deletionTimestamp": t}, "spec": {"containers": [{"name": "a"}]},
                "status": {"phase": "Running"}}),
                vec![
                    json!("p"),
                    json!("0/1"),
                    json!("Terminating"),
                    json!("0"),
                    json!("5m"),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<none>"),
                ],
            ),
            (
                "",
                "Pod",
                json!({"metadata": {"name": "p", "creationTimestamp": t}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]},
                "status": {"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 0, "state": {"running": {}}}]}}),
                vec![
                    json!("p"),
                    json!("0/1"),
                    json!("Init:0/1"),
                    json!("0"),
                    json!("5m"),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<none>"),
                    json!("<none>"),
                ],
            ),
            (
                "apps",
                "Deployment",
                json!({"metadata": {"name": "d", "creationTimestamp": t},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"spec": {"containers": [{"name": "n", "image": "nginx"}]}}},
                "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
                vec![
                    json!("d"),
                    json!("2/3"),
                    json!(3),
                    json!(2),
                    json!("5m"),
                    json!("n"),
                    json!("nginx"),
                    json!("app=web"),
                ],
            ),
            (
                "",
                "Service",
                json!({"metadata": {"name": "s", "creationTimestamp": t},
                "spec": {"type": "NodePort", "clusterIP": "10.43.0.7", "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "web"}}}),
                vec![
                    json!("s"),
                    json!("NodePort"),
                    json!("10.43.0.7"),
                    json!("<none>"),
                    json!("80:30080/TCP"),
                    json!("5m"),
                    json!("app=web"),
                ],
            ),
            (
                "",
                "Namespace",
                json!({"metadata": {"name": "n", "creationTimestamp": t}, "status": {"phase": "Active"}}),
                vec![json!("n"), json!("Active"), json!("5m")],
            ),
            (
                "example.com",
                "Widget",
                json!({"metadata": {"name": "w", "creationTimestamp": t}}),
                vec![json!("w"), json!(t)],
            ),
        ];
        for (group, kind, obj, want) in cases {
            assert_eq!(columns(group, kind).len(), want.len(), "{kind} columns");
            assert_eq!(row(group, kind, &obj, now()), want, "{kind}: {obj}");
        }
    }

    #[test]
    fn custom_columns_and_json_path() {
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2026-01-10T11:00:00Z"}, "spec": {"size": "small", "items": [{"n": "a"}, {"n": "b"}]}});
        let cols = vec![
            json!({"name": "Size", "type": "string", "jsonPath": ".spec.size"}),
            json!({"name": "Items", "type": "string", "jsonPath": ".spec.items[*].n"}),
        ];
        let t = custom_table(
            &cols,
            std::slice::from_ref(&obj),
            now(),
            IncludeObject::Metadata,
            json!({}),
        );
        assert_eq!(t["rows"][0]["cells"], json!(["w", "small", "a,b", "60m"]));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 4);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(json_path(&obj, ".spec.items[1].n"), Some(json!("b")));
        assert_eq!(json_path(&obj, ".spec.missing"), None);
    }
}
