//! Tests of [`super`]: parsing, matching, expiry with an injected clock.

use super::*;
use crate::Severity;
use crate::report::{ScanReport, VulnState};

fn vuln(id: &str, pkg: &str, src: &str, installed: &str, sev: Severity) -> Vuln {
    Vuln {
        id: id.into(),
        aliases: vec![format!("CVE-{id}")],
        package: pkg.into(),
        source: src.into(),
        installed: installed.into(),
        source_version: installed.into(),
        fixed: Some("9".into()),
        state: VulnState::Vulnerable,
        severity: sev,
        summary: String::new(),
        status_file: String::new(),
    }
}

fn report(vulns: Vec<Vuln>) -> ScanReport {
    let mut r = ScanReport {
        image: "img:1".into(),
        digest: Some(format!("sha256:{}", "a".repeat(64))),
        advisories: Default::default(),
        packages: Vec::new(),
        vulnerabilities: vulns,
        findings: Vec::new(),
        counts: Default::default(),
        notes: Vec::new(),
        suppressed: Vec::new(),
        vex: None,
    };
    r.recount();
    r
}

fn doc(statements: &str) -> String {
    format!(
        r#"{{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.invalid/vex/1","author":"Security <sec@example.invalid>","timestamp":"2026-01-01T00:00:00Z","version":1,"statements":[{statements}]}}"#
    )
}

const NOT_AFFECTED: &str = r#"{"vulnerability":{"name":"DSA-1"},"products":[{"@id":"pkg:deb/debian/libssl3"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"}"#;

fn accepted(expires: &str) -> String {
    format!(
        r#"{{"vulnerability":{{"name":"CVE-DSA-2"}},"products":[{{"@id":"pkg:oci/img@sha256%3A{}","subcomponents":[{{"@id":"pkg:deb/debian/zlib@1.2?arch=amd64"}}]}}],"status":"affected","action_statement":"no network input reaches zlib; upgrade planned","kiln:expires":"{expires}"}}"#,
        "a".repeat(64)
    )
}

const T0: u64 = 1_780_000_000; // 2026-05-28

#[test]
fn statements_suppress_with_their_reason_and_expire() {
    let text = doc(&format!(
        "{NOT_AFFECTED},{}",
        accepted("2026-06-01T00:00:00Z")
    ));
    let d = parse(text.as_bytes(), "vex.json").unwrap();
    assert_eq!(d.statements.len(), 2);
    assert!(d.digest.starts_with("sha256:"));
    let vulns = vec![
        // Matched by source name (libssl3's source is openssl? no: by binary name here).
        vuln("DSA-1", "libssl3", "openssl", "3.0", Severity::High),
        // Matched through its alias, its source package and source version.
        vuln("DSA-2", "zlib1g", "zlib", "1.2", Severity::Critical),
        vuln("DSA-3", "curl", "curl", "8", Severity::High),
    ];
    let mut r = report(vulns.clone());
    apply(&mut r, &d, T0);
    let ids: Vec<&str> = r.vulnerabilities.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["DSA-3"]);
    assert_eq!(r.counts.high, 1);
    assert_eq!(r.counts.critical, 0);
    assert_eq!(r.suppressed.len(), 2);
    assert_eq!(
        r.suppressed[0].suppression.reason,
        "not affected: vulnerable_code_not_in_execute_path"
    );
    assert_eq!(
        r.suppressed[1].suppression.reason,
        "accepted risk until 2026-06-01T00:00:00Z: no network input reaches zlib; upgrade planned"
    );
    assert_eq!(r.vex.as_ref().unwrap().statements, 2);
    let table = r.table();
    assert!(
        table.contains("SUPPRESSED BY VEX (2, from vex.json)"),
        "{table}"
    );
    let sarif = r.sarif();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["suppressions"][0]["kind"], "external");
    // After the expiry the accepted risk is not applied, and the scan says so.
    let mut r = report(vulns.clone());
    apply(&mut r, &d, 1_780_300_000 + 86_400 * 10);
    assert_eq!(r.suppressed.len(), 1);
    assert_eq!(r.counts.critical, 1);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("the accepted risk expired 2026-06-01T00:00:00Z; not applied")),
        "{:?}",
        r.notes
    );
    // Another image's digest: the pkg:oci statement does not apply.
    let mut r = report(vulns);
    r.digest = Some(format!("sha256:{}", "b".repeat(64)));
    apply(&mut r, &d, T0);
    assert_eq!(r.suppressed.len(), 1);
}

