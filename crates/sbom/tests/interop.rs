//! Interop: the SBOMs kiln writes must pass the reference validators
//! (spdx-tools for SPDX, cyclonedx-python-lib's strict JSON validator for
//! CycloneDX 1.5), run through scripts/validate-sbom.py.
//!
//! They need python3 with spdx-tools (and its `pyspdxtools` CLI) and
//! cyclonedx-python-lib, so they are `#[ignore]`d; `scripts/test.sh` runs them
//! (`--include-ignored`), where a missing tool fails them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_sbom::{Inventory, cyclonedx_json, spdx_json};

/// scripts/validate-sbom.py exits with this when a Python package is missing.
const EXIT_MISSING: i32 = 3;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/validate-sbom.py")
}

enum Outcome {
    Valid,
    Invalid(String),
}

fn missing(tool: &str) -> ! {
    panic!("{tool} is not installed (scripts/install-deps.sh)")
}

fn run_validator(kind: &str, bytes: &[u8]) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("sbom.{kind}.json"));
    std::fs::write(&file, bytes).expect("write sbom");
    run_validator_on(kind, &file)
}

fn run_validator_on(kind: &str, file: &Path) -> Outcome {
    let output = match Command::new("python3")
        .arg(script())
        .arg(kind)
        .arg(file)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing("python3"),
        Err(e) => panic!("cannot run python3: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Outcome::Valid,
        Some(EXIT_MISSING) => missing(match kind {
            "spdx" => "spdx-tools",
            _ => "cyclonedx-python-lib",
        }),
        _ => Outcome::Invalid(format!(
            "validate-sbom.py {kind} failed ({}):\n{stdout}{stderr}",
            output.status
        )),
    }
}

/// Validates `bytes`, panicking with the validator's report if it is invalid.
fn assert_valid(kind: &str, what: &str, bytes: &[u8]) {
    // KILN_INTEROP_OUT=<dir> keeps the documents for inspection.
    if let Some(out) = std::env::var_os("KILN_INTEROP_OUT") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).expect("create KILN_INTEROP_OUT");
        std::fs::write(out.join(format!("{what}.{kind}.json")), bytes).expect("keep document");
    }
    match run_validator(kind, bytes) {
        Outcome::Valid => {}
        Outcome::Invalid(report) => {
            panic!(
                "{what}: {report}\n--- document ---\n{}",
                String::from_utf8_lossy(bytes)
            )
        }
    }
}

fn inventories() -> Vec<(&'static str, Inventory)> {
    vec![
        ("realistic", common::realistic()),
        ("small", common::small()),
        ("empty", common::empty()),
        ("hostile", common::hostile()),
    ]
}

#[test]
#[ignore = "needs python3 with spdx-tools (pyspdxtools)"]
fn spdx_passes_spdx_tools() {
    for (what, inv) in inventories() {
        let bytes = spdx_json(&inv);
        assert_valid("spdx", what, &bytes);
        // The CLI itself: exit 0 and not a single message.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("sbom.spdx.json");
        std::fs::write(&file, &bytes).expect("write");
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("pyspdxtools (scripts/install-deps.sh): {e}"));
        let messages = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && messages.trim().is_empty(),
            "pyspdxtools -i on {what}: {}\n{messages}",
            out.status
        );
    }
}

#[test]
#[ignore = "needs python3 with cyclonedx-python-lib"]
fn cyclonedx_passes_strict_schema_validation() {
    for (what, inv) in inventories() {
        assert_valid("cyclonedx", what, &cyclonedx_json(&inv));
    }
}

/// The validators are not vacuous: broken documents are rejected, so the
/// tests above would fail if kiln wrote invalid SBOMs.
#[test]
#[ignore = "needs python3 with spdx-tools and cyclonedx-python-lib"]
fn validators_reject_broken_documents() {
    let inv = common::realistic();

    let mut spdx: serde_json::Value = serde_json::from_slice(&spdx_json(&inv)).expect("spdx json");
    // Drop the SHA1 of the first file: SPDX requires it.
    if let Some(checksums) = spdx["files"][0]["checksums"].as_array_mut() {
        checksums.retain(|c| c["algorithm"] != "SHA1");
    }
    match run_validator("spdx", &serde_json::to_vec(&spdx).expect("json")) {
        Outcome::Invalid(report) => assert!(report.contains("SHA1"), "{report}"),
        Outcome::Valid => panic!("spdx-tools accepted a file without SHA1"),
    }

    let mut spdx: serde_json::Value = serde_json::from_slice(&spdx_json(&inv)).expect("spdx json");
    spdx["packages"][1]["packageVerificationCode"]["packageVerificationCodeValue"] =
        serde_json::json!("0".repeat(40));
    match run_validator("spdx", &serde_json::to_vec(&spdx).expect("json")) {
        Outcome::Invalid(report) => assert!(report.contains("packageVerificationCode"), "{report}"),
        Outcome::Valid => panic!("a wrong verification code was accepted"),
    }

    let mut bom: serde_json::Value =
        serde_json::from_slice(&cyclonedx_json(&inv)).expect("cdx json");
    bom["components"][0]["unexpected"] = serde_json::json!(true);
    bom["metadata"]["timestamp"] = serde_json::json!("not a time");
    match run_validator("cyclonedx", &serde_json::to_vec(&bom).expect("json")) {
        Outcome::Invalid(report) => {
            assert!(report.contains("unexpected"), "{report}");
            assert!(
                report.contains("not a time"),
                "every error is printed: {report}"
            );
        }
        Outcome::Valid => panic!("the strict validator accepted an unknown property"),
    }
}
