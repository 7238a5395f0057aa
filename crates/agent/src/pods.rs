//! Pod workers: what runs on the node for each pod bound to it, read back
//! from the runtime on every sync (so a restarted agent adopts what runs),
//! and the pod status Kubernetes reports.
//!
//! One sync of a pod ([`PodSyncer::sync`]): a ready sandbox (run one when
//! there is none), init containers one at a time in order, then every app
//! container; exited containers restart by the pod's `restartPolicy` with
//! kubelet's back-off (immediately, then 10 s doubling to 5 min:
//! `CrashLoopBackOff`); images present in the runtime are used, absent ones
//! are pulled (`ErrImagePull`, then `ImagePullBackOff` while backing off;
//! `ErrImageNeverPull` for `imagePullPolicy: Never`). The returned status
//! has the phase (kubelet's `getPhase`), the five conditions, container
//! statuses (state, lastState, restartCount, containerID, imageID), podIP,
//! hostIP and startTime.
//!
//! [`PodSyncer::kill`] stops a pod's containers with a grace period
//! (SIGTERM, then SIGKILL) and removes its sandboxes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::cri::{self, RuntimeService, SandboxConfig, SandboxState};
use crate::{dns, env, lifecycle, resources, security, volumes};

pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// First restart delay after the immediate one; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long an image pull may take.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a pod with live containers is looked at again (container
/// exits are noticed by polling the runtime).
pub const RESYNC: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Backoff {
    delay: Duration,
    until: Instant,
}

/// The result of one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    pub status: PodStatus,
    /// Sync again after this long.
    pub requeue_after: Option<Duration>,
}

/// Syncs pods against one runtime.
pub struct PodSyncer {
    pub cri: Arc<dyn RuntimeService>,
    /// `containerd`: container ids are `containerd://ID`.
    pub runtime_name: String,
    /// Pod log directories are `<log_root>/<ns>_<name>_<uid>`.
    pub log_root: PathBuf,
    pub host_ip: String,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Liveness, readiness and startup probes of the running containers.
    pub prober: crate::probes::Prober,
    /// Where ConfigMaps and Secrets are read (the API in the real agent).
    pub objects: Arc<dyn env::Objects>,
    /// The node's allocatable resources, for `resourceFieldRef` limits.
    pub allocatable: BTreeMap<String, String>,
    /// Service account tokens of projected volumes.
    pub tokens: volumes::Tokens,
    /// Cluster DNS, domain and the host's resolv.conf for pods' DNS.
    pub dns: dns::NodeDns,
    /// The node's memory in bytes (Burstable containers' OOM scores).
    pub memory_capacity: i64,
    /// Where `Localhost` seccomp profiles are.
    pub seccomp_root: PathBuf,
    /// Pod-level cgroups (`kubepods/<qos>/pod<uid>`), where they can be made.
    pub cgroups: Option<crate::cgroups::Cgroups>,
    /// The cgroup settings each running container (by runtime id) was
    /// given, at creation or by a resize since.
    applied: Mutex<HashMap<String, cri::LinuxResources>>,
}

pub use crate::env::expand;

fn ts(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Timestamp::from_second(nanos / 1_000_000_000).ok())
        .flatten()
        .map(Time)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..ContainerState::default()
    }
}

fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// What one sync pass decided for one container.
#[derive(Default)]
struct Plan {
    waiting: HashMap<String, (String, Option<String>)>,
    wake: Option<Duration>,
    acted: bool,
    /// The pod's volumes, set up for this sync.
    volumes: BTreeMap<String, volumes::Prepared>,
    /// Ephemeral containers to start in another container's process
    /// namespace: name -> the target's runtime id.
    targets: HashMap<String, String>,
    /// Why a resize waits (PodResizePending), when it does.
    resize_pending: Option<String>,
}

/// The process namespace a pod's containers (and its sandbox) share:
/// the host's (`hostPID`), the pod's (`shareProcessNamespace`), else each
/// its own.
fn pid_mode(spec: &k8s_openapi::api::core::v1::PodSpec) -> cri::PidMode {
    if spec.host_pid == Some(true) {
        cri::PidMode::Node
    } else if spec.share_process_namespace == Some(true) {
        cri::PidMode::Pod
    } else {
        cri::PidMode::Container
    }
}

/// An ephemeral container as the container it runs as (the fields they
/// share; the API server keeps the rest unset).
fn ephemeral_as_container(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    serde_json::to_value(e)
        .and_then(serde_json::from_value)
        .unwrap_or_else(|_| Container {
            name: e.name.clone(),
            image: e.image.clone(),
            ..Container::default()
        })
}

impl Plan {
    fn wake_in(&mut self, d: Duration) {
        self.wake = Some(self.wake.map_or(d, |w| w.min(d)));
    }
}

