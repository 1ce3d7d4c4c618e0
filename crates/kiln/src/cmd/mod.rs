//! One module per subcommand.

pub mod approve;
pub mod build;
pub mod completions;
pub mod drift;
pub mod evidence;
pub mod export;
pub mod fleet;
pub mod gc;
pub mod images;
pub mod import;
pub mod inspect;
pub mod key;
pub mod log;
pub mod provenance;
pub mod pull;
pub mod push;
pub mod sbom;
pub mod scan;
pub mod sign;
pub mod verify;

use std::path::PathBuf;

use std::cell::{OnceCell, RefCell};

use anyhow::{Context, Result};
use kiln_audit::{AuditLog, Event, Resource};
use kiln_oci::{Descriptor, ImageConfig, ImageManifest, ImageRef, Store};

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
    failure_recorded: std::cell::Cell<bool>,
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
            failure_recorded: std::cell::Cell::new(false),
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
        if event.outcome == kiln_audit::Outcome::Failure {
            self.failure_recorded.set(true);
        }
        Ok(self.audit_log()?.record(&event)?)
    }

    /// Whether this command already recorded its own failure event.
    pub fn failure_recorded(&self) -> bool {
        self.failure_recorded.get()
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

/// Changes to the store's `index.json` a command has staged (its blobs are
/// committed, unreferenced, which changes nothing a user sees). They are
/// applied only after the command's audit event is recorded, so a change
/// never exists without its event.
#[derive(Default)]
pub struct Pending {
    tags: Vec<(String, String, Descriptor)>,
    untagged: Vec<Descriptor>,
}

impl Pending {
    pub fn tag(&mut self, name: &str, tag: &str, d: &Descriptor) {
        self.tags.push((name.to_owned(), tag.to_owned(), d.clone()));
    }

    pub fn untagged(&mut self, d: &Descriptor) {
        self.untagged.push(d.clone());
    }

    pub fn extend(&mut self, other: Pending) {
        self.tags.extend(other.tags);
        self.untagged.extend(other.untagged);
    }

    /// Apply the staged index changes (call after recording the event).
    pub fn apply(self, store: &Store) -> Result<()> {
        if !self.untagged.is_empty() {
            store.add_untagged(&self.untagged)?;
        }
        for (name, tag, d) in &self.tags {
            store.tag(name, tag, d)?;
        }
        Ok(())
    }
}

/// A resolved image: its descriptor, manifest and config, all verified.
pub struct Resolved {
    pub reference: String,
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

pub fn resolve(store: &Store, reference: &str) -> Result<Resolved> {
    let r = ImageRef::parse(reference)?;
    let descriptor = store.resolve(&r)?;
    let mbytes = store.read_descriptor(&descriptor)?;
    let manifest = ImageManifest::from_bytes(&mbytes, &descriptor.digest.to_string())?;
    let cbytes = store
        .read_descriptor(&manifest.config)
        .with_context(|| format!("config of {reference}"))?;
    let config = ImageConfig::from_bytes(&cbytes, "image config")?;
    Ok(Resolved {
        reference: reference.to_string(),
        descriptor,
        manifest,
        config,
    })
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
