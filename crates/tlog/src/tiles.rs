//! Export of the durable log in the C2SP `tlog-tiles` static layout, and an
//! independent reader that checks such an export.
//!
//! Layout (<https://c2sp.org/tlog-tiles>), for the tree size of the signed
//! checkpoint:
//!
//! * `checkpoint`: the signed note, byte for byte;
//! * `tile/<L>/<N>[.p/<W>]`: 256 (or, for the rightmost partial tile,
//!   `W` = 1..=255) consecutive 32-byte node hashes at tree height `8·L`;
//! * `tile/entries/<N>[.p/<W>]`: the entries of level-0 tile `N`, each
//!   prefixed with its big-endian `u16` length.
//!
//! `<N>` is written as zero-padded 3-digit path elements, all but the last
//! prefixed with `x` (1234067 → `x001/x234/067`).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::hash::{Hash, leaf_hash, root};
use crate::note::Verifier;
use crate::store::{Log, LogError};

/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels a tile spans.
pub const TILE_HEIGHT: u32 = 8;
const HASH_LEN: usize = 32;

/// Why a tiles export or check failed. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: missing")]
    Missing { path: PathBuf },
    #[error("{path}: refusing to replace: not a tlog-tiles export ({reason})")]
    NotAnExport { path: PathBuf, reason: String },
    #[error("the log has no signed checkpoint to export")]
    NoCheckpoint,
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("log is inconsistent with its checkpoint: {0}")]
    Inconsistent(String),
    /// The caller's step before the rename failed (e.g. recording the
    /// export's audit event); nothing was put in place.
    #[error("not exported: {source}")]
    Aborted {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("event {index}: {len} bytes do not fit a 16-bit entry-bundle length")]
    EntryTooLarge { index: u64, len: usize },
    #[error("{path}: {source}")]
    Checkpoint {
        path: PathBuf,
        #[source]
        source: CheckpointError,
    },
    #[error("{path}: {len} bytes, expected {expected}")]
    WrongSize {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path}: malformed entry bundle: {reason}")]
    BadBundle { path: PathBuf, reason: String },
    #[error("{path}: hash {position} (node {level}/{node}) does not match the recomputed tree")]
    TileMismatch {
        path: PathBuf,
        position: u64,
        level: u32,
        node: u64,
    },
    #[error("{path}: entry {index} does not hash to leaf {position} of {tile}")]
    BundleMismatch {
        path: PathBuf,
        index: u64,
        position: u64,
        tile: PathBuf,
    },
    #[error(
        "{path}: the entries (and level-0 tiles) do not hash to the checkpoint root for size {size}"
    )]
    RootMismatch { path: PathBuf, size: u64 },
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Tree size of the exported checkpoint.
    pub tree_size: u64,
    /// Hash tiles written (full and partial, all levels).
    pub hash_tiles: u64,
    /// Entry bundles written (full and partial).
    pub entry_bundles: u64,
    /// Bytes written in all files, checkpoint included.
    pub bytes: u64,
}

/// Encode a tile index as path elements: `1234067` → `x001/x234/067`.
pub fn encode_index(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Relative path of hash tile `n` at `level` with `width` hashes (256 = full).
pub fn tile_path(level: u32, n: u64, width: u64) -> String {
    with_width(format!("tile/{level}/{}", encode_index(n)), width)
}

/// Relative path of entry bundle `n` with `width` entries (256 = full).
pub fn entries_path(n: u64, width: u64) -> String {
    with_width(format!("tile/entries/{}", encode_index(n)), width)
}

fn with_width(base: String, width: u64) -> String {
    if width == TILE_WIDTH {
        base
    } else {
        format!("{base}.p/{width}")
    }
}

/// The tiles of one level for a tree of `size`: `(index, width)` pairs, the
/// partial tile (if any) last. Level `level` holds `size >> 8·level` hashes.
fn tiles_at(size: u64, level: u32) -> impl Iterator<Item = (u64, u64)> {
    let count = hashes_at(size, level);
    let full = count / TILE_WIDTH;
    let part = count % TILE_WIDTH;
    (0..full)
        .map(|n| (n, TILE_WIDTH))
        .chain((part > 0).then_some((full, part)))
}

fn hashes_at(size: u64, level: u32) -> u64 {
    let shift = TILE_HEIGHT * level;
    if shift >= 64 { 0 } else { size >> shift }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TilesError + '_ {
    move |source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TilesError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            TilesError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness only; fall back to pid and time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b = t.to_be_bytes();
    }
    format!("{}-{}", std::process::id(), hex::encode(b))
}