/// The `hostPort`s of a pod's containers, as the kubelet hands them to
/// the runtime (its app containers' ports; the protocol defaults to TCP).
pub fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<cri::PortMapping> {
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| cri::PortMapping {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

impl PodSyncer {
    pub fn new(
        cri: Arc<dyn RuntimeService>,
        runtime_name: &str,
        log_root: PathBuf,
        host_ip: String,
    ) -> PodSyncer {
        PodSyncer {
            prober: crate::probes::Prober::new(cri.clone()),
            cri,
            runtime_name: runtime_name.to_owned(),
            host_ip,
            backoff: Mutex::new(HashMap::new()),
            objects: Arc::new(env::StaticObjects::default()),
            allocatable: BTreeMap::new(),
            tokens: volumes::Tokens::default(),
            dns: dns::NodeDns {
                cluster_domain: "cluster.local".to_owned(),
                ..dns::NodeDns::default()
            },
            memory_capacity: 0,
            seccomp_root: log_root.join("../seccomp"),
            log_root,
            cgroups: None,
            applied: Mutex::new(HashMap::new()),
        }
    }

    fn labels(pod: &Pod) -> BTreeMap<String, String> {
        let m = &pod.metadata;
        BTreeMap::from([
            (
                LABEL_POD_NAME.to_owned(),
                m.name.clone().unwrap_or_default(),
            ),
            (
                LABEL_POD_NAMESPACE.to_owned(),
                m.namespace.clone().unwrap_or_default(),
            ),
            (LABEL_POD_UID.to_owned(), m.uid.clone().unwrap_or_default()),
        ])
    }

    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> SandboxConfig {
        let m = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let (ns, name, uid) = (
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
            m.uid.clone().unwrap_or_default(),
        );
        let mut labels = m.labels.clone().unwrap_or_default();
        labels.extend(Self::labels(pod));
        let host_network = spec.host_network == Some(true);
        let cgroup_parent = match &self.cgroups {
            Some(_) => crate::cgroups::pod_cgroup(resources::qos_class(&spec), &uid),
            None => String::new(),
        };
        SandboxConfig {
            // Host-network pods have the host's UTS namespace and name.
            hostname: if host_network {
                String::new()
            } else {
                spec.hostname.clone().unwrap_or_else(|| name.clone())
            },
            log_directory: self
                .log_root
                .join(format!("{ns}_{name}_{uid}"))
                .display()
                .to_string(),
            host_network,
            labels,
            annotations: m.annotations.clone().unwrap_or_default(),
            name,
            namespace: ns,
            uid,
            attempt,
            cgroup_parent,
            privileged: security::has_privileged_container(pod),
            dns: Some(dns::pod_dns(pod, &self.dns)),
            port_mappings: if host_network {
                Vec::new()
            } else {
                port_mappings(&spec)
            },
            pid: pid_mode(&spec),
            host_ipc: spec.host_ipc == Some(true),
        }
    }

    fn container_config(
        &self,
        pod: &Pod,
        c: &Container,
        image: &cri::Image,
        attempt: u32,
        envs: Vec<(String, String)>,
    ) -> cri::ContainerConfig {
        let map: HashMap<String, String> = envs.iter().cloned().collect();
        let mut labels = Self::labels(pod);
        labels.insert(LABEL_CONTAINER_NAME.to_owned(), c.name.clone());
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        let mut annotations = BTreeMap::from([
            (
                "io.kubernetes.container.restartCount".to_owned(),
                attempt.to_string(),
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod".to_owned(),
                grace.to_string(),
            ),
        ]);
        annotations.extend(lifecycle::annotations(c));
        let spec = pod.spec.clone().unwrap_or_default();
        cri::ContainerConfig {
            name: c.name.clone(),
            attempt,
            image: image.id.clone(),
            command: c
                .command
                .iter()
                .flatten()
                .map(|s| expand(s, &map))
                .collect(),
            args: c.args.iter().flatten().map(|s| expand(s, &map)).collect(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs,
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            tty: c.tty == Some(true),
            stdin: c.stdin == Some(true),
            host_network: spec.host_network == Some(true),
            mounts: Vec::new(),
            resources: Some(resources::linux_resources(&spec, c, self.memory_capacity)),
            security: security::container_security(
                pod,
                c,
                image.uid,
                &image.username,
                &self.seccomp_root,
            ),
            pid: pid_mode(&spec),
            host_ipc: spec.host_ipc == Some(true),
        }
    }

    fn pod_context(&self, pod_ip: &str) -> env::PodContext {
        env::PodContext {
            host_ip: self.host_ip.clone(),
            pod_ip: pod_ip.to_owned(),
            allocatable: self.allocatable.clone(),
        }
    }

    /// `<log_root>/<uid>`: the pod's volumes and files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.log_root.join(uid)
    }

    fn backoff_key(pod: &Pod, what: &str, name: &str) -> String {
        format!(
            "{}/{what}/{name}",
            pod.metadata.uid.as_deref().unwrap_or_default()
        )
    }

    /// Whether `key` is backing off: the time left.
    fn backing_off(&self, key: &str) -> Option<(Duration, Duration)> {
        let b = self.backoff.lock().unwrap();
        let e = b.get(key)?;
        let now = Instant::now();
        (now < e.until).then(|| (e.until - now, e.delay))
    }

    /// Starts the next back-off period of `key` (10 s, doubling).
    fn back_off(&self, key: &str) {
        let mut b = self.backoff.lock().unwrap();
        let delay = b
            .get(key)
            .map_or(INITIAL_BACKOFF, |e| (e.delay * 2).min(MAX_BACKOFF));
        b.insert(
            key.to_owned(),
            Backoff {
                delay,
                until: Instant::now() + delay,
            },
        );
    }

    /// Forgets every back-off of the pod `uid`.
    pub fn forget(&self, uid: &str) {
        let prefix = format!("{uid}/");
        self.backoff
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// Makes sure the image is there; the image reference to run, or the
    /// waiting reason.
    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        plan: &mut Plan,
    ) -> Result<String, (String, Option<String>)> {
        let image = c.image.clone().unwrap_or_default();
        let record = |reason: &str, m: String| self.prober.record(pod, &c.name, reason, m);
        let policy = c
            .image_pull_policy
            .as_deref()
            .unwrap_or_else(|| api::image::default_pull_policy(&image));
        // Always: pulled before every start, present or not (the registry
        // decides whether it is still the image to run).
        if policy != "Always" {
            match self.cri.image_status(&image).await {
                Ok(Some(img)) => {
                    record(
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                    return Ok(img.id);
                }
                Ok(None) => {}
                Err(e) => return Err(("ErrImagePull".into(), Some(e.message))),
            }
        }
        if policy == "Never" {
            record(
                "ErrImageNeverPull",
                format!("Container image \"{image}\" is not present with pull policy of Never"),
            );
            return Err((
                "ErrImageNeverPull".into(),
                Some(format!(
                    "Container image \"{image}\" is not present with pull policy of Never"
                )),
            ));
        }
        let key = Self::backoff_key(pod, "image", &c.name);
        if let Some((left, _)) = self.backing_off(&key) {
            plan.wake_in(left);
            record("BackOff", format!("Back-off pulling image \"{image}\""));
            return Err((
                "ImagePullBackOff".into(),
                Some(format!("Back-off pulling image \"{image}\"")),
            ));
        }
        plan.acted = true;
        record("Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let creds = self.pull_credentials(pod, &image).await;
        let pulled = tokio::time::timeout(PULL_TIMEOUT, async {
            // Each matching credential in turn, as the kubelet does; with
            // none, anonymously.
            if creds.is_empty() {
                return self.cri.pull_image(&image, None).await;
            }
            let mut last = None;
            for auth in &creds {
                match self.cri.pull_image(&image, Some(auth)).await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.expect("at least one credential"))
        })
        .await;
        match pulled {
            Ok(Ok(r)) => {
                self.backoff.lock().unwrap().remove(&key);
                record(
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s",
                        started.elapsed().as_secs_f64()
                    ),
                );
                Ok(r)
            }
            Ok(Err(e)) => {
                self.back_off(&key);
                plan.wake_in(INITIAL_BACKOFF.min(Duration::from_secs(2)));
                let message = format!("failed to pull image \"{image}\": {}", e.message);
                record(
                    "Failed",
                    format!("Failed to pull image \"{image}\": {}", e.message),
                );
                Err(("ErrImagePull".into(), Some(message)))
            }
            Err(_) => {
                self.back_off(&key);
                record(
                    "Failed",
                    format!("Failed to pull image \"{image}\": timed out"),
                );
                Err((
                    "ErrImagePull".into(),
                    Some(format!("pulling image \"{image}\" timed out")),
                ))
            }
        }
    }

    /// The registry credentials of the pod's `imagePullSecrets` that apply
    /// to `image`. A secret that cannot be read is skipped (the kubelet
    /// logs it and pulls with the rest).
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Vec<crate::cri::Auth> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let refs = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .into_iter()
            .flatten();
        let mut all = Vec::new();
        for r in refs {
            match self.objects.secret(ns, &r.name).await {
                Ok(Some(secret)) => all.extend(crate::pull_secrets::from_secret(&secret)),
                Ok(None) => {
                    tracing::warn!(pod = %format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or("")), secret = %r.name, "image pull secret not found; pulling without it")
                }
                Err(e) => tracing::warn!(secret = %r.name, "reading image pull secret: {e}"),
            }
        }
        crate::pull_secrets::for_image(&all, image)
    }

    /// Creates and starts container `c` (its `attempt`-th run).
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sandbox_id: &str,
        sandbox: &SandboxConfig,
        pod_ip: &str,
        plan: &mut Plan,
    ) {
        let image = match self.ensure_image(pod, c, plan).await {
            Ok(i) => i,
            Err(w) => {
                plan.waiting.insert(c.name.clone(), w);
                return;
            }
        };
        plan.acted = true;
        // The image's user (for runAsNonRoot and to run as).
        let image = match self.cri.image_status(&image).await {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Ok(cri::Image {
                id: image,
                ..cri::Image::default()
            }),
            Err(e) => Err(e.message),
        };
        let ctx = self.pod_context(pod_ip);
        let built = match image {
            Ok(i) => security::verify_run_as_non_root(pod, c, i.uid, &i.username).map(|()| i),
            Err(e) => Err(e),
        };
        let built = match built {
            Ok(i) => env::container_env(pod, c, &ctx, self.objects.as_ref())
                .await
                .map(|e| (i, e)),
            Err(e) => Err(e),
        }
        .and_then(|(image, e)| {
            let mut mounts = volumes::container_mounts(c, &plan.volumes, &e)?;
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            mounts.extend(dns::hosts_mount(
                pod,
                &self.pod_dir(uid),
                pod_ip,
                &self.dns.cluster_domain,
                &mounts,
            )?);
            Ok((image, mounts, e))
        });
        let record = |reason: &str, m: String| self.prober.record(pod, &c.name, reason, m);
        let (image, mounts, envs) = match built {
            Ok(e) => e,
            Err(message) => {
                record("Failed", format!("Error: {message}"));
                plan.waiting.insert(
                    c.name.clone(),
                    ("CreateContainerConfigError".into(), Some(message)),
                );
                plan.wake_in(Duration::from_secs(2));
                return;
            }
        };
        let _ = std::fs::create_dir_all(PathBuf::from(&sandbox.log_directory).join(&c.name));
        let mut config = self.container_config(pod, c, &image, attempt, envs);
        config.mounts = mounts;
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        match crate::termination::prepare(&self.pod_dir(uid), c, attempt) {
            Ok(Some(m)) => config.mounts.push(m),
            Ok(None) => {}
            Err(e) => tracing::warn!(container = c.name, error = %e, "no termination message file"),
        }
        if let Some(target) = plan.targets.get(&c.name) {
            config.pid = cri::PidMode::Target(target.clone());
        }
        let id = match self
            .cri
            .create_container(sandbox_id, &config, sandbox)
            .await
        {
            Ok(id) => id,
            Err(e) => {
                record("Failed", format!("Error: {}", e.message));
                plan.waiting.insert(
                    c.name.clone(),
                    ("CreateContainerError".into(), Some(e.message)),
                );
                plan.wake_in(Duration::from_secs(2));
                return;
            }
        };
        record("Created", format!("Created container: {}", c.name));
        self.applied
            .lock()
            .unwrap()
            .insert(id.clone(), config.resources.clone().unwrap_or_default());
        if let Err(e) = self.cri.start_container(&id).await {
            tracing::info!(container = c.name, error = %e, "starting container failed");
            record("Failed", format!("Error: {}", e.message));
            return;
        }
        record("Started", format!("Started container {}", c.name));
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            self.post_start(pod, c, &id, h, pod_ip, plan).await;
        }
    }

    /// Runs container `id`'s postStart hook; kills the container when it
    /// fails.
    async fn post_start(
        &self,
        pod: &Pod,
        c: &Container,
        id: &str,
        h: &k8s_openapi::api::core::v1::LifecycleHandler,
        pod_ip: &str,
        plan: &mut Plan,
    ) {
        let label = security::pod_label(pod);
        let target = lifecycle::Target {
            container_id: id,
            container: c,
            pod: &label,
            pod_ip,
        };
        let ran = tokio::time::timeout(
            lifecycle::POST_START_TIMEOUT,
            lifecycle::run(self.cri.as_ref(), h, &target),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "PostStartHook for Container {:?} in Pod {label:?} timed out",
                c.name
            ))
        });
        let Err(message) = ran else { return };
        tracing::info!(
            container = c.name,
            pod = label,
            message,
            "postStart hook failed"
        );
        let record = |reason: &str, m: String| self.prober.record(pod, &c.name, reason, m);
        // The message stays out of the event (it may hold secrets).
        record("FailedPostStartHook", "PostStartHook failed".to_owned());
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        if let Err(e) = lifecycle::kill_container(
            self.cri.as_ref(),
            &record,
            &target,
            grace,
            Some("FailedPostStartHook".to_owned()),
        )
        .await
        {
            tracing::info!(container = c.name, error = %e, "killing a container whose postStart hook failed");
        }
        plan.waiting
            .insert(c.name.clone(), ("PostStartHookError".into(), Some(message)));
        plan.wake_in(Duration::from_secs(1));
    }

    /// Runs (or restarts, with back-off) an exited container.
    #[allow(clippy::too_many_arguments)]
    async fn restart(
        &self,
        pod: &Pod,
        c: &Container,
        last: &cri::ContainerStatus,
        sandbox_id: &str,
        sandbox: &SandboxConfig,
        pod_ip: &str,
        plan: &mut Plan,
    ) {
        let key = Self::backoff_key(pod, "crash", &c.name);
        // A container that ran for 10 minutes starts over with no back-off.
        if last.finished_at - last.started_at > 600 * 1_000_000_000 {
            self.backoff.lock().unwrap().remove(&key);
        }
        if let Some((left, delay)) = self.backing_off(&key) {
            let m = &pod.metadata;
            plan.waiting.insert(
                c.name.clone(),
                (
                    "CrashLoopBackOff".into(),
                    Some(format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        delay.as_secs(),
                        c.name,
                        m.name.as_deref().unwrap_or_default(),
                        m.namespace.as_deref().unwrap_or_default(),
                        m.uid.as_deref().unwrap_or_default()
                    )),
                ),
            );
            plan.wake_in(left + Duration::from_millis(50));
            return;
        }
        self.back_off(&key);
        self.start(pod, c, last.attempt + 1, sandbox_id, sandbox, pod_ip, plan)
            .await;
    }

    /// The pod's containers in `sandbox_id` by name, newest run first.
    async fn containers(
        &self,
        pod: &Pod,
        sandbox_id: &str,
    ) -> cri::Result<HashMap<String, Vec<cri::ContainerStatus>>> {
        let mut by_name: HashMap<String, Vec<cri::ContainerStatus>> = HashMap::new();
        for c in self.cri.list_containers(&Self::labels(pod)).await? {
            if c.sandbox_id != sandbox_id {
                continue;
            }
            match self.cri.container_status(&c.id).await {
                Ok(s) => by_name.entry(c.name.clone()).or_default().push(s),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        for v in by_name.values_mut() {
            v.sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
        }
        // containerd marks an OOM kill from its own OOM event, which can
        // land after the exit (seconds later on a loaded node): a fresh
        // SIGKILL exit of a container with a memory limit is read again
        // until [`OOM_SETTLE`] after it before it counts as `Error`.
        let limited = |name: &str| {
            let spec = pod.spec.as_ref();
            spec.into_iter()
                .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                .any(|c| {
                    c.name == name
                        && c.resources
                            .as_ref()
                            .and_then(|r| r.limits.as_ref())
                            .is_some_and(|l| l.contains_key("memory"))
                })
        };
        for (name, runs) in by_name.iter_mut() {
            if !limited(name) {
                continue;
            }
            for s in runs.iter_mut() {
                loop {
                    if !oom_unsettled(s, now_nanos()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match self.cri.container_status(&s.id).await {
                        Ok(fresh) => *s = fresh,
                        Err(_) => break,
                    }
                }
            }
        }
        Ok(by_name)
    }

    /// One sync of a pod that is not terminating: acts, then reports.
    pub async fn sync(&self, pod: &Pod) -> cri::Result<Synced> {
        let spec = pod.spec.clone().unwrap_or_default();
        let host_network = spec.host_network == Some(true);
        let policy = spec
            .restart_policy
            .as_deref()
            .unwrap_or("Always")
            .to_owned();
        let labels = Self::labels(pod);
        let sandboxes = self.cri.list_pod_sandbox(&labels).await?;
        let ready = sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .max_by_key(|s| (s.attempt, s.created_at));
        let mut plan = Plan::default();
        let (sandbox_id, attempt) = match ready {
            Some(s) => (s.id.clone(), s.attempt),
            None => {
                let attempt = sandboxes.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
                let cfg = self.sandbox_config(pod, attempt);
                let _ = std::fs::create_dir_all(&cfg.log_directory);
                if let (Some(cg), Some(spec)) = (&self.cgroups, pod.spec.as_ref()) {
                    let qos = resources::qos_class(spec);
                    let limits = resources::pod_resources(spec);
                    if let Err(e) = cg.ensure_pod(qos, &cfg.uid, &limits) {
                        // The runtime still makes the parent, without the
                        // pod's limits.
                        tracing::warn!(pod = ?pod.metadata.name, error = %e, "setting up the pod cgroup failed");
                    }
                }
                match self.cri.run_pod_sandbox(&cfg).await {
                    Ok(id) => (id, attempt),
                    Err(e) => {
                        tracing::warn!(pod = ?pod.metadata.name, error = %e, "creating the pod sandbox failed");
                        let mut status = self.status(pod, None, &HashMap::new(), &plan, false);
                        set_condition(&mut status, "PodReadyToStartContainers", false, None, None);
                        return Ok(Synced {
                            status,
                            requeue_after: Some(Duration::from_secs(5)),
                        });
                    }
                }
            }
        };
        let sandbox = self.sandbox_config(pod, attempt);
        let sb_status = self.cri.pod_sandbox_status(&sandbox_id).await?;
        let pod_ip = if host_network {
            Some(self.host_ip.clone())
        } else {
            sb_status.ip.clone()
        };
        let ip = pod_ip.clone().unwrap_or_default();
        let by_name = self.containers(pod, &sandbox_id).await?;
        match volumes::setup(
            pod,
            &self.pod_context(&ip),
            self.objects.as_ref(),
            &self.tokens,
            &self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default()),
        )
        .await
        {
            Ok(v) => plan.volumes = v,
            Err(message) => {
                tracing::warn!(pod = ?pod.metadata.name, reason = "FailedMount", message);
                let status = self.status(pod, pod_ip.as_deref(), &by_name, &plan, false);
                return Ok(Synced {
                    status,
                    requeue_after: Some(Duration::from_secs(2)),
                });
            }
        }
        let latest = |name: &str| by_name.get(name).and_then(|v| v.first());

        // Init containers, one at a time.
        let mut initialized = true;
        let mut init_failed = false;
        for c in spec.init_containers.iter().flatten() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            match latest(&c.name) {
                None => {
                    self.start(pod, c, 0, &sandbox_id, &sandbox, &ip, &mut plan)
                        .await;
                    if !sidecar {
                        initialized = false;
                        break;
                    }
                }
                Some(s) if s.state == cri::ContainerState::Exited => {
                    if s.exit_code == 0 && !sidecar {
                        continue;
                    }
                    if !sidecar && policy == "Never" {
                        init_failed = true;
                        initialized = false;
                        break;
                    }
                    let s = s.clone();
                    self.restart(pod, c, &s, &sandbox_id, &sandbox, &ip, &mut plan)
                        .await;
                    if !sidecar {
                        initialized = false;
                        break;
                    }
                }
                Some(_) if sidecar => {}
                Some(_) => {
                    initialized = false;
                    break;
                }
            }
        }
        if initialized {
            for c in &spec.containers {
                match latest(&c.name) {
                    None => {
                        self.start(pod, c, 0, &sandbox_id, &sandbox, &ip, &mut plan)
                            .await
                    }
                    Some(s)
                        if s.state == cri::ContainerState::Exited
                            && restarts(&policy, s.exit_code) =>
                    {
                        let s = s.clone();
                        self.restart(pod, c, &s, &sandbox_id, &sandbox, &ip, &mut plan)
                            .await;
                    }
                    Some(_) => {}
                }
            }
        }
        if initialized {
            self.resize(pod, &spec, &by_name, &sandbox_id, &sandbox, &ip, &mut plan)
                .await;
        }
        // Ephemeral containers (`kubectl debug`): started once each, once
        // the pod's own are under way; never restarted.
        for e in spec.ephemeral_containers.iter().flatten() {
            if latest(&e.name).is_some() {
                continue;
            }
            if let Some(target) = e.target_container_name.as_deref() {
                match latest(target) {
                    Some(t) if t.state == cri::ContainerState::Running => {
                        plan.targets.insert(e.name.clone(), t.id.clone());
                    }
                    // Its target must run first.
                    _ => {
                        plan.wake_in(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let c = ephemeral_as_container(e);
            self.start(pod, &c, 0, &sandbox_id, &sandbox, &ip, &mut plan)
                .await;
        }
        let by_name = if plan.acted {
            self.containers(pod, &sandbox_id).await?
        } else {
            by_name
        };
        let by_name = if self.probe(pod, &spec, &by_name, &ip).await {
            plan.wake_in(Duration::from_millis(100));
            self.containers(pod, &sandbox_id).await?
        } else {
            by_name
        };
        let mut status = self.status(pod, pod_ip.as_deref(), &by_name, &plan, init_failed);
        let ready_to_start =
            sb_status.sandbox.state == SandboxState::Ready && (host_network || pod_ip.is_some());
        let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        set_condition(
            &mut status,
            "PodReadyToStartContainers",
            ready_to_start && !terminal,
            None,
            None,
        );
        let requeue_after = if terminal {
            None
        } else {
            Some(plan.wake.map_or(RESYNC, |w| w.min(RESYNC)))
        };
        Ok(Synced {
            status,
            requeue_after,
        })
    }

    /// In-place resize: a running app container whose resources (as its
    /// spec now says) differ from those it was given gets the new ones
    /// through CRI's UpdateContainerResources, with the pod cgroup raised
    /// before and lowered after; when its `resizePolicy` says
    /// RestartContainer for a resource that changed, it is restarted with
    /// them instead. A resize past the node's allocatable waits
    /// (PodResizePending, Infeasible). Containers this agent did not
    /// start (adopted after a restart) are given their spec's resources.
    #[allow(clippy::too_many_arguments)]
    async fn resize(
        &self,
        pod: &Pod,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        by_name: &HashMap<String, Vec<cri::ContainerStatus>>,
        sandbox_id: &str,
        sandbox: &SandboxConfig,
        pod_ip: &str,
        plan: &mut Plan,
    ) {
        let mut changed = Vec::new();
        for c in &spec.containers {
            let Some(s) = by_name
                .get(&c.name)
                .and_then(|v| v.first())
                .filter(|s| s.state == cri::ContainerState::Running)
            else {
                continue;
            };
            let want = resources::linux_resources(spec, c, self.memory_capacity);
            let have = self.applied.lock().unwrap().get(&s.id).cloned();
            if have.as_ref() != Some(&want) {
                changed.push((c, s.clone(), want, have));
            }
        }
        if changed.is_empty() {
            return;
        }
        // Feasible: the pod's requests within the node's allocatable.
        let total = |name: &str| -> i128 {
            spec.containers
                .iter()
                .filter_map(|c| {
                    let r = c.resources.as_ref()?;
                    let q = r
                        .requests
                        .as_ref()
                        .and_then(|m| m.get(name))
                        .or_else(|| r.limits.as_ref().and_then(|m| m.get(name)))?;
                    api::quantity::Quantity::parse(&q.0)
                })
                .map(|q| q.milli)
                .sum()
        };
        for name in ["cpu", "memory"] {
            let Some(cap) = self
                .allocatable
                .get(name)
                .and_then(|q| api::quantity::Quantity::parse(q))
            else {
                continue;
            };
            let asked = total(name);
            if asked > cap.milli {
                let show = |m: i128| {
                    if name == "cpu" {
                        m.to_string()
                    } else {
                        (m / 1000).to_string()
                    }
                };
                plan.resize_pending = Some(format!(
                    "Node didn't have enough capacity: {name}, requested: {}, capacity: {}",
                    show(asked),
                    show(cap.milli)
                ));
                return;
            }
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let pod_cgroup = || {
            if let Some(cg) = &self.cgroups {
                let qos = resources::qos_class(spec);
                if let Err(e) = cg.ensure_pod(qos, uid, &resources::pod_resources(spec)) {
                    tracing::debug!(pod = ?pod.metadata.name, error = %e, "resizing the pod cgroup");
                }
            }
        };
        pod_cgroup();
        for (c, s, want, have) in changed {
            let restart_for = |resource: &str| {
                c.resize_policy
                    .iter()
                    .flatten()
                    .any(|p| p.resource_name == resource && p.restart_policy == "RestartContainer")
            };
            let restart = have.as_ref().is_some_and(|h| {
                (restart_for("cpu")
                    && (h.cpu_shares != want.cpu_shares || h.cpu_quota != want.cpu_quota))
                    || (restart_for("memory")
                        && h.memory_limit_in_bytes != want.memory_limit_in_bytes)
            });
            if restart {
                let _ = self.cri.stop_container(&s.id, 2).await;
                self.applied.lock().unwrap().remove(&s.id);
                self.start(pod, c, s.attempt + 1, sandbox_id, sandbox, pod_ip, plan)
                    .await;
                continue;
            }
            match self.cri.update_container_resources(&s.id, &want).await {
                Ok(()) => {
                    self.applied.lock().unwrap().insert(s.id.clone(), want);
                    plan.acted = true;
                }
                Err(e) => {
                    tracing::warn!(container = c.name, error = %e, "resizing the container failed");
                    plan.wake_in(Duration::from_secs(2));
                }
            }
        }
        pod_cgroup();
    }

    /// Keeps probe workers on the running containers (app containers and
    /// sidecars) and kills those whose liveness or startup probe failed for
    /// good; true when it killed one.
    async fn probe(
        &self,
        pod: &Pod,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        by_name: &HashMap<String, Vec<cri::ContainerStatus>>,
        pod_ip: &str,
    ) -> bool {
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut stale = Vec::new();
        let mut killed = false;
        for c in spec.containers.iter().chain(sidecars) {
            for (i, run) in by_name.get(&c.name).into_iter().flatten().enumerate() {
                if i > 0 || run.state != cri::ContainerState::Running {
                    stale.push(run.id.clone());
                    continue;
                }
                let Some(why) = self.prober.outcome(&run.id).and_then(|o| o.kill) else {
                    self.prober.ensure(pod, c, &run.id, pod_ip);
                    continue;
                };
                stale.push(run.id.clone());
                let probe_grace = [&c.liveness_probe, &c.startup_probe]
                    .into_iter()
                    .flatten()
                    .find_map(|p| p.termination_grace_period_seconds);
                let grace = probe_grace
                    .or(spec.termination_grace_period_seconds)
                    .unwrap_or(30);
                let label = security::pod_label(pod);
                let target = lifecycle::Target {
                    container_id: &run.id,
                    container: c,
                    pod: &label,
                    pod_ip,
                };
                let record = |reason: &str, m: String| self.prober.record(pod, &c.name, reason, m);
                if let Err(e) =
                    lifecycle::kill_container(self.cri.as_ref(), &record, &target, grace, Some(why))
                        .await
                {
                    tracing::info!(container = c.name, error = %e, "killing an unhealthy container failed");
                }
                killed = true;
            }
        }
        self.prober.forget(&stale);
        killed
    }

    fn container_status(
        &self,
        pod_dir: &Path,
        c: &Container,
        runs: &[cri::ContainerStatus],
        waiting_for: Option<&(String, Option<String>)>,
        default_waiting: &str,
    ) -> ContainerStatus {
        let terminated = |s: &cri::ContainerStatus| ContainerStateTerminated {
            exit_code: s.exit_code,
            reason: Some(if !s.reason.is_empty() {
                s.reason.clone()
            } else if s.exit_code == 0 {
                "Completed".to_owned()
            } else {
                "Error".to_owned()
            }),
            message: crate::termination::message(pod_dir, c, s),
            started_at: ts(s.started_at),
            finished_at: ts(s.finished_at),
            container_id: Some(format!("{}://{}", self.runtime_name, s.id)),
            signal: None,
        };
        let as_state = |t: ContainerStateTerminated| ContainerState {
            terminated: Some(t),
            ..ContainerState::default()
        };
        let latest = runs.first();
        let previous = runs.get(1).map(|s| as_state(terminated(s)));
        let (state, last_state) = match (latest, waiting_for) {
            (Some(l), Some((reason, msg))) if l.state == cri::ContainerState::Exited => {
                (waiting(reason, msg.clone()), Some(as_state(terminated(l))))
            }
            (Some(l), _) => match l.state {
                cri::ContainerState::Running => (
                    ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: ts(l.started_at),
                        }),
                        ..ContainerState::default()
                    },
                    previous,
                ),
                cri::ContainerState::Exited => (as_state(terminated(l)), previous),
                _ => (waiting("ContainerCreating", None), previous),
            },
            (None, Some((reason, msg))) => (waiting(reason, msg.clone()), None),
            (None, None) => (waiting(default_waiting, None), None),
        };
        let running = state.running.is_some();
        let (started, ready) = match latest {
            Some(l) if running => self.prober.started_ready(c, &l.id),
            _ => (false, false),
        };
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
            container_id: latest.map(|l| format!("{}://{}", self.runtime_name, l.id)),
            ready,
            started: Some(started),
            restart_count: latest.map_or(0, |l| l.attempt as i32),
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..ContainerStatus::default()
        }
    }

    /// The status from what runs (`by_name`) and what this pass decided.
    fn status(
        &self,
        pod: &Pod,
        pod_ip: Option<&str>,
        by_name: &HashMap<String, Vec<cri::ContainerStatus>>,
        plan: &Plan,
        init_failed: bool,
    ) -> PodStatus {
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let cur = pod.status.clone().unwrap_or_default();
        let empty = Vec::new();
        let runs = |name: &str| by_name.get(name).unwrap_or(&empty);
        let pod_dir = self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default());

        let mut incomplete = Vec::new();
        let mut init_statuses = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            let s = self.container_status(
                &pod_dir,
                c,
                runs(&c.name),
                plan.waiting.get(&c.name),
                "PodInitializing",
            );
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let done = if sidecar {
                s.state.as_ref().is_some_and(|s| s.running.is_some())
            } else {
                s.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            };
            if !done {
                incomplete.push(c.name.clone());
            }
            init_statuses.push(s);
        }
        let initialized = incomplete.is_empty();
        let waiting_default = if initialized {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let mut statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| {
                self.container_status(
                    &pod_dir,
                    c,
                    runs(&c.name),
                    plan.waiting.get(&c.name),
                    waiting_default,
                )
            })
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));

        // kubelet's getPhase.
        let (mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0);
        for s in &statuses {
            let st = s.state.clone().unwrap_or_default();
            if st.running.is_some() {
                running += 1;
            } else if let Some(t) = &st.terminated {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            } else if s
                .last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                stopped += 1;
            } else {
                waiting_n += 1;
            }
        }
        let phase = if init_failed {
            "Failed"
        } else if !initialized || waiting_n > 0 {
            "Pending"
        } else if running > 0 {
            "Running"
        } else if stopped > 0 {
            match policy {
                "Always" => "Running",
                "OnFailure" if stopped == succeeded => "Succeeded",
                "OnFailure" => "Running",
                _ if stopped == succeeded => "Succeeded",
                _ => "Failed",
            }
        } else {
            "Pending"
        };
        let terminal = matches!(phase, "Succeeded" | "Failed");

        let mut st = cur.clone();
        st.phase = Some(phase.to_owned());
        st.host_ip = Some(self.host_ip.clone());
        st.host_ips = Some(vec![HostIP {
            ip: self.host_ip.clone(),
        }]);
        if let Some(ip) = pod_ip {
            st.pod_ip = Some(ip.to_owned());
            st.pod_ips = Some(vec![PodIP { ip: ip.to_owned() }]);
        }
        if st.start_time.is_none() {
            st.start_time = Some(Time(
                Timestamp::from_second(Timestamp::now().as_second()).unwrap(),
            ));
        }
        if st.qos_class.is_none() {
            st.qos_class = Some(resources::qos_class(&spec).to_owned());
        }
        let unready: Vec<&str> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.as_str())
            .collect();
        let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
        set_condition(&mut st, "PodScheduled", true, None, None);
        if initialized {
            set_condition(&mut st, "Initialized", true, None, None);
        } else {
            set_condition(
                &mut st,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            );
        }
        for c in ["ContainersReady", "Ready"] {
            if terminal {
                set_condition(&mut st, c, false, Some("PodCompleted"), None);
            } else if unready.is_empty() {
                set_condition(&mut st, c, true, None, None);
            } else {
                set_condition(
                    &mut st,
                    c,
                    false,
                    Some("ContainersNotReady"),
                    Some(unready_msg.clone()),
                );
            }
        }
        // What the running containers were given (their spec's CPU and
        // memory once a resize is applied), and whether a resize waits.
        for s in statuses.iter_mut() {
            let Some(c) = spec.containers.iter().find(|c| c.name == s.name) else {
                continue;
            };
            let running = s.state.as_ref().is_some_and(|x| x.running.is_some());
            let id = s
                .container_id
                .as_deref()
                .and_then(|i| i.split_once("://"))
                .map(|(_, i)| i.to_owned());
            let applied = id.and_then(|i| self.applied.lock().unwrap().get(&i).cloned());
            if !running
                || applied != Some(resources::linux_resources(&spec, c, self.memory_capacity))
            {
                continue;
            }
            let pick = |m: Option<
                &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
            >| {
                let m: BTreeMap<_, _> = m
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                (!m.is_empty()).then_some(m)
            };
            let r = c.resources.as_ref();
            let requests = pick(r.and_then(|r| r.requests.as_ref()));
            let limits = pick(r.and_then(|r| r.limits.as_ref()));
            s.allocated_resources = requests.clone().or_else(|| limits.clone());
            s.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests,
                limits,
                ..Default::default()
            });
        }
        match &plan.resize_pending {
            Some(message) => {
                let conds = st.conditions.get_or_insert_with(Vec::new);
                let since = conds
                    .iter()
                    .find(|x| x.type_ == "PodResizePending")
                    .and_then(|x| x.last_transition_time.clone())
                    .unwrap_or_else(|| {
                        Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap())
                    });
                let c = PodCondition {
                    type_: "PodResizePending".into(),
                    status: "True".into(),
                    reason: Some("Infeasible".into()),
                    message: Some(message.clone()),
                    last_transition_time: Some(since),
                    ..PodCondition::default()
                };
                conds.retain(|x| x.type_ != "PodResizePending");
                conds.push(c);
            }
            None => {
                if let Some(conds) = st.conditions.as_mut() {
                    conds.retain(|x| x.type_ != "PodResizePending");
                }
            }
        }
        st.container_statuses = Some(statuses);
        st.init_container_statuses = (!init_statuses.is_empty()).then_some(init_statuses);
        let ephemeral: Vec<ContainerStatus> = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|e| {
                let c = ephemeral_as_container(e);
                self.container_status(
                    &pod_dir,
                    &c,
                    runs(&c.name),
                    plan.waiting.get(&c.name),
                    "ContainerCreating",
                )
            })
            .collect();
        st.ephemeral_container_statuses = (!ephemeral.is_empty()).then_some(ephemeral);
        st
    }

    /// Stops the pod's containers (SIGTERM, SIGKILL after `grace`
    /// seconds, all at once) and removes its sandboxes. `labels` selects
    /// the sandboxes (a pod uid, or namespace and name).
    pub async fn kill(
        &self,
        labels: &BTreeMap<String, String>,
        grace: i64,
        keep_uid: Option<&str>,
    ) -> cri::Result<usize> {
        let sandboxes: Vec<cri::Sandbox> = self
            .cri
            .list_pod_sandbox(labels)
            .await?
            .into_iter()
            .filter(|s| keep_uid != Some(s.uid.as_str()))
            .collect();
        let containers = self.cri.list_containers(labels).await?;
        let ids: Vec<String> = containers
            .iter()
            .filter(|c| sandboxes.iter().any(|s| s.id == c.sandbox_id))
            .map(|c| c.id.clone())
            .collect();
        self.prober.forget(&ids);
        {
            let mut applied = self.applied.lock().unwrap();
            for id in &ids {
                applied.remove(id);
            }
        }
        let mut ips = HashMap::new();
        for s in &sandboxes {
            let ip = match self.cri.pod_sandbox_status(&s.id).await {
                Ok(st) => st.ip.unwrap_or_else(|| self.host_ip.clone()),
                Err(_) => String::new(),
            };
            ips.insert(s.id.clone(), ip);
        }
        self.stop_containers(&containers, &sandboxes, |id| ips.get(id).cloned(), grace)
            .await?;
        for s in &sandboxes {
            for r in [
                self.cri.stop_pod_sandbox(&s.id).await,
                self.cri.remove_pod_sandbox(&s.id).await,
            ] {
                match r {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            self.forget(&s.uid);
            self.tokens.forget(&s.uid);
            if !s.uid.is_empty() {
                volumes::teardown(&self.pod_dir(&s.uid));
                if let Some(cg) = &self.cgroups {
                    cg.remove_pod(&s.uid);
                }
            }
            let dir = self
                .log_root
                .join(format!("{}_{}_{}", s.namespace, s.name, s.uid));
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(sandboxes.len())
    }

    /// Stops the running containers selected by `labels` again with a
    /// shorter grace period (a second deletion shortened it while
    /// [`PodSyncer::kill`] waits): SIGTERM, SIGKILL after `grace` (at
    /// least 2) seconds; hooks do not run again.
    pub async fn shorten_grace(&self, labels: &BTreeMap<String, String>, grace: i64) {
        let Ok(containers) = self.cri.list_containers(labels).await else {
            return;
        };
        let timeout = lifecycle::remaining_grace(grace, 0);
        let stops = containers
            .iter()
            .filter(|c| c.state == cri::ContainerState::Running)
            .map(|c| self.cri.stop_container(&c.id, timeout));
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::debug!(error = %e, "stopping with a shorter grace period");
            }
        }
    }

    /// Stops running container `c` of sandbox `s` (its preStop hook from
    /// its annotations first), with `grace` seconds in all.
    /// Stops `containers` (those of `sandboxes`) all at once: running ones
    /// killed with `grace` (preStop hooks first; `ip_of` a sandbox's pod
    /// IP for httpGet hooks), created ones stopped. Gone already is fine.
    async fn stop_containers(
        &self,
        containers: &[cri::Container],
        sandboxes: &[cri::Sandbox],
        ip_of: impl Fn(&str) -> Option<String>,
        grace: i64,
    ) -> cri::Result<()> {
        let stops = containers.iter().filter_map(|c| {
            let s = sandboxes.iter().find(|s| s.id == c.sandbox_id)?;
            match c.state {
                cri::ContainerState::Running => {
                    let ip = ip_of(&s.id).unwrap_or_default();
                    Some(self.kill_container(s, c, ip, grace).boxed())
                }
                cri::ContainerState::Created => {
                    Some(self.cri.stop_container(&c.id, grace.max(0)).boxed())
                }
                _ => None,
            }
        });
        for r in futures::future::join_all(stops).await {
            match r {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn kill_container(
        &self,
        s: &cri::Sandbox,
        c: &cri::Container,
        pod_ip: String,
        grace: i64,
    ) -> cri::Result<()> {
        let spec = lifecycle::from_annotations(&c.name, &c.annotations);
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                uid: Some(s.uid.clone()),
                ..Default::default()
            },
            ..Pod::default()
        };
        let label = security::pod_label(&pod);
        let target = lifecycle::Target {
            container_id: &c.id,
            container: &spec,
            pod: &label,
            pod_ip: &pod_ip,
        };
        let record = |reason: &str, m: String| self.prober.record(&pod, &c.name, reason, m);
        lifecycle::kill_container(self.cri.as_ref(), &record, &target, grace, None).await
    }

    /// Stops a pod that is to end without being deleted (evicted): its
    /// running containers with `grace` seconds (preStop hooks first), then
    /// its sandboxes; containers and logs stay. Returns the status they
    /// leave (the caller sets the phase).
    pub async fn stop_pod(&self, pod: &Pod, grace: i64) -> cri::Result<PodStatus> {
        let labels = Self::labels(pod);
        let sandboxes = self.cri.list_pod_sandbox(&labels).await?;
        let containers = self.cri.list_containers(&labels).await?;
        let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
        self.prober.forget(&ids);
        {
            let mut applied = self.applied.lock().unwrap();
            for id in &ids {
                applied.remove(id);
            }
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default();
        self.stop_containers(&containers, &sandboxes, |_| Some(ip.clone()), grace)
            .await?;
        let latest = sandboxes.iter().max_by_key(|s| (s.attempt, s.created_at));
        let by_name = match latest {
            Some(s) => self.containers(pod, &s.id).await?,
            None => HashMap::new(),
        };
        let status = self.status(
            pod,
            (!ip.is_empty()).then_some(ip.as_str()),
            &by_name,
            &Plan::default(),
            false,
        );
        for s in &sandboxes {
            if s.state == SandboxState::Ready {
                match self.cri.stop_pod_sandbox(&s.id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(status)
    }

    /// A finished pod: its sandboxes are stopped (containers and logs stay
    /// until the pod is deleted).
    pub async fn stop_sandboxes(&self, pod: &Pod) -> cri::Result<()> {
        for s in self.cri.list_pod_sandbox(&Self::labels(pod)).await? {
            if s.state == SandboxState::Ready {
                self.cri.stop_pod_sandbox(&s.id).await?;
            }
        }
        Ok(())
    }

    /// Labels selecting a pod's sandboxes by uid.
    pub fn uid_labels(uid: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_POD_UID.to_owned(), uid.to_owned())])
    }

    /// Labels selecting a pod's sandboxes by namespace and name.
    pub fn name_labels(ns: &str, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_POD_NAMESPACE.to_owned(), ns.to_owned()),
            (LABEL_POD_NAME.to_owned(), name.to_owned()),
        ])
    }
}

