//! `kiln verify IMAGE --policy trust.toml`: check an image in the store against a trust
//! policy. Every blob is re-hashed first; then each rule gets a verdict. Exit 0 only if all
//! hold. `kiln verify IMAGE --key ci.pub` is the cosign-style check: every blob, and a
//! signature by that key in either form kiln writes (`.sig` simple signing or the Sigstore
//! bundle referrer), with no policy file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_oci::{Descriptor, Digest, ImageManifest, Store};
use kiln_trust::attest::{self, Attestation};
use kiln_trust::cosign::{self, Bundle, SimpleSigning};
use kiln_trust::{Claim, Outcome, Policy, PublicKey, Rule, Tally};
use serde::Serialize;

use super::sign::verify_image_blobs;
use super::{Ctx, print_json, resolve};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("trust").required(true).args(["policy", "key"])))]
pub struct Args {
    /// NAME:TAG, NAME@sha256:<hex> or sha256:<hex>.
    image: String,
    /// The trust policy (trust.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Instead of a policy: a public key (PEM) that must have signed the image, as a cosign
    /// `.sig` or a Sigstore bundle (like `cosign verify --key`).
    #[arg(long)]
    key: Option<PathBuf>,
}

/// What the image was verified against.
enum Trust<'a> {
    Policy(&'a Path),
    Key { path: &'a Path, key_id: String },
}

impl Trust<'_> {
    fn describe(&self) -> String {
        match self {
            Trust::Policy(p) => p.display().to_string(),
            Trust::Key { path, .. } => format!("--key {}", path.display()),
        }
    }
}

/// The public key of `kiln verify --key`.
fn read_public_key(path: &Path) -> Result<PublicKey> {
    let pem = kiln_oci::untrusted::read_small_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("{} is not a public key", path.display()))
}

#[derive(Serialize)]
pub struct Verdict {
    pub rule: String,
    pub pass: bool,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

pub fn run(ctx: &Ctx, a: Args) -> Result<()> {
    let store = ctx.store()?;
    let img = resolve(&store, &a.image)?;
    ctx.touch(super::image_resource(&img));
    let digest = img.descriptor.digest;
    let (policy, trust) = match (&a.policy, &a.key) {
        (Some(p), None) => (Policy::load(p)?, Trust::Policy(p)),
        (None, Some(k)) => {
            let key = read_public_key(k)?;
            let key_id = key.key_id();
            let name = k.display().to_string();
            (
                Policy::single_key(k, &name, key),
                Trust::Key { path: k, key_id },
            )
        }
        _ => bail!("give exactly one of --policy and --key"),
    };
    let verdicts = evaluate_policy(&store, &img, &policy)?;
    record(ctx, &img, &trust, &verdicts)?;
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    if ctx.json {
        let mut out = serde_json::json!({
            "image": img.reference,
            "digest": digest,
            "pass": failed == 0,
            "verdicts": verdicts,
        });
        match &trust {
            Trust::Policy(p) => out["policy"] = serde_json::json!(p),
            Trust::Key { path, key_id } => {
                out["key"] = serde_json::json!({"path": path, "key_id": key_id});
            }
        }
        print_json(&out)?;
    } else {
        for v in &verdicts {
            println!(
                "{}  {}: {}",
                if v.pass { "PASS" } else { "FAIL" },
                v.rule,
                v.reason
            );
            for d in &v.details {
                println!("        - {d}");
            }
        }
    }
    if failed > 0 {
        bail!(
            "{} does not satisfy {}: {failed} of {} rule(s) failed",
            img.reference,
            trust.describe(),
            verdicts.len()
        );
    }
    if !ctx.json {
        println!("verified {digest}");
    }
    Ok(())
}

/// Every verdict for `img` under the policy at `policy_path`: blob integrity first, then
/// each rule of the policy.
pub fn evaluate(
    store: &Store,
    img: &super::Resolved,
    policy_path: &std::path::Path,
) -> Result<Vec<Verdict>> {
    evaluate_policy(store, img, &Policy::load(policy_path)?)
}

/// [`evaluate`] with a loaded policy.
fn evaluate_policy(store: &Store, img: &super::Resolved, policy: &Policy) -> Result<Vec<Verdict>> {
    let digest = img.descriptor.digest;
    let mut verdicts = Vec::new();
    verdicts.push(match verify_image_blobs(store, img) {
        Ok(n) => Verdict {
            rule: "integrity".into(),
            pass: true,
            reason: format!("all {n} blobs (manifest, config, layers) match their digests"),
            details: Vec::new(),
        },
        Err(e) => Verdict {
            rule: "integrity".into(),
            pass: false,
            reason: format!("{e:#}"),
            details: Vec::new(),
        },
    });
    for rule in &policy.rules {
        verdicts.push(match rule {
            Rule::Signature { role } => signature_rule(store, policy, role, &digest)?,
            Rule::Provenance { role } => attestation_rule(
                store,
                policy,
                "provenance",
                role,
                &digest,
                attest::PROVENANCE_PREDICATE_TYPE,
                &|_| Ok(()),
            )?,
            Rule::Approvals { role } => attestation_rule(
                store,
                policy,
                "approvals",
                role,
                &digest,
                attest::APPROVAL_PREDICATE_TYPE,
                &|_| Ok(()),
            )?,
            Rule::Scan {
                role,
                max_age_hours,
            } => attestation_rule(
                store,
                policy,
                "scan",
                role,
                &digest,
                attest::SCAN_PREDICATE_TYPE,
                &|p| scan_predicate_ok(p, *max_age_hours),
            )?,
        });
    }
    Ok(verdicts)
}

/// A scan attestation counts only as [`kiln_trust::policy::check_scan_predicate`] says: a
/// passing gate over a recorded, non-empty advisory set whose newest advisory is recent enough.
fn scan_predicate_ok(
    p: &serde_json::Value,
    max_age_hours: Option<u64>,
) -> std::result::Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    kiln_trust::policy::check_scan_predicate(p, max_age_hours, now).map_err(|e| e.to_string())
}