/// Removes a directory tree on drop unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Writes files under a root, remembering directories to fsync.
struct Writer {
    root: PathBuf,
    dirs: BTreeSet<PathBuf>,
    bytes: u64,
}

impl Writer {
    fn write(&mut self, rel: &str, data: &[u8]) -> Result<(), TilesError> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent()
            && !self.dirs.contains(parent)
        {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
            let mut p = parent;
            while p != self.root && self.dirs.insert(p.to_path_buf()) {
                match p.parent() {
                    Some(q) => p = q,
                    None => break,
                }
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(data).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// fsync every directory created, deepest first, then the root.
    fn sync_dirs(&self) -> Result<(), TilesError> {
        for d in self.dirs.iter().rev() {
            sync_dir(d)?;
        }
        sync_dir(&self.root)
    }
}

fn sync_dir(d: &Path) -> Result<(), TilesError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io_err(d))
}

/// Is `out` something export may replace? `Ok(true)` if it exists and is a
/// previous export (or an empty directory), `Ok(false)` if it does not exist.
fn check_replaceable(out: &Path) -> Result<bool, TilesError> {
    let meta = match fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(out)(e)),
    };
    let refuse = |reason: &str| TilesError::NotAnExport {
        path: out.to_path_buf(),
        reason: reason.to_owned(),
    };
    if !meta.is_dir() {
        return Err(refuse("not a directory"));
    }
    let mut names = Vec::new();
    for e in fs::read_dir(out).map_err(io_err(out))? {
        let e = e.map_err(io_err(out))?;
        names.push(e.file_name());
    }
    if names.is_empty() {
        return Ok(true);
    }
    let cp = out.join("checkpoint");
    match fs::symlink_metadata(&cp) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(refuse("`checkpoint` is not a regular file")),
        Err(_) => return Err(refuse("it has no `checkpoint` file")),
    }
    if let Some(other) = names.iter().find(|n| *n != "checkpoint" && *n != "tile") {
        return Err(refuse(&format!(
            "unexpected entry {:?}",
            other.to_string_lossy()
        )));
    }
    if let Ok(m) = fs::symlink_metadata(out.join("tile"))
        && !m.is_dir()
    {
        return Err(refuse("`tile` is not a directory"));
    }
    Ok(true)
}

/// Export the tree of the log's latest signed checkpoint to `out` in the
/// tlog-tiles layout, replacing a previous export atomically.
///
/// The files are written into a fresh sibling directory, fsynced, and renamed
/// into place; a previous export is renamed aside first and removed after.
/// On error nothing new is left behind and an existing export is untouched.
/// An existing `out` that is not a previous export is refused.
pub fn export(log: &Log, out: &Path) -> Result<ExportReport, TilesError> {
    export_then(log, out, |_, _| Ok::<_, std::convert::Infallible>(()))
}

