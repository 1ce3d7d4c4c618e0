//! Baseline findings: configuration an immutable, shell-less image should
//! not have. Each finding has a stable id:
//!
//! | id | severity | what |
//! |---|---|---|
//! | KILN-BASE-001 | high | an SSH server (`sshd` binary or `openssh-server`/`dropbear` package) |
//! | KILN-BASE-002 | critical | SSH host private keys (`/etc/ssh/ssh_host_*_key`) |
//! | KILN-BASE-003 | high | an `authorized_keys` file anywhere |
//! | KILN-BASE-004 | medium | a setuid or setgid file |
//! | KILN-BASE-005 | medium | a world-writable file or non-sticky directory |
//! | KILN-BASE-006 | high | the image runs as root (config `User` empty, `root` or `0`, any group) |
//! | KILN-BASE-007 | medium | a declared port (`ExposedPorts`) not in `[baseline] ingress` |
//! | KILN-BASE-008 | low | `log_level` above `info` (`debug`, `trace`) |
//! | KILN-BASE-009 | high | `tls_min_version` below 1.2 |
//! | KILN-BASE-010 | medium | an `egress` rule without a reason |

use serde::{Deserialize, Serialize};

use crate::Severity;
use crate::inventory::Inventory;

/// The config label that carries the spec's `[baseline]` (compact JSON).
pub const BASELINE_LABEL: &str = "dev.kiln.baseline";

pub const SSH_SERVER: &str = "KILN-BASE-001";
pub const SSH_HOST_KEY: &str = "KILN-BASE-002";
pub const AUTHORIZED_KEYS: &str = "KILN-BASE-003";
pub const SETUID: &str = "KILN-BASE-004";
pub const WORLD_WRITABLE: &str = "KILN-BASE-005";
pub const ROOT_USER: &str = "KILN-BASE-006";
pub const UNDECLARED_PORT: &str = "KILN-BASE-007";
pub const VERBOSE_LOGGING: &str = "KILN-BASE-008";
pub const WEAK_TLS: &str = "KILN-BASE-009";
pub const EGRESS_NO_REASON: &str = "KILN-BASE-010";

/// `(id, severity, title)` of every baseline rule (for SARIF rules).
pub const RULES: &[(&str, Severity, &str)] = &[
    (SSH_SERVER, Severity::High, "SSH server in the image"),
    (
        SSH_HOST_KEY,
        Severity::Critical,
        "SSH host private key in the image",
    ),
    (
        AUTHORIZED_KEYS,
        Severity::High,
        "authorized_keys file in the image",
    ),
    (SETUID, Severity::Medium, "setuid or setgid file"),
    (WORLD_WRITABLE, Severity::Medium, "world-writable path"),
    (ROOT_USER, Severity::High, "image runs as root"),
    (
        UNDECLARED_PORT,
        Severity::Medium,
        "exposed port not declared as ingress",
    ),
    (VERBOSE_LOGGING, Severity::Low, "log level above info"),
    (WEAK_TLS, Severity::High, "minimum TLS version below 1.2"),
    (
        EGRESS_NO_REASON,
        Severity::Medium,
        "egress rule without a reason",
    ),
];

/// The spec's `[baseline]` as carried in the `dev.kiln.baseline` label
/// (read leniently: unknown keys are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineConfig {
    #[serde(default)]
    pub log_level: Option<String>,
    #[serde(default)]
    pub tls_min_version: Option<String>,
    #[serde(default)]
    pub ingress: Vec<u16>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

/// `"host:port"` or `{ to, reason }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EgressRule {
    Plain(String),
    Rule {
        to: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// One baseline finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: String,
    pub severity: Severity,
    pub title: String,
    /// The file concerned (absolute path in the image), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub detail: String,
    pub fix: String,
}

fn finding(id: &str, path: Option<&str>, detail: String, fix: &str) -> Finding {
    let (severity, title) = RULES
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, s, t)| (*s, t.to_string()))
        .unwrap_or((Severity::Unknown, id.to_string()));
    Finding {
        id: id.to_string(),
        severity,
        title,
        path: path.map(str::to_string),
        detail,
        fix: fix.to_string(),
    }
}

const SSH_SERVER_PACKAGES: &[&str] = &["openssh-server", "dropbear", "dropbear-bin", "tinysshd"];

