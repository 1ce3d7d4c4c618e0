//! kiln's image scanner.
//!
//! * [`version`]: Debian version parsing and ordering, exactly as
//!   `dpkg --compare-versions` (property-tested against it).
//! * [`inventory`]: installed packages from an image's dpkg status (and
//!   distroless `status.d/`), read from the layers without unpacking, plus the
//!   image config and file manifest.
//! * [`osv`]: OSV advisories (ecosystem `Debian:<N>`), loading, indexing and
//!   matching by source package.
//! * [`feed`]: the synced advisory set (`kiln advisories sync`): an OSV
//!   export fetched, checked ([`osvzip`] unpacks it safely) and stored.
//! * [`vex`]: OpenVEX statements (`kiln scan --vex`): findings that do not
//!   apply, or whose risk is accepted until an expiry, shown as suppressed.
//! * [`baseline`]: configuration findings (`KILN-BASE-001`…).
//! * [`report`]: the [`ScanReport`], its table / JSON / SARIF 2.1.0 forms, and
//!   the [`Gate`] policy.

#![forbid(unsafe_code)]

pub mod baseline;
pub mod cvss;
pub mod feed;
pub mod inventory;
pub mod osv;
pub mod osvzip;
pub mod report;
pub use kiln_debversion as version;
pub mod vex;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use baseline::{BaselineConfig, Finding, baseline_findings};
pub use inventory::{Inventory, Package, inventory_from_status, inventory_from_store};
pub use osv::{AdvisoryDb, LoadOptions};
pub use report::{Gate, ScanReport, Verdict, Vuln, VulnState, scan};
pub use version::{DebVersion, VersionError};

/// Severity of a vulnerability or finding, ordered `unknown < low < medium <
/// high < critical`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL_DESC: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parse a severity name, case-insensitively. Besides the five names this
    /// accepts `moderate` (GHSA) = medium, `important` = high, and Debian's
    /// urgencies `unimportant`/`negligible` = low; anything else is `None`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unknown" => Some(Severity::Unknown),
            "low" | "unimportant" | "negligible" | "none" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" | "important" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// CVSS base score → severity (CVSS v3.x qualitative scale; 0.0 "none"
    /// is reported as low).
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score >= 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name other than unknown, low, medium, high or critical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a severity (unknown, low, medium, high, critical)")]
pub struct UnknownSeverity(pub String);

impl std::str::FromStr for Severity {
    type Err = UnknownSeverity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::parse(s).ok_or_else(|| UnknownSeverity(s.into()))
    }
}

/// Everything that can make a scan fail. Messages name the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A malformed advisory file: `file: message`.
    #[error("{file}: {message}")]
    Advisory { file: String, message: String },
    /// A malformed dpkg status file: `file:line: message`.
    #[error("{file}:{line}: {message}")]
    Status {
        file: String,
        line: usize,
        message: String,
    },
    #[error("image {image}: {message}")]
    Image { image: String, message: String },
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
}

impl ScanError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ScanError {
        ScanError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ScanError> = std::result::Result<T, E>;
