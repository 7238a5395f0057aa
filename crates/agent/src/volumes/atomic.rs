//! kubelet's atomic writer: a volume's files live in a timestamped
//! directory `..<time>`; `..data` is a symlink to it and every top-level
//! entry is a symlink through `..data`. An update writes a new timestamped
//! directory and renames a new `..data` link over the old one, so a reader
//! sees either all old or all new contents.

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

/// One file: contents and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

pub const DATA: &str = "..data";

/// What `dir` holds now (relative paths under `..data`), if anything.
fn current(dir: &Path) -> Option<BTreeMap<String, File>> {
    let data = dir.join(DATA);
    std::fs::read_link(&data).ok()?;
    let mut out = BTreeMap::new();
    fn walk(base: &Path, rel: &str, out: &mut BTreeMap<String, File>) -> Option<()> {
        for e in std::fs::read_dir(base.join(rel)).ok()? {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = e.metadata().ok()?;
            if md.is_dir() {
                walk(base, &path, out)?;
            } else {
                let data = std::fs::read(base.join(&path)).ok()?;
                out.insert(
                    path,
                    File {
                        data,
                        mode: md.permissions().mode() & 0o7777,
                    },
                );
            }
        }
        Some(())
    }
    walk(&data, "", &mut out)?;
    Some(out)
}

/// Makes `dir` hold exactly `payload` (relative path → file); a no-op when
/// it already does.
pub fn write(dir: &Path, payload: &BTreeMap<String, File>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if current(dir).as_ref() == Some(payload) {
        return Ok(());
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let now = chrono::Utc::now();
    let ts = format!("..{}", now.format("%Y_%m_%d_%H_%M_%S.%f"));
    let ts_dir = dir.join(&ts);
    std::fs::create_dir_all(&ts_dir)?;
    for (rel, f) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA))?;
    // User-visible links: one per top-level entry.
    let top: std::collections::BTreeSet<&str> = payload
        .keys()
        .map(|k| k.split('/').next().unwrap_or(k))
        .collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(format!("{DATA}/{name}"), &link)?;
        }
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(name.as_str()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str, u32)]) -> BTreeMap<String, File> {
        items
            .iter()
            .map(|(k, v, m)| {
                (
                    k.to_string(),
                    File {
                        data: v.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn writes_and_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(d.join("sub/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o400);
        let first = std::fs::read_link(d.join(DATA)).unwrap();
        // Unchanged: nothing is rewritten.
        write(d, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap();
        assert_eq!(std::fs::read_link(d.join(DATA)).unwrap(), first);
        // Changed: new contents, removed keys gone, old dir removed.
        write(d, &payload(&[("a", "3", 0o644)])).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists());
        let entries: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA)
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
