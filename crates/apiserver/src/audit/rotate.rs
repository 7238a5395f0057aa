//! The audit log file with kube-apiserver's rotation
//! (`--audit-log-maxsize`, `--audit-log-maxbackup`, `--audit-log-maxage`):
//! when a write would take the file past its size, it is renamed to
//! `<name>-<UTC time>.<ext>` (`audit-2026-12-04T07-50-00.123.log`) and a
//! new one started; the oldest rotated files beyond the count or the age
//! are removed. Every line goes whole into one file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How the log rotates; zeros turn each limit off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before the file grows past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (the newest ones).
    pub max_backups: usize,
    /// Rotated files older than this are removed.
    pub max_age: Option<Duration>,
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `dir/audit.log` → ("audit-", ".log"): what rotated names start and end with.
fn affixes(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("audit.log");
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (format!("{stem}-"), format!(".{ext}")),
        _ => (format!("{name}-"), String::new()),
    }
}

/// The name a file rotated at `at` gets.
pub fn backup_name(path: &Path, at: chrono::DateTime<chrono::Utc>) -> PathBuf {
    let (prefix, ext) = affixes(path);
    let stamp = at.format("%Y-%m-%dT%H-%M-%S%.3f");
    path.with_file_name(format!("{prefix}{stamp}{ext}"))
}

impl RotatingFile {
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            file,
            size,
            rotation,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let mut at = chrono::Utc::now();
        // A new backup sorts after every older one, even when rotations
        // come within one millisecond.
        if let Some((last, _)) = self.backups().last() {
            let next = last.and_utc() + chrono::Duration::milliseconds(1);
            at = at.max(next);
        }
        let backup = backup_name(&self.path, at);
        std::fs::rename(&self.path, &backup)?;
        self.file = open(&self.path)?;
        self.size = 0;
        self.prune();
        Ok(())
    }

    /// The rotated files, oldest first, with the time in their names.
    fn backups(&self) -> Vec<(chrono::NaiveDateTime, PathBuf)> {
        let (prefix, ext) = affixes(&self.path);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut backups: Vec<(chrono::NaiveDateTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                let stamp = name.strip_prefix(&prefix)?.strip_suffix(&ext)?.to_owned();
                let at =
                    chrono::NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%dT%H-%M-%S%.3f").ok()?;
                Some((at, e.path()))
            })
            .collect();
        backups.sort();
        backups
    }

    /// Removes rotated files beyond the count or the age.
    fn prune(&self) {
        let backups = self.backups();
        let now = SystemTime::now();
        let count = backups.len();
        for (i, (_, path)) in backups.iter().enumerate() {
            let surplus = self.rotation.max_backups > 0 && i + self.rotation.max_backups < count;
            let old = self.rotation.max_age.is_some_and(|age| {
                std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age)
            });
            if surplus || old {
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!(file = %path.display(), error = %e, "removing an old audit log");
                }
            }
        }
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` (one or more whole lines) to one file.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let limit = self.rotation.max_bytes;
        if limit > 0 && self.size > 0 && self.size + buf.len() as u64 > limit {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-04T07:50:00.123Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (path, want) in [
            (
                "/var/log/audit.log",
                "/var/log/audit-2026-12-04T07-50-00.123.log",
            ),
            ("/var/log/audit", "/var/log/audit-2026-12-04T07-50-00.123"),
            ("a.b.json", "a.b-2026-12-04T07-50-00.123.json"),
        ] {
            assert_eq!(
                backup_name(Path::new(path), at),
                PathBuf::from(want),
                "{path}"
            );
        }
    }

    #[test]
    fn rotates_at_the_size_and_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(dir.path().join("other.log"), "not ours").unwrap();
        let rotation = Rotation {
            max_bytes: 25,
            max_backups: 2,
            max_age: None,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        for i in 0..10 {
            // 10-byte lines: two fit in 25 bytes.
            f.write_all(format!("line {i:03}\n").as_bytes()).unwrap();
        }
        let names = files(dir.path());
        let backups: Vec<&String> = names.iter().filter(|n| n.starts_with("audit-")).collect();
        assert_eq!(backups.len(), 2, "{names:?}");
        assert!(names.contains(&"other.log".to_owned()), "{names:?}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "line 008\nline 009\n"
        );
        // The newest backup has the two lines before those.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(backups[1])).unwrap(),
            "line 006\nline 007\n"
        );
        // A line longer than the limit still goes whole into one file.
        f.write_all(&[b'x'; 40]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 40]);
    }

    #[test]
    fn reopening_counts_what_is_there_and_zero_means_no_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "0123456789\n").unwrap();
        let rotation = Rotation {
            max_bytes: 15,
            ..Rotation::default()
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        f.write_all(b"abcdefghi\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghi\n");
        assert_eq!(files(dir.path()).len(), 2);
        let mut unlimited = RotatingFile::open(&path, Rotation::default()).unwrap();
        unlimited.write_all(&[b'y'; 100]).unwrap();
        assert_eq!(files(dir.path()).len(), 2);
    }
}
