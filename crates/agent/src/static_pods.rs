//! Static pods: pods the agent reads from its manifest directory
//! (`--pod-manifest-path`, default `<data-dir>/agent/pod-manifests`) and
//! runs without the API server, shown there as mirror pods.
//!
//! As the kubelet's file source does:
//!
//! - every `*.yaml`, `*.yml` and `*.json` file (not hidden, not in a sub
//!   folder) holds one Pod: the first YAML document, which must be a v1
//!   Pod (later documents are ignored, as the kubelet's decoder reads one
//!   object); invalid files are logged and skipped;
//! - the pod is named `<name>-<node>`, gets namespace `default` when it has
//!   none, `spec.nodeName`, a uid hashed from the decoded pod, the node and
//!   the file's path (the kubelet hashes the same three), the annotations
//!   `kubernetes.io/config.hash` (= the uid), `kubernetes.io/config.source:
//!   file` and `kubernetes.io/config.seen`, and a toleration of every
//!   NoExecute taint; two files with one pod name: the first (by file
//!   name) wins;
//! - the directory is read again every few seconds and whenever inotify
//!   reports a change: an added, changed (new uid) or removed file
//!   starts, replaces or stops its pod.
//!
//! The mirror pod ([`mirror_pod`]) is the static pod's copy in the API:
//! same name, labels, annotations and spec, plus
//! `kubernetes.io/config.mirror: <hash>` and the Node as controlling
//! owner. The agent keeps its status, recreates it when it is deleted or
//! no longer matches ([`is_mirror_of`]), and deletes it when the file goes
//! away (`kubelet` does this part).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde_json::Value;

pub const ANNOTATION_SOURCE: &str = "kubernetes.io/config.source";
pub const ANNOTATION_HASH: &str = "kubernetes.io/config.hash";
pub const ANNOTATION_SEEN: &str = "kubernetes.io/config.seen";
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";
/// `kubernetes.io/config.source` of pods from files.
pub const SOURCE_FILE: &str = "file";

