//! `kiln patch report`: every `patch.complete` event of the audit log, as advisory →
//! fixed image → fleet, with the time each took.

use kiln_audit::{AuditError, AuditLog};
use serde::Serialize;
use serde_json::Value;

/// One advisory fixed by a patch (a `patch.complete` event). Fields the event lacks
/// are `null`.
#[derive(Debug, Clone, Serialize)]
pub struct PatchRecord {
    /// The event's index in the audit log.
    pub index: u64,
    pub advisory: Option<String>,
    pub package: Option<Value>,
    pub from: Option<Value>,
    pub to: Option<Value>,
    pub severity: Option<Value>,
    pub ingested_at: Option<Value>,
    /// The fixed image's digest.
    pub fixed_image: Option<String>,
    pub fixed_image_ms: Option<Value>,
    pub fleet_ms: Option<Value>,
}

/// The patches recorded in `log`, oldest first.
pub fn history(log: &AuditLog) -> Result<Vec<PatchRecord>, AuditError> {
    let mut rows = Vec::new();
    log.events(0, |le| {
        if le.event.action == "patch.complete" {
            let e = &le.event;
            let id_of = |kind: &str| {
                e.resources
                    .iter()
                    .find(|r| r.kind == kind)
                    .map(|r| r.id.clone())
            };
            let detail = |k: &str| e.details.get(k).cloned();
            rows.push(PatchRecord {
                index: le.index,
                advisory: id_of("advisory"),
                package: detail("package"),
                from: detail("from"),
                to: detail("to"),
                severity: detail("severity"),
                ingested_at: detail("ingested_at"),
                fixed_image: id_of("image"),
                fixed_image_ms: detail("fixed_image_ms"),
                fleet_ms: detail("fleet_ms"),
            });
        }
        true
    })?;
    Ok(rows)
}
