//! The daemon's image gate: only verified images run. Every release candidate
//! is checked with [`kiln_verify::evaluate`] — the same engine and the same
//! `image.verify` audit event as `kiln verify --policy` — against the local
//! image store, with the service's `trust.toml`.
//!
//! [`crate::daemon::ImageGate`] stays a trait only so that tests can drive the
//! daemon with a gate that blocks or refuses; [`crate::daemon::Daemon::new`]
//! always uses [`PolicyGate`].

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_audit::{AuditError, AuditLog, Event, Recorder};
use kiln_oci::Store;

use crate::daemon::{GateError, ImageGate};
use crate::deploy::ImageRef;

/// The trust policy over the store under `<state dir>/store`.
pub struct PolicyGate {
    state_dir: PathBuf,
    audit: AuditLog,
}

impl PolicyGate {
    /// A gate over the store and audit log of `state_dir`.
    pub fn new(state_dir: &Path) -> Result<PolicyGate, AuditError> {
        Ok(PolicyGate {
            state_dir: state_dir.to_path_buf(),
            audit: AuditLog::open(state_dir)?,
        })
    }
}

/// Records the gate's `image.verify` events as `kiln serve`.
impl Recorder for PolicyGate {
    fn event(&self, action: &str) -> Event {
        Event::new(action, "kiln serve")
    }

    fn record(&self, event: Event) -> Result<u64, AuditError> {
        self.audit.record(&event)
    }
}

fn failed(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> GateError {
    GateError::Failed {
        context: context.to_owned(),
        source: Box::new(e),
    }
}

impl ImageGate for PolicyGate {
    fn check(&self, image: &ImageRef, policy: &Path) -> Result<String, GateError> {
        let store =
            Store::open(self.state_dir.join("store")).map_err(|e| failed("image store", e))?;
        let reference = image.to_string();
        let img = kiln_verify::resolve(&store, &reference).map_err(|e| failed(&reference, e))?;
        let rules = kiln_trust::Policy::load(policy)
            .map_err(|e| failed(&policy.display().to_string(), e))?;
        let report = kiln_verify::evaluate(&store, &img, &rules, SystemTime::now())
            .map_err(|e| failed(&reference, e))?;
        // The verdict stands even if its event cannot be written: a refusal
        // is still a refusal, and a pass is recorded again by `release.*`.
        if let Err(e) = self.record(report.audit_event(self, kiln_verify::policy_resource(policy)))
        {
            eprintln!("kiln serve: could not record image.verify in the audit log: {e}");
        }
        let verdicts = report.verdicts();
        let failed: Vec<String> = verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| format!("{}: {}", v.rule, v.reason))
            .collect();
        if failed.is_empty() {
            Ok(format!("{} rule(s) hold", verdicts.len()))
        } else {
            Err(GateError::Refused(failed.join("; ")))
        }
    }
}
