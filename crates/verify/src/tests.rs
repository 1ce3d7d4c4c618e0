//! The engine against a real store in a temporary directory: one image, keys from
//! `kiln-trust`, signatures and attestations written as `kiln sign` / `kiln approve` write
//! them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_oci::{Digest, ImageConfig, ImageManifest, Resolved, RootFs, Store, media};
use kiln_trust::attest::{APPROVAL_PREDICATE_TYPE, SCAN_PREDICATE_TYPE};
use kiln_trust::{KeyAlgorithm, Policy, PrivateKey, Statement, Subject};
use serde_json::json;

use super::*;

/// A store with `hello:1.0` (one layer), in a temporary directory that also holds the
/// public keys `ci.pub`, `ops.pub` and `eve.pub`.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    img: Resolved,
    ci: PrivateKey,
    ops: PrivateKey,
    eve: PrivateKey,
}

/// A fixed evaluation time: 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path().join("store")).unwrap();
        let mut st = store.staging().unwrap();
        let layer = st.put(media::LAYER_TAR, b"not really a tar").unwrap();
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![layer.digest],
            },
            ..Default::default()
        };
        let config = st.put(media::CONFIG, &config.to_bytes()).unwrap();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            artifact_type: None,
            config,
            layers: vec![layer],
            subject: None,
            annotations: Default::default(),
        };
        let m = st.put(media::MANIFEST, &manifest.to_bytes()).unwrap();
        st.commit().unwrap();
        store.tag("hello", "1.0", &m).unwrap();
        let img = resolve(&store, "hello:1.0").unwrap();
        let key = |name: &str, alg| {
            let k = PrivateKey::generate(alg).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}.pub")),
                k.public_key().to_pem(),
            )
            .unwrap();
            k
        };
        let ci = key("ci", KeyAlgorithm::EcdsaP256Sha256);
        let ops = key("ops", KeyAlgorithm::Ed25519);
        let eve = key("eve", KeyAlgorithm::EcdsaP256Sha256);
        Fixture {
            dir,
            store,
            img,
            ci,
            ops,
            eve,
        }
    }

    /// A policy: `[keys]` ci, ops (and `extra_keys`), role `builder` with `keys` and
    /// `threshold`, and the `require` lines.
    fn policy(&self, extra_keys: &str, keys: &str, threshold: usize, require: &str) -> Policy {
        let text = format!(
            "[keys]\nci = \"ci.pub\"\nops = \"ops.pub\"\n{extra_keys}\n[roles.builder]\nkeys = [{keys}]\nthreshold = {threshold}\n\n[require]\n{require}\n"
        );
        let path = self.dir.path().join("trust.toml");
        std::fs::write(&path, &text).unwrap();
        Policy::load(&path).unwrap()
    }

    fn sign(&self, key: &PrivateKey) {
        let (_, pending) =
            kiln_trust::store::stage_signature(&self.store, "hello", &self.img.descriptor, key)
                .unwrap();
        pending.apply(&self.store).unwrap();
    }

    fn attest(&self, key: &PrivateKey, predicate_type: &str, predicate: serde_json::Value) {
        let st = Statement::new(
            vec![Subject::sha256("hello", self.img.descriptor.digest.hex())],
            predicate_type,
            predicate,
        );
        let env = st.sign(&[key]);
        let (_, pending) = kiln_trust::store::stage_attestation(
            &self.store,
            "hello",
            &self.img.descriptor,
            &env,
            &key.public_key(),
            predicate_type,
        )
        .unwrap();
        pending.apply(&self.store).unwrap();
    }

    fn evaluate(&self, policy: &Policy) -> Report {
        evaluate(&self.store, &self.img, policy, now()).unwrap()
    }
}

fn kinds(r: &RuleResult) -> Vec<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn a_signature_by_a_role_key_passes_in_both_forms() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "signature = \"builder\"");
    let unsigned = f.evaluate(&p);
    assert!(unsigned.integrity.pass, "{}", unsigned.integrity.reason);
    assert_eq!(unsigned.integrity.blobs, 3);
    let r = &unsigned.rules[0];
    assert!(!r.pass);
    assert_eq!((r.kind, r.required, r.found), (RuleKind::Signature, 1, 0));
    assert!(r.reason.ends_with("; no signatures found"), "{}", r.reason);
    assert!(!unsigned.passed());

    f.sign(&f.ci);
    let report = f.evaluate(&p);
    let r = &report.rules[0];
    assert!(r.pass, "{}", r.reason);
    // The .sig layer and the bundle: two signatures, one key.
    assert_eq!(r.found, 2);
    assert_eq!(r.counted_keys, ["ci"]);
    assert!(
        r.reason.contains("via .sig: ci; bundle: ci"),
        "{}",
        r.reason
    );
    assert_eq!(kinds(r), [ProblemKind::AlreadyCounted]);
    assert!(report.passed());
    let v = report.verdicts();
    assert_eq!(v[0].rule, "integrity");
    assert_eq!(v[1].rule, "signature (builder)");
    assert!(
        v[1].details[0].ends_with("valid signature by key ci"),
        "{v:?}"
    );
}

