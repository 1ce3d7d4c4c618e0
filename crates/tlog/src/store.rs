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

/// The marker a failed full verification leaves in the log directory.
pub const REFUSE_CHANGES: &str = "refuse-changes";

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

mod files;
use files::{Files, read_framed};

#[cfg(test)]
mod tests;
