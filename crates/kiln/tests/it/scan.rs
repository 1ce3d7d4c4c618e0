//! `kiln scan` and `kiln patch`: OSV advisories against the image's dpkg
//! database, the gate, signed scan attestations the trust policy can
//! require, and patching by rebuilding with kiln.lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn advisory(dir: &Path, id: &str, package: &str, fixed: Option<&str>, extra: &str) {
    let events = match fixed {
        Some(f) => format!(r#"[{{"introduced":"0"}},{{"fixed":"{f}"}}]"#),
        None => r#"[{"introduced":"0"}]"#.to_string(),
    };
    fs::write(
        dir.join(format!("{id}.json")),
        format!(
            r#"{{"id":"{id}","modified":"2026-11-22T06:00:00Z","summary":"{package} issue"{extra},"affected":[{{"package":{{"ecosystem":"Debian:12","name":"{package}"}},"ranges":[{{"type":"ECOSYSTEM","events":{events}}}]}}],"database_specific":{{"severity":"high"}}}}"#
        ),
    )
    .unwrap();
}

/// hello-config at `version`, built with dpkg-deb into `pool`.
fn deb(e: &Env, pool: &Path, version: &str) -> PathBuf {
    let src = e.path().join(format!("pkg-{version}"));
    copy_dir(&repo().join("examples/hello/pkg/hello-config"), &src);
    let control = src.join("DEBIAN/control");
    let text = fs::read_to_string(&control).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(&control, text).unwrap();
    set_mode(&src.join("DEBIAN/postinst"), 0o755);
    fs::create_dir_all(pool).unwrap();
    let out = pool.join(format!("hello-config_{version}_all.deb"));
    let o = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&src)
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// `kiln patch` of the env's spec.
fn patch(e: &Env, osv: &Path, pool: &Path, key: &Path, as_json: bool) -> std::process::Output {
    let mut c = e.kiln();
    c.env("KILN_KEY_PASSWORD", PASSWORD);
    if as_json {
        c.arg("--json");
    }
    c.args(["patch", "-f"])
        .arg(e.spec())
        .arg("--advisories")
        .arg(osv)
        .arg("--debs")
        .arg(pool)
        .arg("--key")
        .arg(key);
    run(&mut c)
}

#[test]
fn scan_reports_vulnerable_and_unfixed_with_sarif_and_gate() {
    let e = Env::new();
    e.build(&[]);
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(
        &osv,
        "DEBIAN-CVE-2026-1000",
        "hello-config",
        Some("1.0-2"),
        "",
    );
    advisory(&osv, "DEBIAN-CVE-2026-1001", "hello-config", None, "");
    advisory(
        &osv,
        "DEBIAN-CVE-2026-1002",
        "hello-config",
        Some("1.0-2"),
        r#","withdrawn":"2026-11-22T07:00:00Z""#,
    );
    advisory(&osv, "DEBIAN-CVE-2026-1003", "other-package", Some("9"), "");
    advisory(
        &osv,
        "DEBIAN-CVE-2026-1004",
        "hello-config",
        Some("1.0-1~rc1"),
        "",
    );
    let o = run(e
        .kiln()
        .args(["--json", "scan", "hello:1.0.0", "--advisories"])
        .arg(&osv));
    assert_eq!(
        o.status.code(),
        Some(1),
        "the gate must fail: {}",
        stderr(&o)
    );
    let r = json(&o);
    let ids: Vec<(&str, &str)> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_str().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.contains(&("DEBIAN-CVE-2026-1000", "vulnerable")),
        "{ids:?}"
    );
    assert!(
        ids.contains(&("DEBIAN-CVE-2026-1001", "unfixed")),
        "{ids:?}"
    );
    assert_eq!(r["gate"]["pass"], false);
    let o = run(e
        .kiln()
        .args(["scan", "hello:1.0.0", "--sarif", "--advisories"])
        .arg(&osv));
    let s = json(&o);
    assert_eq!(s["version"], "2.1.0");
    assert!(s["$schema"].as_str().unwrap().contains("sarif"));
    assert_eq!(s["runs"][0]["tool"]["driver"]["name"], "kiln");
    assert_eq!(s["runs"][0]["results"].as_array().unwrap().len(), 2);
    // A gate that only fails on critical passes.
    let o = run(e
        .kiln()
        .args([
            "scan",
            "hello:1.0.0",
            "--fail-on",
            "critical",
            "--advisories",
        ])
        .arg(&osv));
    assert!(o.status.success(), "{}", stderr(&o));
    // Malformed advisories: a precise error.
    fs::write(osv.join("broken.json"), "{\"id\": 5").unwrap();
    let o = run(e
        .kiln()
        .args(["scan", "hello:1.0.0", "--advisories"])
        .arg(&osv));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken.json"), "{}", stderr(&o));
    // Scans are audit events.
    let o = run(e.kiln().args(["--json", "log", "show", "--action", "scan"]));
    assert!(json(&o).as_array().unwrap().len() >= 3);
}

#[test]
fn patch_pins_rebuilds_scans_signs_and_the_policy_can_require_the_scan() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(
        &osv,
        "DEBIAN-CVE-2026-2000",
        "hello-config",
        Some("1.0-2"),
        "",
    );
    let pool = e.path().join("pool");
    deb(&e, &pool, "1.0-2");
    deb(&e, &pool, "1.0-3");
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nsignature = \"builder\"\nscan = \"builder\"\nscan_max_age_hours = 24\n",
    )
    .unwrap();
    // Signed but not scanned: the policy refuses it.
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success());
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FAIL  scan"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A failing scan attested still doesn't count.
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["scan", "hello:1.0.0", "--attest", "--key"])
        .arg(&key)
        .arg("--advisories")
        .arg(&osv));
    assert_eq!(o.status.code(), Some(1));
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("failed gate"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let o = patch(&e, &osv, &pool, &key, true);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    // The highest available fixed version is pinned, beside the spec.
    assert_eq!(r["pins"][0]["to"], "1.0-3");
    let lock = fs::read_to_string(e.spec_dir().join("kiln.lock")).unwrap();
    assert!(
        lock.contains("version = \"1.0-3\"") && lock.contains("DEBIAN-CVE-2026-2000"),
        "{lock}"
    );
    assert!(
        e.spec_dir()
            .join("debs/hello-config_1.0-3_all.deb")
            .is_file()
    );
    let fixed = r["image"].as_str().unwrap().to_string();
    let o = run(e.kiln().args(["verify", &fixed, "--policy"]).arg(&policy));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let o = run(e.kiln().args(["scan", &fixed, "--advisories"]).arg(&osv));
    assert!(o.status.success(), "{}", stderr(&o));
    // A rebuild from the spec alone gives the same fixed image (the lock is an input).
    assert_eq!(format!("hello@{}", e.build(&[])), fixed);
    // The report: advisory → fixed image, with times; every step is an event.
    let o = run(e.kiln().args(["--json", "patch", "report"]));
    let rows = json(&o);
    assert_eq!(rows[0]["advisory"], "DEBIAN-CVE-2026-2000");
    assert!(rows[0]["fixed_image_ms"].as_u64().is_some());
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "patch."]));
    let actions: Vec<String> = json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["event"]["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["patch.start", "patch.complete"]);
    // Nothing to do the second time.
    let o = patch(&e, &osv, &pool, &key, false);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to patch"));
}
