//! Offline verification of a bundle: no state directory, only the bundle
//! and (ideally) the log's verifier key obtained out of band.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_audit::Event;
use kiln_tlog::{
    Checkpoint, Hash, Verifier, leaf_hash, open_note, verify_consistency, verify_inclusion,
};
use sha2::{Digest as _, Sha256};

use crate::framework::Status;
use crate::generate::{CHECKPOINT, CONSISTENCY, EVIDENCE, MANIFEST, VERIFIER_KEY, walk};
use crate::manifest;
use crate::model::*;

/// A verification failure, naming the file (bundle-relative) and, where
/// one is at fault, the event index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.as_deref().unwrap_or("bundle"), index.map(|i| format!(" (event {i})")).unwrap_or_default())]
pub struct VerifyFailure {
    pub path: Option<String>,
    pub index: Option<u64>,
    pub message: String,
}

fn fail(path: &str, message: impl Into<String>) -> VerifyFailure {
    VerifyFailure {
        path: Some(path.to_string()),
        index: None,
        message: message.into(),
    }
}

fn fail_event(path: &str, index: u64, message: impl Into<String>) -> VerifyFailure {
    VerifyFailure {
        path: Some(path.to_string()),
        index: Some(index),
        message: message.into(),
    }
}

/// Where the key that verified the bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Given by the caller (`--key`).
    Given,
    /// Taken from the bundle's own `log/verifier.key`: it proves the bundle
    /// is self-consistent, not who made it; compare the key out of band.
    Bundle,
}

/// What a successful verification checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub framework: String,
    pub generated_at: String,
    pub key_source: KeySource,
    pub verifier_key: String,
    pub files: usize,
    pub events: usize,
    pub artifacts: usize,
    pub checkpoint_size: u64,
    /// (old, new) sizes of the verified consistency proof.
    pub consistency: Option<(u64, u64)>,
    pub summary: Summary,
    pub requirements: Vec<(String, Status)>,
}

/// The largest file of a bundle `kiln evidence verify` reads: 1 GiB.
pub const MAX_BUNDLE_FILE: u64 = 1 << 30;
/// The most bytes of all a bundle's files together (they are held while
/// checked): 2 GiB.
pub const MAX_BUNDLE_TOTAL: u64 = 2 << 30;

fn read(dir: &Path, rel: &str) -> Result<Vec<u8>, VerifyFailure> {
    read_capped(dir, rel, MAX_BUNDLE_FILE)
}

