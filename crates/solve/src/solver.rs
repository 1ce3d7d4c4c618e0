//! The solver: from a [`Request`] (`include`, `exclude`, `recommends`) and a
//! [`Universe`] to a [`Closure`], the set of packages to install, each with
//! the reason it is in.
//!
//! # Rules (apt's, for an empty system)
//! * Each name has one *candidate*: its highest pin priority, then newest,
//!   version (so security and updates suites win by carrying newer
//!   versions); an `include` entry `name=version` makes that version the
//!   candidate. As in apt, only candidates are ever installed: a dependency
//!   that the candidate does not satisfy fails, naming the candidate.
//! * `include` packages are selected first, then their dependencies are
//!   resolved depth-first in field order (`Pre-Depends`, `Depends`, and
//!   `Recommends` when asked), dependencies without alternatives before
//!   or-groups, as apt's `MarkInstall` does.
//! * A dependency already satisfied by the selection (by the package or by
//!   a provider already selected) adds nothing. Otherwise the alternatives
//!   are tried in order; within one, the real package first, then the
//!   candidates that provide it (essential, then `Important`, then native
//!   architecture, then higher `Priority`, then higher pin priority, then by
//!   name). A versioned dependency is satisfied by a provide only when the
//!   provide is versioned and matches; an unversioned one by any provide.
//! * `Conflicts` and `Breaks` (treated alike: nothing is unpacked in order)
//!   exclude any other selected package they match by name or by provide,
//!   in both directions; a package never conflicts with itself, so the
//!   Provides+Conflicts+Replaces idiom works.
//! * Architecture qualifiers follow dpkg's `deparchsatisfied` for one native
//!   architecture plus `all`: `:any` needs `Multi-Arch: allowed`.
//! * `exclude` names are never selected; if one is required the error names
//!   the chain.
//!
//! # Search
//! A choice among several options (alternatives or providers) is a choice
//! point; when a dependency later has no option left, the solver backtracks
//! chronologically to the latest choice point with an untried option. That
//! makes it complete for the candidate-only model (bounded by
//! [`Request::max_steps`]), while on the common path it makes exactly apt's
//! greedy choices. A dependency that no candidate can satisfy whatever
//! else is selected (no such package, no matching version, excluded)
//! backjumps straight to the choice that selected its package, so such
//! failures cost no exponential search; failures caused by conflicts
//! backtrack chronologically. When everything fails, the error reports the
//! failure reached with the largest selection, the most specific one.
//!
//! Why not `resolvo` or `pubgrub`: pubgrub has no alternatives, virtual
//! packages or conflicts; resolvo has conflicts (constraints) and unions,
//! but models one version set per name, so virtual packages (several
//! different names provide one) need synthetic packages, and its CDCL
//! decision order does not follow apt's "first satisfiable alternative,
//! depth first", which the apt oracle comparison needs. With the
//! candidate-only model the search space is small enough for a direct
//! backtracking search whose choices are easy to explain.
//!
//! Everything is deterministic: the universe is sorted when built, hash
//! maps are only looked up, never iterated, and the closure is sorted.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::relation::{Constraint, DebVersion, OrGroup, Relation};
use crate::universe::{PkgId, Universe, arch_satisfied};

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `name` or `name=version`; a purely virtual name with exactly one
    /// provider selects that provider (as apt does).
    pub include: Vec<String>,
    /// Names never to install.
    pub exclude: Vec<String>,
    /// Honour `Recommends` (apt's default is on; kiln's is off, as with
    /// `--no-install-recommends`). A recommendation that cannot be met is
    /// skipped.
    pub recommends: bool,
    /// Give up after this many choices (backtracking is exponential in the
    /// worst case).
    pub max_steps: usize,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            include: Vec::new(),
            exclude: Vec::new(),
            recommends: false,
            max_steps: 200_000,
        }
    }
}

impl Request {
    /// A request for `include` with the defaults.
    pub fn new<S: AsRef<str>>(include: &[S]) -> Request {
        Request {
            include: include.iter().map(|s| s.as_ref().to_string()).collect(),
            ..Request::default()
        }
    }
}

/// The field whose relation pulled a package in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DepKind {
    PreDepends,
    Depends,
    Recommends,
}

