//! `kiln patch` on a spec with `[packages]`: a local signed repository
//! (kiln-repo's test support), an advisory against a locked package; with
//! no fix published the patch fails closed and the lock is unchanged; once
//! the fix is published the lock moves to it (the other packages keep their
//! versions), and the rebuilt image passes its scan.

use std::fs;
use std::path::Path;

use crate::debrepo::{Pkg, Repo, base, locked};
use crate::scan::advisory;
use crate::support::*;

/// base-files, base-passwd and `pkgs` (`(name, version)`, no dependencies).
fn publish(repo: &Repo, pkgs: &[(&str, &str)]) {
    let mut all = Vec::from(base());
    all.extend(pkgs.iter().map(|&(name, version)| Pkg {
        name,
        version,
        depends: "",
        files: &[],
    }));
    repo.publish(&all);
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
    let repo = Repo::new(37);
    publish(&repo, &[("app", "1.0-1"), ("libb", "1.0")]);
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
    publish(
        &repo,
        &[
            ("app", "1.0-1"),
            ("app", "1.0-2"),
            ("libb", "1.0"),
            ("libb", "1.1"),
        ],
    );
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
