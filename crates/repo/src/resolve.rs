//! Resolving package names against verified repositories: every suite's
//! Release and `Packages` fetched through the [`RepoClient`]'s verified
//! chain, gathered into a [`kiln_solve::Universe`] (all suites at apt's
//! default pin priority, so the newest version wins), solved, and the
//! closure described with everything a lock file needs ([`Resolution`]).

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

/// One verified suite that took part in a resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedSuite {
    /// Repository URL without a trailing slash.
    pub url: String,
    pub suite: String,
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
                inrelease_sha256: suite.signed_sha256,
                signing_key: suite.signed_by.key.clone(),
                signing_certificate: suite.signed_by.primary.clone(),
            });
            compact.push(pkgs);
        }
    }
    let mut request = request.clone();
    for name in ALWAYS_INCLUDED {
        let named = |e: &String| e == name || e.split_once('=').is_some_and(|(n, _)| n == name);
        if !request.include.iter().any(named) {
            request.include.push(name.to_string());
        }
    }
    // Only what the request can reach is decoded (see crate::index::select).
    let indexes = crate::index::select_for_request(&compact, &request).map_err(|source| {
        ResolveError::Repository {
            url: "(cached Packages indexes)".into(),
            source: RepoError::Compact {
                what: "decoding".into(),
                source,
            },
        }
    })?;
    let origin = |i: usize| format!("{i:06}");
    let mut all = Vec::new();
    let mut stanzas: HashMap<(&str, &str, &str, String), &Package> = HashMap::new();
    for (i, pkgs) in indexes.iter().enumerate() {
        for p in pkgs {
            all.push(p.to_solver(DEFAULT_PIN_PRIORITY, &origin(i)));
            stanzas
                .entry((&p.name, p.version.as_str(), &p.architecture, origin(i)))
                .or_insert(p);
        }
    }
    let universe = Universe::new(all, arch).map_err(ResolveError::Universe)?;
    let closure = kiln_solve::solve(&universe, &request).map_err(ResolveError::Solve)?;
    let mut packages = Vec::with_capacity(closure.packages.len());
    for installed in &closure.packages {
        let from = universe.package(installed.id);
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
