//! Image garbage collection, as the kubelet's image GC manager does it:
//! when the filesystem holding the runtime's images is more than
//! `high_threshold_percent` full, images no container uses (and not
//! pinned: the sandbox image and the air-gap imports) are removed, least
//! recently used first, until usage would be down to
//! `low_threshold_percent`; an image is only removed once it has been
//! known for `min_age`. [`select`] is the decision (pure); [`run`] checks
//! every [`CHECK_PERIOD`] (the kubelet: every 5 minutes).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cri::{Image, RuntimeService};

/// How often usage is checked.
pub const CHECK_PERIOD: Duration = Duration::from_secs(30);

/// The kubelet's `--image-gc-high-threshold`, `--image-gc-low-threshold`
/// and `--image-minimum-gc-age`.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl Policy {
    /// Kubernetes' checks: both in 0..=100, low below high (equal when
    /// GC is off at 100).
    pub fn validate(&self) -> Result<(), String> {
        let (h, l) = (self.high_threshold_percent, self.low_threshold_percent);
        if h > 100 || l > 100 {
            return Err("image GC thresholds must be between 0 and 100".into());
        }
        if l >= h && !(l == 100 && h == 100) {
            return Err(format!(
                "--image-gc-low-threshold ({l}) must be less than --image-gc-high-threshold ({h})"
            ));
        }
        Ok(())
    }
}

/// The filesystem's size and free bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub capacity: u64,
    pub available: u64,
}

/// What the GC knows of one image.
#[derive(Clone, Debug)]
pub struct Known {
    pub first_seen: Instant,
    pub last_used: Instant,
}

/// The images to remove now, in order; empty when usage is under the high
/// threshold.
pub fn select(
    policy: &Policy,
    usage: Usage,
    images: &[Image],
    in_use: &HashSet<String>,
    pinned: &HashSet<String>,
    known: &HashMap<String, Known>,
    now: Instant,
) -> Vec<Image> {
    if usage.capacity == 0 || policy.high_threshold_percent >= 100 {
        return Vec::new();
    }
    let used = usage.capacity.saturating_sub(usage.available);
    if used * 100 < usage.capacity * u64::from(policy.high_threshold_percent) {
        return Vec::new();
    }
    let target = usage.capacity * u64::from(policy.low_threshold_percent) / 100;
    let mut to_free = used.saturating_sub(target);
    let mut out = Vec::new();
    for i in unused(policy, images, in_use, pinned, known, now) {
        if to_free == 0 {
            break;
        }
        to_free = to_free.saturating_sub(i.size);
        out.push(i);
    }
    out
}

/// Every image that may go (not in use, not pinned, known for at least
/// the minimum age), least recently used first.
pub fn unused(
    policy: &Policy,
    images: &[Image],
    in_use: &HashSet<String>,
    pinned: &HashSet<String>,
    known: &HashMap<String, Known>,
    now: Instant,
) -> Vec<Image> {
    let named = |i: &Image, set: &HashSet<String>| {
        set.contains(&i.id)
            || i.repo_tags
                .iter()
                .chain(&i.repo_digests)
                .any(|t| set.contains(t))
    };
    let mut candidates: Vec<(&Image, Instant)> = images
        .iter()
        .filter(|i| !named(i, in_use) && !named(i, pinned))
        .filter_map(|i| {
            let k = known.get(&i.id)?;
            (now.duration_since(k.first_seen) >= policy.min_age).then_some((i, k.last_used))
        })
        .collect();
    candidates.sort_by_key(|(i, used)| (*used, i.id.clone()));
    candidates.into_iter().map(|(i, _)| i.clone()).collect()
}

fn usage_of(path: &Path) -> Option<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some(Usage {
        capacity: st.f_blocks as u64 * frsize,
        available: st.f_bavail as u64 * frsize,
    })
}

/// The node's image collector: what it knows of each image (first seen,
/// last used) is kept between checks, and shared with the eviction
/// manager, which frees every unused image under disk pressure.
pub struct Collector {
    cri: Arc<dyn RuntimeService>,
    root: PathBuf,
    policy: Policy,
    pinned: HashSet<String>,
    known: Mutex<HashMap<String, Known>>,
}

