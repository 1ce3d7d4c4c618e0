//! `kiln.lock`, beside a spec: the resolved closure of `[packages]` and the
//! package pins of `kiln patch`, in one TOML format (deterministic, written
//! to a temporary name and renamed).
//!
//! ```toml
//! # kiln.lock — written by `kiln lock` / `kiln build` / `kiln patch`.
//! version = 1
//!
//! [inputs]                          # what was resolved; `digest` covers the rest
//! digest = "sha256:…"
//! architecture = "amd64"
//! include = ["python3-flask"]
//! exclude = []
//! recommends = false
//! local_debs = ["…"]                # sha256 of each spec [[debs]] entry, in order
//! [[inputs.repositories]]
//! url = "http://mirror/debian"
//! suites = ["bookworm"]
//! components = ["main"]
//! keyring_sha256 = "…"
//!
//! [[repository]]                    # one per suite, in configuration order
//! url = "http://mirror/debian"
//! suite = "bookworm"
//! codename = "bookworm"
//! inrelease_sha256 = "…"
//! signing_key = "…"                 # fingerprint of the (sub)key that signed
//! signing_certificate = "…"         # fingerprint of its primary key
//!
//! [[package]]                       # the closure, sorted by name
//! name = "base-files"
//! version = "12.4+deb12u11"
//! architecture = "amd64"
//! source = "base-files"
//! source_version = "12.4+deb12u11"
//! url = "http://mirror/debian/pool/main/b/base-files/…"
//! sha256 = "…"
//! size = 70956
//! repository = 0                    # index into [[repository]]
//!
//! [[deb]]                           # kiln patch: replaces a spec [[debs]] entry
//! package = "hello-config"
//! version = "1.0-2"
//! replaces = "debs/hello-config_1.0-1_all.deb"   # the spec's path
//! path = "debs/hello-config_1.0-2_all.deb"       # relative to the spec
//! sha256 = "…"
//! advisories = ["DEBIAN-CVE-2026-0001"]
//! ```
//!
//! A lock with only `[[deb]]` pins (what `kiln patch` wrote before
//! repositories existed) is still read. The lock is stale when the spec's
//! resolution inputs no longer equal `[inputs]` ([`Lock::staleness`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::spec::{Spec, SpecError, resolve_in};

/// The lock file's name, beside `kiln.toml`.
pub const LOCK_FILE: &str = "kiln.lock";

/// The format version this kiln writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Absent in locks that only hold `[[deb]]` pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// What the closure was resolved from (absent without `[packages]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    #[serde(default, rename = "repository", skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<LockedRepository>,
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<LockedPackage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deb: Vec<LockedDeb>,
}

/// The resolution inputs, and a digest over them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// `sha256:<hex>` of the canonical JSON of the other fields
    /// ([`Inputs::compute_digest`]).
    pub digest: String,
    pub architecture: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub recommends: bool,
    /// SHA-256 of each spec `[[debs]]` entry as written, in spec order.
    pub local_debs: Vec<String>,
    pub repositories: Vec<InputRepository>,
}

/// One `[[repositories]]` entry as resolved: its keyring by content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRepository {
    pub url: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub keyring_sha256: String,
}

/// One suite that took part in the resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepository {
    pub url: String,
    pub suite: String,
    /// The Release's `Codename` (e.g. `bookworm`), the purl `distro`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codename: Option<String>,
    /// SHA-256 (hex) of the verified `InRelease` (or `Release`).
    pub inrelease_sha256: String,
    pub signing_key: String,
    pub signing_certificate: String,
}

/// One repository package of the closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    /// The download URL: the repository URL, `/`, the `Filename`.
    pub url: String,
    /// SHA-256 (hex) from the `Packages` index.
    pub sha256: String,
    pub size: u64,
    /// Index into the lock's `[[repository]]` list.
    pub repository: usize,
}

/// One pin of `kiln patch`.
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

