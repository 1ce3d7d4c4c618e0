//! kiln's image builder: from a `kiln.toml` spec to a bit-identical OCI
//! image in the content store, with SBOMs and a file manifest attached as
//! OCI 1.1 referrers.
//!
//! The pipeline, one module per step:
//! [`spec`] parse → [`base`] verify the base → [`debs`] packages layer →
//! [`source`] files layer → [`layer`] tar + compress (cached) →
//! [`build`] config, manifest, referrers, commit → [`export`] `--out`;
//! [`provenance`] the SLSA statement of a build.

#![forbid(unsafe_code)]

pub mod archive;
pub mod base;
pub mod build;
pub mod compress;
pub mod debs;
pub mod entrypoint;
pub mod export;
pub mod hostfs;
pub mod inputs;
pub mod layer;
pub mod lock;
pub mod packages;
pub mod provenance;
pub mod source;
pub mod spec;
pub mod spec_repos;
pub mod spool;
pub mod system;
pub mod tarw;
pub use kiln_oci::time;
pub mod tree;

use std::path::{Path, PathBuf};

pub use build::{
    BuildInput, BuildOptions, BuildReport, LayerReport, Progress, Publish, build, build_staged,
};
pub use compress::Compression;
pub use spec::{Spec, SpecError};

/// Everything that can make a build fail. Each message names the input at
/// fault (spec location, file path, blob digest).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Packages(Box<packages::PackagesError>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("{spec_loc}: {path}: {message}")]
    Deb {
        spec_loc: String,
        path: PathBuf,
        message: String,
    },
    #[error("base {base}: {message}")]
    Base { base: String, message: String },
    #[error("image entrypoint: {0}")]
    Entrypoint(String),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a non-negative integer number of seconds")]
    BadEpoch(String),
    #[error(transparent)]
    Oci(#[from] kiln_oci::OciError),
    #[error("{0}")]
    Output(String),
    /// The caller's step before an output is put in place failed (e.g.
    /// recording its audit event); nothing was put in place.
    #[error("{source}")]
    Aborted {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    System(#[from] system::SystemError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<packages::PackagesError> for BuildError {
    fn from(e: packages::PackagesError) -> BuildError {
        BuildError::Packages(Box::new(e))
    }
}

impl BuildError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
