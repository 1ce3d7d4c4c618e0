//! `[service.<name>.secrets]`: secrets that never persist and never leak.
//!
//! ```toml
//! [service.web.secrets]
//! DB_PASSWORD = { file = "/etc/kiln/secrets/orders-db" }   # relative paths: to the deploy file
//! API_TOKEN = { file = "token", env = true }                # also the variable API_TOKEN
//! ```
//!
//! The deploy file names a file per secret; `kiln serve` reads it at `kiln apply` (never the
//! client), keeps the value in its memory only and delivers it to each instance as
//! `/run/secrets/<NAME>` on a tmpfs. What is stored ([`SecretRef`], inside each release in
//! `fleet.redb`) is the name, the path, the `env` flag and an HMAC-SHA256 of the value under a
//! key in `<state>/fleet/secret.key`: a rotation is visible (and is a new release), the value is
//! not there.
//!
//! - this file: the table's strict parsing and reading the values at apply;
//! - `file.rs`: the checks on a secret file and the HMAC key file;
//! - `store.rs`: the daemon's in-memory store, and the redaction of `kiln logs`;
//! - `deliver.rs`: the daemon's tmpfs and each instance's secret files on it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use zeroize::Zeroizing;

use crate::deploy::{DeployError, Deployment};

mod deliver;
mod file;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use deliver::{ensure_tmpfs, remove_instance_dir, write_instance_secrets};
pub use file::read_secret_file;
pub use file::{KEY_FILE, MAX_SECRET_BYTES, SecretFileError, SecretKey, SecretKeyError};
pub use store::redact_line;
pub(crate) use store::{HeldSecret, SecretStore};

/// Longest secret name.
pub const MAX_NAME_LEN: usize = 64;

/// One declared secret, as stored with the service: never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// Absolute path of the file that holds the value (read by the daemon at apply).
    pub path: PathBuf,
    /// Also exported to the instance as the environment variable of the secret's name.
    #[serde(default)]
    pub env: bool,
    /// HMAC-SHA256 (hex) of the value under the daemon's secret key; empty until the daemon
    /// has read the file.
    #[serde(default)]
    pub hmac: String,
}

/// Whether two sets of secrets give an instance the same thing (names, values, `env`): the
/// paths they were read from do not matter.
pub(crate) fn deliveries_differ(
    a: &BTreeMap<String, SecretRef>,
    b: &BTreeMap<String, SecretRef>,
) -> bool {
    a.len() != b.len()
        || a.iter()
            .zip(b)
            .any(|((na, sa), (nb, sb))| na != nb || sa.env != sb.env || sa.hmac != sb.hmac)
}

/// What of the secrets goes into a release's fingerprint.
pub(crate) fn fingerprint(secrets: &BTreeMap<String, SecretRef>) -> String {
    secrets
        .iter()
        .map(|(n, s)| format!("{n}:{}:{}", s.env, s.hmac))
        .collect::<Vec<_>>()
        .join(",")
}

/// `{ file = "...", env = false }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    file: Spanned<String>,
    #[serde(default)]
    env: Option<Spanned<bool>>,
}

/// A secret name: an environment-variable-like identifier.
pub fn valid_name(n: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&n.len())
        && n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !n.as_bytes()[0].is_ascii_digit()
}

/// A service's checked secrets, and the byte offset of each one's `file` value.
pub(crate) type Parsed = (BTreeMap<String, SecretRef>, BTreeMap<String, usize>);

/// The checked table of service `service`: each secret, and the byte offset of its `file`
/// value (for errors raised when the daemon reads it). `dir` resolves relative paths;
/// `env_keys` are the service's plain `env` names (an `env = true` secret may not shadow one).
pub(crate) fn parse_table(
    service: &str,
    dir: &Path,
    raw: BTreeMap<Spanned<String>, Spanned<RawSecret>>,
    env_keys: &BTreeMap<String, String>,
    err: impl Fn(Range<usize>, String) -> DeployError,
) -> Result<Parsed, DeployError> {
    let mut out = BTreeMap::new();
    let mut at = BTreeMap::new();
    for (name, raw) in raw {
        let k = format!("service.{service}.secrets.{}", name.get_ref());
        if !valid_name(name.get_ref()) {
            return Err(err(
                name.span(),
                format!(
                    "service.{service}.secrets: {:?} is not a secret name ([A-Za-z_][A-Za-z0-9_]*, at most {MAX_NAME_LEN} characters)",
                    name.get_ref()
                ),
            ));
        }
        let raw = raw.into_inner();
        let file = raw.file.get_ref();
        if file.is_empty() || file.contains('\0') {
            return Err(err(
                raw.file.span(),
                format!("{k}.file: expected the path of the file that holds the secret"),
            ));
        }
        let env = raw.env.as_ref().is_some_and(|e| *e.get_ref());
        if env && env_keys.contains_key(name.get_ref()) {
            return Err(err(
                name.span(),
                format!(
                    "{k}: env = true would set {} which service.{service}.env sets too; drop one",
                    name.get_ref()
                ),
            ));
        }
        at.insert(name.get_ref().clone(), raw.file.span().start);
        out.insert(
            name.into_inner(),
            SecretRef {
                path: dir.join(file),
                env,
                hmac: String::new(),
            },
        );
    }
    Ok((out, at))
}

