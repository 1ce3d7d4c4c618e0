//! A durable, append-only Merkle log on local disk.
//!
//! Files in the log directory:
//!
//! - `entries`: the records, each `u32 BE length || entry || 4-byte check`,
//!   where the check is the first four bytes of the entry's RFC 6962 leaf
//!   hash. This file is the commit point: an append is acknowledged only
//!   after it has been fdatasync'd.
//! - `index`: `u64 BE` offset of every record (derived, rebuilt on recovery).
//! - `tree`: every complete tree node's hash, in post-order (the order in
//!   which nodes complete as leaves arrive), so the hash of node
//!   `(level, i)` lives at a computable position and any subtree hash, and so
//!   any proof, costs O(log n) reads (derived, rebuilt on recovery).
//! - `checkpoints`: every signed checkpoint ever issued, each framed as
//!   `u32 BE length || signed note || u32 BE length` so the latest is read
//!   from the end and all of them can be walked from the start.
//! - `lock`: `flock`ed by whichever process is appending.
//! - `refuse-changes`: present only after a full verification failed (see
//!   [`Log::refuse_changes`]); while it exists the log refuses appends.
//!
//! Appends use group commit: concurrent callers in one process queue their
//! entries; one of them becomes the leader, writes the whole queue, syncs
//! once, signs one checkpoint for the batch and wakes the others. Across
//! processes the `lock` file serialises batches.
//!
//! Opening a log recovers from a crash at any point: a torn or garbage tail
//! in `entries` is trimmed, `index` and `tree` are truncated or extended to
//! match, and a checkpoint is signed for a tree that lacks one. A log whose
//! contents contradict its latest checkpoint is never appended to or
//! re-signed.
//!
//! Opening also checks, in O(records since the previous checkpoint + log n)
//! reads, that the newest checkpoint's signature verifies, that the root
//! recomputed from `tree` matches it, and that every record of the newest
//! batch (the events after the previous checkpoint) hashes to its leaf in
//! `tree`. Older records are bound to the checkpoints only through `tree`:
//! rewriting one of them *and* `tree` consistently is invisible to this
//! check, and only [`Log::verify`] (which recomputes everything) or a
//! checkpoint saved outside the log catches it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use kiln_oci::sync::{lock, wait};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::{EMPTY_ROOT, Hash, leaf_hash, node_hash};
use crate::note::{Signer, Verifier};
use crate::proof::{consistency_proof_with, inclusion_path_with, split_point64};

/// Largest entry the log accepts: tlog-tiles entry bundles carry a 16-bit
/// length.
pub const MAX_ENTRY: usize = 65_535;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entry of {0} bytes is larger than the {MAX_ENTRY}-byte limit")]
    EntryTooLarge(usize),
    #[error("event {index} does not exist (the log has {size} events)")]
    NoSuchEntry { index: u64, size: u64 },
    #[error("tree size {size} is larger than the log ({available} events)")]
    SizeOutOfRange { size: u64, available: u64 },
    #[error("{0}")]
    Corrupt(String),
    #[error("refusing to append or sign: {0} — run `kiln log verify`")]
    Inconsistent(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("this log handle has no signing key")]
    ReadOnly,
    #[error("append failed in another writer of this batch: {source}")]
    Batch {
        /// The error the batch's writer got, shared by every caller in the batch.
        #[source]
        source: Arc<LogError>,
    },
    /// The batch writer's own error, while the other callers of its batch
    /// still hold it (see [`LogError::Batch`]); displays as that error.
    #[error(transparent)]
    Shared(Arc<LogError>),
}

/// A failed verification, naming the first bad event where one can be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    /// First event index known to be bad, if the failure pins one down.
    pub index: Option<u64>,
    pub message: String,
}

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub size: u64,
    pub root: Hash,
    pub checkpoints: u64,
    /// The saved checkpoint's size, when one was checked.
    pub saved_size: Option<u64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Number of post-order nodes in a tree of `m` leaves.
fn nodes(m: u64) -> u64 {
    2 * m - u64::from(m.count_ones())
}

/// Post-order position of node `(level, i)`.
fn node_pos(level: u32, i: u64) -> u64 {
    let m = (i + 1) << level;
    nodes(m - 1) + u64::from(level)
}

