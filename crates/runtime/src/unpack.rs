//! Unpacking a verified image into a shared, read-only root filesystem.
//!
//! Threat model: the layer tars are hostile input (a signed image can still
//! have been built from a hostile base). The unpacker never resolves a path
//! on the host: every entry path is normalised lexically (no absolute paths,
//! no `..`), every existing parent component is checked with `lstat` and must
//! be a real directory (a symlink parent is refused, never followed), the final
//! component is created with `O_NOFOLLOW`/`O_CREAT|O_EXCL` semantics, and hard
//! links may only point at files already extracted in this rootfs.
//!
//! Path-based `lstat` checks are race-free here because the tree being built
//! is private: it lives in a fresh `0700` temp directory that only this
//! process writes, and it is renamed into place only when complete.
//!
//! Device nodes (character and block) are skipped with a warning in
//! [`Rootfs::warnings`]: instances get their `/dev` from a tmpfs with runc's
//! default device set, and an image has no business shipping device nodes.
//! FIFOs are created. setuid/setgid bits are kept (they are part of the
//! image; `noNewPrivileges` makes them inert in instances).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use kiln_oci::expansion::Bounded;
use kiln_oci::{Descriptor, Digest, ImageConfig, ImageManifest, Store, media};
use sha2::{Digest as _, Sha256};

use crate::{RuntimeError, sys};

/// An unpacked image: `dir` is `root/<hex>`, `path` is `root/<hex>/rootfs`.
#[derive(Clone, Debug)]
pub struct Rootfs {
    pub manifest: Digest,
    pub dir: PathBuf,
    pub path: PathBuf,
    pub config: ImageConfig,
    /// Entries skipped (device nodes); empty when the rootfs already existed.
    pub warnings: Vec<String>,
    /// Whether this call unpacked it (false: it was already there, or a
    /// concurrent unpacker won the rename).
    pub fresh: bool,
    /// The inode number and link count of every path, taken when this call
    /// unpacked it (before it became visible under `root`), for drift
    /// detection: a path that later names another inode, or an inode that
    /// gained a name (possibly outside the rootfs), is drift even when all
    /// contents match. `None` when the rootfs was not unpacked by this call.
    pub inodes: Option<kiln_drift::InodeRecord>,
}

const IMAGE_JSON: &str = "image.json";
const ROOTFS: &str = "rootfs";
const TMP_PREFIX: &str = ".unpack-";

/// Directories runc mounts over; created (if absent) so that runc never has
/// to create a mount point in the shared, read-only rootfs.
const MOUNT_POINTS: &[(&str, u32)] = &[
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
];

/// Unpack the image `manifest` from `store` into `root/<hex>/rootfs`, once.
///
/// Verifies the manifest, the config and every layer blob against their
/// digests, and each layer's uncompressed content against the config's
/// `rootfs.diff_ids`. On any error nothing is left under `root`. A second
/// call returns the existing rootfs after reading only the manifest and
/// `image.json` (no layer is read). Concurrent calls for the same digest are
/// safe: each unpacks privately and the first `rename` wins.
pub fn unpack(store: &Store, manifest: &Digest, root: &Path) -> Result<Rootfs, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadImage {
        manifest: manifest.to_string(),
        reason,
    };
    let mbytes = store.read_blob(manifest)?;
    let m = ImageManifest::from_bytes(&mbytes, &manifest.to_string())?;
    if let Some(mt) = &m.media_type
        && !media::is_manifest(mt)
    {
        return Err(bad(format!("media type {mt} is not an image manifest")));
    }
    let final_dir = root.join(manifest.hex());
    if let Some(r) = existing(&final_dir, manifest, &m)? {
        return Ok(r);
    }
    if m.config.media_type != media::CONFIG && m.config.media_type != media::DOCKER_CONFIG {
        return Err(bad(format!(
            "config media type {} is not an image config",
            m.config.media_type
        )));
    }
    let cbytes = store.read_descriptor(&m.config)?;
    let config = ImageConfig::from_bytes(&cbytes, &m.config.digest.to_string())?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(bad(format!(
            "{} layers but {} diff_ids in the config",
            m.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }

    fs::create_dir_all(root).map_err(|e| RuntimeError::io(root, e))?;
    gc_stale(root);
    let tmp = TempDir::new(root, manifest)?;
    let rootfs = tmp.path.join(ROOTFS);
    mkdir(&rootfs, 0o755)?;
    let mut ex = Extractor::new(&rootfs);
    for (i, (layer, diff_id)) in m.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        ex.apply_layer(store, i, layer, diff_id)?;
    }
    ex.finish()?;
    // The tree is private and complete: its identity now is the image's.
    let inodes =
        kiln_drift::record_inodes(&rootfs, &[]).map_err(|source| RuntimeError::Inodes {
            path: rootfs.clone(),
            source,
        })?;
    let img = tmp.path.join(IMAGE_JSON);
    fs::write(&img, &cbytes).map_err(|e| RuntimeError::io(&img, e))?;
    // Durable before visible: a crash never exposes a torn rootfs.
    sync_fs(&tmp.path)?;
    match rename_noreplace(&tmp.path, &final_dir) {
        Ok(()) => {
            tmp.keep();
            let _ = kiln_oci::layout::sync_dir(root);
            Ok(Rootfs {
                manifest: *manifest,
                path: final_dir.join(ROOTFS),
                dir: final_dir,
                config,
                warnings: ex.warnings,
                fresh: true,
                inodes: Some(inodes),
            })
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
            drop(tmp);
            existing(&final_dir, manifest, &m)?
                .ok_or_else(|| bad("a concurrent unpack left an incomplete directory".into()))
        }
        Err(e) => Err(RuntimeError::io(&final_dir, e)),
    }
}

