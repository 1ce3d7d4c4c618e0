//! `kiln build --sign-key` (SLSA provenance), `kiln approve`, the `provenance` and
//! `approvals` policy rules, and securesystemslib interop for the DSSE envelopes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_oci::{Descriptor, Digest, Store};

use crate::support::*;

const DSSE: &str = "application/vnd.dsse.envelope.v1+json";
const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const PROVENANCE: &str = "https://slsa.dev/provenance/v1";
const APPROVAL: &str = "https://kiln.dev/approval/v1";

fn build_signed(e: &Env, key: &Path) -> serde_json::Value {
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "build", "-f"])
        .arg(e.spec())
        .arg("--sign-key")
        .arg(key));
    assert!(o.status.success(), "build failed: {}", stderr(&o));
    json(&o)
}

fn approve(e: &Env, image: &str, key: &Path, reason: &str) -> Output {
    run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["--json", "approve", image, "--key"])
        .arg(key)
        .args(["--reason", reason]))
}

fn approve_ok(e: &Env, image: &str, key: &Path) -> serde_json::Value {
    let o = approve(e, image, key, "CHG-1234 reviewed");
    assert!(o.status.success(), "approve failed: {}", stderr(&o));
    json(&o)
}

/// trust.toml: `builder` = [ci] threshold 1, `reviewers` = reviewers with `threshold`,
/// and the given `[require]` lines.
fn policy(e: &Env, reviewers: &[&str], threshold: usize, require: &str) -> PathBuf {
    let mut t = String::from("[keys]\nci = \"ci.pub\"\n");
    for k in reviewers {
        t.push_str(&format!("{k} = \"{k}.pub\"\n"));
    }
    t.push_str("\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n");
    if !reviewers.is_empty() {
        let list: Vec<String> = reviewers.iter().map(|k| format!("{k:?}")).collect();
        t.push_str(&format!(
            "\n[roles.reviewers]\nkeys = [{}]\nthreshold = {threshold}\n",
            list.join(", ")
        ));
    }
    t.push_str(&format!("\n[require]\n{require}\n"));
    let p = e.path().join("trust.toml");
    fs::write(&p, t).unwrap();
    p
}

fn verify(e: &Env, image: &str, policy: &Path) -> Output {
    run(e.kiln().args(["verify", image, "--policy"]).arg(policy))
}

fn all_output(o: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(o))
}

fn assert_passes(o: &Output) {
    assert!(o.status.success(), "expected success:\n{}", all_output(o));
}

