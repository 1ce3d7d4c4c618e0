//! `deploy.toml`: the desired state of `kiln serve`.
//!
//! ```toml
//! [service.web]
//! image = "hello@sha256:<64 hex>"   # or "sha256:<64 hex>"; tags are refused
//! replicas = 3                      # 1..=64, default 1
//! listen = "127.0.0.1:18080"        # the front proxy's address
//! port = 8080                       # the instance's port
//! strategy = "canary"               # or "blue-green" (default)
//! canary = [10, 50, 100]            # required iff strategy = "canary"
//! step_pause = "5s"                 # default 5s
//! max_lifetime = "24h"              # optional
//! health = { http_get = "/", interval = "1s", timeout = "500ms", healthy_after = 1, unhealthy_after = 3 }
//! policy = "trust.toml"             # relative to this file's directory
//! tmpfs_mb = 64                     # optional
//! env = { MODE = "prod" }           # optional
//! reason = "CHG-42"                 # optional
//!
//! [service.web.limits]              # optional; see `crate::limits`
//! memory = "256MiB"                 # default 512MiB
//! pids = 256                        # default 512
//! cpu = 1.0                         # cores, default 1
//!
//! [service.web.secrets]             # optional: see crate::secrets
//! DB_PASSWORD = { file = "/etc/kiln/secrets/orders-db", env = false }
//!
//! [service.web.egress]              # optional: where the image's declared egress goes
//! "db.internal:5432" = "127.0.0.1:15432"
//! ```
//!
//! Parsing is strict: unknown keys, wrong types and invalid values are errors that name
//! `file:line:col`, quote the offending line and put a caret under the column.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::limits::Limits;

/// Most replicas a service may ask for.
pub const MAX_REPLICAS: u32 = 64;
/// Largest `/tmp` + `/run` tmpfs cap, in MiB.
pub const MAX_TMPFS_MB: u32 = 16 * 1024;

/// A deploy-file error, located in its file when the location is known (line 0 otherwise).
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {message}{snippet}", file.display())]
pub struct DeployError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The offending line with a caret under the column (empty if unknown).
    pub snippet: String,
}

// ---------------------------------------------------------------------------------------------
// Typed model
// ---------------------------------------------------------------------------------------------

/// A parsed, validated `deploy.toml`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Deployment {
    pub services: BTreeMap<String, ServiceSpec>,
    /// Where each value came from, for errors raised after parsing (not stored).
    #[serde(skip)]
    origin: Option<Arc<Origin>>,
}

impl PartialEq for Deployment {
    fn eq(&self, other: &Self) -> bool {
        self.services == other.services
    }
}
impl Eq for Deployment {}

#[derive(Debug)]
struct Origin {
    file: PathBuf,
    text: String,
    /// Byte offset of each service's `listen` value.
    listen_at: BTreeMap<String, usize>,
    /// Byte offsets of each service's explicit limits.
    limits_at: BTreeMap<String, crate::limits::LimitsAt>,
    /// Byte offset of each secret's `file` value, per (service, secret name).
    secret_at: BTreeMap<(String, String), usize>,
    /// Where each service's image and egress settings are.
    egress_at: BTreeMap<String, crate::egress::Spans>,
}

/// One `[service.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub image: ImageRef,
    pub replicas: u32,
    /// The front proxy's address.
    pub listen: SocketAddr,
    /// The port the instance listens on inside its network namespace.
    pub port: u16,
    pub strategy: Strategy,
    #[serde(with = "serde_duration")]
    pub step_pause: Duration,
    #[serde(with = "serde_opt_duration", default)]
    pub max_lifetime: Option<Duration>,
    pub health: Health,
    /// Absolute path of the trust policy every image must pass.
    pub policy: PathBuf,
    #[serde(default)]
    pub tmpfs_mb: Option<u32>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free text for the audit log; not part of the plan comparison.
    #[serde(default)]
    pub reason: Option<String>,
    /// Memory, pids and CPU of each instance: always `Some` from a parsed deploy file (the
    /// defaults when the table is absent). `None` only in specs stored before kiln had limits:
    /// their instances run without any, so the next `kiln apply` differs and rolls them.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// `[service.<name>.secrets]`, per secret name: where each value is read from and its
    /// HMAC, never the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secrets::SecretRef>,
    /// `[service.X.egress]`: each destination the image declares → `host:port` on this
    /// host (see [`crate::egress`]). Checked against the image at `kiln apply`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub egress: crate::egress::EgressMap,
    /// `[service.X.analysis]`: judge each canary step (and the blue-green window) on the
    /// traffic through the proxy; `None` (no table): steps advance on `step_pause` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::analysis::Analysis>,
    /// `proxy_protocol = true`: the proxy (and kiln's health checks) start each upstream
    /// connection with a PROXY protocol v2 header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
}