/// The already unpacked rootfs, if `dir` exists; checks that its
/// `image.json` is the manifest's config.
fn existing(
    dir: &Path,
    manifest: &Digest,
    m: &ImageManifest,
) -> Result<Option<Rootfs>, RuntimeError> {
    let img = dir.join(IMAGE_JSON);
    // Regular, not a link, opened without blocking, and no longer than the
    // config it must be.
    let bytes = match kiln_oci::untrusted::read_capped(
        &img,
        m.config.size,
        kiln_oci::untrusted::Follow::No,
    ) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RuntimeError::io(&img, e)),
    };
    if Digest::of(&bytes) != m.config.digest {
        return Err(RuntimeError::BadImage {
            manifest: manifest.to_string(),
            reason: format!(
                "{} does not match the manifest's config {}; remove {} to unpack again",
                img.display(),
                m.config.digest,
                dir.display()
            ),
        });
    }
    let config = ImageConfig::from_bytes(&bytes, &img.display().to_string())?;
    Ok(Some(Rootfs {
        manifest: *manifest,
        dir: dir.to_path_buf(),
        path: dir.join(ROOTFS),
        config,
        warnings: Vec::new(),
        fresh: false,
        inodes: None,
    }))
}

/// Remove temp dirs left by unpackers that died (their pid is gone).
fn gc_stale(root: &Path) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
            continue;
        };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A private `0700` directory under `root`, removed on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    fn new(root: &Path, manifest: &Digest) -> Result<TempDir, RuntimeError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = root.join(format!(
            "{TMP_PREFIX}{}-{}-{}",
            &manifest.hex()[..16],
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        mkdir(&path, 0o700)?;
        Ok(TempDir { path, keep: false })
    }

    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<(), RuntimeError> {
    fs::create_dir(p).map_err(|e| RuntimeError::io(p, e))?;
    fs::set_permissions(p, Permissions::from_mode(mode)).map_err(|e| RuntimeError::io(p, e))
}

fn cstr(p: &Path) -> Result<CString, RuntimeError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        RuntimeError::io(
            p,
            io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
        )
    })
}

fn sync_fs(dir: &Path) -> Result<(), RuntimeError> {
    let f = File::open(dir).map_err(|e| RuntimeError::io(dir, e))?;
    sys::syncfs(&f).map_err(|e| RuntimeError::io(dir, e))
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let inv = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path");
    let f = CString::new(from.as_os_str().as_bytes()).map_err(inv)?;
    let t = CString::new(to.as_os_str().as_bytes()).map_err(inv)?;
    sys::rename_noreplace(&f, &t)
}

