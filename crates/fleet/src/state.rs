//! The daemon's own state: desired deployment, releases and instances,
//! kept in an embedded database (redb) under the state directory so that a
//! restarted `kiln serve` knows what it was running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::deploy::{Deployment, ImageRef, ServiceSpec};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("fleet");
const KEY: &str = "state";
/// Per unpacked root filesystem (keyed by image digest): the inode number
/// and link count of every path when it was unpacked
/// ([`kiln_drift::InodeRecord`] bytes). Kept apart from the state blob: it
/// is large, written once per unpack, and not part of what `save` rewrites.
const INODES: TableDefinition<&str, &[u8]> = TableDefinition::new("rootfs-inodes");

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("fleet state database {path}: {message}")]
    Db { path: String, message: String },
    #[error("fleet state database {path}: stored state is unreadable: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("fleet state database {path}: the inode record of {digest} is unreadable: {source}")]
    Inodes {
        path: String,
        digest: String,
        #[source]
        source: kiln_drift::DriftError,
    },
}

/// Everything the daemon persists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FleetState {
    /// The last applied deployment.
    pub desired: Deployment,
    pub services: BTreeMap<String, ServiceState>,
    /// Counter for instance and debug session ids (release ids are per service: see
    /// [`ServiceState::next_release_id`]).
    pub seq: u64,
    /// The release counter of each service that was destroyed, so a service created
    /// again under the same name continues its numbering (ids never repeat per name).
    #[serde(default)]
    pub release_seqs: BTreeMap<String, u64>,
}

/// One service's releases and instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// Every release of the service, oldest first.
    pub releases: Vec<Release>,
    /// The release serving traffic.
    pub active: Option<String>,
    /// The release being rolled out, if any.
    pub rollout: Option<Rollout>,
    pub instances: BTreeMap<String, Instance>,
    /// One line on what the service is doing or why it is stuck.
    pub message: String,
    /// A release that failed to roll out: not retried until a new apply.
    pub failed: Option<String>,
    /// Unplanned replacements (ms since the epoch), for crash-loop backoff.
    pub restarts: Vec<u64>,
    /// No new instance before this time (ms since the epoch).
    pub backoff_until: u64,
    /// The number of the service's last release id (`r<N>`); 0 in databases written
    /// before ids were per service (see [`ServiceState::next_release_id`]).
    #[serde(default)]
    pub release_seq: u64,
}

impl FleetState {
    /// Every image digest the fleet references: each service's releases
    /// (rollback targets included) and the desired deployment. `kiln gc`
    /// keeps these.
    pub fn image_digests(&self) -> std::collections::BTreeSet<String> {
        let releases = self
            .services
            .values()
            .flat_map(|s| s.releases.iter().map(|r| r.image.digest.clone()));
        let desired = self
            .desired
            .services
            .values()
            .map(|s| s.image.digest.clone());
        releases.chain(desired).collect()
    }
}

impl ServiceState {
    pub fn release(&self, id: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.id == id)
    }

    pub fn active_release(&self) -> Option<&Release> {
        self.active.as_deref().and_then(|id| self.release(id))
    }

    /// Allocate the service's next release id: `r1`, `r2`, … in creation order.
    /// Databases from before ids were per service hold ids from the global counter
    /// (`r0007`): numbering continues after the highest id the service has, so an
    /// upgraded service never reuses one. Ids are names, not sort keys: the order
    /// of releases is their position in [`ServiceState::releases`].
    pub fn next_release_id(&mut self) -> String {
        let highest = self
            .releases
            .iter()
            .filter_map(|r| release_number(&r.id))
            .max()
            .unwrap_or(0);
        self.release_seq = self.release_seq.max(highest) + 1;
        format!("r{}", self.release_seq)
    }
}

/// The number in a release id `r<N>` (`r0007` from older databases included).
pub fn release_number(id: &str) -> Option<u64> {
    let digits = id.strip_prefix('r')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An immutable release: one image with one instance configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub image: ImageRef,
    pub spec: ServiceSpec,
    pub created: String,
    /// The image's `[baseline]` (config label `dev.kiln.baseline`).
    pub baseline: Option<serde_json::Value>,
    pub reason: Option<String>,
}

