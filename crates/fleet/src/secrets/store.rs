//! The daemon's secret values, in memory only (zeroed when dropped), keyed by service, name and
//! the value's HMAC (so a release keeps the value it was made with while a newer one rolls
//! out); and the redaction of those values in instance output before `kiln logs` sees it.
//!
//! Redaction knows only the values held: after a daemon restart, output of adopted instances
//! is redacted again from the next `kiln apply` on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kiln_oci::sync::lock;
use zeroize::Zeroizing;

use super::{KEY_FILE, SecretKey, SecretKeyError, SecretRef, SecretValues};

/// Shortest value (or line of a multi-line value) that is redacted: shorter ones would
/// blank out ordinary words.
pub const MIN_REDACTED: usize = 4;

/// One secret's value as an instance gets it (zeroed when dropped).
pub(crate) struct HeldSecret {
    pub name: String,
    /// Also exported as the environment variable `name`.
    pub env: bool,
    pub value: Zeroizing<Vec<u8>>,
}

/// (service, secret name, HMAC of the value).
type Key = (String, String, String);

/// Every secret value the daemon holds. Empty after a restart until the next `kiln apply`.
#[derive(Default)]
pub(crate) struct SecretStore {
    values: Mutex<BTreeMap<Key, Zeroizing<Vec<u8>>>>,
    key: Mutex<Option<Arc<SecretKey>>>,
}

impl SecretStore {
    /// The HMAC key in `fleet_dir`, loaded (or created) on first use.
    pub fn key(&self, fleet_dir: &Path) -> Result<Arc<SecretKey>, SecretKeyError> {
        let mut k = lock(&self.key);
        if let Some(k) = &*k {
            return Ok(k.clone());
        }
        let key = Arc::new(SecretKey::load_or_create(&fleet_dir.join(KEY_FILE))?);
        *k = Some(key.clone());
        Ok(key)
    }

    /// The HMAC key held in memory; when none is yet (no apply since the daemon started), the
    /// existing key in `fleet_dir` is loaded and held, never created.
    pub fn existing_key(&self, fleet_dir: &Path) -> Result<Arc<SecretKey>, SecretKeyError> {
        let mut k = lock(&self.key);
        if let Some(k) = &*k {
            return Ok(k.clone());
        }
        let key = Arc::new(SecretKey::load(&fleet_dir.join(KEY_FILE))?);
        *k = Some(key.clone());
        Ok(key)
    }

    /// The HMAC key, if an apply has loaded it.
    pub fn loaded_key(&self) -> Option<Arc<SecretKey>> {
        lock(&self.key).clone()
    }

    /// Hold the values read at an apply (older values stay until [`SecretStore::retain`]
    /// drops them).
    pub fn insert(&self, values: &SecretValues) {
        let mut m = lock(&self.values);
        for (service, vs) in values {
            for v in vs {
                m.insert(
                    (service.clone(), v.name.clone(), v.hmac.clone()),
                    v.value.clone(),
                );
            }
        }
    }

    /// The values of every one of `secrets` (of `service`), or the names of those not held.
    pub fn held(
        &self,
        service: &str,
        secrets: &BTreeMap<String, SecretRef>,
    ) -> Result<Vec<HeldSecret>, Vec<String>> {
        let m = lock(&self.values);
        let mut held = Vec::with_capacity(secrets.len());
        let mut missing = Vec::new();
        for (name, s) in secrets {
            match m.get(&(service.to_string(), name.clone(), s.hmac.clone())) {
                Some(v) => held.push(HeldSecret {
                    name: name.clone(),
                    env: s.env,
                    value: v.clone(),
                }),
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(held)
        } else {
            Err(missing)
        }
    }

    /// The names of `secrets` (of `service`) whose values are not held.
    pub fn missing(&self, service: &str, secrets: &BTreeMap<String, SecretRef>) -> Vec<String> {
        let m = lock(&self.values);
        secrets
            .iter()
            .filter(|(name, s)| {
                !m.contains_key(&(service.to_string(), name.to_string(), s.hmac.clone()))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Drop (and zero) every value for which `keep(service, name, hmac)` is false.
    pub fn retain(&self, keep: impl Fn(&str, &str, &str) -> bool) {
        lock(&self.values).retain(|(s, n, h), _| keep(s, n, h));
    }

    /// Whether any value is held.
    pub fn is_empty(&self) -> bool {
        lock(&self.values).is_empty()
    }

    /// `line` with every held value of `service` redacted ([`redact_line`]).
    pub fn redact<'a>(&self, service: &str, line: &'a str) -> Cow<'a, str> {
        let m = lock(&self.values);
        let held: Vec<(&str, &[u8])> = m
            .iter()
            .filter(|((s, _, _), _)| s == service)
            .map(|((_, n, _), v)| (n.as_str(), v.as_slice()))
            .collect();
        if held.is_empty() {
            return Cow::Borrowed(line);
        }
        Cow::Owned(redact_line(line, &held).into_owned())
    }
}

/// `line` (one line of instance output) with each occurrence of a secret value replaced by
/// `[redacted secret NAME]`. A value is matched within the line; a multi-line value is matched
/// line by line. Values (or lines of them) shorter than [`MIN_REDACTED`] bytes, and values that
/// are not UTF-8, are not redacted, nor is a value split across two output lines or written
/// in another encoding (base64, hex...).
pub fn redact_line<'a>(line: &'a str, secrets: &[(&str, &[u8])]) -> Cow<'a, str> {
    let mut pieces: Vec<(&str, &str)> = Vec::new();
    for (name, value) in secrets {
        for piece in value.split(|&b| b == b'\n') {
            let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
            if piece.len() < MIN_REDACTED {
                continue;
            }
            if let Ok(p) = std::str::from_utf8(piece) {
                pieces.push((name, p));
            }
        }
    }
    // Longest first: a value that contains another is redacted whole.
    pieces.sort_by_key(|(_, p)| std::cmp::Reverse(p.len()));
    let mut out = Cow::Borrowed(line);
    for (name, p) in pieces {
        if out.contains(p) {
            out = Cow::Owned(out.replace(p, &format!("[redacted secret {name}]")));
        }
    }
    out
}
