//! The synced advisory set (`kiln advisories sync`): an OSV export fetched
//! over HTTP(S), checked, unpacked and kept under the state directory, and
//! the set `kiln scan` uses when it is given no `--advisories`.
//!
//! Fetching ([`sync`]): a `GET` of the export (osv.dev's per-ecosystem
//! `all.zip`, [`DEFAULT_URL`] unless another is given) with timeouts on
//! connecting, on the response and on every read. It must answer 200 with a
//! `Content-Type` of `application/zip` (or `application/x-zip-compressed`,
//! `application/octet-stream`), be at most [`SyncOptions::max_bytes`] long,
//! and deliver every byte its `Content-Length` announces (a truncated
//! download is an error). Its SHA-256 is the archive digest. It is unpacked
//! with [`crate::osvzip`]'s safety rules and loaded as advisories
//! ([`AdvisoryDb::load`], strictly: one bad record refuses the export); an
//! export without a single Debian advisory is refused.
//!
//! Layout under `<state>/advisories/`: `<hex>/` (the archive digest) holds
//! `osv/` (the records) and `set.json` ([`SyncedSet`]); it is written as a
//! temporary directory and renamed into place whole. `current` names the set
//! scans use (a [`SyncedSet`] in JSON, with this fetch's time), replaced by
//! an atomic rename. Nothing changes when any check fails. [`prune`] removes
//! sets other than the current and the previous one.
//!
//! Loading ([`load_current`]) reads `current`, loads that set's records and
//! checks that their set digest ([`AdvisoryDb::set_digest`]) is the one
//! recorded when they were synced: records changed since are an error.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ScanError;
use crate::osv::AdvisoryDb;
use crate::osvzip::{self, ZipLimits};

/// osv.dev's export of every Debian advisory.
pub const DEFAULT_URL: &str = "https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip";

/// `Content-Type`s accepted for an export.
pub const CONTENT_TYPES: [&str; 3] = [
    "application/zip",
    "application/x-zip-compressed",
    "application/octet-stream",
];

/// Everything that can make a sync, or loading the synced set, fail.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{url}: {source}")]
    Http {
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{url}: HTTP status {status} (expected 200)")]
    Status { url: String, status: u16 },
    #[error(
        "{url}: content type {} is not a zip archive (expected application/zip or application/octet-stream)",
        found.as_deref().map_or("(none)".to_string(), |f| format!("{f:?}"))
    )]
    ContentType { url: String, found: Option<String> },
    #[error("{url}: more than {limit} bytes, refused (the limit is --max-bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: truncated download: {got} of the {expected} bytes announced")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: reading the download: {source}")]
    Read {
        url: String,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: not a readable zip archive: {source}")]
    Zip {
        archive: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{archive}: entry {entry:?}: {reason}; the archive is refused")]
    Unsafe {
        archive: String,
        entry: String,
        reason: String,
    },
    #[error("{url}: the export's advisories: {source}")]
    Advisories {
        url: String,
        #[source]
        source: ScanError,
    },
    #[error(
        "{url}: the export holds no Debian advisory ({files} record file(s), {non_debian} without a \
         Debian entry); is it the Debian export?"
    )]
    Empty {
        url: String,
        files: usize,
        non_debian: usize,
    },
    #[error("{path}: {message} (run `kiln advisories sync` again)")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FeedError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> FeedError {
        FeedError::Io {
            path: path.into(),
            source,
        }
    }
}

/// How to fetch.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub url: String,
    /// For connecting, for the response, and for each read.
    pub timeout: Duration,
    /// Largest archive downloaded.
    pub max_bytes: u64,
    pub zip: ZipLimits,
}

impl SyncOptions {
    pub fn new(url: &str) -> SyncOptions {
        SyncOptions {
            url: url.to_string(),
            timeout: Duration::from_secs(60),
            max_bytes: 1 << 30,
            zip: ZipLimits::default(),
        }
    }
}

/// One synced advisory set: what `current` and each set's `set.json` hold,
/// and what a scan that used it records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncedSet {
    pub url: String,
    /// `sha256:<hex>` of the downloaded archive.
    pub archive_digest: String,
    /// Archive size in bytes.
    pub archive_bytes: u64,
    /// When it was fetched, RFC 3339 UTC.
    pub fetched_at: String,
    /// [`AdvisoryDb::set_digest`] of its records.
    pub set_digest: String,
    /// Record files, and archive entries skipped (not `*.json`).
    pub files: usize,
    pub skipped: usize,
    /// Debian advisories (any release).
    pub count: usize,
    /// The newest `modified` among them.
    pub newest_modified: Option<String>,
}

/// What a scan records about the synced set it used (also in
/// [`crate::report::AdvisorySummary::feed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRecord {
    pub url: String,
    pub archive_digest: String,
    pub fetched_at: String,
}

