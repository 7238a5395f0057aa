//! Pod-level cgroups, as the kubelet lays them out with the cgroupfs
//! driver (`--cgroups-per-qos`): every pod gets `kubepods/pod<uid>`
//! (Guaranteed), `kubepods/burstable/pod<uid>` or
//! `kubepods/besteffort/pod<uid>`, created before its sandbox and handed to
//! the runtime as the sandbox's `cgroup_parent`, so the pause container and
//! every container of the pod live below it. The pod cgroup carries the
//! pod's own limits ([`crate::resources::pod_resources`]): CPU shares (or
//! v2 weight) from its requests, a CFS quota and a memory limit where every
//! container is limited; BestEffort's QoS cgroup gets the minimum shares.
//! The pod cgroup goes with the pod's last sandbox. cgroup v1 (memory, cpu
//! and pids hierarchies; the runtime creates the rest) and v2 (the unified
//! hierarchy, with cpu, memory and pids enabled down the path). Where the
//! cgroup filesystem is missing or read-only the agent runs pods without
//! pod cgroups and says so once.

use std::io;
use std::path::{Path, PathBuf};

use crate::resources::{PodResources, QUOTA_PERIOD};

/// The top of the pods' hierarchy, below the cgroup root.
pub const KUBEPODS: &str = "kubepods";
/// v1 hierarchies the agent writes to or creates the pod's directory in.
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller, `<root>/<controller>/...`.
    V1,
    /// The unified hierarchy, `<root>/...`.
    V2,
}

#[derive(Clone, Debug)]
pub struct Cgroups {
    root: PathBuf,
    layout: Layout,
}

/// The cgroup (relative to the hierarchy, with a leading `/`) of a pod of
/// QoS class `qos`.
pub fn pod_cgroup(qos: &str, uid: &str) -> String {
    match qos {
        api::qos::GUARANTEED => format!("/{KUBEPODS}/pod{uid}"),
        api::qos::BEST_EFFORT => format!("/{KUBEPODS}/besteffort/pod{uid}"),
        _ => format!("/{KUBEPODS}/burstable/pod{uid}"),
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

fn mkdir(path: &Path) -> io::Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating {}: {e}", path.display()),
        )),
    }
}

/// cgroup v2's `cpu.weight` for v1 CPU shares (as runc converts them).
pub fn shares_to_weight(shares: i64) -> i64 {
    if shares <= 0 {
        return 100;
    }
    1 + ((shares - 2) * 9999) / 262_142
}

