//! `kiln serve`: the reconciler, the supervisor of runc instances, the front
//! proxies and the API.
//!
//! One thread ticks the reconciler (every 100 ms, or at once when the API
//! changes the desired state), another checks for drift. Each instance has
//! a health-check thread and a log reader. The reconciler compares desired with actual state and acts:
//! starts instances of a new release, switches the proxy, retires and
//! destroys old instances, replaces ones that exited, failed health checks
//! or outlived `max_lifetime` — never repairs one. Every such action is an
//! audit event. State is saved to the embedded database after each tick
//! that changed it.
//!
//! The parts:
//! - `reconcile.rs`, `rollout.rs`: the reconciler, a pure function from
//!   desired state, persisted state, observations and the time to the new
//!   state and a list of actions;
//! - `tick.rs`: the shell around it — observe, decide under the world lock,
//!   then execute the actions (starts, audit events, the database write)
//!   without it, verification on a thread of its own; adoption after a
//!   restart;
//! - `host.rs`, `runc_host.rs`: the seam to the machine and its runc
//!   implementation; `clock.rs`: the seam to time;
//! - `drift.rs`, `drift_apply.rs`: drift detection and its effects;
//! - `logs.rs`: the instances' output, a bounded ring per service;
//! - `api.rs`: the API socket's requests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use kiln_audit::{AuditLog, Event, Resource};
use kiln_runtime::Runtime;
use serde_json::Value;

use crate::api::socket_path;
use crate::deploy::{ImageRef, ServiceSpec};
use crate::gate::PolicyGate;
use crate::proxy::Proxy;
use crate::secrets::SecretStore;
use crate::state::{Db, FleetState};

mod api;
mod clock;
mod drift;
mod drift_apply;
mod egress_audit;
mod host;
mod host_paths;
mod logs;
mod reconcile;
mod rollout;
mod runc_host;
#[cfg(test)]
mod tests;
mod tick;

pub use clock::{Clock, ManualClock, SystemClock};
pub use reconcile::Timing;

use drift::DriftWatch;
use host::{Host, Watch};
use logs::Logs;
use reconcile::{Slot, Verdict};

