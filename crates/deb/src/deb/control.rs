//! The control member: `debian-binary`, the `control` stanza and its
//! checked fields (name, architecture, version), `conffiles`, and paths.

use crate::DebError;
use crate::stanza::{Stanza, parse_stanzas};

pub(super) fn check_debian_binary(data: &[u8]) -> Result<(), DebError> {
    let bad = || DebError::BadDebianBinary {
        found: String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned(),
    };
    let newline = data.iter().position(|&b| b == b'\n').ok_or_else(bad)?;
    let minor = data[..newline].strip_prefix(b"2.").ok_or_else(bad)?;
    if minor.is_empty() || !minor.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    Ok(())
}

pub(super) fn parse_control(member: &str, bytes: &[u8]) -> Result<Stanza, DebError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DebError::NotUtf8 {
        member: member.to_string(),
        file: "control",
    })?;
    let mut stanzas = parse_stanzas(text).map_err(|e| DebError::BadControl {
        member: member.to_string(),
        source: Box::new(e),
    })?;
    if stanzas.len() != 1 {
        return Err(DebError::ControlParagraphs {
            member: member.to_string(),
            count: stanzas.len(),
        });
    }
    let control = stanzas.remove(0);
    let required = |field: &'static str| {
        control
            .get(field)
            .filter(|v| !v.is_empty())
            .ok_or(DebError::MissingField { field })
    };
    let bad = |field: &'static str, value: &str, reason: &'static str| DebError::BadFieldValue {
        field,
        value: value.to_string(),
        reason,
    };
    let package = required("Package")?;
    check_package_name(package).map_err(|r| bad("Package", package, r))?;
    let version = required("Version")?;
    check_version(version).map_err(|r| bad("Version", version, r))?;
    let arch = required("Architecture")?;
    check_architecture(arch).map_err(|r| bad("Architecture", arch, r))?;
    if let Some(ma) = control.get("Multi-Arch")
        && !["no", "same", "foreign", "allowed"]
            .iter()
            .any(|v| v.eq_ignore_ascii_case(ma))
    {
        return Err(bad(
            "Multi-Arch",
            ma,
            "expected one of no, same, foreign, allowed",
        ));
    }
    Ok(control)
}

/// dpkg's rule: an alphanumeric first character, then alphanumerics and `-+._`.
pub(super) fn check_package_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with an alphanumeric character");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "-+._".contains(c)) {
        return Err("only alphanumerics and '-+._' are allowed");
    }
    Ok(())
}

/// dpkg's rule: an alphanumeric first character, then alphanumerics and `-`.
pub(super) fn check_architecture(arch: &str) -> Result<(), &'static str> {
    let mut chars = arch.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("must start with an alphanumeric character");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err("only alphanumerics and '-' are allowed");
    }
    Ok(())
}

/// dpkg's version syntax: `[epoch:]upstream[-revision]`.
pub(super) fn check_version(version: &str) -> Result<(), &'static str> {
    let rest = match version.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || epoch.parse::<u32>().is_err() {
                return Err("the epoch is not a number");
            }
            if rest.is_empty() {
                return Err("nothing after the epoch");
            }
            rest
        }
        None => version,
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((upstream, revision)) => (upstream, Some(revision)),
        None => (rest, None),
    };
    if upstream.is_empty() {
        return Err("the upstream version is empty");
    }
    if !upstream
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-+~:".contains(c))
    {
        return Err("invalid character in the upstream version");
    }
    if let Some(revision) = revision {
        if revision.is_empty() {
            return Err("the revision is empty");
        }
        if !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c))
        {
            return Err("invalid character in the revision");
        }
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Conffile<'a> {
    pub(super) path: &'a str,
    pub(super) remove_on_upgrade: bool,
}

/// Parses control.tar `conffiles`, checking every line.
pub(super) fn parse_conffiles(text: &str) -> Result<Vec<Conffile<'_>>, DebError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        match parse_conffile_line(line) {
            Ok(Some(conffile)) => out.push(conffile),
            Ok(None) => {}
            Err(reason) => {
                return Err(DebError::BadConffiles {
                    line: index + 1,
                    text: line.to_string(),
                    reason,
                });
            }
        }
    }
    Ok(out)
}

/// One `conffiles` line: `/path` or `remove-on-upgrade /path`; blank lines give `None`.
pub(super) fn parse_conffile_line(line: &str) -> Result<Option<Conffile<'_>>, &'static str> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (remove_on_upgrade, path) = if line.starts_with('/') {
        (false, line)
    } else {
        match line.split_once(char::is_whitespace) {
            Some(("remove-on-upgrade", path)) => (true, path.trim_start()),
            _ => {
                return Err(
                    "expected an absolute path, optionally after the flag remove-on-upgrade",
                );
            }
        }
    };
    if !path.starts_with('/') {
        return Err("conffile path is not absolute");
    }
    Ok(Some(Conffile {
        path,
        remove_on_upgrade,
    }))
}

/// Normalizes a tar path to an absolute one; `Ok(None)` is the root itself.
pub(super) fn normalize_path(path: &str) -> Result<Option<String>, &'static str> {
    if path.contains('\n') {
        return Err("it contains a newline");
    }
    let mut out = String::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("it has a '..' component"),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}