/// The largest leaf count whose post-order tree fits in `count` nodes.
fn leaves_in(count: u64) -> u64 {
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if nodes(mid) <= count {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// Frame one record.
fn record(entry: &[u8], out: &mut Vec<u8>) -> Hash {
    let h = leaf_hash(entry);
    out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    out.extend_from_slice(entry);
    out.extend_from_slice(&h[..4]);
    h
}

struct Files {
    dir: PathBuf,
    entries: File,
    index: File,
    tree: File,
    checkpoints: File,
    lock: File,
    size: u64,
    end: u64,
    tree_len: u64,
    cp_len: u64,
    /// Perfect subtrees of the current tree, left to right: (level, hash).
    frontier: Vec<(u32, Hash)>,
    latest: Option<(Checkpoint, String)>,
    /// Why this log must not be appended to, if it contradicts a checkpoint.
    poisoned: Option<String>,
    /// The checkpoints file ends in a well-framed checkpoint that does not
    /// verify (forged, or signed by another key).
    cp_problem: Option<String>,
    /// Size of the checkpoint before the latest (0 when there is none): the
    /// newest batch is `prev_size..latest.size`.
    prev_size: u64,
    /// The contents of the `refuse-changes` marker, when it exists.
    refusal: Option<String>,
    /// Reads of `entries` made while checking records against `tree` (a
    /// seam for the test that open costs no more than the newest batch).
    entry_reads: u64,
    /// Lowest `entries` offset read while checking records against `tree`.
    lowest_entry_read: u64,
}

/// The marker a failed full verification leaves in the log directory.
pub const REFUSE_CHANGES: &str = "refuse-changes";

impl Files {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read_at(&self, file: &File, name: &str, buf: &mut [u8], off: u64) -> Result<(), LogError> {
        file.read_exact_at(buf, off).map_err(io(&self.path(name)))
    }

    /// Read the refuse-changes marker, if present.
    fn load_refusal(&mut self) -> Result<(), LogError> {
        let path = self.path(REFUSE_CHANGES);
        self.refusal = match std::fs::symlink_metadata(&path) {
            Ok(_) => {
                // The marker's existence refuses changes, whatever it is;
                // its reason is read only from a regular file, without
                // blocking (a FIFO in its place must not hang every
                // command), and bounded: the reason is a line or two.
                let mut text = String::new();
                if let Ok((f, _)) =
                    kiln_oci::untrusted::open_regular(&path, kiln_oci::untrusted::Follow::No)
                {
                    let _ = f.take(4096).read_to_string(&mut text);
                }
                let text = text.trim();
                Some(if text.is_empty() {
                    format!("{} exists", path.display())
                } else {
                    format!(
                        "a full verification failed ({text}) and left {}; only a passing verification clears it",
                        path.display()
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(())
    }

    /// Why appends are refused: contents that contradict a checkpoint, or
    /// the marker of a failed verification.
    fn refused(&self) -> Option<String> {
        match (&self.poisoned, &self.refusal) {
            (Some(p), Some(r)) => Some(format!("{p}; {r}")),
            (Some(p), None) => Some(p.clone()),
            (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        }
    }

    /// Whether event `i` is a sound record at `off` (within `limit`) whose
    /// leaf hash is the one `tree` holds; returns the offset after it.
    fn record_matches_tree(
        &mut self,
        i: u64,
        off: u64,
        limit: u64,
    ) -> Result<Option<u64>, LogError> {
        self.entry_reads += 1;
        self.lowest_entry_read = self.lowest_entry_read.min(off);
        match self.read_record(off, limit)? {
            Some((entry, h)) if h == self.node(0, i)? => Ok(Some(off + 8 + entry.len() as u64)),
            _ => Ok(None),
        }
    }

    fn node(&self, level: u32, i: u64) -> Result<Hash, LogError> {
        let mut h = [0u8; 32];
        self.read_at(&self.tree, "tree", &mut h, node_pos(level, i) * 32)?;
        Ok(h)
    }

    /// Merkle Tree Hash of leaves `a..b` (`b <= size`).
    fn mth(&self, a: u64, b: u64) -> Result<Hash, LogError> {
        let n = b - a;
        if n == 0 {
            return Ok(EMPTY_ROOT);
        }
        if n.is_power_of_two() && a.is_multiple_of(n) {
            return self.node(n.trailing_zeros(), a / n);
        }
        if n == 1 {
            return self.node(0, a);
        }
        let k = split_point64(n);
        Ok(node_hash(&self.mth(a, a + k)?, &self.mth(a + k, b)?))
    }

    fn load_frontier(&mut self) -> Result<(), LogError> {
        let mut frontier = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if self.size & (1 << level) != 0 {
                frontier.push((level, self.node(level, start >> level)?));
                start += 1 << level;
            }
        }
        self.frontier = frontier;
        Ok(())
    }

    fn root(&self) -> Hash {
        let mut it = self.frontier.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (_, h) in it {
            acc = node_hash(h, &acc);
        }
        acc
    }

    /// Push one leaf into the frontier, appending every node it completes
    /// to `tree_buf` in post-order.
    fn push_leaf(&mut self, h: Hash, tree_buf: &mut Vec<u8>) {
        tree_buf.extend_from_slice(&h);
        let mut cur = (0u32, h);
        while let Some(&(level, left)) = self.frontier.last() {
            if level != cur.0 {
                break;
            }
            self.frontier.pop();
            cur = (level + 1, node_hash(&left, &cur.1));
            tree_buf.extend_from_slice(&cur.1);
        }
        self.frontier.push(cur);
        self.size += 1;
    }

    fn entry_offset(&self, i: u64) -> Result<u64, LogError> {
        let mut b = [0u8; 8];
        self.read_at(&self.index, "index", &mut b, i * 8)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Read and check the record at `off`, bounded by `limit`.
    fn read_record(&self, off: u64, limit: u64) -> Result<Option<(Vec<u8>, Hash)>, LogError> {
        if off.checked_add(4).is_none_or(|end| end > limit) {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.read_at(&self.entries, "entries", &mut len, off)?;
        let len = u32::from_be_bytes(len) as u64;
        // `off` comes from the `index` file: a crafted one must read as
        // damage, not overflow.
        if len as usize > MAX_ENTRY || off.checked_add(8 + len).is_none_or(|end| end > limit) {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize + 4];
        self.read_at(&self.entries, "entries", &mut buf, off + 4)?;
        let check: [u8; 4] = [
            buf[len as usize],
            buf[len as usize + 1],
            buf[len as usize + 2],
            buf[len as usize + 3],
        ];
        buf.truncate(len as usize);
        let h = leaf_hash(&buf);
        if h[..4] != check {
            return Ok(None);
        }
        Ok(Some((buf, h)))
    }

    /// Bring the in-memory view up to date with the files, repairing a
    /// crash: trim torn tails, complete derived files. Caller holds `lock`.
    fn recover(&mut self, signer: Option<&Signer>, verifier: &Verifier) -> Result<(), LogError> {
        let flen = |f: &File, name: &str| -> Result<u64, LogError> {
            Ok(f.metadata().map_err(io(&self.path(name)))?.len())
        };
        let entries_len = flen(&self.entries, "entries")?;
        let index_n = flen(&self.index, "index")? / 8;
        let tree_count = flen(&self.tree, "tree")? / 32;
        let cp_len = flen(&self.checkpoints, "checkpoints")?;
        // Another process may have left the marker since the last batch.
        self.load_refusal()?;
        if entries_len == self.end
            && index_n == self.size
            && tree_count == nodes(self.size)
            && cp_len == self.cp_len
            && self.frontier.len() == self.size.count_ones() as usize
        {
            return Ok(());
        }
        // Checkpoints are signed only after their events are durable, so a
        // crash never tears anything a checkpoint covers: damage below the
        // latest checkpoint is tampering and is left in place as evidence.
        self.load_latest_checkpoint(verifier)?;
        let covered = self.latest.as_ref().map_or(0, |(cp, _)| cp.size);
        let derived = index_n.min(leaves_in(tree_count));
        self.size = derived;
        // The newest batch (`prev_size..covered`) is bound to the newest
        // checkpoint only through `tree`: every one of its records must be
        // where the index says, contiguous, and hash to its leaf there.
        // Anything else is tampering, not a crash (a checkpoint is signed
        // only after its events are durable): leave it all as evidence.
        let mut n = self.prev_size.min(covered).min(derived);
        let mut next: Option<u64> = (n == 0).then_some(0);
        let mut tampered = self.cp_problem.clone();
        while tampered.is_none() && n < covered.min(derived) {
            let off = self.entry_offset(n)?;
            match self.record_matches_tree(n, off, entries_len)? {
                Some(after) if next.is_none_or(|x| x == off) => {
                    next = Some(after);
                    n += 1;
                }
                _ => {
                    tampered = Some(format!(
                        "event {n}, signed by the latest checkpoint, no longer matches its leaf hash in the tree file (modified, reordered, inserted or removed)"
                    ));
                    break;
                }
            }
        }
        if let Some(why) = tampered {
            self.size = derived;
            self.end = entries_len;
            self.load_frontier()?;
            self.tree_len = nodes(self.size) * 32;
            self.check_latest()?;
            self.poisoned = Some(match self.poisoned.take() {
                Some(p) if p == why => p,
                Some(p) => format!("{why}; {p}"),
                None => why,
            });
            return Ok(());
        }
        // Past the checkpoint, trust the derived files only as far as they
        // agree with each other and with every record they point at; a
        // crash may have torn any of them.
        if n == covered {
            while n < derived {
                let off = self.entry_offset(n)?;
                match self.record_matches_tree(n, off, entries_len)? {
                    Some(after) if next.is_none_or(|x| x == off) => {
                        next = Some(after);
                        n += 1;
                    }
                    _ => break,
                }
            }
        }
        self.size = n;
        self.end = if n == 0 {
            0
        } else {
            let off = self.entry_offset(n - 1)?;
            let mut len = [0u8; 4];
            self.read_at(&self.entries, "entries", &mut len, off)?;
            off + 4 + u64::from(u32::from_be_bytes(len)) + 4
        };
        self.load_frontier()?;
        // Replay complete records past the derived files; stop at the first
        // torn one.
        let mut idx_buf = Vec::new();
        let mut tree_buf = Vec::new();
        let mut changed = index_n != n || tree_count != nodes(n);
        let tree_base = nodes(n);
        let index_base = n;
        while let Some((entry, h)) = self.read_record(self.end, entries_len)? {
            idx_buf.extend_from_slice(&self.end.to_be_bytes());
            self.push_leaf(h, &mut tree_buf);
            self.end += 4 + entry.len() as u64 + 4;
            changed = true;
        }
        let torn_tail = entries_len != self.end && self.size >= covered;
        if changed || torn_tail {
            if torn_tail {
                self.entries
                    .set_len(self.end)
                    .map_err(io(&self.path("entries")))?;
            }
            self.index
                .set_len(index_base * 8)
                .map_err(io(&self.path("index")))?;
            self.index
                .write_all_at(&idx_buf, index_base * 8)
                .map_err(io(&self.path("index")))?;
            self.tree
                .set_len(tree_base * 32)
                .map_err(io(&self.path("tree")))?;
            self.tree
                .write_all_at(&tree_buf, tree_base * 32)
                .map_err(io(&self.path("tree")))?;
            for (f, name) in [
                (&self.entries, "entries"),
                (&self.index, "index"),
                (&self.tree, "tree"),
            ] {
                f.sync_data().map_err(io(&self.path(name)))?;
            }
        }
        self.tree_len = nodes(self.size) * 32;
        self.check_latest()?;
        if let Some(signer) = signer {
            let behind = self
                .latest
                .as_ref()
                .is_none_or(|(cp, _)| cp.size < self.size);
            if behind && self.refused().is_none() {
                self.sign_checkpoint(signer)?;
            }
        }
        Ok(())
    }

    /// Read the newest valid checkpoint; trim a torn one at the end.
    fn load_latest_checkpoint(&mut self, verifier: &Verifier) -> Result<(), LogError> {
        let len = self
            .checkpoints
            .metadata()
            .map_err(io(&self.path("checkpoints")))?
            .len();
        if len == self.cp_len && self.latest.is_some() {
            return Ok(());
        }
        if let Some((cp, text, start)) = self.checkpoint_ending_at(len, verifier)? {
            self.cp_problem = None;
            self.prev_size = 0;
            // The newest batch starts where the previous checkpoint ends.
            if start > 0 {
                match self.checkpoint_ending_at(start, verifier)? {
                    // Strictly smaller: every batch adds events, and a
                    // repeated frame would otherwise make the newest batch
                    // look empty and skip its check.
                    Some((prev, _, _)) if prev.size < cp.size => self.prev_size = prev.size,
                    Some((prev, _, _)) => {
                        self.cp_problem = Some(format!(
                            "the checkpoint before the latest signs {} events, not fewer than the latest's {}",
                            prev.size, cp.size
                        ))
                    }
                    None => {
                        self.cp_problem =
                            Some("the checkpoint before the latest does not verify".into())
                    }
                }
            }
            self.latest = Some((cp, text));
            self.cp_len = len;
            return Ok(());
        }
        // Torn tail (or empty file): walk from the start to the last good
        // record and cut there.
        let mut off = 0u64;
        let mut latest = None;
        let mut before = None;
        let mut r = BufReader::new(&self.checkpoints);
        while let Some(text) = read_framed(&mut r, len - off) {
            off += 8 + text.len() as u64;
            before = latest.replace(text);
        }
        if off != len {
            self.checkpoints
                .set_len(off)
                .map_err(io(&self.path("checkpoints")))?;
            self.checkpoints
                .sync_data()
                .map_err(io(&self.path("checkpoints")))?;
        }
        self.cp_len = off;
        self.cp_problem = None;
        self.prev_size = 0;
        if let Some(text) = before {
            match Checkpoint::open(&text, std::slice::from_ref(verifier)) {
                Ok((cp, _)) => self.prev_size = cp.size,
                Err(e) => {
                    self.cp_problem = Some(format!(
                        "the checkpoint before the latest does not verify: {e}"
                    ))
                }
            }
        }
        self.latest = match latest {
            Some(text) => match Checkpoint::open(&text, std::slice::from_ref(verifier)) {
                Ok((cp, _)) if cp.size <= self.prev_size && self.prev_size > 0 => {
                    self.cp_problem = Some(format!(
                        "the checkpoint before the latest signs {} events, not fewer than the latest's {}",
                        self.prev_size, cp.size
                    ));
                    None
                }
                Ok((cp, _)) => Some((cp, String::from_utf8_lossy(&text).into_owned())),
                Err(e) => {
                    self.cp_problem = Some(format!("its latest checkpoint does not verify: {e}"));
                    None
                }
            },
            None => None,
        };
        Ok(())
    }

    fn checkpoint_ending_at(
        &self,
        end: u64,
        verifier: &Verifier,
    ) -> Result<Option<(Checkpoint, String, u64)>, LogError> {
        if end < 8 {
            return Ok(None);
        }
        let mut b = [0u8; 4];
        self.read_at(&self.checkpoints, "checkpoints", &mut b, end - 4)?;
        let n = u64::from(u32::from_be_bytes(b));
        if n + 8 > end {
            return Ok(None);
        }
        let mut buf = vec![0u8; n as usize + 4];
        self.read_at(&self.checkpoints, "checkpoints", &mut buf, end - 4 - n - 4)?;
        if buf[..4] != b {
            return Ok(None);
        }
        let text = buf.split_off(4);
        match Checkpoint::open(&text, std::slice::from_ref(verifier)) {
            Ok((cp, _)) => Ok(Some((
                cp,
                String::from_utf8_lossy(&text).into_owned(),
                end - n - 8,
            ))),
            Err(_) => Ok(None),
        }
    }

    /// The latest checkpoint must describe a prefix of this log.
    fn check_latest(&mut self) -> Result<(), LogError> {
        self.poisoned = self.cp_problem.clone();
        let Some((cp, _)) = &self.latest else {
            return Ok(());
        };
        if cp.size > self.size {
            self.poisoned = Some(format!(
                "it signs {} events but the log holds {}",
                cp.size, self.size
            ));
        } else if self.mth(0, cp.size)? != cp.root {
            self.poisoned = Some(format!(
                "the first {} events no longer hash to its root",
                cp.size
            ));
        }
        Ok(())
    }

    fn sign_checkpoint(&mut self, signer: &Signer) -> Result<(), LogError> {
        let cp = Checkpoint::new(signer.name(), self.size, self.root());
        let text = cp.sign(signer)?;
        let mut buf = Vec::with_capacity(text.len() + 8);
        buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
        buf.extend_from_slice(text.as_bytes());
        buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
        self.checkpoints
            .write_all_at(&buf, self.cp_len)
            .map_err(io(&self.path("checkpoints")))?;
        self.cp_len += buf.len() as u64;
        self.prev_size = self.latest.as_ref().map_or(0, |(c, _)| c.size);
        self.latest = Some((cp, text));
        Ok(())
    }

    /// Write one batch; returns the index of its first entry.
    fn commit(&mut self, batch: &[Vec<u8>], signer: &Signer) -> Result<u64, LogError> {
        if let Some(why) = self.refused() {
            return Err(LogError::Inconsistent(why));
        }
        // No events, no checkpoint: two checkpoints of one size would read
        // as a repeated frame, which open refuses.
        if batch.is_empty() {
            return Ok(self.size);
        }
        let first = self.size;
        let mut rec = Vec::new();
        let mut idx = Vec::with_capacity(batch.len() * 8);
        let mut tree_buf = Vec::new();
        let mut off = self.end;
        for e in batch {
            idx.extend_from_slice(&off.to_be_bytes());
            let start = rec.len();
            let h = record(e, &mut rec);
            off += (rec.len() - start) as u64;
            self.push_leaf(h, &mut tree_buf);
        }
        let res = (|| {
            self.entries
                .write_all_at(&rec, self.end)
                .map_err(io(&self.path("entries")))?;
            self.index
                .write_all_at(&idx, first * 8)
                .map_err(io(&self.path("index")))?;
            self.tree
                .write_all_at(&tree_buf, self.tree_len)
                .map_err(io(&self.path("tree")))?;
            for (f, name) in [
                (&self.entries, "entries"),
                (&self.index, "index"),
                (&self.tree, "tree"),
            ] {
                f.sync_data().map_err(io(&self.path(name)))?;
            }
            Ok(())
        })();
        if let Err(e) = res {
            // Forget the batch in memory; recovery trims whatever reached disk
            // the next time the lock is taken.
            self.size = first;
            self.end = u64::MAX;
            return Err(e);
        }
        self.end = off;
        self.tree_len += tree_buf.len() as u64;
        self.sign_checkpoint(signer)?;
        Ok(first)
    }
}

/// Read one `u32 len || text || u32 len` record; `None` at a torn or
/// malformed record.
fn read_framed(r: &mut impl Read, remaining: u64) -> Option<Vec<u8>> {
    if remaining < 8 {
        return None;
    }
    let mut b = [0u8; 4];
    r.read_exact(&mut b).ok()?;
    let n = u64::from(u32::from_be_bytes(b));
    if n + 8 > remaining {
        return None;
    }
    let mut text = vec![0u8; n as usize];
    r.read_exact(&mut text).ok()?;
    let mut t = [0u8; 4];
    r.read_exact(&mut t).ok()?;
    (t == b).then_some(text)
}

struct Queue {
    pending: Vec<Vec<u8>>,
    batch: u64,
    leader: bool,
    done: HashMap<u64, (Result<u64, Arc<LogError>>, usize)>,
    waiting: HashMap<u64, usize>,
}

/// An open log.
pub struct Log {
    dir: PathBuf,
    signer: Option<Signer>,
    verifier: Verifier,
    files: Mutex<Files>,
    queue: Mutex<Queue>,
    cv: Condvar,
}

struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(f: &'a File, path: &Path) -> Result<Self, LogError> {
        // `File::lock` is `flock(LOCK_EX)` on Linux, as other kiln processes expect.
        f.lock().map_err(io(path))?;
        Ok(Flock(f))
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Log {
    /// Open (creating if needed) the log in `dir`. With a signer the handle
    /// can append and recovery may sign a missing checkpoint; without one it
    /// only reads and verifies (against `verifier`).
    pub fn open(dir: &Path, signer: Option<Signer>, verifier: Verifier) -> Result<Log, LogError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let open = |name: &str| -> Result<File, LogError> {
            let p = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&p)
                .map_err(io(&p))
        };
        let mut files = Files {
            dir: dir.to_path_buf(),
            entries: open("entries")?,
            index: open("index")?,
            tree: open("tree")?,
            checkpoints: open("checkpoints")?,
            lock: open("lock")?,
            size: 0,
            end: u64::MAX,
            tree_len: 0,
            cp_len: u64::MAX,
            frontier: Vec::new(),
            latest: None,
            poisoned: None,
            cp_problem: None,
            prev_size: 0,
            refusal: None,
            entry_reads: 0,
            lowest_entry_read: u64::MAX,
        };
        {
            let lock_file = files.lock.try_clone().map_err(io(&dir.join("lock")))?;
            let _g = Flock::exclusive(&lock_file, &dir.join("lock"))?;
            files.recover(signer.as_ref(), &verifier)?;
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            signer,
            verifier,
            files: Mutex::new(files),
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                batch: 0,
                leader: false,
                done: HashMap::new(),
                waiting: HashMap::new(),
            }),
            cv: Condvar::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Append one entry durably; returns its index.
    pub fn append(&self, entry: &[u8]) -> Result<u64, LogError> {
        self.append_batch(&[entry])
    }

    /// Append entries durably and contiguously; returns the first index.
    /// Concurrent callers share one write, one sync and one checkpoint.
    pub fn append_batch(&self, entries: &[&[u8]]) -> Result<u64, LogError> {
        let signer = self.signer.as_ref().ok_or(LogError::ReadOnly)?;
        if let Some(e) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(LogError::EntryTooLarge(e.len()));
        }
        let mut q = lock(&self.queue);
        let my_batch = q.batch;
        let offset = q.pending.len() as u64;
        q.pending.extend(entries.iter().map(|e| e.to_vec()));
        *q.waiting.entry(my_batch).or_insert(0) += 1;
        loop {
            if let Some((res, left)) = q.done.get_mut(&my_batch) {
                let out = match res {
                    Ok(first) => Ok(*first + offset),
                    Err(e) => Err(LogError::Batch {
                        source: Arc::clone(e),
                    }),
                };
                *left -= 1;
                if *left == 0 {
                    q.done.remove(&my_batch);
                }
                return out;
            }
            if !q.leader && q.batch == my_batch {
                q.leader = true;
                let batch = std::mem::take(&mut q.pending);
                let waiters = q.waiting.remove(&my_batch).unwrap_or(1);
                q.batch += 1;
                drop(q);
                let res = self.commit(&batch, signer).map_err(Arc::new);
                q = lock(&self.queue);
                q.leader = false;
                if waiters > 1 {
                    q.done.insert(my_batch, (res.clone(), waiters - 1));
                }
                self.cv.notify_all();
                // The writer's own error: unwrapped unless other callers still hold it.
                return res
                    .map(|first| first + offset)
                    .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(LogError::Shared));
            }
            q = wait(&self.cv, q);
        }
    }

    fn commit(&self, batch: &[Vec<u8>], signer: &Signer) -> Result<u64, LogError> {
        let mut f = lock(&self.files);
        let lock_file = f.lock.try_clone().map_err(io(&self.dir.join("lock")))?;
        let _g = Flock::exclusive(&lock_file, &self.dir.join("lock"))?;
        f.recover(Some(signer), &self.verifier)?;
        f.commit(batch, signer)
    }

    /// Number of events.
    pub fn size(&self) -> u64 {
        lock(&self.files).size
    }

    /// Root hash of the whole log.
    pub fn root(&self) -> Hash {
        lock(&self.files).root()
    }

    /// Root hash of the first `size` events.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        let f = lock(&self.files);
        if size > f.size {
            return Err(LogError::SizeOutOfRange {
                size,
                available: f.size,
            });
        }
        f.mth(0, size)
    }

    /// The latest signed checkpoint (signed-note text), if any.
    pub fn checkpoint(&self) -> Option<(Checkpoint, String)> {
        lock(&self.files).latest.clone()
    }

    /// Why the log refuses appends: it contradicts its latest checkpoint,
    /// or a failed verification left the refuse-changes marker.
    pub fn poisoned(&self) -> Option<String> {
        lock(&self.files).refused()
    }

    /// Why the log contradicts its own checkpoints, found on open or on
    /// the last append (the refuse-changes marker aside).
    pub fn contradiction(&self) -> Option<String> {
        lock(&self.files).poisoned.clone()
    }

    /// Leave the persistent refuse-changes marker (`refuse-changes` in the
    /// log directory, holding `reason`): every handle, in every process,
    /// refuses appends while it exists. Call when a full verification fails.
    pub fn refuse_changes(&self, reason: &str) -> Result<(), LogError> {
        let mut f = lock(&self.files);
        let path = self.dir.join(REFUSE_CHANGES);
        let tmp = self
            .dir
            .join(format!(".{REFUSE_CHANGES}.tmp-{}", std::process::id()));
        let mut text: String = reason.chars().filter(|c| *c != '\0').take(2000).collect();
        text.push('\n');
        let res = (|| {
            let mut t = File::create(&tmp)?;
            t.write_all(text.as_bytes())?;
            t.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res.map_err(io(&path))?;
        f.load_refusal()
    }

    /// Remove the refuse-changes marker (after a full verification passed);
    /// returns whether there was one.
    pub fn clear_refusal(&self) -> Result<bool, LogError> {
        let mut f = lock(&self.files);
        let path = self.dir.join(REFUSE_CHANGES);
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&path)(e)),
        };
        if existed {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        f.refusal = None;
        Ok(existed)
    }

    /// Entry `index` and its leaf hash, checked against its record check.
    pub fn entry(&self, index: u64) -> Result<(Vec<u8>, Hash), LogError> {
        let f = lock(&self.files);
        if index >= f.size {
            return Err(LogError::NoSuchEntry {
                index,
                size: f.size,
            });
        }
        let off = f.entry_offset(index)?;
        f.read_record(off, f.end)?.ok_or_else(|| {
            LogError::Corrupt(format!("event {index}: record at offset {off} is damaged"))
        })
    }

    /// Stream entries `start..` in order to `visit(index, bytes)`.
    pub fn for_each_entry(
        &self,
        start: u64,
        mut visit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), LogError> {
        let (size, off, end, file) = {
            let f = lock(&self.files);
            if start >= f.size {
                return Ok(());
            }
            let file = f
                .entries
                .try_clone()
                .map_err(io(&self.dir.join("entries")))?;
            (f.size, f.entry_offset(start)?, f.end, file)
        };
        let mut r = BufReader::with_capacity(1 << 20, OffsetReader { file, pos: off });
        let mut buf = Vec::new();
        let mut pos = off;
        for i in start..size {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)
                .map_err(io(&self.dir.join("entries")))?;
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_ENTRY || pos + 8 + len as u64 > end {
                return Err(LogError::Corrupt(format!(
                    "event {i}: bad record length at offset {pos}"
                )));
            }
            buf.resize(len + 4, 0);
            r.read_exact(&mut buf)
                .map_err(io(&self.dir.join("entries")))?;
            pos += 8 + len as u64;
            if !visit(i, &buf[..len]) {
                break;
            }
        }
        Ok(())
    }

    /// RFC 9162 inclusion proof of `index` in the tree of `size` events.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        let f = lock(&self.files);
        if size > f.size {
            return Err(LogError::SizeOutOfRange {
                size,
                available: f.size,
            });
        }
        if index >= size {
            return Err(LogError::NoSuchEntry { index, size });
        }
        inclusion_path_with(index, size, |a, b| f.mth(a, b))
    }

    /// RFC 9162 consistency proof from `old` to `new` events.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        let f = lock(&self.files);
        if new > f.size {
            return Err(LogError::SizeOutOfRange {
                size: new,
                available: f.size,
            });
        }
        if old > new {
            return Err(LogError::SizeOutOfRange {
                size: old,
                available: new,
            });
        }
        consistency_proof_with(old, new, |a, b| f.mth(a, b))
    }

    /// Every checkpoint ever issued, oldest first, as signed-note text.
    pub fn checkpoints(&self) -> Result<Vec<Vec<u8>>, LogError> {
        let f = lock(&self.files);
        let mut r = BufReader::new(OffsetReader {
            file: f
                .checkpoints
                .try_clone()
                .map_err(io(&f.path("checkpoints")))?,
            pos: 0,
        });
        let mut out = Vec::new();
        let mut off = 0u64;
        while off < f.cp_len {
            let text = read_framed(&mut r, f.cp_len - off).ok_or_else(|| {
                LogError::Corrupt(format!("checkpoints: damaged record at offset {off}"))
            })?;
            off += 8 + text.len() as u64;
            out.push(text);
        }
        Ok(out)
    }

    /// Node hash `(level, i)` of a complete subtree, for tile export.
    pub fn node(&self, level: u32, i: u64) -> Result<Hash, LogError> {
        let f = lock(&self.files);
        if (i + 1) << level > f.size {
            return Err(LogError::SizeOutOfRange {
                size: (i + 1) << level,
                available: f.size,
            });
        }
        f.node(level, i)
    }

    /// Recompute everything from the entries and check it against the
    /// derived files, every checkpoint and, optionally, a checkpoint saved
    /// earlier (signed-note text).
    pub fn verify(&self, saved: Option<&[u8]>) -> Result<VerifyReport, VerifyError> {
        let bad = |index: Option<u64>, message: String| VerifyError { index, message };
        let e2v = |e: LogError| bad(None, e.to_string());
        let (size, entries, index_file, tree_file) = {
            let f = lock(&self.files);
            let c = |file: &File, n: &str| file.try_clone().map_err(io(&f.path(n)));
            (
                f.size,
                c(&f.entries, "entries").map_err(e2v)?,
                c(&f.index, "index").map_err(e2v)?,
                c(&f.tree, "tree").map_err(e2v)?,
            )
        };
        // Verify what is on disk, not what recovery made of it (the
        // recovered size only sizes the buffers).
        let end = entries
            .metadata()
            .map_err(|e| bad(None, format!("entries: {e}")))?
            .len();
        // 1. Every record, in order: framing, check bytes, index offset,
        //    stored leaf hash. Rebuild the whole tree in post-order.
        let mut r = BufReader::with_capacity(
            1 << 20,
            OffsetReader {
                file: entries,
                pos: 0,
            },
        );
        let mut ir = BufReader::with_capacity(
            1 << 16,
            OffsetReader {
                file: index_file,
                pos: 0,
            },
        );
        let mut tr = BufReader::with_capacity(
            1 << 20,
            OffsetReader {
                file: tree_file,
                pos: 0,
            },
        );
        let mut tree: Vec<Hash> = Vec::with_capacity(nodes(size.max(1)) as usize);
        let mut stack: Vec<(u32, usize)> = Vec::new();
        let mut buf = Vec::new();
        let mut off = 0u64;
        let mut i = 0u64;
        while off < end {
            let mut len = [0u8; 4];
            if r.read_exact(&mut len).is_err() {
                return Err(bad(
                    Some(i),
                    format!("event {i}: missing (entries file ends at offset {off})"),
                ));
            }
            let len = u32::from_be_bytes(len) as usize;
            if len > MAX_ENTRY || off + 8 + len as u64 > end {
                return Err(bad(
                    Some(i),
                    format!("event {i}: record at offset {off} has an impossible length {len}"),
                ));
            }
            buf.resize(len + 4, 0);
            if r.read_exact(&mut buf).is_err() {
                return Err(bad(
                    Some(i),
                    format!("event {i}: record at offset {off} is truncated"),
                ));
            }
            let h = leaf_hash(&buf[..len]);
            if h[..4] != buf[len..] {
                return Err(bad(
                    Some(i),
                    format!("event {i}: modified (record at offset {off} fails its check bytes)"),
                ));
            }
            let mut o = [0u8; 8];
            if ir.read_exact(&mut o).is_err() || u64::from_be_bytes(o) != off {
                return Err(bad(
                    Some(i),
                    format!(
                        "event {i}: index says offset {}, record is at {off} (event inserted or removed)",
                        u64::from_be_bytes(o)
                    ),
                ));
            }
            // The stored tree, read in the same post-order as it is rebuilt.
            let mut push = |tree: &mut Vec<Hash>, h: Hash, what: &str| -> Result<(), VerifyError> {
                let mut s = [0u8; 32];
                if tr.read_exact(&mut s).is_err() || s != h {
                    return Err(bad(
                        Some(i),
                        format!(
                            "event {i}: {what} hash in the tree file differs from the recomputed one (event modified, inserted, removed or reordered)"
                        ),
                    ));
                }
                tree.push(h);
                Ok(())
            };
            push(&mut tree, h, "leaf")?;
            let mut cur = (0u32, tree.len() - 1);
            while let Some(&(level, left)) = stack.last() {
                if level != cur.0 {
                    break;
                }
                stack.pop();
                let p = node_hash(&tree[left], &tree[cur.1]);
                push(&mut tree, p, "node")?;
                cur = (level + 1, tree.len() - 1);
            }
            stack.push(cur);
            off += 8 + len as u64;
            i += 1;
        }
        let size = i;
        let mth = |a: u64, b: u64| -> Hash { mth_mem(&tree, a, b) };
        let root = mth(0, size);
        // 2. Every checkpoint: signature, origin, monotonic and consistent.
        let cps = self.checkpoints().map_err(e2v)?;
        let mut good = 0u64;
        for (k, text) in cps.iter().enumerate() {
            let (cp, _) = Checkpoint::open(text, std::slice::from_ref(&self.verifier))
                .map_err(|e| bad(None, format!("checkpoint #{k}: forged or damaged ({e})")))?;
            if cp.size < good {
                return Err(bad(
                    Some(cp.size),
                    format!(
                        "checkpoint #{k}: size {} is smaller than an earlier checkpoint's {good}",
                        cp.size
                    ),
                ));
            }
            if cp.size > size {
                return Err(bad(
                    Some(size),
                    format!(
                        "checkpoint #{k} signs {} events but the log holds {size}: event {size} onwards removed",
                        cp.size
                    ),
                ));
            }
            if mth(0, cp.size) != cp.root {
                return Err(bad(
                    Some(good),
                    first_bad_message(
                        good,
                        cp.size,
                        &format!("checkpoint #{k} (size {})", cp.size),
                    ),
                ));
            }
            good = cp.size;
        }
        // 3. A checkpoint saved outside the log.
        let mut saved_size = None;
        if let Some(text) = saved {
            let (cp, _) =
                Checkpoint::open(text, std::slice::from_ref(&self.verifier)).map_err(|e| {
                    bad(
                        None,
                        format!("saved checkpoint: not signed by this log's key ({e})"),
                    )
                })?;
            if cp.size > size {
                return Err(bad(
                    Some(size),
                    format!(
                        "saved checkpoint has {} events but the log holds {size}: the log shrank, event {size} onwards removed",
                        cp.size
                    ),
                ));
            }
            if mth(0, cp.size) != cp.root {
                return Err(bad(
                    None,
                    format!(
                        "history rewritten behind the saved checkpoint (size {}): the log's first {} events no longer hash to its root",
                        cp.size, cp.size
                    ),
                ));
            }
            let proof = consistency_proof_with(cp.size, size, |a, b| Ok::<_, ()>(mth(a, b)))
                .unwrap_or_default();
            crate::proof::verify_consistency(cp.size, size, &cp.root, &root, &proof).map_err(
                |e| {
                    bad(
                        None,
                        format!("consistency proof from the saved checkpoint failed: {e}"),
                    )
                },
            )?;
            saved_size = Some(cp.size);
        }
        Ok(VerifyReport {
            size,
            root,
            checkpoints: cps.len() as u64,
            saved_size,
        })
    }
}

fn first_bad_message(good: u64, size: u64, what: &str) -> String {
    if size - good == 1 {
        format!("event {good}: modified, inserted, removed or reordered ({what} no longer matches)")
    } else {
        format!(
            "events {good}..{}: one of them was modified, inserted, removed or reordered ({what} no longer matches; the first {good} are intact)",
            size - 1
        )
    }
}

/// MTH of `a..b` over an in-memory post-order tree.
fn mth_mem(tree: &[Hash], a: u64, b: u64) -> Hash {
    let n = b - a;
    if n == 0 {
        return EMPTY_ROOT;
    }
    if n.is_power_of_two() && a.is_multiple_of(n) {
        return tree[node_pos(n.trailing_zeros(), a / n) as usize];
    }
    let k = split_point64(n);
    node_hash(&mth_mem(tree, a, a + k), &mth_mem(tree, a + k, b))
}

/// Sequential reads through `pread`, so clones of one `File` never share a
/// cursor.
struct OffsetReader {
    file: File,
    pos: u64,
}

impl Read for OffsetReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Write the log key file (0600) unless it exists, and return the signer.
pub fn load_or_create_key(path: &Path, name: &str) -> Result<Signer, LogError> {
    // A key file: a regular file of at most 1 MiB, opened without blocking.
    match kiln_oci::untrusted::read_small_string(path) {
        Ok(s) => Signer::from_key_str(s.trim())
            .map_err(|e| LogError::Corrupt(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| io(path)(std::io::Error::other(e.to_string())))?;
            let signer = Signer::from_seed(name, &seed)
                .map_err(|e| LogError::Corrupt(format!("log key name {name:?}: {e}")))?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let tmp = path.with_extension(format!(
                "tmp.{}.{:08x}",
                std::process::id(),
                u32::from_le_bytes([seed[0] ^ 0x5a, seed[7], seed[13], seed[31]])
            ));
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(format!("{}\n", signer.to_key_str()).as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io(&tmp))?;
            // Never replace a key another process created meanwhile.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&tmp);
                    Ok(signer)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&tmp);
                    load_or_create_key(path, name)
                }
                Err(e) => Err(io(path)(e)),
            }
        }
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Log {
        let s = Signer::from_seed("kiln.test/log", &[3; 32]).unwrap();
        let v = s.verifier();
        Log::open(dir, Some(s), v).unwrap()
    }

    /// Opening reads records only from the previous checkpoint on: the cost
    /// is the newest batch (plus O(log n) tree reads), never the history.
    #[test]
    fn open_reads_only_the_newest_batch() {
        let d = tempfile::tempdir().unwrap();
        let log = open(d.path());
        let old: Vec<Vec<u8>> = (0..2000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let refs: Vec<&[u8]> = old.iter().map(|e| e.as_slice()).collect();
        log.append_batch(&refs).unwrap();
        log.append_batch(&refs[..500]).unwrap();
        for e in &refs[..3] {
            log.append(e).unwrap();
        }
        let newest = log.append_batch(&refs[..7]).unwrap();
        assert_eq!(newest, 2503);
        let prev_end = log.files.lock().unwrap().entry_offset(newest).unwrap();
        drop(log);
        let log = open(d.path());
        assert!(log.poisoned().is_none());
        let f = log.files.lock().unwrap();
        assert_eq!(f.prev_size, 2503);
        assert_eq!(f.entry_reads, 7, "records checked on open");
        assert_eq!(f.lowest_entry_read, prev_end);
        drop(f);
        // A read-only handle (`kiln log show`) costs the same.
        let s = Signer::from_seed("kiln.test/log", &[3; 32]).unwrap();
        let ro = Log::open(d.path(), None, s.verifier()).unwrap();
        assert_eq!(ro.files.lock().unwrap().entry_reads, 7);
    }
}
