//! OSV matching, malformed input, baseline findings, SARIF, the gate.

use std::collections::BTreeMap;

use kiln_scan::baseline::{self, BaselineConfig, EgressRule};
use kiln_scan::inventory::{FileMeta, parse_status};
use kiln_scan::{
    AdvisoryDb, Gate, Inventory, Package, ScanReport, Severity, VulnState, inventory_from_status,
    scan,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn pkg(name: &str, version: &str, source: Option<(&str, &str)>) -> Package {
    let (sn, sv) = source.unwrap_or((name, version));
    Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        source_name: sn.into(),
        source_version: sv.into(),
        status: "install ok installed".into(),
        status_file: "var/lib/dpkg/status".into(),
    }
}

fn rec(id: &str, eco: &str, name: &str, events: Value) -> Value {
    json!({
        "id": id,
        "modified": "2025-01-02T03:04:05Z",
        "summary": format!("summary of {id}"),
        "affected": [{
            "package": { "ecosystem": eco, "name": name },
            "ranges": [{ "type": "ECOSYSTEM", "events": events }]
        }]
    })
}

fn db(records: &[Value]) -> AdvisoryDb {
    let mut db = AdvisoryDb::default();
    for (i, r) in records.iter().enumerate() {
        db.add_json(r.to_string().as_bytes(), &format!("r{i}.json"))
            .expect("valid record");
    }
    db
}

fn debian12(packages: Vec<Package>) -> Inventory {
    let mut inv = Inventory::from_packages("test", packages);
    inv.os_id = Some("debian".into());
    inv.os_version_id = Some("12".into());
    inv
}

fn vulns(inv: &Inventory, db: &AdvisoryDb) -> Vec<(String, String, Option<String>, VulnState)> {
    db.match_inventory(inv)
        .vulnerabilities
        .into_iter()
        .map(|v| (v.id, v.package, v.fixed, v.state))
        .collect()
}

#[test]
fn introduced_zero_and_fixed() {
    let d = db(&[rec(
        "DSA-1",
        "Debian:12",
        "openssl",
        json!([{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]),
    )]);
    let below = debian12(vec![pkg(
        "libssl3",
        "3.0.11-1~deb12u1",
        Some(("openssl", "3.0.11-1~deb12u1")),
    )]);
    assert_eq!(
        vulns(&below, &d),
        vec![(
            "DSA-1".into(),
            "libssl3".into(),
            Some("3.0.11-1~deb12u2".into()),
            VulnState::Vulnerable
        )]
    );
    let at = debian12(vec![pkg(
        "libssl3",
        "3.0.11-1~deb12u2",
        Some(("openssl", "3.0.11-1~deb12u2")),
    )]);
    assert!(vulns(&at, &d).is_empty());
    // `~` versions: 3.0.11-1~deb12u2~rc1 is below the fix.
    let tilde = debian12(vec![pkg("openssl", "3.0.11-1~deb12u2~rc1", None)]);
    assert_eq!(vulns(&tilde, &d).len(), 1);
}

#[test]
fn matches_by_source_with_own_version() {
    // The binary was binNMU'd (+b1): the source version is what matters.
    let d = db(&[rec(
        "DSA-2",
        "Debian:12",
        "glibc",
        json!([{"introduced": "0"}, {"fixed": "2.36-9+deb12u4"}]),
    )]);
    let status = b"Package: libc6\nStatus: install ok installed\nSource: glibc (2.36-9+deb12u3)\nVersion: 2.36-9+deb12u3+b1\nArchitecture: amd64\n\nPackage: glibc\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\n";
    let inv = debian12(inventory_from_status(status).expect("status"));
    let v = vulns(&inv, &d);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].1, "libc6");
}