pub(crate) fn set_condition(
    st: &mut PodStatus,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) {
    let status = if ok { "True" } else { "False" };
    let conds = st.conditions.get_or_insert_with(Vec::new);
    let now = Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap());
    let new = |since: Option<Time>| PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.map(str::to_owned),
        message: message.clone(),
        last_transition_time: since.or(Some(now.clone())),
        ..PodCondition::default()
    };
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let since = (c.status == status)
                .then(|| c.last_transition_time.clone())
                .flatten();
            let keep_probe = c.last_probe_time.clone();
            *c = new(since);
            c.last_probe_time = keep_probe;
        }
        None => conds.push(new(None)),
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// How long after a SIGKILL exit the runtime's OOM event may still come.
const OOM_SETTLE: Duration = Duration::from_secs(6);

/// A container killed by SIGKILL (exit 137) less than [`OOM_SETTLE`] ago
/// that the runtime does not (yet) call `OOMKilled`: its OOM event may
/// still come.
pub(crate) fn oom_unsettled(s: &cri::ContainerStatus, now: i64) -> bool {
    s.state == cri::ContainerState::Exited
        && s.exit_code == 137
        && matches!(s.reason.as_str(), "" | "Error")
        && s.finished_at > 0
        && now - s.finished_at < OOM_SETTLE.as_nanos() as i64
}