/// The audit event of a verification: each rule's verdict, failure if any failed.
pub fn record_verdicts(
    ctx: &Ctx,
    img: &super::Resolved,
    policy: &std::path::Path,
    verdicts: &[Verdict],
) -> Result<()> {
    record(ctx, img, &Trust::Policy(policy), verdicts)
}

/// The audit event of a verification against a policy (its file's digest) or a key (its key
/// id, as `kiln key generate` records it).
fn record(ctx: &Ctx, img: &super::Resolved, trust: &Trust, verdicts: &[Verdict]) -> Result<()> {
    let failed = verdicts.iter().filter(|v| !v.pass).count();
    let against = match trust {
        Trust::Policy(policy) => {
            let policy_digest = kiln_oci::untrusted::read_small(policy)
                .map(|b| kiln_oci::Digest::of(&b).to_string())
                .unwrap_or_default();
            kiln_audit::Resource::named("policy", policy_digest, policy.display().to_string())
        }
        Trust::Key { path, key_id } => {
            kiln_audit::Resource::named("key", key_id.clone(), path.display().to_string())
        }
    };
    let mut ev = ctx
        .event("image.verify")
        .resource(super::image_resource(img))
        .resource(against)
        .detail(
            "rules",
            verdicts
                .iter()
                .map(|v| serde_json::json!({"rule": v.rule, "ok": v.pass, "detail": v.reason}))
                .collect::<Vec<_>>(),
        );
    if failed > 0 {
        ev = ev.failed(&format!("{failed} of {} rule(s) failed", verdicts.len()));
    }
    ctx.record(ev)?;
    Ok(())
}

