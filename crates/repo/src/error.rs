//! The typed errors of this crate. Every error that concerns a download names
//! its URL; every error about a file names its path.

use std::io;
use std::path::PathBuf;

use kiln_oci::Digest;

pub use kiln_solve::deb822::Deb822Error;

/// Everything that can go wrong reading a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("repository configuration: {0}")]
    Config(String),

    #[error("keyring {path}: {reason}")]
    Keyring { path: PathBuf, reason: String },

    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },

    #[error("GET {url}: {reason}")]
    Timeout { url: String, reason: String },

    #[error("GET {url}: the server answered {status}")]
    Status { url: String, status: u16 },

    #[error("GET {url}: the body is larger than the {limit}-byte limit")]
    TooLarge { url: String, limit: u64 },

    #[error("GET {url}: truncated download: {got} of {expected} bytes arrived")]
    Truncated {
        url: String,
        expected: u64,
        got: u64,
    },

    #[error("{what}: size mismatch: expected {expected} bytes, got {got}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: u64,
    },

    #[error("{what}: hash mismatch: expected {expected}, got {got}")]
    HashMismatch {
        what: String,
        expected: Digest,
        got: Digest,
    },

    #[error("{url}: bad OpenPGP signature: {reason}")]
    BadSignature { url: String, reason: String },

    #[error(
        "{url}: signed by a key that is not in the keyring (issuer {issuers}); add its key to the repository's keyring"
    )]
    UnknownKey { url: String, issuers: String },

    #[error("{url}: the Release expired at {valid_until} (Valid-Until), now is {now}")]
    Expired {
        url: String,
        valid_until: String,
        now: String,
    },

    #[error("{url}: the Release is not valid yet: its Date is {date}, now is {now}")]
    NotYetValid {
        url: String,
        date: String,
        now: String,
    },

    #[error("{what}: {source}")]
    Parse {
        what: String,
        #[source]
        source: Deb822Error,
    },

    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("{release}: lists no {path} (neither .xz nor uncompressed)")]
    MissingIndex { release: String, path: String },

    #[error("package {package}: refusing Filename {filename:?}: {reason}")]
    UnsafeFilename {
        package: String,
        filename: String,
        reason: &'static str,
    },

    #[error("{what}: cannot decompress: {source}")]
    Decompress {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{what}: {source}")]
    Compact {
        what: String,
        #[source]
        source: crate::index::FormatError,
    },

    #[error("offline: {what} is not in the cache")]
    NotCached { what: String },
}

impl RepoError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> RepoError {
        RepoError::Io {
            path: path.into(),
            source,
        }
    }
}
