//! `kiln verify IMAGE --key ci.pub`: cosign-style verification without a policy file:
//! every blob, and a signature by that key in either form kiln writes.

use std::fs;
use std::path::Path;
use std::process::Output;

use kiln_oci::{ImageManifest, ImageRef, Store};

use crate::support::*;

fn verify_key(e: &Env, image: &str, key: &Path, as_json: bool) -> Output {
    let mut c = e.kiln();
    if as_json {
        c.arg("--json");
    }
    c.args(["verify", image, "--key"]).arg(key);
    run(&mut c)
}

fn sign(e: &Env, image: &str, key: &Path) {
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["sign", image, "--key"])
        .arg(key));
    assert!(o.status.success(), "{}", stderr(&o));
}

fn out(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

/// The key id `kiln key generate` printed for `pub_path` (sha256 of the SPKI).
fn key_id(pub_path: &Path) -> String {
    let pem = fs::read_to_string(pub_path).unwrap();
    kiln_trust::PublicKey::from_pem(&pem).unwrap().key_id()
}

#[test]
fn verify_key_passes_on_a_signed_image_and_records_the_key() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    let pubkey = key.with_extension("pub");
    let digest = e.build(&[]);
    // Unsigned: refused.
    let o = verify_key(&e, "hello:1.0.0", &pubkey, false);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("no signatures found"), "{}", out(&o));
    sign(&e, "hello:1.0.0", &key);
    let o = verify_key(&e, "hello:1.0.0", &pubkey, false);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("PASS  integrity"), "{text}");
    // Both forms kiln writes count for the key.
    assert!(
        text.contains(".sig: ") && text.contains("bundle: "),
        "{text}"
    );
    assert!(text.contains(&format!("verified {digest}")), "{text}");
    // JSON like the policy path, naming the key instead of a policy.
    let o = verify_key(&e, "hello:1.0.0", &pubkey, true);
    assert!(o.status.success(), "{}", out(&o));
    let j = json(&o);
    assert_eq!(j["pass"], true);
    assert_eq!(j["digest"], digest);
    assert_eq!(j["key"]["key_id"], key_id(&pubkey));
    assert!(j.get("policy").is_none(), "{j}");
    let rules: Vec<&str> = j["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(rules[0], "integrity");
    assert!(rules[1].starts_with("signature"), "{rules:?}");
    // The audit event names the key by its id, as `kiln key generate` does.
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "image.verify"]));
    let events = json(&o);
    let last = &events.as_array().unwrap().last().unwrap()["event"];
    let res = last["resources"].as_array().unwrap();
    assert!(
        res.iter()
            .any(|r| r["kind"] == "key" && r["id"] == key_id(&pubkey)),
        "{last}"
    );
    let o = run(e
        .kiln()
        .args(["--json", "log", "show", "--action", "key.generate"]));
    let generated = &json(&o)[0]["event"];
    assert_eq!(generated["resources"][0]["id"], key_id(&pubkey));
}

#[test]
fn verify_key_fails_with_another_key_each_signature_form_counts_alone() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    let other = keygen(&e, "other");
    e.build(&[]);
    sign(&e, "hello:1.0.0", &key);
    let o = verify_key(&e, "hello:1.0.0", &other.with_extension("pub"), false);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("FAIL  signature"), "{}", out(&o));
    assert!(out(&o).contains("does not verify"), "{}", out(&o));

    // Only the Sigstore bundle referrer left (the .sig tag removed): still verified.
    let store = Store::open(e.store()).unwrap();
    let img = store
        .resolve(&ImageRef::parse("hello:1.0.0").unwrap())
        .unwrap();
    let sig_tag = format!("sha256-{}.sig", img.digest.hex());
    let index = fs::read_to_string(e.store().join("index.json")).unwrap();
    let mut idx: serde_json::Value = serde_json::from_str(&index).unwrap();
    idx["manifests"].as_array_mut().unwrap().retain(|m| {
        m["annotations"]["org.opencontainers.image.ref.name"] != format!("hello:{sig_tag}")
    });
    fs::write(e.store().join("index.json"), idx.to_string()).unwrap();
    let o = verify_key(&e, "hello:1.0.0", &key.with_extension("pub"), false);
    assert!(o.status.success(), "bundle only: {}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(".sig: none; bundle: "),
        "{}",
        out(&o)
    );
    // And only the .sig (bundle referrers dropped): verified too.
    fs::write(e.store().join("index.json"), &index).unwrap();
    let mut idx: serde_json::Value = serde_json::from_str(&index).unwrap();
    idx["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["artifactType"] != "application/vnd.dev.sigstore.bundle.v0.3+json");
    fs::write(e.store().join("index.json"), idx.to_string()).unwrap();
    let o = verify_key(&e, "hello:1.0.0", &key.with_extension("pub"), false);
    assert!(o.status.success(), ".sig only: {}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("; bundle: none"),
        "{}",
        out(&o)
    );
}

#[test]
fn verify_key_fails_when_one_blob_byte_changes() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    sign(&e, "hello:1.0.0", &key);
    let store = Store::open(e.store()).unwrap();
    let d = store
        .resolve(&ImageRef::parse("hello:1.0.0").unwrap())
        .unwrap();
    let m = ImageManifest::from_bytes(&store.read_descriptor(&d).unwrap(), "m").unwrap();
    let layer = e
        .store()
        .join("blobs/sha256")
        .join(m.layers[0].digest.hex());
    let mut bytes = fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    set_mode(&layer, 0o644);
    fs::write(&layer, &bytes).unwrap();
    let o = verify_key(&e, "hello:1.0.0", &key.with_extension("pub"), false);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("FAIL  integrity"), "{}", out(&o));
}

#[test]
fn verify_needs_exactly_one_of_policy_and_key() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    e.build(&[]);
    let policy = e.path().join("trust.toml");
    fs::write(
        &policy,
        "[keys]\nci = \"ci.pub\"\n[roles.b]\nkeys = [\"ci\"]\nthreshold = 1\n[require]\nsignature = \"b\"\n",
    )
    .unwrap();
    let o = run(e.kiln().args(["verify", "hello:1.0.0"]));
    assert_eq!(o.status.code(), Some(2), "neither: {}", out(&o));
    assert!(stderr(&o).contains("--policy") && stderr(&o).contains("--key"));
    let o = run(e
        .kiln()
        .args(["verify", "hello:1.0.0", "--policy"])
        .arg(&policy)
        .arg("--key")
        .arg(key.with_extension("pub")));
    assert_eq!(o.status.code(), Some(2), "both: {}", out(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    // A private key, or anything else that is not a public key, is a clear error.
    let o = verify_key(&e, "hello:1.0.0", &key, false);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(stderr(&o).contains("is not a public key"), "{}", stderr(&o));
}