#[test]
fn the_latest_statement_decides_and_versions_must_match() {
    let text = doc(&format!(
        r#"{NOT_AFFECTED},{{"vulnerability":{{"name":"DSA-1"}},"timestamp":"2026-02-01T00:00:00Z","products":[{{"@id":"pkg:deb/debian/openssl"}}],"status":"under_investigation"}},{{"vulnerability":{{"name":"DSA-9"}},"products":[{{"identifiers":{{"purl":"pkg:deb/debian/curl@7"}}}}],"status":"not_affected","impact_statement":"built without the feature"}}"#
    ));
    let d = parse(text.as_bytes(), "v.json").unwrap();
    let mut r = report(vec![
        vuln("DSA-1", "libssl3", "openssl", "3.0", Severity::High),
        vuln("DSA-9", "curl", "curl", "8", Severity::High),
    ]);
    apply(&mut r, &d, T0);
    assert!(r.suppressed.is_empty(), "{:?}", r.suppressed);
    assert_eq!(r.vulnerabilities.len(), 2);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("status under_investigation; not applied"))
    );
}

#[test]
fn affected_without_an_expiry_is_no_accepted_risk() {
    let text = doc(
        r#"{"vulnerability":{"name":"DSA-1"},"products":[{"@id":"pkg:deb/debian/openssl"}],"status":"affected","action_statement":"will fix"}"#,
    );
    let d = parse(text.as_bytes(), "v.json").unwrap();
    let mut r = report(vec![vuln(
        "DSA-1",
        "libssl3",
        "openssl",
        "3.0",
        Severity::High,
    )]);
    apply(&mut r, &d, T0);
    assert_eq!(r.vulnerabilities.len(), 1);
    assert!(r.notes[0].contains("needs an expiry"), "{:?}", r.notes);
}

#[test]
fn bad_documents_are_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("{", "not an OpenVEX document"),
        (
            r#"{"@context":"https://example.invalid","@id":"x","author":"a","timestamp":"2026-01-01T00:00:00Z","statements":[]}"#,
            "is not OpenVEX's",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"not_affected"}"#,
            ),
            "statements[0]: status not_affected needs a justification",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"not_affected","justification":"because"}"#,
            ),
            "justification \"because\" is not one of",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"affected"}"#,
            ),
            "needs an action_statement",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"broken"}"#,
            ),
            "status \"broken\" is not",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:npm/a"}],"status":"fixed"}"#,
            ),
            "products[0]: \"pkg:npm/a\" is not a pkg:deb or pkg:oci",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"fixed","kiln:expires":"soon"}"#,
            ),
            "kiln:expires \"soon\" is not an RFC 3339 time",
        ),
        (
            &doc(
                r#"{"vulnerability":{"name":"X"},"products":[{"@id":"pkg:deb/debian/a"}],"status":"fixed","expires":"2026-01-01T00:00:00Z"}"#,
            ),
            "unknown field `expires`",
        ),
        (
            &doc(r#"{"vulnerability":{"name":"X"},"products":[],"status":"fixed"}"#),
            "statements[0]: no products",
        ),
    ];
    for (text, want) in cases {
        let e = parse(text.as_bytes(), "v.json").unwrap_err().to_string();
        assert!(
            e.starts_with("v.json: ") && e.contains(want),
            "{e} (want {want})"
        );
    }
}

#[test]
fn purls_are_decoded() {
    assert_eq!(
        purl("pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"),
        Some((
            "deb",
            "libc6".to_string(),
            Some("2.36-9+deb12u4".to_string())
        ))
    );
    assert_eq!(
        purl("pkg:oci/hello@sha256%3Aab"),
        Some(("oci", "hello".to_string(), Some("sha256:ab".to_string())))
    );
    assert_eq!(purl("cpe:2.3:a"), None);
}
