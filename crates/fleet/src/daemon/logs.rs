//! The output of every service's instances, kept by the daemon in memory: a
//! bounded ring per service, each line with its instance and the time kiln
//! received it, redacted of secret values before it is kept. Nothing is ever
//! written into an instance, nor to disk.
//!
//! Retention: per service, the last [`LOG_LINES`] lines and at most
//! [`LOG_BYTES`] bytes of text, whichever is reached first. Lines of
//! destroyed instances (replaced, crashed, drifted, of a destroyed service)
//! stay in the ring until newer lines push them out, so the output of an
//! instance that crashed is still there after it is gone. A restarted daemon
//! starts with empty rings.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use super::Clock;
use crate::secrets::SecretStore;
use kiln_oci::sync::lock;

/// Lines of output kept per service.
pub(super) const LOG_LINES: usize = 5000;
/// Bytes of output text kept per service.
pub(super) const LOG_BYTES: usize = 2 << 20;

/// One line of output.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LogLine {
    /// Position in the service's output since the daemon started.
    pub n: u64,
    /// When kiln received it (ms since the epoch).
    pub ms: u64,
    /// The instance that wrote it; empty for kiln's own notes.
    pub instance: String,
    /// The line, without its newline, secrets redacted.
    pub text: String,
}

#[derive(Default)]
pub(super) struct LogRing {
    pub lines: VecDeque<LogLine>,
    pub next: u64,
    /// Bytes of text in `lines`.
    bytes: usize,
}

/// Which lines a client asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct LogQuery {
    /// Only lines received at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only the last N lines of what is kept (before following).
    pub tail: Option<u64>,
    /// Only this instance's lines.
    pub instance: Option<String>,
    /// Prefix each line with the time it was received.
    pub timestamps: bool,
}

impl LogRing {
    fn push(&mut self, ms: u64, instance: &str, text: String) {
        let n = self.next;
        self.next += 1;
        self.bytes += text.len();
        self.lines.push_back(LogLine {
            n,
            ms,
            instance: instance.to_string(),
            text,
        });
        while self.lines.len() > LOG_LINES || (self.bytes > LOG_BYTES && self.lines.len() > 1) {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.text.len();
            }
        }
    }

    /// Lines numbered `from` or later that `q` selects; the tail applies to
    /// the `first` answer only, never to followed lines.
    pub fn select(&self, q: &LogQuery, from: u64, first: bool) -> Vec<&LogLine> {
        let mut out: Vec<&LogLine> = self
            .lines
            .iter()
            .filter(|l| l.n >= from)
            .filter(|l| q.since_ms.is_none_or(|s| l.ms >= s))
            .filter(|l| q.instance.as_ref().is_none_or(|i| *i == l.instance))
            .collect();
        if first && let Some(t) = q.tail {
            let keep = usize::try_from(t).unwrap_or(usize::MAX);
            let skip = out.len().saturating_sub(keep);
            out.drain(..skip);
        }
        out
    }

    /// Whether any kept line came from `instance`.
    pub fn has_instance(&self, instance: &str) -> bool {
        self.lines.iter().any(|l| l.instance == instance)
    }
}

/// A line as `kiln logs` prints it: `[time ]instance | text` (kiln's own
/// notes without the instance).
pub(super) fn format_line(l: &LogLine, timestamps: bool) -> String {
    let body = if l.instance.is_empty() {
        l.text.clone()
    } else {
        format!("{} | {}", l.instance, l.text)
    };
    if timestamps {
        let t = UNIX_EPOCH + Duration::from_millis(l.ms);
        format!("{} {body}", kiln_oci::time::rfc3339_millis(t))
    } else {
        body
    }
}

/// Output of every service's instances, a bounded ring per service.
pub(super) struct Logs {
    pub rings: Mutex<HashMap<String, LogRing>>,
    pub cv: Condvar,
    /// The values redacted from each line before it enters a ring.
    pub secrets: Arc<SecretStore>,
    clock: Arc<dyn Clock>,
}