/// The manifests tagged `tag` (under any name), each with a `name:tag` label; unreadable
/// ones are reported in `notes` as `what` manifests and skipped.
fn tagged_manifests(
    store: &Store,
    tag: &str,
    what: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, ImageManifest)>> {
    let mut out = Vec::new();
    for t in store.images()?.into_iter().filter(|t| t.tag == tag) {
        let src = format!("{}:{}", t.name, t.tag);
        match store
            .read_descriptor(&t.descriptor)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(ImageManifest::from_bytes(&b, &src)?))
        {
            Ok(m) => out.push((src, m)),
            Err(e) => notes.push(format!("{src}: unreadable {what} manifest: {e:#}")),
        }
    }
    Ok(out)
}

/// Signatures of `digest` found in the store, as claims; problems with malformed ones go to
/// `notes`. Returns (legacy claims, bundle claims).
fn collect_claims(
    store: &Store,
    digest: &Digest,
    notes: &mut Vec<String>,
) -> Result<(Vec<Claim>, Vec<Claim>)> {
    let sig_tag = cosign::signature_tag(digest);
    let mut legacy = Vec::new();
    for (src, manifest) in tagged_manifests(store, &sig_tag, "signature", notes)? {
        for (i, l) in manifest.layers.iter().enumerate() {
            let source = format!("{src} layer {i}");
            let sl = match cosign::read_signature_layer(i, l) {
                Ok(s) => s,
                Err(e) => {
                    notes.push(format!("{src}: {e}"));
                    continue;
                }
            };
            let payload = match store.read_descriptor(&sl.descriptor) {
                Ok(p) => p,
                Err(e) => {
                    notes.push(format!("{source}: payload: {e}"));
                    continue;
                }
            };
            let parsed = match SimpleSigning::parse(&payload) {
                Ok(p) => p,
                Err(e) => {
                    notes.push(format!("{source}: {e}"));
                    continue;
                }
            };
            legacy.push(Claim {
                source,
                message: payload,
                signature: sl.signature,
                digests: vec![parsed.manifest_digest],
            });
        }
    }
    let mut bundles = Vec::new();
    for (d, m) in store.referrers(digest)? {
        if m.artifact_type.as_deref() != Some(cosign::BUNDLE_MEDIA_TYPE) {
            continue;
        }
        let src = format!("bundle {}", d.digest);
        let Some(layer) = m.layers.first() else {
            notes.push(format!("{src}: no layer"));
            continue;
        };
        let bundle = match store
            .read_descriptor(layer)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(Bundle::from_json(&b)?))
        {
            Ok(b) => b,
            Err(e) => {
                notes.push(format!("{src}: {e:#}"));
                continue;
            }
        };
        // An attestation in a bundle (provenance, approval, scan) is not a signature of
        // the image: the attestation rules read it.
        match bundle.is_image_signature() {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                notes.push(format!("{src}: {e}"));
                continue;
            }
        }
        let digests = match bundle.signed_digests() {
            Ok(d) => d,
            Err(e) => {
                notes.push(format!("{src}: {e}"));
                continue;
            }
        };
        let pae = bundle.dsse_envelope.pae();
        for (j, s) in bundle.dsse_envelope.signatures.iter().enumerate() {
            bundles.push(Claim {
                source: format!("{src} signature {j}"),
                message: pae.clone(),
                signature: s.sig.clone(),
                digests: digests.clone(),
            });
        }
    }
    Ok((legacy, bundles))
}

fn signature_rule(store: &Store, policy: &Policy, role: &str, digest: &Digest) -> Result<Verdict> {
    let mut notes = Vec::new();
    let (legacy, bundles) = collect_claims(store, digest, &mut notes)?;
    let n_legacy = legacy.len();
    let claims: Vec<Claim> = legacy.into_iter().chain(bundles).collect();
    let tally = policy.tally(role, digest, &claims);
    let counted = |range: std::ops::Range<usize>| {
        let mut keys: Vec<&str> = Vec::new();
        for r in &tally.results[range] {
            if let Outcome::Counted { key } | Outcome::AlreadyCounted { key, .. } = &r.outcome
                && !keys.contains(&key.as_str())
            {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join(", ")
        }
    };
    let via = format!(
        ".sig: {}; bundle: {}",
        counted(0..n_legacy),
        counted(n_legacy..tally.results.len())
    );
    let signers = if tally.signers.is_empty() {
        "none".to_owned()
    } else {
        tally.signers.join(", ")
    };
    let mut reason = format!(
        "role {role}: {} of {} required distinct key(s) signed {digest} (keys: {signers}; via {via})",
        tally.signers.len(),
        tally.threshold
    );
    let problems: Vec<String> = tally
        .results
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Counted { .. }))
        .map(|r| r.to_string())
        .chain(notes)
        .collect();
    if claims.is_empty() && problems.is_empty() {
        reason.push_str("; no signatures found");
    }
    Ok(verdict(
        format!("signature ({role})"),
        &tally,
        reason,
        problems,
    ))
}

