//! Debian relation fields (Policy §7.1): `Depends`, `Pre-Depends`,
//! `Recommends`, `Conflicts`, `Breaks` and `Provides`, e.g.
//! `a (>= 1.0) | b, c:any, d [amd64] <!nocheck>`.
//!
//! [`parse`] turns a field into [`OrGroup`]s (comma-separated) of
//! [`Relation`]s (`|`-separated alternatives). [`parse_flat`] is for fields
//! that may not hold alternatives (`Conflicts`, `Breaks`, `Provides`).
//! `Display` writes the canonical form, which parses back to an equal value.
//!
//! Accepted as dpkg and apt do: blanks anywhere between tokens, the
//! deprecated operators `<` (meaning `<=`) and `>` (meaning `>=`), empty
//! entries between commas (skipped). Versions are ordered by kiln's
//! dpkg-exact [`DebVersion`].

use std::cmp::Ordering;
use std::fmt;

pub use kiln_debversion::{DebVersion, VersionError};

/// Why a relation field does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelationError {
    #[error("relation {0:?}: missing package name")]
    MissingName(String),
    #[error("relation {0:?}: unexpected {1:?}")]
    Unexpected(String, String),
    #[error("relation {0:?}: unknown operator {1:?}")]
    BadOperator(String, String),
    #[error("relation {0:?}: missing ')'")]
    Unclosed(String),
    #[error("relation {0:?}: bad version")]
    BadVersion(String, #[source] VersionError),
    #[error("relation {0:?}: alternatives ('|') are not allowed in this field")]
    AlternativesNotAllowed(String),
}

/// A version operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (also the deprecated `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (also the deprecated `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Whether `have.cmp(wanted)` == `ord` satisfies `have OP wanted`.
    pub fn accepts(self, ord: Ordering) -> bool {
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }
}

/// `(OP VERSION)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    pub version: DebVersion,
}

impl Constraint {
    /// Whether version `have` satisfies this constraint.
    pub fn matches(&self, have: &DebVersion) -> bool {
        self.op.accepts(have.cmp(&self.version))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} {})", self.op.as_str(), self.version)
    }
}

/// One relation: `name[:arch] [(op version)] [[arch…]] [<profile…>…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// The architecture qualifier after `:` (`any`, `native`, `amd64`…).
    pub arch_qualifier: Option<String>,
    pub constraint: Option<Constraint>,
    /// Architecture restriction tokens in `[…]`, e.g. `amd64`, `!i386`.
    pub arch_restriction: Vec<String>,
    /// Build-profile groups, each `<…>` one group of terms (`!nocheck`).
    pub profiles: Vec<Vec<String>>,
}

impl Relation {
    /// A plain relation on `name` with no qualifiers.
    pub fn named(name: &str) -> Relation {
        Relation {
            name: name.to_string(),
            arch_qualifier: None,
            constraint: None,
            arch_restriction: Vec::new(),
            profiles: Vec::new(),
        }
    }

    /// Whether this relation applies when building for `arch` with no
    /// build profile active (binary packages never carry restrictions, but
    /// dpkg drops a restricted-away alternative and so do we).
    pub fn applies_to(&self, arch: &str) -> bool {
        let arch_ok = if self.arch_restriction.is_empty() {
            true
        } else {
            let hit =
                |t: &str| t == arch || t == "any" || t == "linux-any" || t == format!("any-{arch}");
            let negated = self.arch_restriction.iter().any(|t| t.starts_with('!'));
            if negated {
                !self
                    .arch_restriction
                    .iter()
                    .any(|t| hit(t.trim_start_matches('!')))
            } else {
                self.arch_restriction.iter().any(|t| hit(t))
            }
        };
        // A profile group holds when all its terms hold; with no profile
        // active only negated terms hold. The relation applies when any
        // group holds (or there are none).
        let profile_ok = self.profiles.is_empty()
            || self
                .profiles
                .iter()
                .any(|g| g.iter().all(|t| t.starts_with('!')));
        arch_ok && profile_ok
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch_qualifier {
            write!(f, ":{a}")?;
        }
        if let Some(c) = &self.constraint {
            write!(f, " {c}")?;
        }
        if !self.arch_restriction.is_empty() {
            write!(f, " [{}]", self.arch_restriction.join(" "))?;
        }
        for g in &self.profiles {
            write!(f, " <{}>", g.join(" "))?;
        }
        Ok(())
    }
}