/// Every baseline finding for `inv`, in id order then path order.
pub fn baseline_findings(inv: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    // 001: SSH server.
    for p in &inv.packages {
        if SSH_SERVER_PACKAGES.contains(&p.name.as_str()) {
            out.push(finding(
                SSH_SERVER,
                Some(&format!("/{}", p.status_file.trim_start_matches('/'))),
                format!("package {} {} is installed", p.name, p.version),
                "remove the SSH server: instances are replaced, never logged into; use `kiln debug` for a shell",
            ));
        }
    }
    for f in &inv.files {
        let base = f.path.rsplit('/').next().unwrap_or("");
        if f.kind != "dir" && (base == "sshd" || base == "dropbear") {
            out.push(finding(
                SSH_SERVER,
                Some(&f.path),
                format!("SSH server binary {}", f.path),
                "remove the SSH server: instances are replaced, never logged into; use `kiln debug` for a shell",
            ));
        }
    }
    // 002, 003: keys.
    for f in &inv.files {
        if f.kind == "dir" {
            continue;
        }
        let base = f.path.rsplit('/').next().unwrap_or("");
        if f.path.starts_with("/etc/ssh/ssh_host_") && base.ends_with("_key") {
            out.push(finding(
                SSH_HOST_KEY,
                Some(&f.path),
                format!("SSH host private key {}", f.path),
                "remove host keys from the image; every copy of the image shares them",
            ));
        }
        if base == "authorized_keys" || base == "authorized_keys2" {
            out.push(finding(
                AUTHORIZED_KEYS,
                Some(&f.path),
                format!("{} grants SSH logins", f.path),
                "remove authorized_keys; deploy a new image instead of logging in",
            ));
        }
    }
    // 004: setuid/setgid.
    for f in &inv.files {
        if f.kind != "file" && f.kind != "hardlink" {
            continue;
        }
        let bits = f.mode & 0o6000;
        if bits != 0 {
            let what = match bits {
                0o6000 => "setuid and setgid",
                0o4000 => "setuid",
                _ => "setgid",
            };
            out.push(finding(
                SETUID,
                Some(&f.path),
                format!("{} is {what} (mode {:04o})", f.path, f.mode),
                "clear the setuid/setgid bit (mode in [[files]]) or drop the file",
            ));
        }
    }
    // 005: world-writable (symlinks always 0777: ignored; sticky dirs allowed).
    for f in &inv.files {
        if f.kind == "symlink" || f.mode & 0o002 == 0 {
            continue;
        }
        if f.kind == "dir" && f.mode & 0o1000 != 0 {
            continue;
        }
        out.push(finding(
            WORLD_WRITABLE,
            Some(&f.path),
            format!(
                "{} {} is world-writable (mode {:04o})",
                f.kind, f.path, f.mode
            ),
            "remove the o+w bit; the root filesystem is read-only at runtime anyway",
        ));
    }
    // 006: root.
    let user = inv.config.config.user.as_deref().unwrap_or("").trim();
    let uid = user.split(':').next().unwrap_or("");
    if uid.is_empty() || uid == "root" || uid == "0" {
        out.push(finding(
            ROOT_USER,
            None,
            format!(
                "config User is {}",
                if user.is_empty() {
                    "unset (root)".to_string()
                } else {
                    format!("{user:?}")
                }
            ),
            "set `user = \"65532:65532\"` (or another non-root uid) in [image]",
        ));
    }
    // 007: ports vs ingress.
    let baseline = inv.baseline.clone().unwrap_or_default();
    for port in inv.config.config.exposed_ports.keys() {
        let num = port.split('/').next().unwrap_or("").parse::<u16>().ok();
        if num.is_none_or(|n| !baseline.ingress.contains(&n)) {
            out.push(finding(
                UNDECLARED_PORT,
                None,
                format!(
                    "port {port} is exposed but [baseline] ingress is {:?}",
                    baseline.ingress
                ),
                "add the port to [baseline] ingress, or stop exposing it",
            ));
        }
    }
    // 008: log level.
    if let Some(l) = &baseline.log_level {
        let l = l.to_ascii_lowercase();
        if l == "debug" || l == "trace" {
            out.push(finding(
                VERBOSE_LOGGING,
                None,
                format!("[baseline] log_level = {l:?}"),
                "set log_level to \"info\" or above; debug logs leak data",
            ));
        }
    }
    // 009: TLS.
    if let Some(t) = &baseline.tls_min_version
        && tls_below_1_2(t)
    {
        out.push(finding(
            WEAK_TLS,
            None,
            format!("[baseline] tls_min_version = {t:?}"),
            "set tls_min_version = \"1.2\" or \"1.3\"",
        ));
    }
    // 010: egress without reason.
    for e in &baseline.egress {
        let (to, reason) = match e {
            EgressRule::Plain(to) => (to.as_str(), None),
            EgressRule::Rule { to, reason } => (to.as_str(), reason.as_deref()),
        };
        if reason.is_none_or(|r| r.trim().is_empty()) {
            out.push(finding(
                EGRESS_NO_REASON,
                None,
                format!("egress to {to} has no reason"),
                "write egress as { to = \"host:port\", reason = \"why\" }",
            ));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id).then_with(|| a.path.cmp(&b.path)));
    out
}

/// `"1.0"`, `"1.1"`, `"TLSv1.1"`, `"ssl3"`… → below 1.2; unparseable values
/// are reported too (a baseline that cannot be read is not a baseline).
fn tls_below_1_2(t: &str) -> bool {
    let s = t.trim().to_ascii_lowercase();
    if s.starts_with("ssl") {
        return true;
    }
    let s = s.trim_start_matches("tlsv").trim_start_matches("tls");
    let mut it = s.split('.');
    let major = it.next().and_then(|x| x.parse::<u32>().ok());
    let minor = it.next().map_or(Some(0), |x| x.parse::<u32>().ok());
    match (major, minor) {
        (Some(ma), Some(mi)) => (ma, mi) < (1, 2),
        _ => true,
    }
}
