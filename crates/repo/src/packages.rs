//! `Packages` indexes: one typed [`Package`] per stanza, with its
//! relationship fields parsed by [`kiln_solve::relation`], and
//! [`Package::to_solver`], the solver's view of it.

use kiln_debversion::DebVersion;
use kiln_oci::Digest;

use crate::error::Deb822Error;
pub use kiln_solve::MultiArch;
use kiln_solve::deb822::{self, Paragraph};
use kiln_solve::relation::{self, OrGroup, Relation};

/// `Source: name (version)`, filled from the binary's own name and version
/// when absent (as dpkg does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub name: String,
    pub version: DebVersion,
}

/// One binary package as listed in a `Packages` index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: DebVersion,
    pub architecture: String,
    pub multi_arch: MultiArch,
    pub essential: bool,
    pub priority: Option<String>,
    pub section: Option<String>,
    pub source: SourceRef,
    pub depends: Vec<OrGroup>,
    pub pre_depends: Vec<OrGroup>,
    /// The fields below admit no alternatives (`a | b` is an error).
    pub provides: Vec<Relation>,
    pub conflicts: Vec<Relation>,
    pub breaks: Vec<Relation>,
    pub replaces: Vec<Relation>,
    pub recommends: Vec<OrGroup>,
    /// `Important: yes`.
    pub important: bool,
    /// Path below the repository root (checked by [`crate::safe_filename`]
    /// before any download).
    pub filename: String,
    pub size: u64,
    pub sha256: Digest,
}

/// Parse a whole `Packages` text. A stanza that lacks a required field or
/// has a malformed one is an error naming its line.
pub fn parse_packages(text: &str) -> Result<Vec<Package>, Deb822Error> {
    deb822::parse(text)?.iter().map(package_from).collect()
}

/// One stanza to a [`Package`].
pub fn package_from(p: &Paragraph<'_>) -> Result<Package, Deb822Error> {
    let line = p.line;
    let bad = |reason: String| Deb822Error { line, reason };
    let req = |n: &str| -> Result<&str, Deb822Error> {
        p.get(n)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("stanza lacks {n}")))
    };
    let name = req("Package")?;
    let ctx = |field: &str, e: String| bad(format!("package {name}: {field}: {e}"));
    let version = DebVersion::parse(req("Version")?).map_err(|e| ctx("Version", e.to_string()))?;
    let rel = |field: &str| -> Result<Vec<OrGroup>, Deb822Error> {
        match p.get(field) {
            None => Ok(Vec::new()),
            Some(v) => relation::parse(v).map_err(|e| ctx(field, e.to_string())),
        }
    };
    let flat = |field: &str| -> Result<Vec<Relation>, Deb822Error> {
        match p.get(field) {
            None => Ok(Vec::new()),
            Some(v) => relation::parse_flat(v).map_err(|e| ctx(field, e.to_string())),
        }
    };
    let multi_arch = match p.get("Multi-Arch").map(str::to_ascii_lowercase).as_deref() {
        None | Some("no") => MultiArch::No,
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        Some(other) => return Err(ctx("Multi-Arch", format!("unknown value {other:?}"))),
    };
    let source = match p.get("Source") {
        None => SourceRef {
            name: name.to_string(),
            version: version.clone(),
        },
        Some(s) => {
            let (sname, sver) = match s.split_once('(') {
                Some((n, rest)) => {
                    let v = rest
                        .strip_suffix(')')
                        .ok_or_else(|| ctx("Source", format!("{s:?} lacks `)`")))?;
                    let v =
                        DebVersion::parse(v.trim()).map_err(|e| ctx("Source", e.to_string()))?;
                    (n.trim(), v)
                }
                None => (s.trim(), version.clone()),
            };
            if sname.is_empty() || sname.contains(char::is_whitespace) {
                return Err(ctx("Source", format!("bad source name {s:?}")));
            }
            SourceRef {
                name: sname.to_string(),
                version: sver,
            }
        }
    };
    let size: u64 = req("Size")?
        .parse()
        .map_err(|_| ctx("Size", "not a number".into()))?;
    let sha256 = Digest::from_hex(req("SHA256")?).map_err(|e| ctx("SHA256", e.to_string()))?;
    let essential = match p.get("Essential") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("yes") => true,
        Some(v) if v.eq_ignore_ascii_case("no") => false,
        Some(v) => return Err(ctx("Essential", format!("{v:?} is not yes or no"))),
    };
    Ok(Package {
        name: name.to_string(),
        version,
        architecture: req("Architecture")?.to_string(),
        multi_arch,
        essential,
        priority: p.get("Priority").map(str::to_string),
        section: p.get("Section").map(str::to_string),
        source,
        depends: rel("Depends")?,
        pre_depends: rel("Pre-Depends")?,
        provides: flat("Provides")?,
        conflicts: flat("Conflicts")?,
        breaks: flat("Breaks")?,
        replaces: flat("Replaces")?,
        recommends: rel("Recommends")?,
        important: p
            .get("Important")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        filename: req("Filename")?.to_string(),
        size,
        sha256,
    })
}

