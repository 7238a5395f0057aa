//! Measuring the eviction signals and what pods use.
//!
//! - `memory.available` is capacity minus the root cgroup's working set,
//!   as the kubelet computes it: on cgroup v1, `memory.usage_in_bytes`
//!   minus `total_inactive_file` of `/sys/fs/cgroup/memory`; on cgroup v2
//!   (the root cgroup has no `memory.current`) `MemTotal - MemFree` of
//!   /proc/meminfo minus `inactive_file` of `/sys/fs/cgroup/memory.stat`;
//!   where neither can be read, /proc/meminfo's `MemAvailable`.
//! - `nodefs.*`: statvfs of the agent's data dir (free blocks for
//!   unprivileged users, as cAdvisor reports them); `imagefs.*`: statvfs
//!   of the runtime's root when it is on another filesystem, else the same.
//! - `pid.available`: min(`kernel.pid_max`, `kernel.threads-max`) minus
//!   the tasks /proc/loadavg counts.
//! - Pods: memory working set and writable layer from CRI
//!   `ListContainerStats`; logs and emptyDir volumes (not `Memory`
//!   medium: those are tmpfs mounts) by walking their directories.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{FsUse, Observation, Observations, Signal};

/// A `key value` line of /proc/meminfo in bytes (values are in kB).
fn meminfo_field(meminfo: &str, key: &str) -> Option<i128> {
    let line = meminfo.lines().find(|l| l.split(':').next() == Some(key))?;
    let kb: i128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A `key value` line of a cgroup memory.stat.
fn stat_field(stat: &str, key: &str) -> Option<i128> {
    stat.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// Where memory.available comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemorySource {
    CgroupV1,
    CgroupV2,
    MemAvailable,
}

/// memory.available from the files' contents: `meminfo`, and the root
/// cgroup's files where there are some (v1: usage_in_bytes and
/// memory.stat; v2: memory.stat).
pub fn memory_available(
    meminfo: &str,
    v1: Option<(&str, &str)>,
    v2_stat: Option<&str>,
) -> Option<(Observation, MemorySource)> {
    let capacity = meminfo_field(meminfo, "MemTotal")?;
    let from = |working_set: i128, src| {
        Some((
            Observation {
                available: (capacity - working_set.max(0)).max(0),
                capacity,
            },
            src,
        ))
    };
    if let Some((usage, stat)) = v1 {
        if let (Ok(usage), Some(inactive)) = (
            usage.trim().parse::<i128>(),
            stat_field(stat, "total_inactive_file"),
        ) {
            return from(usage - inactive, MemorySource::CgroupV1);
        }
    }
    if let Some(stat) = v2_stat {
        if let (Some(free), Some(inactive)) = (
            meminfo_field(meminfo, "MemFree"),
            stat_field(stat, "inactive_file"),
        ) {
            return from(capacity - free - inactive, MemorySource::CgroupV2);
        }
    }
    let available = meminfo_field(meminfo, "MemAvailable")?;
    Some((
        Observation {
            available,
            capacity,
        },
        MemorySource::MemAvailable,
    ))
}

/// pid.available from `pid_max`, `threads-max` and /proc/loadavg.
pub fn pid_available(pid_max: &str, threads_max: &str, loadavg: &str) -> Option<Observation> {
    let max: i128 = pid_max.trim().parse().ok()?;
    let max = match threads_max.trim().parse::<i128>() {
        Ok(t) if t < max => t,
        _ => max,
    };
    let tasks: i128 = loadavg
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    Some(Observation {
        available: max - tasks,
        capacity: max,
    })
}

/// A filesystem's size and free space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    pub device: u64,
    pub capacity: u64,
    pub available: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

pub fn statvfs(path: &Path) -> Option<FsStats> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some(FsStats {
        device: std::fs::metadata(path).ok()?.dev(),
        capacity: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The node's signals now, and whether the image filesystem is separate.
/// `data_dir`: the node filesystem; `image_root`: the runtime's root.
pub fn node(data_dir: &Path, image_root: Option<&Path>) -> (Observations, bool) {
    let mut obs = Observations::new();
    let meminfo = read("/proc/meminfo").unwrap_or_default();
    let v1 = (
        read("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        read("/sys/fs/cgroup/memory/memory.stat"),
    );
    let v1 = match &v1 {
        (Some(u), Some(s)) => Some((u.as_str(), s.as_str())),
        _ => None,
    };
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers")
        .exists()
        .then(|| read("/sys/fs/cgroup/memory.stat"))
        .flatten();
    if let Some((o, _)) = memory_available(&meminfo, v1, v2.as_deref()) {
        obs.insert(Signal::MemoryAvailable, o);
    }
    if let Some(o) = pid_available(
        &read("/proc/sys/kernel/pid_max").unwrap_or_default(),
        &read("/proc/sys/kernel/threads-max").unwrap_or_default(),
        &read("/proc/loadavg").unwrap_or_default(),
    ) {
        obs.insert(Signal::PidAvailable, o);
    }
    let nodefs = statvfs(data_dir);
    let imagefs = image_root.and_then(statvfs).or(nodefs);
    let separate = matches!((nodefs, imagefs), (Some(n), Some(i)) if n.device != i.device);
    for (fs, bytes, inodes) in [
        (nodefs, Signal::NodeFsAvailable, Signal::NodeFsInodesFree),
        (imagefs, Signal::ImageFsAvailable, Signal::ImageFsInodesFree),
    ] {
        if let Some(fs) = fs {
            obs.insert(
                bytes,
                Observation {
                    available: fs.available.into(),
                    capacity: fs.capacity.into(),
                },
            );
            obs.insert(
                inodes,
                Observation {
                    available: fs.inodes_free.into(),
                    capacity: fs.inodes.into(),
                },
            );
        }
    }
    (obs, separate)
}

/// Disk use under `dir` (`du`: allocated blocks, each inode once), not
/// crossing into other filesystems.
pub fn du(dir: &Path) -> FsUse {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return FsUse::default();
    };
    let dev = top.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = FsUse::default();
    let mut stack = vec![(dir.to_path_buf(), top)];
    while let Some((path, md)) = stack.pop() {
        if md.dev() != dev || !seen.insert(md.ino()) {
            continue;
        }
        total.bytes += md.blocks() * 512;
        total.inodes += 1;
        if md.is_dir() {
            for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                if let Ok(m) = e.metadata() {
                    stack.push((e.path(), m));
                }
            }
        }
    }
    total
}

/// Use of a pod's emptyDir volumes under `pod_dir` (tmpfs ones, being
/// other filesystems, count nothing).
pub fn volumes(pod_dir: &Path) -> FsUse {
    empty_dirs(pod_dir).0
}

/// A pod's emptyDir volumes: the node-filesystem total (not `Memory`
/// ones: they are tmpfs mounts), and each volume's bytes by name (all).
pub fn empty_dirs(pod_dir: &Path) -> (FsUse, BTreeMap<String, u64>) {
    let dir = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    let mut total = FsUse::default();
    let mut each = BTreeMap::new();
    let Ok(parent) = std::fs::metadata(&dir) else {
        return (total, each);
    };
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        let used = du(&e.path());
        each.insert(e.file_name().to_string_lossy().into_owned(), used.bytes);
        if m.dev() == parent.dev() {
            total = total + used;
        }
    }
    (total, each)
}

/// Each container's log use under the pod's log directory
/// (`<container>/<attempt>.log`).
pub fn logs(pod_log_dir: &Path) -> HashMap<String, FsUse> {
    std::fs::read_dir(pod_log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), du(&e.path())))
        .collect()
}
