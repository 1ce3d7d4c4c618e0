//! Standalone FIM: writing and reading tree manifests, `fim init` and
//! `fim check`.
//!
//! ## Manifest format
//!
//! `fim init` writes the kiln file manifest v1
//! (`https://kiln.dev/file-manifest/v1`, byte-identical to what
//! `kiln_sbom::FileManifest::to_json` writes, so `FileManifest::parse`
//! accepts it) whenever the tree fits it: every path and symlink target is
//! UTF-8, every entry is a file, dir or symlink, and every file has exactly
//! one name (link count 1). Every entry has origin `base` and sizes are 0
//! except for files (kiln's convention). A v1 manifest carries no link
//! counts; it implies them: a `file` has one name plus one per `hardlink`
//! entry naming it (see [`crate::baseline_from_manifest`]), and `fim check`
//! holds any v1 baseline (also an image's) to that.
//!
//! A tree that does not fit (a non-UTF-8 name or target, a FIFO, socket or
//! device, or a file with more than one name: a hard link, inside the tree
//! or out of it) is written with schema `https://kiln.dev/fim-manifest/v1`
//! ([`FIM_MANIFEST_SCHEMA`]): the same JSON shape with these extensions:
//! `path` and `link` are in the escaped text form of [`crate::escape`]
//! (`\xNN` for non-UTF-8 bytes, backslashes and control characters), `type`
//! may also be `fifo`, `socket`, `chardev` or `blockdev`, devices carry
//! `"rdev": <st_rdev>`, and every `file` (and `hardlink`) carries
//! `"nlink": <st_nlink>`, its number of names at init, counting names
//! outside the tree. On-disk hard links are written as plain `file`s (same
//! hash, same `nlink`). `fim check` reports another link count as a change
//! (`nlink`); a manifest written before `nlink` existed has none, and its
//! link counts are not checked. Only this crate reads this schema.
//!
//! `subject.name` is the scanned directory as given; `subject.digest` is
//! `sha256:` + the SHA-256 of the canonical entry listing, one line per
//! entry in manifest order:
//! `path TAB type TAB mode(4 octal) TAB uid TAB gid TAB size TAB sha256|- TAB link|- TAB rdev|- TAB nlink|- LF`
//! (path and link escaped as above). It names the tree state, not an image.
//!
//! Entries that could not be verified at init (unreadable, changing while
//! hashed) are left out and listed in [`Summary::problems`]; a later check
//! reports them again.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_sbom::{
    FILE_MANIFEST_SCHEMA, FileKind, FileManifest, FileOrigin, ManifestEntry, ManifestSubject,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::compare::{CompareOptions, Diff, Problem, compare};
use crate::error::DriftError;
use crate::escape::{escape, unescape};
use crate::inodes::InodeRecord;
use crate::scan::{ScanOptions, scan, scan_cached};
use crate::tree::{Entry, Kind, Meta, Stats, Status, Tree, baseline_from_manifest, parse_sha256};

/// The schema of a manifest that needs the extensions described in the
/// module documentation.
pub const FIM_MANIFEST_SCHEMA: &str = "https://kiln.dev/fim-manifest/v1";

/// What `fim init` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The manifest schema used.
    pub schema: String,
    /// `sha256:<hex>` of the canonical entry listing.
    pub digest: String,
    /// Entries written.
    pub entries: u64,
    /// Counters of the scan.
    pub stats: Stats,
    /// Paths left out because they could not be verified.
    pub problems: Vec<Problem>,
    /// Where the cache sidecar went (`None` if writing it failed).
    pub cache: Option<PathBuf>,
}

/// Options of [`fim_check_with`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Reuse hashes from the cache sidecar for files whose metadata did not
    /// change.
    pub incremental: bool,
    /// With `incremental`, hash everything anyway if the last full hash is
    /// older than this (e.g. a day); `None` = never forced.
    pub max_cache_age: Option<Duration>,
    /// The cache sidecar; default `<manifest>.cache`.
    pub cache: Option<PathBuf>,
    /// Ignored path prefixes (see [`CompareOptions::ignoring`]); also not
    /// scanned.
    pub ignore: Vec<String>,
    /// Scanner options (`exclude` is extended with `ignore`).
    pub scan: ScanOptions,
}