/// [`export`], calling `before_swap` with the finished export (under its
/// temporary name) and its report before renaming it into place; an error
/// from it removes the temporary export and leaves `out` as it was.
pub fn export_then<E>(
    log: &Log,
    out: &Path,
    before_swap: impl FnOnce(&Path, &ExportReport) -> Result<(), E>,
) -> Result<ExportReport, TilesError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (cp, note) = log.checkpoint().ok_or(TilesError::NoCheckpoint)?;
    let replace = check_replaceable(out)?;
    let name = out
        .file_name()
        .ok_or_else(|| TilesError::NotAnExport {
            path: out.to_path_buf(),
            reason: "the path has no final component".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let suffix = random_suffix();
    let tmp = parent.join(format!(".{name}.tiles-new-{suffix}"));
    fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    let mut cleanup = Cleanup(Some(tmp.clone()));

    let mut w = Writer {
        root: tmp.clone(),
        dirs: BTreeSet::new(),
        bytes: 0,
    };
    let size = cp.size;
    let (hash_tiles, entry_bundles) = write_tiles(log, &cp, &mut w)?;
    w.write("checkpoint", note.as_bytes())?;
    w.sync_dirs()?;
    let report = ExportReport {
        tree_size: size,
        hash_tiles,
        entry_bundles,
        bytes: w.bytes,
    };
    before_swap(&tmp, &report).map_err(|e| TilesError::Aborted { source: e.into() })?;

    // Swap into place.
    let old = parent.join(format!(".{name}.tiles-old-{suffix}"));
    if replace {
        // Re-check: something may have appeared since the first look.
        check_replaceable(out)?;
        fs::rename(out, &old).map_err(io_err(out))?;
    }
    if let Err(e) = fs::rename(&tmp, out) {
        if replace {
            let _ = fs::rename(&old, out);
        }
        return Err(io_err(out)(e));
    }
    cleanup.0 = None;
    // The new export is in place: remove the old one even if the parent's
    // fsync fails, then report the first problem.
    let synced = sync_dir(&parent);
    if replace {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    synced?;
    Ok(report)
}

/// Write entry bundles and hash tiles for `cp.size`; returns (tiles, bundles).
fn write_tiles(log: &Log, cp: &Checkpoint, w: &mut Writer) -> Result<(u64, u64), TilesError> {
    let size = cp.size;
    // Entry bundles, checking each entry against the log's stored leaf hash.
    let mut leaves: Vec<Hash> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut bundle: Vec<u8> = Vec::new();
    let mut bundles = 0u64;
    let mut failure: Option<TilesError> = None;
    if size > 0 {
        log.for_each_entry(0, |i, e| {
            if i >= size {
                return false;
            }
            let Ok(len) = u16::try_from(e.len()) else {
                failure = Some(TilesError::EntryTooLarge {
                    index: i,
                    len: e.len(),
                });
                return false;
            };
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(e);
            leaves.push(leaf_hash(e));
            let count = i + 1;
            if count % TILE_WIDTH == 0 || count == size {
                let n = i / TILE_WIDTH;
                let width = count - n * TILE_WIDTH;
                if let Err(err) = w.write(&entries_path(n, width), &bundle) {
                    failure = Some(err);
                    return false;
                }
                bundles += 1;
                bundle.clear();
            }
            true
        })?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if leaves.len() as u64 != size {
        return Err(TilesError::Inconsistent(format!(
            "read {} entries, checkpoint has {size}",
            leaves.len()
        )));
    }
    if root(&leaves) != cp.root {
        return Err(TilesError::Inconsistent(format!(
            "the first {size} entries do not hash to the checkpoint root"
        )));
    }
    // Hash tiles from the log's stored tree.
    let mut tiles = 0u64;
    let mut level = 0u32;
    while hashes_at(size, level) > 0 {
        let height = TILE_HEIGHT * level;
        for (n, width) in tiles_at(size, level) {
            let mut data = Vec::with_capacity(width as usize * HASH_LEN);
            for k in 0..width {
                let i = n * TILE_WIDTH + k;
                let h = log.node(height, i)?;
                if level == 0 && leaves.get(i as usize) != Some(&h) {
                    return Err(TilesError::Inconsistent(format!(
                        "stored leaf hash {i} does not match entry {i}"
                    )));
                }
                data.extend_from_slice(&h);
            }
            w.write(&tile_path(level, n, width), &data)?;
            tiles += 1;
        }
        level += 1;
    }
    Ok((tiles, bundles))
}

/// The largest checkpoint note read from an export: 1 MiB.
pub const MAX_CHECKPOINT_BYTES: u64 = 1 << 20;

/// The largest entry bundle of `width` entries: each entry is at most
/// 65535 bytes after its 2-byte length (C2SP tlog-tiles).
fn max_bundle_bytes(width: u64) -> u64 {
    width * (2 + u64::from(u16::MAX))
}

/// Read a file of an export (untrusted): a regular file, opened without
/// blocking and without following a symlink at any level below `dir`, of at
/// most `limit` bytes (exactly `expected`, when given; then the limit is
/// that size, so a longer file is never read).
fn read_export_file(
    dir: &Path,
    rel: &str,
    limit: u64,
    expected: Option<u64>,
) -> Result<Vec<u8>, TilesError> {
    let path = dir.join(rel);
    let data = kiln_oci::untrusted::read_beneath(dir, rel, limit).map_err(|e| {
        match (e.kind(), expected) {
            (std::io::ErrorKind::FileTooLarge, Some(expected)) => TilesError::WrongSize {
                path: path.clone(),
                len: fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0),
                expected,
            },
            _ => io_err(&path)(e),
        }
    })?;
    if let Some(expected) = expected
        && data.len() as u64 != expected
    {
        return Err(TilesError::WrongSize {
            path,
            len: data.len() as u64,
            expected,
        });
    }
    Ok(data)
}

/// Parse an entry bundle of exactly `width` entries into leaf hashes.
fn parse_bundle(path: &Path, data: &[u8], width: u64) -> Result<Vec<Hash>, TilesError> {
    let bad = |reason: String| TilesError::BadBundle {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::with_capacity(width as usize);
    let mut rest = data;
    for k in 0..width {
        let [a, b, tail @ ..] = rest else {
            return Err(bad(format!("truncated before entry {k} of {width}")));
        };
        let len = u16::from_be_bytes([*a, *b]) as usize;
        if tail.len() < len {
            return Err(bad(format!(
                "entry {k} claims {len} bytes, {} remain",
                tail.len()
            )));
        }
        out.push(leaf_hash(&tail[..len]));
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes after the last of {width} entries",
            rest.len()
        )));
    }
    Ok(out)
}

