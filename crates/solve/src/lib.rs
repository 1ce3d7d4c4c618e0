//! kiln's Debian dependency solver.
//!
//! * [`relation`]: relation fields (`a (>= 1.0) | b, c:any, d [amd64]`),
//!   parsed and printed.
//! * [`universe`]: the input — [`Package`]s (name, version, architecture,
//!   Multi-Arch, relations, Essential/Priority, the pin priority of the
//!   suite they came from) indexed as a [`Universe`] with apt's candidates.
//! * [`solver`]: [`solve`] a [`Request`] (`include`, `exclude`,
//!   `recommends`) into a [`Closure`], each package with the reason it is
//!   in; the rules are in that module's documentation.
//! * [`check`]: [`check_closure`], an independent consistency check of any
//!   closure (dependencies satisfied, no conflicts).
//! * [`deb822`]: the control-file syntax (shared with kiln-repo).
//! * [`packages`]: a `Packages` index read into solver [`Package`]s
//!   (tests, small tools; kiln-repo reads the full typed stanza).
//!
//! Versions compare with kiln's dpkg-exact order, `kiln_debversion`.
//! Nothing here touches the network or the file system.

#![forbid(unsafe_code)]

pub mod check;
pub mod deb822;
pub mod packages;
pub mod relation;
pub mod solver;
pub mod universe;

pub use check::{Violation, check_closure};
pub use solver::{Closure, DepKind, Installed, Reason, Request, SolveError, solve};
pub use universe::{MultiArch, Package, PkgId, Priority, Universe, UniverseError};
