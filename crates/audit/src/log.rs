//! The state directory's audit log: a [`kiln_tlog::Log`] of [`Event`]s with
//! its Ed25519 checkpoint key.

use std::path::{Path, PathBuf};

use kiln_tlog::{Hash, Log, LogError, MAX_ENTRY, Signer, Verifier};

use crate::event::{Event, hostname};

/// Why the audit log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: {0}")]
    Log(#[from] LogError),
    #[error("audit log event {index}: not a kiln audit event ({source})")]
    BadEvent {
        index: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("audit event is {0} bytes even without details; the limit is {MAX_ENTRY}")]
    TooLarge(usize),
}

/// An event read back from the log, with its position and leaf hash.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub index: u64,
    pub event: Event,
    /// The exact logged bytes (what the leaf hash covers).
    pub raw: Vec<u8>,
}

/// The audit log of one state directory (`<state>/log`).
pub struct AuditLog {
    log: Log,
}

impl AuditLog {
    /// Where the log of `state_dir` lives.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("log")
    }

    /// Open the log, creating it and its checkpoint key (`log/log.key`,
    /// mode 0600) on first use. The key's name is the log origin,
    /// `<host>/kiln/audit`.
    pub fn open(state_dir: &Path) -> Result<AuditLog, AuditError> {
        let dir = Self::dir(state_dir);
        let signer = kiln_tlog::load_or_create_key(&dir.join("log.key"), &origin())?;
        let verifier = signer.verifier();
        Ok(AuditLog {
            log: Log::open(&dir, Some(signer), verifier)?,
        })
    }

    /// Open an existing log for reading only (no key needed); `None` when
    /// there is no log yet.
    pub fn open_read(state_dir: &Path, verifier: Verifier) -> Result<AuditLog, AuditError> {
        Ok(AuditLog {
            log: Log::open(&Self::dir(state_dir), None, verifier)?,
        })
    }

    /// The log's signing key from `state_dir` (for `kiln log key`).
    pub fn signer(state_dir: &Path) -> Result<Signer, AuditError> {
        Ok(kiln_tlog::load_or_create_key(
            &Self::dir(state_dir).join("log.key"),
            &origin(),
        )?)
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Append durably; returns the event's index. Details are dropped (and
    /// the drop noted) if the event would exceed the log's entry limit.
    pub fn record(&self, event: &Event) -> Result<u64, AuditError> {
        // Test hook, compiled into debug builds only: `KILN_TEST_AUDIT_FAIL=1`
        // makes every append fail as a full disk would, so tests can check
        // that no command leaves a change without its event.
        #[cfg(debug_assertions)]
        if std::env::var_os("KILN_TEST_AUDIT_FAIL").is_some_and(|v| v == "1") {
            return Err(AuditError::Log(LogError::Io {
                path: self.log.dir().join("entries"),
                source: std::io::Error::from_raw_os_error(libc_enospc()),
            }));
        }
        let mut bytes = event.to_bytes();
        if bytes.len() > MAX_ENTRY {
            let mut slim = event.clone();
            slim.details.clear();
            slim.details
                .insert("details_dropped".into(), serde_json::Value::Bool(true));
            bytes = slim.to_bytes();
            if bytes.len() > MAX_ENTRY {
                return Err(AuditError::TooLarge(bytes.len()));
            }
        }
        Ok(self.log.append(&bytes)?)
    }

    /// Events from `start` on, in order; stops early when `visit` says so.
    pub fn events(
        &self,
        start: u64,
        mut visit: impl FnMut(LoggedEvent) -> bool,
    ) -> Result<(), AuditError> {
        let mut bad = None;
        self.log
            .for_each_entry(start, |index, raw| match Event::parse(raw) {
                Ok(event) => visit(LoggedEvent {
                    index,
                    event,
                    raw: raw.to_vec(),
                }),
                Err(source) => {
                    bad = Some(AuditError::BadEvent { index, source });
                    false
                }
            })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// One event by index.
    pub fn event(&self, index: u64) -> Result<(LoggedEvent, Hash), AuditError> {
        let (raw, leaf) = self.log.entry(index)?;
        let event = Event::parse(&raw).map_err(|source| AuditError::BadEvent { index, source })?;
        Ok((LoggedEvent { index, event, raw }, leaf))
    }
}

/// `ENOSPC` ("No space left on device") on Linux.
#[cfg(debug_assertions)]
fn libc_enospc() -> i32 {
    28
}

/// The log origin and key name for this host: `<host>/kiln/audit`, with
/// characters a note key name cannot hold replaced.
fn origin() -> String {
    let host: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '+' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{host}/kiln/audit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    #[test]
    fn records_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::open(d.path()).unwrap();
        let e =
            Event::new("image.build", "kiln build").resource(Resource::new("image", "sha256:00"));
        assert_eq!(log.record(&e).unwrap(), 0);
        let big = Event::new("image.build", "kiln build").detail("blob", "x".repeat(70_000));
        assert_eq!(log.record(&big).unwrap(), 1);
        let mut seen = Vec::new();
        log.events(0, |le| {
            seen.push(le);
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].event, e);
        assert_eq!(seen[1].event.details["details_dropped"], true);
        let mode = std::fs::metadata(d.path().join("log/log.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        let (cp, _) = log.log().checkpoint().unwrap();
        assert!(cp.origin.ends_with("/kiln/audit"));
    }
}
