//! The crate's raw libc calls, each behind a safe function: namespaces and
//! sockets for [`crate::netns`], reaping, and the `*at` calls the layer
//! extractor needs. Nothing else in the crate is `unsafe`.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The effective user id.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Moves the calling thread into the network namespace `ns` (an open
/// `/proc/<pid>/ns/net`). Only this thread changes namespace.
pub(crate) fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open namespace fd for the duration of the call; setns
    // only changes the calling thread's network namespace.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// A fresh, unconnected IPv4 TCP socket (close-on-exec).
pub(crate) fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_send_timeout(fd: &OwnedFd, t: Duration) {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt on a socket we own, with a timeval that outlives the
    // call and its exact size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
}

/// Connects the socket `fd` to `addr`, a blocking connect bounded by
/// `timeout` (`SO_SNDTIMEO` bounds it on Linux; cleared again afterwards).
pub(crate) fn connect_v4(fd: &OwnedFd, addr: SocketAddrV4, timeout: Duration) -> io::Result<()> {
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    set_send_timeout(fd, timeout);
    // SAFETY: connect on a socket we own, with a sockaddr_in that outlives the
    // call and its exact size.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    set_send_timeout(fd, Duration::ZERO);
    Ok(())
}

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument
    // and has no memory effects.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })
}

/// `waitpid(pid, WNOHANG)`: `Ok(Some(status))` when it exited, `Ok(None)`
/// while it runs.
pub(crate) fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<i32>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match r {
        0 => Ok(None),
        r if r == pid => Ok(Some(status)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `syncfs` of the filesystem `f` is on.
pub(crate) fn syncfs(f: &File) -> io::Result<()> {
    // SAFETY: a valid open fd; syncfs only flushes the filesystem.
    check(unsafe { libc::syncfs(f.as_raw_fd()) })
}

/// `renameat2(from, to, RENAME_NOREPLACE)` relative to the working directory.
pub(crate) fn rename_noreplace(from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: two valid NUL-terminated paths; renameat2 does not retain them.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
}

/// `mkfifo(path, 0600)`: creates the final component, fails if it exists
/// (never follows a symlink).
pub(crate) fn mkfifo(path: &CStr) -> io::Result<()> {
    // SAFETY: a valid NUL-terminated path that mkfifo does not retain.
    check(unsafe { libc::mkfifo(path.as_ptr(), 0o600) })
}

/// Sets access and modification time of `path` to `secs`, never following a
/// symlink (`AT_SYMLINK_NOFOLLOW`).
pub(crate) fn set_times_nofollow(path: &CStr, secs: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: secs.min(i64::MAX as u64) as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array
    // that outlives the call.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}
