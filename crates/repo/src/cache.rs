//! The content-addressed cache shared by all builds:
//! `<root>/debs/sha256/<hex>` for packages and `<root>/indexes/sha256/<hex>`
//! for `InRelease` files and `Packages` indexes, each named by the SHA256 of
//! its bytes.
//!
//! Nothing enters unless it was verified: a download streams into a
//! temporary file beside its final name (`.tmp-…`, created exclusively) and
//! is renamed into place only after its size and digest matched. Rename is
//! atomic, so two processes fetching the same file both succeed and readers
//! never see a partial file. A file found in the cache is checked for its
//! size (packages) or re-hashed (indexes, which are small) before use.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::RepoError;

/// Which part of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deb,
    Index,
    /// The compact form of a `Packages` index ([`crate::index`]), named
    /// by the SHA256 of the index it was made from.
    Parsed,
}

impl Kind {
    /// Every kind, in the order listings show them.
    pub const ALL: [Kind; 3] = [Kind::Deb, Kind::Index, Kind::Parsed];

    /// The directory name, also the name listings use.
    pub fn name(self) -> &'static str {
        self.dir()
    }

    fn dir(self) -> &'static str {
        match self {
            Kind::Deb => "debs",
            Kind::Index => "indexes",
            Kind::Parsed => "parsed",
        }
    }
}

/// Temporary files older than this are left-overs of a crashed build.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`Cache::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub files: usize,
    pub bytes: u64,
}

/// A content-addressed cache rooted at a directory the caller owns
/// (normally `<state>/cache`).
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    Ok((Digest::from_bytes(h.finalize().into()), n))
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, kind: Kind) -> PathBuf {
        self.root.join(kind.dir()).join("sha256")
    }

    /// Where a file with this digest lives (whether or not it is there).
    pub fn path(&self, kind: Kind, digest: &Digest) -> PathBuf {
        self.dir(kind).join(digest.hex())
    }

    /// The cached file, if present and intact: its size must be `size`, and
    /// an index is re-hashed too. A damaged entry is removed.
    pub fn get(
        &self,
        kind: Kind,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<PathBuf>, RepoError> {
        let p = self.path(kind, digest);
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(RepoError::io(&p, e)),
        };
        let mut ok = meta.is_file() && meta.len() == size;
        if ok && kind == Kind::Index {
            let (d, n) = hash_file(&p).map_err(|e| RepoError::io(&p, e))?;
            ok = d == *digest && n == size;
        }
        if !ok {
            let _ = fs::remove_file(&p);
            return Ok(None);
        }
        Ok(Some(p))
    }

    /// Store a verified file: `fill` writes it into a fresh temporary file
    /// and must fail unless what it wrote has `digest` (see
    /// [`crate::RepoClient`], which streams downloads through the digest
    /// check). Only then is the file renamed to its content address.
    pub fn insert_with<F>(&self, kind: Kind, digest: &Digest, fill: F) -> Result<PathBuf, RepoError>
    where
        F: FnOnce(&mut dyn Write) -> Result<(), RepoError>,
    {
        let dir = self.dir(kind);
        fs::create_dir_all(&dir).map_err(|e| RepoError::io(&dir, e))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            digest.hex()
        ));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| RepoError::io(&tmp, e))?;
        let result = (|| {
            let mut w = io::BufWriter::with_capacity(256 << 10, &mut f);
            fill(&mut w)?;
            w.flush().map_err(|e| RepoError::io(&tmp, e))?;
            drop(w);
            f.sync_all().map_err(|e| RepoError::io(&tmp, e))?;
            let dest = self.path(kind, digest);
            fs::rename(&tmp, &dest).map_err(|e| RepoError::io(&dest, e))?;
            Ok(dest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Store bytes already in memory (and already verified by the caller),
    /// under their own digest.
    pub fn insert_bytes(&self, kind: Kind, bytes: &[u8]) -> Result<(Digest, PathBuf), RepoError> {
        let d = Digest::of(bytes);
        if let Some(p) = self.get(kind, &d, bytes.len() as u64)? {
            return Ok((d, p));
        }
        let p = self.insert_with(kind, &d, |w| {
            w.write_all(bytes)
                .map_err(|e| RepoError::io("(cache temporary file)", e))
        })?;
        Ok((d, p))
    }

    /// Remove every cached file whose digest is not in `keep`, and
    /// temporary files left by builds that died more than a day ago.
    pub fn prune(&self, keep: &BTreeSet<Digest>) -> Result<Pruned, RepoError> {
        let mut out = Pruned::default();
        let now = SystemTime::now();
        for kind in Kind::ALL {
            let dir = self.dir(kind);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(RepoError::io(&dir, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| RepoError::io(&dir, e))?;
                let name = ent.file_name();
                let name = name.to_string_lossy();
                let meta = ent.metadata().map_err(|e| RepoError::io(ent.path(), e))?;
                let remove = if name.starts_with(".tmp-") {
                    meta.modified()
                        .ok()
                        .and_then(|m| now.duration_since(m).ok())
                        .is_some_and(|age| age > STALE_TMP)
                } else {
                    match Digest::from_hex(&name) {
                        Ok(d) => !keep.contains(&d),
                        Err(_) => false,
                    }
                };
                if remove {
                    fs::remove_file(ent.path()).map_err(|e| RepoError::io(ent.path(), e))?;
                    out.files += 1;
                    out.bytes += meta.len();
                }
            }
        }
        Ok(out)
    }
}

/// The last Release of a suite that was verified online, as the cache
/// keeps it for offline use: the `InRelease`, or a `Release` and its
/// `Release.gpg`, each in the index part of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastRelease {
    InRelease(Digest),
    Detached { release: Digest, signature: Digest },
}

impl LastRelease {
    /// The cache entries it names.
    pub fn digests(&self) -> Vec<Digest> {
        match self {
            LastRelease::InRelease(d) => vec![*d],
            LastRelease::Detached { release, signature } => vec![*release, *signature],
        }
    }
}

/// A suite's pointer to its [`LastRelease`], as [`Cache::last_releases`]
/// lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuitePointer {
    pub url: String,
    pub suite: String,
    pub last: LastRelease,
}