/// Alternatives: `a | b | c`. Satisfied when any one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrGroup {
    pub alternatives: Vec<Relation>,
}

impl fmt::Display for OrGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Write groups as a field value (`a | b, c`).
pub fn format_field(groups: &[OrGroup]) -> String {
    groups
        .iter()
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse a relation field with alternatives (`Depends`, `Pre-Depends`,
/// `Recommends`…).
pub fn parse(field: &str) -> Result<Vec<OrGroup>, RelationError> {
    let mut out = Vec::new();
    for entry in field.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let alternatives = entry
            .split('|')
            .map(parse_one)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(OrGroup { alternatives });
    }
    Ok(out)
}

/// Parse a field without alternatives (`Conflicts`, `Breaks`, `Provides`).
pub fn parse_flat(field: &str) -> Result<Vec<Relation>, RelationError> {
    let mut out = Vec::new();
    for g in parse(field)? {
        let mut alts = g.alternatives;
        if alts.len() != 1 {
            return Err(RelationError::AlternativesNotAllowed(
                OrGroup { alternatives: alts }.to_string(),
            ));
        }
        out.extend(alts.pop());
    }
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_')
}

fn is_arch_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

/// Parse one alternative.
fn parse_one(text: &str) -> Result<Relation, RelationError> {
    let whole = text.trim();
    let err_unexpected =
        |rest: &str| RelationError::Unexpected(whole.to_string(), rest.to_string());
    let name_end = whole.find(|c| !is_name_char(c)).unwrap_or(whole.len());
    if name_end == 0 {
        return Err(RelationError::MissingName(whole.to_string()));
    }
    if !whole.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        // Policy §5.6.1: a package name starts with an alphanumeric.
        return Err(err_unexpected(whole));
    }
    let mut rel = Relation::named(&whole[..name_end]);
    let mut rest = &whole[name_end..];
    if let Some(r) = rest.strip_prefix(':') {
        let end = r.find(|c| !is_arch_char(c)).unwrap_or(r.len());
        if end == 0 {
            return Err(err_unexpected(rest));
        }
        rel.arch_qualifier = Some(r[..end].to_string());
        rest = &r[end..];
    }
    rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| RelationError::Unclosed(whole.to_string()))?;
        let inner = r[..close].trim_start();
        let op_len = inner
            .find(|c| !matches!(c, '<' | '>' | '='))
            .unwrap_or(inner.len());
        let op = match &inner[..op_len] {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            other => {
                return Err(RelationError::BadOperator(
                    whole.to_string(),
                    other.to_string(),
                ));
            }
        };
        let v = inner[op_len..].trim();
        let version =
            DebVersion::parse(v).map_err(|e| RelationError::BadVersion(whole.to_string(), e))?;
        rel.constraint = Some(Constraint { op, version });
        rest = r[close + 1..].trim_start();
    }
    if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']').ok_or_else(|| err_unexpected(rest))?;
        rel.arch_restriction = r[..close].split_whitespace().map(str::to_string).collect();
        let negated = |t: &String| t.starts_with('!');
        if rel.arch_restriction.is_empty()
            || rel.arch_restriction.iter().any(|t| {
                t.trim_start_matches('!').is_empty()
                    || !t.trim_start_matches('!').chars().all(is_arch_char)
            })
            // All entries are negated or none (Policy §7.1).
            || (rel.arch_restriction.iter().any(negated)
                && !rel.arch_restriction.iter().all(negated))
        {
            return Err(err_unexpected(rest));
        }
        rest = r[close + 1..].trim_start();
    }
    while let Some(r) = rest.strip_prefix('<') {
        let close = r.find('>').ok_or_else(|| err_unexpected(rest))?;
        let group: Vec<String> = r[..close].split_whitespace().map(str::to_string).collect();
        if group.is_empty()
            || group.iter().any(|t| {
                let t = t.trim_start_matches('!');
                t.is_empty() || !t.chars().all(is_name_char)
            })
        {
            return Err(err_unexpected(rest));
        }
        rel.profiles.push(group);
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(err_unexpected(rest));
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn example_field() {
        let g =
            parse("a (>= 1.0) | b, c:any, d [amd64],, e(<<2)<!nocheck> <stage1 cross>").unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g[0].alternatives.len(), 2);
        let a = &g[0].alternatives[0];
        assert_eq!(a.name, "a");
        let c = a.constraint.as_ref().unwrap();
        assert_eq!(c.op, Op::Ge);
        assert_eq!(c.version.as_str(), "1.0");
        assert_eq!(g[1].alternatives[0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(g[2].alternatives[0].arch_restriction, vec!["amd64"]);
        assert_eq!(g[3].alternatives[0].profiles.len(), 2);
        assert_eq!(
            format_field(&g),
            "a (>= 1.0) | b, c:any, d [amd64], e (<< 2) <!nocheck> <stage1 cross>"
        );
    }

    #[test]
    fn deprecated_ops_and_blanks() {
        let g = parse("  x ( <  1 ) ,y (>1:2-3)\n , z (= 1)").unwrap();
        assert_eq!(g[0].alternatives[0].constraint.as_ref().unwrap().op, Op::Le);
        assert_eq!(g[1].alternatives[0].constraint.as_ref().unwrap().op, Op::Ge);
        assert_eq!(g[2].alternatives[0].constraint.as_ref().unwrap().op, Op::Eq);
    }

    #[test]
    fn errors() {
        for bad in [
            "(>= 1)", "a (>= 1", "a (=> 1)", "a (>= )", "a b", "a:", "a []", "a <>", "a | ",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_flat("a | b"),
            Err(RelationError::AlternativesNotAllowed(_))
        ));
    }

    #[test]
    fn a_real_depends_line() {
        let v = |s: &str| DebVersion::parse(s).unwrap();
        let r = parse(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12~),\n perl:any",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].alternatives.len(), 2);
        assert_eq!(r[1].alternatives[1].name, "debconf-2.0");
        let c = r[0].alternatives[0].constraint.as_ref().unwrap();
        assert_eq!(c.op, Op::Ge);
        assert!(c.matches(&v("2.36-9+deb12u10")));
        assert!(!c.matches(&v("2.31")));
        assert_eq!(r[2].alternatives[0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(r[3].alternatives[0].name, "perl");
        assert_eq!(
            format_field(&r),
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12~), perl:any"
        );
    }

    #[test]
    fn every_operator() {
        for (t, op) in [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            ("=", Op::Eq),
            (">=", Op::Ge),
            (">>", Op::Gt),
            ("<", Op::Le),
            (">", Op::Ge),
        ] {
            let r = parse(&format!("a ({t} 1.0)")).unwrap();
            assert_eq!(
                r[0].alternatives[0].constraint.as_ref().unwrap().op,
                op,
                "{t}"
            );
        }
        let v = |s: &str| DebVersion::parse(s).unwrap();
        let c = |s: &str| parse_one(s).unwrap().constraint.unwrap();
        assert!(c("a (<< 1.0)").matches(&v("1.0~rc1")));
        assert!(!c("a (<< 1.0)").matches(&v("1.0")));
    }

    #[test]
    fn restrictions_and_profiles_round_trip() {
        let r = parse("foo [amd64 arm64] <!nocheck> <stage1 cross>, bar [!i386]").unwrap();
        let a = &r[0].alternatives[0];
        assert_eq!(a.arch_restriction.len(), 2);
        assert_eq!(a.profiles, [vec!["!nocheck"], vec!["stage1", "cross"]]);
        assert!(r[1].alternatives[0].arch_restriction[0].starts_with('!'));
        assert_eq!(
            format_field(&r),
            "foo [amd64 arm64] <!nocheck> <stage1 cross>, bar [!i386]"
        );
    }

    #[test]
    fn more_garbage() {
        // Names start with an alphanumeric; an architecture list is all
        // negated or all plain; no text after the last part.
        for bad in ["-a", "a [amd64 !i386]", "a (>= 1 2)", "a (~ 1)", "a, b c"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // dpkg skips empty entries between commas.
        assert_eq!(parse("a,,b").unwrap().len(), 2);
        assert_eq!(parse(",a").unwrap().len(), 1);
        assert_eq!(parse("a, b,").unwrap().len(), 2);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn restrictions_apply() {
        let r = |s: &str| parse_one(s).unwrap();
        assert!(r("a [amd64]").applies_to("amd64"));
        assert!(!r("a [i386]").applies_to("amd64"));
        assert!(!r("a [!amd64]").applies_to("amd64"));
        assert!(r("a [!i386]").applies_to("amd64"));
        assert!(r("a [linux-any]").applies_to("amd64"));
        assert!(r("a <!nocheck>").applies_to("amd64"));
        assert!(!r("a <stage1>").applies_to("amd64"));
        assert!(r("a <stage1> <!nocheck>").applies_to("amd64"));
    }

    #[test]
    fn constraint_matching() {
        let v = |s: &str| DebVersion::parse(s).unwrap();
        let c = |s: &str| parse_one(s).unwrap().constraint.unwrap();
        assert!(c("a (>= 2.2)").matches(&v("2.2-1")));
        assert!(!c("a (>= 2.2)").matches(&v("2.0.1-1")));
        assert!(c("a (<< 2)").matches(&v("1.9")));
        assert!(!c("a (<< 2)").matches(&v("2")));
        assert!(c("a (= 1.0)").matches(&v("1.0-0")));
        assert!(c("a (>> 1:0)").matches(&v("1:0.1")));
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9+.-]{0,12}"
    }

    fn relation() -> impl Strategy<Value = Relation> {
        let op = prop_oneof![
            Just(Op::Lt),
            Just(Op::Le),
            Just(Op::Eq),
            Just(Op::Ge),
            Just(Op::Gt)
        ];
        let version = "([0-9]{1,3}:)?[0-9][a-z0-9.+~]{0,6}(-[a-z0-9.+~]{1,4})?";
        (
            name(),
            proptest::option::of("any|native|amd64|all"),
            proptest::option::of((op, version)),
            (
                any::<bool>(),
                proptest::collection::vec("[a-z0-9-]{1,8}", 0..3),
            ),
            proptest::collection::vec(proptest::collection::vec("!?[a-z0-9]{1,6}", 1..3), 0..2),
        )
            .prop_map(|(name, q, c, arches, profiles)| Relation {
                name,
                arch_qualifier: q,
                constraint: c.map(|(op, v)| Constraint {
                    op,
                    version: DebVersion::parse(&v).unwrap(),
                }),
                arch_restriction: arches
                    .1
                    .into_iter()
                    .map(|a| if arches.0 { format!("!{a}") } else { a })
                    .collect(),
                profiles,
            })
    }

    proptest! {
        #[test]
        fn display_parses_back(groups in proptest::collection::vec(
            proptest::collection::vec(relation(), 1..4).prop_map(|alternatives| OrGroup { alternatives }),
            0..5,
        )) {
            let text = format_field(&groups);
            let back = parse(&text).unwrap();
            prop_assert_eq!(&back, &groups);
            // And versions keep their spelling.
            prop_assert_eq!(format_field(&back), text);
        }

        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = parse(&s);
            let _ = parse_flat(&s);
        }

        #[test]
        fn never_panics_near_syntax(s in "[a-z0-9:|,()<>=!\\[\\] .~+-]{0,40}") {
            if let Ok(g) = parse(&s) {
                // Whatever parses, prints to something that parses to the same.
                prop_assert_eq!(parse(&format_field(&g)).unwrap(), g);
            }
        }
    }
}