/// What [`sync`] did.
#[derive(Clone, Debug)]
pub struct Synced {
    pub set: SyncedSet,
    /// The same archive was already stored: only `current` changed.
    pub unchanged: bool,
    pub previous: Option<SyncedSet>,
}

/// `<state>/advisories`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("advisories")
}

/// Fetch, check, store and make current the export at `opts.url`
/// ([`fetch`] then [`make_current`]).
pub fn sync(state_dir: &Path, opts: &SyncOptions, now: SystemTime) -> Result<Synced, FeedError> {
    let s = fetch(state_dir, opts, now)?;
    make_current(state_dir, &s.set)?;
    Ok(s)
}

/// Make `set` (stored by [`fetch`]) the one scans use: `current` replaced atomically.
pub fn make_current(state_dir: &Path, set: &SyncedSet) -> Result<(), FeedError> {
    write_pointer(&dir(state_dir).join("current"), set)
}

/// Remove stored sets other than the current one and `keep` (the previous one, which a
/// scan that started before the switch may still be reading), and temporaries of syncs
/// that died. Best effort: what cannot be removed stays; the names of what was removed.
pub fn prune(state_dir: &Path, keep: &[&SyncedSet]) -> Vec<String> {
    let root = dir(state_dir);
    let mut keep: Vec<String> = keep
        .iter()
        .filter_map(|s| s.archive_digest.strip_prefix("sha256:").map(str::to_string))
        .collect();
    match current(state_dir) {
        Ok(Some(c)) => keep.extend(c.archive_digest.strip_prefix("sha256:").map(str::to_string)),
        // Without a readable pointer nothing is known to be unused.
        _ => return Vec::new(),
    }
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(&root) else {
        return removed;
    };
    let day = Duration::from_secs(86_400);
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_set = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let stale_tmp = (name.starts_with(".tmp-") || name.starts_with(".old-"))
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
        if ((is_set && !keep.contains(&name)) || stale_tmp) && fs::remove_dir_all(e.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

/// Fetch, check and store the export at `opts.url`, without making it current
/// (a caller records the change first, then calls [`make_current`]).
pub fn fetch(state_dir: &Path, opts: &SyncOptions, now: SystemTime) -> Result<Synced, FeedError> {
    let root = dir(state_dir);
    fs::create_dir_all(&root).map_err(|e| FeedError::io(&root, e))?;
    // A damaged pointer must not stop the sync that replaces it.
    let previous = current(state_dir).ok().flatten();
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    fs::create_dir(&tmp).map_err(|e| FeedError::io(&tmp, e))?;
    let res = fetch_into(&root, &tmp, opts, now);
    if tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    let (set, unchanged) = res?;
    Ok(Synced {
        set,
        unchanged,
        previous,
    })
}

fn fetch_into(
    root: &Path,
    tmp: &Path,
    opts: &SyncOptions,
    now: SystemTime,
) -> Result<(SyncedSet, bool), FeedError> {
    let zip_path = tmp.join("all.zip");
    let (digest, bytes) = download(opts, &zip_path)?;
    let osv = tmp.join("osv");
    fs::create_dir(&osv).map_err(|e| FeedError::io(&osv, e))?;
    let ex = osvzip::extract(&zip_path, &opts.url, &osv, &opts.zip)?;
    fs::remove_file(&zip_path).map_err(|e| FeedError::io(&zip_path, e))?;
    let db =
        AdvisoryDb::load(std::slice::from_ref(&osv)).map_err(|source| FeedError::Advisories {
            url: opts.url.clone(),
            source,
        })?;
    if db.is_empty() {
        return Err(FeedError::Empty {
            url: opts.url.clone(),
            files: db.files,
            non_debian: db.non_debian,
        });
    }
    let set = SyncedSet {
        url: opts.url.clone(),
        archive_digest: format!("sha256:{digest}"),
        archive_bytes: bytes,
        fetched_at: kiln_oci::time::rfc3339(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        set_digest: db.set_digest(),
        files: ex.json_files,
        skipped: ex.skipped,
        count: db.len(),
        newest_modified: db.newest_modified.clone(),
    };
    write_pointer(&tmp.join("set.json"), &set)?;
    let target = root.join(&digest);
    if target.exists() {
        // The same archive was synced before: keep it if its records are intact.
        let intact = AdvisoryDb::load(&[target.join("osv")])
            .is_ok_and(|old| old.set_digest() == set.set_digest);
        if intact {
            return Ok((set, true));
        }
        let trash = root.join(format!(".old-{digest}-{}", std::process::id()));
        fs::rename(&target, &trash).map_err(|e| FeedError::io(&target, e))?;
        let _ = fs::remove_dir_all(&trash);
    }
    if let Err(e) = fs::rename(tmp, &target) {
        // Another sync of the same export got there first.
        let theirs = AdvisoryDb::load(&[target.join("osv")])
            .is_ok_and(|old| old.set_digest() == set.set_digest);
        if theirs {
            return Ok((set, true));
        }
        return Err(FeedError::io(&target, e));
    }
    sync_dir(root);
    Ok((set, false))
}

/// Download `opts.url` to `to`; its SHA-256 (hex) and size.
fn download(opts: &SyncOptions, to: &Path) -> Result<(String, u64), FeedError> {
    let url = &opts.url;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_per_write(Some(opts.timeout))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut resp =
        kiln_registry::retry::call_with_retries(|| agent.get(url).call()).map_err(|e| {
            FeedError::Http {
                url: url.clone(),
                source: Box::new(e),
            }
        })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FeedError::Status {
            url: url.clone(),
            status,
        });
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let media = ct.as_deref().map(|c| {
        c.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    if !media.as_deref().is_some_and(|m| CONTENT_TYPES.contains(&m)) {
        return Err(FeedError::ContentType {
            url: url.clone(),
            found: ct,
        });
    }
    let announced = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > opts.max_bytes) {
        return Err(FeedError::TooLarge {
            url: url.clone(),
            limit: opts.max_bytes,
        });
    }
    let mut reader = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .reader()
        .take(opts.max_bytes.saturating_add(1));
    let mut out = File::create(to).map_err(|e| FeedError::io(to, e))?;
    let mut h = Sha256::new();
    let mut got: u64 = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(match announced {
                    Some(expected) if got < expected => FeedError::Truncated {
                        url: url.clone(),
                        got,
                        expected,
                    },
                    _ => FeedError::Read {
                        url: url.clone(),
                        source,
                    },
                });
            }
        };
        got += n as u64;
        if got > opts.max_bytes {
            return Err(FeedError::TooLarge {
                url: url.clone(),
                limit: opts.max_bytes,
            });
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| FeedError::io(to, e))?;
    }
    if let Some(expected) = announced
        && got != expected
    {
        return Err(FeedError::Truncated {
            url: url.clone(),
            got,
            expected,
        });
    }
    out.sync_all().map_err(|e| FeedError::io(to, e))?;
    Ok((hex::encode(h.finalize()), got))
}

