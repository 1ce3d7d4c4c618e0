//! `kiln.lock`: package pins beside a spec, written by `kiln patch`.
//!
//! ```toml
//! # kiln.lock — written by `kiln patch`; the build uses these instead of the
//! # spec's [[debs]] entry they replace.
//! [[deb]]
//! package = "hello-config"
//! version = "1.0-2"
//! replaces = "debs/hello-config_1.0-1_all.deb"   # the spec's path
//! path = "pool/hello-config_1.0-2_all.deb"        # relative to the spec
//! sha256 = "…"
//! advisories = ["DEBIAN-CVE-2026-0001"]
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::{Spec, SpecError, resolve_in};

/// The lock file's name, beside `kiln.toml`.
pub const LOCK_FILE: &str = "kiln.lock";

/// All pins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default)]
    pub deb: Vec<LockedDeb>,
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedDeb {
    pub package: String,
    pub version: String,
    /// The spec's `[[debs]] path` this entry replaces.
    pub replaces: String,
    /// The pinned `.deb`, relative to the spec's directory.
    pub path: String,
    pub sha256: String,
    /// Advisories this pin fixes.
    #[serde(default)]
    pub advisories: Vec<String>,
}

fn err(file: &Path, message: String) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message,
        snippet: String::new(),
    }
}

impl Lock {
    /// The lock beside `spec_dir`, if there is one.
    pub fn load(spec_dir: &Path) -> Result<Option<(Lock, String)>, SpecError> {
        let path = spec_dir.join(LOCK_FILE);
        // Read beside the spec, not through a symlink (which could point
        // anywhere on the build host), bounded, never blocking on a FIFO.
        let root = match crate::hostfs::Root::open(spec_dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&path, format!("cannot read the lock file: {e}"))),
        };
        let bytes = match root.read_file(LOCK_FILE, crate::hostfs::MAX_TEXT) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(err(&path, format!("cannot read the lock file: {e}"))),
        };
        let text = kiln_oci::textpos::decode(bytes).map_err(|e| SpecError {
            file: path.clone(),
            line: e.line,
            column: e.column,
            message: e.message("the lock file"),
            snippet: e.snippet.clone(),
        })?;
        let lock: Lock =
            toml::from_str(&text).map_err(|e| err(&path, e.message().trim().to_string()))?;
        for d in &lock.deb {
            if d.sha256.len() != 64
                || !d
                    .sha256
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(err(
                    &path,
                    format!("{}: sha256 must be 64 lowercase hex characters", d.package),
                ));
            }
        }
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()));
        Ok(Some((lock, sha)))
    }

    /// The TOML text, with a header.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# kiln.lock — written by `kiln patch`. The build uses these pins instead of the\n# [[debs]] entries they replace. Commit it with the spec.\n{body}"
        )
    }

    /// Substitute pinned packages into a loaded spec.
    pub fn apply(&self, spec: &mut Spec) -> Result<(), SpecError> {
        let lock_path = spec.dir.join(LOCK_FILE);
        for d in &self.deb {
            let replaces = resolve_in(&spec.dir, &d.replaces)
                .map_err(|m| err(&lock_path, format!("{}: replaces: {m}", d.package)))?;
            let path = resolve_in(&spec.dir, &d.path)
                .map_err(|m| err(&lock_path, format!("{}: path: {m}", d.package)))?;
            let Some(entry) = spec.debs.iter_mut().find(|e| e.path == replaces) else {
                return Err(err(
                    &lock_path,
                    format!(
                        "{}: the spec has no [[debs]] entry {:?} to replace",
                        d.package, d.replaces
                    ),
                ));
            };
            entry.path = path;
            entry.sha256 = d.sha256.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_round_trips_and_refuses_bad_pins() {
        let lock = Lock {
            deb: vec![LockedDeb {
                package: "hello-config".into(),
                version: "1.0-2".into(),
                replaces: "debs/a.deb".into(),
                path: "debs/b.deb".into(),
                sha256: "a".repeat(64),
                advisories: vec!["DEBIAN-CVE-1".into()],
            }],
        };
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(LOCK_FILE), lock.render()).unwrap();
        let (back, sha) = Lock::load(d.path()).unwrap().unwrap();
        assert_eq!(back, lock);
        assert_eq!(sha.len(), 64);
        std::fs::write(d.path().join(LOCK_FILE), "[[deb]]\npackage = 1\n").unwrap();
        assert!(Lock::load(d.path()).is_err());
        let mut bad = lock.clone();
        bad.deb[0].sha256 = "XYZ".into();
        std::fs::write(d.path().join(LOCK_FILE), bad.render()).unwrap();
        let e = Lock::load(d.path()).unwrap_err();
        assert!(e.message.contains("sha256"), "{}", e.message);
        assert!(Lock::load(&d.path().join("none")).unwrap().is_none());
        // Not through a symlink, not a FIFO, located when not UTF-8.
        std::fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join(LOCK_FILE)).unwrap();
        let e = Lock::load(d.path()).unwrap_err();
        assert!(e.message.contains("symlink"), "{}", e.message);
        std::fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            d.path().join(LOCK_FILE),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let e = Lock::load(d.path()).unwrap_err();
        assert!(e.message.contains("FIFO"), "{}", e.message);
        std::fs::remove_file(d.path().join(LOCK_FILE)).unwrap();
        std::fs::write(d.path().join(LOCK_FILE), b"[[deb]]\npackage = \"\xff\"\n").unwrap();
        let e = Lock::load(d.path()).unwrap_err();
        assert_eq!((e.line, e.column), (2, 12), "{e}");
    }
}