#[test]
fn unfixed_and_last_affected() {
    let d = db(&[
        rec("CVE-U", "Debian:12", "zlib", json!([{"introduced": "0"}])),
        rec(
            "CVE-L",
            "Debian:12",
            "zlib",
            json!([{"introduced": "1.2.0"}, {"last_affected": "1:1.2.13.dfsg-1"}]),
        ),
    ]);
    let inv = debian12(vec![pkg(
        "zlib1g",
        "1:1.2.13.dfsg-1",
        Some(("zlib", "1:1.2.13.dfsg-1")),
    )]);
    let mut v = vulns(&inv, &d);
    v.sort();
    assert_eq!(
        v[0],
        ("CVE-L".into(), "zlib1g".into(), None, VulnState::Vulnerable)
    );
    assert_eq!(
        v[1],
        ("CVE-U".into(), "zlib1g".into(), None, VulnState::Unfixed)
    );
    // Above last_affected: not affected (epoch 1 > 0 matters here too).
    let newer = debian12(vec![pkg(
        "zlib1g",
        "1:1.2.13.dfsg-2",
        Some(("zlib", "1:1.2.13.dfsg-2")),
    )]);
    assert_eq!(vulns(&newer, &d).len(), 1);
    // Without the epoch, 1.2.13 < the epoch-1 last_affected: affected.
    let noepoch = debian12(vec![pkg("zlib1g", "1.3-1", Some(("zlib", "1.3-1")))]);
    assert_eq!(vulns(&noepoch, &d).len(), 2);
}

#[test]
fn multiple_ranges_and_affected_entries() {
    let r = json!({
        "id": "DSA-3", "modified": "2025-03-01T00:00:00.123456Z",
        "affected": [
            { "package": { "ecosystem": "Debian:12", "name": "curl" },
              "ranges": [
                { "type": "ECOSYSTEM", "events": [{"introduced": "7.0"}, {"fixed": "7.50-1"}] },
                { "type": "ECOSYSTEM", "events": [{"introduced": "7.80"}, {"fixed": "7.88.1-10+deb12u5"}] },
                { "type": "GIT", "events": [{"introduced": "abc"}], "repo": "x" }
              ] },
            { "package": { "ecosystem": "Debian:11", "name": "curl" },
              "ranges": [{ "type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "7.74.0-1.3+deb11u11"}] }] },
            { "package": { "ecosystem": "PyPI", "name": "curl" } }
        ]
    });
    let d = db(&[r]);
    let check = |ver: &str| {
        vulns(&debian12(vec![pkg("curl", ver, None)]), &d)
            .into_iter()
            .map(|v| v.2)
            .collect::<Vec<_>>()
    };
    assert_eq!(check("7.40-1"), vec![Some("7.50-1".to_string())]);
    assert_eq!(check("7.60-1"), Vec::<Option<String>>::new());
    assert_eq!(
        check("7.88.1-10+deb12u4"),
        vec![Some("7.88.1-10+deb12u5".to_string())]
    );
    assert_eq!(check("7.88.1-10+deb12u5"), Vec::<Option<String>>::new());
    // Debian 11 image: only the Debian:11 entry applies.
    let mut inv11 = Inventory::from_packages("t", vec![pkg("curl", "7.74.0-1.3+deb11u10", None)]);
    inv11.os_id = Some("debian".into());
    inv11.os_version_id = Some("11".into());
    assert_eq!(
        vulns(&inv11, &d)[0].2.as_deref(),
        Some("7.74.0-1.3+deb11u11")
    );
    // Unknown release: every Debian:* applies, and a note says so.
    let unknown = Inventory::from_packages("t", vec![pkg("curl", "7.60-1", None)]);
    let m = d.match_inventory(&unknown);
    assert_eq!(m.vulnerabilities.len(), 1);
    assert!(
        m.notes.iter().any(|n| n.contains("unknown")),
        "{:?}",
        m.notes
    );
    assert_eq!(d.other_ecosystems, 1);
}

#[test]
fn withdrawn_ignored_and_array_files() {
    let mut w = rec("DSA-W", "Debian:12", "bash", json!([{"introduced": "0"}]));
    w["withdrawn"] = json!("2025-01-03T00:00:00Z");
    let live = rec(
        "DSA-L",
        "Debian:12",
        "bash",
        json!([{"introduced": "0"}, {"fixed": "5.3-1"}]),
    );
    let mut d = AdvisoryDb::default();
    d.add_json(json!([w, live]).to_string().as_bytes(), "all.json")
        .expect("array");
    assert_eq!(d.len(), 1);
    assert_eq!(d.withdrawn, 1);
    let v = vulns(&debian12(vec![pkg("bash", "5.2.15-2+b2", None)]), &d);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, "DSA-L");
}

#[test]
fn load_directory_recursively() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sub = tmp.path().join("a/b");
    std::fs::create_dir_all(&sub).expect("mkdir");
    std::fs::write(
        sub.join("x.json"),
        rec("DSA-X", "Debian:12", "x", json!([{"introduced": "0"}])).to_string(),
    )
    .expect("write");
    std::fs::write(tmp.path().join("README.txt"), "not json").expect("write");
    let d = AdvisoryDb::load(&[tmp.path().to_path_buf()]).expect("load");
    assert_eq!(d.len(), 1);
    assert_eq!(d.newest_modified.as_deref(), Some("2025-01-02T03:04:05Z"));
    assert!(!d.loaded_at.is_empty());

    std::fs::write(sub.join("bad.json"), "{\"id\": 5}").expect("write");
    let e = AdvisoryDb::load(&[tmp.path().to_path_buf()]).expect_err("bad file");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("{}:", sub.join("bad.json").display())),
        "{msg}"
    );
}