/// The default cache path of a manifest: `<manifest>.cache`.
pub fn cache_path(manifest: &Path) -> PathBuf {
    let mut s = OsString::from(manifest.as_os_str());
    s.push(".cache");
    PathBuf::from(s)
}

/// Scans `dir`, writes its manifest to `out` and the cache sidecar to
/// `<out>.cache`, both atomically.
pub fn fim_init(dir: &Path, out: &Path) -> Result<Summary, DriftError> {
    let tree = scan(dir, &ScanOptions::default())?;
    let name = escape(dir.as_os_str().as_bytes());
    let (bytes, schema, digest, problems, entries) = manifest_bytes(&tree, &name)?;
    // Reading the output back checks that it parses (v1: strictly).
    let baseline = read_manifest(&bytes)?.entries;
    write_atomic(out, &bytes)?;
    let cache = cache_path(out);
    let manifest_hash: [u8; 32] = Sha256::digest(&bytes).into();
    let new_cache = Cache::from_tree(&tree, None, Some((manifest_hash, baseline)));
    let cache = write_file(&cache, &new_cache.to_bytes(), false)
        .ok()
        .map(|()| cache);
    Ok(Summary {
        schema,
        digest,
        entries,
        stats: tree.stats,
        problems,
        cache,
    })
}

/// Checks `dir` against the manifest at `manifest` (a full re-hash, or an
/// incremental check through `<manifest>.cache`).
pub fn fim_check(
    dir: &Path,
    manifest: &Path,
    incremental: bool,
) -> Result<(Diff, Stats), DriftError> {
    fim_check_with(
        dir,
        manifest,
        &CheckOptions {
            incremental,
            ..CheckOptions::default()
        },
    )
}

/// The largest manifest (or cache sidecar) `kiln fim` reads: 1 GiB. A fim
/// manifest of a large tree is tens of MiB; this only stops a file that is
/// not a manifest at all from being read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// Read a manifest or cache file the user named: a regular file (a symlink
/// to one is followed), opened without blocking (a FIFO or device fails at
/// once instead of hanging), of at most [`MAX_MANIFEST_BYTES`].
pub(crate) fn read_untrusted(path: &Path) -> Result<Vec<u8>, DriftError> {
    kiln_oci::untrusted::read_capped(path, MAX_MANIFEST_BYTES, kiln_oci::untrusted::Follow::Yes)
        .map_err(|e| DriftError::io(path, e))
}

/// [`fim_check`] with every option. The cache sidecar is rewritten after
/// the check (atomically; a failure to write it is ignored).
pub fn fim_check_with(
    dir: &Path,
    manifest: &Path,
    opts: &CheckOptions,
) -> Result<(Diff, Stats), DriftError> {
    let bytes = read_untrusted(manifest)?;
    let manifest_hash: [u8; 32] = Sha256::digest(&bytes).into();
    let cache_file = opts.cache.clone().unwrap_or_else(|| cache_path(manifest));
    let mut previous = if opts.incremental {
        // An unusable cache only costs speed.
        Cache::load(&cache_file).ok().flatten()
    } else {
        None
    };
    let cached_baseline = match previous.as_mut().and_then(|c| c.baseline.take()) {
        Some((h, entries)) if h == manifest_hash => Some(entries),
        _ => None,
    };
    let previous_full = previous.as_ref().map(|c| c.last_full_ns);
    let now = crate::sys::now_ns();
    let cache = previous.filter(|c| match opts.max_cache_age {
        Some(age) => {
            let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
            now.saturating_sub(c.last_full_ns) <= age
        }
        None => true,
    });
    let ignore: Vec<&str> = opts.ignore.iter().map(String::as_str).collect();
    let cmp = CompareOptions::ignoring(&ignore);
    let mut scan_opts = opts.scan.clone();
    scan_opts.exclude.extend(cmp.ignore.iter().cloned());
    // Parsing the manifest overlaps with the scan.
    let (baseline, tree) = std::thread::scope(|s| {
        let parsed = cached_baseline
            .is_none()
            .then(|| s.spawn(|| read_manifest(&bytes).map(|m| m.entries)));
        let tree = scan_cached(dir, &scan_opts, cache.as_ref());
        let baseline = match (cached_baseline, parsed) {
            (Some(b), _) => Ok(b),
            (None, Some(h)) => h.join().unwrap_or_else(|_| {
                Err(DriftError::Internal("the manifest parser panicked".into()))
            }),
            (None, None) => Err(DriftError::Internal("no baseline".into())),
        };
        (baseline, tree)
    });
    let (baseline, tree) = (baseline?, tree?);
    let diff = compare(&baseline, &tree, &cmp);
    let keep_full = if tree.stats.full { None } else { previous_full };
    let mut new_cache = Cache::from_tree(&tree, keep_full, None);
    let unchanged = cache.as_ref().is_some_and(|c| {
        c.root_id == new_cache.root_id
            && c.last_full_ns == new_cache.last_full_ns
            && c.records == new_cache.records
    });
    if !unchanged {
        new_cache.baseline = Some((manifest_hash, baseline));
        let _ = write_file(&cache_file, &new_cache.to_bytes(), false);
    }
    Ok((diff, tree.stats))
}