/// A release on its way in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub release: String,
    /// The release it replaces (`None` for a first deploy).
    pub from: Option<String>,
    /// `None`: blue-green (or first deploy); `Some(steps)`: canary.
    pub canary: Option<Vec<u8>>,
    /// Index of the canary step in effect (weights shifted), if started.
    pub step: Option<usize>,
    pub step_since: u64,
    pub started: u64,
    /// Why the strategy differs from the requested one, if it does.
    pub note: Option<String>,
    /// Exits or health failures of the new release's instances.
    pub failures: u32,
    /// Canary analysis: the new release's counts when the current step (or the blue-green
    /// window) began.
    #[serde(default)]
    pub base: Option<crate::analysis::Counts>,
    /// Why the rollout is paused, if it is (`kiln rollout pause`, or too little traffic).
    #[serde(default)]
    pub paused: Option<crate::analysis::Pause>,
    /// An operator's `kiln rollout resume|abort`, for the reconciler's next step.
    #[serde(default)]
    pub command: Option<crate::analysis::Command>,
    /// Blue-green with analysis: the switch happened at this time (ms since the epoch); the
    /// old set stands by until the window passes.
    #[serde(default)]
    pub switched: Option<u64>,
}

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Started, not yet healthy.
    Starting,
    Healthy,
    /// Out of rotation, draining, then destroyed.
    Retiring,
}

/// One runc container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub release: String,
    pub pid: u32,
    /// ms since the epoch.
    pub started: u64,
    pub phase: Phase,
    pub in_rotation: bool,
    /// The instance this one is replacing (max lifetime), if any.
    pub replaces: Option<String>,
    /// When retiring started (ms since the epoch).
    pub retiring_since: u64,
    /// Why it is retiring.
    pub retire_reason: Option<String>,
    /// Milliseconds from `runc run` to the first passed health check.
    #[serde(default)]
    pub start_to_healthy_ms: Option<u64>,
    /// SHA-256 of the `config.json` kiln generated for it (an HMAC when the file holds a
    /// secret: see [`crate::secrets::CONFIG_HMAC_PREFIX`]).
    #[serde(default)]
    pub config_sha256: Option<String>,
    /// The unpacked root filesystem it runs on.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// Why it must be replaced: drift detected (it is never repaired).
    #[serde(default)]
    pub drifted: Option<String>,
}

fn load_from(db: &impl ReadableDatabase, path: &str) -> Result<FleetState, StateError> {
    let err = |e: &dyn std::fmt::Display| StateError::Db {
        path: path.to_string(),
        message: e.to_string(),
    };
    let r = db.begin_read().map_err(|e| err(&e))?;
    let t = match r.open_table(TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(FleetState::default()),
        Err(e) => return Err(err(&e)),
    };
    match t.get(KEY).map_err(|e| err(&e))? {
        Some(v) => serde_json::from_slice(v.value()).map_err(|source| StateError::Decode {
            path: path.to_string(),
            source,
        }),
        None => Ok(FleetState::default()),
    }
}

/// The redb file holding [`FleetState`].
pub struct Db {
    db: Database,
    path: String,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, StateError> {
        let p = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| StateError::Db {
            path: p.clone(),
            message: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| err(&e))?;
        Ok(Db { db, path: p })
    }

    fn err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// The stored state, or the empty state for a new database.
    pub fn load(&self) -> Result<FleetState, StateError> {
        load_from(&self.db, &self.path)
    }

