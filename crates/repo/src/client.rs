//! The verified chain, as apt walks it: a suite's `InRelease` (or its
//! `Release` with `Release.gpg`) is verified against the repository's
//! keyring and its validity window; a `Packages` index is fetched (by hash
//! when the Release says `Acquire-By-Hash: yes`) and checked against the
//! Release's SHA256 and size before it is decompressed; a `.deb` is checked
//! against its `Packages` SHA256 and size before anything reads it.
//! Everything verified lands in the [`Cache`]; nothing else does.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_oci::Digest;
use kiln_oci::expansion::Bounded;
use kiln_registry::Timeouts;

use crate::cache::{Cache, Kind, LastRelease};
use crate::config::{RepositoryConfig, check_relative_path};
use crate::error::RepoError;
use crate::http::Http;
use crate::index::PackageIndex;
use crate::packages::{Package, parse_packages};
use crate::release::{IndexEntry, Release};
use crate::signature::{Keyring, SignedBy};

/// The most memory the xz decoder may use (Debian indexes need ~10 MiB).
const XZ_MEMLIMIT: u64 = 256 << 20;

#[derive(Debug, Clone, Copy)]
enum Compression {
    Xz,
    Gz,
    None,
}

/// Limits and modes of a [`RepoClient`].
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Connect, response-header and low-speed limits for every request.
    pub timeouts: Timeouts,
    /// Largest `InRelease`/`Release`/`Release.gpg` accepted. Default 32 MiB.
    pub max_release: u64,
    /// Largest compressed index a Release may list. Default 512 MiB.
    pub max_index: u64,
    /// Largest package accepted. Default 4 GiB.
    pub max_deb: u64,
    /// Use only the cache: a file not there is [`RepoError::NotCached`].
    pub offline: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeouts: Timeouts::default(),
            max_release: 32 << 20,
            max_index: 512 << 20,
            max_deb: 4 << 30,
            offline: false,
        }
    }
}

/// A suite whose Release was fetched, verified and found valid.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The repository URL, without a trailing slash.
    pub base_url: String,
    pub suite: String,
    /// The URL of the signed file that was verified.
    pub url: String,
    /// SHA256 of that file (`InRelease`, or `Release` when only the
    /// detached form exists); the `InRelease` is in the cache under it.
    pub signed_sha256: Digest,
    pub signed_by: SignedBy,
    pub release: Release,
}

/// A signed Release as the archive serves it.
enum Signed<'a> {
    /// `InRelease`: clear-signed.
    Inline(&'a [u8]),
    /// `Release` and its detached `Release.gpg`.
    Detached(&'a [u8], &'a [u8]),
}

/// Reads repositories through the verified chain into a cache.
pub struct RepoClient {
    http: Http,
    cache: Cache,
    options: Options,
}

fn fmt_time(secs: u64) -> String {
    kiln_oci::time::rfc3339(secs)
}

