//! The front proxy: one TCP listener per service, spreading new connections over the
//! instances of the active release by weight.
//!
//! - Each accepted connection is handled on its own thread (plus one for the reverse
//!   direction); bytes move with `splice(2)` through a pipe, falling back to `read`/`write`.
//! - [`Proxy::set_backends`] atomically replaces the rotation. Only new connections see it:
//!   established ones are never cut, they drain.
//! - A failed dial moves on to the next backend (at most [`MAX_DIAL_ATTEMPTS`] tries), so a
//!   crashed instance costs no client connection while the daemon replaces it.
//! - Per-backend counters (active, total, failed dials) let the daemon destroy an instance
//!   only once [`Proxy::wait_drained`] says its connections have finished.
//! - Per-release counters ([`stats`]): connections, failed dials, resets and, with
//!   [`Proxy::set_http`], HTTP responses by status class and latency ([`http`]).
//! - With [`Proxy::set_proxy_protocol`] each upstream connection starts with a PROXY
//!   protocol v2 header ([`proxyv2`]) carrying the client's address.

pub mod http;
pub mod proxyv2;
pub mod stats;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::pool;
use std::time::{Duration, Instant};

pub use stats::{Histogram, LATENCY_BUCKETS, ReleaseStats, StatusClasses};
use stats::{ReleaseCounters, Releases};

/// Most backends tried for one client connection before it is closed.
pub const MAX_DIAL_ATTEMPTS: usize = 4;

/// Bytes moved per `splice`/`read` call (and the pipe size of long transfers).
const CHUNK: usize = 256 * 1024;
/// A connection direction that has moved this much gets a `CHUNK`-sized pipe.
const GROW_AFTER: usize = 1024 * 1024;

/// Opens an upstream connection to one instance. The daemon's dialer creates the socket inside
/// the instance's network namespace; tests dial plain loopback listeners ([`TcpDial`]).
pub trait Dial: Send + Sync {
    fn dial(&self) -> io::Result<TcpStream>;
}

/// Dials a fixed address with a connect timeout.
#[derive(Clone, Debug)]
pub struct TcpDial {
    pub addr: SocketAddr,
    pub timeout: Duration,
}

impl TcpDial {
    pub fn new(addr: SocketAddr) -> TcpDial {
        TcpDial {
            addr,
            timeout: Duration::from_secs(1),
        }
    }
}

impl Dial for TcpDial {
    fn dial(&self) -> io::Result<TcpStream> {
        TcpStream::connect_timeout(&self.addr, self.timeout)
    }
}

/// One instance in the rotation.
#[derive(Clone)]
pub struct Backend {
    /// Instance id; counters are kept per id across rotation changes.
    pub id: String,
    /// Release id.
    pub group: String,
    /// Relative share of new connections; 0 = out of rotation (existing connections drain).
    pub weight: u32,
    pub dial: Arc<dyn Dial>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("group", &self.group)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// Counters of one backend.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackendStats {
    pub id: String,
    pub group: String,
    pub weight: u32,
    /// Whether the backend is in the current rotation with a weight above 0.
    pub in_rotation: bool,
    /// Connections open now.
    pub active: usize,
    /// Connections ever established to it.
    pub total: u64,
    /// Dials that failed.
    pub failed_dials: u64,
}

/// A snapshot of the proxy's counters.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProxyStats {
    pub listen: SocketAddr,
    /// Client connections accepted.
    pub accepted: u64,
    /// Client connections closed because no backend could be dialled.
    pub rejected: u64,
    /// Sorted by id.
    pub backends: Vec<BackendStats>,
    /// Per release (the backends' groups), sorted by release id.
    pub releases: Vec<ReleaseStats>,
}

#[derive(Default)]
struct Counters {
    active: AtomicUsize,
    total: AtomicU64,
    failed: AtomicU64,
}

struct Slot {
    backend: Backend,
    counters: Arc<Counters>,
    release: Arc<ReleaseCounters>,
    /// Smooth weighted round-robin state.
    current: i64,
}

#[derive(Default)]
struct Rotation {
    slots: Vec<Slot>,
}

impl Rotation {
    /// Smooth weighted round-robin (as in nginx) over slots with weight > 0 not in `skip`.
    fn pick(&mut self, skip: &[usize]) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<(usize, i64)> = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.backend.weight == 0 || skip.contains(&i) {
                continue;
            }
            let w = i64::from(s.backend.weight);
            s.current += w;
            total += w;
            if best.is_none_or(|(_, c)| s.current > c) {
                best = Some((i, s.current));
            }
        }
        let (i, _) = best?;
        self.slots[i].current -= total;
        Some(i)
    }
}