impl DepKind {
    pub fn field(self) -> &'static str {
        match self {
            DepKind::PreDepends => "Pre-Depends",
            DepKind::Depends => "Depends",
            DepKind::Recommends => "Recommends",
        }
    }
}

/// Why a package is in the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Named in `include`.
    Requested,
    /// Chosen to satisfy `relation` in the `kind` field of package `by`.
    Needed {
        by: String,
        kind: DepKind,
        relation: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested => f.write_str("requested"),
            Reason::Needed { by, kind, relation } => {
                write!(f, "{by} {}: {relation}", kind.field())
            }
        }
    }
}

/// One package of the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub id: PkgId,
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub reason: Reason,
}

/// The packages to install, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    pub packages: Vec<Installed>,
}

impl Closure {
    pub fn names(&self) -> Vec<&str> {
        self.packages.iter().map(|p| p.name.as_str()).collect()
    }

    pub fn ids(&self) -> Vec<PkgId> {
        self.packages.iter().map(|p| p.id).collect()
    }
}

/// Why a request cannot be solved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolveError {
    #[error("include entry {0:?} is not `name` or `name=version`")]
    BadInclude(String),
    #[error("package {0} is unknown (no package or provider has that name)")]
    UnknownPackage(String),
    #[error("package {name} is virtual; select one of its providers: {}", providers.join(", "))]
    AmbiguousVirtual {
        name: String,
        providers: Vec<String>,
    },
    #[error("package {name} has no version {version} (available: {})", available.join(", "))]
    PinNotFound {
        name: String,
        version: String,
        available: Vec<String>,
    },
    #[error("package {name} is pinned to two versions: {first} and {second}")]
    ConflictingPins {
        name: String,
        first: String,
        second: String,
    },
    #[error("package {0} is both included and excluded")]
    IncludedAndExcluded(String),
    /// `names`: the package names of the relation that failed (the last
    /// link of `chain`), for a caller that gives up a preference on them.
    #[error("cannot satisfy {}: {reason}", chain.join(" -> "))]
    Unsatisfiable {
        chain: Vec<String>,
        reason: String,
        names: Vec<String>,
    },
    #[error("gave up after {steps} choices; the most specific failure: {}: {reason}", chain.join(" -> "))]
    SearchLimit {
        steps: usize,
        chain: Vec<String>,
        reason: String,
        names: Vec<String>,
    },
}

/// A dependency to satisfy.
#[derive(Debug, Clone, Copy)]
struct Clause<'u> {
    by: PkgId,
    kind: DepKind,
    group: &'u OrGroup,
}

#[derive(Debug, Clone)]
struct Choice<'u> {
    trail_len: usize,
    agenda: Vec<Clause<'u>>,
    clause: Clause<'u>,
    options: Vec<Option<PkgId>>,
    next: usize,
}

#[derive(Debug, Clone, Default)]
struct Failure {
    depth: usize,
    chain: Vec<String>,
    reason: String,
    names: Vec<String>,
}

struct Solver<'u> {
    u: &'u Universe,
    req: &'u Request,
    pins: HashMap<&'u str, PkgId>,
    exclude: HashSet<&'u str>,
    selected: HashMap<&'u str, PkgId>,
    /// Selected providers of each virtual name, in selection order.
    provided: HashMap<&'u str, Vec<PkgId>>,
    /// Conflicts/Breaks of selected packages, by the name they target.
    conflicts_on: HashMap<&'u str, Vec<(PkgId, &'u Relation, bool)>>,
    reasons: HashMap<PkgId, Option<Clause<'u>>>,
    trail: Vec<PkgId>,
    failure: Option<Failure>,
    steps: usize,
}

