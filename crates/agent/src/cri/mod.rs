//! The container runtime as the agent sees it: the CRI v1 runtime and
//! image services behind one trait, [`RuntimeService`], in plain Rust
//! types. [`grpc::CriClient`] speaks CRI over a unix socket (the only code
//! that knows the protobuf messages); [`fake::FakeRuntime`] records calls
//! and keeps containers in memory, for unit tests of the pod workers.

use std::collections::BTreeMap;

pub mod fake;
pub mod grpc;

pub use fake::FakeRuntime;
pub use grpc::CriClient;

/// A runtime error: gRPC status code (as a word) and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CriError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    /// The runtime cannot be reached (yet).
    Unavailable,
    DeadlineExceeded,
    Other,
}

impl CriError {
    pub fn not_found(message: impl Into<String>) -> Self {
        CriError {
            code: ErrorCode::NotFound,
            message: message.into(),
        }
    }
    pub fn other(message: impl Into<String>) -> Self {
        CriError {
            code: ErrorCode::Other,
            message: message.into(),
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.code == ErrorCode::NotFound
    }
}

pub type Result<T> = std::result::Result<T, CriError>;

/// What the runtime says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// e.g. `containerd`
    pub runtime_name: String,
    /// e.g. `1.6.20~ds1`
    pub runtime_version: String,
    /// e.g. `v1`
    pub runtime_api_version: String,
}

impl RuntimeVersion {
    /// As nodeInfo.containerRuntimeVersion: `containerd://1.6.20`.
    pub fn node_info(&self) -> String {
        format!("{}://{}", self.runtime_name, self.runtime_version)
    }
}

/// A pod sandbox to run (`PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    /// Container logs go to `log_directory/<log_path>`.
    pub log_directory: String,
    /// Share the host's network namespace.
    pub host_network: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    /// Some container of the pod is privileged (the runtime refuses
    /// privileged containers in unprivileged sandboxes).
    pub privileged: bool,
    /// The sandbox's resolv.conf; `None`: the runtime's default.
    pub dns: Option<DnsConfig>,
    /// Host ports forwarded to the sandbox (containers' `hostPort`s).
    pub port_mappings: Vec<PortMapping>,
    /// The pod's process namespace: the sandbox's own (`Container`), one
    /// for the whole pod (`shareProcessNamespace`) or the host's (`hostPID`).
    pub pid: PidMode,
    /// Share the host's IPC namespace (`hostIPC`).
    pub host_ipc: bool,
}

/// Which process namespace a container (or sandbox) is in (CRI's
/// NamespaceMode for `pid`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PidMode {
    /// Its own.
    #[default]
    Container,
    /// The pod's, shared by all its containers.
    Pod,
    /// The host's.
    Node,
    /// Another container's (an ephemeral container's `targetContainerName`),
    /// by runtime id.
    Target(String),
}

/// A host port forwarded to a sandbox port (CRI's PortMapping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    /// Only this host address (empty: all).
    pub host_ip: String,
}

/// A sandbox's resolver settings (`DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A container to create in a sandbox (`ContainerConfig`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    pub name: String,
    pub attempt: u32,
    /// The image reference (or image id) to run.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's log directory.
    pub log_path: String,
    pub tty: bool,
    pub stdin: bool,
    pub host_network: bool,
    /// Bind mounts into the container.
    pub mounts: Vec<Mount>,
    /// Cgroup limits; `None`: the runtime's defaults.
    pub resources: Option<LinuxResources>,
    /// Users, capabilities, seccomp, read-only root.
    pub security: SecurityContext,
    pub pid: PidMode,
    pub host_ipc: bool,
}

/// A container's cgroup settings (`LinuxContainerResources`); zero
/// fields are left to the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxResources {
    /// CFS period in microseconds (with `cpu_quota`).
    pub cpu_period: i64,
    /// CFS quota in microseconds per period.
    pub cpu_quota: i64,
    /// Relative CPU weight (cgroup v1 shares).
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub oom_score_adj: i64,
}