impl Cache {
    fn suites_dir(&self) -> PathBuf {
        self.root.join("suites")
    }

    fn pointer_path(&self, base_url: &str, suite: &str) -> PathBuf {
        let key = Digest::of(format!("{base_url}\n{suite}").as_bytes());
        self.suites_dir().join(key.hex())
    }

    fn pointer_text(base_url: &str, suite: &str, last: &LastRelease) -> String {
        let mut t = format!("url {base_url}\nsuite {suite}\n");
        match last {
            LastRelease::InRelease(d) => t.push_str(&format!("inrelease {}\n", d.hex())),
            LastRelease::Detached { release, signature } => t.push_str(&format!(
                "release {}\nsignature {}\n",
                release.hex(),
                signature.hex()
            )),
        }
        t
    }

    fn parse_pointer(text: &str) -> Option<SuitePointer> {
        let mut url = None;
        let mut suite = None;
        let mut inrelease = None;
        let mut release = None;
        let mut signature = None;
        for line in text.lines() {
            let (k, v) = line.split_once(' ')?;
            let d = || Digest::from_hex(v).ok();
            match k {
                "url" => url = Some(v.to_string()),
                "suite" => suite = Some(v.to_string()),
                "inrelease" => inrelease = Some(d()?),
                "release" => release = Some(d()?),
                "signature" => signature = Some(d()?),
                _ => return None,
            }
        }
        let last = match (inrelease, release, signature) {
            (Some(d), None, None) => LastRelease::InRelease(d),
            (None, Some(release), Some(signature)) => LastRelease::Detached { release, signature },
            _ => return None,
        };
        Some(SuitePointer {
            url: url?,
            suite: suite?,
            last,
        })
    }

    /// Remember `last` as the suite's last verified Release (the files it
    /// names must be in the cache already). Atomic; unchanged pointers are
    /// not rewritten.
    pub fn set_last_release(
        &self,
        base_url: &str,
        suite: &str,
        last: &LastRelease,
    ) -> Result<(), RepoError> {
        let path = self.pointer_path(base_url, suite);
        let text = Cache::pointer_text(base_url, suite, last);
        if fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(());
        }
        let dir = self.suites_dir();
        fs::create_dir_all(&dir).map_err(|e| RepoError::io(&dir, e))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let r = fs::write(&tmp, &text).and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(RepoError::io(&path, e));
        }
        Ok(())
    }

    /// The suite's last verified Release, if one was recorded.
    pub fn last_release(
        &self,
        base_url: &str,
        suite: &str,
    ) -> Result<Option<LastRelease>, RepoError> {
        let path = self.pointer_path(base_url, suite);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Cache::parse_pointer(&t)
                .filter(|p| p.url == base_url && p.suite == suite)
                .map(|p| p.last)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RepoError::io(&path, e)),
        }
    }

    /// Every suite pointer in the cache (unreadable ones are skipped),
    /// sorted by URL and suite.
    pub fn last_releases(&self) -> Result<Vec<SuitePointer>, RepoError> {
        let dir = self.suites_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RepoError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| RepoError::io(&dir, e))?;
            if ent.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            if let Some(p) = fs::read_to_string(ent.path())
                .ok()
                .and_then(|t| Cache::parse_pointer(&t))
            {
                out.push(p);
            }
        }
        out.sort_by(|a, b| (&a.url, &a.suite).cmp(&(&b.url, &b.suite)));
        Ok(out)
    }
}

