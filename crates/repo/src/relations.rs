//! Debian package relationships (Policy §7.1) as a small typed tree, shared
//! by the index reader and the dependency solver.
//!
//! A field such as `Depends: libc6 (>= 2.34), debconf | debconf-2.0, python3:any`
//! is a list of [`Relation`]s (the comma-separated parts, all required); each
//! relation is a list of [`Alternative`]s (`|`, any one suffices); an
//! alternative names a package with an optional architecture qualifier
//! (`:any`, `:native`, `:amd64`), an optional version [`Constraint`]
//! (`(>= 1.0)`), an optional architecture restriction (`[amd64 !i386]`, found
//! in source fields) and optional build profiles (`<!nocheck>`, kept as text).
//!
//! Versions are [`kiln_scan::DebVersion`], ordered exactly as dpkg orders them.
//! `Display` writes the canonical form, which parses back to the same tree.

use std::cmp::Ordering;
use std::fmt;

use kiln_scan::DebVersion;

use crate::error::RelationError;

/// A version comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// The operator as written in control files.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Does `candidate.cmp(wanted)` being `ord` satisfy the operator?
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

/// `(op version)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub op: Op,
    pub version: DebVersion,
}

impl Constraint {
    /// Is `candidate` acceptable, e.g. `2.36-9` for `(>= 2.34)`?
    pub fn satisfied_by(&self, candidate: &DebVersion) -> bool {
        self.op.accepts(candidate.cmp(&self.version))
    }
}

/// One entry of an architecture restriction list, e.g. `!i386`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchRestriction {
    pub negated: bool,
    pub arch: String,
}

/// One package that can satisfy a relation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    pub name: String,
    /// The text after `:` (`any`, `native` or an architecture name).
    pub arch_qualifier: Option<String>,
    pub constraint: Option<Constraint>,
    /// `[amd64 !i386]`: empty when absent. All entries are negated or none.
    pub arch_restrictions: Vec<ArchRestriction>,
    /// `<!nocheck> <stage1>`: each group's text without the angle brackets.
    pub profiles: Vec<String>,
}

/// A required relation: any one of its alternatives satisfies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub alternatives: Vec<Alternative>,
}

/// Parse a whole relationship field (`Depends`, `Provides`, …). An empty
/// field gives an empty list; a trailing comma is tolerated.
pub fn parse_relations(s: &str) -> Result<Vec<Relation>, RelationError> {
    let err = |reason: String| RelationError {
        input: s.chars().take(200).collect(),
        reason,
    };
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split(',').collect();
    let n = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        if part.trim().is_empty() {
            if i + 1 == n && (i > 0 || s.trim().is_empty()) {
                break;
            }
            return Err(err("empty relation between commas".into()));
        }
        out.push(parse_relation(part).map_err(err)?);
    }
    Ok(out)
}

/// Parse one relation: alternatives separated by `|`.
pub fn parse_relation(s: &str) -> Result<Relation, String> {
    let mut alternatives = Vec::new();
    for alt in s.split('|') {
        alternatives.push(parse_alternative(alt)?);
    }
    Ok(Relation { alternatives })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
}