impl Collector {
    /// `root` is the runtime's image filesystem; `pinned` names images
    /// never removed.
    pub fn new(
        cri: Arc<dyn RuntimeService>,
        root: PathBuf,
        policy: Policy,
        pinned: HashSet<String>,
    ) -> Collector {
        Collector {
            cri,
            root,
            policy,
            pinned,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime's image filesystem.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lists images and containers and brings `known` up to date; the
    /// images and the names in use.
    async fn refresh(&self, now: Instant) -> Option<(Vec<Image>, HashSet<String>)> {
        let (images, containers) = match (
            self.cri.list_images().await,
            self.cri.list_containers(&Default::default()).await,
        ) {
            (Ok(i), Ok(c)) => (i, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e.message, "image GC: listing");
                return None;
            }
        };
        let in_use: HashSet<String> = containers
            .iter()
            .flat_map(|c| [c.image_ref.clone(), c.image.clone()])
            .collect();
        let mut known = self.known.lock().unwrap();
        known.retain(|id, _| images.iter().any(|i| &i.id == id));
        for i in &images {
            let k = known.entry(i.id.clone()).or_insert(Known {
                first_seen: now,
                last_used: now,
            });
            let used = in_use.contains(&i.id) || i.repo_tags.iter().any(|t| in_use.contains(t));
            if used {
                k.last_used = now;
            }
        }
        Some((images, in_use))
    }

    async fn remove(&self, images: Vec<Image>) -> u64 {
        let mut freed = 0;
        for image in images {
            match self.cri.remove_image(&image.id).await {
                Ok(()) => {
                    tracing::info!(image = %image.id, tags = ?image.repo_tags, size = image.size, "image GC: removed an unused image");
                    self.known.lock().unwrap().remove(&image.id);
                    freed += image.size;
                }
                Err(e) => {
                    tracing::warn!(image = %image.id, error = %e.message, "image GC: removing")
                }
            }
        }
        freed
    }

    /// One periodic check: above the high threshold, down to the low one.
    pub async fn check(&self) {
        let now = Instant::now();
        let Some((images, in_use)) = self.refresh(now).await else {
            return;
        };
        let Some(usage) = usage_of(&self.root) else {
            return;
        };
        let chosen = {
            let known = self.known.lock().unwrap();
            select(
                &self.policy,
                usage,
                &images,
                &in_use,
                &self.pinned,
                &known,
                now,
            )
        };
        self.remove(chosen).await;
    }

    /// Removes every unused image old enough (the kubelet's
    /// `DeleteUnusedImages`, run under disk pressure); the bytes freed.
    pub async fn delete_unused(&self) -> u64 {
        let now = Instant::now();
        let Some((images, in_use)) = self.refresh(now).await else {
            return 0;
        };
        let chosen = {
            let known = self.known.lock().unwrap();
            unused(&self.policy, &images, &in_use, &self.pinned, &known, now)
        };
        self.remove(chosen).await
    }
}

/// Checks every [`CHECK_PERIOD`] while the node runs.
pub async fn run(collector: Arc<Collector>) {
    loop {
        tokio::time::sleep(CHECK_PERIOD).await;
        collector.check().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tag: &str, size: u64) -> Image {
        Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            size,
            ..Image::default()
        }
    }

    #[test]
    fn thresholds_are_checked() {
        let p = |h, l| Policy {
            high_threshold_percent: h,
            low_threshold_percent: l,
            ..Policy::default()
        };
        assert!(p(85, 80).validate().is_ok());
        assert!(p(100, 100).validate().is_ok(), "GC off");
        assert!(p(80, 85).validate().is_err());
        assert!(p(101, 80).validate().is_err());
        assert!(p(50, 50).validate().is_err());
    }

    #[test]
    fn removes_least_recently_used_unpinned_unused_images_down_to_low() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let images = vec![
            image("sha256:a", "r/a:1", 30),
            image("sha256:b", "r/b:1", 30),
            image("sha256:c", "r/c:1", 30),
            image("sha256:pause", "rkube.local/pause:3.10", 5),
            image("sha256:used", "r/used:1", 30),
            image("sha256:young", "r/young:1", 30),
        ];
        let known: HashMap<String, Known> = [
            ("sha256:a", 0, 50),
            ("sha256:b", 0, 10),
            ("sha256:c", 0, 30),
            ("sha256:pause", 0, 0),
            ("sha256:used", 0, 0),
            ("sha256:young", 290, 290),
        ]
        .into_iter()
        .map(|(id, seen, used)| {
            (
                id.to_owned(),
                Known {
                    first_seen: at(seen),
                    last_used: at(used),
                },
            )
        })
        .collect();
        let in_use: HashSet<String> = ["r/used:1".to_owned()].into();
        let pinned: HashSet<String> = ["rkube.local/pause:3.10".to_owned()].into();
        let policy = Policy::default();
        let now = at(300);
        let ids = |usage: Usage| -> Vec<String> {
            select(&policy, usage, &images, &in_use, &pinned, &known, now)
                .into_iter()
                .map(|i| i.id)
                .collect()
        };
        // 84% used: under the high threshold, nothing.
        assert!(ids(Usage {
            capacity: 1000,
            available: 160
        })
        .is_empty());
        // 90% used: free 100 bytes to reach 80%: b (oldest use), c, a, ...
        assert_eq!(
            ids(Usage {
                capacity: 1000,
                available: 100
            }),
            ["sha256:b", "sha256:c", "sha256:a"]
        );
        // 86%: 60 bytes: two images.
        assert_eq!(
            ids(Usage {
                capacity: 1000,
                available: 140
            }),
            ["sha256:b", "sha256:c"]
        );
        // Everything unused and old enough at most; never pinned, used or young ones.
        let all = ids(Usage {
            capacity: 1000,
            available: 0,
        });
        assert_eq!(all, ["sha256:b", "sha256:c", "sha256:a"]);
        // Under disk pressure every unused image old enough goes, whatever
        // the thresholds say.
        let all_unused: Vec<String> = unused(&policy, &images, &in_use, &pinned, &known, now)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(all_unused, ["sha256:b", "sha256:c", "sha256:a"]);
        // Disabled at 100.
        let off = Policy {
            high_threshold_percent: 100,
            low_threshold_percent: 100,
            ..Policy::default()
        };
        assert!(select(
            &off,
            Usage {
                capacity: 1000,
                available: 0
            },
            &images,
            &in_use,
            &pinned,
            &known,
            now
        )
        .is_empty());
    }
}