#[test]
fn k_of_n_counts_distinct_keys_once() {
    let f = Fixture::new();
    // ci2 is ci's key under another name: still one key.
    let p = f.policy(
        "ci2 = \"ci.pub\"\n",
        "\"ci\", \"ci2\", \"ops\"",
        2,
        "signature = \"builder\"",
    );
    f.sign(&f.ci);
    f.sign(&f.ci);
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    assert_eq!(r.counted_keys, ["ci"]);
    assert!(
        r.reason.starts_with("role builder: 1 of 2 required"),
        "{}",
        r.reason
    );
    f.sign(&f.ops);
    let r = &f.evaluate(&p).rules[0];
    assert!(r.pass, "{}", r.reason);
    assert_eq!(r.counted_keys, ["ci", "ops"]);
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "signature = \"builder\"");
    f.sign(&f.eve);
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    assert!(r.counted_keys.is_empty());
    assert_eq!(kinds(r), [ProblemKind::UnknownKey, ProblemKind::UnknownKey]);
    assert!(
        r.reason
            .contains("layer 0: signature does not verify with any key of the role"),
        "{}",
        r.reason
    );
}

#[test]
fn a_forged_signature_annotation_does_not_verify() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "signature = \"builder\"");
    // ci's real signature, then the .sig layer's signature replaced by one over other bytes.
    let digest = f.img.descriptor.digest;
    let payload = kiln_trust::SimpleSigning::new("hello", digest).to_bytes();
    let mut st = f.store.staging().unwrap();
    st.put(kiln_trust::cosign::SIMPLESIGNING_MEDIA_TYPE, &payload)
        .unwrap();
    let forged = kiln_trust::cosign::signature_layer(&payload, &f.ci.sign(b"something else"));
    let layers = vec![forged];
    let config = st
        .put(
            media::CONFIG,
            &kiln_trust::cosign::signature_config(&layers),
        )
        .unwrap();
    let m = kiln_trust::cosign::signature_manifest(config, layers);
    let d = st.put(media::MANIFEST, &m.to_bytes()).unwrap();
    st.commit().unwrap();
    f.store
        .tag("hello", &kiln_trust::cosign::signature_tag(&digest), &d)
        .unwrap();
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    assert_eq!(r.found, 1);
    assert_eq!(kinds(r), [ProblemKind::UnknownKey]);
}

#[test]
fn a_missing_attestation_fails_with_missing() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "provenance = \"builder\"");
    f.sign(&f.ci);
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    assert_eq!((r.kind, r.found), (RuleKind::Provenance, 0));
    assert!(
        r.reason
            .ends_with("; missing: no valid provenance attestation found"),
        "{}",
        r.reason
    );
}

#[test]
fn an_attestation_in_three_forms_counts_once() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\", \"ops\"", 2, "approvals = \"builder\"");
    f.attest(&f.ci, APPROVAL_PREDICATE_TYPE, json!({"reason": "ok"}));
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    // A DSSE referrer, a bundle referrer and an .att layer: one envelope, one claim.
    assert_eq!(r.found, 1);
    assert_eq!(r.counted_keys, ["ci"]);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(
        r.reason
            .contains(&format!("1 {APPROVAL_PREDICATE_TYPE} envelope(s)")),
        "{}",
        r.reason
    );
    f.attest(&f.ops, APPROVAL_PREDICATE_TYPE, json!({"reason": "ok too"}));
    let r = &f.evaluate(&p).rules[0];
    assert!(r.pass, "{}", r.reason);
    assert_eq!(r.found, 2);
}