/// A seccomp profile (`SecurityProfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompProfile {
    RuntimeDefault,
    #[default]
    Unconfined,
    /// A profile file on the node.
    Localhost(String),
}

/// A container's security settings (`LinuxContainerSecurityContext`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    pub run_as_user: Option<i64>,
    /// A user name to look up in the image (when `run_as_user` is unset).
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// `no_new_privs`: allowPrivilegeEscalation false.
    pub no_new_privs: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub seccomp: SeccompProfile,
}

/// A bind mount of a host path into a container (`Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// One sandbox, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub state: SandboxState,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A sandbox's status.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    pub sandbox: Sandbox,
    /// The pod's address (empty for host-network sandboxes).
    pub ip: Option<String>,
}

/// One container, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A container's status.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    /// Nanoseconds since the epoch (0: not yet).
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub image: String,
    pub image_ref: String,
    /// e.g. `Completed`, `Error`, `OOMKilled`.
    pub reason: String,
    pub message: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub log_path: String,
}

/// What a container uses, as CRI `ContainerStats` reports it (`None`:
/// the runtime did not say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Memory in use minus inactive file pages (what eviction ranks by).
    pub memory_working_set_bytes: Option<u64>,
    /// The container's writable layer on the image filesystem.
    pub writable_layer_bytes: Option<u64>,
    pub writable_layer_inodes: Option<u64>,
    /// CPU time used so far, in nanoseconds.
    pub cpu_usage_core_nano_seconds: Option<u64>,
    /// Recent CPU use, in billionths of a core (the runtime's rate).
    pub cpu_usage_nano_cores: Option<u64>,
    /// When the runtime took these figures (Unix nanoseconds).
    pub timestamp: i64,
}

/// An image the runtime has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
    /// The image's numeric user, when it names one.
    pub uid: Option<i64>,
    /// The image's user name, when it is not numeric.
    pub username: String,
}

/// Registry credentials for one pull (CRI's AuthConfig).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
    /// base64 `user:password`, when the secret gave it.
    pub auth: String,
    /// The registry key the credentials were stored under (for matching
    /// images; not sent: like the kubelet, the runtime takes the registry
    /// from the image, and containerd cannot parse `host:port` here).
    pub registry: String,
}

/// The CRI runtime and image services, as much as the agent uses.
#[async_trait::async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Runs a sandbox; returns its id.
    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String>;
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus>;
    /// Sandboxes carrying every label of `labels`.
    async fn list_pod_sandbox(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Sandbox>>;

    /// Creates a container in a sandbox; returns its id.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM (or its image's stop signal), then
    /// SIGKILL after `timeout_seconds`.
    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// Changes a running container's cgroup limits (in-place resize).
    async fn update_container_resources(&self, id: &str, r: &LinuxResources) -> Result<()>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Containers carrying every label of `labels`.
    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Container>>;
    /// Usage of every container (CRI `ListContainerStats`).
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>>;

    /// The image, when the runtime has it.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    /// Pulls an image, with registry credentials when given; returns its
    /// reference (id).
    async fn pull_image(&self, image: &str, auth: Option<&Auth>) -> Result<String>;
    /// Every image the runtime has.
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image (by id or reference).
    async fn remove_image(&self, image: &str) -> Result<()>;

    /// A URL on the runtime's streaming server that runs `request.cmd` in
    /// the container once a client connects and upgrades (SPDY or
    /// WebSocket), as CRI `Exec`.
    async fn exec(&self, request: &ExecRequest) -> Result<String>;
    /// A streaming URL attached to the container's main process (CRI
    /// `Attach`).
    async fn attach(&self, request: &AttachRequest) -> Result<String>;
    /// A streaming URL forwarding to ports in a sandbox's network
    /// namespace (CRI `PortForward`).
    async fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String>;
    /// Runs `cmd` in the container and waits for it, at most
    /// `timeout_seconds` (CRI `ExecSync`: exec probes and hooks).
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout_seconds: i64,
    ) -> Result<ExecResult>;
}

/// What an `exec_sync` command did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// What to run for an exec stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// Which streams an attach carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}