fn write_pointer(path: &Path, set: &SyncedSet) -> Result<(), FeedError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut text = serde_json::to_string_pretty(set)
        .map_err(|e| FeedError::io(path, io::Error::new(io::ErrorKind::InvalidData, e)))?;
    text.push('\n');
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        FeedError::io(path, e)
    })?;
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn sync_dir(d: &Path) {
    if let Ok(f) = File::open(d) {
        let _ = f.sync_all();
    }
}

/// The current synced set, if one was synced.
pub fn current(state_dir: &Path) -> Result<Option<SyncedSet>, FeedError> {
    let path = dir(state_dir).join("current");
    let bytes = match kiln_oci::untrusted::read_small(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FeedError::io(&path, e)),
    };
    let set: SyncedSet = serde_json::from_slice(&bytes).map_err(|e| FeedError::Corrupt {
        path: path.clone(),
        message: format!("not a synced-set record: {e}"),
    })?;
    let hex = set.archive_digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(FeedError::Corrupt {
            path,
            message: format!(
                "archive digest {:?} is not sha256:<hex>",
                set.archive_digest
            ),
        });
    }
    Ok(Some(set))
}

/// The current synced set and its advisories (`None`: nothing synced).
pub fn load_current(state_dir: &Path) -> Result<Option<(SyncedSet, AdvisoryDb)>, FeedError> {
    let Some(set) = current(state_dir)? else {
        return Ok(None);
    };
    let hex = set
        .archive_digest
        .strip_prefix("sha256:")
        .unwrap_or_default();
    let osv = dir(state_dir).join(hex).join("osv");
    let mut db = AdvisoryDb::load(std::slice::from_ref(&osv)).map_err(|e| FeedError::Corrupt {
        path: osv.clone(),
        message: format!("the synced advisories cannot be read: {e}"),
    })?;
    if db.set_digest() != set.set_digest {
        return Err(FeedError::Corrupt {
            path: osv,
            message: format!(
                "the synced advisories changed since they were synced (set digest {}, recorded {})",
                db.set_digest(),
                set.set_digest
            ),
        });
    }
    db.source = set.url.clone();
    db.feed = Some(FeedRecord {
        url: set.url.clone(),
        archive_digest: set.archive_digest.clone(),
        fetched_at: set.fetched_at.clone(),
    });
    Ok(Some((set, db)))
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