/// The status of a pod the kubelet itself ended (evicted, past its
/// deadline): every container that had no chance to run or whose run the
/// runtime no longer knows is reported terminated with
/// `ContainerStatusUnknown`, as the kubelet's status manager does when it
/// terminates a pod. App containers are only once the pod has initialized;
/// init containers up to the last one with evidence of a start.
pub(crate) fn settle_terminated(spec: &k8s_openapi::api::core::v1::PodSpec, st: &mut PodStatus) {
    fn unknown() -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 137,
                reason: Some("ContainerStatusUnknown".into()),
                message: Some(
                    "The container could not be located when the pod was terminated".into(),
                ),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }
    fn started(s: &ContainerStatus) -> bool {
        let waiting = s.state.as_ref().is_none_or(|st| st.waiting.is_some());
        let ran_before = s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some());
        !waiting || ran_before
    }
    fn terminated(s: &ContainerStatus) -> bool {
        s.state.as_ref().is_some_and(|st| st.terminated.is_some())
    }
    let inits = st.init_container_statuses.get_or_insert_with(Vec::new);
    let initialized = spec.init_containers.as_ref().is_none_or(Vec::is_empty)
        || st.container_statuses.iter().flatten().any(started)
        || inits.last().is_some_and(|last| {
            let sidecar = spec
                .init_containers
                .iter()
                .flatten()
                .find(|c| c.name == last.name)
                .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"));
            let state = last.state.clone().unwrap_or_default();
            if sidecar {
                state.running.is_some() || started(last)
            } else {
                state.terminated.is_some_and(|t| t.exit_code == 0)
            }
        });
    if let Some(upto) = inits.iter().rposition(started) {
        for s in &mut inits[..=upto] {
            if !terminated(s) {
                s.state = Some(unknown());
                s.ready = false;
            }
        }
    }
    if inits.is_empty() {
        st.init_container_statuses = None;
    }
    if initialized {
        for s in st.container_statuses.iter_mut().flatten() {
            if !terminated(s) {
                s.state = Some(unknown());
                s.ready = false;
                s.started = Some(false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
