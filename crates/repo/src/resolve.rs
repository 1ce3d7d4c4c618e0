//! Resolving package names against verified repositories: every suite's
//! Release and `Packages` fetched through the [`RepoClient`]'s verified
//! chain, gathered into a [`kiln_solve::Universe`] (all suites at apt's
//! default pin priority, so the newest version wins), solved, and the
//! closure described with everything a lock file needs ([`Resolution`]).
//!
//! [`resolve_with`] adds two things a lock needs: local packages (a spec's
//! `[[debs]]`, which join the universe and satisfy dependencies like
//! repository packages) and preferred versions (`kiln lock --update PKG`
//! keeps every other locked version when it can: those versions get
//! [`PREFERRED_PIN_PRIORITY`], above apt's default 500, so each is the
//! candidate of its name, while a name with no preferred version falls back
//! to the newest, as apt does).

use std::collections::HashMap;

use kiln_oci::Digest;
use kiln_solve::universe::DEFAULT_PIN_PRIORITY;
use kiln_solve::{Request, SolveError, Universe, UniverseError};
use serde::{Deserialize, Serialize};

use crate::client::RepoClient;
use crate::config::{RepositoryConfig, check_relative_path};
use crate::error::RepoError;
use crate::packages::Package;

/// Packages every image gets, whatever the request says (issue 13).
pub const ALWAYS_INCLUDED: [&str; 2] = ["base-files", "base-passwd"];

/// Pin priority of a preferred (locked) version: above apt's default, below
/// local packages.
pub const PREFERRED_PIN_PRIORITY: i32 = 990;
/// Pin priority of a local package: it wins over any repository version.
pub const LOCAL_PIN_PRIORITY: i32 = 1000;
/// The universe origin of local packages.
pub const LOCAL_ORIGIN: &str = "local";

/// What [`resolve_with`] adds to the repositories' packages.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Local packages (the solver's view of their control files), always
    /// installed; they satisfy dependencies but are not in
    /// [`Resolution::packages`] (there is nothing to download).
    pub local: Vec<kiln_solve::Package>,
    /// `(name, version, architecture)` to keep when still possible.
    pub prefer: Vec<(String, String, String)>,
}

/// One verified suite that took part in a resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedSuite {
    /// Repository URL without a trailing slash.
    pub url: String,
    pub suite: String,
    /// The Release's `Codename` (e.g. `bookworm`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// SHA256 of the signed `InRelease` (or `Release`) that was verified.
    pub inrelease_sha256: Digest,
    /// Fingerprint of the key (or subkey) that made the signature.
    pub signing_key: String,
    /// Fingerprint of that key's certificate (primary key).
    pub signing_certificate: String,
}

/// One package of the closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    /// The full download URL (repository URL and `Filename`).
    pub url: String,
    pub sha256: Digest,
    pub size: u64,
    /// Where it was found: index into [`Resolution::suites`].
    pub suite: usize,
}

/// A solved request: the suites consulted (in configuration order) and the
/// closure (sorted by name, then architecture).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub architecture: String,
    pub suites: Vec<LockedSuite>,
    pub packages: Vec<LockedPackage>,
}