/// An image pinned by digest: `name@sha256:<hex>` or `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageRef {
    pub name: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
}

impl ImageRef {
    /// The 64 hex characters of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n}@{}", self.digest),
            None => f.write_str(&self.digest),
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

const PIN_HINT: &str = "pin the image by digest: `name@sha256:<hex>`, with the `sha256:<hex>` that `kiln build` prints as its last line (or `kiln images` lists)";

/// Why a deployment's image reference is refused: it must be pinned by digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    #[error("image {0:?} is a tag, not a digest: tags can move, so they are refused; {PIN_HINT}")]
    Tag(String),
    #[error("image {0:?}: the digest must be sha256:<64 hex characters>; {PIN_HINT}")]
    NotSha256(String),
    #[error("image {0:?}: the digest must be sha256: followed by 64 lowercase hex characters")]
    BadHex(String),
    #[error(
        "image {image:?} names both a tag and a digest; drop the tag (\":{tag}\") and keep the digest"
    )]
    TagAndDigest { image: String, tag: String },
    #[error("image {image:?}: {source}")]
    Name {
        image: String,
        #[source]
        source: kiln_oci::layout::NameError,
    },
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<ImageRef, ImageRefError> {
        let (name, digest) = match s.rsplit_once('@') {
            Some((n, d)) => (Some(n), d),
            None if s.starts_with("sha256:") => (None, s),
            None => return Err(ImageRefError::Tag(s.into())),
        };
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return Err(ImageRefError::NotSha256(s.into()));
        };
        if !is_sha256_hex(hex) {
            return Err(ImageRefError::BadHex(s.into()));
        }
        let name = match name {
            Some(n) => {
                if let Some((_, tag)) = n.rsplit_once(':')
                    && !tag.contains('/')
                {
                    return Err(ImageRefError::TagAndDigest {
                        image: s.into(),
                        tag: tag.into(),
                    });
                }
                kiln_oci::layout::validate_name(n).map_err(|source| ImageRefError::Name {
                    image: s.into(),
                    source,
                })?;
                Some(n.to_string())
            }
            None => None,
        };
        Ok(ImageRef {
            name,
            digest: digest.to_string(),
        })
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ImageRef, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a new release replaces the running one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Strategy {
    /// Start the full new set, health-check it, switch every new connection at once.
    BlueGreen,
    /// Shift connection weight in steps (percent of new connections; strictly increasing,
    /// ending at 100), with a health gate at each step.
    Canary { steps: Vec<u8> },
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::BlueGreen => f.write_str("blue-green"),
            Strategy::Canary { steps } => {
                let s: Vec<String> = steps.iter().map(|p| format!("{p}%")).collect();
                write!(f, "canary [{}]", s.join(", "))
            }
        }
    }
}

