//! The crate's raw system calls, each behind a safe function: process
//! state from `/proc`, wait statuses, FIFOs, peer credentials, inotify,
//! poll, pipes and splice (for the proxy), and the daemon's process hardening (no core
//! dumps, descriptors up to the hard limit).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the ")" that ends the command name.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// A `waitpid` status in words.
pub(crate) fn describe_wait(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let name = match sig {
            libc::SIGKILL => "SIGKILL".to_string(),
            libc::SIGTERM => "SIGTERM".to_string(),
            libc::SIGSEGV => "SIGSEGV".to_string(),
            n => format!("signal {n}"),
        };
        format!("was killed by {name}")
    } else if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("stopped (wait status {status})")
    }
}

/// `mkfifo(path, mode)`; a path with a NUL byte is `InvalidInput`.
pub(crate) fn mkfifo(path: &Path, mode: libc::mode_t) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open a FIFO for reading without waiting for a writer, then switch the
/// descriptor back to blocking reads.
pub(crate) fn open_fifo_reader(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor `f` owns and keeps open for the call.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; only the O_NONBLOCK flag changes.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// The uid of the process at the other end of a Unix socket (SO_PEERCRED).
pub(crate) fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is a
    // live `ucred` of that size.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A new inotify instance (close-on-exec, non-blocking).
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: plain inotify_init1 with constant flags.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Watch `path` (not following a final symlink) for `mask`; `false` if
/// it cannot be watched.
pub(crate) fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: `fd` is open for the call and `c` is a NUL-terminated path.
    unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask | libc::IN_DONT_FOLLOW) >= 0 }
}

/// poll(2) on `fds`; the number of ready descriptors.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// read(2) into `buf`.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes and `fd` is open.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// shutdown(2) both directions of socket `fd`, which another thread owns
/// (wakes its blocked accept). The caller keeps that thread, and so the
/// descriptor, alive for the call.
pub(crate) fn shutdown_owned_elsewhere(fd: RawFd) {
    // SAFETY: shutdown takes no pointers; the caller guarantees `fd` is
    // still the open socket it means.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Ask for a pipe buffer of `size` bytes (best effort).
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: plain fcntl on a descriptor open for the call.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size);
    }
}

/// splice(2) up to `len` bytes from `from` to `to` (no offsets).
pub(crate) fn splice(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the call; null offsets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Set `SO_SNDBUF` and `SO_RCVBUF` of socket `fd` to `bytes` (capped by the kernel's
/// `wmem_max`/`rmem_max`); a failure keeps the defaults.
pub(crate) fn set_socket_buffers(fd: BorrowedFd<'_>, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `&v`, which lives for the
        // call; the descriptor is open for it.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// Process settings of `kiln serve`, made once at start: no core dumps (secret values are in
/// its memory) — `PR_SET_DUMPABLE` 0, which also keeps other processes of the same user from
/// ptrace and `/proc/<pid>/mem`, and `RLIMIT_CORE` 0 — and the soft `RLIMIT_NOFILE` raised to
/// the hard limit (the proxies, egress forwarders, FIFOs and the API socket all take
/// descriptors). Returns the soft `RLIMIT_NOFILE` now in force.
pub(crate) fn harden_daemon() -> io::Result<u64> {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads a valid rlimit that lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut nofile = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if nofile.rlim_cur < nofile.rlim_max {
        nofile.rlim_cur = nofile.rlim_max;
        // SAFETY: as above; a soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(nofile.rlim_cur)
}

/// Whether this process may dump core (`PR_GET_DUMPABLE`), and its `RLIMIT_CORE` and
/// `RLIMIT_NOFILE` (soft, hard): for checks.
#[cfg(test)]
pub(crate) fn process_limits() -> (bool, (u64, u64), (u64, u64)) {
    // SAFETY: prctl(PR_GET_DUMPABLE) takes no pointers.
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) } == 1;
    let get = |r| {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid rlimit.
        unsafe { libc::getrlimit(r, &mut l) };
        (l.rlim_cur, l.rlim_max)
    };
    (dumpable, get(libc::RLIMIT_CORE), get(libc::RLIMIT_NOFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening is the whole process's: the test runs itself again in a child process.
    #[test]
    fn the_daemon_dumps_no_core_and_gets_every_descriptor_it_may() {
        const NAME: &str = "sys::tests::the_daemon_dumps_no_core_and_gets_every_descriptor_it_may";
        if std::env::var_os("KILN_TEST_HARDEN").is_some() {
            let (_, _, (soft, hard)) = process_limits();
            // Start below the hard limit, as a default shell does (1024 of 1048576).
            let low = libc::rlimit {
                rlim_cur: soft.min(hard).min(256),
                rlim_max: hard,
            };
            // SAFETY: setrlimit reads a valid rlimit that lives for the call.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
            let h = harden_daemon().unwrap();
            let (dumpable, core, nofile) = process_limits();
            assert!(!dumpable);
            assert_eq!(core, (0, 0));
            assert_eq!(nofile, (hard, hard));
            assert_eq!(h, hard);
            return;
        }
        let o = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads", "1"])
            .env("KILN_TEST_HARDEN", "1")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("1 passed"),
            "{out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
