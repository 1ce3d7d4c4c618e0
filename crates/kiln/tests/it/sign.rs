//! `kiln sign` and `kiln verify`: cosign-compatible signatures checked against a trust
//! policy, openssl interop, and tampering caught with a precise message.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_oci::{ImageManifest, ImageRef, Store};

use crate::support::*;

const SIG_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

fn sign(e: &Env, image: &str, key: &Path) -> Output {
    run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "sign", image, "--key"])
        .arg(key))
}

fn sign_ok(e: &Env, image: &str, key: &Path) -> serde_json::Value {
    let o = sign(e, image, key);
    assert!(o.status.success(), "sign failed: {}", stderr(&o));
    json(&o)
}

/// trust.toml with `keys` (name = file stem) in one role `builder` of `threshold`.
fn policy(e: &Env, keys: &[&str], threshold: usize) -> PathBuf {
    let mut t = String::from("[keys]\n");
    for k in keys {
        t.push_str(&format!("{k} = \"{k}.pub\"\n"));
    }
    let list: Vec<String> = keys.iter().map(|k| format!("{k:?}")).collect();
    t.push_str(&format!(
        "\n[roles.builder]\nkeys = [{}]\nthreshold = {threshold}\n\n[require]\nsignature = \"builder\"\n",
        list.join(", ")
    ));
    let p = e.path().join("trust.toml");
    fs::write(&p, t).unwrap();
    p
}

fn verify(e: &Env, image: &str, policy: &Path, as_json: bool) -> Output {
    let mut c = e.kiln();
    if as_json {
        c.arg("--json");
    }
    c.args(["verify", image, "--policy"]).arg(policy);
    run(&mut c)
}

/// Verify must fail with exit 1 and mention every needle (stdout or stderr).
fn assert_rejected(o: &Output, needles: &[&str]) {
    let all = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(o));
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{all}");
    for n in needles {
        assert!(all.contains(n), "missing {n:?} in:\n{all}");
    }
}

fn store(e: &Env) -> Store {
    Store::open(e.store()).unwrap()
}

fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap())
}

/// The `.sig` manifest of `image` (NAME:TAG of the signature manifest).
fn sig_manifest(s: &Store, reference: &str) -> ImageManifest {
    let d = s.resolve(&ImageRef::parse(reference).unwrap()).unwrap();
    ImageManifest::from_bytes(&s.read_descriptor(&d).unwrap(), reference).unwrap()
}

/// Drop every Sigstore bundle referrer from index.json, to test the .sig path alone.
fn drop_bundles(s: &Store) {
    let bundles: Vec<_> = s
        .index()
        .unwrap()
        .manifests
        .into_iter()
        .filter(|d| d.artifact_type.as_deref() == Some(BUNDLE))
        .map(|d| d.digest)
        .collect();
    assert!(!bundles.is_empty());
    s.update_index(|idx| {
        idx.manifests.retain(|d| !bundles.contains(&d.digest));
        Ok(())
    })
    .unwrap();
}

