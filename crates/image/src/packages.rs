//! From `[packages]` to package inputs: the spec's resolution inputs
//! ([`inputs`]), resolving them into a [`Lock`] ([`lock`]), and turning a
//! fresh lock into `.deb` files in the shared cache that the packages layer
//! installs like `[[debs]]` ([`for_build`]).
//!
//! The cache is `<state>/cache` ([`cache_root`]), kiln-repo's
//! content-addressed cache (beside the build's own `layers/`, `hashes/`,
//! `spool/`): a `.deb` enters it only after its size and
//! SHA-256 matched the `Packages` entry the lock recorded, and the packages
//! layer hashes it again while reading it.
//!
//! `kiln lock` without `--update` keeps every locked version that still
//! fits (they are preferred, see [`kiln_repo::resolve::Extras`]): only what
//! a changed spec needs moves. `--update` re-resolves everything to the
//! newest; `--update PKG...` prefers every locked version except those of
//! the named packages, so PKG and whatever it newly needs move to the newest
//! while the rest stays.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_repo::resolve::{Extras, Resolution, ResolveError};
use kiln_repo::{RepoClient, RepoError};
use sha2::Digest as _;

use crate::build::Progress;
use crate::lock::{
    InputRepository, Inputs, LOCK_VERSION, Lock, LockState, LockedPackage, LockedRepository,
};
use crate::spec::{DebSpec, Loc, Spec};

/// Parallel `.deb` downloads.
const FETCH_WORKERS: usize = 4;

/// Why packages could not be locked or provided.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("reading the keyring {path}")]
    Keyring {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Lock(#[from] LockState),
    #[error("reading the control file of {path}")]
    LocalDeb {
        path: PathBuf,
        #[source]
        source: kiln_deb::DebError,
    },
    #[error("{path}: its control file is not a usable package stanza: {reason}")]
    LocalControl { path: PathBuf, reason: String },
    #[error(transparent)]
    Resolve(Box<ResolveError>),
    #[error("--update {0}: no such package in kiln.lock")]
    NotLocked(String),
    #[error(
        "--offline: {name} {version} is not in the cache ({url}); run `kiln build` once with the network"
    )]
    NotCached {
        name: String,
        version: String,
        url: String,
    },
    #[error("fetching {name} {version} ({url})")]
    Fetch {
        name: String,
        version: String,
        url: String,
        #[source]
        source: Box<RepoError>,
    },
    #[error("kiln.lock: {0}")]
    BadLock(String),
}

impl From<ResolveError> for PackagesError {
    fn from(e: ResolveError) -> PackagesError {
        PackagesError::Resolve(Box::new(e))
    }
}

/// Where the repository cache lives under a state directory.
pub fn cache_root(state_dir: &Path) -> PathBuf {
    state_dir.join("cache")
}

/// A repository client caching under `state_dir` ([`cache_root`]).
pub fn client(state_dir: &Path, offline: bool) -> RepoClient {
    RepoClient::new(
        cache_root(state_dir),
        kiln_repo::Options {
            offline,
            ..kiln_repo::Options::default()
        },
    )
}

/// The spec's resolution inputs now (keyrings hashed from disk). `None`
/// without `[packages]`.
pub fn inputs(spec: &Spec) -> Result<Option<Inputs>, PackagesError> {
    let Some(req) = &spec.packages else {
        return Ok(None);
    };
    let mut repositories = Vec::new();
    for r in &spec.repositories {
        let bytes = crate::hostfs::read_named(&r.keyring, 64 << 20).map_err(|source| {
            PackagesError::Keyring {
                path: r.keyring.clone(),
                source,
            }
        })?;
        repositories.push(InputRepository {
            url: r.base_url().to_string(),
            suites: r.suites.clone(),
            components: r.components.clone(),
            keyring_sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        });
    }
    Ok(Some(
        Inputs {
            digest: String::new(),
            architecture: spec.arch.clone(),
            include: req.include.clone(),
            exclude: req.exclude.clone(),
            recommends: req.recommends,
            local_debs: spec.local_debs_as_written.clone(),
            repositories,
        }
        .sealed(),
    ))
}

/// Which locked versions `kiln lock` may move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Keep every locked version that still fits.
    Keep,
    /// Re-resolve everything to the newest.
    All,
    /// Move these packages (and what they newly need); keep the rest.
    Only(Vec<String>),
}

