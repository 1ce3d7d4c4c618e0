//! The solver's input: [`Package`]s (one per name, version and
//! architecture, as a `Packages` stanza describes them) gathered into a
//! [`Universe`] that indexes them by name and by provided virtual name, and
//! knows each name's apt candidate.
//!
//! A `Universe` is for one native architecture (kiln builds `amd64`):
//! packages of other architectures are dropped when it is built. Package
//! order in the input does not matter: packages are sorted (name, then
//! best candidate first) so that [`PkgId`]s and every later choice are
//! deterministic.

use std::collections::HashMap;
use std::fmt;

use crate::relation::{Constraint, DebVersion, OrGroup, Relation, VersionError};

/// Why a universe cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum UniverseError {
    #[error("package {name}: bad version {version:?}")]
    BadVersion {
        name: String,
        version: String,
        #[source]
        source: VersionError,
    },
    #[error("package {name} {version}: Provides {relation} uses an operator other than '='")]
    BadProvides {
        name: String,
        version: String,
        relation: String,
    },
}

/// The `Multi-Arch` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MultiArch {
    #[default]
    No,
    Same,
    Foreign,
    Allowed,
}

impl MultiArch {
    /// The field's value; anything unknown is `no`, as dpkg treats it.
    pub fn from_field(s: &str) -> MultiArch {
        match s.trim() {
            "same" => MultiArch::Same,
            "foreign" => MultiArch::Foreign,
            "allowed" => MultiArch::Allowed,
            _ => MultiArch::No,
        }
    }
}

/// The `Priority` field, most important first (so `Ord` ranks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Required,
    Important,
    Standard,
    Optional,
    Extra,
}

impl Priority {
    pub fn from_field(s: &str) -> Option<Priority> {
        match s.trim() {
            "required" => Some(Priority::Required),
            "important" => Some(Priority::Important),
            "standard" => Some(Priority::Standard),
            "optional" => Some(Priority::Optional),
            "extra" => Some(Priority::Extra),
            _ => None,
        }
    }
}

/// apt's default pin priority for a repository that is not a target
/// release, not-automatic or pinned.
pub const DEFAULT_PIN_PRIORITY: i32 = 500;

/// One binary package version as its repository describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `amd64`, `all`, …
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub pre_depends: Vec<OrGroup>,
    pub depends: Vec<OrGroup>,
    pub recommends: Vec<OrGroup>,
    /// `name` or `name (= version)`.
    pub provides: Vec<Relation>,
    pub conflicts: Vec<Relation>,
    pub breaks: Vec<Relation>,
    pub essential: bool,
    /// `Important: yes` (apt prefers such providers, like essential ones).
    pub important: bool,
    pub priority: Option<Priority>,
    /// The pin priority of the repository/suite it came from (apt's
    /// default is [`DEFAULT_PIN_PRIORITY`]); the candidate of a name is its
    /// highest-priority, then newest, version.
    pub pin_priority: i32,
    /// Where it came from, e.g. `bookworm-security/main` (informational;
    /// the last tie-breaker between identical name/version/arch entries).
    pub origin: String,
}

impl Package {
    /// A package with no relations and default fields.
    pub fn new(name: &str, version: &str, architecture: &str) -> Package {
        Package {
            name: name.to_string(),
            version: version.to_string(),
            architecture: architecture.to_string(),
            multi_arch: MultiArch::No,
            pre_depends: Vec::new(),
            depends: Vec::new(),
            recommends: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            breaks: Vec::new(),
            essential: false,
            important: false,
            priority: None,
            pin_priority: DEFAULT_PIN_PRIORITY,
            origin: String::new(),
        }
    }
}

/// Index of a package in its [`Universe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PkgId(pub u32);

impl fmt::Display for PkgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A package with its parsed version and provides.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) pkg: Package,
    pub(crate) version: DebVersion,
    /// `(virtual name, provided version)`.
    pub(crate) provides: Vec<(String, Option<DebVersion>)>,
}

/// All candidate packages for one native architecture.
#[derive(Debug)]
pub struct Universe {
    native: String,
    pub(crate) entries: Vec<Entry>,
    /// Versions of each name, candidate (highest pin priority, then newest)
    /// first.
    by_name: HashMap<String, Vec<PkgId>>,
    /// Packages (any version) providing each virtual name, by id.
    providers: HashMap<String, Vec<PkgId>>,
}