/// The health check of each instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub check: HealthCheck,
    #[serde(with = "serde_duration")]
    pub interval: Duration,
    #[serde(with = "serde_duration")]
    pub timeout: Duration,
    /// Consecutive successes before an instance is healthy.
    pub healthy_after: u32,
    /// Consecutive failures before an instance is unhealthy.
    pub unhealthy_after: u32,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            check: HealthCheck::Tcp,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_after: 1,
            unhealthy_after: 3,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.check {
            HealthCheck::HttpGet { path } => write!(f, "http_get {path}")?,
            HealthCheck::Tcp => f.write_str("tcp")?,
        }
        write!(
            f,
            " every {} (timeout {}, healthy after {}, unhealthy after {})",
            format_duration(self.interval),
            format_duration(self.timeout),
            self.healthy_after,
            self.unhealthy_after
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// `GET <path>` over HTTP/1.0 must answer 2xx or 3xx.
    HttpGet { path: String },
    /// A TCP connect must succeed.
    Tcp,
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

/// The workspace's one duration parser in its deploy grammar (`500ms`, `5s`, `15m`, `24h`,
/// `7d`), re-exported so `kiln_fleet::parse_duration` keeps working.
pub use kiln_oci::duration::{DurationError, format_duration, parse_duration};

mod serde_duration {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod serde_opt_duration {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

// ---------------------------------------------------------------------------------------------
/// A `listen` address that can't be bound on this host.
#[derive(Debug, thiserror::Error)]
#[error("service.{service}.listen: cannot listen on {addr}: {why} ({source})")]
pub struct ListenError {
    pub service: String,
    pub addr: SocketAddr,
    /// A plain-words reason.
    pub why: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// Checks, with a bind attempt, that `addr` (service `service`'s `listen`) is free on this
/// host. The daemon skips it for addresses its own proxies already serve.
pub fn check_listen_free(service: &str, addr: SocketAddr) -> Result<(), ListenError> {
    match TcpListener::bind(addr) {
        Ok(_) => Ok(()),
        Err(source) => Err(ListenError {
            service: service.to_string(),
            addr,
            why: match source.kind() {
                std::io::ErrorKind::AddrInUse => "the port is already in use on this host",
                std::io::ErrorKind::AddrNotAvailable => "the address is not assigned to this host",
                std::io::ErrorKind::PermissionDenied => {
                    "permission denied (ports below 1024 need root)"
                }
                _ => "the bind failed",
            },
            source,
        }),
    }
}

impl Deployment {
    /// [`check_listen_free`] for every service except those for which `skip(name, addr)` is
    /// true (the daemon already serves that address). The error names the `listen` value's
    /// `file:line:col` when the deployment was parsed from a file.
    pub fn check_listen_free(
        &self,
        skip: impl Fn(&str, SocketAddr) -> bool,
    ) -> Result<(), DeployError> {
        for (name, svc) in &self.services {
            if skip(name, svc.listen) {
                continue;
            }
            if let Err(e) = check_listen_free(name, svc.listen) {
                let message = e.to_string();
                return Err(match &self.origin {
                    Some(o) => match o.listen_at.get(name) {
                        Some(&at) => error_at(&o.file, &o.text, at, message),
                        None => error_unlocated(&o.file, message),
                    },
                    None => error_unlocated(Path::new("deploy.toml"), message),
                });
            }
        }
        Ok(())
    }
}

impl Deployment {
    /// Refuses explicit limits this host cannot give one instance: more cores than it has
    /// online, or more memory than its `MemTotal` (`None`: not checked). The error names the
    /// value's `file:line:col` when the deployment was parsed from a file.
    pub fn check_limits_fit(
        &self,
        cpus: Option<u32>,
        memory_bytes: Option<u64>,
    ) -> Result<(), DeployError> {
        let Some(o) = &self.origin else {
            return Ok(());
        };
        for (name, svc) in &self.services {
            let (Some(at), Some(l)) = (o.limits_at.get(name), &svc.limits) else {
                continue;
            };
            if let (Some(cpus), Some(off)) = (cpus, at.cpu)
                && u64::from(l.cpu_millicores) > u64::from(cpus) * 1000
            {
                return Err(error_at(
                    &o.file,
                    &o.text,
                    off,
                    format!(
                        "service.{name}.limits.cpu: {} cores is more than this host has ({cpus})",
                        l.cpu_cores()
                    ),
                ));
            }
            if let (Some(mem), Some(off)) = (memory_bytes, at.memory)
                && l.memory_bytes > mem
            {
                return Err(error_at(
                    &o.file,
                    &o.text,
                    off,
                    format!(
                        "service.{name}.limits.memory: {} is more than this host's memory ({})",
                        crate::limits::format_size(l.memory_bytes),
                        crate::limits::format_size(mem)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An error at secret `name` of `service` (its `file` value) when the deployment was
    /// parsed from a file.
    pub(crate) fn secret_error(&self, service: &str, name: &str, message: String) -> DeployError {
        match &self.origin {
            Some(o) => match o.secret_at.get(&(service.to_string(), name.to_string())) {
                Some(&at) => error_at(&o.file, &o.text, at, message),
                None => error_unlocated(&o.file, message),
            },
            None => error_unlocated(Path::new("deploy.toml"), message),
        }
    }

    /// Checks service `service`'s `[service.X.egress]` against what its image declares (its
    /// `[baseline]`) and the front proxies' addresses `listens` (see
    /// [`crate::egress::check_mapping`]); the error names the offending key, value or table
    /// (or the `image` when there is no table) as `file:line:col`.
    pub fn check_egress(
        &self,
        service: &str,
        baseline: Option<&serde_json::Value>,
        listens: &[SocketAddr],
    ) -> Result<(), DeployError> {
        let Some(spec) = self.services.get(service) else {
            return Ok(());
        };
        let declared = crate::egress::declared(baseline);
        let Err(e) = crate::egress::check_mapping(service, &spec.egress, &declared, listens) else {
            return Ok(());
        };
        let message = e.to_string();
        let Some(o) = &self.origin else {
            return Err(error_unlocated(Path::new("deploy.toml"), message));
        };
        let spans = o.egress_at.get(service);
        let at = spans.and_then(|s| match e.at() {
            crate::egress::At::Key(k) => s.keys.get(&k).copied(),
            crate::egress::At::Value(k) => s.values.get(&k).copied(),
            crate::egress::At::Table => Some(s.table.unwrap_or(s.image)),
        });
        Err(match at {
            Some(at) => error_at(&o.file, &o.text, at, message),
            None => error_unlocated(&o.file, message),
        })
    }
}

mod parse;
use parse::{error_at, error_unlocated};
mod plan;
pub use plan::{Change, Plan, ServiceAction, plan};

#[cfg(test)]
mod tests;
