//! The real node: what the host has (/proc, statvfs, os-release), the Node
//! object's status, its registration and its Lease.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use runtime::{is_conflict, is_not_found};
use serde_json::json;

use crate::eviction::{Condition, Pressure};
use crate::simulated::{KUBELET_VERSION, LEASE_NAMESPACE};

/// Facts about the host, read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub hostname: String,
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_meminfo(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// PRETTY_NAME of os-release.
pub fn parse_os_release(s: &str) -> Option<String> {
    let v = s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="))?;
    Some(v.trim().trim_matches('"').to_owned())
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_blocks as u64 * st.f_frsize as u64
}

impl HostInfo {
    pub fn read(data_dir: &Path) -> HostInfo {
        HostInfo {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_bytes: parse_meminfo(&read("/proc/meminfo")).unwrap_or(0),
            ephemeral_storage_bytes: disk_bytes(data_dir),
            kernel_version: read("/proc/sys/kernel/osrelease"),
            os_image: parse_os_release(&read("/etc/os-release"))
                .unwrap_or_else(|| "Linux".to_owned()),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            hostname: read("/proc/sys/kernel/hostname"),
        }
    }
}

/// The host's primary IPv4 address: the source address of its default
/// route (no packet is sent), else 127.0.0.1.
pub fn primary_ip() -> Ipv4Addr {
    let probe = || -> std::io::Result<IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        s.connect("192.0.2.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    match probe() {
        Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    }
}

/// Memory the node keeps for itself (kubelet's default hard eviction
/// threshold, memory.available<100Mi).
pub const RESERVED_MEMORY: u64 = 100 << 20;

/// The four conditions of a healthy node (memory, disk, PID, Ready) as a
/// kubelet reports them, heartbeat `now`; transition times are kept from
/// `prev` where the status did not change. Shared with simulated nodes.
pub fn healthy_conditions(prev: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    conditions(prev, now, &Pressure::new())
}

/// The node's conditions with the pressure conditions in `pressure` True
/// (the kubelet's reasons and messages).
pub fn conditions(
    prev: &[NodeCondition],
    now: Timestamp,
    pressure: &Pressure,
) -> Vec<NodeCondition> {
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        let since = prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(since),
        }
    };
    let table = [
        (
            Condition::MemoryPressure,
            (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            ),
            (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
        ),
        (
            Condition::DiskPressure,
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ),
        (
            Condition::PIDPressure,
            (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
            ),
            (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
        ),
    ];
    let mut out: Vec<NodeCondition> = table
        .iter()
        .map(|(c, (r_true, m_true), (r_false, m_false))| {
            if pressure.contains(c) {
                cond(c.name(), "True", r_true, m_true)
            } else {
                cond(c.name(), "False", r_false, m_false)
            }
        })
        .collect();
    out.push(cond(
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ));
    out
}

/// The node's status at `now`; `current` keeps condition transition times.
pub fn node_status(
    host: &HostInfo,
    node_name: &str,
    ip: Ipv4Addr,
    runtime_version: &str,
    current: Option<&NodeStatus>,
    pressure: &Pressure,
    now: Timestamp,
) -> NodeStatus {
    let now_s = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let prev = current
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mem_ki = host.memory_bytes / 1024;
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu", host.cpus.to_string()),
        ("memory", format!("{mem_ki}Ki")),
        ("pods", "110".to_owned()),
        (
            "ephemeral-storage",
            format!("{}Ki", host.ephemeral_storage_bytes / 1024),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Quantity(v)))
    .collect();
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".to_owned(),
        Quantity(format!(
            "{}Ki",
            host.memory_bytes.saturating_sub(RESERVED_MEMORY) / 1024
        )),
    );
    // 10% of the disk is kept (kubelet's nodefs.available<10%).
    allocatable.insert(
        "ephemeral-storage".to_owned(),
        Quantity(format!(
            "{}Ki",
            host.ephemeral_storage_bytes / 1024 * 9 / 10
        )),
    );
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: node_name.to_owned(),
            },
        ]),
        conditions: Some(conditions(&prev, now_s, pressure)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            boot_id: host.boot_id.clone(),
            container_runtime_version: runtime_version.to_owned(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".to_owned(),
            os_image: host.os_image.clone(),
            system_uuid: host.machine_id.clone(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

pub fn node_labels(node_name: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let arch = std::env::consts::ARCH
        .replace("x86_64", "amd64")
        .replace("aarch64", "arm64");
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", node_name.to_owned()),
        ("kubernetes.io/os", "linux".to_owned()),
        ("kubernetes.io/arch", arch.clone()),
        ("beta.kubernetes.io/os", "linux".to_owned()),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    labels.extend(extra.clone());
    labels
}

/// Creates the Node (or adopts it: labels brought up to date) and writes
/// its status. Returns the node's uid.
pub async fn register(
    client: &kube::Client,
    name: &str,
    labels: &BTreeMap<String, String>,
    status: &NodeStatus,
) -> anyhow::Result<Option<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let node = match api.get_opt(name).await? {
        Some(n) => {
            let have = n.metadata.labels.clone().unwrap_or_default();
            if labels.iter().any(|(k, v)| have.get(k) != Some(v)) {
                api.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await?;
            }
            n
        }
        None => {
            let new = Node {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    labels: Some(labels.clone()),
                    annotations: Some(BTreeMap::from([(
                        "node.alpha.kubernetes.io/ttl".to_owned(),
                        "0".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec::default()),
                status: None,
            };
            match api.create(&PostParams::default(), &new).await {
                Ok(n) => n,
                Err(e) if is_conflict(&e) => api.get(name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(node.metadata.uid)
}

/// Renews the node's Lease, creating it when it is missing (owned by the
/// Node, as kubelet's). `exists`: try the renewal first, else the creation.
/// Shared with simulated nodes.
pub async fn renew_lease(
    client: &kube::Client,
    name: &str,
    node_uid: Option<&str>,
    duration_seconds: i32,
    exists: bool,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    let renew = || async {
        let patch = json!({"spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": now,
        }});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
    };
    if exists {
        match renew().await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Node".to_owned(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(now.clone()),
            ..LeaseSpec::default()
        }),
    };
    match api.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => renew().await.map(|_| ()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_files_parse() {
        assert_eq!(
            parse_meminfo("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16384 * 1024)
        );
        assert_eq!(
            parse_os_release("NAME=x\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn status_reports_capacity_and_runtime() {
        let host = HostInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 10 << 30,
            kernel_version: "6.1".into(),
            os_image: "Debian".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            hostname: "h".into(),
        };
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let s = node_status(
            &host,
            "n1",
            Ipv4Addr::new(10, 0, 0, 5),
            "containerd://1.6",
            None,
            &Pressure::new(),
            t,
        );
        let cap = s.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(s.allocatable.as_ref().unwrap()["memory"].0, "4091904Ki");
        assert_eq!(s.addresses.as_ref().unwrap()[0].address, "10.0.0.5");
        let info = s.node_info.as_ref().unwrap();
        assert_eq!(info.container_runtime_version, "containerd://1.6");
        assert_eq!(info.kernel_version, "6.1");
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn pressure_conditions_carry_the_kubelets_reasons() {
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        let healthy = healthy_conditions(&[], t);
        let cases: Vec<(Vec<Condition>, Vec<(&str, &str, &str)>)> = vec![
            (
                vec![],
                vec![
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID"),
                    ("Ready", "True", "KubeletReady"),
                ],
            ),
            (
                vec![Condition::DiskPressure, Condition::MemoryPressure],
                vec![
                    ("MemoryPressure", "True", "KubeletHasInsufficientMemory"),
                    ("DiskPressure", "True", "KubeletHasDiskPressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID"),
                    ("Ready", "True", "KubeletReady"),
                ],
            ),
            (
                vec![Condition::PIDPressure],
                vec![
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "True", "KubeletHasInsufficientPID"),
                    ("Ready", "True", "KubeletReady"),
                ],
            ),
        ];
        for (pressure, want) in cases {
            let pressure: Pressure = pressure.into_iter().collect();
            let got = conditions(&healthy, later, &pressure);
            let summary: Vec<(&str, &str, &str)> = got
                .iter()
                .map(|c| {
                    (
                        c.type_.as_str(),
                        c.status.as_str(),
                        c.reason.as_deref().unwrap(),
                    )
                })
                .collect();
            assert_eq!(summary, want, "{pressure:?}");
            for c in &got {
                // A flipped condition transitions now; the others keep theirs.
                let flipped = pressure.iter().any(|p| p.name() == c.type_);
                let since = c.last_transition_time.as_ref().unwrap().0;
                assert_eq!(since, if flipped { later } else { t }, "{}", c.type_);
            }
        }
        let disk = conditions(&[], t, &[Condition::DiskPressure].into());
        assert_eq!(
            disk[1].message.as_deref(),
            Some("kubelet has disk pressure")
        );
    }
}
