//! emptyDir volumes: a directory of the pod's own (mode 0777); medium
//! `Memory` is a tmpfs, sized by `sizeLimit`.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::EmptyDirVolumeSource;

use crate::simulated::quantity_nanos;

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn is_tmpfs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a valid out pointer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == TMPFS_MAGIC
}

pub fn setup(dir: &Path, src: &EmptyDirVolumeSource) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    if src.medium.as_deref() == Some("Memory") && !is_tmpfs(dir) {
        let mut opts = String::new();
        if let Some(limit) = src.size_limit.as_ref() {
            let bytes = quantity_nanos(&limit.0)
                .map(|n| (n + 999_999_999) / 1_000_000_000)
                .ok_or_else(|| format!("invalid sizeLimit {}", limit.0))?;
            opts = format!("size={bytes}");
        }
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
        let opts_c = CString::new(opts).unwrap();
        // SAFETY: all pointers are valid C strings for the call.
        let r = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                opts_c.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(format!(
                "mount tmpfs on {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())
}

/// Unmounts a tmpfs emptyDir (a no-op for a disk one).
pub fn teardown(dir: &Path) {
    if is_tmpfs(dir) {
        if let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: c is a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
