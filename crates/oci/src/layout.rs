//! The content store: an OCI image layout with atomic, concurrent-safe writes.
//!
//! * Blobs are written into a private staging directory inside the layout,
//!   fsynced, and renamed into `blobs/sha256/` only when the whole operation
//!   succeeded ([`Staging::commit`]). A failed build leaves no blob behind.
//! * `index.json` is rewritten under an exclusive lock (read, modify, write a
//!   temp file, fsync, rename, fsync the directory), so two builds at once
//!   both land and neither corrupts the index.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::untrusted::{self, BoundedReader, Follow};
use crate::{Descriptor, Digest, ImageIndex, ImageManifest, OciError, annotations, media};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// kiln's private area inside a layout: staging dirs and the index lock.
const PRIVATE: &str = ".kiln";
/// The lock file inside each staging directory, held (flock) while in use.
const STAGE_LOCK: &str = ".lock";
/// Largest manifest or index read into memory (the distribution spec
/// suggests 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest blob [`Store::read_descriptor`] reads into memory (manifests,
/// configs, signatures, SBOMs); layers are streamed instead.
pub const MAX_IN_MEMORY_BLOB: u64 = 256 << 20;
/// Largest `index.json` or `oci-layout` read.
const MAX_INDEX_SIZE: u64 = 64 << 20;

/// An OCI image layout on disk.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// Record when each manifest entered the layout (`dev.kiln.stored`):
    /// on for kiln's store, off for exports (whose index stays reproducible).
    stamp: bool,
    /// `.kiln/use.lock`, held shared by every open store (a build, pull or
    /// sign between writing its blobs and tagging them) and exclusively by
    /// `kiln gc`, so gc never runs in the middle of a writer. `None` when the
    /// layout is not writable (a read-only source layout).
    _use: Option<std::sync::Arc<File>>,
}

/// How a store is opened with respect to `kiln gc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Any reader or writer: gc waits for it, it waits for gc.
    Shared,
    /// gc: alone with the store.
    Exclusive,
    /// gc, without waiting: `WouldBlock` while another process uses it.
    TryExclusive,
}

fn use_lock(root: &Path, how: Use) -> Result<Option<std::sync::Arc<File>>, OciError> {
    let private = root.join(PRIVATE);
    let path = private.join("use.lock");
    let opened = fs::create_dir_all(&private).and_then(|()| {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
    });
    let file = match opened {
        Ok(f) => f,
        // A layout kiln cannot write to is only read: nothing for gc to wait on.
        Err(e)
            if how == Use::Shared
                && matches!(
                    e.kind(),
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
                ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(OciError::io(&path, e)),
    };
    match how {
        Use::Shared => file.lock_shared().map_err(|e| OciError::io(&path, e))?,
        Use::Exclusive => file.lock().map_err(|e| OciError::io(&path, e))?,
        Use::TryExclusive => file.try_lock().map_err(|e| {
            OciError::io(
                &path,
                match e {
                    fs::TryLockError::WouldBlock => io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the store is in use by another kiln process",
                    ),
                    fs::TryLockError::Error(e) => e,
                },
            )
        })?,
    }
    Ok(Some(std::sync::Arc::new(file)))
}

/// The exclusive lock on a layout's `index.json` (held until dropped).
pub struct IndexLock {
    _file: File,
}

/// When a manifest entered the store, as the `dev.kiln.stored` annotation holds it.
pub fn now_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::time::rfc3339(secs)
}

/// A parsed image reference: `name:tag`, `name@sha256:<hex>`, or `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    Tag {
        name: String,
        tag: String,
    },
    Digest {
        name: Option<String>,
        digest: Digest,
    },
}

/// A tagged image listed in `index.json`.
#[derive(Clone, Debug)]
pub struct TaggedImage {
    pub name: String,
    pub tag: String,
    /// With its `ref.name` annotation (kiln's `dev.kiln.stored` is in `stored`).
    pub descriptor: Descriptor,
    /// When it entered the store (RFC 3339), if recorded.
    pub stored: Option<String>,
}

