//! The scan step (`kiln scan`): an image's packages against OSV advisories and the
//! baseline findings, with OpenVEX statements applied (suppressed findings listed, not
//! dropped), judged by a gate; optionally the signed result attached to the
//! image (`https://kiln.dev/scan/v2`); the `scan` event recorded (a failure when the
//! gate fails); then the attestation made visible.
//!
//! A scan that saw nothing (no advisories for the image's release, or no packages) is
//! no result at all: it is refused before anything is recorded or attached, unless the
//! gate allows it.

use std::time::SystemTime;

use kiln_audit::Recorder;
use kiln_oci::{Pending, Resolved, Store};
use kiln_scan::vex::VexDocument;
use kiln_scan::{AdvisoryDb, Gate, ScanReport, Severity, Verdict};
use kiln_trust::attest::SCAN_PREDICATE_TYPE;
use kiln_trust::{Attached, Statement, Subject};
use serde::Serialize;
use serde_json::json;

use crate::{Error, Key};

/// The gate as the user set it (recorded verbatim in the attestation).
#[derive(Debug, Clone, Serialize)]
pub struct GateSettings {
    /// `none`, `low`, `medium`, `high` or `critical`.
    pub fail_on: String,
    pub fail_unfixed: bool,
    pub fail_findings: Vec<String>,
    pub max_advisory_age_hours: Option<u64>,
    pub allow_empty_advisories: bool,
    pub allow_no_packages: bool,
}

impl Default for GateSettings {
    /// `kiln scan`'s defaults: fail on fixable vulnerabilities of high severity or more.
    fn default() -> GateSettings {
        GateSettings {
            fail_on: "high".into(),
            fail_unfixed: false,
            fail_findings: Vec::new(),
            max_advisory_age_hours: None,
            allow_empty_advisories: false,
            allow_no_packages: false,
        }
    }
}

impl GateSettings {
    /// The gate these settings describe.
    pub fn gate(&self) -> Result<Gate, Error> {
        let fail_on = match self.fail_on.as_str() {
            "none" => None,
            s => Some(Severity::parse(s).ok_or_else(|| Error::FailOn {
                value: s.to_owned(),
            })?),
        };
        Ok(Gate {
            fail_on,
            fail_unfixed: self.fail_unfixed,
            fail_findings: self.fail_findings.clone(),
            max_advisory_age_hours: self.max_advisory_age_hours,
            allow_empty_advisories: self.allow_empty_advisories,
            allow_no_packages: self.allow_no_packages,
        })
    }
}

/// What a scan found.
pub struct Scanned {
    pub report: ScanReport,
    pub verdict: Verdict,
    /// Where the attestation was attached, and the key id that signed it.
    pub attested: Option<(Attached, String)>,
}

/// Scan `img`, attest the result with `attest_key` if given, record the `scan` event
/// (at `now`), attach. A failing gate is a result (`verdict.pass` false, its event
/// recorded as a failure), not an error.
pub fn scan(
    rec: &dyn Recorder,
    store: &Store,
    img: &Resolved,
    db: &AdvisoryDb,
    settings: &GateSettings,
    attest_key: Option<Key>,
    now: SystemTime,
) -> Result<Scanned, Error> {
    scan_with(rec, store, img, db, None, settings, attest_key, now)
}