impl Package {
    /// The solver's view: the relations, Multi-Arch, Essential/Important
    /// and Priority, with the pin priority and origin of the suite it was
    /// read from.
    pub fn to_solver(&self, pin_priority: i32, origin: &str) -> kiln_solve::Package {
        let mut p = kiln_solve::Package::new(&self.name, self.version.as_str(), &self.architecture);
        p.multi_arch = self.multi_arch;
        p.pre_depends = self.pre_depends.clone();
        p.depends = self.depends.clone();
        p.recommends = self.recommends.clone();
        p.provides = self.provides.clone();
        p.conflicts = self.conflicts.clone();
        p.breaks = self.breaks.clone();
        p.essential = self.essential;
        p.important = self.important;
        p.priority = self
            .priority
            .as_deref()
            .and_then(kiln_solve::Priority::from_field);
        p.pin_priority = pin_priority;
        p.origin = origin.to_string();
        p
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const SAMPLE: &str = "Package: base-files
Version: 12.4+deb12u11
Installed-Size: 341
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Replaces: base, dpkg (<= 1.15.0), miscutils
Provides: base
Pre-Depends: awk
Breaks: initscripts (<< 2.88dsf-13.3), sendfile (<< 2.1b.20080616-5.2~)
Description: Debian base system miscellaneous files
Essential: yes
Priority: required
Section: admin
Filename: pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb
Size: 70956
SHA256: 0f6e7ba0a7e0e4a4c6dc4f45bc3e42e8c7f8e1e8b6a3f1c9c7d4d0c2a5e1f3b2

Package: libpython3.11-stdlib
Source: python3.11 (3.11.2-6+deb12u6)
Version: 3.11.2-6+deb12u6
Architecture: amd64
Multi-Arch: same
Depends: libpython3.11-minimal (= 3.11.2-6+deb12u6), media-types | mime-support, libbz2-1.0,
 libc6 (>= 2.34)
Recommends: ca-certificates
Filename: pool/main/p/python3.11/libpython3.11-stdlib_3.11.2-6+deb12u6_amd64.deb
Size: 1798460
SHA256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
";

    #[test]
    fn parses_stanzas() {
        let ps = parse_packages(SAMPLE).unwrap();
        assert_eq!(ps.len(), 2);
        let b = &ps[0];
        assert_eq!(b.name, "base-files");
        assert!(b.essential);
        assert_eq!(b.priority.as_deref(), Some("required"));
        assert_eq!(b.source.name, "base-files");
        assert_eq!(b.source.version.as_str(), "12.4+deb12u11");
        assert_eq!(b.pre_depends[0].alternatives[0].name, "awk");
        assert_eq!(b.breaks.len(), 2);
        assert_eq!(b.size, 70956);
        let p = &ps[1];
        assert_eq!(p.multi_arch, MultiArch::Same);
        assert_eq!(p.source.name, "python3.11");
        assert_eq!(p.depends.len(), 4);
        assert_eq!(p.depends[1].alternatives.len(), 2);
        assert_eq!(p.depends[3].alternatives[0].name, "libc6");
        assert_eq!(p.recommends[0].alternatives[0].name, "ca-certificates");
    }

    #[test]
    fn errors_name_the_stanza() {
        let t = SAMPLE.replace("Size: 1798460", "Size: many");
        let e = parse_packages(&t).unwrap_err();
        assert_eq!(e.line, 18);
        assert!(
            e.reason.contains("libpython3.11-stdlib") && e.reason.contains("Size"),
            "{e}"
        );
        let t = SAMPLE.replace("Multi-Arch: same", "Multi-Arch: maybe");
        assert!(parse_packages(&t).is_err());
        let t = SAMPLE.replace("Pre-Depends: awk", "Pre-Depends: awk (>>)");
        assert!(parse_packages(&t).is_err());
        let t = SAMPLE.replace(
            "Filename: pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb\n",
            "",
        );
        assert!(parse_packages(&t).unwrap_err().reason.contains("Filename"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_packages(&s);
        }

        #[test]
        fn never_panics_on_mutated_sample(pos in 0usize..1500, junk in "[ -~\n]{0,8}") {
            let mut t = SAMPLE.to_string();
            let p = pos.min(t.len());
            if t.is_char_boundary(p) {
                t.insert_str(p, &junk);
            }
            let _ = parse_packages(&t);
        }
    }
}