    /// The state stored at `path`, read without writing or creating
    /// anything (`kiln history` while no daemon runs); `None` when there is
    /// no database. Fails while another process (a running daemon) has the
    /// database open.
    pub fn read_only(path: &Path) -> Result<Option<FleetState>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let p = path.display().to_string();
        let db = redb::ReadOnlyDatabase::open(path).map_err(|e| StateError::Db {
            path: p.clone(),
            message: e.to_string(),
        })?;
        load_from(&db, &p).map(Some)
    }

    /// Replace the stored state durably.
    pub fn save(&self, st: &FleetState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(st).map_err(|e| self.err(e))?;
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(TABLE).map_err(|e| self.err(e))?;
            t.insert(KEY, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// Keep the inode record of the root filesystem of image `digest`
    /// (replacing any earlier one), durably.
    pub fn save_inodes(
        &self,
        digest: &str,
        record: &kiln_drift::InodeRecord,
    ) -> Result<(), StateError> {
        let bytes = record.to_bytes();
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(INODES).map_err(|e| self.err(e))?;
            t.insert(digest, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }

    /// The inode record of the root filesystem of image `digest`, if kept.
    pub fn load_inodes(&self, digest: &str) -> Result<Option<kiln_drift::InodeRecord>, StateError> {
        let r = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match r.open_table(INODES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        match t.get(digest).map_err(|e| self.err(e))? {
            Some(v) => kiln_drift::InodeRecord::from_bytes(v.value())
                .map(Some)
                .map_err(|source| StateError::Inodes {
                    path: self.path.clone(),
                    digest: digest.to_string(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// Forget the inode record of image `digest` (its root filesystem was
    /// moved away).
    pub fn remove_inodes(&self, digest: &str) -> Result<(), StateError> {
        let w = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = w.open_table(INODES).map_err(|e| self.err(e))?;
            t.remove(digest).map_err(|e| self.err(e))?;
        }
        w.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(id: &str) -> Release {
        let text = "[service.web]\nimage = \"localhost/web@sha256:1111111111111111111111111111111111111111111111111111111111111111\"\nlisten = \"127.0.0.1:18080\"\nport = 8080\npolicy = \"trust.toml\"\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trust.toml"), "").unwrap();
        let mut d =
            crate::deploy::Deployment::parse(&dir.path().join("deploy.toml"), text).unwrap();
        let spec = d.services.remove("web").unwrap();
        Release {
            id: id.into(),
            image: spec.image.clone(),
            spec,
            created: "2023-11-14T22:13:20.000Z".into(),
            baseline: None,
            reason: None,
        }
    }

    #[test]
    fn release_ids_are_sequential_per_service() {
        let mut web = ServiceState::default();
        let mut api = ServiceState::default();
        for want in ["r1", "r2", "r3"] {
            let id = web.next_release_id();
            assert_eq!(id, want);
            web.releases.push(rel(&id));
        }
        assert_eq!(api.next_release_id(), "r1");
        // Pruned or failed releases leave their numbers used.
        web.releases.clear();
        assert_eq!(web.next_release_id(), "r4");
    }

    #[test]
    fn upgraded_databases_continue_after_the_highest_global_id() {
        // Written before ids were per service: global ids, no release_seq.
        let old = r#"{"releases":[],"active":"r0012","rollout":null,"instances":{},"message":"","failed":null,"restarts":[],"backoff_until":0}"#;
        let mut svc: ServiceState = serde_json::from_str(old).unwrap();
        assert_eq!(svc.release_seq, 0);
        svc.releases = vec![rel("r0003"), rel("r0012"), rel("r0009")];
        assert_eq!(svc.next_release_id(), "r13");
        assert_eq!(svc.next_release_id(), "r14");
        assert_eq!(release_number("r0012"), Some(12));
        assert_eq!(release_number("r13"), Some(13));
        for bad in ["", "r", "x12", "r1a", "r-1"] {
            assert_eq!(release_number(bad), None, "{bad}");
        }
        let st: FleetState =
            serde_json::from_str(r#"{"desired":{"services":{}},"services":{},"seq":40}"#).unwrap();
        assert!(st.release_seqs.is_empty());
    }

    #[test]
    fn inode_records_are_kept_apart_from_the_state_and_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("fleet.redb");
        let rec = kiln_drift::InodeRecord {
            entries: vec![
                kiln_drift::InodeEntry {
                    path: b"/".to_vec().into(),
                    ino: 2,
                    nlink: 3,
                },
                kiln_drift::InodeEntry {
                    path: b"/www/index.html".to_vec().into(),
                    ino: 77,
                    nlink: 2,
                },
            ],
        };
        {
            let db = Db::open(&path).unwrap();
            assert!(db.load_inodes("sha256:aa").unwrap().is_none());
            db.save_inodes("sha256:aa", &rec).unwrap();
            db.save(&FleetState::default()).unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.load_inodes("sha256:aa").unwrap(), Some(rec));
        assert!(db.load_inodes("sha256:bb").unwrap().is_none());
        db.remove_inodes("sha256:aa").unwrap();
        assert!(db.load_inodes("sha256:aa").unwrap().is_none());
        db.remove_inodes("sha256:aa").unwrap();
    }
}
