//! Finding, reading and admitting the signed envelopes a rule counts: one path for every
//! rule, from blobs to claims.
//!
//! 1. **Locate**: walk the places the rule's evidence is stored. Image signatures are
//!    layers of the cosign `.sig` manifest and Sigstore bundle referrers; attestations
//!    are DSSE referrers, Sigstore bundle referrers and layers of the cosign `.att`
//!    manifest. Each place yields a blob to read, or a problem (a manifest without
//!    layers, a malformed signature annotation).
//! 2. **Open**: read each blob through the [`Source`] (size and digest checked) and parse
//!    it into what was signed, the signatures, and the image digests it claims to be
//!    about. A bundle that is not what the rule wants (an attestation, for the signature
//!    rule) is passed over.
//! 3. **Admit**: an attestation counts only with the rule's predicate type and a
//!    predicate the rule accepts; one stored in several forms (same statement, same
//!    signatures) counts once. Each signature of an admitted envelope becomes a
//!    [`Claim`] for [`kiln_trust::Policy::tally`].
//!
//! Problems keep the order they were met in, except that an attestation rule lists
//! problems locating envelopes before problems reading them.

use kiln_oci::{Descriptor, Digest, ImageManifest};
use kiln_trust::attest::{self, Attestation};
use kiln_trust::cosign::{self, Bundle, SimpleSigning};
use kiln_trust::{Claim, Envelope};

use crate::report::{Problem, ProblemKind};
use crate::source::{Source, SourceError, chain};

/// A check of an attestation's predicate: `Err` says why it does not count.
/// Why a predicate does not satisfy its rule (each rule has its own error type).
pub(crate) type PredicateError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type PredicateCheck<'a> = &'a dyn Fn(&serde_json::Value) -> Result<(), PredicateError>;

/// What a rule counts.
pub(crate) enum Wanted<'a> {
    /// Signatures of the image itself.
    ImageSignature,
    /// Attestations with predicate type `predicate_type` whose predicate `check` accepts.
    Attestation {
        predicate_type: &'a str,
        check: PredicateCheck<'a>,
    },
}

/// The form an envelope was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// A cosign simple-signing layer of a `.sig` manifest (signature in its annotation).
    SimpleSigning,
    /// A Sigstore bundle (referrer) holding a DSSE envelope.
    Bundle,
    /// A bare DSSE envelope (referrer layer or `.att` layer).
    Dsse,
}

/// A blob to read, and where it was found.
struct Located {
    /// Where, for messages: `hello:sha256-….sig layer 0`, `bundle sha256:…`.
    label: String,
    blob: Descriptor,
    form: Form,
    /// The signature of a simple-signing layer (from its annotation).
    signature: Vec<u8>,
}

/// One step of a rule's walk: a blob to read or a problem met finding it.
enum Step {
    Found(Box<Located>),
    Problem(Problem),
}

fn unreadable(message: String) -> Problem {
    Problem {
        kind: ProblemKind::Unreadable,
        message,
    }
}

/// What a rule's walk produced.
#[derive(Default)]
pub(crate) struct Collected {
    /// Distinct envelopes of the wanted predicate type (attestation rules).
    pub envelopes: usize,
    /// One claim per signature, each with the form it was stored in.
    pub claims: Vec<(Form, Claim)>,
    /// Problems met locating, reading and admitting envelopes.
    pub problems: Vec<Problem>,
}

/// Every claim about `digest` that `wanted` counts, from `source`.
pub(crate) fn collect(
    source: &dyn Source,
    digest: &Digest,
    wanted: &Wanted,
) -> Result<Collected, SourceError> {
    let steps = locate(source, digest, wanted)?;
    let mut out = Collected::default();
    // A blob is read once per form it is presented in: a bundle referrer naming an
    // envelope's blob must not hide the valid envelope itself.
    let mut seen_blobs: Vec<(Digest, Form)> = Vec::new();
    // (PAE, sorted signatures) of each envelope already admitted.
    let mut seen_envelopes: Vec<(Vec<u8>, Vec<Vec<u8>>)> = Vec::new();
    for step in steps {
        let l = match step {
            Step::Problem(p) => {
                out.problems.push(p);
                continue;
            }
            Step::Found(l) => l,
        };
        if let Wanted::Attestation { .. } = wanted {
            if seen_blobs.contains(&(l.blob.digest, l.form)) {
                continue;
            }
            seen_blobs.push((l.blob.digest, l.form));
        }
        match open(source, &l, wanted) {
            Ok(Some(o)) => admit(&l, o, wanted, &mut seen_envelopes, &mut out),
            Ok(None) => {}
            Err(p) => out.problems.push(p),
        }
    }
    Ok(out)
}

