//! Drift detection core for kiln.
//!
//! * [`scan`] walks a directory tree in parallel without following
//!   symlinks or crossing mount points, hashing every regular file with
//!   SHA-256 (SHA-NI where the CPU has it), and returns a [`Tree`] sorted by
//!   path bytes. Hostile trees (symlink loops, files changing while hashed,
//!   unreadable files, non-UTF-8 names, very deep chains, FIFOs) are
//!   reported per path, never a crash or a hang.
//! * [`compare`] diffs a baseline (a kiln file manifest, or another tree)
//!   with a tree: added, removed and changed paths with the fields that
//!   differ; [`Diff::exit_code`] is AIDE's bitmask.
//! * [`fim_init`] / [`fim_check`] are the standalone FIM mode, with an
//!   incremental fast path through a metadata cache sidecar, and
//!   [`check_rootfs`] checks an instance's root filesystem.
//! * [`InodeRecord`] keeps the inode number and link count of every path
//!   of a tree when it was written, so a path swapped for a hard link to an
//!   outside file, or a file given a name outside the tree, is drift even
//!   when every hash matches; [`sweep`] is the cheap `lstat`-only check.

#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod cache;
mod compare;
mod error;
pub mod escape;
mod fim;
mod inodes;
mod scan;
mod sys;
mod tree;

pub use cache::{Cache, CacheRecord};
pub use compare::{
    Attrs, Change, CompareOptions, Diff, Field, Item, Problem, compare, compare_entries,
    identity_changes,
};
pub use error::DriftError;
pub use fim::{
    CheckOptions, FIM_MANIFEST_SCHEMA, LoadedManifest, MAX_MANIFEST_BYTES, Summary, cache_path,
    check_rootfs, check_rootfs_with, fim_check, fim_check_with, fim_init, read_manifest,
    write_atomic,
};
pub use inodes::{InodeEntry, InodeRecord, record_inodes, sweep};
pub use scan::{ScanOptions, scan, scan_cached};
pub use tree::{Entry, Kind, Meta, Stats, Status, Tree, baseline_from_manifest};

/// Kept for the CLI's convenience: the FIM manifest of a scanned tree
/// (bytes, schema, digest) without writing it.
pub fn manifest_of(tree: &Tree, name: &str) -> Result<(Vec<u8>, String, String), DriftError> {
    fim::manifest_bytes(tree, name).map(|(b, s, d, _, _)| (b, s, d))
}