/// Checks an instance's root filesystem against its image's file manifest
/// (a full re-hash), ignoring (and not scanning) the given path prefixes,
/// e.g. `["/proc", "/sys", "/dev", "/tmp", "/run"]`.
/// An image's file manifest lists its contents, not the root directory
/// itself; unless it does list `/`, the root is not compared. Link counts
/// are held to what the manifest implies (see
/// [`crate::baseline_from_manifest`]); [`check_rootfs_with`] holds them, and
/// inode numbers, to a record taken when the tree was unpacked.
pub fn check_rootfs(
    rootfs: &Path,
    baseline: &FileManifest,
    ignore: &[&str],
) -> Result<Diff, DriftError> {
    check_rootfs_with(rootfs, baseline, None, ignore).map(|(d, _)| d)
}

/// [`check_rootfs`], with the inode identity of every path held to `record`
/// when given. Also returns the identity the scan found (for a tree that
/// has no record yet, the one to keep if the diff is empty).
pub fn check_rootfs_with(
    rootfs: &Path,
    baseline: &FileManifest,
    record: Option<&InodeRecord>,
    ignore: &[&str],
) -> Result<(Diff, InodeRecord), DriftError> {
    let cmp = CompareOptions::ignoring(ignore);
    let opts = ScanOptions {
        exclude: cmp.ignore.clone(),
        ..ScanOptions::default()
    };
    let mut tree = scan(rootfs, &opts)?;
    if !baseline.entries.iter().any(|e| e.path == "/") {
        tree.entries.retain(|e| &*e.path != b"/");
    }
    let mut entries = baseline_from_manifest(baseline);
    if let Some(r) = record {
        r.apply(&mut entries);
    }
    let diff = compare(&entries, &tree, &cmp);
    Ok((diff, InodeRecord::from_tree(&tree)))
}