impl Cgroups {
    /// The layout under `root` (normally `/sys/fs/cgroup`), if pod cgroups
    /// can be made there: the hierarchies are mounted and `kubepods` can
    /// be created in them (it is, as the kubelet creates it at start).
    pub fn detect(root: &Path) -> Option<Cgroups> {
        let layout = if root.join("cgroup.controllers").is_file() {
            Layout::V2
        } else if V1_CONTROLLERS.iter().all(|c| root.join(c).is_dir()) {
            Layout::V1
        } else {
            return None;
        };
        let cg = Cgroups {
            root: root.to_owned(),
            layout,
        };
        match cg.create(KUBEPODS) {
            Ok(()) => Some(cg),
            Err(e) => {
                tracing::warn!(error = %e, "pod cgroups unavailable; pods run without them");
                None
            }
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Directories of `cgroup` in each hierarchy the agent manages.
    fn dirs(&self, cgroup: &str) -> Vec<PathBuf> {
        let rel = cgroup.trim_start_matches('/');
        match self.layout {
            Layout::V2 => vec![self.root.join(rel)],
            Layout::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| self.root.join(c).join(rel))
                .collect(),
        }
    }

    /// Creates `cgroup` and its parents (v2: with cpu, memory and pids
    /// enabled for their children).
    fn create(&self, cgroup: &str) -> io::Result<()> {
        let parts: Vec<&str> = cgroup
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        for depth in 1..=parts.len() {
            let sub = parts[..depth].join("/");
            if self.layout == Layout::V2 {
                // The parent must hand the controllers down first.
                let parent = self.root.join(parts[..depth - 1].join("/"));
                let control = parent.join("cgroup.subtree_control");
                let have = std::fs::read_to_string(&control).unwrap_or_default();
                let available =
                    std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
                for c in ["cpu", "memory", "pids"] {
                    if available.split_whitespace().any(|a| a == c)
                        && !have.split_whitespace().any(|h| h == c)
                    {
                        write(&control, &format!("+{c}"))?;
                    }
                }
            }
            for dir in self.dirs(&sub) {
                mkdir(&dir)?;
            }
        }
        Ok(())
    }

    /// Creates the pod's cgroup with its limits; the cgroup to give the
    /// runtime as the sandbox's parent.
    pub fn ensure_pod(&self, qos: &str, uid: &str, r: &PodResources) -> io::Result<String> {
        let cgroup = pod_cgroup(qos, uid);
        self.create(&cgroup)?;
        if qos == api::qos::BEST_EFFORT {
            self.set_cpu(&format!("/{KUBEPODS}/besteffort"), 2, None)?;
        }
        self.set_cpu(&cgroup, r.cpu_shares, r.cpu_quota)?;
        let dir = &self.dirs(&cgroup)[0];
        match self.layout {
            Layout::V1 => {
                let limit = r.memory_limit.map_or("-1".to_owned(), |b| b.to_string());
                write(&dir.join("memory.limit_in_bytes"), &limit)?;
            }
            Layout::V2 => {
                let limit = r.memory_limit.map_or("max".to_owned(), |b| b.to_string());
                write(&dir.join("memory.max"), &limit)?;
            }
        }
        Ok(cgroup)
    }

    fn set_cpu(&self, cgroup: &str, shares: i64, quota: Option<i64>) -> io::Result<()> {
        let rel = cgroup.trim_start_matches('/');
        match self.layout {
            Layout::V1 => {
                let dir = self.root.join("cpu").join(rel);
                write(&dir.join("cpu.shares"), &shares.to_string())?;
                write(&dir.join("cpu.cfs_period_us"), &QUOTA_PERIOD.to_string())?;
                let q = quota.map_or("-1".to_owned(), |q| q.to_string());
                write(&dir.join("cpu.cfs_quota_us"), &q)
            }
            Layout::V2 => {
                let dir = self.root.join(rel);
                write(
                    &dir.join("cpu.weight"),
                    &shares_to_weight(shares).to_string(),
                )?;
                let q = quota.map_or("max".to_owned(), |q| q.to_string());
                write(&dir.join("cpu.max"), &format!("{q} {QUOTA_PERIOD}"))
            }
        }
    }

    /// Removes the pod's cgroup, whichever QoS class it was made under,
    /// in every hierarchy (the runtime may have made it in more than the
    /// agent's). Its containers' cgroups must be gone.
    pub fn remove_pod(&self, uid: &str) {
        let mut dirs = Vec::new();
        for qos in [
            api::qos::GUARANTEED,
            api::qos::BURSTABLE,
            api::qos::BEST_EFFORT,
        ] {
            let rel = pod_cgroup(qos, uid);
            let rel = rel.trim_start_matches('/');
            match self.layout {
                Layout::V2 => dirs.push(self.root.join(rel)),
                Layout::V1 => {
                    for h in std::fs::read_dir(&self.root)
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let p = h.path();
                        // Skip the symlinks of co-mounted hierarchies (cpu -> cpu,cpuacct).
                        if h.file_type().is_ok_and(|t| t.is_dir()) {
                            dirs.push(p.join(rel));
                        }
                    }
                }
            }
        }
        for d in dirs {
            match std::fs::remove_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(dir = %d.display(), error = %e, "removing a pod cgroup"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A v1 tree as mounted: one directory per hierarchy.
    fn v1() -> (tempfile::TempDir, Cgroups) {
        let dir = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu", "pids", "cpuset"] {
            std::fs::create_dir(dir.path().join(c)).unwrap();
        }
        let cg = Cgroups::detect(dir.path()).expect("v1 detected");
        assert_eq!(cg.layout(), &Layout::V1);
        (dir, cg)
    }

    #[test]
    fn paths_by_qos() {
        assert_eq!(pod_cgroup("Guaranteed", "u1"), "/kubepods/podu1");
        assert_eq!(pod_cgroup("Burstable", "u1"), "/kubepods/burstable/podu1");
        assert_eq!(pod_cgroup("BestEffort", "u1"), "/kubepods/besteffort/podu1");
    }

    #[test]
    fn v1_limits_and_removal() {
        let (dir, cg) = v1();
        let r = PodResources {
            cpu_shares: 307,
            cpu_quota: Some(30_000),
            memory_limit: Some(150 << 20),
        };
        let parent = cg.ensure_pod("Burstable", "u1", &r).unwrap();
        assert_eq!(parent, "/kubepods/burstable/podu1");
        let at =
            |c: &str, f: &str| read(dir.path().join(c).join("kubepods/burstable/podu1").join(f));
        assert_eq!(
            at("memory", "memory.limit_in_bytes"),
            (150u64 << 20).to_string()
        );
        assert_eq!(at("cpu", "cpu.shares"), "307");
        assert_eq!(at("cpu", "cpu.cfs_quota_us"), "30000");
        assert_eq!(at("cpu", "cpu.cfs_period_us"), "100000");
        assert!(dir.path().join("pids/kubepods/burstable/podu1").is_dir());
        // Unlimited: -1. Again (a second sync) is fine.
        let open = PodResources {
            cpu_shares: 2,
            cpu_quota: None,
            memory_limit: None,
        };
        cg.ensure_pod("BestEffort", "u2", &open).unwrap();
        cg.ensure_pod("BestEffort", "u2", &open).unwrap();
        let be = |f: &str| read(dir.path().join("cpu/kubepods/besteffort").join(f));
        assert_eq!(be("cpu.shares"), "2");
        let u2 =
            |c: &str, f: &str| read(dir.path().join(c).join("kubepods/besteffort/podu2").join(f));
        assert_eq!(u2("memory", "memory.limit_in_bytes"), "-1");
        assert_eq!(u2("cpu", "cpu.cfs_quota_us"), "-1");
        // Removal finds it under its class, in every hierarchy (also one
        // the runtime made, cpuset), and leaves the QoS cgroups.
        std::fs::create_dir_all(dir.path().join("cpuset/kubepods/burstable/podu1")).unwrap();
        // (A real cgroup's files vanish with it; the fake's must go first.)
        for c in ["memory", "cpu"] {
            for e in std::fs::read_dir(dir.path().join(c).join("kubepods/burstable/podu1")).unwrap()
            {
                std::fs::remove_file(e.unwrap().path()).unwrap();
            }
        }
        cg.remove_pod("u1");
        for c in ["memory", "cpu", "pids", "cpuset"] {
            assert!(
                !dir.path().join(c).join("kubepods/burstable/podu1").exists(),
                "{c}"
            );
            assert!(
                dir.path().join(c).join("kubepods/burstable").is_dir(),
                "{c}"
            );
        }
    }

    #[test]
    fn v2_enables_controllers_down_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        let cg = Cgroups::detect(root).expect("v2 detected");
        assert_eq!(cg.layout(), &Layout::V2);
        // Making kubepods enabled what root did not hand down yet, pids
        // alone (a fake file holds the last write; the kernel would show
        // all three, as written here).
        assert_eq!(read(root.join("cgroup.subtree_control")), "+pids");
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        // A fake tree does not make the files a kernel would: give each
        // directory its controllers as it is created.
        for d in ["kubepods", "kubepods/podu1"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        }
        let r = PodResources {
            cpu_shares: 1024,
            cpu_quota: Some(100_000),
            memory_limit: Some(64 << 20),
        };
        assert_eq!(
            cg.ensure_pod("Guaranteed", "u1", &r).unwrap(),
            "/kubepods/podu1"
        );
        assert_eq!(
            read(root.join("cgroup.subtree_control")),
            "cpu memory pids\n"
        );
        assert!(root.join("kubepods/cgroup.subtree_control").is_file());
        let pod = root.join("kubepods/podu1");
        assert_eq!(read(pod.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(pod.join("cpu.max")), "100000 100000");
        assert_eq!(read(pod.join("cpu.weight")), "39");
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn missing_or_partial_hierarchies_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cgroups::detect(dir.path()).is_none(), "nothing mounted");
        std::fs::create_dir(dir.path().join("memory")).unwrap();
        assert!(Cgroups::detect(dir.path()).is_none(), "no cpu hierarchy");
    }
}