/// Where an attestation's envelope is stored: a DSSE envelope blob (referrer or `.att`
/// layer) or a Sigstore bundle blob (referrer) holding the envelope.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EnvelopeBlob {
    Dsse,
    Bundle,
}

/// DSSE envelopes with predicate type `predicate_type` attached to `digest` (DSSE
/// referrers, Sigstore bundle referrers and the cosign `.att` manifest), one claim per
/// signature. kiln stores each attestation in all three forms: each blob is read once, and
/// an envelope found in several forms (same statement, same signatures; the keyid, which
/// a bundle leaves empty, is not signed and not compared) counts once.
fn collect_attestations(
    store: &Store,
    digest: &Digest,
    predicate_type: &str,
    predicate_ok: &dyn Fn(&serde_json::Value) -> std::result::Result<(), String>,
    notes: &mut Vec<String>,
) -> Result<(usize, Vec<Claim>)> {
    let mut layers: Vec<(String, Descriptor, EnvelopeBlob)> = Vec::new();
    for (d, m) in store.referrers(digest)? {
        let (what, kind) = match m.artifact_type.as_deref() {
            Some(attest::DSSE_MEDIA_TYPE) => ("referrer", EnvelopeBlob::Dsse),
            Some(cosign::BUNDLE_MEDIA_TYPE) => ("bundle", EnvelopeBlob::Bundle),
            _ => continue,
        };
        match (m.layers.as_slice(), kind) {
            ([], _) => notes.push(format!("{what} {}: no layer", d.digest)),
            (ls, EnvelopeBlob::Dsse) => {
                for (i, l) in ls.iter().enumerate() {
                    let src = format!("referrer {} layer {i}", d.digest);
                    layers.push((src, l.clone(), EnvelopeBlob::Dsse));
                }
            }
            // A bundle referrer holds one bundle (as cosign reads it).
            ([l], EnvelopeBlob::Bundle) => {
                layers.push((
                    format!("bundle {}", d.digest),
                    l.clone(),
                    EnvelopeBlob::Bundle,
                ));
            }
            (ls, EnvelopeBlob::Bundle) => notes.push(format!(
                "bundle {}: {} layers, expected one",
                d.digest,
                ls.len()
            )),
        }
    }
    let att_tag = attest::attestation_tag(digest);
    for (src, manifest) in tagged_manifests(store, &att_tag, "attestation", notes)? {
        for (i, l) in manifest.layers.iter().enumerate() {
            if l.media_type == attest::DSSE_MEDIA_TYPE {
                layers.push((format!("{src} layer {i}"), l.clone(), EnvelopeBlob::Dsse));
            }
        }
    }
    // A blob is read once per way it is presented: a bundle referrer naming
    // an envelope's blob must not hide the valid envelope itself.
    let mut seen_blobs: Vec<(Digest, EnvelopeBlob)> = Vec::new();
    // (PAE, signatures) of each envelope already taken.
    let mut seen_envelopes: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    let mut envelopes = 0;
    let mut claims = Vec::new();
    for (src, l, kind) in layers {
        if seen_blobs.contains(&(l.digest, kind)) {
            continue;
        }
        seen_blobs.push((l.digest, kind));
        let bytes = match store.read_descriptor(&l) {
            Ok(b) => b,
            Err(e) => {
                let what = match kind {
                    EnvelopeBlob::Dsse => "envelope",
                    EnvelopeBlob::Bundle => "bundle",
                };
                notes.push(format!("{src}: {what}: {e}"));
                continue;
            }
        };
        let parsed = match kind {
            EnvelopeBlob::Dsse => Attestation::parse(&src, &bytes).map_err(|e| e.to_string()),
            EnvelopeBlob::Bundle => Bundle::from_json(&bytes)
                .map_err(|e| format!("{src}: {e}"))
                .and_then(|b| {
                    Attestation::from_envelope(&src, b.dsse_envelope).map_err(|e| e.to_string())
                }),
        };
        let a = match parsed {
            Ok(a) => a,
            Err(e) => {
                notes.push(e);
                continue;
            }
        };
        if a.statement.predicate_type != predicate_type {
            if let Some(why) = kiln_trust::policy::superseded_predicate(
                &a.statement.predicate_type,
                predicate_type,
            ) {
                notes.push(format!("{src}: {why}"));
            }
            continue;
        }
        let pae = a.envelope.pae();
        let mut sigs: Vec<Vec<u8>> = a
            .envelope
            .signatures
            .iter()
            .map(|s| s.sig.clone())
            .collect();
        sigs.sort();
        let identity = (pae.clone(), sigs);
        if seen_envelopes.contains(&identity) {
            continue;
        }
        seen_envelopes.push(identity);
        envelopes += 1;
        if let Err(why) = predicate_ok(&a.statement.predicate) {
            notes.push(format!("{src}: {why}"));
            continue;
        }
        for (j, sig) in a.envelope.signatures.iter().enumerate() {
            let keyid = if sig.keyid.is_empty() {
                "<empty keyid>".to_owned()
            } else {
                sig.keyid.chars().take(16).collect()
            };
            claims.push(Claim {
                source: format!("{src} signature {j} (keyid {keyid})"),
                message: pae.clone(),
                signature: sig.sig.clone(),
                digests: a.digests.clone(),
            });
        }
    }
    Ok((envelopes, claims))
}