/// Where `wanted`'s envelopes about `digest` are stored, in reading order.
fn locate(source: &dyn Source, digest: &Digest, wanted: &Wanted) -> Result<Vec<Step>, SourceError> {
    let mut steps = Vec::new();
    match wanted {
        Wanted::ImageSignature => {
            let tag = cosign::signature_tag(digest);
            for (src, m) in tagged_manifests(source, &tag, "signature", &mut steps)? {
                for (i, l) in m.layers.iter().enumerate() {
                    steps.push(match cosign::read_signature_layer(i, l) {
                        Ok(sl) => Step::Found(Box::new(Located {
                            label: format!("{src} layer {i}"),
                            blob: sl.descriptor,
                            form: Form::SimpleSigning,
                            signature: sl.signature,
                        })),
                        Err(e) => Step::Problem(unreadable(format!("{src}: {e}"))),
                    });
                }
            }
            referrer_blobs(source, digest, wanted, &mut steps)?;
        }
        Wanted::Attestation { .. } => {
            referrer_blobs(source, digest, wanted, &mut steps)?;
            let tag = attest::attestation_tag(digest);
            for (src, m) in tagged_manifests(source, &tag, "attestation", &mut steps)? {
                for (i, l) in m.layers.iter().enumerate() {
                    if l.media_type == attest::DSSE_MEDIA_TYPE {
                        steps.push(found(format!("{src} layer {i}"), l, Form::Dsse));
                    }
                }
            }
            // Problems finding envelopes first, then those reading them.
            steps.sort_by_key(|s| matches!(s, Step::Found(_)));
        }
    }
    Ok(steps)
}

fn found(label: String, blob: &Descriptor, form: Form) -> Step {
    Step::Found(Box::new(Located {
        label,
        blob: blob.clone(),
        form,
        signature: Vec::new(),
    }))
}

/// The manifests tagged `tag`, each with its `name:tag` label; unreadable ones become
/// problems (as `what` manifests).
fn tagged_manifests(
    source: &dyn Source,
    tag: &str,
    what: &str,
    steps: &mut Vec<Step>,
) -> Result<Vec<(String, ImageManifest)>, SourceError> {
    let mut out = Vec::new();
    for t in source.tagged(tag)? {
        let src = format!("{}:{}", t.name, t.tag);
        let manifest = source
            .read(&t.descriptor)
            .map_err(|e| chain(&e))
            .and_then(|b| ImageManifest::from_bytes(&b, &src).map_err(|e| chain(&e)));
        match manifest {
            Ok(m) => out.push((src, m)),
            Err(e) => steps.push(Step::Problem(unreadable(format!(
                "{src}: unreadable {what} manifest: {e}"
            )))),
        }
    }
    Ok(out)
}

/// The envelope blobs of `digest`'s referrers: Sigstore bundles (one layer each) and,
/// for attestations, DSSE referrers (every layer).
fn referrer_blobs(
    source: &dyn Source,
    digest: &Digest,
    wanted: &Wanted,
    steps: &mut Vec<Step>,
) -> Result<(), SourceError> {
    let attestation = matches!(wanted, Wanted::Attestation { .. });
    for (d, m) in source.referrers(digest)? {
        let (what, form) = match m.artifact_type.as_deref() {
            Some(attest::DSSE_MEDIA_TYPE) if attestation => ("referrer", Form::Dsse),
            Some(cosign::BUNDLE_MEDIA_TYPE) => ("bundle", Form::Bundle),
            _ => continue,
        };
        match (m.layers.as_slice(), form) {
            ([], _) => steps.push(Step::Problem(unreadable(format!(
                "{what} {}: no layer",
                d.digest
            )))),
            (ls, Form::Dsse) => {
                for (i, l) in ls.iter().enumerate() {
                    steps.push(found(
                        format!("referrer {} layer {i}", d.digest),
                        l,
                        Form::Dsse,
                    ));
                }
            }
            // A bundle referrer holds one bundle (as cosign reads it); the signature
            // rule reads the first layer.
            ([l], _) => steps.push(found(format!("bundle {}", d.digest), l, Form::Bundle)),
            ([l, ..], _) if !attestation => {
                steps.push(found(format!("bundle {}", d.digest), l, Form::Bundle));
            }
            (ls, _) => steps.push(Step::Problem(unreadable(format!(
                "bundle {}: {} layers, expected one",
                d.digest,
                ls.len()
            )))),
        }
    }
    Ok(())
}

/// An envelope read and parsed (signatures NOT yet verified).
struct Opened {
    /// The bytes the signatures sign: a simple-signing payload or a DSSE PAE.
    message: Vec<u8>,
    /// The signatures, with their key ids (empty when the form carries none).
    signatures: Vec<(Vec<u8>, String)>,
    /// The image digests the signed statement is about.
    digests: Vec<Digest>,
    /// The in-toto statement's predicate type and predicate (attestations).
    predicate: Option<(String, serde_json::Value)>,
}

