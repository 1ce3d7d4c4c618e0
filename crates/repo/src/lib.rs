//! kiln-repo: signed Debian repositories, read the way apt reads them.
//!
//! The chain of trust is apt's: a suite's `InRelease` is verified against
//! an OpenPGP keyring ([`signature`]) and its `Valid-Until`/`Date`; the
//! Release ([`release`]) lists the SHA256 and size of every index; a
//! `Packages` index ([`packages`]) is checked against it before it is
//! decompressed; a `.deb` is checked against its `Packages` entry before
//! anything reads it. Downloads are bounded in size and time;
//! what passed lands in a content-addressed [`cache`]. Dependency fields are
//! parsed by kiln-solve's [`relation`] module (re-exported), and
//! [`resolve`] turns names into a verified, solved closure.
//!
//! Module map:
//! - [`config`]: `[[repositories]]` and apt `.sources` entries.
//! - [`deb822`]: the control-file syntax (kiln-solve's, re-exported).
//! - [`release`], [`packages`]: the typed indexes.
//! - [`resolve`]: names to a closure with URLs, hashes and suite digests.
//! - [`signature`]: keyrings and signature checks (rPGP).
//! - [`client`]: [`RepoClient`], the verified chain over HTTP.
//! - [`cache`]: the content-addressed cache and `prune`.
//! - [`index`]: the cached compact form of a `Packages` index, and
//!   [`index::select`], the packages a request can reach.
//! - [`error`]: the typed errors.
#![forbid(unsafe_code)]

pub mod cache;
pub mod client;
pub mod config;
pub mod error;
mod http;
pub mod index;
pub mod packages;
pub mod release;
pub mod resolve;
pub mod signature;

pub use cache::{Cache, Kind, LastRelease, Pruned, SuitePointer, Usage, digests_in};
pub use client::{Options, RepoClient, Suite};
pub use config::{RepositoryConfig, check_relative_path, repositories_from_sources};
pub use error::{Deb822Error, RepoError};
pub use index::PackageIndex;
pub use kiln_debversion::DebVersion;
pub use kiln_registry::{LowSpeedLimit, Timeouts};
pub use kiln_solve::relation::{Constraint, Op, OrGroup, Relation, RelationError};
pub use kiln_solve::{deb822, relation};
pub use packages::{MultiArch, Package, SourceRef, parse_packages};
pub use release::{IndexEntry, Release};
pub use resolve::{LockedPackage, LockedSuite, Resolution, ResolveError, resolve};
pub use signature::{Keyring, SignedBy};
