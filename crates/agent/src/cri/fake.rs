//! A recording, in-memory runtime for unit tests: sandboxes and containers
//! are records whose states tests move on ([`FakeRuntime::exit`]); every
//! call is logged ([`FakeRuntime::calls`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::*;

#[derive(Default)]
struct State {
    next: u64,
    now: i64,
    calls: Vec<String>,
    sandboxes: BTreeMap<String, (SandboxConfig, SandboxState, i64)>,
    containers: BTreeMap<String, ContainerStatus>,
    sandbox_of: BTreeMap<String, String>,
    images: BTreeSet<String>,
    /// Image users (uid, name) set by tests.
    image_users: BTreeMap<String, (Option<i64>, String)>,
    fail_pull: bool,
    /// Pulls fail even for images the runtime holds.
    registry_down: bool,
    /// Every container config created, by container id.
    configs: BTreeMap<String, ContainerConfig>,
    /// Usage set by tests, by container id.
    usage: BTreeMap<String, (Option<u64>, Option<u64>)>,
}

/// See the module docs.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn matches(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

impl FakeRuntime {
    /// A runtime holding these images.
    pub fn with_images(images: &[&str]) -> FakeRuntime {
        let f = FakeRuntime::default();
        {
            let mut s = f.state.lock().unwrap();
            s.images = images.iter().map(|i| i.to_string()).collect();
            s.fail_pull = true;
            s.now = 1_000_000_000_000_000_000;
        }
        f
    }

    /// Every pull fails from now on, of present images too.
    pub fn take_registry_down(&self) {
        self.state.lock().unwrap().registry_down = true;
    }

    /// The calls so far, e.g. `start_container c2`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Sets what a container uses: memory working set and writable layer
    /// bytes (reported by `list_container_stats`).
    pub fn set_usage(&self, id: &str, memory: Option<u64>, writable_layer: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        s.usage.insert(id.to_owned(), (memory, writable_layer));
    }

    /// Makes a running container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        let mut s = self.state.lock().unwrap();
        s.now += 1_000_000_000;
        let now = s.now;
        if let Some(c) = s.containers.get_mut(id) {
            c.state = ContainerState::Exited;
            c.exit_code = code;
            c.finished_at = now;
            c.reason = if code == 0 { "Completed" } else { "Error" }.to_owned();
        }
    }

    /// Containers (id, name, state), in creation order.
    pub fn containers(&self) -> Vec<(String, String, ContainerState)> {
        let s = self.state.lock().unwrap();
        let mut v: Vec<_> = s
            .containers
            .values()
            .map(|c| (c.created_at, c.id.clone(), c.name.clone(), c.state))
            .collect();
        v.sort();
        v.into_iter().map(|(_, id, n, st)| (id, n, st)).collect()
    }

    /// Gives `image` a user (numeric, or a name).
    pub fn set_image_user(&self, image: &str, uid: Option<i64>, username: &str) {
        self.state
            .lock()
            .unwrap()
            .image_users
            .insert(image.to_owned(), (uid, username.to_owned()));
    }

    pub fn sandbox_count(&self) -> usize {
        self.state.lock().unwrap().sandboxes.len()
    }

    /// The config container `id` was created with.
    pub fn container_config(&self, id: &str) -> Option<ContainerConfig> {
        self.state.lock().unwrap().configs.get(id).cloned()
    }

    /// The configs of the sandboxes run so far.
    pub fn sandbox_configs(&self) -> Vec<SandboxConfig> {
        let s = self.state.lock().unwrap();
        s.sandboxes.values().map(|(c, _, _)| c.clone()).collect()
    }

    fn log(&self, call: String) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(call);
        s.now += 1_000_000;
        s
    }
}