/// [`scan`] with the OpenVEX statements of `vex` applied (at `now`) before the gate
/// judges: the vulnerabilities they suppress are listed under `suppressed` in the
/// report, the event and the attestation, each with its statement, and no longer count
/// against the gate; an expired statement is not applied (the report's notes say so).
#[allow(clippy::too_many_arguments)]
pub fn scan_with(
    rec: &dyn Recorder,
    store: &Store,
    img: &Resolved,
    db: &AdvisoryDb,
    vex: Option<&VexDocument>,
    settings: &GateSettings,
    attest_key: Option<Key>,
    now: SystemTime,
) -> Result<Scanned, Error> {
    let gate = settings.gate()?;
    let mut inv =
        kiln_scan::inventory_from_store(store, &img.descriptor.digest).map_err(|source| {
            Error::Inventory {
                image: img.reference.clone(),
                source,
            }
        })?;
    inv.image = img.reference.clone();
    let mut report = kiln_scan::scan(&inv, db);
    if let Some(doc) = vex {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        kiln_scan::vex::apply(&mut report, doc, secs);
    }
    let verdict = gate.evaluate(&report);
    let refusals = gate.refusals(&report);
    if !refusals.is_empty() {
        return Err(Error::Refused {
            image: img.reference.clone(),
            reasons: refusals,
        });
    }
    let mut attested = None;
    let mut pending = Pending::default();
    if let Some(key) = attest_key {
        let key = key.get()?;
        let key = &*key;
        let name = kiln_trust::store::image_name(store, img)?;
        let st = Statement::new(
            vec![Subject::sha256(&name, img.descriptor.digest.hex())],
            SCAN_PREDICATE_TYPE,
            json!({
                "scanner": {"name": "kiln", "version": env!("CARGO_PKG_VERSION")},
                "advisories": report.advisories,
                "gate": settings,
                "result": {
                    "pass": verdict.pass,
                    "reasons": verdict.reasons,
                    "counts": report.counts,
                },
                "vulnerabilities": report.vulnerabilities,
                "suppressed": report.suppressed,
                "vex": report.vex,
                "findings": report.findings,
                "scanned_at": kiln_oci::time::rfc3339_millis(now),
            }),
        );
        let env = st.sign(&[key]);
        let (at, staged) = kiln_trust::store::stage_attestation(
            store,
            &name,
            &img.descriptor,
            &env,
            &key.public_key(),
            SCAN_PREDICATE_TYPE,
        )?;
        pending = staged;
        attested = Some((at, key.public_key().key_id()));
    }
    // The attestation appears in the index only after the event is durable.
    record(rec, img, &report, &verdict)?;
    pending.apply(store)?;
    Ok(Scanned {
        report,
        verdict,
        attested,
    })
}

fn record(
    rec: &dyn Recorder,
    img: &Resolved,
    report: &ScanReport,
    verdict: &Verdict,
) -> Result<(), Error> {
    let image = kiln_audit::Resource::named(
        "image",
        img.descriptor.digest.to_string(),
        img.reference.clone(),
    );
    let mut ev = rec
        .event("scan")
        .resource(image)
        .detail("advisories", serde_json::to_value(&report.advisories)?)
        .detail("counts", serde_json::to_value(&report.counts)?)
        .detail(
            "vulnerabilities",
            report
                .vulnerabilities
                .iter()
                .map(|v| json!({"id": v.id, "package": v.package, "installed": v.installed, "fixed": v.fixed, "severity": v.severity}))
                .collect::<Vec<_>>(),
        )
        .detail(
            "findings",
            report.findings.iter().map(|f| f.id.clone()).collect::<Vec<_>>(),
        )
        .detail("gate_pass", verdict.pass);
    if let Some(vex) = &report.vex {
        ev = ev.detail("vex", serde_json::to_value(vex)?).detail(
            "suppressed",
            report
                .suppressed
                .iter()
                .map(|x| json!({"id": x.vuln.id, "package": x.vuln.package, "installed": x.vuln.installed, "severity": x.vuln.severity, "status": x.suppression.status, "reason": x.suppression.reason, "expires": x.suppression.expires}))
                .collect::<Vec<_>>(),
        );
    }
    if !verdict.pass {
        ev = ev.failed(&format!("gate failed: {}", verdict.reasons.join("; ")));
    }
    rec.record(ev)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_gate_fails_on_high_and_is_recorded_as_given() {
        let s = GateSettings::default();
        let g = s.gate().unwrap();
        assert_eq!(g.fail_on, Some(Severity::High));
        assert!(!g.fail_unfixed && !g.allow_empty_advisories && !g.allow_no_packages);
        // The attestation's `gate` object: the settings as given, in this order.
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"fail_on":"high","fail_unfixed":false,"fail_findings":[],"max_advisory_age_hours":null,"allow_empty_advisories":false,"allow_no_packages":false}"#
        );
        let none = GateSettings {
            fail_on: "none".into(),
            ..GateSettings::default()
        };
        assert_eq!(none.gate().unwrap().fail_on, None);
        let bad = GateSettings {
            fail_on: "severe".into(),
            ..GateSettings::default()
        };
        assert_eq!(
            bad.gate().unwrap_err().to_string(),
            "--fail-on \"severe\": expected none, low, medium, high or critical"
        );
    }
}