/// Why the image gate refused an image, or could not decide.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The policy's rules that failed, in one line.
    #[error("{0}")]
    Refused(String),
    /// The gate could not evaluate the image.
    #[error("{context}: {source}")]
    Failed {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<String> for GateError {
    fn from(why: String) -> GateError {
        GateError::Refused(why)
    }
}

/// Decides whether an image may run: the trust policy (signatures,
/// provenance, approvals) and every blob digest. The daemon always uses
/// [`PolicyGate`]; the trait is the seam tests use to block or refuse.
pub trait ImageGate: Send + Sync {
    /// `Ok(summary)` if `image` passes `policy`, else why not.
    fn check(&self, image: &ImageRef, policy: &Path) -> Result<String, GateError>;
}

/// Settings of one daemon.
pub struct Options {
    pub state_dir: PathBuf,
    /// Tools mounted read-only into debug instances (e.g. a static busybox
    /// as `<dir>/busybox`).
    pub debug_tools: Option<PathBuf>,
    /// Serve Prometheus metrics and the dashboard here (`kiln serve --metrics`).
    pub metrics: Option<SocketAddr>,
    /// The bearer token every metrics request must carry (required unless
    /// `metrics` is a loopback address).
    pub metrics_token: Option<Vec<u8>>,
}

use kiln_oci::sync::lock;

/// A watched instance of this daemon.
struct Live {
    watch: Watch,
    /// Our child (started by this daemon): reaped with waitpid. Adopted
    /// instances are watched through /proc.
    child: bool,
}

struct DebugSession {
    service: String,
    expires: u64,
}

/// A service's front proxy: its address, and the rotation it was last given.
struct Front {
    listen: SocketAddr,
    proxy: Proxy,
    rotation: Option<Vec<Slot>>,
}

/// Everything behind the world lock. Hold it only to read or change these
/// fields: slow work (verification, re-hashing, audit appends, database
/// writes) takes a snapshot, runs unlocked and applies its result after.
#[derive(Default)]
struct World {
    st: FleetState,
    live: HashMap<String, Live>,
    proxies: HashMap<String, Front>,
    debug: HashMap<String, DebugSession>,
    /// Instances killed on purpose (chaos): their exit is not a crash.
    expected_exits: HashSet<String>,
    /// The image gate's answers, per service: (verification key, verdict).
    verdicts: HashMap<String, (String, Verdict)>,
    /// Verifications in flight, per service: the key being verified.
    verifying: HashMap<String, String>,
    /// The state changed since it was last saved.
    dirty: bool,
    /// Counts changes: a save of an older snapshot leaves `dirty` set.
    generation: u64,
    /// Tick again at once (something changed since the tick began).
    again: bool,
}

impl World {
    fn touch(&mut self) {
        self.dirty = true;
        self.generation += 1;
    }
}

struct Shared {
    opts: Options,
    fleet_dir: PathBuf,
    host: Arc<dyn Host>,
    gate: Arc<dyn ImageGate>,
    clock: Arc<dyn Clock>,
    timing: Timing,
    audit: AuditLog,
    db: Arc<Db>,
    drift: Arc<DriftWatch>,
    world: Mutex<World>,
    /// The state as `status` shows it: published by the reconciler once the
    /// events of its changes are recorded (so a change is never visible
    /// before its event is in the log), and by client changes as they are
    /// made. Lock order: `view`, then `world`.
    view: Mutex<FleetState>,
    wake: Condvar,
    logs: Arc<Logs>,
    /// Secret values, in memory only (the same store redacts `logs`).
    secrets: Arc<SecretStore>,
    stop: AtomicBool,
    /// One drift check (or instance start, which may check a cached root
    /// filesystem) at a time.
    drift_busy: Mutex<()>,
    /// One client change of the desired state at a time (apply, rollback,
    /// destroy): each is checked and recorded without the world lock.
    changes: Mutex<()>,
    /// One database write at a time.
    saving: Mutex<()>,
    /// The egress forwarders the `fleet.egress` audit follows.
    egress: Mutex<egress_audit::Followed>,
    /// Counters fed by recorded events and folded from the proxies.
    metrics: crate::observe::Metrics,
}

/// The daemon.
pub struct Daemon {
    sh: Arc<Shared>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Setup {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the audit log refuses appends ({0}); run `kiln log verify`")]
    AuditPoisoned(String),
}

fn setup<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> DaemonError + '_ {
    move |e| DaemonError::Setup {
        what: what.to_string(),
        source: Box::new(e),
    }
}

/// A client change that could not be recorded, so was not made.
#[derive(Debug, thiserror::Error)]
#[error("could not record {action} in the audit log ({source}); nothing was changed")]
struct Unrecorded {
    action: String,
    #[source]
    source: kiln_audit::AuditError,
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
        "{}|{}|{:?}|{:?}|{:?}|{}|{:?}",
        spec.image,
        spec.port,
        spec.env,
        spec.tmpfs_mb,
        // As before limits could be absent, so a failure recorded then still matches.
        spec.limits.unwrap_or_default(),
        crate::secrets::fingerprint(&spec.secrets),
        spec.egress
    )
}

fn instance_fields_differ(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    a.image != b.image
        || a.port != b.port
        || a.env != b.env
        || a.tmpfs_mb != b.tmpfs_mb
        || a.limits != b.limits
        || crate::secrets::deliveries_differ(&a.secrets, &b.secrets)
        || a.egress != b.egress
}

/// Whether `desired` asks for a release the reconciler has yet to start
/// (its image is being verified): neither active nor failed.
fn release_pending(svc: &crate::state::ServiceState, desired: &ServiceSpec) -> bool {
    let serving = svc
        .active_release()
        .is_some_and(|a| !instance_fields_differ(&a.spec, desired));
    !serving && svc.failed.as_deref() != Some(fingerprint(desired).as_str())
}