fn assert_rejected(o: &Output, needles: &[&str]) {
    let all = all_output(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1:\n{all}");
    for n in needles {
        assert!(all.contains(n), "missing {n:?} in:\n{all}");
    }
}

fn store(e: &Env) -> Store {
    Store::open(e.store()).unwrap()
}

/// The DSSE envelopes (bytes) attached to `digest` as referrers with `predicate_type`.
fn envelopes(e: &Env, digest: &str, predicate_type: &str) -> Vec<(Descriptor, Vec<u8>)> {
    let s = store(e);
    let d: Digest = digest.parse().unwrap();
    s.referrers(&d)
        .unwrap()
        .into_iter()
        .filter(|(_, m)| {
            m.artifact_type.as_deref() == Some(DSSE)
                && m.annotations
                    .get("in-toto.io/predicate-type")
                    .map(String::as_str)
                    == Some(predicate_type)
        })
        .map(|(d, m)| (d, s.read_descriptor(&m.layers[0]).unwrap()))
        .collect()
}

/// The Sigstore bundles (bytes) attached to `digest` as referrers with `predicate_type`.
fn bundles(e: &Env, digest: &str, predicate_type: &str) -> Vec<(Descriptor, Vec<u8>)> {
    let s = store(e);
    let d: Digest = digest.parse().unwrap();
    s.referrers(&d)
        .unwrap()
        .into_iter()
        .filter(|(_, m)| {
            m.artifact_type.as_deref() == Some(BUNDLE)
                && m.annotations
                    .get("dev.sigstore.bundle.predicateType")
                    .map(String::as_str)
                    == Some(predicate_type)
        })
        .map(|(d, m)| {
            assert_eq!(m.layers.len(), 1);
            assert_eq!(m.layers[0].media_type, BUNDLE);
            assert_eq!(
                m.annotations["dev.sigstore.bundle.content"],
                "dsse-envelope"
            );
            (d, s.read_descriptor(&m.layers[0]).unwrap())
        })
        .collect()
}

/// The DSSE envelope of bundle bytes, checked to be the envelope `dsse` with an empty keyid,
/// the key named by the hint, and `tlogEntries: []`.
fn check_bundle_holds(bundle: &[u8], dsse: &[u8], key: &Path) {
    let b: serde_json::Value = serde_json::from_slice(bundle).unwrap();
    let env: serde_json::Value = serde_json::from_slice(dsse).unwrap();
    assert_eq!(b["mediaType"], BUNDLE);
    assert_eq!(
        b["verificationMaterial"]["tlogEntries"],
        serde_json::json!([])
    );
    let pem = fs::read_to_string(key.with_extension("pub")).unwrap();
    let public = kiln_trust::PublicKey::from_pem(&pem).unwrap();
    assert_eq!(
        b["verificationMaterial"]["publicKey"]["hint"],
        public.hint()
    );
    let be = &b["dsseEnvelope"];
    assert_eq!(be["payloadType"], env["payloadType"]);
    assert_eq!(be["payload"], env["payload"]);
    assert_eq!(be["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(be["signatures"][0]["sig"], env["signatures"][0]["sig"]);
    assert_eq!(be["signatures"][0]["keyid"], "");
}

fn statement(envelope: &[u8]) -> serde_json::Value {
    use base64::Engine;
    let env: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// The key id `kiln approve` records as `approver` for the key pair of `key`.
fn approve_key_id(key: &Path) -> serde_json::Value {
    let pem = fs::read_to_string(key.with_extension("pub")).unwrap();
    kiln_trust::PublicKey::from_pem(&pem)
        .unwrap()
        .key_id()
        .into()
}

fn sha256_file(p: &Path) -> String {
    Digest::of(&fs::read(p).unwrap()).hex()
}

#[test]
fn build_with_sign_key_attaches_provenance_that_verifies() {
    let e = Env::new();
    let key = keygen(&e, "ci");
    let unsigned = e.build(&[]);
    let r = build_signed(&e, &key);
    let digest = r["digest"].as_str().unwrap().to_owned();
    // Provenance is not part of the image.
    assert_eq!(digest, unsigned);
    assert!(r["provenance"]["referrer"].is_string(), "{r}");
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(
        r["provenance"]["attestation_tag"],
        format!("hello:sha256-{hex}.att")
    );

    let p = policy(&e, &[], 1, "provenance = \"builder\"");
    let o = verify(&e, "hello:1.0.0", &p);
    assert_passes(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("PASS  provenance (builder)"), "{out}");

    // The statement: subject, predicate type, every input with its digest.
    let envs = envelopes(&e, &digest, PROVENANCE);
    assert_eq!(envs.len(), 1);
    // The same envelope as a Sigstore bundle referrer (what cosign 2.6 reads).
    let bs = bundles(&e, &digest, PROVENANCE);
    assert_eq!(bs.len(), 1);
    assert_eq!(r["provenance"]["bundle"], bs[0].0.digest.to_string());
    check_bundle_holds(&bs[0].1, &envs[0].1, &key);
    let st = statement(&envs[0].1);
    assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(st["predicateType"], PROVENANCE);
    assert_eq!(st["subject"][0]["name"], "hello");
    assert_eq!(st["subject"][0]["digest"]["sha256"], hex);
    let pred = &st["predicate"];
    assert_eq!(
        pred["buildDefinition"]["buildType"],
        "https://kiln.dev/build/v1"
    );
    let ext = &pred["buildDefinition"]["externalParameters"];
    assert_eq!(ext["spec"], "kiln.toml");
    assert_eq!(ext["name"], "hello");
    assert_eq!(ext["tag"], "1.0.0");
    assert!(ext["compression"].as_str().unwrap().contains("gzip"));
    assert!(pred["buildDefinition"]["internalParameters"]["epoch"].is_u64());
    let deps = pred["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let dep = |uri: &str| -> &serde_json::Value {
        deps.iter()
            .find(|d| d["uri"] == uri)
            .unwrap_or_else(|| panic!("no dependency {uri} in {deps:?}"))
    };
    let sd = e.spec_dir();
    assert_eq!(
        dep("file:kiln.toml")["digest"]["sha256"],
        sha256_file(&e.spec())
    );
    assert_eq!(
        dep("file:bin/busybox")["digest"]["sha256"],
        sha256_file(&sd.join("bin/busybox"))
    );
    assert_eq!(dep("file:www")["annotations"]["kind"], "directory");
    assert_eq!(
        dep("file:debs/hello-config_1.0-1_all.deb")["digest"]["sha256"],
        sha256_file(&sd.join("debs/hello-config_1.0-1_all.deb"))
    );
    let kiln = deps
        .iter()
        .find(|d| d["name"] == "kiln")
        .expect("kiln version dependency");
    assert!(kiln["uri"].as_str().unwrap().starts_with("pkg:cargo/kiln@"));
    assert_eq!(
        kiln["digest"]["sha256"],
        sha256_file(Path::new(env!("CARGO_BIN_EXE_kiln")))
    );
    // The compressor is a parameter (internalParameters), not a dependency; every
    // dependency has a digest from the in-toto set (the example has no odd file names).
    assert!(
        pred["buildDefinition"]["internalParameters"]["compressor"]["description"]
            .as_str()
            .unwrap()
            .contains("gzip")
    );
    for d in deps {
        assert_ne!(d["annotations"]["kind"], "compressor", "{d}");
        let dg = d["digest"].as_object().unwrap();
        match d["annotations"]["kind"].as_str() {
            Some("directory") => assert_eq!(dg["dirHash"].as_str().unwrap().len(), 64, "{d}"),
            _ => assert_eq!(dg["sha256"].as_str().unwrap().len(), 64, "{d}"),
        }
    }
    let run = &pred["runDetails"];
    assert_eq!(run["builder"]["id"], "https://kiln.dev/builder/local");
    let md = &run["metadata"];
    assert!(
        md["invocationId"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    for f in ["startedOn", "finishedOn"] {
        let t = md[f].as_str().unwrap();
        assert!(t.len() == 27 && t.ends_with('Z') && t > "2024", "{f} = {t}");
    }
    assert!(
        run["byproducts"][0]["annotations"]["note"]
            .as_str()
            .unwrap()
            .contains("maintainer scripts were not run")
    );

    // Also as cosign's .att manifest layer.
    let s = store(&e);
    let att = s
        .resolve(&kiln_oci::ImageRef::parse(&format!("hello:sha256-{hex}.att")).unwrap())
        .unwrap();
    let m = kiln_oci::ImageManifest::from_bytes(&s.read_descriptor(&att).unwrap(), "att").unwrap();
    assert_eq!(m.layers[0].media_type, DSSE);
    assert_eq!(m.layers[0].annotations["predicateType"], PROVENANCE);

    // A rebuild yields a new invocation id, same image digest.
    let r2 = build_signed(&e, &key);
    assert_eq!(r2["digest"], digest.as_str());
    let envs = envelopes(&e, &digest, PROVENANCE);
    assert_eq!(envs.len(), 2);
    let ids: Vec<String> = envs
        .iter()
        .map(|(_, b)| {
            statement(b)["predicate"]["runDetails"]["metadata"]["invocationId"].to_string()
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn provenance_rule_fails_without_provenance_or_with_an_unknown_key() {
    let e = Env::new();
    let _ci = keygen(&e, "ci");
    let rogue = keygen(&e, "rogue");
    e.build(&[]);
    let p = policy(&e, &[], 1, "provenance = \"builder\"");
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["FAIL  provenance (builder)", "missing"]);
    build_signed(&e, &rogue);
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["0 of 1", "unknown key"]);
}

#[test]
fn approvals_two_of_three_need_two_distinct_keys() {
    let e = Env::new();
    keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let bob = keygen(&e, "bob");
    keygen(&e, "carol");
    let digest = e.build(&[]);
    let p = policy(
        &e,
        &["alice", "bob", "carol"],
        2,
        "approvals = \"reviewers\"",
    );
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["FAIL  approvals (reviewers)", "0 of 2", "missing"]);

    let a = approve_ok(&e, "hello:1.0.0", &alice);
    assert_eq!(a["digest"], digest.as_str());
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["1 of 2"]);
    // Each approval is stored as a DSSE referrer, a Sigstore bundle and an .att layer:
    // one envelope, counted once.
    let out = all_output(&o);
    assert!(
        out.contains(&format!("1 {APPROVAL} envelope(s)")) && !out.contains("counted twice"),
        "{out}"
    );
    // The same key approving twice still counts once.
    approve_ok(&e, "hello:1.0.0", &alice);
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["1 of 2", "counted twice"]);
    let out = all_output(&o);
    assert!(out.contains(&format!("2 {APPROVAL} envelope(s)")), "{out}");
    // Listed in the reason and in the details: one duplicate, not three.
    assert_eq!(out.matches("counted twice").count(), 2, "{out}");

    approve_ok(&e, "hello:1.0.0", &bob);
    let o = verify(&e, "hello:1.0.0", &p);
    assert_passes(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 of 2"));

    // The approval statement.
    let envs = envelopes(&e, &digest, APPROVAL);
    assert_eq!(envs.len(), 3);
    let bs = bundles(&e, &digest, APPROVAL);
    assert_eq!(bs.len(), 3);
    for (_, b) in &bs {
        let be: serde_json::Value = serde_json::from_slice(b).unwrap();
        let matching = envs
            .iter()
            .find(|(_, env)| {
                serde_json::from_slice::<serde_json::Value>(env).unwrap()["payload"]
                    == be["dsseEnvelope"]["payload"]
            })
            .expect("a DSSE envelope for each bundle");
        let approver = if statement(&matching.1)["predicate"]["approver"] == approve_key_id(&bob) {
            &bob
        } else {
            &alice
        };
        check_bundle_holds(b, &matching.1, approver);
    }
    let st = statement(&envs[0].1);
    assert_eq!(st["predicateType"], APPROVAL);
    assert_eq!(
        st["subject"][0]["digest"]["sha256"],
        digest.strip_prefix("sha256:").unwrap()
    );
    assert_eq!(st["predicate"]["reason"], "CHG-1234 reviewed");
    assert_eq!(st["predicate"]["approver"].as_str().unwrap().len(), 64);
    assert!(st["predicate"]["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn approve_requires_a_non_empty_reason() {
    let e = Env::new();
    let alice = keygen(&e, "alice");
    e.build(&[]);
    for reason in ["", "   "] {
        let o = approve(&e, "hello:1.0.0", &alice, reason);
        assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
        assert!(stderr(&o).contains("--reason"), "{}", stderr(&o));
    }
    let o = run(e
        .kiln()
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .args(["approve", "hello:1.0.0", "--key"])
        .arg(&alice));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--reason"), "{}", stderr(&o));
}

/// Re-attach the referrer manifest `rm` (of another image) as a referrer of `to`.
fn reattach(s: &Store, rm: &Descriptor, to: &Descriptor) {
    let mut m = kiln_oci::ImageManifest::from_bytes(&s.read_descriptor(rm).unwrap(), "rm").unwrap();
    m.subject = Some(Descriptor::new(&to.media_type, to.digest, to.size));
    let mut st = s.staging().unwrap();
    let mut d = st
        .put("application/vnd.oci.image.manifest.v1+json", &m.to_bytes())
        .unwrap();
    st.commit().unwrap();
    d.artifact_type = Some(DSSE.into());
    s.add_untagged(&[d]).unwrap();
}

#[test]
fn an_approval_for_another_digest_does_not_count() {
    let e = Env::new();
    keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let bob = keygen(&e, "bob");
    let a = e.build(&[]);
    approve_ok(&e, "hello:1.0.0", &alice);
    approve_ok(&e, "hello:1.0.0", &bob);
    e.write_spec(
        &e.spec_text()
            .replace("tag = \"1.0.0\"", "tag = \"2.0.0\"")
            .replace("LOG_LEVEL = \"info\"", "LOG_LEVEL = \"debug\""),
    );
    let b = e.build(&[]);
    assert_ne!(a, b);
    let p = policy(&e, &["alice", "bob"], 1, "approvals = \"reviewers\"");
    let o = verify(&e, "hello:2.0.0", &p);
    assert_rejected(&o, &["0 of 1", "missing"]);
    // A's approval re-attached to B: found, but for the wrong digest.
    let s = store(&e);
    let b_desc = s
        .resolve(&kiln_oci::ImageRef::parse("hello:2.0.0").unwrap())
        .unwrap();
    let (rm, _) = envelopes(&e, &a, APPROVAL).remove(0);
    reattach(&s, &rm, &b_desc);
    let o = verify(&e, "hello:2.0.0", &p);
    assert_rejected(&o, &["0 of 1", &format!("is for {a}, not this image")]);
    assert_passes(&verify(&e, "hello:1.0.0", &p));
}

#[test]
fn truncated_envelopes_and_wrong_base64_are_reported() {
    let e = Env::new();
    keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let a = e.build(&[]);
    approve_ok(&e, "hello:1.0.0", &alice);
    let p = policy(&e, &["alice"], 1, "approvals = \"reviewers\"");
    assert_passes(&verify(&e, "hello:1.0.0", &p));
    let s = store(&e);
    let (_, bytes) = envelopes(&e, &a, APPROVAL).remove(0);
    // Overwrite the envelope blob in place (the referrer and .att layer both point at it).
    let d = Digest::of(&bytes);
    let path = e.store().join("blobs/sha256").join(d.hex());
    let text = String::from_utf8(bytes.clone()).unwrap();
    set_mode(&path, 0o644);
    fs::write(&path, &text[..text.len() / 2]).unwrap();
    // The same approval in its Sigstore bundle still counts; the corrupt copy is reported.
    let o = verify(&e, "hello:1.0.0", &p);
    assert_passes(&o);
    let all = all_output(&o);
    assert!(all.contains("is corrupt"), "{all}");
    // With the bundle corrupt too, nothing counts.
    let bundles = bundles(&e, &a, APPROVAL);
    assert_eq!(bundles.len(), 1);
    let bundle_path = e
        .store()
        .join("blobs/sha256")
        .join(Digest::of(&bundles[0].1).hex());
    set_mode(&bundle_path, 0o644);
    fs::write(&bundle_path, &bundles[0].1[..bundles[0].1.len() / 2]).unwrap();
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["0 of 1"]);
    let all = all_output(&o);
    assert!(all.matches("is corrupt").count() >= 2, "{all}");
    // A truncated envelope stored under its own digest: reported as truncated JSON.
    let att = |bytes: &[u8]| {
        let mut st = s.staging().unwrap();
        let env = st.put(DSSE, bytes).unwrap();
        st.put("application/vnd.oci.empty.v1+json", b"{}").unwrap();
        let subject = s
            .resolve(&kiln_oci::ImageRef::parse("hello:1.0.0").unwrap())
            .unwrap();
        let m = kiln_oci::ImageManifest {
            schema_version: 2,
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            artifact_type: Some(DSSE.into()),
            config: Descriptor::empty(),
            layers: vec![env],
            subject: Some(Descriptor::new(
                &subject.media_type,
                subject.digest,
                subject.size,
            )),
            annotations: [("in-toto.io/predicate-type".to_owned(), APPROVAL.to_owned())].into(),
        };
        let mut d = st
            .put("application/vnd.oci.image.manifest.v1+json", &m.to_bytes())
            .unwrap();
        st.commit().unwrap();
        d.artifact_type = Some(DSSE.into());
        s.add_untagged(&[d]).unwrap();
    };
    att(&text.as_bytes()[..text.len() / 2]);
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["malformed envelope JSON"]);
    // A truncated bundle under its own digest: named as a bundle.
    {
        let b = &bundles[0].1;
        let mut st = s.staging().unwrap();
        let blob = st.put(BUNDLE, &b[..b.len() / 2]).unwrap();
        let m = kiln_trust::cosign::attestation_bundle_manifest(
            blob,
            &s.resolve(&kiln_oci::ImageRef::parse("hello:1.0.0").unwrap())
                .unwrap(),
            APPROVAL,
        );
        let mut d = st
            .put("application/vnd.oci.image.manifest.v1+json", &m.to_bytes())
            .unwrap();
        st.commit().unwrap();
        d.artifact_type = Some(BUNDLE.into());
        s.add_untagged(&[d]).unwrap();
    }
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["invalid Sigstore bundle: malformed JSON"]);
    let bad = text.replacen("\"sig\":\"", "\"sig\":\"%%", 1);
    att(bad.as_bytes());
    let o = verify(&e, "hello:1.0.0", &p);
    assert_rejected(&o, &["invalid base64 in signatures[0].sig"]);
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Panics unless python3 with securesystemslib is available.
fn require_sslib() {
    let ok = Command::new(python())
        .args(["-c", "import securesystemslib.dsse, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 with securesystemslib is not available (scripts/install-deps.sh)"
    );
}

/// securesystemslib's verdict on `envelope` with `threshold` of `pubs`: Ok(accepted key ids).
fn sslib_verify(
    e: &Env,
    envelope: &[u8],
    threshold: usize,
    pubs: &[&str],
) -> Result<String, String> {
    let path = e.path().join("envelope.json");
    fs::write(&path, envelope).unwrap();
    let script = repo().join("crates/kiln/tests/it/sslib_verify.py");
    let mut c = Command::new(python());
    c.arg(&script).arg(&path).arg(threshold.to_string());
    for p in pubs {
        c.arg(e.path().join(format!("{p}.pub")));
    }
    let o = run(&mut c);
    let out = all_output(&o);
    match o.status.code() {
        Some(0) => Ok(out),
        Some(3) => Err(out),
        _ => panic!("sslib_verify.py failed:\n{out}"),
    }
}

#[test]
#[ignore = "needs python3 with securesystemslib"]
fn securesystemslib_verifies_provenance_and_approvals_with_thresholds() {
    require_sslib();
    let e = Env::new();
    let ci = keygen(&e, "ci");
    let alice = keygen(&e, "alice");
    let bob = keygen(&e, "bob");
    keygen(&e, "carol");
    let r = build_signed(&e, &ci);
    let digest = r["digest"].as_str().unwrap().to_owned();
    let (_, prov) = envelopes(&e, &digest, PROVENANCE).remove(0);
    let ok = sslib_verify(&e, &prov, 1, &["ci"]).expect("provenance verifies");
    assert!(ok.contains(PROVENANCE), "{ok}");
    assert!(sslib_verify(&e, &prov, 1, &["alice"]).is_err());

    let reviewers = ["alice", "bob", "carol"];
    approve_ok(&e, "hello:1.0.0", &alice);
    let envs = envelopes(&e, &digest, APPROVAL);
    assert_eq!(envs.len(), 1);
    let one = &envs[0].1;
    sslib_verify(&e, one, 1, &reviewers).expect("alice's approval verifies");
    // 2-of-3 with only one approval: securesystemslib rejects it, and so does kiln.
    let err = sslib_verify(&e, one, 2, &reviewers).unwrap_err();
    assert!(err.contains("VerificationError"), "{err}");
    let p = policy(&e, &reviewers, 2, "approvals = \"reviewers\"");
    assert_rejected(&verify(&e, "hello:1.0.0", &p), &["1 of 2"]);
    // Two distinct approvers: each envelope verifies in securesystemslib and kiln passes.
    approve_ok(&e, "hello:1.0.0", &bob);
    let envs = envelopes(&e, &digest, APPROVAL);
    assert_eq!(envs.len(), 2);
    let mut accepted = Vec::new();
    for (_, env) in &envs {
        let out = sslib_verify(&e, env, 1, &reviewers).expect("approval verifies");
        accepted.push(out.lines().next().unwrap_or("").to_owned());
    }
    assert_ne!(accepted[0], accepted[1], "two distinct approver keys");
    assert_passes(&verify(&e, "hello:1.0.0", &p));
    // A tampered payload fails in securesystemslib too.
    let mut v: serde_json::Value = serde_json::from_slice(&envs[0].1).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(v["payload"].as_str().unwrap()).unwrap();
    let n = payload.len();
    payload[n - 3] ^= 1;
    v["payload"] = b64.encode(&payload).into();
    let tampered = serde_json::to_vec(&v).unwrap();
    assert!(sslib_verify(&e, &tampered, 1, &reviewers).is_err());
}