impl Inputs {
    /// `sha256:<hex>` over the canonical JSON of every field but `digest`.
    pub fn compute_digest(&self) -> String {
        let mut c = self.clone();
        c.digest = String::new();
        let json = serde_json::to_vec(&c).unwrap_or_default();
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json))
        )
    }

    /// With `digest` filled in.
    pub fn sealed(mut self) -> Inputs {
        self.digest = self.compute_digest();
        self
    }

    /// What differs from `want` (the spec's inputs now), one phrase each.
    pub fn differences(&self, want: &Inputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.digest != self.compute_digest() {
            out.push("the lock's [inputs] were edited (their digest does not match)".into());
        }
        if self.architecture != want.architecture {
            out.push(format!(
                "image.arch is {} (the lock is for {})",
                want.architecture, self.architecture
            ));
        }
        let list = |what: &str, old: &[String], new: &[String], out: &mut Vec<String>| {
            let added: Vec<&str> = new
                .iter()
                .filter(|n| !old.contains(n))
                .map(String::as_str)
                .collect();
            let removed: Vec<&str> = old
                .iter()
                .filter(|o| !new.contains(o))
                .map(String::as_str)
                .collect();
            if !added.is_empty() {
                out.push(format!("{what} added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                out.push(format!("{what} removed {}", removed.join(", ")));
            }
            if added.is_empty() && removed.is_empty() && old != new {
                out.push(format!("{what} reordered"));
            }
        };
        list("packages.include", &self.include, &want.include, &mut out);
        list("packages.exclude", &self.exclude, &want.exclude, &mut out);
        if self.recommends != want.recommends {
            out.push(format!("packages.recommends is {}", want.recommends));
        }
        list("[[debs]]", &self.local_debs, &want.local_debs, &mut out);
        if self.repositories != want.repositories {
            let urls = |r: &[InputRepository]| r.iter().map(|x| x.url.clone()).collect::<Vec<_>>();
            let (o, n) = (urls(&self.repositories), urls(&want.repositories));
            if o != n {
                list("[[repositories]]", &o, &n, &mut out);
            }
            for (a, b) in self.repositories.iter().zip(&want.repositories) {
                if a.url != b.url {
                    continue;
                }
                if a.suites != b.suites {
                    out.push(format!("repository {}: suites changed", a.url));
                }
                if a.components != b.components {
                    out.push(format!("repository {}: components changed", a.url));
                }
                if a.keyring_sha256 != b.keyring_sha256 {
                    out.push(format!(
                        "repository {}: the keyring's content changed",
                        a.url
                    ));
                }
            }
            if out.is_empty() {
                out.push("[[repositories]] changed".into());
            }
        }
        out
    }
}

/// Why a lock cannot be used for a spec's `[packages]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockState {
    #[error("there is no kiln.lock beside the spec (run `kiln lock`)")]
    Missing,
    #[error("kiln.lock holds no resolved packages (run `kiln lock`)")]
    Unresolved,
    #[error("kiln.lock is stale: {} (run `kiln lock` to update it)", .0.join("; "))]
    Stale(Vec<String>),
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
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map(|s| kiln_oci::textpos::line_col(&text, s.start))
                .unwrap_or((0, 0));
            SpecError {
                file: path.clone(),
                line,
                column,
                message: e.message().trim().to_string(),
                snippet: kiln_oci::textpos::snippet(&text, line, column),
            }
        })?;
        lock.validate().map_err(|m| err(&path, m))?;
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

    /// Structural checks beyond the types: version, hex digests, indexes
    /// in range, package URLs inside their repository.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(v) = self.version
            && v != LOCK_VERSION
        {
            return Err(format!(
                "version {v} is not one this kiln reads ({LOCK_VERSION}); use a newer kiln or run `kiln lock`"
            ));
        }
        let hex64 =
            |s: &str| s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        for r in &self.repositories {
            if !hex64(&r.inrelease_sha256) {
                return Err(format!(
                    "repository {} {}: inrelease_sha256 must be 64 lowercase hex characters",
                    r.url, r.suite
                ));
            }
        }
        for p in &self.packages {
            if !hex64(&p.sha256) {
                return Err(format!(
                    "package {}: sha256 must be 64 lowercase hex characters",
                    p.name
                ));
            }
            let Some(r) = self.repositories.get(p.repository) else {
                return Err(format!(
                    "package {}: repository {} is not in the lock",
                    p.name, p.repository
                ));
            };
            let rel = p
                .url
                .strip_prefix(r.url.as_str())
                .and_then(|x| x.strip_prefix('/'))
                .ok_or_else(|| {
                    format!("package {}: url {:?} is not below {}", p.name, p.url, r.url)
                })?;
            kiln_repo::check_relative_path(rel)
                .map_err(|why| format!("package {}: url {:?}: {why}", p.name, p.url))?;
        }
        if self.inputs.is_none() && !self.packages.is_empty() {
            return Err("[[package]] entries without [inputs]".into());
        }
        Ok(())
    }

    /// Whether this lock's closure can be used for `want` (the spec's
    /// resolution inputs now).
    pub fn state(&self, want: &Inputs) -> Result<(), LockState> {
        let Some(have) = &self.inputs else {
            return Err(LockState::Unresolved);
        };
        let d = have.differences(want);
        if d.is_empty() {
            Ok(())
        } else {
            Err(LockState::Stale(d))
        }
    }

    /// The TOML text, with a header. Deterministic: the same lock always
    /// renders to the same bytes.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# kiln.lock — written by kiln (`kiln lock`, `kiln build`, `kiln patch`); commit it\n# with the spec. [[package]]: the resolved closure; [[deb]]: pins replacing [[debs]].\n{body}"
        )
    }

    /// Write the lock beside the spec: a temporary file, renamed.
    pub fn write(&self, spec_dir: &Path) -> Result<(), kiln_oci::OciError> {
        kiln_oci::layout::write_atomic(&spec_dir.join(LOCK_FILE), self.render().as_bytes())
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
    use proptest::prelude::*;

    fn inputs() -> Inputs {
        Inputs {
            digest: String::new(),
            architecture: "amd64".into(),
            include: vec!["python3-flask".into(), "libexpat1=2.5.0-1".into()],
            exclude: vec!["perl".into()],
            recommends: false,
            local_debs: vec!["b".repeat(64)],
            repositories: vec![InputRepository {
                url: "http://mirror.invalid/debian".into(),
                suites: vec!["bookworm".into()],
                components: vec!["main".into()],
                keyring_sha256: "c".repeat(64),
            }],
        }
        .sealed()
    }

    fn resolved() -> Lock {
        Lock {
            version: Some(LOCK_VERSION),
            inputs: Some(inputs()),
            repositories: vec![LockedRepository {
                url: "http://mirror.invalid/debian".into(),
                suite: "bookworm".into(),
                codename: Some("bookworm".into()),
                inrelease_sha256: "d".repeat(64),
                signing_key: "AB".into(),
                signing_certificate: "CD".into(),
            }],
            packages: vec![LockedPackage {
                name: "base-files".into(),
                version: "12.4+deb12u11".into(),
                architecture: "amd64".into(),
                source: "base-files".into(),
                source_version: "12.4+deb12u11".into(),
                url: "http://mirror.invalid/debian/pool/main/b/base-files/base-files_12.4+deb12u11_amd64.deb".into(),
                sha256: "e".repeat(64),
                size: 70956,
                repository: 0,
            }],
            deb: Vec::new(),
        }
    }

    #[test]
    fn staleness_says_what_changed() {
        let lock = resolved();
        assert_eq!(lock.state(&inputs()), Ok(()));
        let mut want = inputs();
        want.include.push("curl".into());
        want.include.retain(|i| i != "python3-flask");
        want.recommends = true;
        want.repositories[0].keyring_sha256 = "f".repeat(64);
        want.architecture = "arm64".into();
        let Err(LockState::Stale(why)) = lock.state(&want.sealed()) else {
            panic!("not stale")
        };
        let text = why.join("; ");
        for part in [
            "image.arch is arm64",
            "packages.include added curl",
            "packages.include removed python3-flask",
            "packages.recommends is true",
            "the keyring's content changed",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        // Hand-edited inputs are caught by their digest.
        let mut edited = resolved();
        if let Some(i) = edited.inputs.as_mut() {
            i.exclude.clear();
        }
        let Err(LockState::Stale(why)) = edited.state(&inputs()) else {
            panic!("not stale")
        };
        assert!(why[0].contains("digest"), "{why:?}");
        assert_eq!(Lock::default().state(&inputs()), Err(LockState::Unresolved));
    }

    #[test]
    fn package_urls_stay_inside_their_repository() {
        let mut lock = resolved();
        lock.validate().unwrap();
        for bad in [
            "http://elsewhere.invalid/debian/pool/x.deb",
            "http://mirror.invalid/debian/../x.deb",
            "http://mirror.invalid/debianx/pool/x.deb",
        ] {
            lock.packages[0].url = bad.into();
            assert!(lock.validate().is_err(), "{bad}");
        }
        let mut lock = resolved();
        lock.packages[0].repository = 3;
        assert!(lock.validate().is_err());
        let mut lock = resolved();
        lock.version = Some(99);
        assert!(lock.validate().unwrap_err().contains("newer kiln"));
    }

    fn arb_word() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9+.~-]{0,12}"
    }

    fn arb_lock() -> impl Strategy<Value = Lock> {
        let hex = "[0-9a-f]{64}";
        let inputs = (
            prop::collection::vec(arb_word(), 0..4),
            prop::collection::vec(arb_word(), 0..3),
            any::<bool>(),
            prop::collection::vec(hex, 0..3),
            prop::collection::vec((arb_word(), hex), 0..3),
        )
            .prop_map(|(include, exclude, recommends, local_debs, repos)| {
                Inputs {
                    digest: String::new(),
                    architecture: "amd64".into(),
                    include,
                    exclude,
                    recommends,
                    local_debs,
                    repositories: repos
                        .into_iter()
                        .map(|(s, k)| InputRepository {
                            url: format!("http://m.invalid/{s}"),
                            suites: vec![s.clone()],
                            components: vec!["main".into()],
                            keyring_sha256: k,
                        })
                        .collect(),
                }
                .sealed()
            });
        let pkg =
            (arb_word(), arb_word(), hex, any::<u64>()).prop_map(|(n, v, h, size)| LockedPackage {
                url: format!("http://m.invalid/debian/pool/{n}_{v}.deb"),
                name: n.clone(),
                version: v.clone(),
                architecture: "all".into(),
                source: n,
                source_version: v,
                sha256: h,
                size,
                repository: 0,
            });
        let deb = (
            arb_word(),
            arb_word(),
            hex,
            prop::collection::vec(arb_word(), 0..2),
        )
            .prop_map(|(p, v, h, advisories)| LockedDeb {
                replaces: format!("debs/{p}.deb"),
                path: format!("debs/{p}_{v}.deb"),
                package: p,
                version: v,
                sha256: h,
                advisories,
            });
        (
            prop::option::of(inputs),
            prop::collection::vec(pkg, 0..4),
            prop::collection::vec(deb, 0..3),
            prop::option::of(arb_word()),
        )
            .prop_map(|(inputs, packages, deb, codename)| {
                let resolved = inputs.is_some();
                Lock {
                    version: resolved.then_some(LOCK_VERSION),
                    inputs,
                    repositories: if resolved {
                        vec![LockedRepository {
                            url: "http://m.invalid/debian".into(),
                            suite: "bookworm".into(),
                            codename,
                            inrelease_sha256: "a".repeat(64),
                            signing_key: "K".into(),
                            signing_certificate: "C".into(),
                        }]
                    } else {
                        Vec::new()
                    },
                    packages: if resolved { packages } else { Vec::new() },
                    deb,
                }
            })
    }

    proptest! {
        /// render → parse is the identity, rendering is deterministic, and
        /// what kiln writes passes its own checks.
        #[test]
        fn render_parse_is_identity(lock in arb_lock()) {
            let text = lock.render();
            prop_assert_eq!(&text, &lock.clone().render());
            let back: Lock = toml::from_str(&text).unwrap();
            prop_assert!(back.validate().is_ok());
            prop_assert_eq!(back, lock);
        }
    }

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
            ..Lock::default()
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