fn is_arch_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Parse one alternative, e.g. `libc6:any (>= 2.34) [amd64] <!nocheck>`.
pub fn parse_alternative(s: &str) -> Result<Alternative, String> {
    let mut rest = s.trim_start();
    let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
    let name = &rest[..name_len];
    if name.is_empty() {
        return Err(format!("expected a package name at {:?}", rest.trim()));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "package name {name:?} must start with a letter or digit"
        ));
    }
    rest = &rest[name_len..];
    let mut arch_qualifier = None;
    if let Some(r) = rest.strip_prefix(':') {
        let l = r.find(|c: char| !is_arch_char(c)).unwrap_or(r.len());
        if l == 0 {
            return Err(format!("empty architecture qualifier after {name:?}"));
        }
        arch_qualifier = Some(r[..l].to_string());
        rest = &r[l..];
    }
    rest = rest.trim_start();
    let mut constraint = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| format!("unclosed version constraint after {name:?}"))?;
        let inner = r[..close].trim();
        let (op, len) = [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            (">=", Op::Ge),
            (">>", Op::Gt),
            ("=", Op::Eq),
            ("<", Op::Le),
            (">", Op::Ge),
        ]
        .iter()
        .find(|(t, _)| inner.starts_with(t))
        .map(|(t, op)| (*op, t.len()))
        .ok_or_else(|| format!("bad version operator in ({inner})"))?;
        let v = inner[len..].trim();
        let version = DebVersion::parse(v).map_err(|e| format!("in ({inner}): {e}"))?;
        constraint = Some(Constraint { op, version });
        rest = r[close + 1..].trim_start();
    }
    let mut arch_restrictions = Vec::new();
    if let Some(r) = rest.strip_prefix('[') {
        let close = r
            .find(']')
            .ok_or_else(|| format!("unclosed architecture list after {name:?}"))?;
        for a in r[..close].split_whitespace() {
            let (negated, arch) = match a.strip_prefix('!') {
                Some(x) => (true, x),
                None => (false, a),
            };
            if arch.is_empty() || !arch.chars().all(is_arch_char) {
                return Err(format!("bad architecture {a:?} in [{}]", &r[..close]));
            }
            arch_restrictions.push(ArchRestriction {
                negated,
                arch: arch.to_string(),
            });
        }
        if arch_restrictions.is_empty() {
            return Err(format!("empty architecture list after {name:?}"));
        }
        if arch_restrictions.iter().any(|a| a.negated)
            && !arch_restrictions.iter().all(|a| a.negated)
        {
            return Err(format!(
                "architecture list after {name:?} mixes negated and plain entries"
            ));
        }
        rest = r[close + 1..].trim_start();
    }
    let mut profiles = Vec::new();
    while let Some(r) = rest.strip_prefix('<') {
        let close = r
            .find('>')
            .ok_or_else(|| format!("unclosed build profile after {name:?}"))?;
        let p = r[..close].split_whitespace().collect::<Vec<_>>().join(" ");
        if p.is_empty() || p.contains(['<', '(', '[', '|', ',']) {
            return Err(format!("bad build profile <{}>", &r[..close]));
        }
        profiles.push(p);
        rest = r[close + 1..].trim_start();
    }
    if !rest.trim().is_empty() {
        return Err(format!("unexpected {:?} after {name:?}", rest.trim()));
    }
    Ok(Alternative {
        name: name.to_string(),
        arch_qualifier,
        constraint,
        arch_restrictions,
        profiles,
    })
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({} {})", self.op.as_str(), self.version)
    }
}

