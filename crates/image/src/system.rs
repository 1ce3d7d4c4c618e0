//! What a Debian system needs beyond unpacked packages when maintainer
//! scripts are never run (the distroless approach): the merged-/usr links,
//! accounts, the CA bundle and `update-alternatives` links, made the way the
//! packages' scripts would make them.
//!
//! The spec's `[[accounts]]` and `[[ca_certificates]]` arrive here as
//! [`System`]; the packages layer applies it.

use std::path::PathBuf;

/// One `[[accounts]]` entry: a system account added after base-passwd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Created (owned `uid:gid`, 0755) when given; `/nonexistent` otherwise.
    pub home: Option<String>,
    /// Default `/usr/sbin/nologin`.
    pub shell: Option<String>,
}

/// One `[[ca_certificates]]` entry: a PEM file appended to the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraCa {
    /// Absolute host path, inside the spec directory.
    pub src: PathBuf,
    /// As written in the spec.
    pub src_text: String,
}

/// The system settings of a spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct System {
    /// Create `/bin`, `/sbin`, `/lib`, `/lib64` as links into `/usr`
    /// before unpacking (set when packages come from repositories).
    pub merged_usr: bool,
    pub accounts: Vec<Account>,
    pub ca_certificates: Vec<ExtraCa>,
}
