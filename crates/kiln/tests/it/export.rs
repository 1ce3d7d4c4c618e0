//! `kiln export` and `kiln import`: an image with everything attached to it (signatures,
//! bundles, SBOM referrers) moved through an OCI layout and verified on the other side;
//! skopeo reads the export; a tampered blob is refused before anything is imported.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::*;

const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn policy(e: &Env, key: &str) -> PathBuf {
    let t = format!(
        "[keys]\n{key} = \"{key}.pub\"\n\n[roles.builder]\nkeys = [\"{key}\"]\nthreshold = 1\n\n\
         [require]\nsignature = \"builder\"\n"
    );
    let p = e.path().join("trust.toml");
    fs::write(&p, t).unwrap();
    p
}

/// Build, sign and export `hello:1.0.0`; returns (digest, export dir, policy).
fn signed_export(e: &Env) -> (String, PathBuf, PathBuf) {
    let digest = e.build(&[]);
    let key = keygen(e, "ci");
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", "hello:1.0.0", "--key"])
        .arg(&key));
    assert!(o.status.success(), "sign: {}", stderr(&o));
    let out = e.path().join("export");
    let o = run(e
        .kiln()
        .args(["--json", "export", "hello:1.0.0", "--out"])
        .arg(&out));
    assert!(o.status.success(), "export: {}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["digest"], digest.as_str());
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(
        v["tags"][0]["ref"],
        format!("hello:sha256-{hex}.sig").as_str()
    );
    let bundles = v["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["artifact_type"] == BUNDLE)
        .count();
    assert_eq!(bundles, 1, "{v}");
    (digest, out, policy(e, "ci"))
}

/// `kiln` on another state directory.
fn kiln_at(e: &Env, state: &Path) -> Command {
    let mut c = e.kiln();
    c.env("KILN_STATE_DIR", state);
    c
}

fn import(e: &Env, state: &Path, dir: &Path) -> Output {
    run(kiln_at(e, state).args(["--json", "import"]).arg(dir))
}

fn verify_at(e: &Env, state: &Path, policy: &Path) -> Output {
    run(kiln_at(e, state)
        .args(["--json", "verify", "hello:1.0.0", "--policy"])
        .arg(policy))
}

fn skopeo_digest(reference: &str) -> String {
    let o = run(Command::new("skopeo").args(["inspect", reference]));
    assert!(
        o.status.success(),
        "skopeo inspect {reference}: {}",
        stderr(&o)
    );
    json(&o)["Digest"].as_str().unwrap().to_string()
}

/// Blob names, index.json and staging leftovers of the store in `state`.
fn snapshot(state: &Path) -> Vec<String> {
    let store = state.join("store");
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(store.join("blobs/sha256")) {
        for e in rd {
            v.push(e.unwrap().file_name().to_string_lossy().to_string());
        }
    }
    v.sort();
    if let Ok(idx) = fs::read_to_string(store.join("index.json")) {
        v.push(idx);
    }
    if let Ok(rd) = fs::read_dir(store.join(".kiln/tmp")) {
        for e in rd {
            v.push(format!("leftover staging: {:?}", e.unwrap().file_name()));
        }
    }
    v
}

#[test]
fn export_carries_signatures_and_import_then_verify_passes() {
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    let hex = digest.strip_prefix("sha256:").unwrap();

    // The layout holds the image, its .sig tag and the bundle referrer.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    let sig = format!("hello:sha256-{hex}.sig");
    assert!(refs.contains(&"hello:1.0.0"), "{refs:?}");
    assert!(refs.contains(&sig.as_str()), "{refs:?}");
    assert!(
        !out.join(".kiln").exists(),
        "private area leaked into the export"
    );

    // Fresh state dir: import, then the policy holds there.
    let other = e.path().join("airgap");
    let o = import(&e, &other, &out);
    assert!(o.status.success(), "import: {}", stderr(&o));
    let v = json(&o);
    assert!(!v["untagged"].as_array().unwrap().is_empty(), "{v}");
    let o = verify_at(&e, &other, &policy);
    assert!(
        o.status.success(),
        "verify after import: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let v = json(&o);
    assert_eq!(v["pass"], true);
    assert_eq!(v["digest"], digest.as_str());

    // Exporting again from the imported store gives the same layout index.
    let again = e.path().join("again");
    let o = run(kiln_at(&e, &other)
        .args(["export", &format!("hello@{digest}"), "--out"])
        .arg(&again));
    assert!(o.status.success(), "re-export: {}", stderr(&o));
    assert_eq!(
        fs::read(again.join("index.json")).unwrap(),
        fs::read(out.join("index.json")).unwrap()
    );
}

#[test]
fn skopeo_reads_the_export_and_its_copy_keeps_the_digest() {
    if !have("skopeo") {
        return;
    }
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", out.display())),
        digest
    );
    let copy = e.path().join("copy");
    let o = run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:hello:1.0.0", out.display()),
        &format!("oci:{}:hello:1.0.0", copy.display()),
    ]));
    assert!(o.status.success(), "skopeo copy: {}", stderr(&o));
    assert_eq!(
        skopeo_digest(&format!("oci:{}:hello:1.0.0", copy.display())),
        digest
    );
    // skopeo copies the image, not its signatures: the import is intact, but the
    // signature rule fails there, while the full export passes.
    let other = e.path().join("from-copy");
    let o = import(&e, &other, &copy);
    assert!(o.status.success(), "import copy: {}", stderr(&o));
    let o = verify_at(&e, &other, &policy);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["digest"], digest.as_str());
    assert_eq!(v["verdicts"][0]["rule"], "integrity");
    assert_eq!(v["verdicts"][0]["pass"], true);
    assert_eq!(v["verdicts"][1]["pass"], false);

    let full = e.path().join("from-export");
    assert!(import(&e, &full, &out).status.success());
    assert!(verify_at(&e, &full, &policy).status.success());
}

#[test]
fn import_refuses_a_tampered_export_and_changes_nothing() {
    let e = Env::new();
    let (digest, out, policy) = signed_export(&e);
    let target = e.path().join("target");
    assert!(import(&e, &target, &out).status.success());
    let before = snapshot(&target);

    // Corrupt the image's largest layer in the export (same length).
    let m = manifest(&out, &digest);
    let layer = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = out
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    for state in [target.clone(), e.path().join("fresh")] {
        let o = import(&e, &state, &out);
        assert_eq!(o.status.code(), Some(1), "tampered import succeeded");
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "blob {layer} is corrupt: its content hashes to sha256:"
            )),
            "{err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
    }
    assert_eq!(
        snapshot(&target),
        before,
        "a refused import changed the store"
    );
    assert!(!e.path().join("fresh/store").exists());
    // The earlier, intact import still verifies.
    assert!(verify_at(&e, &target, &policy).status.success());
}
