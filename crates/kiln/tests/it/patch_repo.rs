//! `kiln patch` on a spec with `[packages]`: a local signed repository
//! (kiln-repo's test support), an advisory against a locked package; with
//! no fix published the patch fails closed and the lock is unchanged; once
//! the fix is published the lock moves to it (the other packages keep their
//! versions), and the rebuilt image passes its scan.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo_support::{Answer, Server, Signer, sha256_hex, xz};
use crate::scan::advisory;
use crate::support::*;

/// `(name, version)` of a package with nothing but a doc file.
fn dpkg_deb(dir: &Path, name: &str, version: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let root = dir.join(format!("src-{name}-{version}"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@test.invalid>\nDescription: test package {name}\n"
        ),
    )
    .unwrap();
    let doc = format!("usr/share/doc/{name}/v");
    for (path, text) in files.iter().copied().chain([(doc.as_str(), version)]) {
        let f = root.join(path);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, text).unwrap();
    }
    let out = dir.join(format!("{name}_{version}_all.deb"));
    let o = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    fs::read(out).unwrap()
}

/// A package to publish: name, version, extra files `(path, contents)`.
type Published<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A signed repository (suite `bookworm`, component `main`).
struct Repo {
    server: Server,
    signer: Signer,
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        Repo {
            server: Server::start(),
            signer: Signer::new(37, true),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Serve base-files, base-passwd and `pkgs` (`(name, version)`).
    fn publish(&self, pkgs: &[(&str, &str)]) {
        self.server.clear();
        let mut index = String::new();
        let base: [Published<'_>; 2] = [
            ("base-files", "12.4", &[("etc/os-release", "ID=debian\n")]),
            (
                "base-passwd",
                "3.6.1",
                &[
                    (
                        "usr/share/base-passwd/passwd.master",
                        "root:*:0:0:root:/root:/bin/sh\n",
                    ),
                    ("usr/share/base-passwd/group.master", "root:*:0:\n"),
                ],
            ),
        ];
        let all = base
            .into_iter()
            .chain(pkgs.iter().map(|&(n, v)| (n, v, &[][..])));
        for (name, version, files) in all {
            let deb = dpkg_deb(self.dir.path(), name, version, files);
            let filename = format!("pool/main/{name}_{version}_all.deb");
            index.push_str(&format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\nPriority: optional\nFilename: {filename}\nSize: {}\nSHA256: {}\n\n",
                deb.len(),
                sha256_hex(&deb)
            ));
            self.server.set(&filename, Answer::Body(deb));
        }
        let packages_xz = xz(index.as_bytes());
        let release = format!(
            "Origin: Test\nSuite: bookworm\nCodename: bookworm\nDate: Sat, 01 Mar 2025 00:00:00 UTC\n\
             Acquire-By-Hash: yes\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages.xz\n",
            sha256_hex(&packages_xz),
            packages_xz.len()
        );
        self.server.set(
            "dists/bookworm/InRelease",
            Answer::Body(self.signer.clearsign(&release)),
        );
        self.server.set(
            &format!(
                "dists/bookworm/main/binary-amd64/by-hash/SHA256/{}",
                sha256_hex(&packages_xz)
            ),
            Answer::Body(packages_xz),
        );
    }

    fn keyring(&self) -> PathBuf {
        let k = self.dir.path().join("keyring.gpg");
        fs::write(&k, self.signer.keyring_binary()).unwrap();
        k
    }
}

/// `name -> version` of the lock's packages.
fn locked(e: &Env) -> Vec<(String, String)> {
    let t: toml::Table =
        toml::from_str(&fs::read_to_string(e.spec_dir().join("kiln.lock")).unwrap()).unwrap();
    t["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn patch(e: &Env, osv: &Path, key: &Path) -> std::process::Output {
    run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "patch", "-f"])
        .arg(e.spec())
        .arg("--advisories")
        .arg(osv)
        .arg("--key")
        .arg(key))
}

