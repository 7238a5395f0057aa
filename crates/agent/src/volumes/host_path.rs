//! hostPath volumes: the `type` checks kubelet makes before mounting.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types creates) `path`.
pub fn check(path: &str, kind: &str) -> Result<(), String> {
    let p = Path::new(path);
    let md = std::fs::metadata(p);
    let fail = |what: &str| {
        Err(format!(
            "hostPath type check failed: {path} is not a {what}"
        ))
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match md {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("directory"),
            Err(_) => {
                std::fs::create_dir_all(p).map_err(|e| e.to_string())?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| e.to_string())
            }
        },
        "Directory" => match md {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("directory"),
        },
        "FileOrCreate" => match md {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("file"),
            Err(_) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::File::create(p).map_err(|e| e.to_string())?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))
                    .map_err(|e| e.to_string())
            }
        },
        "File" => match md {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("file"),
        },
        "Socket" => match md {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("socket file"),
        },
        "CharDevice" => match md {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("character device"),
        },
        "BlockDevice" => match md {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("block device"),
        },
        other => Err(format!("hostPath type check failed: unknown type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_checks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let file = format!("{d}/f");
        std::fs::write(&file, "x").unwrap();
        let new_dir = format!("{d}/new/dir");
        let new_file = format!("{d}/other/file");
        let cases: Vec<(&str, &str, Result<(), String>)> = vec![
            (&d, "", Ok(())),
            ("/nonexistent-rkube", "", Ok(())),
            (&d, "Directory", Ok(())),
            (
                &file,
                "Directory",
                Err(format!(
                    "hostPath type check failed: {file} is not a directory"
                )),
            ),
            (&new_dir, "DirectoryOrCreate", Ok(())),
            (&file, "File", Ok(())),
            (
                &d,
                "File",
                Err(format!("hostPath type check failed: {d} is not a file")),
            ),
            (&new_file, "FileOrCreate", Ok(())),
            ("/dev/null", "CharDevice", Ok(())),
            (
                &file,
                "Socket",
                Err(format!(
                    "hostPath type check failed: {file} is not a socket file"
                )),
            ),
            (
                &file,
                "BlockDevice",
                Err(format!(
                    "hostPath type check failed: {file} is not a block device"
                )),
            ),
        ];
        for (path, kind, want) in cases {
            assert_eq!(check(path, kind), want, "{path} {kind}");
        }
        assert!(Path::new(&new_dir).is_dir());
        assert!(Path::new(&new_file).is_file());
    }
}
