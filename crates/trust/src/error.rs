use std::path::PathBuf;

/// Errors from key handling, envelope parsing and verification.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error(
        "not a recognised key: expected PEM (a \"-----BEGIN <type>-----\" line), found {found}"
    )]
    NotPem { found: String },
    #[error("unexpected PEM label {found:?}; expected {expected}")]
    PemLabel {
        found: String,
        expected: &'static str,
    },
    #[error("unsupported or malformed key: {0}")]
    Key(String),
    #[error("encrypted private key requires a password")]
    PasswordRequired,
    #[error("wrong password for encrypted private key (secretbox authentication failed)")]
    WrongPassword,
    #[error("malformed encrypted private key: {0}")]
    EncryptedKey(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    #[error("invalid DSSE envelope: {0}")]
    Envelope(String),
    #[error("invalid base64 in {field}: {source}")]
    Base64 {
        field: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("invalid threshold {0}: must be at least 1")]
    InvalidThreshold(usize),
    #[error(
        "signature threshold not met: {valid} valid signature(s) from distinct trusted keys, {required} required; unknown key ids: [{}]; trusted key ids with invalid signatures: [{}]",
        unknown.join(", "),
        invalid.join(", ")
    )]
    Threshold {
        valid: usize,
        required: usize,
        unknown: Vec<String>,
        invalid: Vec<String>,
    },
    #[error("invalid in-toto statement: {0}")]
    Statement(String),
    #[error("{}: file already exists (refusing to overwrite)", path.display())]
    Exists { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("operating system random number generator failed: {0}")]
    Rng(String),
}