#[async_trait::async_trait]
impl RuntimeService for FakeRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion {
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> Result<String> {
        let mut s = self.log(format!("run_pod_sandbox {}", config.name));
        s.next += 1;
        let id = format!("s{}", s.next);
        let now = s.now;
        s.sandboxes
            .insert(id.clone(), (config.clone(), SandboxState::Ready, now));
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.log(format!("stop_pod_sandbox {id}"));
        let now = s.now;
        let ids: Vec<String> = s
            .sandbox_of
            .iter()
            .filter(|(_, sb)| *sb == id)
            .map(|(c, _)| c.clone())
            .collect();
        for c in ids {
            if let Some(c) = s.containers.get_mut(&c) {
                if c.state == ContainerState::Running {
                    c.state = ContainerState::Exited;
                    c.exit_code = 137;
                    c.finished_at = now;
                }
            }
        }
        if let Some(sb) = s.sandboxes.get_mut(id) {
            sb.1 = SandboxState::NotReady;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut s = self.log(format!("remove_pod_sandbox {id}"));
        s.sandboxes.remove(id);
        let ids: Vec<String> = s
            .sandbox_of
            .iter()
            .filter(|(_, sb)| *sb == id)
            .map(|(c, _)| c.clone())
            .collect();
        for c in ids {
            s.containers.remove(&c);
            s.sandbox_of.remove(&c);
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let s = self.state.lock().unwrap();
        let (c, state, created) = s.sandboxes.get(id).ok_or_else(|| CriError::not_found(id))?;
        Ok(SandboxStatus {
            sandbox: Sandbox {
                id: id.to_owned(),
                name: c.name.clone(),
                namespace: c.namespace.clone(),
                uid: c.uid.clone(),
                attempt: c.attempt,
                state: *state,
                created_at: *created,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
            },
            ip: (!c.host_network).then(|| "10.42.0.9".to_owned()),
        })
    }

    async fn list_pod_sandbox(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Sandbox>> {
        let s = self.state.lock().unwrap();
        Ok(s.sandboxes
            .iter()
            .filter(|(_, (c, _, _))| matches(&c.labels, labels))
            .map(|(id, (c, state, created))| Sandbox {
                id: id.clone(),
                name: c.name.clone(),
                namespace: c.namespace.clone(),
                uid: c.uid.clone(),
                attempt: c.attempt,
                state: *state,
                created_at: *created,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &SandboxConfig,
    ) -> Result<String> {
        let mut s = self.log(format!("create_container {}", config.name));
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(CriError::not_found(sandbox_id));
        }
        s.next += 1;
        let id = format!("c{}", s.next);
        let now = s.now;
        s.sandbox_of.insert(id.clone(), sandbox_id.to_owned());
        s.configs.insert(id.clone(), config.clone());
        s.containers.insert(
            id.clone(),
            ContainerStatus {
                id: id.clone(),
                name: config.name.clone(),
                attempt: config.attempt,
                state: ContainerState::Created,
                created_at: now,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                image: config.image.clone(),
                image_ref: format!("sha256:{}", config.image),
                reason: String::new(),
                message: String::new(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                log_path: config.log_path.clone(),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut s = self.log(format!("start_container {id}"));
        let now = s.now;
        let c = s
            .containers
            .get_mut(id)
            .ok_or_else(|| CriError::not_found(id))?;
        c.state = ContainerState::Running;
        c.started_at = now;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<()> {
        let mut s = self.log(format!("stop_container {id} {timeout_seconds}"));
        let now = s.now;
        if let Some(c) = s.containers.get_mut(id) {
            if c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = 137;
                c.reason = "Error".into();
                c.finished_at = now;
            }
        }
        Ok(())
    }

    async fn update_container_resources(&self, id: &str, r: &LinuxResources) -> Result<()> {
        let mut s = self.log(format!(
            "update_container_resources {id} quota={} memory={}",
            r.cpu_quota, r.memory_limit_in_bytes
        ));
        if let Some(cfg) = s.configs.get_mut(id) {
            cfg.resources = Some(r.clone());
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut s = self.log(format!("remove_container {id}"));
        s.containers.remove(id);
        s.sandbox_of.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let s = self.state.lock().unwrap();
        s.containers
            .get(id)
            .cloned()
            .ok_or_else(|| CriError::not_found(id))
    }

    async fn list_containers(&self, labels: &BTreeMap<String, String>) -> Result<Vec<Container>> {
        let s = self.state.lock().unwrap();
        Ok(s.containers
            .values()
            .filter(|c| matches(&c.labels, labels))
            .map(|c| Container {
                id: c.id.clone(),
                sandbox_id: s.sandbox_of.get(&c.id).cloned().unwrap_or_default(),
                name: c.name.clone(),
                attempt: c.attempt,
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
            })
            .collect())
    }

    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>> {
        let s = self.state.lock().unwrap();
        Ok(s.containers
            .values()
            .filter(|c| c.state != ContainerState::Exited)
            .map(|c| {
                let (memory, layer) = s.usage.get(&c.id).copied().unwrap_or_default();
                ContainerStats {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    labels: c.labels.clone(),
                    memory_working_set_bytes: memory,
                    writable_layer_bytes: layer,
                    writable_layer_inodes: layer.map(|_| 1),
                    ..ContainerStats::default()
                }
            })
            .collect())
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let s = self.state.lock().unwrap();
        // By name, or by the id this fake gives it.
        let name = image.strip_prefix("sha256:").unwrap_or(image);
        let (uid, username) = s.image_users.get(name).cloned().unwrap_or_default();
        Ok(s.images.contains(name).then(|| Image {
            id: format!("sha256:{name}"),
            repo_tags: vec![name.to_owned()],
            uid,
            username,
            ..Image::default()
        }))
    }

    async fn pull_image(&self, image: &str, auth: Option<&Auth>) -> Result<String> {
        let s = match auth {
            Some(a) => self.log(format!("pull_image {image} as {}", a.username)),
            None => self.log(format!("pull_image {image}")),
        };
        // The registry has what the runtime holds (a pull of a present
        // image succeeds), unless it is unreachable.
        let held = s.images.contains(image) && !s.registry_down;
        if s.fail_pull && !held {
            return Err(CriError::other(format!(
                "failed to pull and unpack image \"{image}\": not found"
            )));
        }
        Ok(format!("sha256:{image}"))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let s = self.state.lock().unwrap();
        Ok(s.images
            .iter()
            .map(|name| Image {
                id: format!("sha256:{name}"),
                repo_tags: vec![name.clone()],
                size: 1 << 20,
                ..Image::default()
            })
            .collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let mut s = self.log(format!("remove_image {image}"));
        let name = image.strip_prefix("sha256:").unwrap_or(image).to_owned();
        s.images.remove(&name);
        Ok(())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        _timeout_seconds: i64,
    ) -> Result<super::ExecResult> {
        let s = self.log(format!("exec_sync {container_id} {}", cmd.join(" ")));
        match s.containers.get(container_id) {
            None => Err(CriError::not_found(container_id.to_owned())),
            // The fake "runs" `true`, `false` and `exit N`.
            Some(_) => Ok(super::ExecResult {
                exit_code: match cmd.last().map(String::as_str) {
                    Some("true") => 0,
                    Some(last) => last
                        .strip_prefix("exit ")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                    None => 1,
                },
                ..Default::default()
            }),
        }
    }

    async fn exec(&self, request: &ExecRequest) -> Result<String> {
        let s = self.log(format!(
            "exec {} {}",
            request.container_id,
            request.cmd.join(" ")
        ));
        if !s.containers.contains_key(&request.container_id) {
            return Err(CriError::not_found(request.container_id.clone()));
        }
        Ok(format!("http://127.0.0.1:1/exec/{}", request.container_id))
    }

    async fn attach(&self, request: &AttachRequest) -> Result<String> {
        let s = self.log(format!("attach {}", request.container_id));
        if !s.containers.contains_key(&request.container_id) {
            return Err(CriError::not_found(request.container_id.clone()));
        }
        Ok(format!(
            "http://127.0.0.1:1/attach/{}",
            request.container_id
        ))
    }

    async fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String> {
        let s = self.log(format!("port_forward {sandbox_id} {ports:?}"));
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(CriError::not_found(sandbox_id.to_owned()));
        }
        Ok(format!("http://127.0.0.1:1/portforward/{sandbox_id}"))
    }
}