struct Inner {
    listen: SocketAddr,
    rotation: Mutex<Rotation>,
    /// Counters of every backend that is in the rotation or still has connections.
    counters: Mutex<HashMap<String, (String, Arc<Counters>)>>,
    accepted: AtomicU64,
    rejected: AtomicU64,
    stopping: AtomicBool,
    /// Whether bytes move with splice(2) (else read/write).
    splice: AtomicBool,
    /// Whether responses are parsed as HTTP/1.x for the per-release counters.
    http: AtomicBool,
    /// Whether upstream connections start with a PROXY v2 header.
    proxy_protocol: AtomicBool,
    releases: Releases,
    /// Notified whenever a proxied connection finishes.
    drained: Condvar,
    drained_lock: Mutex<()>,
}

use kiln_oci::sync::lock;

/// A running front proxy. Dropping it stops it.
pub struct Proxy {
    inner: Arc<Inner>,
    listener_fd: RawFd,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listen", &self.inner.listen)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds `listen` (with `SO_REUSEADDR`, which std sets on Unix) and accepts on a thread.
    /// Port 0 picks a free port; see [`Proxy::local_addr`].
    pub fn start(listen: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let local = listener.local_addr()?;
        let inner = Arc::new(Inner {
            listen: local,
            rotation: Mutex::new(Rotation::default()),
            counters: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            splice: AtomicBool::new(false),
            http: AtomicBool::new(false),
            proxy_protocol: AtomicBool::new(false),
            releases: Releases::default(),
            drained: Condvar::new(),
            drained_lock: Mutex::new(()),
        });
        let listener_fd = listener.as_raw_fd();
        let inner2 = Arc::clone(&inner);
        let accept = std::thread::Builder::new()
            .name(format!("kiln-proxy-{local}"))
            .spawn(move || accept_loop(&listener, &inner2))?;
        // Egress must never be forwarded back here (see crate::egress::kiln_listens).
        crate::egress::note_listen(local);
        Ok(Proxy {
            inner,
            listener_fd,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// Chooses how new connections move bytes: by default one thread per connection copies
    /// both directions through non-blocking sockets (cheapest for the short connections of
    /// HTTP services); `true` uses a thread per direction with `splice(2)` through a pipe
    /// (falling back to read/write where splice is unsupported), for long bulk transfers.
    pub fn set_splice(&self, on: bool) {
        self.inner.splice.store(on, Ordering::Relaxed);
    }

    /// Whether new connections parse the instance's responses as HTTP/1.x (status class
    /// and latency per release). Connections parsed this way copy with read/write (not
    /// splice) on the connection's one thread.
    pub fn set_http(&self, on: bool) {
        self.inner.http.store(on, Ordering::Relaxed);
    }

    /// Whether new upstream connections start with a PROXY protocol v2 header.
    pub fn set_proxy_protocol(&self, on: bool) {
        self.inner.proxy_protocol.store(on, Ordering::Relaxed);
    }

    /// Per-release counters, sorted by release id.
    pub fn release_stats(&self) -> Vec<ReleaseStats> {
        self.inner.releases.snapshot()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Atomically replaces the rotation. New connections are spread over `backends` by
    /// weight; connections already open are left alone and drain. Counters are kept per id,
    /// so a backend that stays (even with a new weight) keeps its counts.
    pub fn set_backends(&self, backends: Vec<Backend>) {
        let mut rot = lock(&self.inner.rotation);
        let mut counters = lock(&self.inner.counters);
        let slots = backends
            .into_iter()
            .map(|b| {
                let c = counters
                    .entry(b.id.clone())
                    .or_insert_with(|| (b.group.clone(), Arc::new(Counters::default())));
                c.0.clone_from(&b.group);
                let current = rot
                    .slots
                    .iter()
                    .find(|s| s.backend.id == b.id)
                    .map_or(0, |s| s.current);
                Slot {
                    counters: Arc::clone(&c.1),
                    release: self.inner.releases.get(&b.group),
                    backend: b,
                    current,
                }
            })
            .collect::<Vec<_>>();
        // Forget backends that left the rotation and have nothing left to drain.
        counters.retain(|id, (_, c)| {
            slots.iter().any(|s| &s.backend.id == id) || c.active.load(Ordering::SeqCst) > 0
        });
        let groups: Vec<&str> = slots.iter().map(|s| s.backend.group.as_str()).collect();
        self.inner.releases.prune(&groups);
        rot.slots = slots;
    }

    /// Connections open now to backend `id` (0 if unknown).
    pub fn in_flight(&self, id: &str) -> usize {
        lock(&self.inner.counters)
            .get(id)
            .map_or(0, |(_, c)| c.active.load(Ordering::SeqCst))
    }

    /// Waits until backend `id` has no open connections; false if `timeout` passed first.
    pub fn wait_drained(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = lock(&self.inner.drained_lock);
        loop {
            if self.in_flight(id) == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Bounded wait, in case a notification raced the check above.
            let wait = (deadline - now).min(Duration::from_millis(50));
            guard = kiln_oci::sync::wait_timeout(&self.inner.drained, guard, wait).0;
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ProxyStats {
        let rot = lock(&self.inner.rotation);
        let counters = lock(&self.inner.counters);
        let mut backends: Vec<BackendStats> = counters
            .iter()
            .map(|(id, (group, c))| {
                let slot = rot.slots.iter().find(|s| &s.backend.id == id);
                BackendStats {
                    id: id.clone(),
                    group: group.clone(),
                    weight: slot.map_or(0, |s| s.backend.weight),
                    in_rotation: slot.is_some_and(|s| s.backend.weight > 0),
                    active: c.active.load(Ordering::SeqCst),
                    total: c.total.load(Ordering::SeqCst),
                    failed_dials: c.failed.load(Ordering::SeqCst),
                }
            })
            .collect();
        backends.sort_by(|a, b| a.id.cmp(&b.id));
        ProxyStats {
            listen: self.inner.listen,
            accepted: self.inner.accepted.load(Ordering::SeqCst),
            rejected: self.inner.rejected.load(Ordering::SeqCst),
            backends,
            releases: self.inner.releases.snapshot(),
        }
    }

    /// Stops accepting and closes the listener (the port is free when this returns).
    /// Connections already proxied carry on until they finish.
    pub fn stop(&self) {
        let handle = lock(&self.accept).take();
        if let Some(h) = handle {
            crate::egress::forget_listen(self.inner.listen);
            self.inner.stopping.store(true, Ordering::SeqCst);
            // Wakes the blocked accept(2) with EINVAL; the thread then drops the listener.
            // The listener is owned by the accept thread, which is still running (we hold
            // its handle), so the fd is open and refers to the listener.
            crate::sys::shutdown_owned_elsewhere(self.listener_fd);
            let _ = h.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, inner: &Arc<Inner>) {
    loop {
        let accepted = listener.accept();
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((client, _)) => {
                inner.accepted.fetch_add(1, Ordering::Relaxed);
                let inner = Arc::clone(inner);
                // If no thread can be spawned the client is dropped (closed).
                let _ = pool::spawn("kiln-proxy-conn", move || handle(client, &inner));
            }
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => {}
                // Out of fds or memory: back off instead of spinning.
                _ => std::thread::sleep(Duration::from_millis(10)),
            },
        }
    }
}

/// Picks a backend and dials it, moving on to the next one when a dial fails.
fn connect(inner: &Inner) -> Option<(TcpStream, Arc<Counters>, Arc<ReleaseCounters>)> {
    let mut tried: Vec<usize> = Vec::new();
    for _ in 0..MAX_DIAL_ATTEMPTS {
        let (dial, counters, release, idx) = {
            let mut rot = lock(&inner.rotation);
            let idx = rot.pick(&tried)?;
            let s = &rot.slots[idx];
            // Counted as active before the dial, so a drain never misses a connection that
            // is being set up.
            s.counters.active.fetch_add(1, Ordering::SeqCst);
            (
                Arc::clone(&s.backend.dial),
                Arc::clone(&s.counters),
                Arc::clone(&s.release),
                idx,
            )
        };
        match dial.dial() {
            Ok(up) => {
                counters.total.fetch_add(1, Ordering::Relaxed);
                release.connections.fetch_add(1, Ordering::Relaxed);
                return Some((up, counters, release));
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                release.connect_failures.fetch_add(1, Ordering::Relaxed);
                counters.active.fetch_sub(1, Ordering::SeqCst);
                inner.drained.notify_all();
                tried.push(idx);
            }
        }
    }
    None
}

fn handle(client: TcpStream, inner: &Arc<Inner>) {
    let Some((upstream, counters, release)) = connect(inner) else {
        inner.rejected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if inner.proxy_protocol.load(Ordering::Relaxed) {
        let sent = match (client.peer_addr(), client.local_addr()) {
            (Ok(src), Ok(dst)) => (&upstream).write_all(&proxyv2::proxy_header(src, dst)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if sent.is_err() {
            release.resets.fetch_add(1, Ordering::Relaxed);
            drop(upstream);
            finish(inner, &counters);
            return;
        }
    }
    let observer = inner
        .http
        .load(Ordering::Relaxed)
        .then(|| http::Observer::new(Arc::clone(&release)));
    if observer.is_some() || !inner.splice.load(Ordering::Relaxed) {
        if duplex(&client, &upstream, observer).is_err() {
            release.resets.fetch_add(1, Ordering::Relaxed);
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        drop(client);
        drop(upstream);
        finish(inner, &counters);
        return;
    }
    let (c2, u2) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        _ => {
            finish(inner, &counters);
            return;
        }
    };
    // The reverse direction runs on another pooled thread; `done` says when it finished.
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let splice = inner.splice.load(Ordering::Relaxed);
    let back = pool::spawn("kiln-proxy-conn", move || {
        pipe_one_way(&u2, &c2, splice, None);
        let _ = done_tx.send(());
    });
    match back {
        Ok(()) => {
            pipe_one_way(&client, &upstream, splice, None);
            let _ = done_rx.recv();
        }
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
    drop(client);
    drop(upstream);
    finish(inner, &counters);
}

/// One direction of a [`duplex`] copy.
struct Half {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    shut: bool,
}

/// Copies both directions between `a` and `b` on this one thread, with
/// non-blocking sockets and `poll(2)` when neither side can make progress.
/// Each direction half-closes its destination after its source's EOF; the
/// copy ends when both did.
///
/// `observer`, if given, sees each chunk after it was read (`a` is the client).
fn duplex(a: &TcpStream, b: &TcpStream, mut observer: Option<http::Observer>) -> io::Result<()> {
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let half = || Half {
        buf: vec![0u8; 32 * 1024].into_boxed_slice(),
        start: 0,
        end: 0,
        eof: false,
        shut: false,
    };
    let mut dirs = [half(), half()];
    loop {
        let mut progress = false;
        for (i, d) in dirs.iter_mut().enumerate() {
            let (mut src, mut dst) = if i == 0 { (a, b) } else { (b, a) };
            if d.start == d.end && !d.eof {
                match src.read(&mut d.buf) {
                    Ok(0) => {
                        d.eof = true;
                        progress = true;
                    }
                    Ok(n) => {
                        d.start = 0;
                        d.end = n;
                        progress = true;
                        if let Some(o) = observer.as_mut() {
                            let chunk = &d.buf[..n];
                            if i == 0 {
                                o.client(chunk, Instant::now());
                            } else {
                                o.upstream(chunk, Instant::now());
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if d.start < d.end {
                match dst.write(&d.buf[d.start..d.end]) {
                    Ok(n) => {
                        d.start += n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(e),
                }
            }
            if d.eof && d.start == d.end && !d.shut {
                let _ = dst.shutdown(Shutdown::Write);
                d.shut = true;
                progress = true;
            }
        }
        if dirs[0].shut && dirs[1].shut {
            return Ok(());
        }
        if progress {
            continue;
        }
        // Wait: a side is readable when its direction has room, writable
        // when the other direction has bytes for it.
        let wants = |read: &Half, write: &Half| -> libc::c_short {
            let mut ev = 0;
            if read.start == read.end && !read.eof {
                ev |= libc::POLLIN;
            }
            if write.start < write.end {
                ev |= libc::POLLOUT;
            }
            ev
        };
        let mut fds = [
            libc::pollfd {
                fd: a.as_raw_fd(),
                events: wants(&dirs[0], &dirs[1]),
                revents: 0,
            },
            libc::pollfd {
                fd: b.as_raw_fd(),
                events: wants(&dirs[1], &dirs[0]),
                revents: 0,
            },
        ];
        if let Err(e) = crate::sys::poll(&mut fds, -1)
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
    }
}

fn finish(inner: &Inner, counters: &Counters) {
    counters.active.fetch_sub(1, Ordering::SeqCst);
    let _g = lock(&inner.drained_lock);
    inner.drained.notify_all();
}

/// Copies `src` to `dst` until EOF, then half-closes `dst` for writing. On an error both
/// sockets are shut down, which also ends the other direction. `count`, if given, grows by
/// the bytes written to `dst` as they move (the egress forwarder's accounting).
pub(crate) fn pipe_one_way(
    src: &TcpStream,
    dst: &TcpStream,
    splice: bool,
    count: Option<&AtomicU64>,
) {
    let copied = if splice {
        copy(src, dst, count)
    } else {
        rw_copy(src, dst, count)
    };
    match copied {
        Ok(()) => {
            let _ = dst.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = src.shutdown(Shutdown::Both);
            let _ = dst.shutdown(Shutdown::Both);
        }
    }
}

fn copy(src: &TcpStream, dst: &TcpStream, count: Option<&AtomicU64>) -> io::Result<()> {
    match Pipe::new() {
        Ok(p) => match splice_copy(&p, src, dst, count) {
            Err(SpliceError::Unsupported) => rw_copy(src, dst, count),
            Err(SpliceError::Io(e)) => Err(e),
            Ok(()) => Ok(()),
        },
        Err(_) => rw_copy(src, dst, count),
    }
}

fn rw_copy(mut src: &TcpStream, mut dst: &TcpStream, count: Option<&AtomicU64>) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        if let Some(c) = count {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = crate::sys::pipe()?;
        Ok(Pipe { read, write })
    }

    /// A bigger pipe moves more per syscall; failure just keeps the default 64 KiB. Done only
    /// for long transfers, so short connections don't pay for the allocation.
    fn grow(&self) {
        crate::sys::set_pipe_size(self.write.as_fd(), CHUNK);
    }
}

enum SpliceError {
    /// splice(2) can't be used for these fds: fall back (only before any byte moved).
    Unsupported,
    Io(io::Error),
}

fn splice_copy(
    p: &Pipe,
    src: &TcpStream,
    dst: &TcpStream,
    count: Option<&AtomicU64>,
) -> Result<(), SpliceError> {
    let mut moved_any = false;
    let mut moved: usize = 0;
    let mut grown = false;
    loop {
        if !grown && moved >= GROW_AFTER {
            p.grow();
            grown = true;
        }
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE;
        let n = match crate::sys::splice(src.as_fd(), p.write.as_fd(), CHUNK, flags) {
            Ok(n) => n,
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EINVAL | libc::ENOSYS) if !moved_any => {
                    return Err(SpliceError::Unsupported);
                }
                _ => return Err(SpliceError::Io(e)),
            },
        };
        if n == 0 {
            return Ok(());
        }
        moved_any = true;
        let mut left = n;
        moved = moved.saturating_add(left);
        while left > 0 {
            // The pipe holds `left` bytes.
            let m = match crate::sys::splice(p.read.as_fd(), dst.as_fd(), left, libc::SPLICE_F_MOVE)
            {
                Ok(m) => m,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(SpliceError::Io(e)),
            };
            if m == 0 {
                return Err(SpliceError::Io(io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            if let Some(c) = count {
                c.fetch_add(m as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Per-backend weights of one canary step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepWeights {
    /// Weight of each backend of the canary (new) group.
    pub canary: u32,
    /// Weight of each backend of the stable (old) group.
    pub stable: u32,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Weights that send `percent` % of new connections (clamped to 100) to the canary group,
/// spread evenly within each group. With no canary backends everything goes to stable and
/// vice versa.
pub fn weights_for_step(percent: u8, canary_count: usize, stable_count: usize) -> StepWeights {
    let p = u32::from(percent.min(100));
    let c = u32::try_from(canary_count).unwrap_or(u32::MAX);
    let s = u32::try_from(stable_count).unwrap_or(u32::MAX);
    match (c, s) {
        (0, 0) => StepWeights {
            canary: 0,
            stable: 0,
        },
        (0, _) => StepWeights {
            canary: 0,
            stable: 1,
        },
        (_, 0) => StepWeights {
            canary: 1,
            stable: 0,
        },
        _ if p == 0 => StepWeights {
            canary: 0,
            stable: 1,
        },
        _ if p == 100 => StepWeights {
            canary: 1,
            stable: 0,
        },
        _ => {
            // c * wc : s * ws == p : (100 - p)  with wc = p * s, ws = (100 - p) * c.
            let wc = p.saturating_mul(s);
            let ws = (100 - p).saturating_mul(c);
            let g = gcd(wc, ws).max(1);
            StepWeights {
                canary: wc / g,
                stable: ws / g,
            }
        }
    }
}

#[cfg(test)]
mod tests;