impl Daemon {
    /// Open the state, adopt or clean up what a previous daemon left, and
    /// get ready to serve. Call [`Daemon::run`] next. Every release is
    /// checked by [`PolicyGate`] (kiln-verify over the local store).
    pub fn new(opts: Options, runtime: Arc<dyn Runtime>) -> Result<Daemon, DaemonError> {
        let gate = PolicyGate::new(&opts.state_dir).map_err(setup("audit log"))?;
        Daemon::with_gate(opts, runtime, Arc::new(gate))
    }

    /// [`Daemon::new`] with another image gate: a seam for tests only.
    #[doc(hidden)]
    pub fn with_gate(
        opts: Options,
        runtime: Arc<dyn Runtime>,
        gate: Arc<dyn ImageGate>,
    ) -> Result<Daemon, DaemonError> {
        kiln_runtime::set_child_subreaper().map_err(setup("PR_SET_CHILD_SUBREAPER"))?;
        // Secret values live in this process: no core dumps; and descriptors up to the hard
        // limit for the proxies, egress forwarders and FIFOs.
        crate::sys::harden_daemon().map_err(setup("process limits"))?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let sh = Shared::open(
            opts,
            gate,
            clock.clone(),
            Timing::default(),
            |drift, logs| {
                Arc::new(runc_host::RuncHost {
                    runtime,
                    drift: drift.clone(),
                    logs: logs.clone(),
                    clock,
                    state_dir: drift.state_dir.clone(),
                    fleet_dir: drift.fleet_dir.clone(),
                    rootfs_dir: drift.rootfs_dir.clone(),
                    bundles_dir: drift.bundles_dir.clone(),
                    tag: drift.tag.clone(),
                    secrets: logs.secrets.clone(),
                    egress: Mutex::default(),
                })
            },
        )?;
        Ok(Daemon { sh })
    }

    /// Serve the API and reconcile until `stop` is set. Instances keep
    /// running when the daemon stops, so a restarted daemon re-adopts them.
    pub fn run(&self, stop: &'static AtomicBool) -> Result<(), DaemonError> {
        let _metrics = match self.sh.opts.metrics {
            Some(addr) => {
                let src: Arc<dyn crate::observe::Source> = self.sh.clone();
                let token = self.sh.opts.metrics_token.clone();
                let ep = crate::observe::start(addr, token, src).map_err(setup("metrics"))?;
                eprintln!(
                    "kiln serve: metrics on http://{}/metrics, dashboard on http://{}/",
                    ep.addr(),
                    ep.addr()
                );
                Some(ep)
            }
            None => None,
        };
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
        // Drift checks (a full re-hash takes a while) have a thread of their own.
        let sh = self.sh.clone();
        let drift = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Relaxed) {
                sh.drift_tick();
                std::thread::sleep(sh.timing.tick);
            }
        });
        while !stop.load(Ordering::Relaxed) {
            self.sh.tick();
            self.sh.egress_audit();
            let mut w = lock(&self.sh.world);
            if std::mem::take(&mut w.again) {
                continue;
            }
            let _ = self
                .sh
                .wake
                .wait_timeout(w, self.sh.timing.tick)
                .map(|(g, _)| drop(g));
        }
        self.sh.stop.store(true, Ordering::Relaxed);
        let _ = api.join();
        let _ = drift.join();
        let st = {
            let mut w = lock(&self.sh.world);
            for live in w.live.values() {
                live.watch.stop.store(true, Ordering::Relaxed);
            }
            for (_, f) in w.proxies.drain() {
                f.proxy.stop();
            }
            w.st.clone()
        };
        let _ = self.sh.db.save(&st);
        let _ = std::fs::remove_file(&sock);
        Ok(())
    }
}

