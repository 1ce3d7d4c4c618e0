//! `kiln patch` for repository packages: the `[[package]]` closure of
//! `kiln.lock` is matched against the advisories (kiln-scan's matching, by
//! source package and source version, for the Debian release the image's
//! os-release will name), the affected packages are re-locked as
//! `kiln lock --update PKG...` does (every other package keeps its version),
//! and the new lock is matched again: every advisory must be gone, or the
//! patch fails closed naming the package, its locked version, the newest the
//! repositories offer and the fixed version required — before anything is
//! written.

use std::path::Path;

use kiln_image::Spec;
use kiln_image::lock::{Lock, LockedPackage};
use kiln_image::packages::{self, Update};
use kiln_scan::{AdvisoryDb, DebVersion, Inventory, Severity, Vuln, VulnState};

use crate::{Error, Pin};

/// The Debian release an image says it is: os-release `ID` and `VERSION_ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
}

/// A locked package with fixable advisories.
#[derive(Debug, Clone)]
pub(crate) struct Affected {
    pub package: String,
    pub version: String,
    /// The advisories (vulnerable, with a fixed version).
    pub vulns: Vec<Vuln>,
}

impl Affected {
    fn ids(&self) -> Vec<String> {
        self.vulns.iter().map(|v| v.id.clone()).collect()
    }

    /// The highest fixed (source) version any of its advisories asks for.
    fn needs(&self) -> String {
        self.vulns
            .iter()
            .filter_map(|v| v.fixed.as_deref())
            .filter_map(|f| DebVersion::parse(f).ok())
            .max()
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    }
}

/// A package the repositories have no fix for (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfixed {
    pub package: String,
    /// The version in kiln.lock.
    pub locked: String,
    /// The newest version the repositories offer (what re-locking it gave).
    pub newest: Option<String>,
    /// The (source) version the advisories ask for.
    pub fixed: String,
    pub advisories: Vec<String>,
}

impl std::fmt::Display for Unfixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} is affected by {} (fixed in {}), but the newest version the repositories offer is {}",
            self.package,
            self.locked,
            self.advisories.join(", "),
            self.fixed,
            self.newest.as_deref().unwrap_or("none"),
        )
    }
}

/// The inventory a scan of the image would see for `packages`.
fn inventory(name: &str, packages: &[LockedPackage], os: &OsRelease) -> Inventory {
    let pkgs = packages
        .iter()
        .map(|p| kiln_scan::Package {
            name: p.name.clone(),
            version: p.version.clone(),
            arch: p.architecture.clone(),
            source_name: p.source.clone(),
            source_version: p.source_version.clone(),
            status: "install ok installed".into(),
            status_file: kiln_scan::inventory::STATUS_PATH.into(),
        })
        .collect();
    let mut inv = Inventory::from_packages(name, pkgs);
    inv.os_id = os.id.clone();
    inv.os_version_id = os.version_id.clone();
    inv
}

/// The locked packages that fixable advisories affect, in lock order.
pub(crate) fn affected(name: &str, lock: &Lock, db: &AdvisoryDb, os: &OsRelease) -> Vec<Affected> {
    let found = db.match_inventory(&inventory(name, &lock.packages, os));
    lock.packages
        .iter()
        .filter_map(|p| {
            let vulns: Vec<Vuln> = found
                .vulnerabilities
                .iter()
                .filter(|v| v.package == p.name)
                .filter(|v| v.state == VulnState::Vulnerable && v.fixed.is_some())
                .cloned()
                .collect();
            (!vulns.is_empty()).then(|| Affected {
                package: p.name.clone(),
                version: p.version.clone(),
                vulns,
            })
        })
        .collect()
}

