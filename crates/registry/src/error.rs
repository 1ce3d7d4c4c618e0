use std::path::PathBuf;

use kiln_oci::OciError;

/// Errors from the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry reference {value:?}: {reason}")]
    InvalidReference { value: String, reason: String },
    #[error(
        "refusing plain HTTP to {host}: insecure mode is only allowed for loopback registries (localhost, 127.0.0.0/8, ::1)"
    )]
    InsecureNotLoopback { host: String },
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("{method} {url}: {source}")]
    Http {
        method: &'static str,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{method} {url}: timed out: {reason}")]
    Timeout {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: registry answered HTTP {status}{}", fmt_body(.body))]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: authentication failed: {reason}")]
    Unauthorized { url: String, reason: String },
    #[error("{what} from {url}: expected digest {expected}, but the content hashes to {actual}")]
    DigestMismatch {
        what: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{what} from {url}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        url: String,
        expected: u64,
        actual: String,
    },
    #[error("{what}: {reason}")]
    Protocol { what: String, reason: String },
    /// The registry has no manifest under this reference (HTTP 404).
    #[error("{0}: manifest unknown (HTTP 404)")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Oci(#[from] OciError),
}

fn fmt_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl RegistryError {
    pub(crate) fn protocol(what: impl Into<String>, reason: impl Into<String>) -> Self {
        RegistryError::Protocol {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
