//! An independent check of a closure: every `Pre-Depends` and `Depends` of
//! every package is satisfied inside the set, no two packages conflict
//! (`Conflicts`/`Breaks`), and each name appears once.
//!
//! It shares only the relation parser and version order with the solver,
//! not its matching code, so that tests (proptests here, the apt oracle
//! later) can use it to judge the solver's output.

use std::collections::HashMap;
use std::fmt;

use crate::relation::{DebVersion, Op, Relation};
use crate::universe::{MultiArch, Package};

/// One way a closure is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Duplicate(String),
    BadVersion {
        package: String,
        version: String,
    },
    Unsatisfied {
        package: String,
        field: &'static str,
        relation: String,
    },
    Conflict {
        package: String,
        field: &'static str,
        relation: String,
        other: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Duplicate(n) => write!(f, "{n} appears more than once"),
            Violation::BadVersion { package, version } => {
                write!(f, "{package} has a bad version {version:?}")
            }
            Violation::Unsatisfied {
                package,
                field,
                relation,
            } => write!(f, "{package} {field}: {relation} is not satisfied"),
            Violation::Conflict {
                package,
                field,
                relation,
                other,
            } => write!(f, "{package} {field}: {relation} matches {other}"),
        }
    }
}

/// What one installed package offers under one name.
struct Offer<'a> {
    pkg: &'a Package,
    /// `Some` for the package itself or a versioned provide.
    version: Option<DebVersion>,
    real: bool,
}

/// Check `packages` (a closure for architecture `native`); an empty
/// `Ok` means consistent.
pub fn check_closure(packages: &[&Package], native: &str) -> Result<(), Vec<Violation>> {
    let mut violations = Vec::new();
    let mut offers: HashMap<&str, Vec<Offer<'_>>> = HashMap::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for &p in packages {
        *seen.entry(p.name.as_str()).or_default() += 1;
        let Ok(v) = DebVersion::parse(&p.version) else {
            violations.push(Violation::BadVersion {
                package: p.name.clone(),
                version: p.version.clone(),
            });
            continue;
        };
        offers.entry(p.name.as_str()).or_default().push(Offer {
            pkg: p,
            version: Some(v),
            real: true,
        });
        for pr in &p.provides {
            let version = match &pr.constraint {
                Some(c) if c.op == Op::Eq => Some(c.version.clone()),
                _ => None,
            };
            offers.entry(pr.name.as_str()).or_default().push(Offer {
                pkg: p,
                version,
                real: false,
            });
        }
    }
    let mut dups: Vec<&str> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| *k)
        .collect();
    dups.sort_unstable();
    violations.extend(
        dups.into_iter()
            .map(|d| Violation::Duplicate(d.to_string())),
    );

    let arch_ok =
        |r: &Relation, target: &Package, depender: &Package| match r.arch_qualifier.as_deref() {
            None | Some("native") => true,
            Some("any") => {
                target.multi_arch == MultiArch::Allowed
                    || matches!(depender.multi_arch, MultiArch::Allowed | MultiArch::Foreign)
            }
            Some(a) => a == native || a == "all",
        };
    let version_ok = |r: &Relation, o: &Offer<'_>| match (&r.constraint, &o.version) {
        (None, _) => true,
        (Some(c), Some(v)) => c.op.accepts(v.cmp(&c.version)),
        (Some(_), None) => false,
    };

    for &p in packages {
        for (field, groups) in [("Pre-Depends", &p.pre_depends), ("Depends", &p.depends)] {
            for g in groups {
                let applicable: Vec<&Relation> = g
                    .alternatives
                    .iter()
                    .filter(|r| r.applies_to(native))
                    .collect();
                if applicable.is_empty() {
                    continue;
                }
                let ok = applicable.iter().any(|r| {
                    offers.get(r.name.as_str()).is_some_and(|os| {
                        os.iter().any(|o| version_ok(r, o) && arch_ok(r, o.pkg, p))
                    })
                });
                if !ok {
                    violations.push(Violation::Unsatisfied {
                        package: p.name.clone(),
                        field,
                        relation: g.to_string(),
                    });
                }
            }
        }
        for (field, rels) in [("Conflicts", &p.conflicts), ("Breaks", &p.breaks)] {
            for r in rels {
                for o in offers.get(r.name.as_str()).into_iter().flatten() {
                    if o.pkg.name == p.name {
                        continue;
                    }
                    // A versioned conflict never matches an unversioned provide.
                    if version_ok(r, o) || (o.real && r.constraint.is_none()) {
                        violations.push(Violation::Conflict {
                            package: p.name.clone(),
                            field,
                            relation: r.to_string(),
                            other: format!("{} {}", o.pkg.name, o.pkg.version),
                        });
                    }
                }
            }
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}
