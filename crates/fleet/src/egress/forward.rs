//! The egress forwarder of one instance: a listener per declared destination (created
//! inside the instance's network namespace by the caller's `listen`), an accept loop on a
//! host thread, and per connection a dial of the mapped destination from the host side
//! (a DNS name is resolved at each connection; the connect is bounded) with the bytes moved
//! by the front proxy's splice machinery. Counters per destination: connections opened
//! (upstream established), refused (upstream connect error or timeout, with the last error
//! text), active, and bytes each way. Counts only, never payloads.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln_oci::sync::lock;
use serde::Serialize;

use super::Route;
use crate::pool;

/// The default bound on one upstream connect (DNS resolution aside).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Socket buffers of forwarded connections: bigger than the defaults, so that a bulk
/// transfer moves in fewer, larger splices (and wakes its reader less often).
const SOCKET_BUFFER: usize = 4 << 20;

#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    refused: AtomicU64,
    active: AtomicU64,
    /// Instance → destination.
    bytes_out: AtomicU64,
    /// Destination → instance.
    bytes_in: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The counters of one declared destination, as `kiln status --json` and the
/// `fleet.egress` audit event show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteStats {
    /// The declared `host:port`.
    pub to: String,
    /// Where kiln listens inside the instance.
    pub via: String,
    /// The mapped destination.
    pub dest: String,
    /// Upstream connections established.
    pub opened: u64,
    /// Connections closed because the destination could not be reached.
    pub refused: u64,
    /// Connections open now.
    pub active: u64,
    /// Bytes from the instance to the destination.
    pub bytes_out: u64,
    /// Bytes from the destination to the instance.
    pub bytes_in: u64,
    /// Why the last refused connection failed.
    pub last_error: Option<String>,
}

struct Listening {
    route: Route,
    counters: Arc<Counters>,
    listener: Arc<TcpListener>,
}

/// The running forwarder of one instance. Dropping it (or [`Egress::close`]) closes the
/// listeners; connections already forwarded carry on until either side ends them.
pub struct Egress {
    routes: Vec<Listening>,
    stopping: Arc<AtomicBool>,
    /// What the last audit event reported (see [`Egress::audit_delta`]).
    audited: Mutex<Option<Vec<RouteStats>>>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field(
                "routes",
                &self.routes.iter().map(|l| &l.route).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Egress {
    /// Listen (with `listen`, e.g. inside an instance's network namespace) on every route's
    /// `via` and forward what arrives to its `dest`, each upstream connect bounded by
    /// `connect_timeout`. Any listen failure closes the ones made and is returned.
    pub fn start(
        routes: Vec<Route>,
        listen: impl Fn(SocketAddr) -> io::Result<TcpListener>,
        connect_timeout: Duration,
    ) -> io::Result<Egress> {
        let stopping = Arc::new(AtomicBool::new(false));
        let mut eg = Egress {
            routes: Vec::new(),
            stopping: stopping.clone(),
            audited: Mutex::new(None),
        };
        for route in routes {
            let listener = listen(SocketAddr::V4(route.via)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("listen on {} for {}: {e}", route.via, route.to),
                )
            })?;
            let listener = Arc::new(listener);
            let counters = Arc::new(Counters::default());
            let (l2, c2, s2, dest) = (
                listener.clone(),
                counters.clone(),
                stopping.clone(),
                route.dest.clone(),
            );
            std::thread::Builder::new()
                .name(format!("kiln-egress-{}", route.via))
                .spawn(move || accept_loop(&l2, &c2, &s2, &dest, connect_timeout))?;
            eg.routes.push(Listening {
                route,
                counters,
                listener,
            });
        }
        Ok(eg)
    }

    /// The counters of every route, sorted by `to`.
    pub fn stats(&self) -> Vec<RouteStats> {
        self.routes
            .iter()
            .map(|l| {
                let c = &l.counters;
                RouteStats {
                    to: l.route.to.clone(),
                    via: l.route.via.to_string(),
                    dest: l.route.dest.clone(),
                    opened: c.opened.load(Ordering::Relaxed),
                    refused: c.refused.load(Ordering::Relaxed),
                    active: c.active.load(Ordering::Relaxed),
                    bytes_out: c.bytes_out.load(Ordering::Relaxed),
                    bytes_in: c.bytes_in.load(Ordering::Relaxed),
                    last_error: lock(&c.last_error).clone(),
                }
            })
            .collect()
    }

    /// The counters, if they changed since the last call that returned some (the first
    /// call returns them only if anything happened at all): what a periodic audit event
    /// reports.
    pub fn audit_delta(&self) -> Option<Vec<RouteStats>> {
        let now = self.stats();
        let mut last = lock(&self.audited);
        let changed = match last.as_ref() {
            Some(prev) => *prev != now,
            None => now
                .iter()
                .any(|r| r.opened + r.refused + r.active + r.bytes_out + r.bytes_in > 0),
        };
        if !changed {
            return None;
        }
        *last = Some(now.clone());
        Some(now)
    }

    /// Stop accepting: the listeners close (and with them the hold on the instance's
    /// network namespace). Idempotent.
    pub fn close(&self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        for l in &self.routes {
            // Wakes the accept thread, which then drops its reference; ours keeps the fd
            // open (and so the right socket) for this call.
            crate::sys::shutdown_owned_elsewhere(l.listener.as_raw_fd());
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept_loop(
    listener: &TcpListener,
    counters: &Arc<Counters>,
    stopping: &AtomicBool,
    dest: &str,
    timeout: Duration,
) {
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                let (c, d) = (counters.clone(), dest.to_string());
                let _ = pool::spawn("kiln-egress-conn", move || forward(client, &c, &d, timeout));
            }
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => std::thread::sleep(Duration::from_millis(10)),
            },
        }
    }
}

/// Resolve `dest` now and connect to its addresses in turn, within `timeout` in all.
fn dial(dest: &str, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = dest
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("resolving {dest}: {e}")))?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{dest}: no address"));
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect {dest}: timed out after {}s", timeout.as_secs_f32()),
            ));
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = io::Error::new(e.kind(), format!("connect {a}: {e}")),
        }
    }
    Err(last)
}

fn forward(client: TcpStream, c: &Arc<Counters>, dest: &str, timeout: Duration) {
    let upstream = match dial(dest, timeout) {
        Ok(u) => u,
        Err(e) => {
            c.refused.fetch_add(1, Ordering::Relaxed);
            *lock(&c.last_error) = Some(e.to_string());
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    c.opened.fetch_add(1, Ordering::Relaxed);
    c.active.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    for s in [&client, &upstream] {
        crate::sys::set_socket_buffers(std::os::fd::AsFd::as_fd(s), SOCKET_BUFFER);
    }
    if let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let back_counters = c.clone();
        let back = pool::spawn("kiln-egress-conn", move || {
            crate::proxy::pipe_one_way(&u2, &c2, true, Some(&back_counters.bytes_in));
            let _ = done_tx.send(());
        });
        if back.is_ok() {
            crate::proxy::pipe_one_way(&client, &upstream, true, Some(&c.bytes_out));
            let _ = done_rx.recv();
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    c.active.fetch_sub(1, Ordering::Relaxed);
}