/// Why a tar entry's path (or a parent directory on its way) is refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryPathError {
    #[error("absolute path")]
    Absolute,
    #[error("NUL in path")]
    Nul,
    #[error("`..` component")]
    DotDot,
    #[error("parent {0:?} is a symlink (refusing to write through it)")]
    SymlinkParent(String),
    #[error("parent {0:?} is not a directory")]
    NotADirectory(String),
    /// A parent directory does not exist (and was not to be created).
    #[error("missing parent")]
    MissingParent,
    #[error("{0}")]
    CreateParent(#[source] RuntimeError),
    #[error("{path}: {source}", path = .path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Normalise a tar entry path to its components below the root.
///
/// Strips `./` prefixes, `.` components, empty components (`a//b`) and a
/// trailing `/`. Refuses absolute paths and any `..` component (even one
/// that would stay inside: a layer has no reason to write one). `Ok(vec![])`
/// is the root itself. Every returned component is non-empty and is neither
/// `.` nor `..` and contains no `/`, so joining them under a directory can
/// never leave it lexically.
pub fn normalize_path(raw: &[u8]) -> Result<Vec<&OsStr>, EntryPathError> {
    if raw.first() == Some(&b'/') {
        return Err(EntryPathError::Absolute);
    }
    if raw.contains(&0) {
        return Err(EntryPathError::Nul);
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => continue,
            b".." => return Err(EntryPathError::DotDot),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Reads through, hashing and counting into a shared state.
struct HashReader<R> {
    inner: R,
    state: Rc<RefCell<(Sha256, u64)>>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

fn new_state() -> Rc<RefCell<(Sha256, u64)>> {
    Rc::new(RefCell::new((Sha256::new(), 0)))
}

fn take_digest(s: &Rc<RefCell<(Sha256, u64)>>) -> (Digest, u64) {
    let (h, n) = std::mem::replace(&mut *s.borrow_mut(), (Sha256::new(), 0));
    (Digest::from_bytes(h.finalize().into()), n)
}

/// Applies layers to a private rootfs directory.
struct Extractor {
    root: PathBuf,
    warnings: Vec<String>,
    /// Directory mtimes, applied deepest-first once every layer is in.
    dir_times: BTreeMap<PathBuf, u64>,
    is_root: bool,
}

/// What one tar entry asks for.
enum Kind<'a> {
    Dir,
    File,
    Symlink(&'a [u8]),
    HardLink(PathBuf),
    Fifo,
}

impl Extractor {
    fn new(root: &Path) -> Extractor {
        Extractor {
            root: root.to_path_buf(),
            warnings: Vec::new(),
            dir_times: BTreeMap::new(),
            is_root: sys::geteuid() == 0,
        }
    }

    fn apply_layer(
        &mut self,
        store: &Store,
        index: usize,
        desc: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), RuntimeError> {
        let layer = desc.digest.to_string();
        let path = store.blob_path(&desc.digest);
        // A regular file only (no symlink, FIFO or device), never read past
        // one byte more than the descriptor's size.
        let (file, _) = kiln_oci::untrusted::open_regular(&path, kiln_oci::untrusted::Follow::No)
            .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => kiln_oci::OciError::MissingBlob(layer.clone()).into(),
            _ => RuntimeError::io(&path, e),
        })?;
        let limit = desc.size.saturating_add(1);
        let blob = new_state();
        let diff = new_state();
        let raw = HashReader {
            inner: (&file).take(limit),
            state: blob.clone(),
        };
        let decoded: Box<dyn Read + '_> = match desc.media_type.as_str() {
            media::LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Box::new(raw),
            media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => Box::new(Bounded::for_compressed(
                flate2::read::MultiGzDecoder::new(raw),
                desc.size,
            )),
            media::LAYER_ZSTD => Box::new(Bounded::for_compressed(
                zstd::stream::read::Decoder::new(raw).map_err(|e| RuntimeError::io(&path, e))?,
                desc.size,
            )),
            other => {
                return Err(RuntimeError::UnsupportedLayer {
                    digest: layer,
                    media_type: other.to_string(),
                });
            }
        };
        let mut tar_in = HashReader {
            inner: decoded,
            state: diff.clone(),
        };
        let res = self.apply_tar(&mut tar_in, &layer);
        // Hash whatever the tar reader did not consume (end-of-archive
        // padding, trailing bytes), then the rest of the compressed blob.
        let drained = io::copy(&mut tar_in, &mut io::sink()).and_then(|_| {
            drop(tar_in);
            io::copy(
                &mut HashReader {
                    inner: (&file).take(limit),
                    state: blob.clone(),
                },
                &mut io::sink(),
            )
        });
        // Integrity first: a corrupt blob explains any tar error it caused.
        let (actual, size) = take_digest(&blob);
        if drained.is_ok() || res.is_err() {
            if actual != desc.digest {
                return Err(RuntimeError::LayerDigestMismatch {
                    digest: layer,
                    actual: actual.to_string(),
                });
            }
            if size != desc.size {
                return Err(RuntimeError::LayerSizeMismatch {
                    digest: layer,
                    expected: desc.size,
                    actual: size,
                });
            }
        }
        if let Err(e) = drained {
            return Err(RuntimeError::CorruptLayer {
                layer,
                reason: format!("decompression failed: {e}"),
            });
        }
        res?;
        let (actual, _) = take_digest(&diff);
        if actual != *diff_id {
            return Err(RuntimeError::DiffIdMismatch {
                index,
                digest: layer,
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    fn apply_tar(&mut self, r: &mut dyn Read, layer: &str) -> Result<(), RuntimeError> {
        let corrupt = |e: io::Error| RuntimeError::CorruptLayer {
            layer: layer.to_string(),
            reason: e.to_string(),
        };
        // Huge PAX/GNU extension headers are refused before the tar reader
        // buffers them.
        let mut ar = tar::Archive::new(kiln_oci::targuard::TarGuard::new(r));
        // Paths written by this layer: an opaque whiteout keeps them.
        let mut written: HashSet<PathBuf> = HashSet::new();
        for e in ar.entries().map_err(corrupt)? {
            let mut e = e.map_err(corrupt)?;
            let raw = e.path_bytes().into_owned();
            let unsafe_entry = |reason: String| RuntimeError::UnsafeEntry {
                layer: layer.to_string(),
                entry: String::from_utf8_lossy(&raw).into_owned(),
                reason,
            };
            let comps = normalize_path(&raw).map_err(|r| unsafe_entry(r.to_string()))?;
            let et = e.header().entry_type();
            if matches!(et, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
                continue;
            }
            let name = comps.last().map(|c| c.as_bytes()).unwrap_or(b"");
            if name == b".wh..wh..opq" {
                let dir = &comps[..comps.len() - 1];
                let d = self
                    .parents(dir, true)
                    .map_err(|r| unsafe_entry(r.to_string()))?;
                let rel: PathBuf = dir.iter().collect();
                self.clear_opaque(&d, &rel, &written)
                    .map_err(|err| unsafe_entry(format!("opaque whiteout: {err}")))?;
                continue;
            }
            if let Some(victim) = name.strip_prefix(b".wh.") {
                if victim.is_empty() || victim == b"." || victim == b".." {
                    return Err(unsafe_entry("whiteout of an invalid name".into()));
                }
                let parent = &comps[..comps.len() - 1];
                match self.parents(parent, false) {
                    Ok(d) => {
                        let v = d.join(OsStr::from_bytes(victim));
                        remove_any(&v).map_err(|err| unsafe_entry(format!("whiteout: {err}")))?;
                    }
                    Err(EntryPathError::MissingParent) => {}
                    Err(reason) => return Err(unsafe_entry(reason.to_string())),
                }
                continue;
            }
            let h = e.header();
            let mode = h.mode().map_err(corrupt)? & 0o7777;
            let uid = h.uid().map_err(corrupt)? as u32;
            let gid = h.gid().map_err(corrupt)? as u32;
            let mtime = h.mtime().map_err(corrupt)?;
            let link = e.link_name_bytes().map(|b| b.into_owned());
            let kind = match et {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => Kind::File,
                tar::EntryType::Symlink => match &link {
                    Some(t) if !t.is_empty() => Kind::Symlink(t),
                    _ => return Err(unsafe_entry("symlink without a target".into())),
                },
                tar::EntryType::Link => {
                    let t = link
                        .as_deref()
                        .ok_or_else(|| unsafe_entry("hard link without a target".into()))?;
                    let tc = normalize_path(t)
                        .map_err(|r| unsafe_entry(format!("hard link target: {r}")))?;
                    if tc.is_empty() {
                        return Err(unsafe_entry("hard link to the root".into()));
                    }
                    let tp = self
                        .parents(&tc[..tc.len() - 1], false)
                        .map_err(|r| unsafe_entry(format!("hard link target: {r}")))?
                        .join(tc[tc.len() - 1]);
                    match fs::symlink_metadata(&tp) {
                        Ok(md) if !md.is_dir() => {}
                        Ok(_) => return Err(unsafe_entry("hard link to a directory".into())),
                        Err(_) => {
                            return Err(unsafe_entry(
                                "hard link target is not (yet) in the rootfs".into(),
                            ));
                        }
                    }
                    Kind::HardLink(tp)
                }
                tar::EntryType::Fifo => Kind::Fifo,
                tar::EntryType::Char | tar::EntryType::Block => {
                    self.warnings.push(format!(
                        "layer {layer}: skipped device node {}",
                        String::from_utf8_lossy(&raw)
                    ));
                    continue;
                }
                other => {
                    return Err(unsafe_entry(format!("unsupported entry type {other:?}")));
                }
            };
            if comps.is_empty() {
                // The root itself: only its metadata.
                if !matches!(kind, Kind::Dir) {
                    return Err(unsafe_entry("the root must be a directory".into()));
                }
                let root = self.root.clone();
                self.meta(&root, uid, gid, mode)
                    .map_err(|err| unsafe_entry(err.to_string()))?;
                self.dir_times.insert(PathBuf::new(), mtime);
                continue;
            }
            let parent = self
                .parents(&comps[..comps.len() - 1], true)
                .map_err(|r| unsafe_entry(r.to_string()))?;
            let target = parent.join(comps[comps.len() - 1]);
            let rel: PathBuf = comps.iter().collect();
            self.write_entry(&target, kind, &mut e, uid, gid, mode, mtime)
                .map_err(|err| unsafe_entry(err.to_string()))?;
            if let Some(p) = rel.parent() {
                // Implicit parents count as written by this layer too.
                for a in p.ancestors() {
                    if !written.insert(a.to_path_buf()) {
                        break;
                    }
                }
            }
            self.dir_times.remove(&rel);
            if et == tar::EntryType::Directory {
                self.dir_times.insert(rel.clone(), mtime);
            }
            written.insert(rel);
        }
        Ok(())
    }

    /// Check (and with `create`, make) the parent directories `comps` under
    /// the root; every existing component must be a real directory.
    fn parents(&self, comps: &[&OsStr], create: bool) -> Result<PathBuf, EntryPathError> {
        let mut p = self.root.clone();
        for c in comps {
            p.push(c);
            match fs::symlink_metadata(&p) {
                Ok(md) if md.file_type().is_symlink() => {
                    return Err(EntryPathError::SymlinkParent(rel(&self.root, &p)));
                }
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(EntryPathError::NotADirectory(rel(&self.root, &p)));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Err(EntryPathError::MissingParent);
                    }
                    mkdir(&p, 0o755).map_err(EntryPathError::CreateParent)?;
                }
                Err(source) => return Err(EntryPathError::Stat { path: p, source }),
            }
        }
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_entry(
        &mut self,
        target: &Path,
        kind: Kind<'_>,
        data: &mut dyn Read,
        uid: u32,
        gid: u32,
        mode: u32,
        mtime: u64,
    ) -> Result<(), RuntimeError> {
        let existing = fs::symlink_metadata(target).ok();
        let io_err = |e| RuntimeError::io(target, e);
        match kind {
            Kind::Dir => {
                match existing {
                    Some(md) if md.is_dir() => {}
                    Some(_) => {
                        fs::remove_file(target).map_err(io_err)?;
                        mkdir(target, 0o700)?;
                    }
                    None => mkdir(target, 0o700)?,
                }
                self.meta(target, uid, gid, mode)?;
                return Ok(());
            }
            _ => {
                if let Some(md) = existing {
                    if md.is_dir() {
                        fs::remove_dir_all(target).map_err(io_err)?;
                    } else {
                        fs::remove_file(target).map_err(io_err)?;
                    }
                }
            }
        }
        match kind {
            Kind::Dir => Ok(()),
            Kind::File => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(target)
                    .map_err(io_err)?;
                io::copy(data, &mut f).map_err(io_err)?;
                if self.is_root {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_err)?;
                }
                // After chown: chown clears setuid/setgid.
                f.set_permissions(Permissions::from_mode(mode))
                    .map_err(io_err)?;
                let t = UNIX_EPOCH + Duration::from_secs(mtime);
                f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(io_err)
            }
            Kind::Symlink(to) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(to), target).map_err(io_err)?;
                if self.is_root {
                    std::os::unix::fs::lchown(target, Some(uid), Some(gid)).map_err(io_err)?;
                }
                set_times_nofollow(target, mtime)
            }
            Kind::HardLink(from) => fs::hard_link(&from, target).map_err(io_err),
            Kind::Fifo => {
                let c = cstr(target)?;
                // mkfifo creates the final component and fails if it exists
                // (never follows a symlink).
                sys::mkfifo(&c).map_err(io_err)?;
                self.meta(target, uid, gid, mode)?;
                set_times_nofollow(target, mtime)
            }
        }
    }

    /// chown + chmod of an existing directory or fifo, never following a
    /// symlink (opened with `O_NOFOLLOW`).
    fn meta(&self, p: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), RuntimeError> {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_PATH)
            .open(p)
            .map_err(|e| RuntimeError::io(p, e))?;
        // fchown/fchmod do not work on O_PATH fds: go through /proc/self/fd,
        // which names exactly this inode (no path re-resolution).
        let via = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        if self.is_root {
            std::os::unix::fs::chown(&via, Some(uid), Some(gid))
                .map_err(|e| RuntimeError::io(p, e))?;
        }
        fs::set_permissions(&via, Permissions::from_mode(mode)).map_err(|e| RuntimeError::io(p, e))
    }

    /// Remove everything below `dir` that this layer did not write.
    fn clear_opaque(&self, dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let r = rel.join(e.file_name());
            let p = e.path();
            if !written.contains(&r) {
                remove_any(&p)?;
            } else if e.file_type()?.is_dir() {
                self.clear_opaque(&p, &r, written)?;
            }
        }
        Ok(())
    }

    /// Mount points, then directory mtimes (deepest first).
    fn finish(&mut self) -> Result<(), RuntimeError> {
        for (name, mode) in MOUNT_POINTS {
            let p = self.root.join(name);
            if fs::symlink_metadata(&p).is_err() {
                mkdir(&p, *mode)?;
            }
        }
        let mut dirs: Vec<_> = std::mem::take(&mut self.dir_times).into_iter().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, mtime) in dirs {
            let p = self.root.join(&rel);
            match set_times_nofollow(&p, mtime) {
                Ok(()) => {}
                Err(RuntimeError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_times_nofollow(p: &Path, mtime: u64) -> Result<(), RuntimeError> {
    let c = cstr(p)?;
    sys::set_times_nofollow(&c, mtime).map_err(|e| RuntimeError::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes() {
        let n = |s: &str| {
            normalize_path(s.as_bytes()).map(|v| {
                v.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
        };
        assert_eq!(n("./a/./b//c/").unwrap(), "a/b/c");
        assert_eq!(n("./").unwrap(), "");
        assert_eq!(n("").unwrap(), "");
        assert!(n("/etc/passwd").is_err());
        assert!(n("a/../b").is_err());
        assert!(n("..").is_err());
        assert!(n("./..").is_err());
        assert_eq!(n("a/..b/.c").unwrap(), "a/..b/.c");
    }

    proptest! {
        #[test]
        fn normalized_paths_stay_inside(parts in proptest::collection::vec("(\\.\\.|\\.|/|[a-c.]{1,3}|)", 0..8), lead in any::<bool>()) {
            let mut s = parts.join("/");
            if lead { s.insert(0, '/'); }
            if let Ok(comps) = normalize_path(s.as_bytes()) {
                prop_assert!(!s.starts_with('/'));
                for c in &comps {
                    let b = c.as_bytes();
                    prop_assert!(!b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/'));
                }
                let joined: PathBuf = Path::new("/r").join(comps.iter().collect::<PathBuf>());
                prop_assert!(joined.starts_with("/r"));
                prop_assert!(joined.components().all(|c| !matches!(c, std::path::Component::ParentDir)));
            } else {
                prop_assert!(s.starts_with('/') || s.split('/').any(|c| c == ".."));
            }
        }

        #[test]
        fn normalize_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = normalize_path(&b);
        }
    }
}