/// Solve `request` against `universe`.
pub fn solve(universe: &Universe, request: &Request) -> Result<Closure, SolveError> {
    let mut s = Solver {
        u: universe,
        req: request,
        pins: HashMap::new(),
        exclude: request.exclude.iter().map(|s| s.trim()).collect(),
        selected: HashMap::new(),
        provided: HashMap::new(),
        conflicts_on: HashMap::new(),
        reasons: HashMap::new(),
        trail: Vec::new(),
        failure: None,
        steps: 0,
    };
    let roots = s.roots()?;
    s.run(&roots)?;
    let mut packages: Vec<Installed> = s
        .trail
        .iter()
        .map(|&id| {
            let p = universe.package(id);
            let reason = match s.reasons.get(&id).copied().flatten() {
                None => Reason::Requested,
                Some(c) => Reason::Needed {
                    by: universe.package(c.by).name.clone(),
                    kind: c.kind,
                    relation: c.group.to_string(),
                },
            };
            Installed {
                id,
                name: p.name.clone(),
                version: p.version.clone(),
                architecture: p.architecture.clone(),
                reason,
            }
        })
        .collect();
    packages.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    Ok(Closure { packages })
}

/// Whether a version constraint accepts what a provide offers: anything for
/// an unversioned dependency, only a matching versioned provide otherwise.
pub(crate) fn provide_matches(c: Option<&Constraint>, provided: Option<&DebVersion>) -> bool {
    match (c, provided) {
        (None, _) => true,
        (Some(c), Some(v)) => c.matches(v),
        (Some(_), None) => false,
    }
}

impl<'u> Solver<'u> {
    /// Resolve the include entries to packages, recording pins.
    fn roots(&mut self) -> Result<Vec<PkgId>, SolveError> {
        let u = self.u;
        let mut pinned: Vec<(&'u str, PkgId)> = Vec::new();
        let mut plain: Vec<&'u str> = Vec::new();
        let mut order: Vec<&'u str> = Vec::new();
        for entry in &self.req.include {
            let entry = entry.trim();
            let (name, version) = match entry.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (entry, None),
            };
            if name.is_empty() || version.is_some_and(str::is_empty) {
                return Err(SolveError::BadInclude(entry.to_string()));
            }
            if self.exclude.contains(name) {
                return Err(SolveError::IncludedAndExcluded(name.to_string()));
            }
            order.push(name);
            match version {
                Some(v) => {
                    let want = DebVersion::parse(v)
                        .map_err(|_| SolveError::BadInclude(entry.to_string()))?;
                    let Some(&id) = u.versions(name).iter().find(|&&id| *u.version(id) == want)
                    else {
                        return Err(SolveError::PinNotFound {
                            name: name.to_string(),
                            version: v.to_string(),
                            available: u
                                .versions(name)
                                .iter()
                                .map(|&id| u.package(id).version.clone())
                                .collect(),
                        });
                    };
                    if let Some(&(_, other)) = pinned.iter().find(|(n, o)| *n == name && *o != id) {
                        return Err(SolveError::ConflictingPins {
                            name: name.to_string(),
                            first: u.package(other).version.clone(),
                            second: v.to_string(),
                        });
                    }
                    pinned.push((name, id));
                }
                None => plain.push(name),
            }
        }
        self.pins = pinned.iter().copied().collect();
        let mut roots = Vec::new();
        for name in order {
            let id = if let Some(&id) = self.pins.get(name) {
                id
            } else if let Some(id) = self.candidate(name) {
                id
            } else {
                let mut providers: Vec<PkgId> = u
                    .providers(name)
                    .iter()
                    .copied()
                    .filter(|&p| self.candidate(&u.package(p).name) == Some(p))
                    .collect();
                providers.dedup();
                match providers.as_slice() {
                    [] => return Err(SolveError::UnknownPackage(name.to_string())),
                    [one] => *one,
                    many => {
                        return Err(SolveError::AmbiguousVirtual {
                            name: name.to_string(),
                            providers: many.iter().map(|&p| u.package(p).name.clone()).collect(),
                        });
                    }
                }
            };
            if !roots.contains(&id) {
                roots.push(id);
            }
        }
        Ok(roots)
    }

    fn candidate(&self, name: &str) -> Option<PkgId> {
        self.pins
            .get(name)
            .copied()
            .or_else(|| self.u.candidate(name))
    }

