//! Keys and signed envelopes for kiln, compatible with cosign and in-toto/DSSE.
//!
//! - [`keys`]: ECDSA P-256 (cosign's default) and Ed25519 keys; PKIX public keys,
//!   PKCS#8 and cosign's encrypted (`scrypt` + `nacl/secretbox`) private keys.
//! - [`dsse`]: DSSE envelopes, PAE, and threshold verification over distinct keys.
//! - [`statement`]: in-toto Statement v1.

pub mod dsse;
mod error;
pub mod keys;
mod secretbox;
pub mod statement;

pub use dsse::{Envelope, Signature, Verified, pae};
pub use error::TrustError;
pub use keys::{KeyAlgorithm, PrivateKey, PublicKey, ScryptParams, write_private_key};
pub use statement::{PAYLOAD_TYPE_INTOTO, STATEMENT_TYPE_V1, Statement, Subject};
