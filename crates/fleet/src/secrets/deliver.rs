//! Secret files on the host: the daemon's memory-only directory (a tmpfs it mounts itself when
//! the directory is not one already, kept across daemon restarts because running instances
//! use it) and each instance's directory of secret files on it, bind-mounted read-only at
//! `/run/secrets` in the instance.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Whether `dir` is on a tmpfs.
fn is_tmpfs(dir: &Path) -> io::Result<bool> {
    let c = cpath(dir)?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type == libc::TMPFS_MAGIC)
}

/// Make `dir` (mode 0700) a tmpfs: if it is not on one already, mount one there
/// (`nosuid,nodev,noexec,mode=0700`). Nothing is ever written under `dir` before this.
/// Returns whether a tmpfs was mounted now.
pub(crate) fn ensure_tmpfs(dir: &Path) -> io::Result<bool> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if is_tmpfs(dir)? {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        return Ok(false);
    }
    let target = cpath(dir)?;
    let (src, fstype) = (c"tmpfs", c"tmpfs");
    let opts = c"mode=0700";
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            opts.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Write instance secret files into `dir` (created fresh, on the tmpfs): one file per
/// `(name, value)`, mode 0400, owned by `uid:gid` (the image's user); `dir` itself ends up
/// `uid:gid` mode 0500. On failure nothing is left behind.
pub(crate) fn write_instance_secrets(
    dir: &Path,
    values: &[(&str, &[u8])],
    uid: u32,
    gid: u32,
) -> io::Result<()> {
    let r = write_all(dir, values, uid, gid);
    if r.is_err() {
        let _ = remove_instance_dir(dir);
    }
    r
}

fn write_all(dir: &Path, values: &[(&str, &[u8])], uid: u32, gid: u32) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let _ = fs::remove_dir_all(dir);
    fs::DirBuilder::new().mode(0o700).create(dir)?;
    for (name, value) in values {
        let path = dir.join(name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        f.write_all(value)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(fs::Permissions::from_mode(0o400))?;
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o500))?;
    Ok(())
}

/// Remove an instance's secret directory (or tmpfs bundle); a missing one is fine.
pub(crate) fn remove_instance_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