#[test]
fn malformed_records_name_the_file() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("nope", "not an OSV record"),
        ("{\"id\": \"X\"}", "modified"),
        ("{\"id\": \"X\", \"modified\": \"yesterday\"}", "RFC 3339"),
        (
            "{\"id\": \"\", \"modified\": \"2025-01-01T00:00:00Z\"}",
            "empty id",
        ),
        (
            r#"{"id":"X","modified":"2025-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0","fixed":"1"}]}]}]}"#,
            "exactly one",
        ),
        (
            r#"{"id":"X","modified":"2025-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:"}]}]}]}"#,
            "nothing after colon",
        ),
        (
            r#"{"id":"X","modified":"2025-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"a"},"ranges":[{"type":"ECOSYSTEM","events":[{"fixed":"1"}]}]}]}"#,
            "no introduced",
        ),
        (
            r#"{"id":"X","modified":"2025-01-01T00:00:00Z","affected":"x"}"#,
            "invalid type",
        ),
    ];
    for (text, want) in cases {
        let mut d = AdvisoryDb::default();
        let e = d.add_json(text.as_bytes(), "osv/bad.json").expect_err(text);
        let msg = e.to_string();
        assert!(msg.starts_with("osv/bad.json: "), "{msg}");
        assert!(msg.contains(want), "{text}: {msg}");
    }
}

#[test]
fn severity_sources() {
    let mut a = rec("A", "Debian:12", "p", json!([{"introduced": "0"}]));
    a["database_specific"] = json!({"severity": "HIGH"});
    let mut b = rec("B", "Debian:12", "p", json!([{"introduced": "0"}]));
    b["severity"] =
        json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]);
    let mut c = rec("C", "Debian:12", "p", json!([{"introduced": "0"}]));
    c["affected"][0]["ecosystem_specific"] = json!({"urgency": "low"});
    let d0 = rec("D", "Debian:12", "p", json!([{"introduced": "0"}]));
    let d = db(&[a, b, c, d0]);
    let m = d.match_inventory(&debian12(vec![pkg("p", "1", None)]));
    let got: BTreeMap<String, Severity> = m
        .vulnerabilities
        .iter()
        .map(|v| (v.id.clone(), v.severity))
        .collect();
    assert_eq!(got["A"], Severity::High);
    assert_eq!(got["B"], Severity::Critical);
    assert_eq!(got["C"], Severity::Low);
    assert_eq!(got["D"], Severity::Unknown);
    // Sorted by severity, highest first.
    assert_eq!(m.vulnerabilities[0].id, "B");
}

