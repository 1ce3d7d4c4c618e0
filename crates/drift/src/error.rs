//! Errors of the drift crate.

use std::path::{Path, PathBuf};

/// What went wrong. Problems with single paths of a scanned tree are not
/// errors: they are reported in the tree ([`crate::Status`]) and the diff.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// An I/O error on a path the operation cannot do without (the scan
    /// root, the manifest, an output file).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not a valid kiln file manifest or fim manifest.
    #[error("manifest: {0}")]
    Manifest(String),
    /// The kiln file manifest was rejected by its parser.
    #[error("manifest: {0}")]
    Sbom(#[from] kiln_sbom::SbomError),
    /// The cache sidecar is unusable.
    #[error("cache: {0}")]
    Cache(String),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DriftError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DriftError {
        DriftError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
