//! Termination messages, as the kubelet gives containers them: each run
//! of a container gets an empty file of its own
//! (`<pod dir>/containers/<name>/<attempt>`) bind-mounted at its
//! `terminationMessagePath` (default `/dev/termination-log`); when the run
//! has ended, what it wrote there (up to 4096 bytes) becomes its
//! terminated state's `message`, after the runtime's own message if any.
//! With `terminationMessagePolicy: FallbackToLogsOnError`, a run that
//! failed and wrote nothing gets the last lines of its log instead (80
//! lines, at most 2048 bytes). The files go with the pod's directory.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use crate::cri::{ContainerStatus, Mount};
use crate::server::logs::Decoder;

pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// What is read of the file.
const MAX_MESSAGE: u64 = 4096;
const MAX_LOG_LINES: usize = 80;
const MAX_LOG_BYTES: usize = 2048;
/// How much of a log's end is read for its last lines.
const LOG_WINDOW: u64 = 64 << 10;

/// The host file behind run `attempt` of container `name`.
pub fn file(pod_dir: &Path, name: &str, attempt: u32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(name)
        .join(attempt.to_string())
}

fn path_in_container(c: &Container) -> &str {
    c.termination_message_path
        .as_deref()
        .unwrap_or(DEFAULT_PATH)
}

/// Creates the (empty, world-writable: the container may run as anyone)
/// file for a run and the mount that puts it at the container's path;
/// None when the container asks for no path.
pub fn prepare(pod_dir: &Path, c: &Container, attempt: u32) -> std::io::Result<Option<Mount>> {
    let target = path_in_container(c);
    if target.is_empty() {
        return Ok(None);
    }
    let host = file(pod_dir, &c.name, attempt);
    if let Some(dir) = host.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&host, b"")?;
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o666))?;
    Ok(Some(Mount {
        container_path: target.to_owned(),
        host_path: host.display().to_string(),
        readonly: false,
    }))
}

fn read_file(path: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_MESSAGE).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The last lines of a CRI log file, as the kubelet's fallback reads
/// them: the last 80, then at most 2048 bytes of those.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_WINDOW);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    if start > 0 {
        // Begin at a whole record.
        match bytes.iter().position(|b| *b == b'\n') {
            Some(nl) => {
                bytes.drain(..=nl);
            }
            None => return String::new(),
        }
    }
    let mut lines = Vec::new();
    Decoder::default().push(&bytes, &mut lines);
    let skip = lines.len().saturating_sub(MAX_LOG_LINES);
    let mut text: Vec<u8> = lines[skip..]
        .iter()
        .flat_map(|l| l.text.iter().copied())
        .collect();
    text.truncate(MAX_LOG_BYTES);
    String::from_utf8_lossy(&text).into_owned()
}

/// The terminated state's message for an ended run `s` of container `c`.
pub fn message(pod_dir: &Path, c: &Container, s: &ContainerStatus) -> Option<String> {
    let mut own = if path_in_container(c).is_empty() {
        String::new()
    } else {
        read_file(&file(pod_dir, &c.name, s.attempt))
    };
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if own.is_empty() && fallback && s.exit_code != 0 {
        own = log_tail(Path::new(&s.log_path));
    }
    let mut msg = s.message.clone();
    if !own.is_empty() {
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&own);
    }
    (!msg.is_empty()).then_some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(policy: Option<&str>, path: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            termination_message_policy: policy.map(Into::into),
            termination_message_path: path.map(Into::into),
            ..Container::default()
        }
    }

    fn ended(exit_code: i32, log: &Path) -> ContainerStatus {
        ContainerStatus {
            id: "id".into(),
            name: "c".into(),
            attempt: 1,
            state: crate::cri::ContainerState::Exited,
            created_at: 1,
            started_at: 2,
            finished_at: 3,
            exit_code,
            image: String::new(),
            image_ref: String::new(),
            reason: String::new(),
            message: String::new(),
            labels: Default::default(),
            annotations: Default::default(),
            log_path: log.display().to_string(),
        }
    }

    #[test]
    fn file_then_logs_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("2026-01-01T00:00:00Z stdout F line {i}\n"));
        }
        text.push_str("2026-01-01T00:00:01Z stderr P last \n2026-01-01T00:00:01Z stderr F words\n");
        std::fs::write(&log, text).unwrap();

        let c = container(Some("FallbackToLogsOnError"), None);
        let m = prepare(dir.path(), &c, 1).unwrap().unwrap();
        assert_eq!(m.container_path, "/dev/termination-log");
        assert!(!m.readonly);
        let mode = std::fs::metadata(&m.host_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666);
        // Nothing written, failed: the log's last 80 lines (21..=99 and the
        // joined partial one), at most 2048 bytes.
        let msg = message(dir.path(), &c, &ended(1, &log)).unwrap();
        assert!(msg.starts_with("line 21\nline 22\n"), "{msg}");
        assert!(msg.len() <= 2048);
        let all = log_tail(&log);
        assert!(all.ends_with("line 99\nlast words\n"), "{all}");
        // Succeeded: no fallback.
        assert_eq!(message(dir.path(), &c, &ended(0, &log)), None);
        // Written: that, after the runtime's message.
        std::fs::write(&m.host_path, "disk full\n").unwrap();
        let mut s = ended(1, &log);
        s.message = "runtime said".into();
        assert_eq!(
            message(dir.path(), &c, &s).as_deref(),
            Some("runtime said: disk full\n")
        );
        // File policy: no fallback to logs.
        let plain = container(None, Some("/tmp/msg"));
        assert_eq!(
            prepare(dir.path(), &plain, 2)
                .unwrap()
                .unwrap()
                .container_path,
            "/tmp/msg"
        );
        let mut s = ended(1, &log);
        s.attempt = 2;
        assert_eq!(message(dir.path(), &plain, &s), None);
        // No path: no file, no mount.
        assert!(prepare(dir.path(), &container(None, Some("")), 3)
            .unwrap()
            .is_none());
    }

    #[test]
    fn large_messages_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let c = container(None, None);
        let m = prepare(dir.path(), &c, 1).unwrap().unwrap();
        std::fs::write(&m.host_path, "x".repeat(10_000)).unwrap();
        let log = dir.path().join("none.log");
        let msg = message(dir.path(), &c, &ended(1, &log)).unwrap();
        assert_eq!(msg.len(), 4096);
    }
}
