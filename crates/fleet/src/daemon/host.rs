//! The seam between the daemon and the machine: what starting, watching,
//! observing and destroying an instance needs from the host. The real
//! implementation (`runc_host.rs`: runc, network namespaces, `/proc`) runs
//! as root; the tests use an in-memory fake where each instance's health
//! and liveness are set by hand.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::deploy::ServiceSpec;
use crate::proxy::Dial;
use crate::state::{Instance, Release};

/// What the health checker of one instance has seen so far.
#[derive(Default)]
pub struct HealthCell {
    pub ok_streak: AtomicU32,
    pub fail_streak: AtomicU32,
    pub ever_ok: AtomicBool,
    /// When the first check passed (ms since the epoch).
    pub first_ok_ms: OnceLock<u64>,
    pub last_error: Mutex<String>,
}

/// A watched instance: its health, and the switch that stops its checker.
#[derive(Clone)]
pub struct Watch {
    pub health: Arc<HealthCell>,
    pub stop: Arc<AtomicBool>,
    /// Fresh sockets inside the instance's network namespace, for the proxy.
    pub sockets: Option<Arc<kiln_runtime::NetnsSockets>>,
    /// The instance's egress forwarder (its declared destinations), if it has any.
    pub egress: Option<Arc<crate::egress::forward::Egress>>,
}

#[cfg(test)]
impl Watch {
    /// A watch nothing updates (until someone does).
    pub fn idle() -> Watch {
        Watch {
            health: Arc::new(HealthCell::default()),
            stop: Arc::new(AtomicBool::new(false)),
            sockets: None,
            egress: None,
        }
    }
}

/// An instance the host started.
#[derive(Debug, Clone)]
pub struct Launched {
    pub pid: u32,
    /// SHA-256 of the `config.json` generated for it (an HMAC when the file holds a secret:
    /// see [`crate::secrets::CONFIG_HMAC_PREFIX`]).
    pub config_sha256: Option<String>,
    /// The unpacked root filesystem it runs on.
    pub rootfs: Option<PathBuf>,
    /// A cached root filesystem found drifted before use (and moved away).
    pub drift: Option<RootfsDrift>,
}

/// Where a drifted root filesystem went.
#[derive(Debug, Clone)]
pub enum Quarantine {
    /// Moved into quarantine (the evidence).
    Moved(PathBuf),
    /// Could not be moved: it stays condemned at its cached path.
    Failed(String),
}

/// A root filesystem that differs from its image.
#[derive(Debug, Clone)]
pub struct RootfsDrift {
    pub rootfs: PathBuf,
    pub digest: String,
    pub diff: Value,
    /// How it was found (`change event`, `kiln drift check`…).
    pub how: String,
    pub quarantine: Quarantine,
}

/// Why an instance could not be started or prepared.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("image store: {0}")]
    Store(#[source] kiln_oci::OciError),
    #[error("{image}: {source}")]
    Image {
        image: String,
        #[source]
        source: kiln_oci::OciError,
    },
    #[error("unpacking {image}: {source}")]
    Unpack {
        image: String,
        #[source]
        source: kiln_runtime::RuntimeError,
    },
    #[error(
        "the root filesystem of {image} drifted and could not be moved away ({why}); refusing to start on it"
    )]
    Drifted {
        image: String,
        why: String,
        /// What was found, for the shell to mark and record.
        drift: Option<Box<RootfsDrift>>,
    },
    #[error("checking the cached root filesystem of {image}: {source}")]
    Check {
        image: String,
        #[source]
        source: super::drift::CheckError,
    },
    #[error("{id}: {source}")]
    Instance {
        id: String,
        #[source]
        source: kiln_runtime::RuntimeError,
    },
    #[error("{}: bad path", path.display())]
    BadPath { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{id}: egress: {source}")]
    Egress {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting {id}: {source}")]
    Start {
        id: String,
        #[source]
        source: kiln_runtime::RuntimeError,
    },
    /// The daemon does not hold these secrets (it restarted since the last apply).
    #[error(
        "waiting for secrets: run kiln apply ({} not held: kiln serve keeps secret values in memory only)",
        names.join(", ")
    )]
    WaitingForSecrets { names: Vec<String> },
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    #[error(transparent)]
    Runtime(#[from] kiln_runtime::RuntimeError),
}

impl HostError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
        move |source| HostError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What the daemon needs from the machine.
pub trait Host: Send + Sync {
    /// Containers the runtime knows: (id, pid of init; 0 if none).
    fn list(&self) -> Vec<(String, u32)>;
    /// Whether process `pid` is running (not a zombie).
    fn alive(&self, pid: u32) -> bool;
    /// How instance `id` with init `pid` ended, if it did (an OOM kill by
    /// its memory limit says so). `child`: started by this daemon (its
    /// status can be reaped), else adopted. Called before [`Host::destroy`].
    fn exited(&self, id: &str, pid: u32, child: bool) -> Option<String>;
    /// Create and start instance `id` of `rel` for `service`, with the values of its
    /// secrets (`secrets`, every one `rel` declares: the caller checked they are held).
    fn launch(
        &self,
        service: &str,
        id: &str,
        rel: &Release,
        secrets: &[crate::secrets::HeldSecret],
    ) -> Result<Launched, HostError>;
    /// Start watching an instance's health and output. `child` as in
    /// [`Host::exited`].
    fn watch(&self, service: &str, inst: &Instance, spec: &ServiceSpec, child: bool) -> Watch;
    /// How the proxy reaches port `port` of the instance with init `pid`.
    fn dial(&self, pid: u32, port: u16, watch: Option<&Watch>) -> Arc<dyn Dial>;
    /// SIGKILL an instance (chaos).
    fn kill(&self, id: &str);
    /// Kill, delete and forget an instance (its bundle too).
    fn destroy(&self, id: &str, pid: u32);
    /// Delete a container the runtime knows, by force.
    fn delete(&self, id: &str);
    /// Prepare the bundle of debug instance `id` of `rel` (the client runs it).
    fn prepare_debug(
        &self,
        id: &str,
        rel: &Release,
        tools: &Path,
        terminal: bool,
    ) -> Result<Value, HostError>;
    /// Kill and delete a debug instance and its bundle.
    fn end_debug(&self, id: &str);
}
