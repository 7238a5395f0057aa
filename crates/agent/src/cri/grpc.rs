//! The CRI v1 client: gRPC over the runtime's unix socket (tonic), with
//! the protobuf messages of the `k8s-cri` crate. The only module that knows
//! them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as pb;
use pb::image_service_client::ImageServiceClient;
use pb::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::*;

/// A CRI client on one socket. Cheap to clone; reconnects by itself when
/// the runtime restarts.
#[derive(Clone)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("socket", &self.socket)
            .finish()
    }
}

/// `unix:///run/x.sock`, `unix:/run/x.sock` or a path.
pub fn socket_path(endpoint: &str) -> PathBuf {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    PathBuf::from(p)
}

impl CriClient {
    /// A client for the socket at `endpoint` (connects lazily).
    pub fn new(endpoint: &str) -> anyhow::Result<CriClient> {
        let socket = socket_path(endpoint);
        let path = socket.clone();
        let channel = Endpoint::try_from("http://[::1]:1")?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(600))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
            socket,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

fn err(s: tonic::Status) -> CriError {
    let code = match s.code() {
        tonic::Code::NotFound => ErrorCode::NotFound,
        tonic::Code::Unavailable => ErrorCode::Unavailable,
        tonic::Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        _ => ErrorCode::Other,
    };
    // containerd says "not found" with code Unknown in a few places.
    let code = if code == ErrorCode::Other && s.message().contains("not found") {
        ErrorCode::NotFound
    } else {
        code
    };
    CriError {
        code,
        message: s.message().to_owned(),
    }
}

fn hmap(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn bmap(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

const NS_POD: i32 = 0;
const NS_CONTAINER: i32 = 1;
const NS_NODE: i32 = 2;
const NS_TARGET: i32 = 3;

fn namespace_options(host_network: bool, host_ipc: bool, pid: &PidMode) -> pb::NamespaceOption {
    let (pid, target_id) = match pid {
        PidMode::Container => (NS_CONTAINER, String::new()),
        PidMode::Pod => (NS_POD, String::new()),
        PidMode::Node => (NS_NODE, String::new()),
        PidMode::Target(id) => (NS_TARGET, id.clone()),
    };
    pb::NamespaceOption {
        network: if host_network { NS_NODE } else { NS_POD },
        pid,
        ipc: if host_ipc { NS_NODE } else { NS_POD },
        target_id,
        ..Default::default()
    }
}

fn sandbox_config(c: &SandboxConfig) -> pb::PodSandboxConfig {
    pb::PodSandboxConfig {
        metadata: Some(pb::PodSandboxMetadata {
            name: c.name.clone(),
            uid: c.uid.clone(),
            namespace: c.namespace.clone(),
            attempt: c.attempt,
        }),
        hostname: c.hostname.clone(),
        log_directory: c.log_directory.clone(),
        labels: hmap(&c.labels),
        annotations: hmap(&c.annotations),
        linux: Some(pb::LinuxPodSandboxConfig {
            cgroup_parent: c.cgroup_parent.clone(),
            security_context: Some(pb::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(c.host_network, c.host_ipc, &c.pid)),
                privileged: c.privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        dns_config: c.dns.as_ref().map(|d| pb::DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        }),
        port_mappings: c
            .port_mappings
            .iter()
            .map(|p| pb::PortMapping {
                protocol: match p.protocol.as_str() {
                    "UDP" => pb::Protocol::Udp,
                    "SCTP" => pb::Protocol::Sctp,
                    _ => pb::Protocol::Tcp,
                } as i32,
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

fn linux_resources(r: &LinuxResources) -> pb::LinuxContainerResources {
    pb::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        ..Default::default()
    }
}

const PROFILE_RUNTIME_DEFAULT: i32 = 0;
const PROFILE_UNCONFINED: i32 = 1;
const PROFILE_LOCALHOST: i32 = 2;

fn security_context(config: &ContainerConfig) -> pb::LinuxContainerSecurityContext {
    let s = &config.security;
    let (profile_type, localhost_ref) = match &s.seccomp {
        SeccompProfile::RuntimeDefault => (PROFILE_RUNTIME_DEFAULT, String::new()),
        SeccompProfile::Unconfined => (PROFILE_UNCONFINED, String::new()),
        SeccompProfile::Localhost(p) => (PROFILE_LOCALHOST, p.clone()),
    };
    pb::LinuxContainerSecurityContext {
        namespace_options: Some(namespace_options(
            config.host_network,
            config.host_ipc,
            &config.pid,
        )),
        capabilities: Some(pb::Capability {
            add_capabilities: s.add_capabilities.clone(),
            drop_capabilities: s.drop_capabilities.clone(),
            ..Default::default()
        }),
        privileged: s.privileged,
        run_as_user: s.run_as_user.map(|value| pb::Int64Value { value }),
        run_as_group: s.run_as_group.map(|value| pb::Int64Value { value }),
        run_as_username: s.run_as_username.clone(),
        readonly_rootfs: s.readonly_rootfs,
        supplemental_groups: s.supplemental_groups.clone(),
        no_new_privs: s.no_new_privs,
        seccomp: Some(pb::SecurityProfile {
            profile_type,
            localhost_ref,
        }),
        ..Default::default()
    }
}

fn container_state(s: i32) -> ContainerState {
    match s {
        0 => ContainerState::Created,
        1 => ContainerState::Running,
        2 => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

fn sandbox_state(s: i32) -> SandboxState {
    if s == 0 {
        SandboxState::Ready
    } else {
        SandboxState::NotReady
    }
}

fn sandbox(
    id: String,
    meta: Option<pb::PodSandboxMetadata>,
    state: i32,
    created_at: i64,
    labels: HashMap<String, String>,
    annotations: HashMap<String, String>,
) -> Sandbox {
    let meta = meta.unwrap_or_default();
    Sandbox {
        id,
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        attempt: meta.attempt,
        state: sandbox_state(state),
        created_at,
        labels: bmap(labels),
        annotations: bmap(annotations),
    }
}

#[async_trait::async_trait]
impl RuntimeService for CriClient {
    async fn version(&self) -> Result<RuntimeVersion> {
        let r = self
            .runtime
            .clone()
            .version(pb::VersionRequest {
                version: "v1".to_owned(),
            })
            .await
            .map_err(err)?
            .into_inner();
        Ok(RuntimeVersion {
            runtime_name: r.runtime_name,
            runtime_version: r.runtime_version,
            runtime_api_version: r.runtime_api_version,
        })
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .run_pod_sandbox(pb::RunPodSandboxRequest {
                config: Some(sandbox_config(config)),
                runtime_handler: String::new(),
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .stop_pod_sandbox(pb::StopPodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_pod_sandbox(pb::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_owned(),
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let r = self
            .runtime
            .clone()
            .pod_sandbox_status(pb::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(err)?
            .into_inner();
        let s = r
            .status
            .ok_or_else(|| CriError::not_found(format!("sandbox {id}: no status")))?;
        let ip = s
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .filter(|ip| !ip.is_empty());
        Ok(SandboxStatus {
            sandbox: sandbox(
                s.id,
                s.metadata,
                s.state,
                s.created_at,
                s.labels,
                s.annotations,
            ),
            ip,
        })
    }

    async fn list_pod_sandbox(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Sandbox>> {
        let r = self
            .runtime
            .clone()
            .list_pod_sandbox(pb::ListPodSandboxRequest {
                filter: Some(pb::PodSandboxFilter {
                    label_selector: hmap(labels),
                    ..Default::default()
                }),
            })
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.items
            .into_iter()
            .map(|s| {
                sandbox(
                    s.id,
                    s.metadata,
                    s.state,
                    s.created_at,
                    s.labels,
                    s.annotations,
                )
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &SandboxConfig,
    ) -> Result<String> {
        let c = pb::ContainerConfig {
            metadata: Some(pb::ContainerMetadata {
                name: config.name.clone(),
                attempt: config.attempt,
            }),
            image: Some(pb::ImageSpec {
                image: config.image.clone(),
                ..Default::default()
            }),
            command: config.command.clone(),
            args: config.args.clone(),
            working_dir: config.working_dir.clone(),
            envs: config
                .envs
                .iter()
                .map(|(k, v)| pb::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            labels: hmap(&config.labels),
            annotations: hmap(&config.annotations),
            log_path: config.log_path.clone(),
            stdin: config.stdin,
            tty: config.tty,
            mounts: config
                .mounts
                .iter()
                .map(|m| pb::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.readonly,
                    ..Default::default()
                })
                .collect(),
            linux: Some(pb::LinuxContainerConfig {
                resources: config.resources.as_ref().map(linux_resources),
                security_context: Some(security_context(config)),
            }),
            ..Default::default()
        };
        let r = self
            .runtime
            .clone()
            .create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                config: Some(c),
                sandbox_config: Some(sandbox_config(sandbox)),
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .start_container(pb::StartContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        self.runtime
            .clone()
            .stop_container(pb::StopContainerRequest {
                container_id: id.to_owned(),
                timeout: timeout_seconds,
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn update_container_resources(&self, id: &str, r: &LinuxResources) -> Result<()> {
        self.runtime
            .clone()
            .update_container_resources(pb::UpdateContainerResourcesRequest {
                container_id: id.to_owned(),
                linux: Some(linux_resources(r)),
                ..Default::default()
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_container(pb::RemoveContainerRequest {
                container_id: id.to_owned(),
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let r = self
            .runtime
            .clone()
            .container_status(pb::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(err)?
            .into_inner();
        let s = r
            .status
            .ok_or_else(|| CriError::not_found(format!("container {id}: no status")))?;
        let meta = s.metadata.unwrap_or_default();
        Ok(ContainerStatus {
            id: s.id,
            name: meta.name,
            attempt: meta.attempt,
            state: container_state(s.state),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            image: s.image.map(|i| i.image).unwrap_or_default(),
            image_ref: s.image_ref,
            reason: s.reason,
            message: s.message,
            labels: bmap(s.labels),
            annotations: bmap(s.annotations),
            log_path: s.log_path,
        })
    }

    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Container>> {
        let r = self
            .runtime
            .clone()
            .list_containers(pb::ListContainersRequest {
                filter: Some(pb::ContainerFilter {
                    label_selector: hmap(labels),
                    ..Default::default()
                }),
            })
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.containers
            .into_iter()
            .map(|c| {
                let meta = c.metadata.unwrap_or_default();
                Container {
                    id: c.id,
                    sandbox_id: c.pod_sandbox_id,
                    name: meta.name,
                    attempt: meta.attempt,
                    image: c.image.map(|i| i.image).unwrap_or_default(),
                    image_ref: c.image_ref,
                    state: container_state(c.state),
                    created_at: c.created_at,
                    labels: bmap(c.labels),
                    annotations: bmap(c.annotations),
                }
            })
            .collect())
    }

    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>> {
        let r = self
            .runtime
            .clone()
            .list_container_stats(pb::ListContainerStatsRequest { filter: None })
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.stats
            .into_iter()
            .map(|s| {
                let attrs = s.attributes.unwrap_or_default();
                let layer = s.writable_layer.unwrap_or_default();
                ContainerStats {
                    id: attrs.id,
                    name: attrs.metadata.map(|m| m.name).unwrap_or_default(),
                    labels: bmap(attrs.labels),
                    memory_working_set_bytes: s
                        .memory
                        .and_then(|m| m.working_set_bytes)
                        .map(|v| v.value),
                    writable_layer_bytes: layer.used_bytes.map(|v| v.value),
                    writable_layer_inodes: layer.inodes_used.map(|v| v.value),
                    cpu_usage_core_nano_seconds: s
                        .cpu
                        .as_ref()
                        .and_then(|c| c.usage_core_nano_seconds.as_ref())
                        .map(|v| v.value),
                    cpu_usage_nano_cores: s
                        .cpu
                        .as_ref()
                        .and_then(|c| c.usage_nano_cores.as_ref())
                        .map(|v| v.value),
                    timestamp: s.cpu.as_ref().map_or(0, |c| c.timestamp),
                }
            })
            .collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let r = self
            .images
            .clone()
            .image_status(pb::ImageStatusRequest {
                image: Some(pb::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.image.map(image_of))
    }

    async fn pull_image(&self, image: &str, auth: Option<&Auth>) -> Result<String> {
        let r = self
            .images
            .clone()
            .pull_image(pb::PullImageRequest {
                image: Some(pb::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
                auth: auth.map(|a| pb::AuthConfig {
                    username: a.username.clone(),
                    password: a.password.clone(),
                    auth: a.auth.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().image_ref)
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let r = self
            .images
            .clone()
            .list_images(pb::ListImagesRequest { filter: None })
            .await
            .map_err(err)?
            .into_inner();
        Ok(r.images.into_iter().map(image_of).collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.images
            .clone()
            .remove_image(pb::RemoveImageRequest {
                image: Some(pb::ImageSpec {
                    image: image.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout_seconds: i64,
    ) -> Result<super::ExecResult> {
        let r = self
            .runtime
            .clone()
            .exec_sync(pb::ExecSyncRequest {
                container_id: container_id.to_owned(),
                cmd: cmd.to_vec(),
                timeout: timeout_seconds,
            })
            .await
            .map_err(err)?
            .into_inner();
        Ok(super::ExecResult {
            exit_code: r.exit_code,
            stdout: r.stdout,
            stderr: r.stderr,
        })
    }

    async fn exec(&self, request: &ExecRequest) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .exec(pb::ExecRequest {
                container_id: request.container_id.clone(),
                cmd: request.cmd.clone(),
                tty: request.tty,
                stdin: request.stdin,
                stdout: request.stdout,
                stderr: request.stderr,
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().url)
    }

    async fn attach(&self, request: &AttachRequest) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .attach(pb::AttachRequest {
                container_id: request.container_id.clone(),
                tty: request.tty,
                stdin: request.stdin,
                stdout: request.stdout,
                stderr: request.stderr,
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().url)
    }

    async fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .port_forward(pb::PortForwardRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                port: ports.to_vec(),
            })
            .await
            .map_err(err)?;
        Ok(r.into_inner().url)
    }
}

/// Our view of a CRI image.
fn image_of(i: pb::Image) -> Image {
    Image {
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests: i.repo_digests,
        size: i.size,
        uid: i.uid.map(|u| u.value),
        username: i.username,
    }
}
