//! The sidecar metadata cache of the incremental mode.
//!
//! For every regular file hashed cleanly it records `(path, dev, ino, size,
//! mtime, ctime, sha256)`. A later scan reuses the hash of a file whose five
//! metadata fields all match, and reads everything else.
//!
//! *Racy entries* are left out: a file whose ctime is not at least 100 ms
//! older than the start of the scan that hashed it could be changed again
//! within the same timestamp tick (file timestamps come from the kernel's
//! coarse clock) without its ctime moving, so it is re-hashed next time.
//! ctime cannot be set from user space, so content changes always move it
//! (unless the clock itself is moved back).
//!
//! The cache is a speed hint, not evidence: someone who can rewrite it can
//! hide a change from incremental checks until the next full re-hash
//! ([`crate::CheckOptions::max_cache_age`]), so keep it beside the manifest
//! with the same protection. It is bound to the root directory's
//! `(dev, ino)`; a cache of another tree is ignored.
//!
//! To keep the incremental check within its time budget the cache also
//! carries the parsed baseline, bound to the SHA-256 of the exact manifest
//! bytes it was parsed from: when the manifest file still hashes to that
//! value, its JSON need not be parsed again. A full check always parses the
//! manifest itself.
//!
//! Binary layout (little endian): `KILNFIMC\x03\n`, root dev u64, root ino
//! u64, last full hash (ns since epoch) i64, record count u64, then per
//! record: path length u32, path bytes, dev, ino, size u64, mtime, ctime
//! i64, 32-byte SHA-256; then the manifest's SHA-256 (32 bytes), baseline
//! count u64 and per baseline entry: path (u32 length + bytes), kind u8,
//! mode, uid, gid u32, size u64, sha256 (u8 flag and 32 bytes), link (u8
//! flag, u32 length, bytes), rdev u64, nlink u64 (the link count the
//! baseline expects, 0 if none); then the SHA-256 of everything before it
//! (a corruption check, not a signature).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::DriftError;
use crate::sys::Stat;
use crate::tree::{Entry, Kind, Meta, Status, Tree};

const MAGIC: &[u8; 10] = b"KILNFIMC\x03\n";
/// A file changed less than this before a scan started is not cached.
const RACY_NS: i64 = 100_000_000;

/// One cached file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// Raw path bytes within the tree.
    pub path: Box<[u8]>,
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size.
    pub size: u64,
    /// mtime, ns.
    pub mtime_ns: i64,
    /// ctime, ns.
    pub ctime_ns: i64,
    /// Content hash.
    pub sha256: [u8; 32],
}

/// The sidecar cache (records sorted by path).
#[derive(Debug, Clone, Default)]
pub struct Cache {
    /// `(dev, ino)` of the root directory the cache is for.
    pub root_id: (u64, u64),
    /// When every file was last hashed (ns since the epoch).
    pub last_full_ns: i64,
    /// Records, sorted by path.
    pub records: Vec<CacheRecord>,
    /// The baseline and the SHA-256 of the manifest bytes it came from.
    pub baseline: Option<([u8; 32], Vec<Entry>)>,
    /// Path hash → index into `records` (built lazily by [`Cache::index`]).
    index: HashMap<u64, u32, BuildHasherDefault<PathHasher>>,
}

/// FNV-1a over 8-byte words: fast for paths, collisions only cost a re-hash
/// of the file (the path itself is compared on lookup).
#[derive(Default)]
struct PathHasher(u64);

impl Hasher for PathHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w))
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(29);
        }
        for &b in chunks.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h ^ (h >> 32);
    }
}

fn path_hash(p: &[u8]) -> u64 {
    let mut h = PathHasher::default();
    h.write(p);
    h.finish()
}

