//! Audit events and the audit log they are recorded in.
//!
//! Every state-changing kiln command appends one [`Event`] to the state
//! directory's Merkle log ([`kiln_tlog::Log`]) before it reports success, and
//! a failure event when it fails. An event carries what PCI DSS 10.2.2 asks
//! of an audit record: who ([`Actor`]), what (`action`), when (`time`, UTC),
//! the outcome, where from ([`Origin`]), the affected [`Resource`]s and a
//! reason. Events hold digests and names, never secrets or file contents.

#![warn(clippy::undocumented_unsafe_blocks)]

mod event;
mod log;
mod recorder;
mod sys;

pub use event::{Actor, Event, Origin, Outcome, Resource};
pub use log::{AuditError, AuditLog, LoggedEvent};
pub use recorder::Recorder;