fn base_inventory() -> Inventory {
    let mut inv = debian12(vec![pkg("base-files", "12.4", None)]);
    inv.config.config.user = Some("65532:65532".into());
    inv.config
        .config
        .exposed_ports
        .insert("8080/tcp".into(), Default::default());
    inv.baseline = Some(BaselineConfig {
        log_level: Some("info".into()),
        tls_min_version: Some("1.2".into()),
        ingress: vec![8080],
        egress: vec![],
    });
    inv.files = vec![
        FileMeta {
            path: "/".into(),
            kind: "dir".into(),
            mode: 0o755,
        },
        FileMeta {
            path: "/bin".into(),
            kind: "dir".into(),
            mode: 0o755,
        },
        FileMeta {
            path: "/bin/sh".into(),
            kind: "symlink".into(),
            mode: 0o777,
        },
        FileMeta {
            path: "/tmp".into(),
            kind: "dir".into(),
            mode: 0o1777,
        },
    ];
    inv
}

fn ids(inv: &Inventory) -> Vec<String> {
    baseline::baseline_findings(inv)
        .into_iter()
        .map(|f| f.id)
        .collect()
}

#[test]
fn clean_baseline_has_no_findings() {
    assert_eq!(ids(&base_inventory()), Vec::<String>::new());
}

type Mutator = Box<dyn Fn(&mut Inventory)>;

#[test]
fn each_baseline_finding_triggers() {
    let file = |p: &str, mode: u32| FileMeta {
        path: p.into(),
        kind: "file".into(),
        mode,
    };
    let cases: Vec<(&str, Mutator)> = vec![
        (
            "KILN-BASE-001",
            Box::new(|i| {
                i.packages.push(pkg(
                    "openssh-server",
                    "1:9.2p1-2",
                    Some(("openssh", "1:9.2p1-2")),
                ))
            }),
        ),
        (
            "KILN-BASE-001",
            Box::new(move |i| i.files.push(file("/usr/sbin/sshd", 0o755))),
        ),
        (
            "KILN-BASE-002",
            Box::new(move |i| i.files.push(file("/etc/ssh/ssh_host_ed25519_key", 0o600))),
        ),
        (
            "KILN-BASE-003",
            Box::new(move |i| i.files.push(file("/home/app/.ssh/authorized_keys", 0o600))),
        ),
        (
            "KILN-BASE-004",
            Box::new(move |i| i.files.push(file("/usr/bin/passwd", 0o4755))),
        ),
        (
            "KILN-BASE-004",
            Box::new(move |i| i.files.push(file("/usr/bin/wall", 0o2755))),
        ),
        (
            "KILN-BASE-005",
            Box::new(move |i| i.files.push(file("/etc/app.conf", 0o666))),
        ),
        (
            "KILN-BASE-005",
            Box::new(|i| {
                i.files.push(FileMeta {
                    path: "/data".into(),
                    kind: "dir".into(),
                    mode: 0o777,
                })
            }),
        ),
        ("KILN-BASE-006", Box::new(|i| i.config.config.user = None)),
        (
            "KILN-BASE-006",
            Box::new(|i| i.config.config.user = Some("root".into())),
        ),
        (
            "KILN-BASE-006",
            Box::new(|i| i.config.config.user = Some("0".into())),
        ),
        (
            "KILN-BASE-006",
            Box::new(|i| i.config.config.user = Some("0:0".into())),
        ),
        (
            "KILN-BASE-007",
            Box::new(|i| {
                i.config
                    .config
                    .exposed_ports
                    .insert("22/tcp".into(), Default::default());
            }),
        ),
        (
            "KILN-BASE-008",
            Box::new(|i| {
                if let Some(b) = i.baseline.as_mut() {
                    b.log_level = Some("debug".into())
                }
            }),
        ),
        (
            "KILN-BASE-008",
            Box::new(|i| {
                if let Some(b) = i.baseline.as_mut() {
                    b.log_level = Some("trace".into())
                }
            }),
        ),
        (
            "KILN-BASE-009",
            Box::new(|i| {
                if let Some(b) = i.baseline.as_mut() {
                    b.tls_min_version = Some("1.1".into())
                }
            }),
        ),
        (
            "KILN-BASE-010",
            Box::new(|i| {
                if let Some(b) = i.baseline.as_mut() {
                    b.egress = vec![EgressRule::Plain("db:5432".into())]
                }
            }),
        ),
        (
            "KILN-BASE-010",
            Box::new(|i| {
                if let Some(b) = i.baseline.as_mut() {
                    b.egress = vec![EgressRule::Rule {
                        to: "db:5432".into(),
                        reason: Some(" ".into()),
                    }]
                }
            }),
        ),
    ];
    for (want, mutate) in cases {
        let mut inv = base_inventory();
        mutate(&mut inv);
        let got = baseline::baseline_findings(&inv);
        assert_eq!(got.len(), 1, "{want}: {got:?}");
        assert_eq!(got[0].id, want);
        assert!(!got[0].fix.is_empty() && !got[0].title.is_empty());
    }
    // An egress rule with a reason is fine; 1.3 is fine; warn is fine.
    let mut inv = base_inventory();
    if let Some(b) = inv.baseline.as_mut() {
        b.egress = vec![EgressRule::Rule {
            to: "db:5432".into(),
            reason: Some("orders DB".into()),
        }];
        b.tls_min_version = Some("1.3".into());
        b.log_level = Some("warn".into());
    }
    assert!(ids(&inv).is_empty());
    // The label as kiln-image writes it parses.
    let b: BaselineConfig = serde_json::from_str(
        r#"{"log_level":"info","tls_min_version":"1.2","ingress":[8080],"egress":["a:1",{"to":"b:2","reason":"r"}],"pii":true}"#,
    )
    .expect("label");
    assert_eq!(b.egress.len(), 2);
}

