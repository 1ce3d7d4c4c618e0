//! Sockets inside an instance's network namespace, and child reaping.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Connect to `addr` from inside the network namespace of process `pid`.
///
/// A short-lived dedicated thread joins the namespace (`setns(CLONE_NEWNET)`
/// affects only the calling thread), creates the socket and connects; the
/// socket keeps the namespace it was created in, so the returned stream is
/// usable from any thread. Needs `CAP_SYS_ADMIN` (root). The thread exits
/// right after, so no other work ever runs in the instance's namespace.
pub fn connect_in_netns(pid: u32, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::Builder::new()
        .name(format!("netns-{pid}"))
        .spawn(move || {
            // SAFETY: `ns` is an open namespace fd owned by this closure;
            // setns only changes this (dedicated, short-lived) thread's
            // network namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            drop(ns);
            TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// A source of sockets inside one instance's network namespace, for a proxy
/// that opens many connections: one long-lived thread joins the namespace
/// and keeps a small stock of fresh, unconnected TCP sockets; `connect`
/// takes one and connects it from the calling thread (a socket keeps the
/// namespace it was created in). No thread is created per connection, and
/// the namespace thread never runs anything but `socket(2)`.
pub struct NetnsSockets {
    pid: u32,
    rx: std::sync::Mutex<std::sync::mpsc::Receiver<std::os::fd::OwnedFd>>,
}

impl NetnsSockets {
    /// Start the socket thread for `pid`'s network namespace. It ends when
    /// this value is dropped.
    pub fn new(pid: u32) -> io::Result<NetnsSockets> {
        let ns = File::open(format!("/proc/{pid}/ns/net"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<std::os::fd::OwnedFd>(32);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name(format!("netns-sockets-{pid}"))
            .spawn(move || {
                // SAFETY: `ns` is an open namespace fd owned by this closure;
                // setns changes only this dedicated thread's namespace.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let _ = ready_tx.send(Err(io::Error::last_os_error()));
                    return;
                }
                drop(ns);
                let _ = ready_tx.send(Ok(()));
                loop {
                    // SAFETY: plain socket(2); the fd is owned right away.
                    let fd = unsafe {
                        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0)
                    };
                    if fd < 0 {
                        return;
                    }
                    // SAFETY: `fd` is a fresh descriptor nobody else owns.
                    let owned = unsafe {
                        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                    };
                    if tx.send(owned).is_err() {
                        return;
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("netns socket thread ended"))??;
        Ok(NetnsSockets {
            pid,
            rx: std::sync::Mutex::new(rx),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Connect to `addr` (IPv4) inside the namespace; `timeout` bounds the
    /// connect.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let SocketAddr::V4(v4) = addr else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "IPv4 only"));
        };
        let fd = self
            .rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no socket from the namespace"))?;
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: timeout.subsec_micros() as libc::suseconds_t,
        };
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: setsockopt/connect on a socket we own, with correctly
        // sized arguments. SO_SNDTIMEO bounds a blocking connect on Linux.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let zero = libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDTIMEO,
                (&zero as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(TcpStream::from(fd))
    }
}

/// A minimal HTTP/1.0 `GET path` to `127.0.0.1:port` inside `pid`'s network
/// namespace; returns the status code. The whole exchange is bounded by
/// `timeout`.
pub fn http_get_in_netns(pid: u32, port: u16, path: &str, timeout: Duration) -> io::Result<u16> {
    let start = Instant::now();
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad request path {path:?}"),
        ));
    }
    let mut s = connect_in_netns(pid, SocketAddr::from((Ipv4Addr::LOCALHOST, port)), timeout)?;
    let left = || {
        timeout
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "health check timed out"))
    };
    s.set_write_timeout(Some(left()?))?;
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: kiln-health\r\n\r\n")
            .as_bytes(),
    )?;
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    // Read until the status line is complete.
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        s.set_read_timeout(Some(left()?))?;
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status(&buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(64)])
            ),
        )
    })
}

fn parse_status(b: &[u8]) -> Option<u16> {
    let line = b.split(|c| *c == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut it = line.split_ascii_whitespace();
    if !it.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = it.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Make this process a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`).
///
/// `runc run --detach` exits once the container runs, orphaning the
/// container's init process; it is then reparented to the nearest ancestor
/// that is a subreaper instead of PID 1. A daemon calls this once at
/// startup so that it becomes the parent of every detached instance and can
/// collect their exit status with [`try_reap`] (and so killed instances do
/// not linger as zombies under PID 1). Reap instance pids individually:
/// never `waitpid(-1)`, which would steal the exit status of the runc
/// commands `std::process::Command` waits for.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument
    // and has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reap `pid` if it has exited: `Ok(Some(wait status))` (as `waitpid`
/// reports it), `Ok(None)` if it still runs. `ECHILD` (not our child, e.g.
/// no subreaper) is an error.
pub fn try_reap(pid: u32) -> io::Result<Option<i32>> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match r {
        0 => Ok(None),
        r if r == pid => Ok(Some(status)),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 404 Not Found\r\nX: y"), Some(404));
        assert_eq!(parse_status(b"SSH-2.0-x\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.0 2000\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