/// Whether a directory entry is a manifest to read.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// The Pod in a manifest: the first YAML document (JSON is YAML), which
/// must be a v1 Pod.
pub fn decode(content: &str) -> Result<Pod, String> {
    let doc = serde_yaml_ng::Deserializer::from_str(content)
        .next()
        .ok_or_else(|| "the file holds no object".to_owned())?;
    let value = Value::deserialize(doc).map_err(|e| format!("not YAML or JSON: {e}"))?;
    if !value.is_object() {
        return Err("the file does not hold an object".to_owned());
    }
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    match (version, kind) {
        (_, "") => return Err("Object 'Kind' is missing".to_owned()),
        ("v1", "Pod") => {}
        _ => {
            return Err(format!(
                "invalid pod: the object is a {kind} ({version}), not a v1 Pod"
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| format!("invalid pod: {e}"))
}

/// The uid (and `kubernetes.io/config.hash`) of a static pod: a hash of
/// the decoded pod, the node and the file, 32 hex digits as the kubelet's.
pub fn pod_hash(pod: &Pod, node_name: &str, source: &Path) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&serde_json::to_vec(pod).unwrap_or_default());
    ctx.update(format!("host:{node_name}").as_bytes());
    ctx.update(format!("file:{}", source.display()).as_bytes());
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The static pod of a decoded manifest (the kubelet's applyDefaults),
/// checked as the API server would check the pod (metadata and spec);
/// `seen` is the `kubernetes.io/config.seen` timestamp.
pub fn static_pod(pod: Pod, source: &Path, node_name: &str, seen: &str) -> Result<Pod, String> {
    let mut pod = pod;
    let uid = match pod.metadata.uid.as_deref() {
        Some(u) if !u.is_empty() => u.to_owned(),
        _ => pod_hash(&pod, node_name, source),
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.metadata.uid = Some(uid.clone());
    pod.metadata.name = Some(format!("{name}-{}", node_name.to_lowercase()));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".to_owned());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_owned());
    let tolerate = Toleration {
        operator: Some("Exists".to_owned()),
        effect: Some("NoExecute".to_owned()),
        ..Toleration::default()
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate) {
        tolerations.push(tolerate);
    }
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_HASH.to_owned(), uid);
    annotations.insert(ANNOTATION_SOURCE.to_owned(), SOURCE_FILE.to_owned());
    annotations.insert(ANNOTATION_SEEN.to_owned(), seen.to_owned());
    pod.status = Some(PodStatus {
        phase: Some("Pending".to_owned()),
        ..PodStatus::default()
    });
    if name.is_empty() {
        return Err("metadata.name: Required value: name or generateName is required".into());
    }
    let value = serde_json::to_value(&pod).map_err(|e| e.to_string())?;
    let mut causes = api::validation::validate_object_meta(
        &value["metadata"],
        true,
        api::validation::NameRule::Subdomain,
    );
    causes.extend(api::spec_validation::validate("", "Pod", &value));
    if !causes.is_empty() {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        return Err(format!("invalid pod: {}", list.join(", ")));
    }
    Ok(pod)
}

/// Whether a pod from the API is a mirror pod.
pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, ANNOTATION_MIRROR).is_some()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Whether `mirror` is the mirror pod of `static_pod` (same name and
/// namespace, and the mirror annotation is the static pod's hash).
pub fn is_mirror_of(mirror: &Pod, static_pod: &Pod) -> bool {
    mirror.metadata.name == static_pod.metadata.name
        && mirror.metadata.namespace == static_pod.metadata.namespace
        && annotation(mirror, ANNOTATION_MIRROR).is_some()
        && annotation(mirror, ANNOTATION_MIRROR) == annotation(static_pod, ANNOTATION_HASH)
}

/// The mirror pod to create for a static pod on node `node_name` (uid
/// `node_uid`): the static pod's metadata and spec, the mirror annotation,
/// the Node as controlling owner; no uid, no status (the API server sets
/// them).
pub fn mirror_pod(static_pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut meta = static_pod.metadata.clone();
    meta.uid = None;
    meta.resource_version = None;
    meta.creation_timestamp = None;
    meta.generation = None;
    meta.managed_fields = None;
    let hash = annotation(static_pod, ANNOTATION_HASH)
        .unwrap_or_default()
        .to_owned();
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_MIRROR.to_owned(), hash);
    meta.owner_references = Some(vec![OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Node".to_owned(),
        name: node_name.to_owned(),
        uid: node_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    Pod {
        metadata: meta,
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// One manifest as read: its path and the static pod, or why it was
/// skipped.
pub type Manifest = (PathBuf, Result<Pod, String>);

/// Reads the manifests in `dir` (sorted by file name) into static pods;
/// `seen` gives the `config.seen` timestamp for a pod's uid.
pub fn read_dir(dir: &Path, node_name: &str, seen: &dyn Fn(&str) -> String) -> Vec<Manifest> {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| is_manifest_name(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            // Regular files, links to them included; no sub folders.
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
        .into_iter()
        .filter_map(|path| {
            let content = match std::fs::read_to_string(&path) {
                Ok(c) => c,
                // Removed meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => return Some((path, Err(format!("reading the file: {e}")))),
            };
            let pod = decode(&content).and_then(|pod| {
                let uid = pod_hash(&pod, node_name, &path);
                let uid = pod.metadata.uid.clone().unwrap_or(uid);
                static_pod(pod, &path, node_name, &seen(&uid))
            });
            Some((path, pod))
        })
        .collect()
}

/// The static pods by key (`namespace/name`) from what was read: the
/// first file wins a name; the others are reported as duplicates.
pub fn by_key(manifests: Vec<Manifest>) -> (StaticPods, Vec<(PathBuf, String)>) {
    let mut pods = BTreeMap::new();
    let mut skipped = Vec::new();
    for (path, pod) in manifests {
        match pod {
            Err(e) => skipped.push((path, e)),
            Ok(pod) => match pods.entry(runtime::key_of(&pod.metadata)) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    skipped.push((path, format!("duplicate pod name {}", e.key())));
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(Arc::new(pod));
                }
            },
        }
    }
    (pods, skipped)
}

/// Static pods by key (`namespace/name`).
pub type StaticPods = BTreeMap<String, Arc<Pod>>;

/// The static pods the agent runs, shared by the pod workers, the source
/// and the kubelet server: the current ones by key, and the ones whose
/// file went away or changed, until their containers are stopped.
#[derive(Clone, Default)]
pub struct Registry(Arc<RwLock<Inner>>);

#[derive(Default)]
struct Inner {
    pods: StaticPods,
    gone: BTreeMap<String, Vec<Arc<Pod>>>,
}

fn uid_of(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or_default()
}

impl Registry {
    /// The static pod of `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Arc<Pod>> {
        self.0.read().unwrap().pods.get(key).cloned()
    }

    /// Every current static pod.
    pub fn all(&self) -> Vec<Arc<Pod>> {
        self.0.read().unwrap().pods.values().cloned().collect()
    }

    /// The static pod of that name, if any (for the kubelet server).
    pub fn find(&self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        self.get(&format!("{ns}/{name}"))
    }

    /// The uid's static pod (current, or gone but not stopped yet).
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Pod>> {
        let inner = self.0.read().unwrap();
        inner
            .pods
            .values()
            .chain(inner.gone.values().flatten())
            .find(|p| uid_of(p) == uid)
            .cloned()
    }

    /// The uid's config.seen, if the pod is known.
    pub fn seen(&self, uid: &str) -> Option<String> {
        self.by_uid(uid)
            .and_then(|p| annotation(&p, ANNOTATION_SEEN).map(str::to_owned))
    }

    /// The uids of every static pod whose containers may run.
    pub fn uids(&self) -> HashSet<String> {
        let inner = self.0.read().unwrap();
        inner
            .pods
            .values()
            .chain(inner.gone.values().flatten())
            .map(|p| uid_of(p).to_owned())
            .collect()
    }

    /// The pods of `key` that went away, to stop.
    pub fn gone(&self, key: &str) -> Vec<Arc<Pod>> {
        self.0
            .read()
            .unwrap()
            .gone
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// The gone pod `uid` of `key` is stopped.
    pub fn stopped(&self, key: &str, uid: &str) {
        let mut inner = self.0.write().unwrap();
        if let Some(list) = inner.gone.get_mut(key) {
            list.retain(|p| uid_of(p) != uid);
            if list.is_empty() {
                inner.gone.remove(key);
            }
        }
    }

    /// Takes the pods now in the directory; returns the keys whose pod
    /// was added, replaced (another uid) or removed.
    pub fn replace(&self, pods: StaticPods) -> Vec<String> {
        let mut inner = self.0.write().unwrap();
        let mut changed = Vec::new();
        let old = std::mem::take(&mut inner.pods);
        for (key, pod) in &old {
            match pods.get(key) {
                Some(new) if uid_of(new) == uid_of(pod) => {}
                _ => {
                    inner.gone.entry(key.clone()).or_default().push(pod.clone());
                    changed.push(key.clone());
                }
            }
        }
        for (key, pod) in &pods {
            // Back to a pod that was being stopped: it stays.
            if let Some(list) = inner.gone.get_mut(key) {
                list.retain(|p| uid_of(p) != uid_of(pod));
                if list.is_empty() {
                    inner.gone.remove(key);
                }
            }
            if !old.contains_key(key) {
                changed.push(key.clone());
            }
        }
        inner.pods = pods;
        changed.sort();
        changed.dedup();
        changed
    }
}

/// Watches a directory with inotify (created, removed, renamed, written
/// files): readable when something changed.
pub struct DirWatch {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl DirWatch {
    pub fn new(dir: &Path) -> std::io::Result<DirWatch> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the descriptor is owned from here on.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
        let mask = libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MODIFY
            | libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_ATTRIB
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the AsyncFd owns the descriptor, open until it is dropped.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(DirWatch { fd })
    }

    /// Waits for events and reads them all; false when the watch ended
    /// (the directory was removed or moved).
    pub async fn changed(&self) -> std::io::Result<bool> {
        use std::os::fd::AsRawFd;
        let mut alive = true;
        let mut guard = self.fd.readable().await?;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a buffer of the given length.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    return Ok(alive);
                }
                return Err(e);
            }
            if n == 0 {
                guard.clear_ready();
                return Ok(alive);
            }
            // Events: wd (4), mask (4), cookie (4), len (4), name (len).
            let mut at = 0usize;
            while at + 16 <= n as usize {
                let mask = u32::from_ne_bytes(buf[at + 4..at + 8].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                    alive = false;
                }
                at += 16 + len;
            }
        }
    }
}

#[cfg(test)]
mod tests;