impl Logs {
    pub fn new(clock: Arc<dyn Clock>) -> Logs {
        Logs {
            rings: Mutex::default(),
            cv: Condvar::new(),
            secrets: Arc::default(),
            clock,
        }
    }

    /// Keep a line of `instance` (empty: a note of kiln's own) of `service`.
    pub fn push(&self, service: &str, instance: &str, line: String) {
        let line = match self.secrets.redact(service, &line) {
            std::borrow::Cow::Borrowed(_) => line,
            std::borrow::Cow::Owned(redacted) => redacted,
        };
        let ms = self.clock.now_ms();
        let mut m = lock(&self.rings);
        m.entry(service.to_string())
            .or_default()
            .push(ms, instance, line);
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(lines: &[(u64, &str, &str)]) -> LogRing {
        let mut r = LogRing::default();
        for (ms, i, t) in lines {
            r.push(*ms, i, t.to_string());
        }
        r
    }

    fn texts(v: Vec<&LogLine>) -> Vec<String> {
        v.into_iter().map(|l| l.text.clone()).collect()
    }

    #[test]
    fn tail_since_and_instance_select_on_the_daemon_side() {
        let r = ring(&[
            (1_000, "web-0001", "a"),
            (2_000, "web-0002", "b"),
            (3_000, "web-0001", "c"),
            (4_000, "", "note"),
            (5_000, "web-0002", "d"),
        ]);
        let all = LogQuery::default();
        assert_eq!(texts(r.select(&all, 0, true)), ["a", "b", "c", "note", "d"]);
        let tail = LogQuery {
            tail: Some(2),
            ..LogQuery::default()
        };
        assert_eq!(texts(r.select(&tail, 0, true)), ["note", "d"]);
        // Following: the tail was the first answer only.
        assert_eq!(texts(r.select(&tail, 1, false)), ["b", "c", "note", "d"]);
        let since = LogQuery {
            since_ms: Some(3_000),
            ..LogQuery::default()
        };
        assert_eq!(texts(r.select(&since, 0, true)), ["c", "note", "d"]);
        let one = LogQuery {
            instance: Some("web-0001".into()),
            tail: Some(1),
            ..LogQuery::default()
        };
        assert_eq!(texts(r.select(&one, 0, true)), ["c"]);
        assert!(r.has_instance("web-0002"));
        assert!(!r.has_instance("web-0003"));
        let zero = LogQuery {
            tail: Some(0),
            ..LogQuery::default()
        };
        assert!(r.select(&zero, 0, true).is_empty());
    }

    #[test]
    fn lines_carry_their_receive_time_and_instance() {
        let r = ring(&[
            (1_700_000_000_123, "web-0001", "hello"),
            (5, "", "kiln note"),
        ]);
        assert_eq!(
            format_line(&r.lines[0], true),
            "2023-11-14T22:13:20.123Z web-0001 | hello"
        );
        assert_eq!(format_line(&r.lines[0], false), "web-0001 | hello");
        assert_eq!(format_line(&r.lines[1], false), "kiln note");
    }

    #[test]
    fn retention_is_bounded_by_lines_and_bytes_per_service() {
        let mut r = LogRing::default();
        for i in 0..(LOG_LINES + 10) {
            r.push(i as u64, "web-0001", format!("{i}"));
        }
        assert_eq!(r.lines.len(), LOG_LINES);
        assert_eq!(r.lines[0].text, "10");
        // Long lines: the byte bound wins.
        let mut r = LogRing::default();
        let line = "x".repeat(64 * 1024);
        for i in 0..100 {
            r.push(i, "web-0002", line.clone());
        }
        assert_eq!(r.lines.len(), LOG_BYTES / line.len());
        assert!(r.bytes <= LOG_BYTES);
        assert_eq!(r.lines.back().map(|l| l.n), Some(99));
        // One line larger than the bound is still kept (until the next).
        let mut r = LogRing::default();
        r.push(0, "web-0003", "y".repeat(LOG_BYTES + 1));
        assert_eq!(r.lines.len(), 1);
    }
}
