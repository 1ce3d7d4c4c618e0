//! One module per subcommand.

pub mod advisories;
pub mod approve;
pub mod build;
pub mod cache;
pub mod completions;
pub mod drift;
pub mod evidence;
pub mod export;
pub mod fleet;
pub mod gc;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod key;
pub mod lock;
pub mod log;
pub mod pull;
pub mod push;
pub mod rollout;
pub mod sbom;
pub mod scan;
pub mod sign;
pub mod verify;

use std::path::PathBuf;

use std::cell::{OnceCell, RefCell};

use anyhow::{Context, Result};
use kiln_audit::{AuditError, AuditLog, Event, Recorder, Resource};
use kiln_oci::Store;

/// What every command gets.
pub struct Ctx {
    pub state_dir: PathBuf,
    pub json: bool,
    /// `--reason`: why this change is made (a ticket, a sentence); recorded
    /// in the audit event.
    pub reason: Option<String>,
    /// The subcommand as recorded in audit events, e.g. `kiln sign`.
    pub command: String,
    audit: OnceCell<AuditLog>,
    touched: RefCell<Vec<Resource>>,
    /// Actions this command recorded failure events for.
    failures_recorded: RefCell<Vec<String>>,
}

impl Ctx {
    pub fn new(state_dir: PathBuf, json: bool, reason: Option<String>, command: String) -> Ctx {
        Ctx {
            state_dir,
            json,
            reason,
            command,
            audit: OnceCell::new(),
            touched: RefCell::new(Vec::new()),
            failures_recorded: RefCell::new(Vec::new()),
        }
    }

    /// The state directory's audit log, opened once.
    pub fn audit_log(&self) -> Result<&AuditLog> {
        if let Some(l) = self.audit.get() {
            return Ok(l);
        }
        let l = AuditLog::open(&self.state_dir).context("opening the audit log")?;
        Ok(self.audit.get_or_init(|| l))
    }

    /// A new event for `action` by this command, carrying `--reason`.
    pub fn event(&self, action: &str) -> Event {
        Event::new(action, &self.command).reason(self.reason.as_deref())
    }

    /// Record an event durably; call before reporting success.
    pub fn record(&self, event: Event) -> Result<u64> {
        self.audit_log()?;
        Ok(Recorder::record(self, event)?)
    }

    /// Whether this command already recorded the failure of `action` itself (a failed
    /// verification, a failing scan gate). A library step's failure of another action
    /// (a patch's scan) does not stand for the command's own.
    pub fn failure_recorded(&self, action: &str) -> bool {
        self.failures_recorded.borrow().iter().any(|a| a == action)
    }

    /// Note a resource this command is acting on, so that a failure event
    /// can name it.
    pub fn touch(&self, r: Resource) {
        let mut t = self.touched.borrow_mut();
        if !t.contains(&r) {
            t.push(r);
        }
    }

    /// Record the failure of `action` with the resources touched so far.
    /// Nothing is recorded (and nothing created) when the state directory
    /// does not exist: there is no state a failure could have changed.
    pub fn record_failure(&self, action: &str, error: &str) -> Result<u64> {
        if !self.state_dir.is_dir() {
            anyhow::bail!("no state directory at {}", self.state_dir.display());
        }
        let mut e = self.event(action).failed(error);
        e.resources = self.touched.borrow().clone();
        self.record(e)
    }

    /// The store, which must already exist for read-only commands.
    pub fn store(&self) -> Result<Store> {
        let root = self.state_dir.join("store");
        if !root.join("oci-layout").exists() {
            anyhow::bail!(
                "no image store at {} (build an image first, or pass --state-dir)",
                root.display()
            );
        }
        Ok(Store::open(root)?)
    }
}

pub use kiln_oci::Resolved;

/// The image `reference` names in the store, its manifest and config read and checked.
pub fn resolve(store: &Store, reference: &str) -> Result<Resolved> {
    Ok(kiln_verify::resolve(store, reference)?)
}

/// Library steps record through the command's context: same command name, reason and log.
impl Recorder for Ctx {
    fn event(&self, action: &str) -> Event {
        Ctx::event(self, action)
    }

    fn record(&self, event: Event) -> Result<u64, AuditError> {
        if event.outcome == kiln_audit::Outcome::Failure {
            self.failures_recorded
                .borrow_mut()
                .push(event.action.clone());
        }
        let log = match self.audit.get() {
            Some(l) => l,
            None => {
                let l = AuditLog::open(&self.state_dir)?;
                self.audit.get_or_init(|| l)
            }
        };
        log.record(&event)
    }
}

/// The audit resource for a resolved image: digest, and the reference used.
pub fn image_resource(img: &Resolved) -> Resource {
    Resource::named(
        "image",
        img.descriptor.digest.to_string(),
        img.reference.clone(),
    )
}

/// Human-readable byte size.
pub fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