impl ImageRef {
    /// Parse a reference. The name follows the distribution-spec grammar
    /// (lowercase path components, optional `host[:port]/` prefix); a missing
    /// tag is refused rather than silently meaning `latest`.
    pub fn parse(s: &str) -> Result<ImageRef, OciError> {
        let bad = |reason: &str| OciError::InvalidRef {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(hex) = s.strip_prefix("sha256:") {
            return Ok(ImageRef::Digest {
                name: None,
                digest: Digest::from_hex(hex)?,
            });
        }
        if let Some((name, digest)) = s.split_once('@') {
            validate_name(name).map_err(|r| bad(&r.to_string()))?;
            return Ok(ImageRef::Digest {
                name: Some(name.to_string()),
                digest: digest.parse()?,
            });
        }
        let (name, tag) = match s.rfind(':') {
            Some(i) if !s[i + 1..].contains('/') => (&s[..i], &s[i + 1..]),
            _ => return Err(bad("expected name:tag, name@sha256:<hex> or sha256:<hex>")),
        };
        validate_name(name).map_err(|r| bad(&r.to_string()))?;
        validate_tag(tag).map_err(|r| bad(&r.to_string()))?;
        Ok(ImageRef::Tag {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::Tag { name, tag } => write!(f, "{name}:{tag}"),
            ImageRef::Digest {
                name: Some(n),
                digest,
            } => write!(f, "{n}@{digest}"),
            ImageRef::Digest { name: None, digest } => write!(f, "{digest}"),
        }
    }
}

/// Why a repository name or tag is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name must be 1 to 255 characters")]
    Length,
    #[error("registry host {0:?} is not valid")]
    Host(String),
    #[error(
        "name component {0:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
    )]
    Component(String),
    #[error("tag {0:?} must match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    Tag(String),
}

/// distribution-spec repository name: components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
/// joined by `/`, optionally behind a registry host (`localhost:5000/`).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 255 {
        return Err(NameError::Length);
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains(':') || parts[0].contains('.') || parts[0] == "localhost")
    {
        let host = parts.remove(0);
        let ok = host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':'));
        if !ok || host.starts_with(['.', '-', ':']) {
            return Err(NameError::Host(host.into()));
        }
    }
    for p in parts {
        let ok = !p.is_empty()
            && p.bytes()
                .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
            && p.as_bytes()[0].is_ascii_alphanumeric()
            && p.as_bytes()[p.len() - 1].is_ascii_alphanumeric()
            && !p.contains("..")
            && !p.contains("___");
        if !ok {
            return Err(NameError::Component(p.into()));
        }
    }
    Ok(())
}

/// distribution-spec tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Tag(tag.into()))
    }
}