/// Independently check a tiles export in `dir`: open its checkpoint with
/// `verifier`, read every entry bundle and hash tile the checkpoint's tree
/// needs, recompute the tree from the entries, and check every tile hash
/// (all levels) and the root. Returns the verified checkpoint.
pub fn verify_dir(dir: &Path, verifier: &Verifier) -> Result<Checkpoint, TilesError> {
    let cp_path = dir.join("checkpoint");
    let note = read_export_file(dir, "checkpoint", MAX_CHECKPOINT_BYTES, None)?;
    let (cp, _) = Checkpoint::open(&note, std::slice::from_ref(verifier)).map_err(|source| {
        TilesError::Checkpoint {
            path: cp_path.clone(),
            source,
        }
    })?;
    let size = cp.size;

    // Leaves from the entry bundles.
    let mut leaves: Vec<Hash> = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut bundle_paths = Vec::new();
    for (n, width) in tiles_at(size, 0) {
        let rel = entries_path(n, width);
        let data = read_export_file(dir, &rel, max_bundle_bytes(width), None)?;
        let path = dir.join(&rel);
        leaves.extend(parse_bundle(&path, &data, width)?);
        bundle_paths.push((n, width, path));
    }

    // Read every hash tile, checking sizes.
    let mut levels: Vec<Vec<(PathBuf, Vec<u8>)>> = Vec::new();
    let mut level = 0u32;
    while hashes_at(size, level) > 0 {
        let mut row = Vec::new();
        for (n, width) in tiles_at(size, level) {
            let rel = tile_path(level, n, width);
            let expected = width * HASH_LEN as u64;
            let data = read_export_file(dir, &rel, expected, Some(expected))?;
            row.push((dir.join(rel), data));
        }
        levels.push(row);
        level += 1;
    }

    if root(&leaves) != cp.root {
        // Name the entry bundle that disagrees with its level-0 tile, if any.
        if let Some(row) = levels.first() {
            for ((n, _, bpath), (tpath, tile)) in bundle_paths.iter().zip(row) {
                let first = n * TILE_WIDTH;
                for (k, h) in tile.chunks_exact(HASH_LEN).enumerate() {
                    let i = first + k as u64;
                    if leaves.get(i as usize).map(|l| &l[..]) != Some(h) {
                        return Err(TilesError::BundleMismatch {
                            path: bpath.clone(),
                            index: i,
                            position: k as u64,
                            tile: tpath.clone(),
                        });
                    }
                }
            }
        }
        return Err(TilesError::RootMismatch {
            path: cp_path,
            size,
        });
    }

    // The entries match the signed root; every tile must match them.
    let mut cur = leaves;
    for (level, row) in levels.iter().enumerate() {
        let level = level as u32;
        for ((n, _), (path, tile)) in tiles_at(size, level).zip(row) {
            let first = n * TILE_WIDTH;
            for (k, h) in tile.chunks_exact(HASH_LEN).enumerate() {
                let i = first + k as u64;
                if cur.get(i as usize).map(|x| &x[..]) != Some(h) {
                    return Err(TilesError::TileMismatch {
                        path: path.clone(),
                        position: k as u64,
                        level: TILE_HEIGHT * level,
                        node: i,
                    });
                }
            }
        }
        cur = cur.chunks_exact(TILE_WIDTH as usize).map(root).collect();
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding() {
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(tile_path(0, 1234067, 8), "tile/0/x001/x234/067.p/8");
        assert_eq!(entries_path(1234067, 256), "tile/entries/x001/x234/067");
    }

    #[test]
    fn tile_counts_match_spec_example() {
        // 70,000: 273 full + partial 112 at level 0; 1 full + partial 17 at
        // level 1; partial 1 at level 2.
        let l0: Vec<_> = tiles_at(70_000, 0).collect();
        assert_eq!(l0.len(), 274);
        assert_eq!(l0[273], (273, 112));
        assert_eq!(tiles_at(70_000, 1).collect::<Vec<_>>(), [(0, 256), (1, 17)]);
        assert_eq!(tiles_at(70_000, 2).collect::<Vec<_>>(), [(0, 1)]);
        assert_eq!(tiles_at(70_000, 3).count(), 0);
        assert_eq!(tiles_at(256, 1).collect::<Vec<_>>(), [(0, 1)]);
        assert_eq!(hashes_at(u64::MAX, 8), 0);
    }
}
