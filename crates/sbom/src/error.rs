/// Errors from reading SBOMs and file manifests, and from inventory checks.
#[derive(thiserror::Error, Debug)]
pub enum SbomError {
    /// The bytes are not JSON, or not JSON of the expected shape.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// A file manifest problem outside any one entry (schema, subject).
    #[error("file manifest: {0}")]
    Manifest(String),

    /// A file manifest entry is malformed.
    #[error("file manifest entry {index}{}: {reason}", describe_path(.path))]
    ManifestEntry {
        /// Zero-based index into `entries`.
        index: usize,
        /// The entry's path, when it could be read.
        path: Option<String>,
        /// What is wrong with it.
        reason: String,
    },

    /// The document is neither SPDX JSON, CycloneDX JSON nor a kiln file manifest.
    #[error("unrecognised document: {0}")]
    UnrecognizedFormat(String),

    /// The document was recognised but a field it needs is missing or malformed.
    #[error("invalid {format} document: {reason}")]
    InvalidDocument {
        /// `SPDX` or `CycloneDX`.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// An inventory breaks an invariant (see `Inventory::validate`).
    #[error("invalid inventory: {0}")]
    Inventory(String),

    /// An inventory file record breaks an invariant.
    #[error("invalid inventory file {index}{}: {reason}", describe_path(.path))]
    InventoryFile {
        /// Zero-based index into `Inventory::files`.
        index: usize,
        /// The record's path.
        path: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
}

fn describe_path(path: &Option<String>) -> String {
    match path {
        Some(p) => format!(" ({p:?})"),
        None => String::new(),
    }
}