/// Whether `new` (the lock re-resolved with the `affected` packages
/// updated) fixes every one of their advisories: the pins, or every package
/// still affected.
pub(crate) fn check_fixed(
    name: &str,
    affected: &[Affected],
    new: &Lock,
    db: &AdvisoryDb,
    os: &OsRelease,
) -> Result<Vec<Pin>, Vec<Unfixed>> {
    let found = db.match_inventory(&inventory(name, &new.packages, os));
    let mut pins = Vec::new();
    let mut unfixed = Vec::new();
    for a in affected {
        let ids = a.ids();
        let now = new.packages.iter().find(|p| p.name == a.package);
        let still = found
            .vulnerabilities
            .iter()
            .any(|v| v.package == a.package && ids.contains(&v.id));
        if still {
            unfixed.push(Unfixed {
                package: a.package.clone(),
                locked: a.version.clone(),
                newest: now.map(|p| p.version.clone()),
                fixed: a.needs(),
                advisories: ids,
            });
            continue;
        }
        pins.push(Pin {
            package: a.package.clone(),
            from: a.version.clone(),
            to: now.map_or_else(|| "(removed)".to_string(), |p| p.version.clone()),
            severity: a
                .vulns
                .iter()
                .map(|v| v.severity)
                .max()
                .unwrap_or(Severity::Unknown),
            advisories: ids,
        });
    }
    if unfixed.is_empty() {
        Ok(pins)
    } else {
        Err(unfixed)
    }
}

/// The os-release of a `.deb` (base-files): `/etc/os-release`, or what it
/// links to, or `/usr/lib/os-release`.
fn os_release_of(deb: &kiln_deb::Deb) -> OsRelease {
    use kiln_deb::EntryKind;
    let find = |path: &str| deb.data.iter().find(|e| e.path == path);
    let bytes = |path: &str| match find(path).map(|e| &e.kind) {
        Some(EntryKind::File(f)) => f.contents.clone(),
        _ => None,
    };
    let text = match find("/etc/os-release").map(|e| &e.kind) {
        Some(EntryKind::Symlink(t)) => {
            let target = if t.starts_with('/') {
                t.clone()
            } else {
                format!("/etc/{t}")
            };
            normalize(&target).and_then(|p| bytes(&p))
        }
        Some(_) => bytes("/etc/os-release"),
        None => bytes("/usr/lib/os-release"),
    };
    let (id, version_id) = text
        .map(|b| kiln_scan::inventory::parse_os_release(&b))
        .unwrap_or((None, None));
    OsRelease { id, version_id }
}

/// `/a/./b/../c` → `/a/c`; `None` above the root.
fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(format!("/{}", out.join("/")))
}

