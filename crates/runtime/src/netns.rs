//! Sockets inside an instance's network namespace, and child reaping.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kiln_oci::sync::lock;

use crate::sys;

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
            // Only this dedicated, short-lived thread changes namespace.
            sys::setns_net(&ns)?;
            drop(ns);
            TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Listen on `addr` inside the network namespace of process `pid`.
///
/// As [`connect_in_netns`]: a short-lived dedicated thread joins the
/// namespace, binds and listens, and exits; the listening socket keeps the
/// namespace it was created in, so the caller accepts on it from any host
/// thread (each accepted connection belongs to that namespace too). Holding
/// the listener keeps the namespace alive: close it when the instance goes.
/// Needs `CAP_SYS_ADMIN` (root).
pub fn listen_in_netns(pid: u32, addr: SocketAddr) -> io::Result<TcpListener> {
    let ns = File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::Builder::new()
        .name(format!("netns-listen-{pid}"))
        .spawn(move || {
            // Only this dedicated, short-lived thread changes namespace.
            sys::setns_net(&ns)?;
            drop(ns);
            TcpListener::bind(addr)
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
                // Only this dedicated thread changes namespace.
                if let Err(e) = sys::setns_net(&ns) {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
                drop(ns);
                let _ = ready_tx.send(Ok(()));
                loop {
                    let Ok(owned) = sys::tcp_socket() else {
                        return;
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
        let fd = lock(&self.rx)
            .recv_timeout(timeout)
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no socket from the namespace"))?;
        sys::connect_v4(&fd, v4, timeout)?;
        Ok(TcpStream::from(fd))
    }
}

/// A minimal HTTP/1.0 `GET path` to `127.0.0.1:port` inside `pid`'s network
/// namespace; returns the status code. The whole exchange is bounded by
/// `timeout`.
pub fn http_get_in_netns(pid: u32, port: u16, path: &str, timeout: Duration) -> io::Result<u16> {
    http_get_in_netns_after(pid, port, path, timeout, &[])
}

/// [`http_get_in_netns`], sending `preamble` (e.g. a PROXY protocol header) before the
/// request.
pub fn http_get_in_netns_after(
    pid: u32,
    port: u16,
    path: &str,
    timeout: Duration,
    preamble: &[u8],
) -> io::Result<u16> {
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
    if !preamble.is_empty() {
        s.write_all(preamble)?;
    }
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
    sys::set_child_subreaper()
}

/// Reap `pid` if it has exited: `Ok(Some(wait status))` (as `waitpid`
/// reports it), `Ok(None)` if it still runs. `ECHILD` (not our child, e.g.
/// no subreaper) is an error.
pub fn try_reap(pid: u32) -> io::Result<Option<i32>> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    sys::waitpid_nohang(pid)
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
