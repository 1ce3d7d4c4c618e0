//! Recording events from library code: a library that changes state (a build, a
//! scan attestation, a patch) is handed a [`Recorder`] by its caller, which knows
//! who runs the command and where its log is, and records through it.

use crate::{AuditError, Event};

/// Makes and records audit events on behalf of a command.
pub trait Recorder {
    /// A new success event for `action`, carrying the command's name and reason.
    fn event(&self, action: &str) -> Event;
    /// Record `event` durably; returns its index in the log. Call before making
    /// the change it describes visible.
    fn record(&self, event: Event) -> Result<u64, AuditError>;
}