/// The solver's view of a local `.deb`'s control file.
fn local_package(d: &DebSpec) -> Result<kiln_solve::Package, PackagesError> {
    let deb = kiln_deb::Deb::read_path(&d.path).map_err(|source| PackagesError::LocalDeb {
        path: d.path.clone(),
        source,
    })?;
    let mut text = String::new();
    for (n, v) in deb.control.fields() {
        if ["Filename", "Size", "SHA256"]
            .iter()
            .any(|f| n.eq_ignore_ascii_case(f))
        {
            continue;
        }
        text.push_str(n);
        text.push(':');
        if !v.starts_with('\n') {
            text.push(' ');
        }
        text.push_str(v);
        text.push('\n');
    }
    text.push_str(&format!(
        "Filename: local/x.deb\nSize: 0\nSHA256: {}\n",
        d.sha256
    ));
    let bad = |reason: String| PackagesError::LocalControl {
        path: d.path.clone(),
        reason,
    };
    let pkgs = kiln_repo::parse_packages(&text).map_err(|e| bad(e.to_string()))?;
    let p = pkgs
        .into_iter()
        .next()
        .ok_or_else(|| bad("no stanza".into()))?;
    Ok(p.to_solver(
        kiln_repo::resolve::LOCAL_PIN_PRIORITY,
        kiln_repo::resolve::LOCAL_ORIGIN,
    ))
}

/// Resolve the spec's `[packages]` (with its `[[debs]]` in the universe)
/// into a new lock; `kiln patch`'s `[[deb]]` pins of the current lock are
/// kept. `now` is Unix seconds (Release validity).
pub fn lock(
    spec: &Spec,
    client: &RepoClient,
    update: &Update,
    now: u64,
) -> Result<Lock, PackagesError> {
    let Some(req) = &spec.packages else {
        return Err(LockState::Unresolved.into());
    };
    let inputs = inputs(spec)?.ok_or(LockState::Unresolved)?;
    let old = spec.lock.clone().unwrap_or_default();
    if let Update::Only(names) = update {
        for n in names {
            if !old.packages.iter().any(|p| &p.name == n) {
                return Err(PackagesError::NotLocked(n.clone()));
            }
        }
    }
    let prefer = old
        .packages
        .iter()
        .filter(|p| match update {
            Update::Keep => true,
            Update::All => false,
            Update::Only(names) => !names.contains(&p.name),
        })
        .map(|p| (p.name.clone(), p.version.clone(), p.architecture.clone()))
        .collect();
    let local = spec
        .debs
        .iter()
        .map(local_package)
        .collect::<Result<Vec<_>, _>>()?;
    let request = kiln_solve::Request {
        include: req.include.clone(),
        exclude: req.exclude.clone(),
        recommends: req.recommends,
        ..kiln_solve::Request::default()
    };
    let r = kiln_repo::resolve::resolve_with(
        client,
        &spec.repositories,
        &request,
        &spec.arch,
        now,
        &Extras { local, prefer },
    )?;
    Ok(from_resolution(inputs, r, old.deb))
}

fn from_resolution(inputs: Inputs, r: Resolution, deb: Vec<crate::lock::LockedDeb>) -> Lock {
    Lock {
        version: Some(LOCK_VERSION),
        inputs: Some(inputs),
        repositories: r
            .suites
            .into_iter()
            .map(|s| LockedRepository {
                url: s.url,
                suite: s.suite,
                codename: s.codename,
                inrelease_sha256: s.inrelease_sha256.hex(),
                signing_key: s.signing_key,
                signing_certificate: s.signing_certificate,
            })
            .collect(),
        packages: r
            .packages
            .into_iter()
            .map(|p| LockedPackage {
                name: p.name,
                version: p.version,
                architecture: p.architecture,
                source: p.source,
                source_version: p.source_version,
                url: p.url,
                sha256: p.sha256.hex(),
                size: p.size,
                repository: p.suite,
            })
            .collect(),
        deb,
    }
}

/// Whether the spec's lock can be used as is.
pub fn check_fresh(spec: &Spec) -> Result<(), PackagesError> {
    let Some(want) = inputs(spec)? else {
        return Ok(());
    };
    match &spec.lock {
        None => Err(LockState::Missing.into()),
        Some(l) => Ok(l.state(&want)?),
    }
}

