//! `kiln evidence`: an assessor's bundle from the audit log of a real build,
//! signature and approval, verified offline, and caught when one byte of an
//! artifact changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

fn all_output(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

/// `kiln evidence verify DIR` with the state dir pointing at an empty
/// directory: nothing of the original state is used.
fn verify_offline(e: &Env, dir: &Path, extra: &[&str]) -> Output {
    let empty = e.path().join("empty-state");
    fs::create_dir_all(&empty).unwrap();
    run(e
        .kiln()
        .env("KILN_STATE_DIR", &empty)
        .args(["evidence", "verify"])
        .arg(dir)
        .args(extra))
}

/// Build the example with provenance, sign it and approve it.
fn signed_image(e: &Env) -> (String, PathBuf) {
    let key = keygen(e, "ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["build", "-f"])
        .arg(e.spec())
        .arg("--sign-key")
        .arg(&key));
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    let digest = last_line(&o);
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign failed: {}", stderr(&o));
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["approve", "hello:1.0.0", "--key"])
        .arg(&key)
        .args(["--reason", "CHG-7 <b>reviewed</b>"]));
    assert!(o.status.success(), "approve failed: {}", stderr(&o));
    (digest, key)
}

fn evidence_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("evidence.json")).unwrap()).unwrap()
}

#[test]
fn pci_bundle_verifies_offline_and_catches_a_changed_artifact() {
    let e = Env::new();
    let (digest, _) = signed_image(&e);
    let out = e.path().join("evidence");
    let o = run(e
        .kiln()
        .args(["--json", "evidence", "--framework", "pci-dss-4.0", "--out"])
        .arg(&out));
    assert!(o.status.success(), "evidence failed: {}", all_output(&o));
    let summary = json(&o);
    let manifest = summary["manifest"].as_str().unwrap().to_string();

    let ev = evidence_json(&out);
    assert_eq!(ev["framework"]["id"], "pci-dss-4.0");
    let req = |id: &str| {
        ev["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no requirement {id}"))
            .clone()
    };
    // The audit trail and its protection are there now.
    assert_eq!(req("10.2.1")["status"], "satisfied");
    assert_eq!(req("10.2.2")["status"], "satisfied");
    assert_eq!(req("10.3.2")["status"], "satisfied");
    // Scans and drift checks do not exist yet: reported, with what would satisfy them.
    assert_eq!(req("6.3.3")["status"], "missing");
    assert!(!req("11.5.2")["missing"].as_array().unwrap().is_empty());
    // The build, signature and approval are cited, with their artifacts.
    let actions: Vec<String> = req("6.5.1")["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for a in ["image.sign", "image.approve"] {
        assert!(actions.iter().any(|x| x == a), "{a} not cited: {actions:?}");
    }
    let kinds: Vec<&str> = ev["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["image"] == digest.as_str())
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for k in [
        "image-config",
        "sbom-spdx",
        "sbom-cyclone-dx",
        "file-manifest",
        "provenance",
        "approval",
        "sigstore-bundle",
        "cosign-signature",
    ] {
        assert!(kinds.contains(&k), "no {k} artifact in {kinds:?}");
    }
    let html = fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("CHG-7 &lt;b&gt;reviewed&lt;/b&gt;"));
    assert!(!html.contains("<b>reviewed"));

    // The generation itself is an audit event naming the bundle's MANIFEST.
    let o = run(e.kiln().args(["--json", "log", "show"]));
    assert!(o.status.success(), "{}", all_output(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("evidence.generate") && shown.contains(&manifest),
        "{shown}"
    );

    // Offline, with the bundle's key (and a warning) and with the given key.
    let o = verify_offline(&e, &out, &[]);
    assert!(o.status.success(), "verify failed: {}", all_output(&o));
    assert!(all_output(&o).contains("taken from the bundle"));
    let key = ev["log"]["verifier_key"].as_str().unwrap().to_string();
    let o = verify_offline(&e, &out, &["--key", &key]);
    assert!(
        o.status.success(),
        "verify --key failed: {}",
        all_output(&o)
    );
    let keyfile = e.path().join("log.vkey");
    fs::write(&keyfile, format!("{key}\n")).unwrap();
    let o = verify_offline(&e, &out, &["--json", "--key", keyfile.to_str().unwrap()]);
    assert!(o.status.success(), "{}", all_output(&o));
    assert_eq!(json(&o)["report"]["key_source"], "given");

    // One byte of an artifact changed: exit 1, naming the file.
    let spdx = ev["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "sbom-spdx" && a["media_type"] == "application/spdx+json")
        .expect("an SPDX document")["path"]
        .as_str()
        .unwrap()
        .to_string();
    let p = out.join(&spdx);
    let mut b = fs::read(&p).unwrap();
    b[10] ^= 0x20;
    fs::write(&p, &b).unwrap();
    let o = verify_offline(&e, &out, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert!(stderr(&o).contains(&spdx), "{}", all_output(&o));
    let o = verify_offline(&e, &out, &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["path"], spdx.as_str());
}

#[test]
fn evidence_refuses_a_foreign_directory_and_bad_arguments() {
    let e = Env::new();
    e.build(&[]);
    let out = e.path().join("notes");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("mine.txt"), b"keep").unwrap();
    let o = run(e
        .kiln()
        .args(["evidence", "--framework", "soc2", "--out"])
        .arg(&out));
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert!(
        stderr(&o).contains("not an evidence bundle"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(out.join("mine.txt")).unwrap(), b"keep");

    let o = run(e
        .kiln()
        .args(["evidence", "--framework", "iso-27001", "--out"])
        .arg(e.path().join("x")));
    assert_eq!(o.status.code(), Some(2), "{}", all_output(&o));
    let o = run(e
        .kiln()
        .args([
            "evidence",
            "--framework",
            "soc2",
            "--since",
            "last week",
            "--out",
        ])
        .arg(e.path().join("x")));
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    assert!(stderr(&o).contains("invalid date"), "{}", stderr(&o));
    let o = run(e.kiln().args(["evidence"]));
    assert_eq!(o.status.code(), Some(2), "{}", all_output(&o));

    // A period with the build in it, then one after.
    let ok = e.path().join("soc2");
    let o = run(e
        .kiln()
        .args([
            "evidence",
            "--framework",
            "soc2",
            "--since",
            "2000-01-01",
            "--out",
        ])
        .arg(&ok));
    assert!(o.status.success(), "{}", all_output(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("CC8.1"));
    let o = verify_offline(&e, &ok, &[]);
    assert!(o.status.success(), "{}", all_output(&o));
}