impl Store {
    /// Open the layout at `root`, creating an empty one if the directory is
    /// missing or empty.
    pub fn open_or_init(root: impl Into<PathBuf>) -> Result<Store, OciError> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs/sha256")).map_err(|e| OciError::io(&root, e))?;
        let _use = use_lock(&root, Use::Shared)?;
        let store = Store {
            root,
            stamp: true,
            _use,
        };
        store.sweep_stale_stages();
        if !store.root.join(LAYOUT_FILE).exists() {
            store.write_atomic(&store.root.join(LAYOUT_FILE), LAYOUT_CONTENT)?;
        }
        if !store.root.join("index.json").exists() {
            store.update_index(|_| Ok(()))?;
        }
        store.check_layout()?;
        Ok(store)
    }

    /// Open an existing layout read-only (a base image, an export).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, OciError> {
        Store::open_as(root.into(), Use::Shared)
    }

    /// [`Store::open`] for `kiln gc`: waits until no other process has the
    /// store open, and keeps every other opener waiting until dropped.
    pub fn open_exclusive(root: impl Into<PathBuf>) -> Result<Store, OciError> {
        Store::open_as(root.into(), Use::Exclusive)
    }

    /// [`Store::open_exclusive`] without waiting: an error whose source is
    /// `WouldBlock` while another process has the store open.
    pub fn try_open_exclusive(root: impl Into<PathBuf>) -> Result<Store, OciError> {
        Store::open_as(root.into(), Use::TryExclusive)
    }

    fn open_as(root: PathBuf, how: Use) -> Result<Store, OciError> {
        // Check before creating `.kiln/` in something that is not a layout.
        let probe = Store {
            root,
            stamp: true,
            _use: None,
        };
        probe.check_layout()?;
        let _use = use_lock(&probe.root, how)?;
        Ok(Store { _use, ..probe })
    }

    /// This layout without `dev.kiln.stored` stamps on what is tagged or
    /// recorded from now on (an export's `index.json` stays reproducible).
    pub fn unstamped(mut self) -> Store {
        self.stamp = false;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn check_layout(&self) -> Result<(), OciError> {
        let not = |reason: String| OciError::NotALayout {
            path: self.root.clone(),
            reason,
        };
        let bytes = untrusted::read_capped(&self.root.join(LAYOUT_FILE), 4096, Follow::No)
            .map_err(|e| not(format!("cannot read {LAYOUT_FILE}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| not(format!("{LAYOUT_FILE} is not JSON: {e}")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => Ok(()),
            other => Err(not(format!("unsupported imageLayoutVersion {other:?}"))),
        }
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the blob is present as a regular file (a symlink or any other
    /// kind of file in `blobs/` does not count).
    pub fn has_blob(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.file_type().is_file())
    }

    fn blob_err(&self, d: &Digest, e: io::Error) -> OciError {
        match e.kind() {
            io::ErrorKind::NotFound => OciError::MissingBlob(d.to_string()),
            _ => OciError::io(self.blob_path(d), e),
        }
    }

    /// Open the blob `desc` names for streaming: a regular file (a symlink,
    /// FIFO or device in `blobs/` is refused without reading it) whose size is
    /// the descriptor's. The reader yields exactly `desc.size` bytes or an
    /// error; it never reads more than one byte past them. The caller still
    /// checks the digest of what it read.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<BoundedReader<File>, OciError> {
        let path = self.blob_path(&desc.digest);
        let (f, size) = untrusted::open_regular(&path, Follow::No)
            .map_err(|e| self.blob_err(&desc.digest, e))?;
        if size != desc.size {
            return Err(OciError::SizeMismatch {
                digest: desc.digest.to_string(),
                expected: desc.size,
                actual: size,
            });
        }
        Ok(BoundedReader::new(f, desc.size))
    }

    /// Read a whole blob known only by digest (a manifest or index, at most
    /// [`MAX_MANIFEST_SIZE`]), checking that it hashes to its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, OciError> {
        let path = self.blob_path(d);
        let bytes = untrusted::read_capped(&path, MAX_MANIFEST_SIZE, Follow::No)
            .map_err(|e| self.blob_err(d, e))?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(OciError::DigestMismatch {
                digest: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Read a blob named by a descriptor, checking size and digest.
    pub fn read_descriptor(&self, desc: &Descriptor) -> Result<Vec<u8>, OciError> {
        // Bounded: a regular file, read to at most the larger of its
        // descriptor's size and the manifest limit (plus one byte). Within
        // that, content is checked before length, so a tampered blob is
        // reported as corrupt.
        if desc.size > MAX_IN_MEMORY_BLOB {
            return Err(OciError::TooLarge {
                digest: desc.digest.to_string(),
                size: desc.size,
                limit: MAX_IN_MEMORY_BLOB,
            });
        }
        let cap = desc.size.max(MAX_MANIFEST_SIZE);
        let bytes = untrusted::read_capped(&self.blob_path(&desc.digest), cap, Follow::No)
            .map_err(|e| match e.kind() {
                io::ErrorKind::FileTooLarge => OciError::SizeMismatch {
                    digest: desc.digest.to_string(),
                    expected: desc.size,
                    actual: fs::symlink_metadata(self.blob_path(&desc.digest))
                        .map(|m| m.len())
                        .unwrap_or(cap.saturating_add(1)),
                },
                _ => self.blob_err(&desc.digest, e),
            })?;
        let actual = Digest::of(&bytes);
        if actual != desc.digest {
            return Err(OciError::DigestMismatch {
                digest: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if bytes.len() as u64 != desc.size {
            return Err(OciError::SizeMismatch {
                digest: desc.digest.to_string(),
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// A read error of a [`BoundedReader`]: a size mismatch when the blob
    /// was longer or shorter than its descriptor, else the I/O error.
    fn size_or_io(&self, desc: &Descriptor, path: &Path, seen: u64, e: io::Error) -> OciError {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => OciError::SizeMismatch {
                digest: desc.digest.to_string(),
                expected: desc.size,
                actual: seen,
            },
            _ => OciError::io(path, e),
        }
    }

    /// Stream a blob through a hasher and check it against its descriptor.
    pub fn verify_blob(&self, desc: &Descriptor) -> Result<(), OciError> {
        let path = self.blob_path(&desc.digest);
        let mut f = self.open_blob(desc)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = f
                .read(&mut buf)
                .map_err(|e| self.size_or_io(desc, &path, f.seen(), e))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
        }
        let actual = Digest::from_bytes(h.finalize().into());
        if actual != desc.digest {
            return Err(OciError::DigestMismatch {
                digest: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// A private staging area for the blobs of one operation. It carries a
    /// lock file held (flock) for as long as the [`Staging`] lives, so
    /// [`Store::sweep_stale_stages`] never removes a live one.
    pub fn staging(&self) -> Result<Staging, OciError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let base = self.root.join(PRIVATE).join("tmp");
        fs::create_dir_all(&base).map_err(|e| OciError::io(&base, e))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "stage-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        // Made under a name the sweep ignores, locked, then renamed into
        // place: a sweep never sees a stage directory without its held lock.
        let new = base.join(format!(".new-{name}"));
        let dir = base.join(&name);
        fs::create_dir(&new).map_err(|e| OciError::io(&new, e))?;
        let locked = (|| {
            let lock_path = new.join(STAGE_LOCK);
            let lock = File::create(&lock_path)?;
            lock.lock()?;
            fs::rename(&new, &dir)?;
            Ok(lock)
        })();
        let lock = match locked {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&new);
                return Err(OciError::io(&dir, e));
            }
        };
        Ok(Staging {
            store: self.clone(),
            dir,
            staged: BTreeMap::new(),
            seq: 0,
            committed: false,
            _lock: lock,
        })
    }

    /// Remove staging directories left by processes that died (killed, out
    /// of power) mid-operation: every `stage-*` whose lock can be taken
    /// without waiting. A stage a live process holds is kept. Best effort:
    /// returns how many were removed.
    pub fn sweep_stale_stages(&self) -> usize {
        let base = self.root.join(PRIVATE).join("tmp");
        let Ok(rd) = fs::read_dir(&base) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let name = e.file_name();
            let is_stage = name.to_str().is_some_and(|n| n.starts_with("stage-"));
            if !is_stage || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let dir = e.path();
            // A stage without a lock file predates stage locks: nobody holds it.
            let lock = match File::open(dir.join(STAGE_LOCK)) {
                Ok(f) => match f.try_lock() {
                    Ok(()) => Some(f),
                    Err(_) => continue, // held by a live process (or unlockable)
                },
                Err(err) if err.kind() == io::ErrorKind::NotFound => None,
                Err(_) => continue,
            };
            if fs::remove_dir_all(&dir).is_ok() {
                removed += 1;
            }
            drop(lock);
        }
        removed
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<ImageIndex, OciError> {
        let path = self.root.join("index.json");
        let bytes = untrusted::read_capped(&path, MAX_INDEX_SIZE, Follow::No)
            .map_err(|e| OciError::io(&path, e))?;
        crate::types::from_json(&bytes, &path.display().to_string())
    }

    /// Read-modify-write `index.json` under an exclusive lock.
    pub fn update_index(
        &self,
        f: impl FnOnce(&mut ImageIndex) -> Result<(), OciError>,
    ) -> Result<(), OciError> {
        let lock = self.lock_index()?;
        let path = self.root.join("index.json");
        let mut index = if path.exists() {
            self.index()?
        } else {
            ImageIndex::new()
        };
        f(&mut index)?;
        self.write_index(&lock, &index)?;
        drop(lock);
        Ok(())
    }

    /// Take the exclusive lock on `index.json` (blocks until it is free).
    pub fn lock_index(&self) -> Result<IndexLock, OciError> {
        let private = self.root.join(PRIVATE);
        fs::create_dir_all(&private).map_err(|e| OciError::io(&private, e))?;
        let lock_path = private.join("index.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| OciError::io(&lock_path, e))?;
        file.lock().map_err(|e| OciError::io(&lock_path, e))?;
        Ok(IndexLock { _file: file })
    }

    /// Replace `index.json` atomically; the caller holds the index lock.
    pub fn write_index(&self, _lock: &IndexLock, index: &ImageIndex) -> Result<(), OciError> {
        self.write_atomic(&self.root.join("index.json"), &index.to_bytes())
    }

    /// Point `name:tag` at `manifest`. An image the tag pointed at before
    /// stays in `index.json`, untagged, so it is still addressable by digest
    /// until `kiln gc` removes it; every image entry carries when it entered
    /// the store (`dev.kiln.stored`), which is what gc ages it by.
    pub fn tag(&self, name: &str, tag: &str, manifest: &Descriptor) -> Result<(), OciError> {
        let refname = format!("{name}:{tag}");
        let now = now_stamp();
        self.update_index(|idx| {
            let is_ref =
                |d: &Descriptor| d.annotations.get(annotations::REF_NAME) == Some(&refname);
            let displaced: Vec<Descriptor> = idx
                .manifests
                .iter()
                .filter(|d| is_ref(d))
                .cloned()
                .collect();
            idx.manifests.retain(|d| !is_ref(d));
            // When this digest first entered the store, if it is already here.
            let stored = idx
                .manifests
                .iter()
                .chain(&displaced)
                .filter(|d| d.digest == manifest.digest)
                .filter_map(|d| d.annotations.get(annotations::STORED))
                .min()
                .cloned()
                .unwrap_or(now.clone());
            // An image a moved tag left untagged is redundant once tagged
            // again (a referrer entry of the same digest is not: it stays).
            idx.manifests.retain(|d| {
                d.digest != manifest.digest
                    || !d.annotations.contains_key(annotations::UNTAGGED_FROM)
            });
            for mut old in displaced {
                if old.digest == manifest.digest
                    || idx.manifests.iter().any(|d| d.digest == old.digest)
                {
                    continue;
                }
                old.annotations.remove(annotations::REF_NAME);
                old.annotations
                    .insert(annotations::UNTAGGED_FROM.to_string(), refname.clone());
                old.annotations
                    .entry(annotations::STORED.to_string())
                    .or_insert_with(|| now.clone());
                idx.manifests.push(old);
            }
            let mut d = manifest.clone();
            d.annotations.remove(annotations::STORED);
            d.annotations.remove(annotations::UNTAGGED_FROM);
            if self.stamp {
                d.annotations
                    .insert(annotations::STORED.to_string(), stored);
            }
            d.annotations
                .insert(annotations::REF_NAME.to_string(), refname.clone());
            idx.manifests.push(d);
            sort_index(idx);
            Ok(())
        })
    }

    /// Record untagged manifests (referrer artifacts) in `index.json`, as
    /// oras and the image-layout spec's discovery by `subject` expect.
    pub fn add_untagged(&self, manifests: &[Descriptor]) -> Result<(), OciError> {
        let now = now_stamp();
        self.update_index(|idx| {
            for m in manifests {
                let mut present = false;
                for d in idx.manifests.iter_mut() {
                    if d.digest == m.digest && !d.annotations.contains_key(annotations::REF_NAME) {
                        // Recorded in its own right now, not only as what a
                        // moved tag left behind: a later retag keeps it.
                        d.annotations.remove(annotations::UNTAGGED_FROM);
                        present = true;
                    }
                }
                if !present {
                    let mut m = m.clone();
                    m.annotations.remove(annotations::STORED);
                    m.annotations.remove(annotations::UNTAGGED_FROM);
                    if self.stamp {
                        m.annotations
                            .insert(annotations::STORED.to_string(), now.clone());
                    }
                    idx.manifests.push(m);
                }
            }
            sort_index(idx);
            Ok(())
        })
    }

    /// Every tagged image, sorted by name and tag.
    pub fn images(&self) -> Result<Vec<TaggedImage>, OciError> {
        let mut out = Vec::new();
        for d in self.index()?.manifests {
            let Some(r) = d.annotations.get(annotations::REF_NAME) else {
                continue;
            };
            let (name, tag) = match r.rfind(':') {
                Some(i) if !r[i + 1..].contains('/') => {
                    (r[..i].to_string(), r[i + 1..].to_string())
                }
                _ => (String::new(), r.clone()),
            };
            let mut descriptor = d;
            let stored = descriptor.annotations.remove(annotations::STORED);
            out.push(TaggedImage {
                name,
                tag,
                descriptor,
                stored,
            });
        }
        out.sort_by(|a, b| (&a.name, &a.tag).cmp(&(&b.name, &b.tag)));
        Ok(out)
    }

    /// Find the manifest descriptor an image reference names.
    pub fn resolve(&self, r: &ImageRef) -> Result<Descriptor, OciError> {
        let index = self.index()?;
        let found = match r {
            ImageRef::Tag { name, tag } => {
                let want = format!("{name}:{tag}");
                index
                    .manifests
                    .into_iter()
                    .find(|d| d.annotations.get(annotations::REF_NAME) == Some(&want))
            }
            ImageRef::Digest { digest, .. } => {
                index.manifests.into_iter().find(|d| d.digest == *digest)
            }
        };
        let mut d = found.ok_or_else(|| OciError::UnknownImage(r.to_string()))?;
        d.annotations.remove(annotations::REF_NAME);
        d.annotations.remove(annotations::STORED);
        d.annotations.remove(annotations::UNTAGGED_FROM);
        Ok(d)
    }

    /// Manifests in `index.json` whose `subject` is `subject` (OCI 1.1 referrers).
    pub fn referrers(
        &self,
        subject: &Digest,
    ) -> Result<Vec<(Descriptor, ImageManifest)>, OciError> {
        let mut out = Vec::new();
        for d in self.index()?.manifests {
            if !media::is_manifest(&d.media_type)
                || d.annotations.contains_key(annotations::REF_NAME)
            {
                continue;
            }
            let bytes = self.read_descriptor(&d)?;
            let m = ImageManifest::from_bytes(&bytes, &d.digest.to_string())?;
            if m.subject.as_ref().map(|s| &s.digest) == Some(subject) {
                let mut d = d;
                d.annotations.remove(annotations::STORED);
                d.annotations.remove(annotations::UNTAGGED_FROM);
                out.push((d, m));
            }
        }
        Ok(out)
    }

    /// Write `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), OciError> {
        write_atomic(path, bytes)
    }
}

fn sort_index(idx: &mut ImageIndex) {
    idx.manifests.sort_by(|a, b| {
        let ka = a.annotations.get(annotations::REF_NAME);
        let kb = b.annotations.get(annotations::REF_NAME);
        (ka.is_none(), ka, a.digest).cmp(&(kb.is_none(), kb, b.digest))
    });
}

/// Write `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OciError> {
    // A bare file name has an empty parent: that is the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| OciError::io(path, e))
}

/// Ask the kernel to start writing `len` bytes at `offset` (0, 0: the whole
/// file) to the device without waiting, so a later fsync finds little left
/// to do. A hint only: errors are ignored (fsync reports real failures).
pub fn start_writeback(f: &File, offset: u64, len: u64) {
    crate::sys::start_writeback(f, offset, len);
}

/// A file writer that starts background writeback of every completed
/// `every` bytes, so writing a large blob overlaps with the device.
pub struct WritebackFile {
    file: File,
    written: u64,
    flushed_to: u64,
    every: u64,
}

impl WritebackFile {
    pub fn new(file: File, every: u64) -> WritebackFile {
        WritebackFile {
            file,
            written: 0,
            flushed_to: 0,
            every: every.max(1),
        }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.flushed_to >= self.every {
            start_writeback(&self.file, self.flushed_to, self.written - self.flushed_to);
            self.flushed_to = self.written;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// fsync a directory so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Blobs written for one operation, invisible until [`Staging::commit`].
/// Dropping an uncommitted staging area deletes everything in it.
pub struct Staging {
    store: Store,
    dir: PathBuf,
    staged: BTreeMap<Digest, PathBuf>,
    seq: u64,
    committed: bool,
    /// Held (flock) while this staging area is in use; released on drop,
    /// after the directory is gone.
    _lock: File,
}

impl Staging {
    /// A fresh file in the staging area, for streaming a large blob.
    pub fn temp_file(&mut self) -> Result<(File, PathBuf), OciError> {
        self.seq += 1;
        let p = self.dir.join(format!("blob-{}", self.seq));
        let f = File::create(&p).map_err(|e| OciError::io(&p, e))?;
        Ok((f, p))
    }

    /// Adopt a finished temp file as the blob `digest`. The caller computed
    /// the digest while writing. Writeback to the device starts now, in the
    /// background; [`Staging::commit`] waits for it (fsync) before any blob
    /// becomes visible.
    pub fn adopt(&mut self, path: PathBuf, digest: Digest) -> Result<(), OciError> {
        let f = File::open(&path).map_err(|e| OciError::io(&path, e))?;
        start_writeback(&f, 0, 0);
        if self.store.has_blob(&digest) || self.staged.contains_key(&digest) {
            // A blob this operation reuses is young again: `kiln gc` keeps
            // unreferenced blobs inside its window, so it cannot delete it
            // between this commit and the tag that references it.
            if let Ok(f) = File::open(self.store.blob_path(&digest)) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            let _ = fs::remove_file(&path);
        } else {
            self.staged.insert(digest, path);
        }
        Ok(())
    }

    /// Copy the blob `desc` from another store (a base image, a layout being
    /// imported) into staging: read through [`Store::open_blob`] (a regular
    /// file of exactly `desc.size` bytes, never read past size + 1), hashed
    /// as it is copied, adopted only if the digest matches (a blob already
    /// here is still read and checked, then dropped). Returns the number of
    /// bytes read.
    pub fn copy_from(&mut self, src: &Store, desc: &Descriptor) -> Result<u64, OciError> {
        let src_path = src.blob_path(&desc.digest);
        let mut r = src.open_blob(desc)?;
        let (out, tmp) = self.temp_file()?;
        let res = (|| {
            let mut w = crate::Sha256Writer::new(io::BufWriter::with_capacity(1 << 20, out));
            io::copy(&mut r, &mut w).map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                    src.size_or_io(desc, &src_path, r.seen(), e)
                }
                _ => OciError::io(&src_path, e),
            })?;
            let (actual, n, inner) = w.finish();
            inner
                .into_inner()
                .map_err(|e| OciError::io(&tmp, e.into_error()))?;
            if actual != desc.digest {
                return Err(OciError::DigestMismatch {
                    digest: desc.digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(n)
        })();
        match res {
            Ok(n) => {
                self.adopt(tmp, desc.digest)?;
                Ok(n)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Stage a small blob held in memory; returns its descriptor.
    pub fn put(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, OciError> {
        self.put_hashed(media_type, bytes, Digest::of(bytes))
    }

    /// [`Staging::put`] for bytes whose digest the caller already computed
    /// (e.g. on another thread). `digest` must be the SHA-256 of `bytes`.
    pub fn put_hashed(
        &mut self,
        media_type: &str,
        bytes: &[u8],
        digest: Digest,
    ) -> Result<Descriptor, OciError> {
        if !self.store.has_blob(&digest) && !self.staged.contains_key(&digest) {
            let (mut f, p) = self.temp_file()?;
            f.write_all(bytes).map_err(|e| OciError::io(&p, e))?;
            drop(f);
            self.adopt(p, digest)?;
        }
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Whether a blob is already present in the store or staged.
    pub fn has(&self, d: &Digest) -> bool {
        self.staged.contains_key(d) || self.store.has_blob(d)
    }

    /// Move every staged blob into `blobs/sha256/` and make it durable.
    pub fn commit(mut self) -> Result<(), OciError> {
        let blobs = self.store.root.join("blobs/sha256");
        // Durable first (most writeback already happened since adopt), then
        // visible: a crash can lose a build, never expose a torn blob.
        for p in self.staged.values() {
            File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| OciError::io(p, e))?;
        }
        for (d, p) in std::mem::take(&mut self.staged) {
            let dst = self.store.blob_path(&d);
            fs::rename(&p, &dst).map_err(|e| OciError::io(&dst, e))?;
        }
        sync_dir(&blobs).map_err(|e| OciError::io(&blobs, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests;