/// The `Packages` stanza a locked package stands for (what
/// [`RepoClient::fetch_deb`] checks the download against).
fn stanza(lock: &Lock, p: &LockedPackage) -> Result<(String, kiln_repo::Package), PackagesError> {
    let bad = |m: String| PackagesError::BadLock(format!("package {}: {m}", p.name));
    let repo = lock
        .repositories
        .get(p.repository)
        .ok_or_else(|| bad("no such repository".into()))?;
    let filename = p
        .url
        .strip_prefix(repo.url.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| bad(format!("url {} is not below {}", p.url, repo.url)))?;
    let version = kiln_repo::DebVersion::parse(&p.version).map_err(|e| bad(e.to_string()))?;
    let source_version =
        kiln_repo::DebVersion::parse(&p.source_version).map_err(|e| bad(e.to_string()))?;
    let sha256: kiln_oci::Digest = format!("sha256:{}", p.sha256)
        .parse()
        .map_err(|e: kiln_oci::OciError| bad(e.to_string()))?;
    Ok((
        repo.url.clone(),
        kiln_repo::Package {
            name: p.name.clone(),
            version,
            architecture: p.architecture.clone(),
            multi_arch: kiln_repo::MultiArch::default(),
            essential: false,
            priority: None,
            section: None,
            source: kiln_repo::SourceRef {
                name: p.source.clone(),
                version: source_version,
            },
            depends: Vec::new(),
            pre_depends: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            breaks: Vec::new(),
            replaces: Vec::new(),
            recommends: Vec::new(),
            important: false,
            filename: filename.to_string(),
            size: p.size,
            sha256,
        },
    ))
}

/// Every locked package as a `.deb` in the cache (downloaded, a few at a
/// time, when missing; with `offline` a missing one is an error naming it),
/// in lock order.
pub fn fetch_all(
    lock: &Lock,
    client: &RepoClient,
    offline: bool,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>, PackagesError> {
    let mut jobs = Vec::new();
    for p in &lock.packages {
        let (base, pkg) = stanza(lock, p)?;
        jobs.push((p, base, pkg));
    }
    let cache = client.cache();
    let mut paths: Vec<Option<PathBuf>> = vec![None; jobs.len()];
    let mut missing = Vec::new();
    for (i, (p, _, pkg)) in jobs.iter().enumerate() {
        match cache.get(kiln_repo::Kind::Deb, &pkg.sha256, pkg.size) {
            Ok(Some(path)) => paths[i] = Some(path),
            _ if offline => {
                return Err(PackagesError::NotCached {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    url: p.url.clone(),
                });
            }
            _ => missing.push(i),
        }
    }
    if missing.is_empty() {
        return Ok(paths.into_iter().flatten().collect());
    }
    let total: u64 = missing.iter().map(|&i| jobs[i].2.size).sum();
    progress.phase(&format!("fetching {} packages", missing.len()), Some(total));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<PathBuf, PackagesError>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..FETCH_WORKERS.min(missing.len()) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = missing.get(k) else { break };
                    let (p, base, pkg) = &jobs[i];
                    let r = client
                        .fetch_deb(base, pkg)
                        .map_err(|source| PackagesError::Fetch {
                            name: p.name.clone(),
                            version: p.version.clone(),
                            url: p.url.clone(),
                            source: Box::new(source),
                        });
                    progress.advance(pkg.size);
                    let failed = r.is_err();
                    if let Ok(mut g) = results.lock() {
                        g.push((i, r));
                    }
                    if failed {
                        // Stop the other workers early.
                        next.store(usize::MAX / 2, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    progress.finish_phase();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    for (i, r) in results {
        paths[i] = Some(r?);
    }
    paths
        .into_iter()
        .zip(&lock.packages)
        .map(|(p, l)| {
            p.ok_or_else(|| PackagesError::NotCached {
                name: l.name.clone(),
                version: l.version.clone(),
                url: l.url.clone(),
            })
        })
        .collect()
}

/// The spec as the packages layer needs it: with `[packages]`, the lock
/// must be fresh; its packages are fetched (or, `offline`, found) in the
/// cache under `state_dir` and put before the spec's own `[[debs]]`.
/// Without `[packages]`, `None` (use the spec as it is).
pub fn for_build(
    spec: &Spec,
    state_dir: &Path,
    offline: bool,
    progress: &dyn Progress,
) -> Result<Option<Spec>, PackagesError> {
    if spec.packages.is_none() {
        return Ok(None);
    }
    check_fresh(spec)?;
    let lock = spec.lock.as_ref().ok_or(LockState::Missing)?;
    let client = client(state_dir, offline);
    let paths = fetch_all(lock, &client, offline, progress)?;
    let mut out = spec.clone();
    let mut debs = Vec::with_capacity(paths.len() + spec.debs.len());
    for (i, (path, p)) in paths.into_iter().zip(&lock.packages).enumerate() {
        debs.push(DebSpec {
            index: i,
            path,
            sha256: p.sha256.clone(),
            loc: Loc::default(),
            from: Some(format!("{} {} ({})", p.name, p.version, p.url)),
            distro: lock
                .repositories
                .get(p.repository)
                .and_then(|r| r.codename.clone()),
        });
    }
    debs.extend(spec.debs.iter().cloned());
    out.debs = debs;
    Ok(Some(out))
}