fn attestation_rule(
    store: &Store,
    policy: &Policy,
    kind: &str,
    role: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate_ok: &dyn Fn(&serde_json::Value) -> std::result::Result<(), String>,
) -> Result<Verdict> {
    let mut notes = Vec::new();
    let (envelopes, claims) =
        collect_attestations(store, digest, predicate_type, predicate_ok, &mut notes)?;
    let tally = policy.tally(role, digest, &claims);
    let signers = if tally.signers.is_empty() {
        "none".to_owned()
    } else {
        tally.signers.join(", ")
    };
    let mut reason = format!(
        "role {role}: {} of {} required distinct key(s) signed {kind} for {digest} (keys: {signers}; {envelopes} {predicate_type} envelope(s))",
        tally.signers.len(),
        tally.threshold
    );
    let problems: Vec<String> = tally
        .results
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Counted { .. }))
        .map(|r| match r.outcome {
            Outcome::NoRoleKey => format!(
                "{}: unknown key: the signature does not verify with any key of role {role}",
                r.source
            ),
            Outcome::AlreadyCounted { .. } => format!("{r} (counted twice: ignored)"),
            _ => r.to_string(),
        })
        .chain(notes)
        .collect();
    if claims.is_empty() {
        reason.push_str(&format!("; missing: no valid {kind} attestation found"));
    }
    Ok(verdict(
        format!("{kind} ({role})"),
        &tally,
        reason,
        problems,
    ))
}

/// A rule's verdict from its tally: on failure the reason also lists the
/// problems; the details list what counted, then the problems.
fn verdict(rule: String, tally: &Tally, mut reason: String, problems: Vec<String>) -> Verdict {
    if !tally.passed() && !problems.is_empty() {
        reason.push_str("; ");
        reason.push_str(&problems.join("; "));
    }
    Verdict {
        rule,
        pass: tally.passed(),
        reason,
        details: tally
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Counted { .. }))
            .map(|r| r.to_string())
            .chain(problems)
            .collect(),
    }
}