impl RepoClient {
    /// A client caching under `cache_root` (normally `<state>/cache`).
    pub fn new(cache_root: impl Into<PathBuf>, options: Options) -> RepoClient {
        RepoClient {
            http: Http::new(options.timeouts),
            cache: Cache::new(cache_root),
            options,
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Fetch and verify `dists/<suite>/InRelease` (falling back to `Release`
    /// and `Release.gpg` when there is no `InRelease`). `now` is Unix
    /// seconds, for `Valid-Until` and `Date`.
    pub fn fetch_release(
        &self,
        base_url: &str,
        suite: &str,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Suite, RepoError> {
        check_relative_path(suite)
            .map_err(|r| RepoError::Config(format!("suite {suite:?}: {r}")))?;
        let base = base_url.trim_end_matches('/');
        if self.options.offline {
            return self.last_release(base, suite, keyring, now);
        }
        let url = format!("{base}/dists/{suite}/InRelease");
        let limit = self.options.max_release;
        if let Some(bytes) = self.http.get_small(&url, limit)? {
            let verified = self.verify(
                base,
                suite,
                Signed::Inline(&bytes),
                Digest::of(&bytes),
                keyring,
                now,
            )?;
            self.cache.insert_bytes(Kind::Index, &bytes)?;
            self.cache.set_last_release(
                base,
                suite,
                &LastRelease::InRelease(verified.signed_sha256),
            )?;
            return Ok(verified);
        }
        let url = format!("{base}/dists/{suite}/Release");
        let data = self.http.get_small(&url, limit)?.ok_or(RepoError::Status {
            url: format!("{base}/dists/{suite}/InRelease (and Release)"),
            status: 404,
        })?;
        let sig_url = format!("{url}.gpg");
        let sig = self
            .http
            .get_small(&sig_url, limit)?
            .ok_or(RepoError::Status {
                url: sig_url,
                status: 404,
            })?;
        let verified = self.verify(
            base,
            suite,
            Signed::Detached(&data, &sig),
            Digest::of(&data),
            keyring,
            now,
        )?;
        let (data_digest, _) = self.cache.insert_bytes(Kind::Index, &data)?;
        let (sig_digest, _) = self.cache.insert_bytes(Kind::Index, &sig)?;
        self.cache.set_last_release(
            base,
            suite,
            &LastRelease::Detached {
                release: data_digest,
                signature: sig_digest,
            },
        )?;
        Ok(verified)
    }

    /// Re-verify an `InRelease` kept in the cache under `digest` (as a lock
    /// records it), without the network.
    pub fn cached_release(
        &self,
        base_url: &str,
        suite: &str,
        digest: &Digest,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Suite, RepoError> {
        let base = base_url.trim_end_matches('/');
        let url = format!("{base}/dists/{suite}/InRelease");
        let bytes = self
            .read_release(digest)
            .ok_or_else(|| RepoError::NotCached {
                what: format!("{url} ({digest})"),
            })?;
        self.verify(base, suite, Signed::Inline(&bytes), *digest, keyring, now)
    }

    /// A Release file kept in the cache under `digest`, if it is there
    /// whole (bounded, not through a symlink, hashing to its name).
    fn read_release(&self, digest: &Digest) -> Option<Vec<u8>> {
        let path = self.cache.path(Kind::Index, digest);
        match kiln_oci::untrusted::read_capped(
            &path,
            self.options.max_release,
            kiln_oci::untrusted::Follow::No,
        ) {
            Ok(b) if Digest::of(&b) == *digest => Some(b),
            _ => None,
        }
    }

    /// Verify a suite's signed Release (`InRelease`, or `Release` with its
    /// detached `Release.gpg`) against `keyring` and check its validity
    /// window as of `now`; `digest` is the SHA-256 of the signed bytes.
    fn verify(
        &self,
        base: &str,
        suite: &str,
        signed: Signed<'_>,
        digest: Digest,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Suite, RepoError> {
        let (url, text, by) = match signed {
            Signed::Inline(bytes) => {
                let url = format!("{base}/dists/{suite}/InRelease");
                let (text, by) = keyring.verify_inrelease(&url, bytes, now)?;
                (url, text, by)
            }
            Signed::Detached(data, sig) => {
                let url = format!("{base}/dists/{suite}/Release");
                let by = keyring.verify_detached(&url, data, sig, now)?;
                let text = std::str::from_utf8(data)
                    .map_err(|_| RepoError::Invalid {
                        what: url.clone(),
                        reason: "not UTF-8 text".into(),
                    })?
                    .to_string();
                (url, text, by)
            }
        };
        let release = self.check_release(&url, suite, &text, now)?;
        Ok(Suite {
            base_url: base.to_string(),
            suite: suite.to_string(),
            url,
            signed_sha256: digest,
            signed_by: by,
            release,
        })
    }

    /// Offline: the suite's last verified Release from the cache, verified
    /// again (signature and validity window, as of `now`).
    fn last_release(
        &self,
        base: &str,
        suite: &str,
        keyring: &Keyring,
        now: u64,
    ) -> Result<Suite, RepoError> {
        let missing = |what: String| RepoError::NotCached {
            what: format!(
                "{what} (no verified Release of suite {suite} from {base} is cached; run once with the network)"
            ),
        };
        let read = |d: &Digest, what: &str| -> Result<Vec<u8>, RepoError> {
            self.read_release(d)
                .ok_or_else(|| missing(format!("{what} ({d})")))
        };
        let last = self
            .cache
            .last_release(base, suite)?
            .ok_or_else(|| missing(format!("{base}/dists/{suite}/InRelease")))?;
        match last {
            LastRelease::InRelease(d) => {
                let bytes = read(&d, &format!("{base}/dists/{suite}/InRelease"))?;
                self.verify(base, suite, Signed::Inline(&bytes), d, keyring, now)
            }
            LastRelease::Detached { release, signature } => {
                let url = format!("{base}/dists/{suite}/Release");
                let data = read(&release, &url)?;
                let sig = read(&signature, &format!("{url}.gpg"))?;
                self.verify(
                    base,
                    suite,
                    Signed::Detached(&data, &sig),
                    release,
                    keyring,
                    now,
                )
            }
        }
    }

    fn check_release(
        &self,
        url: &str,
        suite: &str,
        text: &str,
        now: u64,
    ) -> Result<Release, RepoError> {
        let release = Release::parse(text).map_err(|source| RepoError::Parse {
            what: url.to_string(),
            source,
        })?;
        if let Some(v) = release.valid_until
            && v <= now
        {
            return Err(RepoError::Expired {
                url: url.to_string(),
                valid_until: fmt_time(v),
                now: fmt_time(now),
            });
        }
        if let Some(d) = release.date
            && d > now
        {
            return Err(RepoError::NotYetValid {
                url: url.to_string(),
                date: fmt_time(d),
                now: fmt_time(now),
            });
        }
        // A validly signed Release of another suite must not stand in for
        // this one (apt's "conflicting distribution").
        let names = [release.suite.as_deref(), release.codename.as_deref()];
        if names.iter().any(Option::is_some) && !names.contains(&Some(suite)) {
            return Err(RepoError::Invalid {
                what: url.to_string(),
                reason: format!(
                    "it is the Release of suite {} (codename {}), not of {suite}",
                    release.suite.as_deref().unwrap_or("?"),
                    release.codename.as_deref().unwrap_or("?"),
                ),
            });
        }
        Ok(release)
    }

    /// The `Packages` index of `component` for `arch`, checked against the
    /// Release, decompressed within bounds and parsed.
    pub fn fetch_packages(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
    ) -> Result<Vec<Package>, RepoError> {
        let idx = self.fetch_index(suite, component, arch)?;
        idx.packages().map_err(|source| RepoError::Compact {
            what: format!("{}/dists/{}/{component}", suite.base_url, suite.suite),
            source,
        })
    }

    /// The `Packages` index of `component` for `arch` in its compact form
    /// ([`crate::index`]): from the cache when an intact one is there under
    /// the digest the Release lists, else made from the index (`.xz`, else
    /// `.gz`, else uncompressed), which is fetched (by hash when the Release
    /// says `Acquire-By-Hash`) and checked against the Release first.
    pub fn fetch_index(
        &self,
        suite: &Suite,
        component: &str,
        arch: &str,
    ) -> Result<PackageIndex, RepoError> {
        for (what, s) in [("component", component), ("architecture", arch)] {
            check_relative_path(s).map_err(|r| RepoError::Config(format!("{what} {s:?}: {r}")))?;
        }
        let dir = format!("{component}/binary-{arch}");
        let (path, entry) = ["Packages.xz", "Packages.gz", "Packages"]
            .iter()
            .find_map(|f| {
                let p = format!("{dir}/{f}");
                suite.release.sha256.get(&p).map(|e| (p, *e))
            })
            .ok_or_else(|| RepoError::MissingIndex {
                release: suite.url.clone(),
                path: format!("{dir}/Packages"),
            })?;
        let dists = format!("{}/dists/{}", suite.base_url, suite.suite);
        let url = format!("{dists}/{path}");
        if entry.size > self.options.max_index {
            return Err(RepoError::TooLarge {
                url,
                limit: self.options.max_index,
            });
        }
        let parsed = self.cache.path(Kind::Parsed, &entry.sha256);
        match fs::read(&parsed) {
            Ok(bytes) => match PackageIndex::from_bytes(bytes, &entry.sha256) {
                Ok(idx) => return Ok(idx),
                // Damaged: made again below.
                Err(_) => {
                    let _ = fs::remove_file(&parsed);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RepoError::io(&parsed, e)),
        }
        let mut urls = Vec::new();
        if suite.release.acquire_by_hash {
            urls.push(format!(
                "{dists}/{dir}/by-hash/SHA256/{}",
                entry.sha256.hex()
            ));
        }
        urls.push(url.clone());
        let file = self.obtain(Kind::Index, &entry, &urls, &url)?;
        let compression = if path.ends_with(".xz") {
            Compression::Xz
        } else if path.ends_with(".gz") {
            Compression::Gz
        } else {
            Compression::None
        };
        let text = self.decompress(&file, &url, entry.size, compression)?;
        let pkgs = parse_packages(&text).map_err(|source| RepoError::Parse {
            what: url.clone(),
            source,
        })?;
        let compact = |source| RepoError::Compact {
            what: url.clone(),
            source,
        };
        let bytes = crate::index::encode(&entry.sha256, &pkgs).map_err(compact)?;
        self.cache.insert_with(Kind::Parsed, &entry.sha256, |w| {
            w.write_all(&bytes)
                .map_err(|e| RepoError::io("(cache temporary file)", e))
        })?;
        PackageIndex::from_bytes(bytes, &entry.sha256).map_err(compact)
    }

    fn decompress(
        &self,
        file: &Path,
        url: &str,
        size: u64,
        compression: Compression,
    ) -> Result<String, RepoError> {
        let f = File::open(file).map_err(|e| RepoError::io(file, e))?;
        let mut out = Vec::new();
        let failed = |source| RepoError::Decompress {
            what: url.to_string(),
            source,
        };
        match compression {
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    XZ_MEMLIMIT,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(|e| failed(e.into()))?;
                let dec = liblzma::read::XzDecoder::new_stream(f.take(size), stream);
                Bounded::for_compressed(dec, size)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
            }
            Compression::Gz => {
                let dec = flate2::read::MultiGzDecoder::new(f.take(size));
                Bounded::for_compressed(dec, size)
                    .read_to_end(&mut out)
                    .map_err(failed)?;
            }
            Compression::None => {
                f.take(size)
                    .read_to_end(&mut out)
                    .map_err(|e| RepoError::io(file, e))?;
            }
        }
        String::from_utf8(out).map_err(|_| RepoError::Invalid {
            what: url.to_string(),
            reason: "the index is not UTF-8 text".into(),
        })
    }

    /// Fetch a package by its `Filename` below `base_url` (a [`Suite`]'s
    /// `base_url`), checked against the index before anything reads it.
    /// Returns its path in the cache.
    pub fn fetch_deb(&self, base_url: &str, pkg: &Package) -> Result<PathBuf, RepoError> {
        check_relative_path(&pkg.filename).map_err(|reason| RepoError::UnsafeFilename {
            package: pkg.name.clone(),
            filename: pkg.filename.clone(),
            reason,
        })?;
        let url = format!("{}/{}", base_url.trim_end_matches('/'), pkg.filename);
        if pkg.size > self.options.max_deb {
            return Err(RepoError::TooLarge {
                url,
                limit: self.options.max_deb,
            });
        }
        let entry = IndexEntry {
            sha256: pkg.sha256,
            size: pkg.size,
        };
        self.obtain(Kind::Deb, &entry, std::slice::from_ref(&url), &url)
    }

    /// The cached file for `entry`, or download it from the first of `urls`
    /// that exists (404 moves to the next), verified on the way in.
    fn obtain(
        &self,
        kind: Kind,
        entry: &IndexEntry,
        urls: &[String],
        name: &str,
    ) -> Result<PathBuf, RepoError> {
        if let Some(p) = self.cache.get(kind, &entry.sha256, entry.size)? {
            return Ok(p);
        }
        if self.options.offline {
            return Err(RepoError::NotCached {
                what: format!("{name} ({})", entry.sha256),
            });
        }
        let mut last = None;
        for url in urls {
            let r = self.cache.insert_with(kind, &entry.sha256, |w| {
                if self.http.get_exact(url, entry.size, &entry.sha256, w)? {
                    Ok(())
                } else {
                    Err(RepoError::Status {
                        url: url.clone(),
                        status: 404,
                    })
                }
            });
            match r {
                Err(RepoError::Status { status: 404, .. }) => {
                    last = Some(r);
                    continue;
                }
                other => return other,
            }
        }
        last.unwrap_or_else(|| {
            Err(RepoError::NotCached {
                what: name.to_string(),
            })
        })
    }

    /// Every suite of `repo` verified with its keyring, and the compact
    /// index of each component for `arch`, in the order the configuration
    /// lists them. Suites are read in parallel (each is mostly waiting for
    /// the network, then reading its cached index).
    pub fn fetch_repository_indexes(
        &self,
        repo: &RepositoryConfig,
        arch: &str,
        now: u64,
    ) -> Result<Vec<(Suite, Vec<PackageIndex>)>, RepoError> {
        repo.validate()?;
        let keyring = Keyring::load(&repo.keyring)?;
        let one = |s: &String| -> Result<(Suite, Vec<PackageIndex>), RepoError> {
            let suite = self.fetch_release(repo.base_url(), s, &keyring, now)?;
            let idx = repo
                .components
                .iter()
                .map(|c| self.fetch_index(&suite, c, arch))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((suite, idx))
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = repo
                .suites
                .iter()
                .map(|s| scope.spawn(move || one(s)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    /// Every suite of `repo` verified with its keyring, and the packages of
    /// each component for `arch`, in the order the configuration lists them.
    pub fn fetch_repository(
        &self,
        repo: &RepositoryConfig,
        arch: &str,
        now: u64,
    ) -> Result<Vec<(Suite, Vec<Package>)>, RepoError> {
        repo.validate()?;
        let keyring = Keyring::load(&repo.keyring)?;
        let mut out = Vec::new();
        for s in &repo.suites {
            let suite = self.fetch_release(repo.base_url(), s, &keyring, now)?;
            let mut pkgs = Vec::new();
            for c in &repo.components {
                pkgs.extend(self.fetch_packages(&suite, c, arch)?);
            }
            out.push((suite, pkgs));
        }
        Ok(out)
    }
}
