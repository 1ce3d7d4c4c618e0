//! A `Packages` index read into solver [`Package`]s: the stanzas split by
//! [`crate::deb822`] (the one control-file reader, shared with kiln-repo),
//! and of each stanza only the fields the solver needs. Fetching,
//! verifying and the full field set are kiln-repo's job; this serves tests
//! and small tools.

use crate::deb822::{self, Deb822Error, Paragraph};
use crate::relation::{self, RelationError};
use crate::universe::{MultiArch, Package, Priority};

/// Why a `Packages` index does not parse.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    #[error("control syntax")]
    Syntax(#[source] Deb822Error),
    #[error("stanza at line {line}: missing {field}")]
    Missing { line: usize, field: &'static str },
    #[error("stanza at line {line} ({package}): field {field}")]
    Relation {
        line: usize,
        package: String,
        field: String,
        #[source]
        source: RelationError,
    },
}

/// Parse `text`; every package gets `pin_priority` and `origin`.
pub fn parse(text: &str, pin_priority: i32, origin: &str) -> Result<Vec<Package>, PackagesError> {
    deb822::parse(text)
        .map_err(PackagesError::Syntax)?
        .iter()
        .map(|p| stanza(p, pin_priority, origin))
        .collect()
}

fn stanza(para: &Paragraph<'_>, pin_priority: i32, origin: &str) -> Result<Package, PackagesError> {
    let line = para.line;
    let get = |f: &str| para.get(f).map(str::trim);
    let need = |f: &'static str| get(f).ok_or(PackagesError::Missing { line, field: f });
    let mut p = Package::new(need("Package")?, need("Version")?, need("Architecture")?);
    p.pin_priority = pin_priority;
    p.origin = origin.to_string();
    p.multi_arch = get("Multi-Arch").map_or(MultiArch::No, MultiArch::from_field);
    p.essential = get("Essential") == Some("yes");
    p.important = get("Important") == Some("yes");
    p.priority = get("Priority").and_then(Priority::from_field);
    let err = |field: &str, source| PackagesError::Relation {
        line,
        package: p.name.clone(),
        field: field.to_string(),
        source,
    };
    let groups = |f: &str| {
        get(f).map_or(Ok(Vec::new()), |v| {
            relation::parse(v).map_err(|e| err(f, e))
        })
    };
    let flat = |f: &str| {
        get(f).map_or(Ok(Vec::new()), |v| {
            relation::parse_flat(v).map_err(|e| err(f, e))
        })
    };
    let pre_depends = groups("Pre-Depends")?;
    let depends = groups("Depends")?;
    let recommends = groups("Recommends")?;
    let provides = flat("Provides")?;
    let conflicts = flat("Conflicts")?;
    let breaks = flat("Breaks")?;
    p.pre_depends = pre_depends;
    p.depends = depends;
    p.recommends = recommends;
    p.provides = provides;
    p.conflicts = conflicts;
    p.breaks = breaks;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas() {
        let text = "Package: a\nVersion: 1.0-1\nArchitecture: amd64\nDepends: b (>= 2) | c,\n d\nMulti-Arch: allowed\nEssential: yes\nPriority: required\n\n\nPackage: b\nVersion: 2\nArchitecture: all\nProvides: v (= 1), w\nConflicts: x\nBreaks: y (<< 3)\nDescription: text\n more\n .\n";
        let ps = parse(text, 990, "suite").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].depends.len(), 2);
        assert_eq!(ps[0].multi_arch, MultiArch::Allowed);
        assert!(ps[0].essential);
        assert_eq!(ps[0].priority, Some(Priority::Required));
        assert_eq!(ps[1].provides.len(), 2);
        assert_eq!(ps[1].pin_priority, 990);
        assert_eq!(ps[1].breaks[0].to_string(), "y (<< 3)");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse("Package: a\nVersion: 1\n", 500, ""),
            Err(PackagesError::Missing {
                field: "Architecture",
                ..
            })
        ));
        assert!(matches!(
            parse(" x\n", 500, ""),
            Err(PackagesError::Syntax(Deb822Error { line: 1, .. }))
        ));
        assert!(matches!(
            parse(
                "Package: a\nVersion: 1\nArchitecture: all\nConflicts: a | b\n",
                500,
                ""
            ),
            Err(PackagesError::Relation { .. })
        ));
    }
}
