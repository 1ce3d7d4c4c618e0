use std::path::PathBuf;

/// Errors from the OCI types and the store.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: &'static str },
    #[error("blob {digest} is corrupt: its content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest} has size {actual}, its descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is {size} bytes, more than the {limit} read into memory")]
    TooLarge {
        digest: String,
        size: u64,
        limit: u64,
    },
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is not an OCI image layout: {reason}")]
    NotALayout { path: PathBuf, reason: String },
    #[error("invalid image reference {value:?}: {reason}")]
    InvalidRef { value: String, reason: String },
    #[error("no image {0} in the store (see `kiln images`)")]
    UnknownImage(String),
    #[error("image reference {value:?} is ambiguous: {candidates}")]
    AmbiguousRef { value: String, candidates: String },
    #[error("unsupported media type {media_type} for {what}")]
    UnsupportedMediaType { what: String, media_type: String },
}

impl OciError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OciError::Io {
            path: path.into(),
            source,
        }
    }
}
