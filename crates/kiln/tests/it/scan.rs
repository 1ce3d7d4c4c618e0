//! `kiln scan` and `kiln patch`: OSV advisories against the image's dpkg
//! database, the gate, signed scan attestations the trust policy can
//! require, and patching by rebuilding with kiln.lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// An RFC 3339 time `hours_ago` hours before now: fixtures are dated relative to the
/// clock, never hard-coded (a fixed date goes stale, and a future one is always "fresh").
pub(crate) fn hours_ago(hours: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    kiln_oci::time::rfc3339(now - hours * 3600)
}

pub(crate) fn advisory(dir: &Path, id: &str, package: &str, fixed: Option<&str>, extra: &str) {
    advisory_at(dir, id, package, fixed, extra, &hours_ago(0));
}

fn advisory_at(
    dir: &Path,
    id: &str,
    package: &str,
    fixed: Option<&str>,
    extra: &str,
    modified: &str,
) {
    let events = match fixed {
        Some(f) => format!(r#"[{{"introduced":"0"}},{{"fixed":"{f}"}}]"#),
        None => r#"[{"introduced":"0"}]"#.to_string(),
    };
    fs::write(
        dir.join(format!("{id}.json")),
        format!(
            r#"{{"id":"{id}","modified":"{modified}","summary":"{package} issue"{extra},"affected":[{{"package":{{"ecosystem":"Debian:12","name":"{package}"}},"ranges":[{{"type":"ECOSYSTEM","events":{events}}}]}}],"database_specific":{{"severity":"high"}}}}"#
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
        &format!(r#","withdrawn":"{}""#, hours_ago(0)),
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
#[ignore = "needs dpkg-deb"]
fn patch_pins_rebuilds_scans_signs_and_the_policy_can_require_the_scan() {
    require("dpkg-deb");
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

/// The predicate of the scan attestation at referrer manifest `referrer`.
pub(crate) fn scan_predicate(e: &Env, referrer: &str) -> serde_json::Value {
    use base64::Engine as _;
    let store = e.store();
    let m = manifest(&store, referrer);
    let env: serde_json::Value =
        serde_json::from_slice(&blob(&store, m["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(st["predicateType"], "https://kiln.dev/scan/v2");
    st["predicate"].clone()
}

fn scan_cmd(e: &Env, osv: &Path, extra: &[&str]) -> std::process::Output {
    run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["scan", "hello:1.0.0"])
        .args(extra)
        .arg("--advisories")
        .arg(osv))
}

#[test]
fn scan_of_no_advisories_is_refused_unless_allowed_and_then_recorded() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    let key_s = key.display().to_string();
    let empty = e.path().join("osv-empty");
    fs::create_dir_all(&empty).unwrap();
    let not_osv = e.path().join("osv-not-json");
    fs::create_dir_all(&not_osv).unwrap();
    fs::write(not_osv.join("README.txt"), "advisories go here").unwrap();
    let other_eco = e.path().join("osv-pypi");
    fs::create_dir_all(&other_eco).unwrap();
    fs::write(
        other_eco.join("PYSEC-1.json"),
        format!(
            r#"{{"id":"PYSEC-1","modified":"{}","affected":[{{"package":{{"ecosystem":"PyPI","name":"flask"}}}}]}}"#,
            hours_ago(0)
        ),
    )
    .unwrap();
    let before = e.store_snapshot();
    for (dir, needle) in [
        (&empty, "0 advisory file(s) read"),
        (&not_osv, "1 other file(s) skipped"),
        (&other_eco, "1 record(s) without a Debian entry"),
    ] {
        for extra in [
            &[][..],
            &["--fail-on", "none"][..],
            &["--attest", "--key", &key_s][..],
        ] {
            let o = scan_cmd(&e, dir, extra);
            let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
            assert_eq!(o.status.code(), Some(1), "{extra:?}: {all}");
            assert!(
                stderr(&o).contains("refusing to scan hello:1.0.0: no advisories loaded")
                    && stderr(&o).contains(needle)
                    && stderr(&o).contains("--allow-empty-advisories"),
                "{all}"
            );
            assert!(!all.contains("gate         PASS"), "{all}");
        }
    }
    // Nothing was attested.
    assert_eq!(e.store_snapshot(), before);
    // A missing directory is an error naming it.
    let o = scan_cmd(&e, &e.path().join("nope"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    // The refusal is an audit event (a failed scan).
    let o = run(e.kiln().args(["--json", "log", "show", "--action", "scan"]));
    let events = json(&o);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["event"]["outcome"] == "failure"),
        "{events}"
    );

    // Allowed: it passes, and the attestation says it was allowed and used no advisory.
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args([
            "--json",
            "scan",
            "hello:1.0.0",
            "--allow-empty-advisories",
            "--attest",
            "--key",
        ])
        .arg(&key)
        .arg("--advisories")
        .arg(&empty));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["gate"]["pass"], true);
    assert_eq!(r["advisories"]["count"], 0);
    let p = scan_predicate(&e, r["attestation"]["referrer"].as_str().unwrap());
    assert_eq!(p["gate"]["allow_empty_advisories"], true);
    assert_eq!(p["advisories"]["count"], 0);
    assert_eq!(p["advisories"]["files"], 0);
    assert!(
        p["advisories"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{p}"
    );
    // …and a trust policy that requires a scan does not accept it.
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nscan = \"builder\"\n",
    )
    .unwrap();
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("FAIL  scan") && all.contains("made against no advisories"),
        "{all}"
    );
    // An age limit with no advisories: the age is unknown, refused even when allowed.
    let o = scan_cmd(
        &e,
        &empty,
        &["--allow-empty-advisories", "--max-advisory-age-hours", "24"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("age of the data is unknown"),
        "{}",
        stderr(&o)
    );
    // kiln patch refuses to read "no advisories" as "nothing to patch".
    let pool = e.path().join("pool");
    fs::create_dir_all(&pool).unwrap();
    let o = patch(&e, &empty, &pool, &key, false);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no Debian advisories loaded"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn advisory_age_is_the_age_of_the_data_in_the_gate_and_the_policy() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    // Read just now, but last modified two days ago.
    advisory_at(
        &osv,
        "DEBIAN-CVE-2026-4000",
        "other-package",
        Some("9"),
        "",
        &hours_ago(48),
    );
    let o = scan_cmd(&e, &osv, &["--max-advisory-age-hours", "24"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("hours old"), "{}", stderr(&o));
    let o = scan_cmd(&e, &osv, &["--max-advisory-age-hours", "72"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Attested without an age limit: the policy's limit still sees the data's age.
    let o = scan_cmd(&e, &osv, &["--attest", "--key", &key.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let policy = e.path().join("trust.toml");
    let write_policy = |h: u32| {
        fs::write(
            &policy,
            format!("[keys]\nci = \"ci.pub\"\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nscan = \"builder\"\nscan_max_age_hours = {h}\n"),
        )
        .unwrap();
    };
    write_policy(24);
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("h old") && all.contains("re-scan"), "{all}");
    write_policy(72);
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn policy_rejects_v1_scan_attestations() {
    use kiln_oci::{Store, media};
    use kiln_trust::{Statement, Subject, attest};
    let e = Env::new();
    let key_path = keygen(&e, "ci");
    let digest = e.build(&[]);
    // A v1 attestation, as the previous kiln wrote it: signed, passing, fresh.
    let key = kiln_trust::PrivateKey::from_pem(
        &fs::read_to_string(&key_path).unwrap(),
        Some(PASSWORD.as_bytes()),
    )
    .unwrap();
    let st = Statement::new(
        vec![Subject::sha256(
            "hello",
            digest.trim_start_matches("sha256:"),
        )],
        attest::SCAN_PREDICATE_TYPE_V1,
        serde_json::json!({
            "advisories": {"source": "osv", "count": 5, "newest_modified": hours_ago(0), "loaded_at": hours_ago(0)},
            "result": {"pass": true, "reasons": [], "counts": {}},
        }),
    );
    let env = st.sign(&[&key]);
    let store = Store::open(e.store()).unwrap();
    let subject = store
        .resolve(&kiln_oci::ImageRef::parse("hello:1.0.0").unwrap())
        .unwrap();
    let mut staging = store.staging().unwrap();
    let env_desc = staging
        .put(attest::DSSE_MEDIA_TYPE, env.to_json().as_bytes())
        .unwrap();
    staging.put(media::EMPTY, media::EMPTY_CONTENT).unwrap();
    let rm = attest::referrer_manifest(&env_desc, &subject, attest::SCAN_PREDICATE_TYPE_V1);
    let mut rm_desc = staging.put(media::MANIFEST, &rm.to_bytes()).unwrap();
    rm_desc.artifact_type = Some(attest::DSSE_MEDIA_TYPE.to_owned());
    staging.commit().unwrap();
    store.add_untagged(std::slice::from_ref(&rm_desc)).unwrap();
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nscan = \"builder\"\n",
    )
    .unwrap();
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("scan attestation v1") && all.contains("re-scan"),
        "{all}"
    );
    // Re-scanning makes a v2 attestation the policy accepts.
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(&osv, "DEBIAN-CVE-2026-4100", "other-package", Some("9"), "");
    let o = scan_cmd(
        &e,
        &osv,
        &["--attest", "--key", &key_path.display().to_string()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn table_output_shows_the_unknown_release_note() {
    let e = Env::new();
    e.build(&[]);
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(&osv, "DEBIAN-CVE-2026-4200", "other-package", Some("9"), "");
    let o = scan_cmd(&e, &osv, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("note: the image's Debian release is unknown"),
        "{out}"
    );
    assert!(out.contains("advisories for any Debian release"), "{out}");
}
