//! Compliance evidence bundles from kiln's audit log.
//!
//! [`generate`] maps each requirement of a [`Framework`] (PCI DSS 4.0,
//! SOC 2, NIST SP 800-190) to the audit events, artifacts and proofs that
//! satisfy it, and writes a self-contained directory an assessor can check
//! offline with [`verify`]:
//!
//! ```text
//! MANIFEST                  C2SP signed note (log key): `<sha256>  <path>` per file
//! evidence.json             requirement → status, cited events, artifacts, proofs, missing
//! index.html                the same, readable, self-contained
//! log/checkpoint            latest signed checkpoint
//! log/verifier.key          the log's verifier key
//! log/events/<i>.json       each cited event's exact logged bytes
//! log/proofs/<i>.json       its RFC 9162 inclusion proof against log/checkpoint
//! log/checkpoints/<n>       the oldest in-period checkpoint
//! log/consistency.json      RFC 9162 consistency proof from it to log/checkpoint
//! artifacts/sha256/<hex>    SBOMs, provenance, approvals, signatures, configs…
//! ```

#![forbid(unsafe_code)]

mod artifacts;
pub mod framework;
mod generate;
mod html;
/// HTML escaping for element text and quoted attributes (also used by the fleet dashboard).
pub use html::escape as html_escape;
pub mod manifest;
pub mod model;
mod verify;

use std::path::PathBuf;

pub use artifacts::ArtifactKind;
pub use framework::{FRAMEWORKS, Framework, Requirement, Status, framework};
pub use generate::{Generated, Options, assess, generate, generate_then, parse_date};
pub use verify::{
    KeySource, MAX_BUNDLE_FILE, MAX_BUNDLE_TOTAL, VerifyFailure, VerifyReport, verify,
};

/// Why a bundle could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown framework {0:?} (known: pci-dss-4.0, soc2, nist-800-190)")]
    UnknownFramework(String),
    #[error("invalid date {0:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)")]
    BadDate(String),
    #[error("the period is empty: --since {since} is after --until {until}")]
    EmptyPeriod { since: String, until: String },
    #[error("the audit log has no events under a signed checkpoint yet: there is nothing to cite")]
    NoCheckpoint,
    #[error(
        "{0} exists and is not an evidence bundle; refusing to replace it (choose an empty or new directory)"
    )]
    OutNotEmpty(PathBuf),
    #[error(transparent)]
    Audit(#[from] kiln_audit::AuditError),
    #[error("audit log: {0}")]
    Log(#[from] kiln_tlog::LogError),
    #[error("audit log checkpoint: {0}")]
    Checkpoint(#[from] kiln_tlog::CheckpointError),
    #[error("signing the MANIFEST: {0}")]
    Note(#[from] kiln_tlog::NoteError),
    #[error("artifacts of image {image}: {source}")]
    Store {
        image: String,
        #[source]
        source: kiln_oci::OciError,
    },
    #[error("{0}")]
    Internal(String),
    /// The caller's step before the rename failed (e.g. recording the
    /// bundle's audit event); nothing was put in place.
    #[error("not written: {source}")]
    Aborted {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
