//! `kiln advisories sync` from a local HTTP server serving an osv.dev-style
//! `all.zip`, `kiln scan` on the synced set, and `kiln scan --vex`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;

use crate::scan::{advisory, hours_ago, scan_predicate};
use crate::support::*;

/// Serve `body` as `application/zip` to `n` requests; the URL.
fn serve(body: Vec<u8>, n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut rd = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while rd.read_line(&mut line).is_ok_and(|k| k > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/Debian/all.zip")
}

/// The `*.json` files of `dir` as an osv.dev export (one record per entry).
fn export_of(dir: &Path) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        w.start_file(p.file_name().unwrap().to_string_lossy(), o)
            .unwrap();
        w.write_all(&fs::read(&p).unwrap()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn scan_uses_the_synced_feed_and_records_it() {
    let e = Env::new();
    e.build(&[]);
    // Nothing synced, nothing given: fail closed.
    let o = run(e.kiln().args(["scan", "hello:1.0.0"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no advisories: run kiln advisories sync or pass --advisories"),
        "{}",
        stderr(&o)
    );
    let o = run(e.kiln().args(["advisories", "status"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no advisories synced"));

    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(
        &osv,
        "DEBIAN-CVE-2026-2000",
        "hello-config",
        Some("1.0-2"),
        "",
    );
    advisory(&osv, "DEBIAN-CVE-2026-2001", "other-package", Some("9"), "");
    let url = serve(export_of(&osv), 2);
    let o = run(e
        .kiln()
        .args(["--json", "advisories", "sync", "--timeout", "20", "--url"])
        .arg(&url));
    assert!(o.status.success(), "{}", stderr(&o));
    let synced = json(&o);
    let set = &synced["set"];
    assert_eq!(set["count"], 2);
    assert_eq!(set["url"], url.as_str());
    assert!(
        set["archive_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let o = run(e.kiln().args(["--json", "advisories", "status"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["archive_digest"], set["archive_digest"]);

    // The scan, without --advisories, uses the synced set and says which.
    let o = run(e.kiln().args(["--json", "scan", "hello:1.0.0"]));
    assert_eq!(o.status.code(), Some(1), "the gate fails: {}", stderr(&o));
    let r = json(&o);
    let a = &r["advisories"];
    assert_eq!(a["digest"], set["set_digest"]);
    assert_eq!(a["count"], 2);
    assert_eq!(a["newest_modified"], set["newest_modified"]);
    assert_eq!(a["feed"]["url"], url.as_str());
    assert_eq!(a["feed"]["archive_digest"], set["archive_digest"]);
    assert_eq!(r["vulnerabilities"][0]["id"], "DEBIAN-CVE-2026-2000");
    let o = run(e
        .kiln()
        .args(["scan", "hello:1.0.0", "--fail-on", "critical"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("synced from {url}")), "{out}");

    // The sync and the scans are audit events; the scan event names the set.
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "advisories.sync"]));
    let events = json(&o);
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    let o = run(e.kiln().args(["--json", "log", "show", "--action", "scan"]));
    let text = json(&o).to_string();
    assert!(text.contains(set["set_digest"].as_str().unwrap()), "{text}");

    // A second sync of the same export changes nothing but the fetch time.
    let o = run(e.kiln().args(["advisories", "sync", "--url"]).arg(&url));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("unchanged"));

    // A failed sync (nothing listens any more) is recorded and changes nothing.
    let o = run(e
        .kiln()
        .args(["advisories", "sync", "--timeout", "5", "--url"])
        .arg(&url));
    assert_eq!(o.status.code(), Some(1));
    let o = run(e.kiln().args(["--json", "advisories", "status"]));
    assert_eq!(json(&o)["archive_digest"], set["archive_digest"]);
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "advisories.sync"]));
    assert_eq!(json(&o).as_array().unwrap().len(), 3);
}

fn vex_doc(statement: &str) -> String {
    format!(
        r#"{{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.invalid/vex/hello","author":"Platform security","timestamp":"{}","version":1,"statements":[{statement}]}}"#,
        hours_ago(1)
    )
}

#[test]
fn vex_suppresses_with_the_reason_and_an_expired_risk_is_not_applied() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    let osv = e.path().join("osv");
    fs::create_dir_all(&osv).unwrap();
    advisory(
        &osv,
        "DEBIAN-CVE-2026-3000",
        "hello-config",
        Some("1.0-2"),
        r#","aliases":["CVE-2026-3000"]"#,
    );
    let scan = |vex: &Path, extra: &[&str]| {
        run(e
            .kiln()
            .env("KILN_KEY_PASSWORD", PASSWORD)
            .args(["scan", "hello:1.0.0"])
            .args(extra)
            .arg("--vex")
            .arg(vex)
            .arg("--advisories")
            .arg(&osv))
    };
    // not_affected, by alias and package: suppressed, listed, gate passes.
    let na = e.path().join("not-affected.json");
    fs::write(
        &na,
        vex_doc(
            r#"{"vulnerability":{"name":"CVE-2026-3000"},"products":[{"@id":"pkg:deb/debian/hello-config"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}"#,
        ),
    )
    .unwrap();
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "scan", "hello:1.0.0", "--attest", "--key"])
        .arg(&key)
        .arg("--vex")
        .arg(&na)
        .arg("--advisories")
        .arg(&osv));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["vulnerabilities"].as_array().unwrap().len(), 0);
    assert_eq!(r["suppressed"][0]["id"], "DEBIAN-CVE-2026-3000");
    assert_eq!(
        r["suppressed"][0]["suppression"]["reason"],
        "not affected: vulnerable_code_not_in_execute_path"
    );
    assert_eq!(r["gate"]["pass"], true);
    let p = scan_predicate(&e, r["attestation"]["referrer"].as_str().unwrap());
    assert_eq!(p["suppressed"][0]["id"], "DEBIAN-CVE-2026-3000");
    assert_eq!(
        p["suppressed"][0]["suppression"]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    assert!(p["vex"]["digest"].as_str().unwrap().starts_with("sha256:"));
    // The attestation of a scan that passes thanks to VEX satisfies a policy that requires a
    // passing scan: it still records the advisory set it used.
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nscan = \"builder\"\nscan_max_age_hours = 24\n",
    )
    .unwrap();
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
    // The scan event lists the suppression too.
    let o = run(e.kiln().args(["--json", "log", "show", "--action", "scan"]));
    assert!(
        json(&o)
            .to_string()
            .contains("vulnerable_code_not_in_execute_path")
    );

    // An accepted risk until tomorrow: shown as suppressed with its reason.
    let risk = |expires: &str| {
        vex_doc(&format!(
            r#"{{"vulnerability":{{"name":"DEBIAN-CVE-2026-3000"}},"products":[{{"@id":"pkg:deb/debian/hello-config"}}],"status":"affected","action_statement":"config only, no untrusted input; fix in the next release","kiln:expires":"{expires}"}}"#
        ))
    };
    let future = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        kiln_oci::time::rfc3339(now + 86_400)
    };
    let ar = e.path().join("accepted.json");
    fs::write(&ar, risk(&future)).unwrap();
    let o = scan(&ar, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("SUPPRESSED BY VEX (1"), "{out}");
    assert!(
        out.contains(&format!("accepted risk until {future}: config only")),
        "{out}"
    );
    let o = scan(&ar, &["--sarif"]);
    let s = json(&o);
    assert_eq!(
        s["runs"][0]["results"][0]["suppressions"][0]["status"],
        "accepted"
    );

    // Expired: not applied, the gate fails, and the scan says why.
    let expired = e.path().join("expired.json");
    fs::write(&expired, risk(&hours_ago(2))).unwrap();
    let o = scan(&expired, &[]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("the accepted risk expired"), "{out}");
    assert!(!out.contains("SUPPRESSED BY VEX"), "{out}");

    // A malformed VEX file: a clear error naming it.
    let bad = e.path().join("bad.json");
    fs::write(
        &bad,
        vex_doc(
            r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/hello-config"}],"status":"not_affected"}"#,
        ),
    )
    .unwrap();
    let o = scan(&bad, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.json: statements[0]: status not_affected needs a justification"),
        "{}",
        stderr(&o)
    );
}
