//! The egress forwarder of one instance: a listener per declared destination (created
//! inside the instance's network namespace by the caller's `listen`), an accept loop on a
//! host thread, and per connection a dial of the mapped destination from the host side
//! (a DNS name is resolved at each connection; the connect is bounded) with the bytes moved
//! by the front proxy's splice machinery. Counters per destination: connections opened
//! (upstream established), refused (upstream connect error or timeout, over a connection
//! cap, or a destination that resolves to one of kiln's own listeners; with the last error
//! text), active, and bytes each way. Counts only, never payloads.
//!
//! Each connection, from accept until both directions end (its name lookup included), holds
//! a slot of its instance's cap and of the process-wide cap ([`Caps`]), so one instance
//! cannot use up the daemon's threads and file descriptors; name resolution runs on its own
//! thread and counts against the connect bound.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kiln_oci::sync::lock;
use serde::Serialize;

use super::Route;
use crate::pool;

/// The default bound on one upstream connect, name resolution included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A counted number of slots (connections pending or active); [`Slots::take`] gives one
/// while fewer than the limit are out.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    used: AtomicUsize,
}

/// A taken slot, given back when dropped.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// How many may be out at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many are out now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// The process-wide cap on egress connections (pending or active), shared by every
/// instance: a sixteenth of the soft `RLIMIT_NOFILE` at first use (a connection holds about
/// eight descriptors; the rest stays for the proxies, the API socket and the instances'
/// FIFOs), between 32 and 16384.
pub fn global_slots() -> Arc<Slots> {
    static GLOBAL: OnceLock<Arc<Slots>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes the struct it is given.
            let nofile = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
                usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX)
            } else {
                1024
            };
            Slots::new((nofile / 16).clamp(32, 16384))
        })
        .clone()
}

/// How one resolves a destination `host:port` to its addresses.
pub type Resolve = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system resolver (`getaddrinfo`).
pub fn system_resolve() -> Resolve {
    Arc::new(|dest: &str| dest.to_socket_addrs().map(Iterator::collect))
}

/// The bounds of one instance's forwarder.
#[derive(Clone)]
pub struct Caps {
    /// Upstream connect bound, name resolution included.
    pub connect_timeout: Duration,
    /// Connections (pending or active) this instance may hold at once.
    pub per_instance: usize,
    /// The cap shared with every other instance ([`global_slots`]).
    pub global: Arc<Slots>,
    pub resolve: Resolve,
}

impl Default for Caps {
    /// [`CONNECT_TIMEOUT`], the process-wide [`global_slots`] and a quarter of them (8 to
    /// 512) for one instance, the system resolver.
    fn default() -> Caps {
        let global = global_slots();
        Caps {
            connect_timeout: CONNECT_TIMEOUT,
            per_instance: (global.limit() / 4).clamp(8, 512),
            global,
            resolve: system_resolve(),
        }
    }
}

/// What every accept loop of one instance shares.
struct Shared {
    caps: Caps,
    mine: Arc<Slots>,
    stopping: AtomicBool,
}

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
    shared: Arc<Shared>,
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
    /// `via` and forward what arrives to its `dest`, within `caps`. Any listen failure
    /// closes the ones made and is returned.
    pub fn start(
        routes: Vec<Route>,
        listen: impl Fn(SocketAddr) -> io::Result<TcpListener>,
        caps: Caps,
    ) -> io::Result<Egress> {
        let shared = Arc::new(Shared {
            mine: Slots::new(caps.per_instance),
            caps,
            stopping: AtomicBool::new(false),
        });
        let mut eg = Egress {
            routes: Vec::new(),
            shared: shared.clone(),
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
                shared.clone(),
                route.dest.clone(),
            );
            std::thread::Builder::new()
                .name(format!("kiln-egress-{}", route.via))
                .spawn(move || accept_loop(&l2, &c2, &s2, &dest))?;
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
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
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

fn accept_loop(listener: &TcpListener, counters: &Arc<Counters>, sh: &Arc<Shared>, dest: &str) {
    loop {
        let accepted = listener.accept();
        if sh.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                let slots = match (sh.mine.take(), sh.caps.global.take()) {
                    (Some(a), Some(b)) => (a, b),
                    (None, _) => {
                        refuse(
                            &client,
                            counters,
                            format!(
                                "over the cap of {} egress connections per instance",
                                sh.mine.limit()
                            ),
                        );
                        continue;
                    }
                    (_, None) => {
                        refuse(
                            &client,
                            counters,
                            format!(
                                "over kiln's cap of {} egress connections in all",
                                sh.caps.global.limit()
                            ),
                        );
                        continue;
                    }
                };
                let (c, d, sh2) = (counters.clone(), dest.to_string(), sh.clone());
                let _ = pool::spawn("kiln-egress-conn", move || {
                    let slots = Arc::new(slots);
                    forward(client, &c, &d, &sh2.caps, &slots);
                });
            }
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                _ => std::thread::sleep(Duration::from_millis(10)),
            },
        }
    }
}

/// Close `client` unforwarded, counted as refused with `why`.
fn refuse(client: &TcpStream, c: &Counters, why: String) {
    c.refused.fetch_add(1, Ordering::Relaxed);
    *lock(&c.last_error) = Some(why);
    let _ = client.shutdown(Shutdown::Both);
}

/// The slots a connection holds (its instance's and the process-wide one).
type Held = Arc<(Slot, Slot)>;

/// Resolve `dest` within `timeout` on a thread of its own (which keeps the connection's
/// slots until the lookup ends, however long that takes).
fn resolve(
    dest: &str,
    resolver: &Resolve,
    timeout: Duration,
    held: &Held,
) -> io::Result<Vec<SocketAddr>> {
    if let Ok(hp) = super::parse_host_port(dest)
        && let super::Host::Ip(ip) = hp.host
    {
        return Ok(vec![SocketAddr::new(ip, hp.port)]);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (d, r, h) = (dest.to_string(), resolver.clone(), held.clone());
    std::thread::Builder::new()
        .name("kiln-egress-dns".into())
        .spawn(move || {
            let _ = tx.send(r(&d));
            drop(h);
        })?;
    match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| io::Error::new(e.kind(), format!("resolving {dest}: {e}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "resolving {dest}: no answer within {}s",
                timeout.as_secs_f32()
            ),
        )),
    }
}

/// Resolve `dest` now and connect to its addresses in turn, within the connect bound in
/// all; an address one of kiln's own front proxies listens on is never dialled.
fn dial(dest: &str, caps: &Caps, held: &Held) -> io::Result<TcpStream> {
    let timeout = caps.connect_timeout;
    let deadline = Instant::now() + timeout;
    let resolved = resolve(dest, &caps.resolve, timeout, held)?;
    let ours = super::kiln_listens();
    let addrs: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| !ours.iter().any(|l| super::reaches(*a, *l)))
        .collect();
    if addrs.is_empty() && !resolved.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{dest} resolves to an address kiln's own front proxy listens on; egress cannot point back at kiln"
            ),
        ));
    }
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

fn forward(client: TcpStream, c: &Arc<Counters>, dest: &str, caps: &Caps, held: &Held) {
    let upstream = match dial(dest, caps, held) {
        Ok(u) => u,
        Err(e) => {
            refuse(&client, c, e.to_string());
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
