//! Merkle transparency-log primitives for kiln.
//!
//! * [`hash`]: RFC 9162 §2.1.1 leaf/node hashing and the Merkle Tree Hash.
//! * [`proof`]: inclusion and consistency proofs (RFC 9162 §2.1.3 / §2.1.4).
//! * [`note`]: C2SP signed notes with Ed25519 keys (compatible with
//!   `golang.org/x/mod/sumdb/note`).
//! * [`checkpoint`]: C2SP `tlog-checkpoint` bodies.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash, root};
pub use note::{Note, NoteError, Signature, Signer, Verifier, open_note, sign_note};
pub use proof::{
    ProofError, consistency_proof, consistency_proof_with, inclusion_path_with, inclusion_proof,
    verify_consistency, verify_inclusion,
};
pub mod store;
pub use store::{
    Log, LogError, MAX_ENTRY, REFUSE_CHANGES, VerifyError, VerifyReport, load_or_create_key,
};
pub mod tiles;
pub use tiles::{ExportReport, TilesError};
