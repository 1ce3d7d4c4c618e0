//! Secret files on the host: the daemon's memory-only directory (a tmpfs it mounts there itself
//! unless one is mounted exactly there already, kept across daemon restarts because running
//! instances use it) and each instance's directory of secret files on it, bind-mounted read-only at
//! `/run/secrets` in the instance.

use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Make `dir` a directory of this user, mode 0700, without following a symlink: created
/// (not recursively: its parent must exist) if missing; a symlink, anything but a directory,
/// or another user's directory is refused. Checked and fixed through one descriptor, so the
/// path cannot be swapped between check and use.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) => io::Error::other(format!(
                "{} is not a directory (a symlink?); refusing to use it",
                dir.display()
            )),
            _ => e,
        })?;
    let md = f.metadata()?;
    let euid = crate::sys::euid();
    if md.uid() != euid {
        return Err(io::Error::other(format!(
            "{} belongs to uid {}, not to this user ({euid}); refusing to use it",
            dir.display(),
            md.uid()
        )));
    }
    if md.mode() & 0o7777 != 0o700 {
        f.set_permissions(fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Undo the octal escapes (`\040` for a space...) of a `/proc/self/mountinfo` path.
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(oct.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Whether `mountinfo` (the text of `/proc/self/mountinfo`) has a tmpfs mounted exactly at
/// `dir` (the mount point itself, not a directory on a tmpfs mounted above it). The last
/// mount at a path is the one in effect.
pub(crate) fn is_tmpfs_mount_point(mountinfo: &str, dir: &Path) -> bool {
    let mut last = None;
    for line in mountinfo.lines() {
        let Some((head, tail)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = head.split(' ').nth(4) else {
            continue;
        };
        if unescape_mountinfo(point) == dir.as_os_str().as_bytes() {
            last = tail.split(' ').next().map(|t| t == "tmpfs");
        }
    }
    last == Some(true)
}

/// Make `dir` (`/run/kiln/<tag>`, mode 0700, this user's; its parent is made the same way) a
/// tmpfs of its own: unless a tmpfs is already mounted exactly there (kept across daemon
/// restarts, as running instances use it), one is mounted
/// (`nosuid,nodev,noexec,mode=0700`), even when a parent such as `/run` is a tmpfs already.
/// Nothing is ever written under `dir` before this. Returns whether a tmpfs was mounted now.
pub(crate) fn ensure_tmpfs(dir: &Path) -> io::Result<bool> {
    if let Some(parent) = dir.parent() {
        private_dir(parent)?;
    }
    private_dir(dir)?;
    let real = fs::canonicalize(dir)?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    if is_tmpfs_mount_point(&mountinfo, &real) {
        return Ok(false);
    }
    let target = cpath(&real)?;
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
