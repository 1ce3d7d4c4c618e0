//! The audit event schema (version 1).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::sys;

/// Success or failure of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

/// Who acted: the OS user and, when the action used one, the signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Login name of the effective user (or `uid:<n>` without one).
    pub user: String,
    pub uid: u32,
    /// The user who ran `sudo`, when the command ran under sudo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// Key id (e.g. `sha256:…` of the public key) the action signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where the action came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub host: String,
    pub pid: u32,
    /// The kiln subcommand, e.g. `kiln sign` (never its arguments, which
    /// may name secrets' files).
    pub command: String,
}

/// A resource the action affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// `image`, `artifact`, `key`, `registry`, `instance`, `service`, `log`…
    pub kind: String,
    /// Stable identifier: a digest, key id, instance id or URL.
    pub id: String,
    /// Human name, e.g. the tag `hello:1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Resource {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Resource {
            kind: kind.to_string(),
            id: id.into(),
            name: None,
        }
    }

    pub fn named(kind: &str, id: impl Into<String>, name: impl Into<String>) -> Self {
        Resource {
            name: Some(name.into()),
            ..Resource::new(kind, id)
        }
    }
}

/// One audit event. Field order is the serialisation order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version (1).
    pub v: u32,
    /// UTC, RFC 3339 with milliseconds.
    pub time: String,
    /// Dotted action name: `image.build`, `image.sign`, `key.generate`…
    pub action: String,
    pub outcome: Outcome,
    pub actor: Actor,
    pub origin: Origin,
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Action-specific facts (digests, counts, verdicts); never contents.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

/// Longest reason kept; longer ones are cut (a reason is a sentence or a
/// ticket id, and an error chain at most).
const MAX_REASON: usize = 2048;

impl Event {
    /// A success event for `action` by the current user on this host, now.
    pub fn new(action: &str, command: &str) -> Self {
        Event {
            v: 1,
            time: kiln_oci::time::rfc3339_millis(SystemTime::now()),
            action: action.to_string(),
            outcome: Outcome::Success,
            actor: Actor::current(),
            origin: Origin {
                host: hostname(),
                pid: std::process::id(),
                command: command.to_string(),
            },
            resources: Vec::new(),
            reason: None,
            details: Map::new(),
        }
    }

    pub fn resource(mut self, r: Resource) -> Self {
        self.resources.push(r);
        self
    }

    pub fn key(mut self, key_id: impl Into<String>) -> Self {
        self.actor.key = Some(key_id.into());
        self
    }

    pub fn reason(mut self, reason: Option<&str>) -> Self {
        if let Some(r) = reason.filter(|r| !r.trim().is_empty()) {
            self.reason = Some(truncate(r, MAX_REASON));
        }
        self
    }

    pub fn detail(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.details.insert(k.to_string(), v.into());
        self
    }

    /// Mark as failed; the error becomes the reason (after any given one).
    pub fn failed(mut self, error: &str) -> Self {
        self.outcome = Outcome::Failure;
        let why = match self.reason.take() {
            Some(r) => format!("{r}; failed: {error}"),
            None => error.to_string(),
        };
        self.reason = Some(truncate(&why, MAX_REASON));
        self
    }

    /// Compact JSON, the bytes that are logged.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse a logged event.
    pub fn parse(bytes: &[u8]) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Seconds since the Unix epoch of `time`, if well-formed.
    pub fn unix_time(&self) -> Option<u64> {
        kiln_oci::time::parse_utc(&self.time)
    }

    /// Digests of the images this event touched.
    pub fn images(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| r.kind == "image")
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Actor {
    /// The user with `uid` (e.g. a daemon's API caller, from SO_PEERCRED).
    pub fn for_uid(uid: u32) -> Actor {
        Actor {
            user: sys::user_name(uid).unwrap_or_else(|| format!("uid:{uid}")),
            uid,
            sudo_user: None,
            key: None,
        }
    }

    /// The effective user of this process.
    pub fn current() -> Actor {
        let uid = sys::geteuid();
        Actor {
            user: sys::user_name(uid).unwrap_or_else(|| format!("uid:{uid}")),
            uid,
            sudo_user: std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()),
            key: None,
        }
    }
}

/// This host's name (`uname -n`).
pub fn hostname() -> String {
    match sys::nodename() {
        Some(n) if !n.is_empty() => n,
        _ => "localhost".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn schema_round_trips_with_required_fields() {
        let e = Event::new("image.sign", "kiln sign")
            .resource(Resource::named("image", "sha256:ab", "hello:1.0.0"))
            .key("sha256:k")
            .reason(Some("CHG-42"))
            .detail("signatures", 1);
        let v: Value = serde_json::from_slice(&e.to_bytes()).unwrap();
        for f in [
            "v",
            "time",
            "action",
            "outcome",
            "actor",
            "origin",
            "resources",
            "reason",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        assert_eq!(v["outcome"], "success");
        assert!(e.time.ends_with('Z') && e.unix_time().is_some());
        assert_eq!(Event::parse(&e.to_bytes()).unwrap(), e);
        let f = e.failed("bad password");
        assert_eq!(f.outcome, Outcome::Failure);
        assert_eq!(f.reason.as_deref(), Some("CHG-42; failed: bad password"));
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let r = "é".repeat(3000);
        let e = Event::new("x", "kiln x").reason(Some(&r));
        assert!(e.reason.unwrap().len() <= MAX_REASON + 3);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Event::parse(&bytes);
        }

        #[test]
        fn any_event_round_trips(action in "[a-z.]{1,20}", reason in ".{0,100}", id in "[a-z0-9:]{1,70}") {
            let e = Event::new(&action, "kiln t").reason(Some(&reason)).resource(Resource::new("image", id));
            prop_assert_eq!(Event::parse(&e.to_bytes()).unwrap(), e);
        }
    }
}