impl Opened {
    fn from_envelope(envelope: &Envelope, digests: Vec<Digest>) -> Opened {
        Opened {
            message: envelope.pae(),
            signatures: envelope
                .signatures
                .iter()
                .map(|s| (s.sig.clone(), s.keyid.clone()))
                .collect(),
            digests,
            predicate: None,
        }
    }

    fn from_attestation(a: Attestation) -> Opened {
        let mut o = Opened::from_envelope(&a.envelope, a.digests);
        o.predicate = Some((a.statement.predicate_type, a.statement.predicate));
        o
    }
}

/// Read and parse the blob at `l`; `None` for a bundle the rule does not read.
fn open(source: &dyn Source, l: &Located, wanted: &Wanted) -> Result<Option<Opened>, Problem> {
    let label = &l.label;
    let attestation = matches!(wanted, Wanted::Attestation { .. });
    let bytes = source.read(&l.blob).map_err(|e| {
        unreadable(match (l.form, attestation) {
            (Form::SimpleSigning, _) => format!("{label}: payload: {e}"),
            (Form::Bundle, false) => format!("{label}: {}", chain(&e)),
            (Form::Bundle, true) => format!("{label}: bundle: {e}"),
            (Form::Dsse, _) => format!("{label}: envelope: {e}"),
        })
    })?;
    let bad = |m: String| unreadable(m);
    match (l.form, attestation) {
        (Form::SimpleSigning, _) => {
            let parsed = SimpleSigning::parse(&bytes).map_err(|e| bad(format!("{label}: {e}")))?;
            Ok(Some(Opened {
                message: bytes,
                signatures: vec![(l.signature.clone(), String::new())],
                digests: vec![parsed.manifest_digest],
                predicate: None,
            }))
        }
        (Form::Bundle, false) => {
            let b =
                Bundle::from_json(&bytes).map_err(|e| bad(format!("{label}: {}", chain(&e))))?;
            // An attestation in a bundle (provenance, approval, scan) is not a signature
            // of the image: the attestation rules read it.
            if !b
                .is_image_signature()
                .map_err(|e| bad(format!("{label}: {e}")))?
            {
                return Ok(None);
            }
            let digests = b
                .signed_digests()
                .map_err(|e| bad(format!("{label}: {e}")))?;
            Ok(Some(Opened::from_envelope(&b.dsse_envelope, digests)))
        }
        (Form::Bundle, true) => {
            let b = Bundle::from_json(&bytes).map_err(|e| bad(format!("{label}: {e}")))?;
            let a = Attestation::from_envelope(label, b.dsse_envelope)
                .map_err(|e| bad(e.to_string()))?;
            Ok(Some(Opened::from_attestation(a)))
        }
        (Form::Dsse, _) => {
            let a = Attestation::parse(label, &bytes).map_err(|e| bad(e.to_string()))?;
            Ok(Some(Opened::from_attestation(a)))
        }
    }
}

/// Admit an opened envelope: its signatures become claims if the rule counts it.
fn admit(
    l: &Located,
    o: Opened,
    wanted: &Wanted,
    seen_envelopes: &mut Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    out: &mut Collected,
) {
    let label = &l.label;
    if let Wanted::Attestation {
        predicate_type,
        check,
    } = wanted
    {
        let Some((found_type, predicate)) = &o.predicate else {
            return;
        };
        if found_type != predicate_type {
            if let Some(why) = kiln_trust::policy::superseded_predicate(found_type, predicate_type)
            {
                out.problems.push(Problem {
                    kind: ProblemKind::Superseded,
                    message: format!("{label}: {why}"),
                });
            }
            return;
        }
        // The same envelope in several forms counts once (the keyid, which a bundle
        // leaves empty, is not signed and not compared).
        let mut sigs: Vec<Vec<u8>> = o.signatures.iter().map(|(s, _)| s.clone()).collect();
        sigs.sort();
        let identity = (o.message.clone(), sigs);
        if seen_envelopes.contains(&identity) {
            return;
        }
        seen_envelopes.push(identity);
        out.envelopes += 1;
        if let Err(why) = check(predicate) {
            out.problems.push(Problem {
                kind: ProblemKind::Rejected,
                message: format!("{label}: {why}"),
            });
            return;
        }
    }
    for (j, (signature, keyid)) in o.signatures.into_iter().enumerate() {
        let source = match (wanted, l.form) {
            (Wanted::ImageSignature, Form::SimpleSigning) => label.clone(),
            (Wanted::ImageSignature, _) => format!("{label} signature {j}"),
            (Wanted::Attestation { .. }, _) => {
                let keyid = if keyid.is_empty() {
                    "<empty keyid>".to_owned()
                } else {
                    keyid.chars().take(16).collect()
                };
                format!("{label} signature {j} (keyid {keyid})")
            }
        };
        out.claims.push((
            l.form,
            Claim {
                source,
                message: o.message.clone(),
                signature,
                digests: o.digests.clone(),
            },
        ));
    }
}