#[test]
fn sign_then_verify_passes() {
    let e = Env::new();
    let digest = e.build(&[]);
    let key = keygen(&e, "ci");
    let r = sign_ok(&e, "hello:1.0.0", &key);
    assert_eq!(r["digest"], digest.as_str());
    assert_eq!(r["signature"]["tag"], format!("hello:{}", sig_tag(&digest)));
    let p = policy(&e, &["ci"], 1);

    let o = verify(&e, "hello:1.0.0", &p, true);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let v = json(&o);
    assert_eq!(v["pass"], true);
    let verdicts = v["verdicts"].as_array().unwrap();
    assert_eq!(verdicts[0]["rule"], "integrity");
    assert_eq!(verdicts[1]["pass"], true);
    let reason = verdicts[1]["reason"].as_str().unwrap();
    assert!(reason.contains("1 of 1"), "{reason}");
    assert!(reason.contains(".sig: ci; bundle: ci"), "{reason}");
    // Human output: one verdict per rule.
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("PASS  integrity") && out.contains("PASS  signature"),
        "{out}"
    );

    // The legacy .sig manifest: payload layer + base64 annotation; config lists diff_ids.
    let s = store(&e);
    let m = sig_manifest(&s, &format!("hello:{}", sig_tag(&digest)));
    assert_eq!(m.layers.len(), 1);
    let layer = &m.layers[0];
    assert_eq!(
        layer.media_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = s.read_descriptor(layer).unwrap();
    let pj: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(pj["critical"]["identity"]["docker-reference"], "hello");
    assert_eq!(
        pj["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(pj["critical"]["type"], "cosign container image signature");
    let cfg: serde_json::Value =
        serde_json::from_slice(&s.read_descriptor(&m.config).unwrap()).unwrap();
    assert_eq!(cfg["rootfs"]["diff_ids"][0], layer.digest.to_string());

    // The Sigstore bundle referrer.
    let refs = s.referrers(&digest.parse().unwrap()).unwrap();
    let (_, bm) = refs
        .iter()
        .find(|(_, m)| m.artifact_type.as_deref() == Some(BUNDLE))
        .expect("bundle referrer");
    assert_eq!(bm.config.media_type, "application/vnd.oci.empty.v1+json");
    assert_eq!(
        bm.annotations["dev.sigstore.bundle.content"],
        "dsse-envelope"
    );
    assert_eq!(
        bm.annotations["dev.sigstore.bundle.predicateType"],
        "https://sigstore.dev/cosign/sign/v1"
    );
    let bundle: serde_json::Value =
        serde_json::from_slice(&s.read_descriptor(&bm.layers[0]).unwrap()).unwrap();
    assert_eq!(bundle["mediaType"], BUNDLE);
    assert!(bundle["verificationMaterial"]["publicKey"]["hint"].is_string());
    assert!(bundle["dsseEnvelope"]["signatures"][0]["sig"].is_string());

    // Signing again with the same key is idempotent; another key merges a second layer
    // into the same .sig manifest.
    let r = sign_ok(&e, "hello:1.0.0", &key);
    assert_eq!(r["signature"]["signatures"], 1);
    let ops = keygen(&e, "ops");
    let r = sign_ok(&e, "hello:1.0.0", &ops);
    assert_eq!(r["signature"]["signatures"], 2);
    assert_eq!(
        sig_manifest(&s, &format!("hello:{}", sig_tag(&digest)))
            .layers
            .len(),
        2
    );

    // Either source suffices: without the .sig tag, the bundle alone passes.
    let sig_ref = format!("hello:{}", sig_tag(&digest));
    s.update_index(|idx| {
        idx.manifests
            .retain(|d| d.annotations.get("org.opencontainers.image.ref.name") != Some(&sig_ref));
        Ok(())
    })
    .unwrap();
    let o = verify(&e, "hello:1.0.0", &p, true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let v = json(&o);
    let reason = v["verdicts"][1]["reason"].as_str().unwrap();
    assert!(reason.contains(".sig: none; bundle: ci"), "{reason}");
}

/// openssl accepts the simple-signing signature over the exact payload bytes, and skopeo
/// reads the signature manifest (and its config) from the layout.
#[test]
#[ignore = "needs openssl and skopeo"]
fn openssl_and_skopeo_read_kilns_signature() {
    require("openssl");
    require("skopeo");
    let e = Env::new();
    let digest = e.build(&[]);
    let key = keygen(&e, "ci");
    sign_ok(&e, "hello:1.0.0", &key);
    let ops = keygen(&e, "ops");
    sign_ok(&e, "hello:1.0.0", &ops);
    let s = store(&e);
    let m = sig_manifest(&s, &format!("hello:{}", sig_tag(&digest)));
    let layer = &m.layers[0];
    let payload = s.read_descriptor(layer).unwrap();

    // openssl accepts the simple-signing signature over the exact payload bytes.
    {
        let dir = e.path();
        fs::write(dir.join("payload.json"), &payload).unwrap();
        fs::write(
            dir.join("sig.b64"),
            layer.annotations[SIG_ANNOTATION].as_bytes(),
        )
        .unwrap();
        let o = run(Command::new("openssl")
            .args(["base64", "-d", "-A", "-in"])
            .arg(dir.join("sig.b64"))
            .arg("-out")
            .arg(dir.join("sig.der")));
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(dir.join("ci.pub"))
            .arg("-signature")
            .arg(dir.join("sig.der"))
            .arg(dir.join("payload.json")));
        assert!(
            o.status.success(),
            "openssl rejected kiln's signature: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("Verified OK"));
    }

    // skopeo reads the signature manifest (and its config) from the layout.
    {
        let o = run(Command::new("skopeo").arg("inspect").arg(format!(
            "oci:{}:hello:{}",
            e.store().display(),
            sig_tag(&digest)
        )));
        assert!(o.status.success(), "{}", stderr(&o));
        let v = json(&o);
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2), "{v}");
        assert_eq!(v["Layers"][0], layer.digest.to_string());
    }
}

#[test]
fn unsigned_image_fails_verification() {
    let e = Env::new();
    e.build(&[]);
    keygen(&e, "ci");
    let p = policy(&e, &["ci"], 1);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(&o, &["FAIL  signature", "0 of 1", "no signatures found"]);
}

#[test]
fn a_changed_layer_byte_is_caught_by_verify_and_sign() {
    let e = Env::new();
    e.build(&[]);
    let key = keygen(&e, "ci");
    sign_ok(&e, "hello:1.0.0", &key);
    let p = policy(&e, &["ci"], 1);
    let s = store(&e);
    let img = s.resolve(&ImageRef::parse("hello:1.0.0").unwrap()).unwrap();
    let m = ImageManifest::from_bytes(&s.read_descriptor(&img).unwrap(), "m").unwrap();
    let layer = m.layers.last().unwrap();
    let path = s.blob_path(&layer.digest);
    set_mode(&path, 0o644);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(
        &o,
        &[
            "FAIL  integrity",
            &format!("blob {} is corrupt", layer.digest),
        ],
    );
    let o = sign(&e, "hello:1.0.0", &key);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is corrupt"), "{}", stderr(&o));
}

#[test]
fn a_signature_from_a_key_not_in_the_policy_is_rejected() {
    let e = Env::new();
    e.build(&[]);
    keygen(&e, "ci");
    let other = keygen(&e, "intruder");
    sign_ok(&e, "hello:1.0.0", &other);
    let p = policy(&e, &["ci"], 1);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(
        &o,
        &[
            "FAIL  signature",
            "0 of 1",
            "layer 0: signature does not verify with any key of the role",
            "signature 0: signature does not verify with any key of the role",
        ],
    );
}

#[test]
fn one_key_never_counts_twice_toward_a_threshold() {
    let e = Env::new();
    let digest = e.build(&[]);
    let ci = keygen(&e, "ci");
    keygen(&e, "ops");
    // Signed twice by ci (the .sig layer and the bundle; re-signing adds nothing new).
    sign_ok(&e, "hello:1.0.0", &ci);
    sign_ok(&e, "hello:1.0.0", &ci);
    let p = policy(&e, &["ci", "ops"], 2);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(&o, &["1 of 2", "key ci already counted"]);
    // Two policy names for the same key material count once too.
    fs::copy(e.path().join("ci.pub"), e.path().join("ci2.pub")).unwrap();
    let p = policy(&e, &["ci", "ci2"], 2);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(&o, &["1 of 2", "already counted"]);
    // A .sig manifest that repeats ci's layer (and no bundle) still counts ci once.
    let s = store(&e);
    drop_bundles(&s);
    let tag = sig_tag(&digest);
    let mut m = sig_manifest(&s, &format!("hello:{tag}"));
    assert_eq!(m.layers.len(), 1);
    m.layers.push(m.layers[0].clone());
    let mut st = s.staging().unwrap();
    let d = st
        .put("application/vnd.oci.image.manifest.v1+json", &m.to_bytes())
        .unwrap();
    st.commit().unwrap();
    s.tag("hello", &tag, &d).unwrap();
    let p = policy(&e, &["ci", "ops"], 2);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(&o, &["1 of 2", "layer 1: key ci already counted"]);
    // A second, distinct key meets the threshold.
    let ops = e.path().join("ops.key");
    sign_ok(&e, "hello:1.0.0", &ops);
    let p = policy(&e, &["ci", "ops"], 2);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn a_signature_for_another_digest_is_rejected() {
    let e = Env::new();
    let a = e.build(&[]);
    let key = keygen(&e, "ci");
    sign_ok(&e, "hello:1.0.0", &key);
    e.write_spec(
        &e.spec_text()
            .replace("tag = \"1.0.0\"", "tag = \"2.0.0\"")
            .replace("LOG_LEVEL = \"info\"", "LOG_LEVEL = \"debug\""),
    );
    let b = e.build(&[]);
    assert_ne!(a, b);
    // Make A's signature manifest be found as B's.
    let s = store(&e);
    let a_sig = s
        .resolve(&ImageRef::parse(&format!("hello:{}", sig_tag(&a))).unwrap())
        .unwrap();
    s.tag("hello", &sig_tag(&b), &a_sig).unwrap();
    let p = policy(&e, &["ci"], 1);
    let o = verify(&e, "hello:2.0.0", &p, false);
    assert_rejected(
        &o,
        &[
            "0 of 1",
            &format!("signature by key ci is for {a}, not this image"),
        ],
    );
    // Likewise A's Sigstore bundle re-attached as a referrer of B.
    let a_d: kiln_oci::Digest = a.parse().unwrap();
    let b_desc = s.resolve(&ImageRef::parse("hello:2.0.0").unwrap()).unwrap();
    let (_, mut bm) = s
        .referrers(&a_d)
        .unwrap()
        .into_iter()
        .find(|(_, m)| m.artifact_type.as_deref() == Some(BUNDLE))
        .expect("bundle of A");
    bm.subject = Some(kiln_oci::Descriptor::new(
        &b_desc.media_type,
        b_desc.digest,
        b_desc.size,
    ));
    let mut st = s.staging().unwrap();
    let mut d = st
        .put("application/vnd.oci.image.manifest.v1+json", &bm.to_bytes())
        .unwrap();
    st.commit().unwrap();
    d.artifact_type = Some(BUNDLE.into());
    s.add_untagged(&[d]).unwrap();
    let o = verify(&e, "hello:2.0.0", &p, false);
    assert_rejected(
        &o,
        &[
            "0 of 1",
            "layer 0: signature by key ci is for",
            "signature 0: signature by key ci is for",
        ],
    );
    // A itself still verifies.
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert!(o.status.success());
}

#[test]
fn wrong_base64_in_the_signature_annotation_is_reported() {
    let e = Env::new();
    let digest = e.build(&[]);
    let key = keygen(&e, "ci");
    sign_ok(&e, "hello:1.0.0", &key);
    let s = store(&e);
    drop_bundles(&s);
    let p = policy(&e, &["ci"], 1);
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert!(o.status.success(), "the .sig alone verifies");

    let tag = sig_tag(&digest);
    let mut m = sig_manifest(&s, &format!("hello:{tag}"));
    m.layers[0]
        .annotations
        .insert(SIG_ANNOTATION.into(), "MEUCIQ*not-base64*".into());
    let mut st = s.staging().unwrap();
    let d = st
        .put("application/vnd.oci.image.manifest.v1+json", &m.to_bytes())
        .unwrap();
    st.commit().unwrap();
    s.tag("hello", &tag, &d).unwrap();
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_rejected(
        &o,
        &[
            "0 of 1",
            "signature layer 0",
            "annotation dev.cosignproject.cosign/signature is not valid base64",
        ],
    );
}

#[test]
fn a_malformed_trust_toml_is_located_by_file_line_and_column() {
    let e = Env::new();
    e.build(&[]);
    keygen(&e, "ci");
    let p = e.path().join("trust.toml");
    fs::write(
        &p,
        "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\nthresold = 2\n\n[require]\nsignature = \"builder\"\n",
    )
    .unwrap();
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:7:1:", p.display())), "{err}");
    assert!(err.contains("unknown field `thresold`"), "{err}");

    fs::write(
        &p,
        "[keys]\nci = \"ci.pub\"\n\n[roles.builder]\nkeys = [\"ci\", \"ops\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n",
    )
    .unwrap();
    let o = verify(&e, "hello:1.0.0", &p, false);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:5:15:", p.display())), "{err}");
    assert!(err.contains("unknown key \"ops\""), "{err}");
}

#[test]
fn a_config_swapped_for_another_images_is_caught() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    let a = e.build(&[]);
    sign_ok(&e, "hello:1.0.0", &key);
    // A second, different image in the same store.
    fs::write(e.spec_dir().join("www/index.html"), "<h1>other</h1>\n").unwrap();
    let b = e.build(&["--tag", "hello:2.0.0"]);
    let p = policy(&e, &["ci"], 1);
    assert!(verify(&e, "hello:1.0.0", &p, false).status.success());
    // The attacker writes a manifest for hello:1.0.0 that keeps its layers
    // but uses the other image's config (other env, labels, diff_ids), adds
    // it to the store as a valid blob, and re-points the tag at it.
    let s = store(&e);
    let a_ref = ImageRef::parse(&format!("hello@{a}")).unwrap();
    let b_ref = ImageRef::parse(&format!("hello@{b}")).unwrap();
    let ma = ImageManifest::from_bytes(
        &s.read_descriptor(&s.resolve(&a_ref).unwrap()).unwrap(),
        "a",
    )
    .unwrap();
    let mb = ImageManifest::from_bytes(
        &s.read_descriptor(&s.resolve(&b_ref).unwrap()).unwrap(),
        "b",
    )
    .unwrap();
    let mut forged = ma.clone();
    forged.config = mb.config.clone();
    let mut st = s.staging().unwrap();
    let fd = st
        .put(kiln_oci::media::MANIFEST, &forged.to_bytes())
        .unwrap();
    st.commit().unwrap();
    s.tag("hello", "1.0.0", &fd).unwrap();
    let o = verify(&e, "hello:1.0.0", &p, false);
    // Every blob is intact, but no signature is for this manifest digest.
    assert_rejected(&o, &["signature", "0 of 1"]);
}
