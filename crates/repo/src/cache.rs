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
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Deb => "debs",
            Kind::Index => "indexes",
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
        for kind in [Kind::Deb, Kind::Index] {
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