/// Why a request could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("reading repository {url}")]
    Repository {
        url: String,
        #[source]
        source: RepoError,
    },
    #[error("building the package universe")]
    Universe(#[source] UniverseError),
    #[error("resolving dependencies")]
    Solve(#[source] SolveError),
    #[error("package {name} {version} in {suite}: unsafe Filename {filename:?}: {reason}")]
    UnsafeFilename {
        name: String,
        version: String,
        suite: String,
        filename: String,
        reason: &'static str,
    },
}

/// Fetch and verify every suite of `repos` for `arch`, solve `request`
/// (with [`ALWAYS_INCLUDED`] added) and describe the closure. `now` is Unix
/// seconds, for the Releases' validity windows.
pub fn resolve(
    client: &RepoClient,
    repos: &[RepositoryConfig],
    request: &Request,
    arch: &str,
    now: u64,
) -> Result<Resolution, ResolveError> {
    resolve_with(client, repos, request, arch, now, &Extras::default())
}

/// [`resolve`] with local packages and preferred versions ([`Extras`]).
pub fn resolve_with(
    client: &RepoClient,
    repos: &[RepositoryConfig],
    request: &Request,
    arch: &str,
    now: u64,
    extras: &Extras,
) -> Result<Resolution, ResolveError> {
    let mut suites: Vec<LockedSuite> = Vec::new();
    // Per suite, its packages; the universe's `origin` names the suite by
    // index, so an installed package maps back to its stanza.
    let mut compact = Vec::new();
    for repo in repos {
        let fetched = client
            .fetch_repository_indexes(repo, arch, now)
            .map_err(|source| ResolveError::Repository {
                url: repo.url.clone(),
                source,
            })?;
        for (suite, pkgs) in fetched {
            suites.push(LockedSuite {
                url: suite.base_url.clone(),
                suite: suite.suite.clone(),
                codename: suite.release.codename.clone(),
                inrelease_sha256: suite.signed_sha256,
                signing_key: suite.signed_by.key.clone(),
                signing_certificate: suite.signed_by.primary.clone(),
            });
            compact.push(pkgs);
        }
    }
    let mut request = request.clone();
    for l in &extras.local {
        let named =
            |e: &String| e == &l.name || e.split_once('=').is_some_and(|(n, _)| n == l.name);
        if !request.include.iter().any(named) {
            request.include.push(format!("{}={}", l.name, l.version));
        }
    }
    for name in ALWAYS_INCLUDED {
        let named = |e: &String| e == name || e.split_once('=').is_some_and(|(n, _)| n == name);
        if !request.include.iter().any(named) {
            request.include.push(name.to_string());
        }
    }
    // Only what the request can reach is decoded (see crate::index::select);
    // local packages are not in the indexes, so what they depend on is a
    // root too.
    let mut reach = request.clone();
    for l in &extras.local {
        let recommends = if request.recommends {
            &l.recommends[..]
        } else {
            &[]
        };
        for g in l.pre_depends.iter().chain(&l.depends).chain(recommends) {
            reach
                .include
                .extend(g.alternatives.iter().map(|r| r.name.clone()));
        }
    }
    let indexes = crate::index::select_for_request(&compact, &reach).map_err(|source| {
        ResolveError::Repository {
            url: "(cached Packages indexes)".into(),
            source: RepoError::Compact {
                what: "decoding".into(),
                source,
            },
        }
    })?;
    let origin = |i: usize| format!("{i:06}");
    let mut stanzas: HashMap<(&str, &str, &str, String), &Package> = HashMap::new();
    for (i, pkgs) in indexes.iter().enumerate() {
        for p in pkgs {
            stanzas
                .entry((&p.name, p.version.as_str(), &p.architecture, origin(i)))
                .or_insert(p);
        }
    }
    // The solver installs a name's candidate only (as apt does): a preferred
    // version that a dependency rules out is given up (that name moves to
    // the newest) and the request solved again, until it solves or no
    // preference is to blame.
    let mut preferred: std::collections::HashSet<(&str, &str, &str)> = extras
        .prefer
        .iter()
        .map(|(n, v, a)| (n.as_str(), v.as_str(), a.as_str()))
        .collect();
    let (universe, closure) = loop {
        let mut all = Vec::new();
        for (i, pkgs) in indexes.iter().enumerate() {
            for p in pkgs {
                let key = (p.name.as_str(), p.version.as_str(), p.architecture.as_str());
                let pin = if preferred.contains(&key) {
                    PREFERRED_PIN_PRIORITY
                } else {
                    DEFAULT_PIN_PRIORITY
                };
                all.push(p.to_solver(pin, &origin(i)));
            }
        }
        for l in &extras.local {
            let mut l = l.clone();
            l.pin_priority = LOCAL_PIN_PRIORITY;
            l.origin = LOCAL_ORIGIN.to_string();
            all.push(l);
        }
        let universe = Universe::new(all, arch).map_err(ResolveError::Universe)?;
        match kiln_solve::solve(&universe, &request) {
            Ok(c) => break (universe, c),
            Err(e) => {
                // The solver names the packages of the relation that failed.
                let blamed: Vec<&str> = match &e {
                    SolveError::Unsatisfiable { names, .. }
                    | SolveError::SearchLimit { names, .. } => {
                        names.iter().map(String::as_str).collect()
                    }
                    _ => Vec::new(),
                };
                let before = preferred.len();
                preferred.retain(|(n, _, _)| !blamed.contains(n));
                if preferred.len() == before {
                    return Err(ResolveError::Solve(e));
                }
            }
        }
    };
    let mut packages = Vec::with_capacity(closure.packages.len());
    for installed in &closure.packages {
        let from = universe.package(installed.id);
        if from.origin == LOCAL_ORIGIN {
            continue;
        }
        let suite: usize = from.origin.parse().unwrap_or(usize::MAX);
        let stanza = stanzas
            .get(&(
                from.name.as_str(),
                from.version.as_str(),
                from.architecture.as_str(),
                from.origin.clone(),
            ))
            .copied();
        let (Some(stanza), Some(locked)) = (stanza, suites.get(suite)) else {
            unreachable!("every universe package comes from a fetched suite")
        };
        check_relative_path(&stanza.filename).map_err(|reason| ResolveError::UnsafeFilename {
            name: stanza.name.clone(),
            version: stanza.version.to_string(),
            suite: format!("{} {}", locked.url, locked.suite),
            filename: stanza.filename.clone(),
            reason,
        })?;
        packages.push(LockedPackage {
            name: stanza.name.clone(),
            version: stanza.version.to_string(),
            architecture: stanza.architecture.clone(),
            source: stanza.source.name.clone(),
            source_version: stanza.source.version.to_string(),
            url: format!("{}/{}", locked.url, stanza.filename),
            sha256: stanza.sha256,
            size: stanza.size,
            suite,
        });
    }
    packages.sort_by(|a, b| {
        (&a.name, &a.architecture, &a.version).cmp(&(&b.name, &b.architecture, &b.version))
    });
    Ok(Resolution {
        architecture: arch.to_string(),
        suites,
        packages,
    })
}