#[test]
fn an_attestation_by_an_outsider_is_an_unknown_key() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "approvals = \"builder\"");
    f.attest(
        &f.eve,
        APPROVAL_PREDICATE_TYPE,
        json!({"reason": "trust me"}),
    );
    let r = &f.evaluate(&p).rules[0];
    assert!(!r.pass);
    assert_eq!(kinds(r), [ProblemKind::UnknownKey]);
    assert!(r.reason.contains("unknown key"), "{}", r.reason);
}

/// A passing scan predicate whose newest advisory was modified at `newest` (Unix seconds).
fn scan_predicate(newest: u64) -> serde_json::Value {
    json!({
        "advisories": {
            "digest": Digest::of(b"advisories").to_string(),
            "count": 3,
            "newest_modified": kiln_oci::time::rfc3339(newest),
        },
        "result": {"pass": true, "reasons": []},
    })
}

#[test]
fn the_scan_rule_judges_advisory_age_at_the_time_given() {
    let f = Fixture::new();
    let p = f.policy(
        "",
        "\"ci\"",
        1,
        "scan = \"builder\"\nscan_max_age_hours = 24",
    );
    f.attest(&f.ci, SCAN_PREDICATE_TYPE, scan_predicate(NOW - 3600));
    assert!(f.evaluate(&p).rules[0].pass);
    // The same store two days later: the data is too old.
    let later = now() + Duration::from_secs(48 * 3600);
    let r = &evaluate(&f.store, &f.img, &p, later).unwrap().rules[0];
    assert!(!r.pass);
    assert_eq!(r.found, 1);
    assert_eq!(kinds(r), [ProblemKind::Rejected]);
    assert!(
        r.reason.contains("re-scan with current advisories"),
        "{}",
        r.reason
    );
}

#[test]
fn a_corrupt_layer_fails_integrity() {
    let f = Fixture::new();
    let p = f.policy("", "\"ci\"", 1, "signature = \"builder\"");
    f.sign(&f.ci);
    let layer = &f.img.manifest.layers[0];
    let path = f.store.blob_path(&layer.digest);
    std::fs::write(&path, b"not really a taR").unwrap();
    let report = f.evaluate(&p);
    assert!(!report.integrity.pass);
    // Manifest and config matched first.
    assert_eq!(report.integrity.blobs, 2);
    assert!(
        report
            .integrity
            .reason
            .starts_with("image hello:1.0 is not intact: blob sha256:"),
        "{}",
        report.integrity.reason
    );
    // The rules are still judged; the report fails on integrity alone.
    assert!(report.rules[0].pass);
    assert_eq!(report.failed(), 1);
}

struct Events;

impl kiln_audit::Recorder for Events {
    fn event(&self, action: &str) -> kiln_audit::Event {
        kiln_audit::Event::new(action, "kiln test")
    }
    fn record(&self, _: kiln_audit::Event) -> Result<u64, kiln_audit::AuditError> {
        Ok(0)
    }
}

#[test]
fn the_audit_event_lists_each_verdict() {
    let f = Fixture::new();
    let p = f.policy(
        "",
        "\"ci\"",
        1,
        "signature = \"builder\"\napprovals = \"builder\"",
    );
    f.sign(&f.ci);
    let report = f.evaluate(&p);
    let policy = f.dir.path().join("trust.toml");
    let ev = report.audit_event(&Events, policy_resource(&policy));
    assert_eq!(ev.action, "image.verify");
    assert_eq!(ev.outcome, kiln_audit::Outcome::Failure);
    assert_eq!(ev.resources[0].id, f.img.descriptor.digest.to_string());
    assert_eq!(ev.resources[0].name.as_deref(), Some("hello:1.0"));
    let text = std::fs::read(&policy).unwrap();
    assert_eq!(ev.resources[1].id, Digest::of(&text).to_string());
    let rules = ev.details["rules"].as_array().unwrap();
    let oks: Vec<bool> = rules.iter().map(|r| r["ok"] == true).collect();
    assert_eq!(oks, [true, true, false]);
    assert_eq!(rules[2]["rule"], "approvals (builder)");
}

#[test]
fn a_source_is_object_safe_and_resolves_references() {
    let f = Fixture::new();
    let s: &dyn Source = &f.store;
    let by_digest = resolve(s, &f.img.descriptor.digest.to_string()).unwrap();
    assert_eq!(by_digest.descriptor.digest, f.img.descriptor.digest);
    assert!(matches!(
        resolve(s, "hello:2.0"),
        Err(ResolveError::Source(SourceError::Oci(
            kiln_oci::OciError::UnknownImage(_)
        )))
    ));
}
