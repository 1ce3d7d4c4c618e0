//! `kiln serve`: the reconciler, the supervisor of runc instances, the front
//! proxies and the API.
//!
//! One thread ticks the reconciler (every 100 ms, or at once when the API
//! changes the desired state). Each instance has a health-check thread and a
//! log reader. The reconciler compares desired with actual state and acts:
//! starts instances of a new release, switches the proxy, retires and
//! destroys old instances, replaces ones that exited, failed health checks
//! or outlived `max_lifetime` — never repairs one. Every such action is an
//! audit event. State is saved to the embedded database after each tick
//! that changed it.

use std::collections::{HashMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_audit::{Actor, AuditLog, Event, Resource};
use kiln_oci::{Digest, Store};
use kiln_runtime::{Bundle, InstanceSpec, Runtime};
use serde_json::{Value, json};

use crate::api::{Request, Response, socket_path};
use crate::deploy::{Deployment, HealthCheck, ImageRef, ServiceSpec, Strategy};
use crate::proxy::{Backend, Dial, Proxy, weights_for_step};
use crate::state::{Db, FleetState, Instance, Phase, Release, Rollout};

mod drift;
mod handlers;
mod instances;
mod rollout;

/// Decides whether an image may run: the trust policy (signatures,
/// provenance, approvals) and every blob digest. Implemented by the CLI with
/// `kiln verify`'s rules.
pub trait ImageGate: Send + Sync {
    /// `Ok(summary)` if `image` passes `policy`, else `Err(why)`.
    fn check(&self, image: &ImageRef, policy: &Path) -> Result<String, String>;
}

/// Settings of one daemon.
pub struct Options {
    pub state_dir: PathBuf,
    /// Tools mounted read-only into debug instances (e.g. a static busybox
    /// as `<dir>/busybox`).
    pub debug_tools: Option<PathBuf>,
}

/// How long a new instance may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a rollout may take before it is aborted.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a retiring instance may drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a retiring instance stays up after leaving the rotation, at least.
const RETIRE_GRACE: Duration = Duration::from_millis(500);
/// Unplanned replacements within 30 s that count as a crash loop.
const CRASH_LOOP: usize = 5;
/// Lines of output kept per service.
const LOG_LINES: usize = 5000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct HealthCell {
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
    ever_ok: AtomicBool,
    /// When the first check passed (ms since the epoch).
    first_ok_ms: std::sync::OnceLock<u64>,
    last_error: Mutex<String>,
}

struct Live {
    health: Arc<HealthCell>,
    /// Fresh sockets inside the instance's network namespace, for the proxy.
    sockets: Option<Arc<kiln_runtime::NetnsSockets>>,
    stop: Arc<AtomicBool>,
    /// Our child (started by this daemon): reaped with waitpid. Adopted
    /// instances are watched through /proc.
    child: bool,
}

struct DebugSession {
    service: String,
    expires: u64,
}

#[derive(Default)]
struct LogRing {
    lines: VecDeque<(u64, String)>,
    next: u64,
}

struct World {
    st: FleetState,
    live: HashMap<String, Live>,
    proxies: HashMap<String, (SocketAddr, Proxy, String)>,
    debug: HashMap<String, DebugSession>,
    /// Instances killed on purpose (chaos): their exit is not a crash.
    expected_exits: std::collections::HashSet<String>,
    dirty: bool,
}

struct Shared {
    opts: Options,
    fleet_dir: PathBuf,
    rootfs_dir: PathBuf,
    bundles_dir: PathBuf,
    runtime: Arc<dyn Runtime>,
    gate: Arc<dyn ImageGate>,
    audit: AuditLog,
    db: Db,
    world: Mutex<World>,
    wake: Condvar,
    logs: Arc<Logs>,
    stop: AtomicBool,
    exe_hashes: crate::drift::ExeHashes,
    /// inotify watchers, per unpacked root filesystem.
    watches: Mutex<HashMap<PathBuf, crate::drift::RootfsWatch>>,
    /// File manifests (the drift baselines), per image digest.
    baselines: Mutex<HashMap<String, Arc<Baseline>>>,
    /// When runtime checks and full re-hashes last ran.
    drift_clock: Mutex<(Instant, HashMap<PathBuf, Instant>)>,
    /// How often every root filesystem is fully re-hashed.
    full_scan: Duration,
    /// Inode records of unpacked root filesystems, per image digest (a
    /// cache of the state database's `rootfs-inodes` table).
    inodes: Mutex<HashMap<String, Arc<kiln_drift::InodeRecord>>>,
    /// Drifted root filesystems that could not be moved into quarantine:
    /// still at their cached path, so no instance may start on them until
    /// a retried quarantine succeeds.
    condemned: Mutex<std::collections::HashSet<PathBuf>>,
    /// When each root filesystem was last swept, and how often to.
    sweep_clock: Mutex<HashMap<PathBuf, Instant>>,
    sweep_every: Duration,
}

/// What an instance of one image must look like.
struct Baseline {
    manifest: kiln_sbom::FileManifest,
    /// The manifest's entries as a drift baseline (for the sweep).
    entries: Vec<kiln_drift::Entry>,
    /// path → sha256 of regular files.
    files: HashMap<String, String>,
    /// Declared ports (image config and `[baseline] ingress`).
    ports: Vec<u16>,
}

/// How often every unpacked root filesystem is fully re-hashed (PCI DSS
/// asks for at least weekly). `KILN_DRIFT_FULL_SECS` overrides it.
fn full_scan_interval() -> Duration {
    std::env::var("KILN_DRIFT_FULL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs)
}

/// How often every unpacked root filesystem gets the cheap metadata sweep
/// (`lstat` of every path: inode numbers and link counts, which inotify on
/// the rootfs cannot see change from outside). `KILN_DRIFT_SWEEP_SECS`
/// overrides the 5 s default (fractions allowed, at least 0.1 s).
fn sweep_interval() -> Duration {
    std::env::var("KILN_DRIFT_SWEEP_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map_or(Duration::from_secs(5), |s| {
            Duration::from_secs_f64(s.clamp(0.1, 86_400.0))
        })
}

/// Paths of a rootfs that are mount points in every instance.
const MOUNT_POINTS: [&str; 5] = ["/proc", "/sys", "/dev", "/tmp", "/run"];

/// The daemon.
pub struct Daemon {
    sh: Arc<Shared>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Setup(String),
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup(format!("{what}: {e}"))
}

/// The privacy-relevant settings of an image's `[baseline]`: a change in any
/// of them may only roll out all-or-nothing.
pub const PRIVACY_KEYS: [&str; 6] = [
    "log_level",
    "tls_min_version",
    "ingress",
    "egress",
    "encryption_at_rest",
    "pii",
];

/// The privacy-relevant differences between two baselines, as
/// `key: old → new`.
pub fn privacy_diff(old: Option<&Value>, new: Option<&Value>) -> Vec<String> {
    let get = |v: Option<&Value>, k: &str| v.and_then(|v| v.get(k)).cloned().unwrap_or(Value::Null);
    PRIVACY_KEYS
        .iter()
        .filter_map(|k| {
            let (a, b) = (get(old, k), get(new, k));
            (a != b).then(|| format!("{k}: {a} → {b}"))
        })
        .collect()
}

/// What makes a release: a failed rollout of the same is not retried until a
/// new apply changes it.
fn fingerprint(spec: &ServiceSpec) -> String {
    format!(
        "{}|{}|{:?}|{:?}",
        spec.image, spec.port, spec.env, spec.tmpfs_mb
    )
}

fn instance_fields_differ(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.image != b.image || a.port != b.port || a.env != b.env || a.tmpfs_mb != b.tmpfs_mb
}

impl Daemon {
    /// Open the state, adopt or clean up what a previous daemon left, and
    /// get ready to serve. Call [`Daemon::run`] next.
    pub fn new(
        opts: Options,
        runtime: Arc<dyn Runtime>,
        gate: Arc<dyn ImageGate>,
    ) -> Result<Daemon, DaemonError> {
        let fleet_dir = opts.state_dir.join("fleet");
        let rootfs_dir = fleet_dir.join("rootfs");
        let bundles_dir = fleet_dir.join("instances");
        for d in [&fleet_dir, &rootfs_dir, &bundles_dir] {
            std::fs::create_dir_all(d).map_err(setup(&d.display().to_string()))?;
        }
        std::fs::set_permissions(&fleet_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(setup("fleet directory"))?;
        let db = Db::open(&fleet_dir.join("fleet.redb")).map_err(setup("state database"))?;
        let st = db.load().map_err(setup("state database"))?;
        let audit = AuditLog::open(&opts.state_dir).map_err(setup("audit log"))?;
        if let Some(why) = audit.log().poisoned() {
            return Err(DaemonError::Setup(format!(
                "the audit log refuses appends ({why}); run `kiln log verify`"
            )));
        }
        kiln_runtime::set_child_subreaper().map_err(setup("PR_SET_CHILD_SUBREAPER"))?;
        let sh = Arc::new(Shared {
            opts,
            fleet_dir,
            rootfs_dir,
            bundles_dir,
            runtime,
            gate,
            audit,
            db,
            world: Mutex::new(World {
                st,
                live: HashMap::new(),
                proxies: HashMap::new(),
                debug: HashMap::new(),
                expected_exits: std::collections::HashSet::new(),
                dirty: false,
            }),
            wake: Condvar::new(),
            logs: Arc::new(Logs::default()),
            stop: AtomicBool::new(false),
            exe_hashes: crate::drift::ExeHashes::default(),
            watches: Mutex::new(HashMap::new()),
            baselines: Mutex::new(HashMap::new()),
            drift_clock: Mutex::new((Instant::now(), HashMap::new())),
            full_scan: full_scan_interval(),
            inodes: Mutex::new(HashMap::new()),
            condemned: Mutex::new(std::collections::HashSet::new()),
            sweep_clock: Mutex::new(HashMap::new()),
            sweep_every: sweep_interval(),
        });
        sh.adopt();
        Ok(Daemon { sh })
    }

    /// Serve the API and reconcile until `stop` is set. Instances keep
    /// running when the daemon stops, so a restarted daemon re-adopts them.
    pub fn run(&self, stop: &'static AtomicBool) -> Result<(), DaemonError> {
        let sock = socket_path(&self.sh.opts.state_dir);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(setup(&sock.display().to_string()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(setup("API socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(setup("API socket"))?;
        let sh = self.sh.clone();
        let api = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let sh = sh.clone();
                        std::thread::spawn(move || sh.serve_client(s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        while !stop.load(Ordering::Relaxed) {
            self.sh.tick();
            let w = lock(&self.sh.world);
            let _ = self
                .sh
                .wake
                .wait_timeout(w, Duration::from_millis(100))
                .map(|(g, _)| drop(g));
        }
        self.sh.stop.store(true, Ordering::Relaxed);
        let _ = api.join();
        let mut w = lock(&self.sh.world);
        for live in w.live.values() {
            live.stop.store(true, Ordering::Relaxed);
        }
        for (_, (_, p, _)) in w.proxies.drain() {
            p.stop();
        }
        let _ = self.sh.db.save(&w.st);
        let _ = std::fs::remove_file(&sock);
        Ok(())
    }
}

impl Shared {
    /// Record the event of a change a client asked for, before making it:
    /// a change whose event cannot be recorded is refused.
    fn record_first(&self, e: Event) -> Result<(), String> {
        self.audit.record(&e).map(|_| ()).map_err(|err| {
            format!(
                "could not record {} in the audit log ({err}); nothing was changed",
                e.action
            )
        })
    }

    fn record(&self, e: Event) {
        if let Err(err) = self.audit.record(&e) {
            eprintln!(
                "kiln serve: could not record {} in the audit log: {err}",
                e.action
            );
        }
    }

    fn event(&self, action: &str, service: &str) -> Event {
        Event::new(action, "kiln serve").resource(Resource::new("service", service))
    }

    /// Re-adopt instances that survived a daemon restart; forget the rest.
    fn adopt(&self) {
        let mut w = lock(&self.world);
        let known = self.runtime.list().unwrap_or_default();
        let names: Vec<String> = w.st.services.keys().cloned().collect();
        let mut keep = std::collections::HashSet::new();
        for name in names {
            let ids: Vec<String> = w.st.services[&name].instances.keys().cloned().collect();
            for id in ids {
                let inst = w.st.services[&name].instances[&id].clone();
                let running = known
                    .iter()
                    .any(|s| s.id == id && s.pid == inst.pid && s.pid != 0 && pid_alive(s.pid));
                if running {
                    let spec = w.st.services[&name]
                        .release(&inst.release)
                        .map(|r| r.spec.clone());
                    if let Some(spec) = spec {
                        let live = self.watch(&name, &inst, &spec, false);
                        // Seed health from the phase it had.
                        if inst.phase != Phase::Starting {
                            live.health.ever_ok.store(true, Ordering::Relaxed);
                            live.health.ok_streak.store(1, Ordering::Relaxed);
                        }
                        w.live.insert(id.clone(), live);
                        keep.insert(id);
                        continue;
                    }
                }
                let _ = self.runtime.delete(&id, true);
                if let Some(svc) = w.st.services.get_mut(&name) {
                    svc.instances.remove(&id);
                }
                self.record(
                    self.event("instance.replace", &name)
                        .resource(Resource::new("instance", &id))
                        .reason(Some("not running when kiln serve restarted")),
                );
                w.dirty = true;
            }
        }
        // Containers in kiln's runc root that no state knows: orphans.
        for s in known {
            if !keep.contains(&s.id) {
                let _ = self.runtime.delete(&s.id, true);
            }
        }
    }

    fn tick(&self) {
        let mut w = lock(&self.world);
        let mut names: Vec<String> = w.st.desired.services.keys().cloned().collect();
        for n in w.st.services.keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        for name in names {
            if let Err(e) = self.reconcile(&mut w, &name)
                && let Some(svc) = w.st.services.get_mut(&name)
                && svc.message != e
            {
                svc.message = e;
                w.dirty = true;
            }
        }
        self.drift_tick(&mut w);
        let now = now_ms();
        let expired: Vec<String> = w
            .debug
            .iter()
            .filter(|(_, d)| d.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(d) = w.debug.remove(&id) {
                self.end_debug(&id, &d.service, "TTL expired");
            }
        }
        if w.dirty {
            if let Err(e) = self.db.save(&w.st) {
                eprintln!("kiln serve: saving state: {e}");
            }
            w.dirty = false;
        }
    }

    fn reconcile(&self, w: &mut World, name: &str) -> Result<(), String> {
        let desired = w.st.desired.services.get(name).cloned();
        self.monitor(w, name, desired.as_ref());
        let Some(spec) = desired else {
            return self.teardown(w, name);
        };
        self.ensure_proxy(w, name, spec.listen)?;
        self.plan_release(w, name, &spec)?;
        self.progress_rollout(w, name, &spec);
        self.maintain(w, name, &spec);
        self.sync_rotation(w, name);
        self.retire(w, name);
        Ok(())
    }

    /// Watch every instance: exits, health, start timeouts.
    fn monitor(&self, w: &mut World, name: &str, desired: Option<&ServiceSpec>) {
        let now = now_ms();
        let Some(svc) = w.st.services.get(name) else {
            return;
        };
        let ids: Vec<String> = svc.instances.keys().cloned().collect();
        for id in ids {
            let Some(inst) = w.st.services[name].instances.get(&id).cloned() else {
                continue;
            };
            let spec = w.st.services[name]
                .release(&inst.release)
                .map(|r| r.spec.clone())
                .or_else(|| desired.cloned());
            let unhealthy_after = spec.as_ref().map_or(3, |s| s.health.unhealthy_after.max(1));
            let healthy_after = spec.as_ref().map_or(1, |s| s.health.healthy_after.max(1));
            let live = w.live.get(&id);
            let exited = match live {
                Some(l) if l.child => match kiln_runtime::try_reap(inst.pid) {
                    Ok(Some(status)) => Some(describe_wait(status)),
                    Ok(None) => None,
                    Err(_) => (!pid_alive(inst.pid)).then(|| "exited".to_string()),
                },
                _ => (!pid_alive(inst.pid)).then(|| "exited".to_string()),
            };
            let health = live.map(|l| l.health.clone());
            let reason = if let Some(how) = exited {
                Some(format!("instance {how}"))
            } else if let Some(h) = &health {
                let fails = h.fail_streak.load(Ordering::Relaxed);
                let oks = h.ok_streak.load(Ordering::Relaxed);
                if inst.phase != Phase::Retiring
                    && h.ever_ok.load(Ordering::Relaxed)
                    && fails >= unhealthy_after
                {
                    Some(format!(
                        "unhealthy: {fails} consecutive failed health checks ({})",
                        lock(&h.last_error)
                    ))
                } else if inst.phase == Phase::Starting && oks >= healthy_after {
                    if let Some(i) =
                        w.st.services
                            .get_mut(name)
                            .and_then(|s| s.instances.get_mut(&id))
                    {
                        i.phase = Phase::Healthy;
                        i.start_to_healthy_ms =
                            h.first_ok_ms.get().map(|t| t.saturating_sub(inst.started));
                        w.dirty = true;
                    }
                    None
                } else if inst.phase == Phase::Starting
                    && now.saturating_sub(inst.started) > START_TIMEOUT.as_millis() as u64
                {
                    Some(format!(
                        "never became healthy in {} s ({})",
                        START_TIMEOUT.as_secs(),
                        lock(&h.last_error)
                    ))
                } else {
                    None
                }
            } else {
                None
            };
            let Some(reason) = reason else { continue };
            self.remove_instance(w, name, &id);
            let deliberate = w.expected_exits.remove(&id);
            let svc = w.st.services.entry(name.to_string()).or_default();
            if inst.phase == Phase::Retiring {
                continue;
            }
            if !deliberate {
                svc.restarts.push(now);
            }
            svc.restarts.retain(|t| now.saturating_sub(*t) < 30_000);
            let n = svc.restarts.len();
            if n >= CRASH_LOOP {
                let delay = (250u64 << (n - CRASH_LOOP).min(7)).min(30_000);
                svc.backoff_until = now + delay;
                svc.message = format!(
                    "crash loop: {n} replacements in 30 s, next start in {:.1} s (last: {reason})",
                    delay as f64 / 1000.0
                );
            } else {
                svc.message = format!("replaced {id}: {reason}");
            }
            if let Some(r) = svc.rollout.as_mut()
                && r.release == inst.release
            {
                r.failures += 1;
            }
            self.record(
                self.event("instance.replace", name)
                    .resource(Resource::new("instance", &id))
                    .resource(Resource::new("release", &inst.release))
                    .reason(Some(&reason))
                    .detail("outcome", "replaced by a new instance of the same release"),
            );
        }
    }

    /// Stop watching, kill and delete an instance, and forget it.
    fn remove_instance(&self, w: &mut World, name: &str, id: &str) {
        if let Some(l) = w.live.remove(id) {
            l.stop.store(true, Ordering::Relaxed);
        }
        let _ = self.runtime.kill(id, libc::SIGKILL);
        let _ = self.runtime.delete(id, true);
        if let Some(svc) = w.st.services.get_mut(name)
            && let Some(inst) = svc.instances.remove(id)
        {
            let _ = kiln_runtime::try_reap(inst.pid);
        }
        let _ = std::fs::remove_dir_all(self.bundles_dir.join(id));
        w.dirty = true;
    }

    /// The service left the desired state: drain and destroy it.
    fn teardown(&self, w: &mut World, name: &str) -> Result<(), String> {
        let Some(svc) = w.st.services.get_mut(name) else {
            return Ok(());
        };
        let now = now_ms();
        for inst in svc.instances.values_mut() {
            if inst.phase != Phase::Retiring {
                inst.phase = Phase::Retiring;
                inst.in_rotation = false;
                inst.retiring_since = now;
                inst.retire_reason = Some("service destroyed".into());
            }
        }
        svc.rollout = None;
        w.dirty = true;
        self.sync_rotation(w, name);
        self.retire(w, name);
        if w.st
            .services
            .get(name)
            .is_some_and(|s| s.instances.is_empty())
        {
            w.st.services.remove(name);
            if let Some((_, p, _)) = w.proxies.remove(name) {
                p.stop();
            }
            self.record(
                self.event("service.destroy", name)
                    .detail("instances_left", 0),
            );
        }
        Ok(())
    }

    fn ensure_proxy(&self, w: &mut World, name: &str, listen: SocketAddr) -> Result<(), String> {
        if let Some((addr, _, _)) = w.proxies.get(name) {
            if *addr == listen {
                return Ok(());
            }
            if let Some((_, p, _)) = w.proxies.remove(name) {
                p.stop();
            }
        }
        let p = Proxy::start(listen).map_err(|e| format!("front proxy on {listen}: {e}"))?;
        w.proxies
            .insert(name.to_string(), (listen, p, String::new()));
        Ok(())
    }

    fn next_id(&self, w: &mut World, prefix: &str) -> String {
        w.st.seq += 1;
        format!("{prefix}{:04}", w.st.seq)
    }
}

/// Output of every service's instances, a bounded ring per service.
#[derive(Default)]
struct Logs {
    rings: Mutex<HashMap<String, LogRing>>,
    cv: Condvar,
}

impl Logs {
    fn push(&self, service: &str, line: String) {
        let mut m = lock(&self.rings);
        let ring = m.entry(service.to_string()).or_default();
        let n = ring.next;
        ring.next += 1;
        ring.lines.push_back((n, line));
        while ring.lines.len() > LOG_LINES {
            ring.lines.pop_front();
        }
        self.cv.notify_all();
    }
}

struct NetnsDial {
    pid: u32,
    port: u16,
    sockets: Option<Arc<kiln_runtime::NetnsSockets>>,
}

impl Dial for NetnsDial {
    fn dial(&self) -> std::io::Result<std::net::TcpStream> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        match &self.sockets {
            Some(s) => s.connect(addr, Duration::from_secs(1)),
            None => kiln_runtime::connect_in_netns(self.pid, addr, Duration::from_secs(1)),
        }
    }
}

fn reply(mut s: &UnixStream, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)
}

/// The caller, from SO_PEERCRED; `None` unless root or the daemon's user.
fn peer_actor(s: &UnixStream) -> Option<Actor> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if rc != 0 || (cred.uid != 0 && cred.uid != me) {
        return None;
    }
    Some(Actor::for_uid(cred.uid))
}

fn pid_alive(pid: u32) -> bool {
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

fn describe_wait(status: i32) -> String {
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

/// The diff of a root filesystem that has no unpack-time inode record.
fn no_record_diff() -> Value {
    json!({"inode_record": "missing"})
}

fn is_no_record(diff: &Value) -> bool {
    diff.get("inode_record").and_then(Value::as_str) == Some("missing")
}

/// Why no instance starts on a drifted root filesystem still in the cache.
fn refuse_drifted(image: &str, why: &str) -> String {
    format!(
        "the root filesystem of {image} drifted and could not be moved away ({why}); refusing to start on it"
    )
}