fn sample_report() -> ScanReport {
    let mut a = rec(
        "DSA-9",
        "Debian:12",
        "openssl",
        json!([{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]),
    );
    a["database_specific"] = json!({"severity": "critical"});
    let b = rec(
        "CVE-2025-1",
        "Debian:12",
        "openssl",
        json!([{"introduced": "0"}]),
    );
    let d = db(&[a, b]);
    let mut inv = base_inventory();
    inv.packages.push(pkg(
        "libssl3",
        "3.0.11-1~deb12u2",
        Some(("openssl", "3.0.11-1~deb12u2")),
    ));
    inv.config.config.user = None;
    inv.files.push(FileMeta {
        path: "/usr/bin/su".into(),
        kind: "file".into(),
        mode: 0o4755,
    });
    scan(&inv, &d)
}

#[test]
fn sarif_structure() {
    let r = sample_report();
    let s = r.sarif();
    assert_eq!(s["version"], "2.1.0");
    assert!(
        s["$schema"]
            .as_str()
            .is_some_and(|x| x.contains("sarif-2.1.0"))
    );
    let runs = s["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "kiln");
    let rules = driver["rules"].as_array().expect("rules");
    let rule_ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in ["DSA-9", "CVE-2025-1", "KILN-BASE-004", "KILN-BASE-006"] {
        assert!(rule_ids.contains(&id), "{id} in {rule_ids:?}");
    }
    let results = runs[0]["results"].as_array().expect("results");
    assert_eq!(results.len(), r.vulnerabilities.len() + r.findings.len());
    for res in results {
        let idx = res["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[idx]["id"], res["ruleId"]);
        assert!(
            ["error", "warning", "note", "none"].contains(&res["level"].as_str().expect("level"))
        );
        assert!(
            res["message"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        let uri = res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .expect("uri");
        assert!(!uri.is_empty() && !uri.starts_with('/'));
    }
    let dsa = results
        .iter()
        .find(|r| r["ruleId"] == "DSA-9")
        .expect("DSA-9");
    assert_eq!(dsa["level"], "error");
    assert_eq!(
        dsa["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "var/lib/dpkg/status"
    );
    let su = results
        .iter()
        .find(|r| r["ruleId"] == "KILN-BASE-004")
        .expect("setuid");
    assert_eq!(
        su["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "usr/bin/su"
    );
    // Round trip of the JSON form.
    let back: ScanReport = serde_json::from_str(&r.to_json()).expect("json");
    assert_eq!(back, r);
    let t = r.table();
    assert!(
        t.find("CRITICAL").expect("critical") < t.find("HIGH").expect("high"),
        "{t}"
    );
    assert!(t.contains("DSA-9") && t.contains("3.0.13-1~deb12u1"), "{t}");
}

#[test]
fn gate() {
    let r = sample_report();
    assert_eq!(r.counts.critical, 1);
    assert!(Gate::default().evaluate(&r).pass);
    let high = Gate {
        fail_on: Some(Severity::High),
        ..Gate::default()
    };
    let v = high.evaluate(&r);
    assert!(!v.pass);
    assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
    assert!(v.reasons[0].contains("DSA-9") && v.reasons[0].contains("fixed in"));
    let unfixed = Gate {
        fail_unfixed: true,
        ..Gate::default()
    };
    assert!(
        unfixed
            .evaluate(&r)
            .reasons
            .iter()
            .any(|x| x.contains("CVE-2025-1"))
    );
    let by_id = Gate {
        fail_findings: vec!["KILN-BASE-006".into()],
        ..Gate::default()
    };
    assert_eq!(by_id.evaluate(&r).reasons.len(), 1);
    let by_sev = Gate {
        fail_findings: vec!["medium".into()],
        ..Gate::default()
    };
    assert_eq!(by_sev.evaluate(&r).reasons.len(), 2);
    let fresh = Gate {
        max_advisory_age_hours: Some(24),
        ..Gate::default()
    };
    let modified = kiln_scan::osv::parse_time("2025-01-02T03:04:05Z").expect("t");
    assert!(fresh.evaluate_at(&r, modified + 23 * 3600).pass);
    let stale = fresh.evaluate_at(&r, modified + 25 * 3600);
    assert!(
        !stale.pass && stale.reasons[0].contains("25 hours"),
        "{:?}",
        stale.reasons
    );
}

#[test]
fn rfc3339_offsets() {
    let z = kiln_scan::osv::parse_time("2025-01-02T03:04:05Z").expect("z");
    assert_eq!(
        kiln_scan::osv::parse_time("2025-01-02T05:04:05+02:00"),
        Some(z)
    );
    assert_eq!(
        kiln_scan::osv::parse_time("2025-01-02T05:04:05.5+02:00"),
        Some(z)
    );
    assert_eq!(kiln_scan::osv::parse_time("2025-01-02"), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn osv_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut d = AdvisoryDb::default();
        let _ = d.add_json(&bytes, "fuzz.json");
    }

    #[test]
    fn osv_parser_never_panics_on_jsonish(s in r#"[\[\]{}",:0-9a-z_ .~+-]{0,200}"#) {
        let mut d = AdvisoryDb::default();
        let _ = d.add_json(s.as_bytes(), "fuzz.json");
        let wrapped = format!(r#"{{"id":"X","modified":"2025-01-01T00:00:00Z","affected":[{{"package":{{"ecosystem":"Debian:12","name":"a"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"{s}"}}]}}]}}]}}"#);
        let _ = d.add_json(wrapped.as_bytes(), "fuzz.json");
    }

    #[test]
    fn status_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = inventory_from_status(&bytes);
        let _ = parse_status(&bytes, "x", true);
    }

    #[test]
    fn status_parser_never_panics_on_fieldish(s in "([A-Za-z]{1,8}: [a-z0-9 ().~+:-]{0,12}\n|\n| [a-z]{0,5}\n){0,12}") {
        let _ = inventory_from_status(s.as_bytes());
        let _ = parse_status(s.as_bytes(), "x", true);
    }
}