/// A manifest read back.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// Its schema.
    pub schema: String,
    /// `subject.name`.
    pub name: String,
    /// `subject.digest`.
    pub digest: String,
    /// Baseline entries, sorted by path bytes.
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonManifest {
    schema: String,
    subject: JsonSubject,
    entries: Vec<JsonEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSubject {
    name: String,
    digest: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    /// Names of a file's inode at init (files and hard links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nlink: Option<u64>,
    origin: String,
}

#[derive(Deserialize)]
struct SchemaOnly {
    schema: String,
}

/// Reads a kiln file manifest v1 (strictly, through `FileManifest::parse`)
/// or a fim manifest.
pub fn read_manifest(bytes: &[u8]) -> Result<LoadedManifest, DriftError> {
    let head: SchemaOnly =
        serde_json::from_slice(bytes).map_err(|e| DriftError::Manifest(e.to_string()))?;
    if head.schema == FILE_MANIFEST_SCHEMA {
        let m = FileManifest::parse(bytes)?;
        return Ok(LoadedManifest {
            entries: baseline_from_manifest(&m),
            schema: m.schema,
            name: m.subject.name,
            digest: m.subject.digest,
        });
    }
    if head.schema != FIM_MANIFEST_SCHEMA {
        return Err(DriftError::Manifest(format!(
            "unknown schema {:?} (want {FILE_MANIFEST_SCHEMA:?} or {FIM_MANIFEST_SCHEMA:?})",
            head.schema
        )));
    }
    let raw: JsonManifest =
        serde_json::from_slice(bytes).map_err(|e| DriftError::Manifest(e.to_string()))?;
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.entries.len());
    for (i, je) in raw.entries.into_iter().enumerate() {
        let bad = |why: String| DriftError::Manifest(format!("entry {i} ({:?}): {why}", je.path));
        let path = unescape(&je.path).ok_or_else(|| bad("bad escape in path".into()))?;
        if path.first() != Some(&b'/') || path.contains(&0) {
            return Err(bad("path must be absolute without NUL".into()));
        }
        if let Some(prev) = entries.last()
            && *prev.path >= *path
        {
            return Err(bad("entries must be strictly sorted by path bytes".into()));
        }
        let kind =
            Kind::from_name(&je.kind).ok_or_else(|| bad(format!("unknown type {:?}", je.kind)))?;
        let mode = (je.mode.len() == 4)
            .then(|| u32::from_str_radix(&je.mode, 8).ok())
            .flatten()
            .ok_or_else(|| bad(format!("bad mode {:?}", je.mode)))?;
        let sha256 = match (&je.sha256, kind.has_content()) {
            (Some(h), true) => Some(parse_sha256(h).ok_or_else(|| bad("bad sha256".into()))?),
            (None, false) => None,
            _ => {
                return Err(bad(
                    "sha256 must be present exactly for file and hardlink".into()
                ));
            }
        };
        let link = match (&je.link, kind) {
            (Some(l), Kind::Symlink | Kind::Hardlink) => Some(
                unescape(l)
                    .ok_or_else(|| bad("bad escape in link".into()))?
                    .into_boxed_slice(),
            ),
            (None, Kind::Symlink | Kind::Hardlink) => return Err(bad("link missing".into())),
            (Some(_), _) => return Err(bad("link on a non-link".into())),
            (None, _) => None,
        };
        if je.rdev.is_some() != kind.is_device() {
            return Err(bad("rdev must be present exactly for devices".into()));
        }
        match (je.nlink, kind.has_content()) {
            (Some(0), _) => return Err(bad("nlink must be at least 1".into())),
            (Some(_), false) => return Err(bad("nlink on an entry that is not a file".into())),
            _ => {}
        }
        entries.push(Entry {
            path: path.into_boxed_slice(),
            kind,
            mode,
            uid: je.uid,
            gid: je.gid,
            size: je.size,
            sha256,
            link,
            meta: Meta {
                rdev: je.rdev.unwrap_or(0),
                nlink: je.nlink.unwrap_or(0),
                ..Meta::default()
            },
            status: Status::Ok,
        });
    }
    Ok(LoadedManifest {
        schema: raw.schema,
        name: raw.subject.name,
        digest: raw.subject.digest,
        entries,
    })
}

type ManifestOut = (Vec<u8>, String, String, Vec<Problem>, u64);