/// The patch.* actions of the audit log, in order.
fn patch_actions(e: &Env) -> Vec<String> {
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "patch."]));
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["event"]["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn patch_relocks_repository_packages_and_fails_closed_without_a_fix() {
    let repo = Repo::new();
    repo.publish(&[("app", "1.0-1"), ("libb", "1.0")]);
    let e = Env::new();
    fs::remove_dir_all(e.spec_dir()).unwrap();
    fs::create_dir_all(e.spec_dir()).unwrap();
    fs::write(
        e.spec(),
        format!(
            "[image]\nname = \"pkgs\"\ntag = \"1\"\ncheck_entrypoint = false\n\n\
             [[repositories]]\nurl = \"{}\"\nsuites = [\"bookworm\"]\ncomponents = [\"main\"]\nkeyring = {:?}\n\n\
             [packages]\ninclude = [\"app\", \"libb\"]\n",
            repo.server.base,
            repo.keyring().display().to_string(),
        ),
    )
    .unwrap();
    let key = keygen(&e, "ci");
    let o = run(e.kiln().args(["lock", "-f"]).arg(e.spec()));
    assert!(o.status.success(), "{}", stderr(&o));
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(&osv, "DEBIAN-CVE-2026-3000", "app", Some("1.0-2"), "");

    // No fix published: the patch fails closed, says what is missing, and
    // leaves the lock as it was.
    let before = fs::read(e.spec_dir().join("kiln.lock")).unwrap();
    let o = patch(&e, &osv, &key);
    assert!(!o.status.success());
    let err = stderr(&o);
    for part in [
        "app 1.0-1 is affected by DEBIAN-CVE-2026-3000",
        "fixed in 1.0-2",
        "newest version the repositories offer is 1.0-1",
        "kiln.lock is unchanged",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert_eq!(fs::read(e.spec_dir().join("kiln.lock")).unwrap(), before);
    assert_eq!(patch_actions(&e), ["patch.failed"]);

    // The fix is published (and a newer libb, which must not move): the lock
    // moves app to it, the image is rebuilt, scanned, signed.
    repo.publish(&[
        ("app", "1.0-1"),
        ("app", "1.0-2"),
        ("libb", "1.0"),
        ("libb", "1.1"),
    ]);
    let o = patch(&e, &osv, &key);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["pins"][0]["package"], "app");
    assert_eq!(r["pins"][0]["from"], "1.0-1");
    assert_eq!(r["pins"][0]["to"], "1.0-2");
    assert_eq!(r["pins"][0]["advisories"][0], "DEBIAN-CVE-2026-3000");
    let l = locked(&e);
    assert!(l.contains(&("app".into(), "1.0-2".into())), "{l:?}");
    assert!(l.contains(&("libb".into(), "1.0".into())), "{l:?}");
    let fixed = r["image"].as_str().unwrap().to_string();
    let o = run(e.kiln().args(["scan", &fixed, "--advisories"]).arg(&osv));
    assert!(o.status.success(), "{}", stderr(&o));
    // The lock is the build: a locked rebuild gives the same image.
    let o = run(e.kiln().args(["build", "--locked", "-f"]).arg(e.spec()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(format!("pkgs@{}", last_line(&o)), fixed);
    // Recorded and reported like a local-deb pin.
    assert_eq!(
        patch_actions(&e),
        ["patch.failed", "patch.start", "patch.complete"]
    );
    let o = run(e.kiln().args(["--json", "patch", "report"]));
    let rows = json(&o);
    assert_eq!(rows[0]["advisory"], "DEBIAN-CVE-2026-3000");
    assert_eq!(rows[0]["package"], "app");
    assert_eq!(rows[0]["to"], "1.0-2");
    // Nothing to do the second time.
    let o = patch(&e, &osv, &key);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["patched"].as_array().map(Vec::len), Some(0));
}

#[test]
fn an_affected_local_deb_needs_debs() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(
        &osv,
        "DEBIAN-CVE-2026-3001",
        "hello-config",
        Some("1.0-2"),
        "",
    );
    let before = fs::read_dir(e.spec_dir()).unwrap().count();
    let o = patch(&e, &osv, &key);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("hello-config")
            && err.contains("DEBIAN-CVE-2026-3001")
            && err.contains("--debs"),
        "{err}"
    );
    assert!(!e.spec_dir().join("kiln.lock").exists());
    assert_eq!(fs::read_dir(e.spec_dir()).unwrap().count(), before);
}
