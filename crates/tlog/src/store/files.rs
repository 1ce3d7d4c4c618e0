//! The log's files on disk (`entries`, `index`, `tree`, `checkpoints`, the
//! `refuse-changes` marker): opening, recovery after a crash, reads of
//! records and tree nodes, and framed checkpoint records. [`super::Log`]
//! adds group commit, signing and verification on top.

use super::*;

pub(super) struct Files {
    pub(super) dir: PathBuf,
    pub(super) entries: File,
    pub(super) index: File,
    pub(super) tree: File,
    pub(super) checkpoints: File,
    pub(super) lock: File,
    pub(super) size: u64,
    pub(super) end: u64,
    pub(super) tree_len: u64,
    pub(super) cp_len: u64,
    /// Perfect subtrees of the current tree, left to right: (level, hash).
    pub(super) frontier: Vec<(u32, Hash)>,
    pub(super) latest: Option<(Checkpoint, String)>,
    /// Why this log must not be appended to, if it contradicts a checkpoint.
    pub(super) poisoned: Option<String>,
    /// The checkpoints file ends in a well-framed checkpoint that does not
    /// verify (forged, or signed by another key).
    pub(super) cp_problem: Option<String>,
    /// Size of the checkpoint before the latest (0 when there is none): the
    /// newest batch is `prev_size..latest.size`.
    pub(super) prev_size: u64,
    /// The contents of the `refuse-changes` marker, when it exists.
    pub(super) refusal: Option<String>,
    /// Reads of `entries` made while checking records against `tree` (a
    /// seam for the test that open costs no more than the newest batch).
    pub(super) entry_reads: u64,
    /// Lowest `entries` offset read while checking records against `tree`.
    pub(super) lowest_entry_read: u64,
}

impl Files {
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(super) fn read_at(
        &self,
        file: &File,
        name: &str,
        buf: &mut [u8],
        off: u64,
    ) -> Result<(), LogError> {
        file.read_exact_at(buf, off).map_err(io(&self.path(name)))
    }

    /// Read the refuse-changes marker, if present.
    pub(super) fn load_refusal(&mut self) -> Result<(), LogError> {
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
    pub(super) fn refused(&self) -> Option<String> {
        match (&self.poisoned, &self.refusal) {
            (Some(p), Some(r)) => Some(format!("{p}; {r}")),
            (Some(p), None) => Some(p.clone()),
            (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        }
    }

    /// Whether event `i` is a sound record at `off` (within `limit`) whose
    /// leaf hash is the one `tree` holds; returns the offset after it.
    pub(super) fn record_matches_tree(
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

    pub(super) fn node(&self, level: u32, i: u64) -> Result<Hash, LogError> {
        let mut h = [0u8; 32];
        self.read_at(&self.tree, "tree", &mut h, node_pos(level, i) * 32)?;
        Ok(h)
    }

    /// Merkle Tree Hash of leaves `a..b` (`b <= size`).
    pub(super) fn mth(&self, a: u64, b: u64) -> Result<Hash, LogError> {
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

    pub(super) fn load_frontier(&mut self) -> Result<(), LogError> {
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

    pub(super) fn root(&self) -> Hash {
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
    pub(super) fn push_leaf(&mut self, h: Hash, tree_buf: &mut Vec<u8>) {
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

    pub(super) fn entry_offset(&self, i: u64) -> Result<u64, LogError> {
        let mut b = [0u8; 8];
        self.read_at(&self.index, "index", &mut b, i * 8)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Read and check the record at `off`, bounded by `limit`.
    pub(super) fn read_record(
        &self,
        off: u64,
        limit: u64,
    ) -> Result<Option<(Vec<u8>, Hash)>, LogError> {
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
    pub(super) fn recover(
        &mut self,
        signer: Option<&Signer>,
        verifier: &Verifier,
    ) -> Result<(), LogError> {
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
    pub(super) fn load_latest_checkpoint(&mut self, verifier: &Verifier) -> Result<(), LogError> {
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

    pub(super) fn checkpoint_ending_at(
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
    pub(super) fn check_latest(&mut self) -> Result<(), LogError> {
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

    pub(super) fn sign_checkpoint(&mut self, signer: &Signer) -> Result<(), LogError> {
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
    pub(super) fn commit(&mut self, batch: &[Vec<u8>], signer: &Signer) -> Result<u64, LogError> {
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
pub(super) fn read_framed(r: &mut impl Read, remaining: u64) -> Option<Vec<u8>> {
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