/// The manifest of a tree: bytes, schema, digest, left-out problems, count.
pub(crate) fn manifest_bytes(tree: &Tree, name: &str) -> Result<ManifestOut, DriftError> {
    let mut problems = Vec::new();
    let mut kept: Vec<&Entry> = Vec::with_capacity(tree.entries.len());
    for e in &tree.entries {
        match &e.status {
            Status::Ok => kept.push(e),
            Status::Unstable => problems.push(Problem {
                path: escape(&e.path),
                reason: "unstable: changed while being hashed".into(),
            }),
            Status::Unreadable(why) => {
                problems.push(Problem {
                    path: escape(&e.path),
                    reason: format!("unreadable: {why}"),
                });
                // A dir we could stat but not list is still a dir.
                if e.kind == Kind::Dir {
                    kept.push(e);
                }
            }
        }
    }
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(canonical(&kept))));
    let name = if name.is_empty() {
        ".".to_string()
    } else {
        name.to_string()
    };
    let v1 = kept.iter().all(|e| {
        e.kind.in_v1()
            && (!e.kind.has_content() || e.meta.nlink == 1)
            && std::str::from_utf8(&e.path).is_ok()
            && e.link
                .as_deref()
                .is_none_or(|l| std::str::from_utf8(l).is_ok())
    });
    let size = |e: &Entry| if e.kind.has_content() { e.size } else { 0 };
    let bytes = if v1 {
        let mut entries = Vec::with_capacity(kept.len());
        for e in &kept {
            let text = |b: &[u8]| {
                String::from_utf8(b.to_vec())
                    .map_err(|_| DriftError::Internal("non-UTF-8 in v1".into()))
            };
            entries.push(ManifestEntry {
                path: text(&e.path)?,
                kind: match e.kind {
                    Kind::Dir => FileKind::Dir,
                    Kind::Symlink => FileKind::Symlink,
                    Kind::Hardlink => FileKind::Hardlink,
                    _ => FileKind::File,
                },
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: size(e),
                sha256: e.sha256.map(hex::encode),
                link: e.link.as_deref().map(text).transpose()?,
                origin: FileOrigin::Base,
            });
        }
        FileManifest {
            schema: FILE_MANIFEST_SCHEMA.to_string(),
            subject: ManifestSubject {
                name,
                digest: digest.clone(),
            },
            entries,
        }
        .to_json()
    } else {
        let m = JsonManifest {
            schema: FIM_MANIFEST_SCHEMA.to_string(),
            subject: JsonSubject {
                name,
                digest: digest.clone(),
            },
            entries: kept
                .iter()
                .map(|e| JsonEntry {
                    path: escape(&e.path),
                    kind: e.kind.as_str().to_string(),
                    mode: format!("{:04o}", e.mode & 0o7777),
                    uid: e.uid,
                    gid: e.gid,
                    size: size(e),
                    sha256: e.sha256.map(hex::encode),
                    link: e.link.as_deref().map(escape),
                    rdev: e.kind.is_device().then_some(e.meta.rdev),
                    nlink: e.kind.has_content().then_some(e.meta.nlink),
                    origin: "base".into(),
                })
                .collect(),
        };
        let mut b =
            serde_json::to_vec_pretty(&m).map_err(|e| DriftError::Internal(e.to_string()))?;
        b.push(b'\n');
        b
    };
    let schema = if v1 {
        FILE_MANIFEST_SCHEMA
    } else {
        FIM_MANIFEST_SCHEMA
    };
    Ok((
        bytes,
        schema.to_string(),
        digest,
        problems,
        kept.len() as u64,
    ))
}

/// The canonical entry listing hashed into `subject.digest`.
fn canonical(entries: &[&Entry]) -> Vec<u8> {
    let mut s = String::with_capacity(entries.len() * 120);
    for e in entries {
        let content = e.kind.has_content();
        let _ = writeln!(
            s,
            "{}\t{}\t{:04o}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            escape(&e.path),
            e.kind.as_str(),
            e.mode & 0o7777,
            e.uid,
            e.gid,
            if content { e.size } else { 0 },
            e.sha256.map_or_else(|| "-".to_string(), hex::encode),
            e.link.as_deref().map_or_else(|| "-".to_string(), escape),
            if e.kind.is_device() {
                e.meta.rdev.to_string()
            } else {
                "-".to_string()
            },
            if content {
                e.meta.nlink.to_string()
            } else {
                "-".to_string()
            },
        );
    }
    s.into_bytes()
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// fsync and rename, so readers see the old or the new file, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DriftError> {
    write_file(path, bytes, true)
}

/// [`write_atomic`], with the fsyncs optional: the cache sidecar is a
/// checksummed hint, so a torn one after a crash only costs a full re-hash.
fn write_file(path: &Path, bytes: &[u8], sync: bool) -> Result<(), DriftError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| DriftError::io(path, std::io::Error::other("no file name")))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file_name);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp.{}.{seq}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync && let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DriftError::io(path, e)
    })
}