impl Cache {
    /// The cache of a scanned tree; `last_full_ns` is the tree's start if
    /// it was a full scan, else the given previous value.
    pub fn from_tree(
        tree: &Tree,
        previous_full_ns: Option<i64>,
        baseline: Option<([u8; 32], Vec<Entry>)>,
    ) -> Cache {
        let cutoff = tree.started_ns.saturating_sub(RACY_NS);
        let records = tree
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File && e.status == Status::Ok)
            .filter(|e| e.meta.ctime_ns < cutoff && e.meta.mtime_ns < cutoff)
            .filter_map(|e| {
                Some(CacheRecord {
                    path: e.path.clone(),
                    dev: e.meta.dev,
                    ino: e.meta.ino,
                    size: e.size,
                    mtime_ns: e.meta.mtime_ns,
                    ctime_ns: e.meta.ctime_ns,
                    sha256: e.sha256?,
                })
            })
            .collect();
        Cache {
            root_id: tree.root_id,
            last_full_ns: if tree.stats.full {
                tree.started_ns
            } else {
                previous_full_ns.unwrap_or(0)
            },
            records,
            baseline,
            index: HashMap::default(),
        }
    }

    /// Builds the lookup index (needed before [`crate::scan_cached`] uses
    /// the cache; [`Cache::load`] and [`Cache::from_bytes`] do it).
    pub fn index(&mut self) {
        let mut index = HashMap::with_capacity_and_hasher(self.records.len(), Default::default());
        for (i, r) in self.records.iter().enumerate() {
            if let Ok(i) = u32::try_from(i) {
                index.entry(path_hash(&r.path)).or_insert(i);
            }
        }
        self.index = index;
    }

    /// The cached hash of `path` if its metadata still matches.
    pub(crate) fn lookup(&self, path: &[u8], st: &Stat) -> Option<[u8; 32]> {
        let i = *self.index.get(&path_hash(path))?;
        let r = self.records.get(usize::try_from(i).ok()?)?;
        (*r.path == *path
            && r.dev == st.dev
            && r.ino == st.ino
            && r.size == st.size
            && r.mtime_ns == st.mtime_ns
            && r.ctime_ns == st.ctime_ns)
            .then_some(r.sha256)
    }

    /// Serialises the cache.
    pub fn to_bytes(&self) -> Vec<u8> {
        let paths: usize = self.records.iter().map(|r| r.path.len()).sum();
        let mut b = Vec::with_capacity(64 + self.records.len() * 76 + paths);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.root_id.0.to_le_bytes());
        b.extend_from_slice(&self.root_id.1.to_le_bytes());
        b.extend_from_slice(&self.last_full_ns.to_le_bytes());
        b.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        for r in &self.records {
            // Path components are at most 255 bytes and a tree path fits in
            // memory; saturate rather than truncate silently.
            let len = u32::try_from(r.path.len()).unwrap_or(u32::MAX);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&r.path);
            b.extend_from_slice(&r.dev.to_le_bytes());
            b.extend_from_slice(&r.ino.to_le_bytes());
            b.extend_from_slice(&r.size.to_le_bytes());
            b.extend_from_slice(&r.mtime_ns.to_le_bytes());
            b.extend_from_slice(&r.ctime_ns.to_le_bytes());
            b.extend_from_slice(&r.sha256);
        }
        match &self.baseline {
            None => b.extend_from_slice(&[0u8; 40]),
            Some((h, entries)) => {
                b.extend_from_slice(h);
                b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
                for e in entries {
                    put_bytes(&mut b, &e.path);
                    b.push(kind_code(e.kind));
                    b.extend_from_slice(&e.mode.to_le_bytes());
                    b.extend_from_slice(&e.uid.to_le_bytes());
                    b.extend_from_slice(&e.gid.to_le_bytes());
                    b.extend_from_slice(&e.size.to_le_bytes());
                    match &e.sha256 {
                        Some(h) => {
                            b.push(1);
                            b.extend_from_slice(h);
                        }
                        None => b.push(0),
                    }
                    match &e.link {
                        Some(l) => {
                            b.push(1);
                            put_bytes(&mut b, l);
                        }
                        None => b.push(0),
                    }
                    b.extend_from_slice(&e.meta.rdev.to_le_bytes());
                    b.extend_from_slice(&e.meta.nlink.to_le_bytes());
                }
            }
        }
        let sum: [u8; 32] = Sha256::digest(&b).into();
        b.extend_from_slice(&sum);
        b
    }

    /// Parses [`Cache::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Cache, DriftError> {
        let bad = |why: &str| DriftError::Cache(why.to_string());
        let split = bytes
            .len()
            .checked_sub(32)
            .ok_or_else(|| bad("truncated"))?;
        let (body, sum) = bytes.split_at(split);
        if Sha256::digest(body).as_slice() != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader(body);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("not a kiln fim cache (bad magic)"));
        }
        let root_id = (r.u64()?, r.u64()?);
        let last_full_ns = r.i64()?;
        let count = r.u64()?;
        let mut records = Vec::with_capacity(usize::try_from(count.min(1 << 24)).unwrap_or(0));
        let mut prev: Option<Box<[u8]>> = None;
        for _ in 0..count {
            let len = usize::try_from(r.u32()?).map_err(|_| bad("path too long"))?;
            let path: Box<[u8]> = r.take(len)?.into();
            if prev.as_ref().is_some_and(|p| *p >= path) {
                return Err(bad("records not sorted"));
            }
            let rec = CacheRecord {
                path: path.clone(),
                dev: r.u64()?,
                ino: r.u64()?,
                size: r.u64()?,
                mtime_ns: r.i64()?,
                ctime_ns: r.i64()?,
                sha256: r.array()?,
            };
            prev = Some(path);
            records.push(rec);
        }
        let manifest_hash: [u8; 32] = r.array()?;
        let n = r.u64()?;
        let baseline = if n == 0 && manifest_hash == [0u8; 32] {
            None
        } else {
            let mut entries: Vec<Entry> =
                Vec::with_capacity(usize::try_from(n.min(1 << 24)).unwrap_or(0));
            for _ in 0..n {
                let path: Box<[u8]> = r.bytes()?.into();
                if entries.last().is_some_and(|p| p.path >= path) {
                    return Err(bad("baseline not sorted"));
                }
                let kind = kind_from_code(r.array::<1>()?[0]).ok_or_else(|| bad("bad kind"))?;
                let mode = r.u32()?;
                let uid = r.u32()?;
                let gid = r.u32()?;
                let size = r.u64()?;
                let sha256 = match r.array::<1>()?[0] {
                    0 => None,
                    _ => Some(r.array()?),
                };
                let link = match r.array::<1>()?[0] {
                    0 => None,
                    _ => Some(r.bytes()?.into()),
                };
                let rdev = r.u64()?;
                let nlink = r.u64()?;
                entries.push(Entry {
                    path,
                    kind,
                    mode,
                    uid,
                    gid,
                    size,
                    sha256,
                    link,
                    meta: Meta {
                        rdev,
                        nlink,
                        ..Meta::default()
                    },
                    status: Status::Ok,
                });
            }
            Some((manifest_hash, entries))
        };
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let mut c = Cache {
            root_id,
            last_full_ns,
            records,
            baseline,
            index: HashMap::default(),
        };
        c.index();
        Ok(c)
    }

    /// Reads a cache file; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Cache>, DriftError> {
        // Bounded and regular-only like the manifest it sits beside.
        match crate::fim::read_untrusted(path) {
            Ok(b) => Cache::from_bytes(&b).map(Some),
            Err(DriftError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
}

const KINDS: [Kind; 8] = [
    Kind::File,
    Kind::Hardlink,
    Kind::Dir,
    Kind::Symlink,
    Kind::Fifo,
    Kind::Socket,
    Kind::Chardev,
    Kind::Blockdev,
];

fn kind_code(k: Kind) -> u8 {
    KINDS.iter().position(|x| *x == k).map_or(0, |i| i as u8)
}

fn kind_from_code(c: u8) -> Option<Kind> {
    KINDS.get(usize::from(c)).copied()
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DriftError> {
        if self.0.len() < n {
            return Err(DriftError::Cache("truncated".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DriftError> {
        let len = usize::try_from(self.u32()?).map_err(|_| DriftError::Cache("too long".into()))?;
        self.take(len)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DriftError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    pub(crate) fn u32(&mut self) -> Result<u32, DriftError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, DriftError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, DriftError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}