impl Universe {
    /// Index `packages` for `native` (e.g. `amd64`); packages whose
    /// architecture is neither `native` nor `all` are dropped, and of
    /// entries with the same name, version and architecture only the one
    /// with the highest pin priority (then smallest origin) is kept.
    pub fn new(packages: Vec<Package>, native: &str) -> Result<Universe, UniverseError> {
        let mut entries = Vec::with_capacity(packages.len());
        for pkg in packages {
            if pkg.architecture != native && pkg.architecture != "all" {
                continue;
            }
            let version =
                DebVersion::parse(&pkg.version).map_err(|source| UniverseError::BadVersion {
                    name: pkg.name.clone(),
                    version: pkg.version.clone(),
                    source,
                })?;
            let mut provides = Vec::with_capacity(pkg.provides.len());
            for p in &pkg.provides {
                let v = match &p.constraint {
                    None => None,
                    Some(Constraint {
                        op: crate::relation::Op::Eq,
                        version,
                    }) => Some(version.clone()),
                    Some(_) => {
                        return Err(UniverseError::BadProvides {
                            name: pkg.name.clone(),
                            version: pkg.version.clone(),
                            relation: p.to_string(),
                        });
                    }
                };
                provides.push((p.name.clone(), v));
            }
            entries.push(Entry {
                pkg,
                version,
                provides,
            });
        }
        // Sort indices, not the (large) entries, then move each entry once.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&i, &j| {
            let (a, b) = (&entries[i], &entries[j]);
            a.pkg
                .name
                .cmp(&b.pkg.name)
                .then_with(|| b.pkg.pin_priority.cmp(&a.pkg.pin_priority))
                .then_with(|| b.version.cmp(&a.version))
                .then_with(|| a.pkg.architecture.cmp(&b.pkg.architecture))
                .then_with(|| a.pkg.origin.cmp(&b.pkg.origin))
                .then_with(|| a.pkg.version.cmp(&b.pkg.version))
                .then_with(|| content_key(&a.pkg).cmp(&content_key(&b.pkg)))
        });
        let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
        let mut entries: Vec<Entry> = order
            .into_iter()
            .filter_map(|i| slots.get_mut(i).and_then(Option::take))
            .collect();
        entries.dedup_by(|later, first| {
            later.pkg.name == first.pkg.name
                && later.version == first.version
                && later.pkg.architecture == first.pkg.architecture
        });
        let mut by_name: HashMap<String, Vec<PkgId>> = HashMap::new();
        let mut providers: HashMap<String, Vec<PkgId>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let id = PkgId(i as u32);
            by_name.entry(e.pkg.name.clone()).or_default().push(id);
            for (virt, _) in &e.provides {
                let list = providers.entry(virt.clone()).or_default();
                if list.last() != Some(&id) {
                    list.push(id);
                }
            }
        }
        Ok(Universe {
            native: native.to_string(),
            entries,
            by_name,
            providers,
        })
    }

    /// The native architecture.
    pub fn native(&self) -> &str {
        &self.native
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn package(&self, id: PkgId) -> &Package {
        &self.entries[id.0 as usize].pkg
    }

    /// The parsed version of a package.
    pub fn version(&self, id: PkgId) -> &DebVersion {
        &self.entries[id.0 as usize].version
    }

    pub(crate) fn entry(&self, id: PkgId) -> &Entry {
        &self.entries[id.0 as usize]
    }

    /// Every version of `name`, candidate first.
    pub fn versions(&self, name: &str) -> &[PkgId] {
        self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// apt's candidate for `name`: highest pin priority, then newest.
    pub fn candidate(&self, name: &str) -> Option<PkgId> {
        self.versions(name).first().copied()
    }

    /// Every package (any version) that provides `name`, by id.
    pub fn providers(&self, name: &str) -> &[PkgId] {
        self.providers.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The version of `virt` that `id` provides: `Some(None)` for an
    /// unversioned provide, `None` when it does not provide `virt`.
    pub fn provided_version(&self, id: PkgId, virt: &str) -> Option<Option<&DebVersion>> {
        self.entry(id)
            .provides
            .iter()
            .find(|(n, _)| n == virt)
            .map(|(_, v)| v.as_ref())
    }
}

/// A total order among entries that agree on everything else (the same
/// name, version and architecture listed twice with different contents),
/// so that which one is kept never depends on input order.
fn content_key(p: &Package) -> String {
    use crate::relation::format_field;
    let flat = |rs: &[Relation]| {
        rs.iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{:?}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{:?}",
        p.multi_arch,
        format_field(&p.pre_depends),
        format_field(&p.depends),
        format_field(&p.recommends),
        flat(&p.provides),
        flat(&p.conflicts),
        flat(&p.breaks),
        p.essential,
        p.important,
        p.pin_priority,
        p.priority,
    )
}

/// Whether a relation's architecture qualifier is satisfied by `target`,
/// declared by `depender` — dpkg's `deparchsatisfied` for a world of one
/// native architecture plus `all`: no qualifier (or `:native`, or the native
/// name) is satisfied by native and `all` packages; `:any` only by a
/// `Multi-Arch: allowed` target (or when the depender itself is `foreign` or
/// `allowed`); any other architecture never.
pub(crate) fn arch_satisfied(
    native: &str,
    rel: &Relation,
    target: &Package,
    depender: Option<&Package>,
) -> bool {
    match rel.arch_qualifier.as_deref() {
        None | Some("native") => true,
        Some("any") => {
            target.multi_arch == MultiArch::Allowed
                || depender.is_some_and(|d| {
                    matches!(d.multi_arch, MultiArch::Foreign | MultiArch::Allowed)
                })
        }
        Some(a) => a == native || a == "all",
    }
}
