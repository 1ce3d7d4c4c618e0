//! The JSON documents of a bundle: `evidence.json`, `log/proofs/<i>.json`
//! and `log/consistency.json`. Hashes are lowercase hex.

use serde::{Deserialize, Serialize};

use kiln_audit::{Event, Outcome};

use crate::framework::Status;

/// `evidence.json` `format` value.
pub const FORMAT: &str = "kiln-evidence/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub format: String,
    pub framework: FrameworkRef,
    pub generated_at: String,
    pub generator: String,
    pub period: Period,
    pub log: LogInfo,
    pub summary: Summary,
    pub requirements: Vec<RequirementEvidence>,
    pub images: Vec<ImageEvidence>,
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameworkRef {
    pub id: String,
    pub title: String,
}

/// The period covered, RFC 3339 UTC; `None` is unbounded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Period {
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogInfo {
    pub origin: String,
    /// C2SP verifier key of the log (also in `log/verifier.key`).
    pub verifier_key: String,
    pub checkpoint: CheckpointRef,
    pub consistency: Option<ConsistencyRef>,
    /// Time of the log's first event (its history starts there).
    pub first_event_time: Option<String>,
    pub events_in_period: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRef {
    pub path: String,
    pub size: u64,
    pub root_hash: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyRef {
    pub path: String,
    pub old_checkpoint: String,
    pub old_size: u64,
    pub new_size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub satisfied: usize,
    pub partial: usize,
    pub missing: usize,
    pub events_cited: usize,
    pub artifacts: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequirementEvidence {
    pub id: String,
    pub title: String,
    pub kiln_evidence: String,
    pub status: Status,
    /// The needs the bundle meets.
    pub satisfied_by: Vec<String>,
    /// The needs it does not, and why.
    pub missing: Vec<MissingNeed>,
    pub events: Vec<CitedEvent>,
    pub artifacts: Vec<ArtifactRef>,
    /// Paths of the checkpoint / consistency proofs this requirement relies on.
    pub proofs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingNeed {
    pub need: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitedEvent {
    pub index: u64,
    pub leaf_hash: String,
    pub action: String,
    pub time: String,
    pub outcome: String,
    /// `user` (`sudo_user` via sudo) and `key <id>` when a key was used.
    pub actor: String,
    /// `kind:id (name)` of each affected resource.
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `log/events/<index>.json`: the exact logged bytes.
    pub path: String,
    /// `log/proofs/<index>.json`: its inclusion proof.
    pub proof: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub kind: String,
    pub digest: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub kind: String,
    pub media_type: String,
    /// `sha256:<hex>` of the file's bytes.
    pub digest: String,
    pub size: u64,
    pub path: String,
    /// The image (manifest digest) it belongs to.
    pub image: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEvidence {
    pub digest: String,
    pub names: Vec<String>,
    pub in_store: bool,
    pub baseline: Option<serde_json::Value>,
    pub artifacts: usize,
}

/// `log/proofs/<index>.json`: RFC 9162 inclusion proof of one event
/// against the bundle's checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

/// `log/consistency.json`: RFC 9162 consistency proof from an older
/// checkpoint to the bundle's checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub old_checkpoint: String,
    pub old_size: u64,
    pub old_root: String,
    pub new_size: u64,
    pub new_root: String,
    pub hashes: Vec<String>,
}

impl CitedEvent {
    /// The citation of `event` at `index` with leaf hash `leaf`.
    pub fn of(index: u64, leaf: &[u8; 32], event: &Event) -> CitedEvent {
        let a = &event.actor;
        let mut actor = match &a.sudo_user {
            Some(s) => format!("{} (via sudo by {s})", a.user),
            None => a.user.clone(),
        };
        if let Some(k) = &a.key {
            actor.push_str(&format!(", key {k}"));
        }
        CitedEvent {
            index,
            leaf_hash: hex::encode(leaf),
            action: event.action.clone(),
            time: event.time.clone(),
            outcome: match event.outcome {
                Outcome::Success => "success".into(),
                Outcome::Failure => "failure".into(),
            },
            actor,
            resources: event
                .resources
                .iter()
                .map(|r| match &r.name {
                    Some(n) => format!("{}:{} ({n})", r.kind, r.id),
                    None => format!("{}:{}", r.kind, r.id),
                })
                .collect(),
            reason: event.reason.clone(),
            path: format!("log/events/{index}.json"),
            proof: format!("log/proofs/{index}.json"),
        }
    }
}