    fn run(&mut self, roots: &[PkgId]) -> Result<(), SolveError> {
        let u = self.u;
        for &r in roots {
            let name = u.package(r).name.as_str();
            if self.exclude.contains(name) {
                return Err(SolveError::IncludedAndExcluded(name.to_string()));
            }
            if let Some(why) = self.conflict(r) {
                return Err(SolveError::Unsatisfiable {
                    chain: vec![name.to_string()],
                    reason: why,
                    names: vec![name.to_string()],
                });
            }
            if let Some(&other) = self.selected.get(name) {
                if other != r {
                    return Err(SolveError::ConflictingPins {
                        name: name.to_string(),
                        first: u.package(other).version.clone(),
                        second: u.package(r).version.clone(),
                    });
                }
                continue;
            }
            self.select(r, None);
        }
        let mut agenda: Vec<Clause<'u>> = Vec::new();
        for &r in roots.iter().rev() {
            self.push_clauses(r, &mut agenda);
        }
        let mut choices: Vec<Choice<'u>> = Vec::new();
        while let Some(clause) = agenda.pop() {
            if self.satisfied(clause) {
                continue;
            }
            let (mut options, why, dynamic) = self.options(clause);
            if options.is_empty() {
                if clause.kind == DepKind::Recommends {
                    continue;
                }
                self.record_failure(clause, why);
                if !dynamic {
                    self.backjump(clause.by, &mut choices);
                }
                if !self.backtrack(&mut choices, &mut agenda)? {
                    let f = self.failure.take().unwrap_or_default();
                    return Err(SolveError::Unsatisfiable {
                        chain: f.chain,
                        reason: f.reason,
                        names: f.names,
                    });
                }
                continue;
            }
            if clause.kind == DepKind::Recommends {
                options.push(None);
            }
            let first = options[0];
            choices.push(Choice {
                trail_len: self.trail.len(),
                agenda: agenda.clone(),
                clause,
                options,
                next: 1,
            });
            self.apply(first, clause, &mut agenda)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        opt: Option<PkgId>,
        clause: Clause<'u>,
        agenda: &mut Vec<Clause<'u>>,
    ) -> Result<(), SolveError> {
        self.steps += 1;
        if self.steps > self.req.max_steps {
            let f = self.failure.clone().unwrap_or_default();
            return Err(SolveError::SearchLimit {
                steps: self.req.max_steps,
                chain: f.chain,
                reason: f.reason,
                names: f.names,
            });
        }
        if let Some(id) = opt {
            self.select(id, Some(clause));
            self.push_clauses(id, agenda);
        }
        Ok(())
    }

    /// Undo to the latest choice point with an untried option and take it.
    fn backtrack(
        &mut self,
        choices: &mut Vec<Choice<'u>>,
        agenda: &mut Vec<Clause<'u>>,
    ) -> Result<bool, SolveError> {
        while let Some(mut c) = choices.pop() {
            while self.trail.len() > c.trail_len {
                self.unselect();
            }
            if c.next < c.options.len() {
                let opt = c.options[c.next];
                c.next += 1;
                agenda.clone_from(&c.agenda);
                let clause = c.clause;
                choices.push(c);
                self.apply(opt, clause, agenda)?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A dependency of `by` failed whatever else is selected: only undoing
    /// the choice that selected `by` can help, so drop the choice points
    /// made after it (the next backtrack resumes at that choice).
    fn backjump(&mut self, by: PkgId, choices: &mut Vec<Choice<'u>>) {
        let Some(k) = self.trail.iter().position(|&x| x == by) else {
            return;
        };
        while choices.last().is_some_and(|c| c.trail_len > k) {
            choices.pop();
        }
    }

    /// Queue `id`'s dependencies so that they pop in apt's order.
    fn push_clauses(&self, id: PkgId, agenda: &mut Vec<Clause<'u>>) {
        let p = self.u.package(id);
        let mut fields = vec![
            (DepKind::PreDepends, &p.pre_depends),
            (DepKind::Depends, &p.depends),
        ];
        if self.req.recommends {
            fields.push((DepKind::Recommends, &p.recommends));
        }
        let mut ordered: Vec<Clause<'u>> = Vec::new();
        for single in [true, false] {
            for (kind, groups) in &fields {
                for group in groups.iter() {
                    if (group.alternatives.len() == 1) == single {
                        ordered.push(Clause {
                            by: id,
                            kind: *kind,
                            group,
                        });
                    }
                }
            }
        }
        agenda.extend(ordered.into_iter().rev());
    }

    fn select(&mut self, id: PkgId, reason: Option<Clause<'u>>) {
        let e = self.u.entry(id);
        self.selected.insert(e.pkg.name.as_str(), id);
        for (virt, _) in &e.provides {
            self.provided.entry(virt.as_str()).or_default().push(id);
        }
        for (rels, breaks) in [(&e.pkg.conflicts, false), (&e.pkg.breaks, true)] {
            for r in rels {
                self.conflicts_on
                    .entry(r.name.as_str())
                    .or_default()
                    .push((id, r, breaks));
            }
        }
        self.reasons.insert(id, reason);
        self.trail.push(id);
    }

    fn unselect(&mut self) {
        let Some(id) = self.trail.pop() else { return };
        let e = self.u.entry(id);
        self.selected.remove(e.pkg.name.as_str());
        for (virt, _) in e.provides.iter().rev() {
            if let Some(v) = self.provided.get_mut(virt.as_str()) {
                v.pop();
            }
        }
        for rels in [&e.pkg.breaks, &e.pkg.conflicts] {
            for r in rels.iter().rev() {
                if let Some(v) = self.conflicts_on.get_mut(r.name.as_str()) {
                    v.pop();
                }
            }
        }
        self.reasons.remove(&id);
    }

    fn satisfied(&self, c: Clause<'u>) -> bool {
        let u = self.u;
        let depender = u.package(c.by);
        let mut any_applies = false;
        for alt in &c.group.alternatives {
            if !alt.applies_to(u.native()) {
                continue;
            }
            any_applies = true;
            if let Some(&s) = self.selected.get(alt.name.as_str())
                && alt
                    .constraint
                    .as_ref()
                    .is_none_or(|k| k.matches(u.version(s)))
                && arch_satisfied(u.native(), alt, u.package(s), Some(depender))
            {
                return true;
            }
            if let Some(list) = self.provided.get(alt.name.as_str()) {
                for &s in list {
                    let pv = u.provided_version(s, &alt.name).flatten();
                    if provide_matches(alt.constraint.as_ref(), pv)
                        && arch_satisfied(u.native(), alt, u.package(s), Some(depender))
                    {
                        return true;
                    }
                }
            }
        }
        !any_applies
    }

    /// The packages that could satisfy `c` now, in preference order; why
    /// each alternative offers nothing (for the error message); and whether
    /// any option was lost to the current selection (a conflict, another
    /// version) rather than to the universe and the request alone.
    fn options(&self, c: Clause<'u>) -> (Vec<Option<PkgId>>, String, bool) {
        let mut dynamic = false;
        let u = self.u;
        let depender = u.package(c.by);
        let mut options: Vec<Option<PkgId>> = Vec::new();
        let mut why: Vec<String> = Vec::new();
        for alt in &c.group.alternatives {
            if !alt.applies_to(u.native()) {
                continue;
            }
            let mut alt_why: Vec<String> = Vec::new();
            let mut targets: Vec<PkgId> = Vec::new();
            if let Some(cand) = self.candidate(&alt.name) {
                let v = u.version(cand);
                if !alt.constraint.as_ref().is_none_or(|k| k.matches(v)) {
                    alt_why.push(format!("no candidate: newest is {v}"));
                } else if !arch_satisfied(u.native(), alt, u.package(cand), Some(depender)) {
                    alt_why.push(format!(
                        "{} {} is Multi-Arch: {:?}, not allowed for :{}",
                        alt.name,
                        v,
                        u.package(cand).multi_arch,
                        alt.arch_qualifier.as_deref().unwrap_or("")
                    ));
                } else {
                    targets.push(cand);
                }
            }
            let mut providers: Vec<PkgId> = Vec::new();
            let mut rejected_providers = 0usize;
            for &p in u.providers(&alt.name) {
                let pp = u.package(p);
                if self.candidate(&pp.name) != Some(p) || pp.name == alt.name {
                    continue;
                }
                let pv = u.provided_version(p, &alt.name).flatten();
                if provide_matches(alt.constraint.as_ref(), pv)
                    && arch_satisfied(u.native(), alt, pp, Some(depender))
                {
                    providers.push(p);
                } else {
                    rejected_providers += 1;
                }
            }
            providers.sort_by_key(|&p| {
                let pp = u.package(p);
                (
                    !pp.essential,
                    !pp.important,
                    pp.architecture != u.native(),
                    pp.priority.map_or(u8::MAX, |x| x as u8),
                    -pp.pin_priority,
                    pp.name.as_str(),
                )
            });
            targets.extend(providers);
            if targets.is_empty() && alt_why.is_empty() {
                alt_why.push(if rejected_providers > 0 {
                    format!("no provider matches ({rejected_providers} provide other versions)")
                } else if u.versions(&alt.name).is_empty() {
                    "no such package".to_string()
                } else {
                    "no candidate".to_string()
                });
            }
            for t in targets {
                let tp = u.package(t);
                if self.exclude.contains(tp.name.as_str()) {
                    alt_why.push(format!("{} is excluded", tp.name));
                } else if let Some(&s) = self.selected.get(tp.name.as_str()) {
                    dynamic = true;
                    alt_why.push(format!(
                        "{} {} is selected, not {}",
                        tp.name,
                        u.package(s).version,
                        tp.version
                    ));
                } else if let Some(conflict) = self.conflict(t) {
                    dynamic = true;
                    alt_why.push(conflict);
                } else if !options.contains(&Some(t)) {
                    options.push(Some(t));
                }
            }
            if c.group.alternatives.len() > 1 {
                why.extend(alt_why.into_iter().map(|w| format!("{alt}: {w}")));
            } else {
                why.extend(alt_why);
            }
        }
        (options, why.join("; "), dynamic)
    }

    /// Why `t` cannot join the selection because of Conflicts/Breaks.
    fn conflict(&self, t: PkgId) -> Option<String> {
        let u = self.u;
        let te = u.entry(t);
        let verb = |breaks: bool| if breaks { "breaks" } else { "conflicts with" };
        for (rels, breaks) in [(&te.pkg.conflicts, false), (&te.pkg.breaks, true)] {
            for r in rels {
                if let Some(&s) = self.selected.get(r.name.as_str())
                    && u.package(s).name != te.pkg.name
                    && r.constraint
                        .as_ref()
                        .is_none_or(|k| k.matches(u.version(s)))
                {
                    return Some(format!(
                        "{} {} {} {} {}",
                        te.pkg.name,
                        verb(breaks),
                        r,
                        u.package(s).name,
                        u.package(s).version
                    ));
                }
                for &s in self.provided.get(r.name.as_str()).into_iter().flatten() {
                    let sp = u.package(s);
                    if sp.name != te.pkg.name
                        && provide_matches(
                            r.constraint.as_ref(),
                            u.provided_version(s, &r.name).flatten(),
                        )
                    {
                        return Some(format!(
                            "{} {} {} (provided by {} {})",
                            te.pkg.name,
                            verb(breaks),
                            r,
                            sp.name,
                            sp.version
                        ));
                    }
                }
            }
        }
        let own = std::iter::once((te.pkg.name.as_str(), Some(&te.version)))
            .chain(te.provides.iter().map(|(n, v)| (n.as_str(), v.as_ref())));
        for (name, version) in own {
            let real = name == te.pkg.name;
            for &(s, r, breaks) in self.conflicts_on.get(name).into_iter().flatten() {
                let sp = u.package(s);
                if sp.name == te.pkg.name {
                    continue;
                }
                let hit = if real {
                    r.constraint
                        .as_ref()
                        .is_none_or(|k| version.is_some_and(|v| k.matches(v)))
                } else {
                    provide_matches(r.constraint.as_ref(), version)
                };
                if hit {
                    return Some(format!("{} {} {} {}", sp.name, sp.version, verb(breaks), r));
                }
            }
        }
        None
    }

    fn record_failure(&mut self, c: Clause<'u>, reason: String) {
        let depth = self.trail.len();
        if self.failure.as_ref().is_some_and(|f| f.depth >= depth) {
            return;
        }
        let mut chain = vec![c.group.to_string()];
        let mut at = Some(c.by);
        while let Some(id) = at {
            chain.push(self.u.package(id).name.clone());
            at = self.reasons.get(&id).copied().flatten().map(|r| r.by);
        }
        chain.reverse();
        self.failure = Some(Failure {
            depth,
            chain,
            reason,
            names: c
                .group
                .alternatives
                .iter()
                .map(|r| r.name.clone())
                .collect(),
        });
    }
}