/// One secret's value as the daemon read it. Its `Debug` never shows the value; the value
/// is zeroed when dropped.
pub struct SecretValue {
    pub name: String,
    pub hmac: String,
    pub env: bool,
    pub value: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("hmac", &self.hmac)
            .field("env", &self.env)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish()
    }
}

/// The value of an `env = true` secret as its environment variable: the file's content
/// without one trailing newline; it must be UTF-8 without NUL.
pub fn env_value(value: &[u8]) -> Option<Zeroizing<String>> {
    let v = value.strip_suffix(b"\n").unwrap_or(value);
    let v = v.strip_suffix(b"\r").unwrap_or(v);
    let s = std::str::from_utf8(v).ok()?;
    (!s.contains('\0')).then(|| Zeroizing::new(s.to_string()))
}

/// Prefix of an instance's recorded `config.json` hash when that file holds a secret (an
/// `env = true` one): an HMAC under the secret key instead of a SHA-256, because kiln generates
/// the file, so a plain hash of it would let anyone holding the state directory test guesses
/// of the secret.
pub const CONFIG_HMAC_PREFIX: &str = "hmac-sha256:";

/// The recorded hash of a `config.json` (`bytes`) that holds a secret.
pub(crate) fn config_mac(key: &SecretKey, bytes: &[u8]) -> String {
    format!("{CONFIG_HMAC_PREFIX}{}", key.hmac(bytes))
}

/// The drift check of a bundle whose `config.json` was recorded by [`config_mac`] (`want`)
/// under `key`, the daemon's key as it holds it; `None` when it matches (or the file cannot be
/// read, as for a plain one). A key that cannot be had is a finding: the file is then unchecked.
pub(crate) fn config_drift_keyed(
    bundle: &Path,
    want: &str,
    key: Result<&SecretKey, &SecretKeyError>,
) -> Option<crate::drift::Finding> {
    let bytes = Zeroizing::new(std::fs::read(bundle.join("config.json")).ok()?);
    let config = bundle.join("config.json");
    let detail = match key {
        Ok(key) => {
            let got = config_mac(key, &bytes);
            if got == want {
                return None;
            }
            format!("{} has {got}, kiln generated {want}", config.display())
        }
        Err(e) => format!("{} cannot be checked: {e}", config.display()),
    };
    Some(crate::drift::Finding {
        kind: "config".into(),
        detail,
    })
}

/// Values read at apply, per service.
pub type SecretValues = BTreeMap<String, Vec<SecretValue>>;

impl Deployment {
    /// Whether any service declares a secret.
    pub fn has_secrets(&self) -> bool {
        self.services.values().any(|s| !s.secrets.is_empty())
    }

    /// Reads every declared secret ([`read_secret_file`]: a regular file, not a symlink,
    /// neither world-readable nor world-writable, at most [`MAX_SECRET_BYTES`]) and records
    /// each value's HMAC under `key` in its [`SecretRef`]. The first failure is a
    /// `file:line:col` error at the secret's `file` value that names the secret and its path,
    /// never a value.
    pub fn read_secrets(&mut self, key: &SecretKey) -> Result<SecretValues, DeployError> {
        let mut out = SecretValues::new();
        let mut failed = None;
        for (service, spec) in &mut self.services {
            let mut values = Vec::new();
            for (name, s) in &mut spec.secrets {
                let value = match read_secret_file(&s.path) {
                    Ok(v) => v,
                    Err(e) => {
                        failed = Some((service.clone(), name.clone(), e.to_string()));
                        break;
                    }
                };
                if s.env && env_value(&value).is_none() {
                    failed = Some((
                        service.clone(),
                        name.clone(),
                        format!(
                            "{}: env = true needs a UTF-8 value without NUL bytes",
                            s.path.display()
                        ),
                    ));
                    break;
                }
                s.hmac = key.hmac(&value);
                values.push(SecretValue {
                    name: name.clone(),
                    hmac: s.hmac.clone(),
                    env: s.env,
                    value,
                });
            }
            if failed.is_some() {
                break;
            }
            out.insert(service.clone(), values);
        }
        match failed {
            None => Ok(out),
            Some((service, name, why)) => Err(self.secret_error(
                &service,
                &name,
                format!("service.{service}.secrets.{name}: {why}; nothing was changed"),
            )),
        }
    }
}
