//! Patching is rebuilding: `kiln patch` pins the fixed Debian packages an advisory asks
//! for (`kiln.lock`), rebuilds the image with signed provenance, scans it and attests
//! the result, signs it, and rolls it out through the fleet's normal release path —
//! recording how long each advisory took to reach the fleet.
//!
//! This crate holds that workflow and the audited steps it chains, which the CLI's
//! `kiln build --sign-key`, `kiln scan --attest` and `kiln sign` call as well, so each
//! exists once (`kiln approve`, the one other signing command, is here too):
//!
//! - [`build`]: build a spec; with a key, sign SLSA provenance and attach it; record
//!   `image.build`; then tag the image and publish its referrers.
//! - [`scan`]: scan an image against OSV advisories under a gate; with a key, attest
//!   the result (`https://kiln.dev/scan/v2`); record `scan`; then attach the attestation.
//! - [`sign`]: re-hash every blob of an image, sign it (cosign `.sig` and Sigstore
//!   bundle); record `image.sign`; then tag the signature.
//! - [`approve`]: the same for a signed approval with a reason (`kiln approve`).
//! - [`patch`]: the whole workflow, calling the builder (`kiln-image`), the scanner
//!   (`kiln-scan`) and the signer (`kiln-trust`) directly; [`repo`] is its part for
//!   repository packages (match the lock, re-lock, check the fix); [`history`] reads the
//!   advisory → fixed image → fleet times back from the audit log.
//!
//! It is a crate of its own (not part of the builder, scanner or signer) because it is
//! the one place that combines them with the audit log and the fleet: each of those
//! libraries stays independent of the others. Every step stages its blobs, records its
//! audit event through the caller's [`kiln_audit::Recorder`], and only then makes its
//! change visible, so no change exists without its event.

#![forbid(unsafe_code)]

pub mod approve;
pub mod build;
pub mod history;
pub mod patch;
pub mod repo;
mod rollout;
pub mod scan;
pub mod sign;

use std::path::{Path, PathBuf};

use kiln_trust::PrivateKey;

pub use approve::{Approved, approve};
pub use build::{BuildRequest, Built, build};
pub use history::{PatchRecord, history};
pub use patch::{Note, PatchRequest, Patched, Pin, patch};
pub use scan::{GateSettings, Scanned, scan, scan_with};
pub use sign::{SignedImage, sign};