impl fmt::Display for Alternative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some(c) = &self.constraint {
            write!(f, " {c}")?;
        }
        if !self.arch_restrictions.is_empty() {
            let list: Vec<String> = self
                .arch_restrictions
                .iter()
                .map(|a| format!("{}{}", if a.negated { "!" } else { "" }, a.arch))
                .collect();
            write!(f, " [{}]", list.join(" "))?;
        }
        for p in &self.profiles {
            write!(f, " <{p}>")?;
        }
        Ok(())
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Write a relation list as a field value (`a, b | c (>= 1)`).
pub fn format_relations(rels: &[Relation]) -> String {
    rels.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> DebVersion {
        DebVersion::parse(s).unwrap()
    }

    #[test]
    fn a_real_depends_line() {
        let r = parse_relations(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12~),\n perl:any",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].alternatives.len(), 2);
        assert_eq!(r[1].alternatives[1].name, "debconf-2.0");
        let c = r[0].alternatives[0].constraint.as_ref().unwrap();
        assert_eq!(c.op, Op::Ge);
        assert!(c.satisfied_by(&v("2.36-9+deb12u10")));
        assert!(!c.satisfied_by(&v("2.31")));
        assert_eq!(r[2].alternatives[0].arch_qualifier.as_deref(), Some("any"));
        assert_eq!(r[3].alternatives[0].name, "perl");
        assert_eq!(
            format_relations(&r),
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (<< 3.12~), perl:any"
        );
    }

    #[test]
    fn operators() {
        for (t, op) in [
            ("<<", Op::Lt),
            ("<=", Op::Le),
            ("=", Op::Eq),
            (">=", Op::Ge),
            (">>", Op::Gt),
            ("<", Op::Le),
            (">", Op::Ge),
        ] {
            let r = parse_relations(&format!("a ({t} 1.0)")).unwrap();
            assert_eq!(
                r[0].alternatives[0].constraint.as_ref().unwrap().op,
                op,
                "{t}"
            );
        }
        let c = |s: &str| {
            parse_relations(s).unwrap()[0].alternatives[0]
                .constraint
                .clone()
                .unwrap()
        };
        assert!(c("a (<< 1.0)").satisfied_by(&v("1.0~rc1")));
        assert!(!c("a (<< 1.0)").satisfied_by(&v("1.0")));
        assert!(c("a (= 1.0)").satisfied_by(&v("1.0-0")));
        assert!(c("a (>> 1:0)").satisfied_by(&v("1:0.1")));
    }

    #[test]
    fn restrictions_and_profiles() {
        let r =
            parse_relations("foo [amd64 arm64] <!nocheck> <stage1 cross>, bar [!i386]").unwrap();
        let a = &r[0].alternatives[0];
        assert_eq!(a.arch_restrictions.len(), 2);
        assert_eq!(a.profiles, ["!nocheck", "stage1 cross"]);
        assert!(r[1].alternatives[0].arch_restrictions[0].negated);
        assert_eq!(
            format_relations(&r),
            "foo [amd64 arm64] <!nocheck> <stage1 cross>, bar [!i386]"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "a,,b",
            ",a",
            "a (>= )",
            "a (~ 1)",
            "a (>= 1",
            "a | ",
            "A",
            "-a",
            "a b",
            "a [amd64 !i386]",
            "a []",
            "a:",
            "a (>= 1 2)",
        ] {
            assert!(parse_relations(bad).is_err(), "{bad}");
        }
        assert!(parse_relations("").unwrap().is_empty());
        assert_eq!(parse_relations("a, b,").unwrap().len(), 2);
    }

    fn alt() -> impl Strategy<Value = String> {
        (
            "[a-z0-9][a-z0-9+.-]{0,10}",
            proptest::option::of(prop_oneof![Just("any"), Just("native"), Just("amd64")]),
            proptest::option::of((
                prop_oneof![Just("<<"), Just("<="), Just("="), Just(">="), Just(">>")],
                "[0-9]{1,2}(:[0-9][a-z0-9.+~]{0,5})?(-[a-z0-9.+~]{1,4})?",
            )),
        )
            .prop_map(|(n, q, c)| {
                let mut s = n;
                if let Some(q) = q {
                    s = format!("{s}:{q}");
                }
                if let Some((op, ver)) = c {
                    s = format!("{s} ({op} {ver})");
                }
                s
            })
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_relations(&s);
        }

        #[test]
        fn never_panics_on_near_misses(s in "[a-z0-9:<>=()|, \\[\\]!.~+-]{0,40}") {
            let _ = parse_relations(&s);
        }

        #[test]
        fn canonical_form_round_trips(rels in proptest::collection::vec(proptest::collection::vec(alt(), 1..4), 1..6)) {
            let text = rels.iter().map(|r| r.join(" | ")).collect::<Vec<_>>().join(", ");
            let parsed = parse_relations(&text).unwrap();
            let shown = format_relations(&parsed);
            prop_assert_eq!(&shown, &text);
            prop_assert_eq!(parse_relations(&shown).unwrap(), parsed);
        }
    }
}