/// What patching the repository packages gives: the new lock and its pins
/// (no pins and the lock as it was when nothing is affected).
pub(crate) struct RepoPlan {
    pub lock: Lock,
    pub pins: Vec<Pin>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Plan the patch of `spec`'s `[packages]` (which it has; the lock must be
/// fresh). Nothing is written.
pub(crate) fn plan(spec: &Spec, db: &AdvisoryDb, state_dir: &Path) -> Result<RepoPlan, Error> {
    let lock_err = |source| Error::Lock {
        spec: spec.path.clone(),
        source: Box::new(source),
    };
    packages::check_fresh(spec).map_err(lock_err)?;
    let old = spec
        .lock
        .clone()
        .ok_or(kiln_image::lock::LockState::Missing)
        .map_err(|e| lock_err(e.into()))?;
    let client = packages::client(state_dir, false);
    // The release the image will say it is: base-files' os-release.
    let mut os = OsRelease::default();
    if old.packages.iter().any(|p| p.name == "base-files") {
        let mut only = old.clone();
        only.packages.retain(|p| p.name == "base-files");
        let paths = packages::fetch_all(&only, &client, false, &kiln_image::build::Quiet)
            .map_err(lock_err)?;
        if let Some(path) = paths.first() {
            let bytes = std::fs::read(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let deb = kiln_deb::Deb::parse(&bytes).map_err(|source| Error::Deb {
                path: path.clone(),
                source,
            })?;
            os = os_release_of(&deb);
        }
    }
    let hit = affected(&spec.name, &old, db, &os);
    if hit.is_empty() {
        return Ok(RepoPlan {
            lock: old,
            pins: Vec::new(),
        });
    }
    let names = hit.iter().map(|a| a.package.clone()).collect();
    let new = packages::lock(spec, &client, &Update::Only(names), now_secs()).map_err(lock_err)?;
    match check_fixed(&spec.name, &hit, &new, db, &os) {
        Ok(pins) => Ok(RepoPlan { lock: new, pins }),
        Err(unfixed) => Err(Error::NotFixed { unfixed }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(advisories: &[(&str, &str, &str, &str)]) -> AdvisoryDb {
        let mut db = AdvisoryDb::default();
        for (id, release, source, fixed) in advisories {
            let json = format!(
                r#"{{"id":"{id}","modified":"2026-01-01T00:00:00Z","summary":"x","affected":[{{"package":{{"ecosystem":"Debian:{release}","name":"{source}"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}],"database_specific":{{"severity":"high"}}}}"#
            );
            db.add_json(json.as_bytes(), &format!("{id}.json")).unwrap();
        }
        db
    }

    fn pkg(name: &str, version: &str, source: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            source: source.into(),
            source_version: version.into(),
            url: format!("http://m.invalid/debian/pool/{name}_{version}.deb"),
            sha256: "a".repeat(64),
            size: 1,
            repository: 0,
        }
    }

    fn lock(packages: Vec<LockedPackage>) -> Lock {
        Lock {
            packages,
            ..Lock::default()
        }
    }

    fn bookworm() -> OsRelease {
        OsRelease {
            id: Some("debian".into()),
            version_id: Some("12".into()),
        }
    }

    #[test]
    fn matches_by_source_and_release_and_checks_the_new_lock() {
        // libexpat1 is built from expat: the advisory names the source.
        let db = db(&[
            ("DEBIAN-CVE-1", "12", "expat", "2.5.0-1+deb12u2"),
            // For another release: not this image's.
            ("DEBIAN-CVE-2", "13", "zlib", "1:1.3.dfsg-9"),
        ]);
        let old = lock(vec![
            pkg("libexpat1", "2.5.0-1+deb12u1", "expat"),
            pkg("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
        ]);
        let hit = affected("img", &old, &db, &bookworm());
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].package, "libexpat1");
        assert_eq!(hit[0].needs(), "2.5.0-1+deb12u2");
        // Release unknown: every release's advisories apply (as kiln scan does).
        assert_eq!(affected("img", &old, &db, &OsRelease::default()).len(), 2);

        // The repositories have the fix: a pin.
        let new = lock(vec![
            pkg("libexpat1", "2.5.0-1+deb12u2", "expat"),
            pkg("zlib1g", "1:1.2.13.dfsg-1", "zlib"),
        ]);
        let pins = check_fixed("img", &hit, &new, &db, &bookworm()).unwrap();
        assert_eq!(pins.len(), 1);
        assert_eq!(
            (pins[0].from.as_str(), pins[0].to.as_str()),
            ("2.5.0-1+deb12u1", "2.5.0-1+deb12u2")
        );
        assert_eq!(pins[0].advisories, ["DEBIAN-CVE-1"]);
        assert_eq!(pins[0].severity, Severity::High);

        // A newer version that is still not the fix: fail closed, saying why.
        let newer = lock(vec![pkg("libexpat1", "2.5.0-1+deb12u1a", "expat")]);
        let unfixed = check_fixed("img", &hit, &newer, &db, &bookworm()).unwrap_err();
        assert_eq!(
            unfixed,
            [Unfixed {
                package: "libexpat1".into(),
                locked: "2.5.0-1+deb12u1".into(),
                newest: Some("2.5.0-1+deb12u1a".into()),
                fixed: "2.5.0-1+deb12u2".into(),
                advisories: vec!["DEBIAN-CVE-1".into()],
            }]
        );
        let text = unfixed[0].to_string();
        for part in [
            "libexpat1 2.5.0-1+deb12u1",
            "DEBIAN-CVE-1",
            "2.5.0-1+deb12u2",
        ] {
            assert!(text.contains(part), "{text}");
        }
        // Nothing newer at all: the same.
        assert!(check_fixed("img", &hit, &old, &db, &bookworm()).is_err());
    }

    #[test]
    fn os_release_path_normalizes() {
        assert_eq!(
            normalize("/etc/../usr/lib/os-release").as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(normalize("/../x"), None);
    }
}