impl Shared {
    /// Open the state directory and adopt what a previous daemon left.
    /// `host` builds the seam to the machine from the drift machinery and
    /// the log rings.
    fn open(
        opts: Options,
        gate: Arc<dyn ImageGate>,
        clock: Arc<dyn Clock>,
        timing: Timing,
        host: impl FnOnce(&Arc<DriftWatch>, &Arc<Logs>) -> Arc<dyn Host>,
    ) -> Result<Arc<Shared>, DaemonError> {
        let fleet_dir = opts.state_dir.join("fleet");
        let rootfs_dir = fleet_dir.join("rootfs");
        let bundles_dir = fleet_dir.join("instances");
        for d in [&fleet_dir, &rootfs_dir, &bundles_dir] {
            std::fs::create_dir_all(d).map_err(setup(&d.display().to_string()))?;
        }
        std::fs::set_permissions(&fleet_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(setup("fleet directory"))?;
        let db =
            Arc::new(Db::open(&fleet_dir.join("fleet.redb")).map_err(setup("state database"))?);
        let st = db.load().map_err(setup("state database"))?;
        let audit = AuditLog::open(&opts.state_dir).map_err(setup("audit log"))?;
        if let Some(why) = audit.log().poisoned() {
            return Err(DaemonError::AuditPoisoned(why.to_string()));
        }
        let logs = Arc::new(Logs::new(clock.clone()));
        let drift = Arc::new(DriftWatch::new(
            db.clone(),
            clock.clone(),
            &opts.state_dir,
            logs.secrets.clone(),
        ));
        let host = host(&drift, &logs);
        let sh = Arc::new(Shared {
            opts,
            fleet_dir,
            host,
            gate,
            clock,
            timing,
            audit,
            db,
            drift,
            view: Mutex::new(st.clone()),
            world: Mutex::new(World {
                st,
                ..World::default()
            }),
            wake: Condvar::new(),
            secrets: logs.secrets.clone(),
            logs,
            stop: AtomicBool::new(false),
            drift_busy: Mutex::new(()),
            changes: Mutex::new(()),
            saving: Mutex::new(()),
            egress: Mutex::default(),
            metrics: crate::observe::Metrics::new(),
        });
        sh.adopt();
        sh.publish();
        Ok(sh)
    }

    /// Show the world's state in `status` (after its events are recorded).
    fn publish(&self) {
        let mut v = lock(&self.view);
        let w = lock(&self.world);
        v.clone_from(&w.st);
    }

    /// Make a client's change of the desired state (already recorded), in
    /// the world and in what `status` shows at once.
    fn change(&self, f: impl Fn(&mut FleetState)) {
        {
            let mut v = lock(&self.view);
            let mut w = lock(&self.world);
            f(&mut v);
            f(&mut w.st);
            w.touch();
        }
        self.wake();
    }

    /// Record the event of a change a client asked for, before making it:
    /// a change whose event cannot be recorded is refused.
    fn record_first(&self, e: Event) -> Result<(), Unrecorded> {
        self.append(&e).map(|_| ()).map_err(|source| Unrecorded {
            action: e.action.clone(),
            source,
        })
    }

    /// Append an event to the audit log, timed and counted for the metrics.
    fn append(&self, e: &Event) -> Result<u64, kiln_audit::AuditError> {
        let t = std::time::Instant::now();
        let r = self.audit.record(e);
        self.metrics.on_record(e, t.elapsed(), r.is_ok());
        r
    }

    fn record(&self, e: Event) {
        if let Err(err) = self.append(&e) {
            eprintln!(
                "kiln serve: could not record {} in the audit log: {err}",
                e.action
            );
        }
    }

    fn event(&self, action: &str, service: &str) -> Event {
        Event::new(action, "kiln serve").resource(Resource::new("service", service))
    }

    /// Have the reconciler run again at once. Never call with the world
    /// lock held.
    fn wake(&self) {
        lock(&self.world).again = true;
        self.wake.notify_all();
    }
}

impl crate::observe::Source for Shared {
    fn status(&self) -> Value {
        Shared::status(self)
    }
    fn audit(&self) -> &AuditLog {
        &self.audit
    }
    fn metrics(&self) -> &crate::observe::Metrics {
        &self.metrics
    }
    fn state_dir(&self) -> &Path {
        &self.opts.state_dir
    }
}

fn next_id(w: &mut World, prefix: &str) -> String {
    w.st.seq += 1;
    w.touch();
    format!("{prefix}{:04}", w.st.seq)
}