/// Files and bytes of one part of the cache ([`Cache::usage`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// `debs`, `indexes` or `parsed`.
    pub kind: &'static str,
    pub files: usize,
    pub bytes: u64,
    /// Temporary files (downloads in progress, or left by a crash).
    pub temporary: usize,
}

/// Every SHA256 digest (64 hex digits standing alone) written in `text`:
/// what a lock file or a Release names.
pub fn digests_in(text: &str) -> BTreeSet<Digest> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .filter_map(|w| Digest::from_hex(&w.to_ascii_lowercase()).ok())
        .collect()
}

impl Cache {
    /// Files and bytes per kind.
    pub fn usage(&self) -> Result<Vec<Usage>, RepoError> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let mut u = Usage {
                kind: kind.name(),
                files: 0,
                bytes: 0,
                temporary: 0,
            };
            let dir = self.dir(kind);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    out.push(u);
                    continue;
                }
                Err(e) => return Err(RepoError::io(&dir, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| RepoError::io(&dir, e))?;
                let Ok(meta) = ent.metadata() else { continue };
                if ent.file_name().to_string_lossy().starts_with(".tmp-") {
                    u.temporary += 1;
                } else {
                    u.files += 1;
                    u.bytes += meta.len();
                }
            }
            out.push(u);
        }
        Ok(out)
    }

    /// What the newest verified Release of every suite needs kept: the
    /// Release files, and every index (and compact index) they list.
    pub fn newest_release_digests(&self) -> Result<BTreeSet<Digest>, RepoError> {
        let mut keep = BTreeSet::new();
        for p in self.last_releases()? {
            for d in p.last.digests() {
                keep.insert(d);
                if let Ok(text) = fs::read_to_string(self.path(Kind::Index, &d)) {
                    keep.extend(digests_in(&text));
                }
            }
        }
        Ok(keep)
    }

    /// Forget every suite's last verified Release (for `prune --all`).
    pub fn forget_releases(&self) -> Result<usize, RepoError> {
        let dir = self.suites_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(RepoError::io(&dir, e)),
        };
        let mut n = 0;
        for ent in rd {
            let ent = ent.map_err(|e| RepoError::io(&dir, e))?;
            if ent.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            fs::remove_file(ent.path()).map_err(|e| RepoError::io(ent.path(), e))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_prune() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::new(t.path());
        let (d1, p1) = c.insert_bytes(Kind::Index, b"one").unwrap();
        let (d2, _) = c.insert_bytes(Kind::Deb, b"two").unwrap();
        assert_eq!(fs::read(&p1).unwrap(), b"one");
        assert_eq!(c.get(Kind::Index, &d1, 3).unwrap(), Some(p1.clone()));
        assert_eq!(
            c.get(Kind::Index, &d1, 4).unwrap(),
            None,
            "wrong size is a miss"
        );
        // A damaged index is detected and dropped.
        c.insert_bytes(Kind::Index, b"one").unwrap();
        fs::write(&p1, b"ONE").unwrap();
        assert_eq!(c.get(Kind::Index, &d1, 3).unwrap(), None);
        assert!(!p1.exists());
        // A failing fill leaves nothing behind.
        let e = c.insert_with(Kind::Deb, &Digest::of(b"x"), |w| {
            w.write_all(b"partial").unwrap();
            Err(RepoError::Config("boom".into()))
        });
        assert!(e.is_err());
        let names: Vec<_> = fs::read_dir(c.dir(Kind::Deb))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let keep: BTreeSet<_> = [d2].into();
        c.insert_bytes(Kind::Index, b"three").unwrap();
        let pr = c.prune(&keep).unwrap();
        assert_eq!(pr.files, 1);
        assert!(c.get(Kind::Deb, &d2, 3).unwrap().is_some());
    }

    #[test]
    fn concurrent_inserts_of_the_same_file() {
        let t = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1 << 20];
        let d = Digest::of(&data);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let c = Cache::new(t.path());
                    c.insert_with(Kind::Deb, &d, |w| {
                        for chunk in data.chunks(4096) {
                            w.write_all(chunk).unwrap();
                        }
                        Ok(())
                    })
                    .unwrap();
                });
            }
        });
        let c = Cache::new(t.path());
        let p = c.get(Kind::Deb, &d, data.len() as u64).unwrap().unwrap();
        assert_eq!(fs::read(p).unwrap(), data);
        assert_eq!(
            fs::read_dir(c.dir(Kind::Deb)).unwrap().count(),
            1,
            "no temporary files left"
        );
    }
}
