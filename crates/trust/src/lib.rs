//! Keys and signed envelopes for kiln, compatible with cosign and in-toto/DSSE.
//!
//! - [`keys`]: ECDSA P-256 (cosign's default) and Ed25519 keys; PKIX public keys,
//!   PKCS#8 and cosign's encrypted (`scrypt` + `nacl/secretbox`) private keys.
//! - [`dsse`]: DSSE envelopes, PAE, and threshold verification over distinct keys.
//! - [`statement`]: in-toto Statement v1.
//! - [`cosign`]: cosign simple-signing signatures and Sigstore bundles.
//! - [`policy`]: `trust.toml` (keys, roles with thresholds, required rules).
//! - [`store`]: signatures and attestations staged into a kiln store in every form kiln writes.

#![forbid(unsafe_code)]

pub mod attest;
pub mod cosign;
pub mod dsse;
mod error;
pub mod keys;
pub mod policy;
mod secretbox;
pub mod statement;
pub mod store;

pub use attest::{AttestError, Attestation};
pub use cosign::{Bundle, CosignError, SimpleSigning};
pub use dsse::{Envelope, Signature, Verified, pae};
pub use error::TrustError;
pub use keys::{KeyAlgorithm, PrivateKey, PublicKey, ScryptParams, write_private_key};
pub use policy::{Claim, Outcome, Policy, PolicyError, Role, Rule, Tally};
pub use statement::{PAYLOAD_TYPE_INTOTO, STATEMENT_TYPE_V1, Statement, Subject};
pub use store::{Attached, Signed, StoreError};