/// Why a step or the patch failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Audit(#[from] kiln_audit::AuditError),
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Spec(#[from] kiln_image::SpecError),
    #[error(transparent)]
    Store(#[from] kiln_trust::StoreError),
    #[error(transparent)]
    Resolve(#[from] kiln_verify::ResolveError),
    #[error(transparent)]
    Integrity(#[from] kiln_verify::IntegrityError),
    #[error(transparent)]
    Builder(#[from] kiln_image::provenance::ProvenanceError),

    // ---- keys
    #[error("reading the private key {}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the private key {}", path.display())]
    LoadKey {
        path: PathBuf,
        #[source]
        source: kiln_trust::TrustError,
    },

    // ---- build
    #[error("building {}", spec.display())]
    Build {
        spec: PathBuf,
        #[source]
        source: kiln_image::BuildError,
    },
    #[error("attaching the provenance")]
    Provenance(#[source] kiln_trust::StoreError),
    #[error("publishing {image}")]
    Publish {
        image: String,
        #[source]
        source: kiln_image::BuildError,
    },

    // ---- scan
    #[error("--fail-on {value:?}: expected none, low, medium, high or critical")]
    FailOn { value: String },
    #[error("reading the packages of {image}")]
    Inventory {
        image: String,
        #[source]
        source: kiln_scan::ScanError,
    },
    /// The scan saw nothing (no advisories or no packages) and the gate does not allow it.
    #[error("refusing to scan {image}: {}", reasons.join("; "))]
    Refused { image: String, reasons: Vec<String> },
    /// The scan ran, its event is recorded, and the gate failed.
    #[error("{image} fails the scan gate: {}", reasons.join("; "))]
    GateFailed { image: String, reasons: Vec<String> },

    // ---- patch
    #[error(
        "no Debian advisories loaded from {source_name} ({files} advisory file(s) read, {skipped} other file(s) \
         skipped, {withdrawn} withdrawn, {non_debian} without a Debian entry): nothing to patch against"
    )]
    NoAdvisories {
        source_name: String,
        files: usize,
        skipped: usize,
        withdrawn: usize,
        non_debian: usize,
    },
    #[error("advisories: {0}")]
    Advisories(#[source] kiln_scan::ScanError),
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a temporary file in {}", dir.display())]
    TempFile {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: grew while being copied; refused", path.display())]
    Grew { path: PathBuf },
    #[error("{}: shrank while being copied ({copied} of {size} bytes); refused", path.display())]
    Shrank {
        path: PathBuf,
        copied: u64,
        size: u64,
    },
    #[error("{}", path.display())]
    Deb {
        path: PathBuf,
        #[source]
        source: kiln_deb::DebError,
    },
    #[error("{}: control", path.display())]
    Control {
        path: PathBuf,
        #[source]
        source: kiln_scan::ScanError,
    },
    #[error("unparseable fixed version")]
    FixedVersion,
    #[error("deb file name")]
    DebFileName { path: PathBuf },
    #[error(
        "{} ([[debs]] of the spec) need a fix: pass --debs DIR with the fixed .deb files",
        packages.join(", ")
    )]
    NeedDebs { packages: Vec<String> },
    #[error("the packages of {}", spec.display())]
    Lock {
        spec: PathBuf,
        #[source]
        source: Box<kiln_image::packages::PackagesError>,
    },
    /// The repositories publish no fixed version (yet): nothing was changed.
    #[error(
        "no fix published: {}; kiln.lock is unchanged",
        unfixed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NotFixed { unfixed: Vec<repo::Unfixed> },

    // ---- roll-out
    #[error("{}: no service runs {name}@sha256:…; nothing to roll out", path.display())]
    NothingToRollOut { path: PathBuf, name: String },
    #[error(transparent)]
    Deploy(#[from] kiln_fleet::DeployError),
    #[error("resolving {}", path.display())]
    Resolving {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Api(#[from] kiln_fleet::api::ApiError),
    #[error(transparent)]
    Wait(#[from] kiln_fleet::api::WaitError),

    /// A step of the patch failed (its own failure is in the audit log).
    #[error("kiln {step} failed")]
    Step {
        step: &'static str,
        #[source]
        source: Box<Error>,
    },
}

/// The private key at `path`: cosign's encrypted format (with `password`) or PKCS#8.
pub fn load_key(path: &Path, password: Option<&str>) -> Result<PrivateKey, Error> {
    let text = kiln_oci::untrusted::read_small_string(path).map_err(|source| Error::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKey::from_pem(&text, password.map(str::as_bytes)).map_err(|source| Error::LoadKey {
        path: path.to_path_buf(),
        source,
    })
}

/// A signing key, loaded or to be loaded when a step needs it (so that, as before, a
/// wrong password is reported only once the image checks that come first passed).
#[derive(Clone, Copy)]
pub enum Key<'a> {
    Loaded(&'a PrivateKey),
    /// A private key file and its password ([`load_key`]).
    File {
        path: &'a Path,
        password: Option<&'a str>,
    },
}

/// A key in hand: borrowed or just loaded.
pub(crate) enum HeldKey<'a> {
    Borrowed(&'a PrivateKey),
    Owned(Box<PrivateKey>),
}

impl std::ops::Deref for HeldKey<'_> {
    type Target = PrivateKey;
    fn deref(&self) -> &PrivateKey {
        match self {
            HeldKey::Borrowed(k) => k,
            HeldKey::Owned(k) => k,
        }
    }
}

impl<'a> Key<'a> {
    pub(crate) fn get(self) -> Result<HeldKey<'a>, Error> {
        match self {
            Key::Loaded(k) => Ok(HeldKey::Borrowed(k)),
            Key::File { path, password } => Ok(HeldKey::Owned(Box::new(load_key(path, password)?))),
        }
    }
}

/// An error and its causes, `: `-separated, each said once (a cause whose text the
/// previous message already contains is skipped): the reason of a failure event.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        let msg = c.to_string();
        if !msg.is_empty() && !out.last().is_some_and(|p| p.contains(&msg)) {
            out.push(msg);
        }
        cur = c.source();
    }
    out.join(": ")
}