/// An untrusted bundle: regular files only (no FIFO or device: opened
/// without blocking), no symlink at any level below `dir`, bounded in size.
fn read_capped(dir: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, VerifyFailure> {
    kiln_oci::untrusted::read_beneath(dir, rel, limit)
        .map_err(|e| fail(rel, format!("cannot read: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], rel: &str) -> Result<T, VerifyFailure> {
    serde_json::from_slice(bytes).map_err(|e| fail(rel, format!("malformed: {e}")))
}

fn hex32(s: &str, rel: &str, what: &str) -> Result<Hash, VerifyFailure> {
    let mut h = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut h).is_err() {
        return Err(fail(rel, format!("{what} is not 64 hex digits")));
    }
    Ok(h)
}

fn hashes(v: &[String], rel: &str) -> Result<Vec<Hash>, VerifyFailure> {
    v.iter().map(|s| hex32(s, rel, "a proof hash")).collect()
}

/// Verify the bundle in `dir`. With `trusted`, the MANIFEST and the
/// checkpoints must be signed by that key; without, by the bundle's own
/// `log/verifier.key` (reported as [`KeySource::Bundle`]).
pub fn verify(dir: &Path, trusted: Option<&Verifier>) -> Result<VerifyReport, VerifyFailure> {
    if !dir.is_dir() {
        return Err(VerifyFailure {
            path: None,
            index: None,
            message: format!("{} is not a directory", dir.display()),
        });
    }
    // The key.
    let bundle_key = read_capped(dir, VERIFIER_KEY, kiln_oci::untrusted::SMALL_FILE_LIMIT)?;
    let bundle_key = std::str::from_utf8(&bundle_key)
        .ok()
        .and_then(|s| Verifier::from_key_str(s.trim()).ok())
        .ok_or_else(|| fail(VERIFIER_KEY, "not a C2SP verifier key"))?;
    let (verifier, key_source) = match trusted {
        Some(k) => {
            if k.to_key_str() != bundle_key.to_key_str() {
                return Err(fail(
                    VERIFIER_KEY,
                    format!(
                        "the bundle's key {} is not the given key {}",
                        bundle_key.to_key_str(),
                        k.to_key_str()
                    ),
                ));
            }
            (k.clone(), KeySource::Given)
        }
        None => (bundle_key, KeySource::Bundle),
    };
    let vs = std::slice::from_ref(&verifier);

    // MANIFEST: signature, then every file's hash, nothing unlisted.
    let signed = read(dir, MANIFEST)?;
    let note = open_note(&signed, vs).map_err(|e| fail(MANIFEST, format!("signature: {e}")))?;
    let listed = manifest::parse(&note.text).map_err(|e| fail(MANIFEST, e.to_string()))?;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    walk(dir, "", &mut files, &mut dirs).map_err(|(p, e)| fail(&p, e))?;
    let present: BTreeSet<String> = files.into_iter().filter(|f| f != MANIFEST).collect();
    let listed_map: BTreeMap<&str, &Hash> = listed.iter().map(|(p, h)| (p.as_str(), h)).collect();
    for p in &present {
        if !listed_map.contains_key(p.as_str()) {
            return Err(fail(p, "file is not listed in the MANIFEST"));
        }
    }
    let mut contents: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut total = 0u64;
    for (p, want) in &listed {
        if !present.contains(p) {
            return Err(fail(p, "listed in the MANIFEST but missing"));
        }
        let room = MAX_BUNDLE_TOTAL.saturating_sub(total);
        let bytes = read_capped(dir, p, MAX_BUNDLE_FILE.min(room)).map_err(|mut e| {
            if room < MAX_BUNDLE_FILE {
                e.message = format!(
                    "{}; the bundle's files together may be at most 2 GiB",
                    e.message
                );
            }
            e
        })?;
        total += bytes.len() as u64;
        let got: Hash = Sha256::digest(&bytes).into();
        if got != *want {
            return Err(fail(
                p,
                format!(
                    "sha256 {} does not match the MANIFEST ({})",
                    hex::encode(got),
                    hex::encode(want)
                ),
            ));
        }
        contents.insert(p.as_str(), bytes);
    }
    let get = |rel: &str| -> Result<&[u8], VerifyFailure> {
        contents
            .get(rel)
            .map(Vec::as_slice)
            .ok_or_else(|| fail(rel, "missing from the bundle"))
    };

    // evidence.json and the checkpoint.
    let ev: Evidence = parse_json(get(EVIDENCE)?, EVIDENCE)?;
    if ev.format != FORMAT {
        return Err(fail(EVIDENCE, format!("unknown format {:?}", ev.format)));
    }
    let (cp, _) = Checkpoint::open(get(CHECKPOINT)?, vs)
        .map_err(|e| fail(CHECKPOINT, format!("not a valid signed checkpoint: {e}")))?;
    if cp.origin != ev.log.origin
        || cp.size != ev.log.checkpoint.size
        || hex::encode(cp.root) != ev.log.checkpoint.root_hash
    {
        return Err(fail(
            EVIDENCE,
            "log.checkpoint does not match log/checkpoint",
        ));
    }
    if ev.log.verifier_key != verifier.to_key_str() {
        return Err(fail(
            EVIDENCE,
            "log.verifier_key does not match the verifying key",
        ));
    }

    // Every event file with its inclusion proof.
    let mut events: BTreeMap<u64, (Hash, Event)> = BTreeMap::new();
    for rel in contents.keys() {
        let Some(name) = rel.strip_prefix("log/events/") else {
            if let Some(name) = rel.strip_prefix("log/proofs/") {
                let i = index_of(name, rel)?;
                if !contents.contains_key(format!("log/events/{i}.json").as_str()) {
                    return Err(fail_event(rel, i, "proof without an event file"));
                }
            }
            continue;
        };
        let i = index_of(name, rel)?;
        let raw = get(rel)?;
        let event = Event::parse(raw)
            .map_err(|e| fail_event(rel, i, format!("not a kiln audit event: {e}")))?;
        let leaf = leaf_hash(raw);
        let prel = format!("log/proofs/{i}.json");
        let proof: InclusionProof = parse_json(get(&prel)?, &prel)?;
        if proof.index != i || proof.tree_size != cp.size {
            return Err(fail_event(
                &prel,
                i,
                format!(
                    "proof is for event {} in a tree of {}, not event {i} in the checkpoint's {}",
                    proof.index, proof.tree_size, cp.size
                ),
            ));
        }
        if hex32(&proof.leaf_hash, &prel, "leaf_hash")? != leaf {
            return Err(fail_event(
                &prel,
                i,
                "leaf_hash is not the hash of the event file",
            ));
        }
        let path = hashes(&proof.hashes, &prel)?;
        verify_inclusion(i, cp.size, &leaf, &path, &cp.root).map_err(|e| {
            fail_event(
                rel,
                i,
                format!("inclusion proof does not verify against log/checkpoint: {e}"),
            )
        })?;
        events.insert(i, (leaf, event));
    }

    // The consistency proof.
    let consistency = match &ev.log.consistency {
        None => None,
        Some(c) => {
            let p: ConsistencyProof = parse_json(get(&c.path)?, &c.path)?;
            if p.old_checkpoint != c.old_checkpoint
                || p.old_size != c.old_size
                || p.new_size != c.new_size
            {
                return Err(fail(
                    &c.path,
                    "does not match evidence.json log.consistency",
                ));
            }
            let (old, _) = Checkpoint::open(get(&c.old_checkpoint)?, vs).map_err(|e| {
                fail(
                    &c.old_checkpoint,
                    format!("not a valid signed checkpoint: {e}"),
                )
            })?;
            let old_root = hex32(&p.old_root, &c.path, "old_root")?;
            let new_root = hex32(&p.new_root, &c.path, "new_root")?;
            if old.origin != cp.origin || old.size != p.old_size || old.root != old_root {
                return Err(fail(
                    &c.path,
                    format!("old tree does not match {}", c.old_checkpoint),
                ));
            }
            if p.new_size != cp.size || new_root != cp.root {
                return Err(fail(&c.path, "new tree does not match log/checkpoint"));
            }
            verify_consistency(
                p.old_size,
                p.new_size,
                &old_root,
                &new_root,
                &hashes(&p.hashes, &c.path)?,
            )
            .map_err(|e| {
                fail(
                    &c.path,
                    format!(
                        "consistency proof {} → {} does not verify: {e}",
                        p.old_size, p.new_size
                    ),
                )
            })?;
            Some((p.old_size, p.new_size))
        }
    };
    if ev.log.consistency.is_none() && contents.contains_key(CONSISTENCY) {
        return Err(fail(
            CONSISTENCY,
            "present but not referenced by evidence.json",
        ));
    }

    // Artifacts: each file hashes to its recorded digest.
    let mut artifacts: BTreeMap<&str, &Artifact> = BTreeMap::new();
    for a in &ev.artifacts {
        let bytes = get(&a.path)?;
        let got = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if got != a.digest || bytes.len() as u64 != a.size {
            return Err(fail(
                &a.path,
                format!(
                    "is {got} ({} bytes), evidence.json records {} ({} bytes)",
                    bytes.len(),
                    a.digest,
                    a.size
                ),
            ));
        }
        artifacts.insert(a.path.as_str(), a);
    }

    // Requirements cite only what the bundle proves.
    let mut summary = Summary::default();
    let mut cited = BTreeSet::new();
    for r in &ev.requirements {
        for c in &r.events {
            let Some((leaf, event)) = events.get(&c.index) else {
                return Err(fail_event(
                    EVIDENCE,
                    c.index,
                    format!(
                        "requirement {} cites an event the bundle does not include",
                        r.id
                    ),
                ));
            };
            if CitedEvent::of(c.index, leaf, event) != *c {
                return Err(fail_event(
                    EVIDENCE,
                    c.index,
                    format!(
                        "requirement {} describes the event differently from {}",
                        r.id, c.path
                    ),
                ));
            }
            cited.insert(c.index);
        }
        for a in &r.artifacts {
            match artifacts.get(a.path.as_str()) {
                Some(x) if x.digest == a.digest && x.kind == a.kind => {}
                _ => {
                    return Err(fail(
                        EVIDENCE,
                        format!(
                            "requirement {} cites artifact {} that is not recorded",
                            r.id, a.path
                        ),
                    ));
                }
            }
        }
        for p in &r.proofs {
            get(p)?;
        }
        match r.status {
            Status::Satisfied => summary.satisfied += 1,
            Status::Partial => summary.partial += 1,
            Status::Missing => summary.missing += 1,
        }
    }
    summary.events_cited = cited.len();
    summary.artifacts = ev.artifacts.len();

    Ok(VerifyReport {
        framework: ev.framework.id.clone(),
        generated_at: ev.generated_at.clone(),
        key_source,
        verifier_key: verifier.to_key_str(),
        files: listed.len() + 1,
        events: events.len(),
        artifacts: ev.artifacts.len(),
        checkpoint_size: cp.size,
        consistency,
        summary,
        requirements: ev
            .requirements
            .iter()
            .map(|r| (r.id.clone(), r.status))
            .collect(),
    })
}

/// `<decimal>.json` → index.
fn index_of(name: &str, rel: &str) -> Result<u64, VerifyFailure> {
    name.strip_suffix(".json")
        .filter(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n.len() == 1 || !n.starts_with('0'))
        })
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| fail(rel, "unexpected file name (want <index>.json)"))
}
