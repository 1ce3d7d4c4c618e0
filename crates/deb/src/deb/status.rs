//! What dpkg records for a package: the status file's field order, the
//! fields it drops, and how it normalises versions and relations.

use std::collections::HashMap;

use super::{DataEntry, EntryKind};

/// dpkg's order of known fields in the status file.
pub(super) const STATUS_ORDER: &[&str] = &[
    "Package",
    "Essential",
    "Protected",
    "Status",
    "Priority",
    "Section",
    "Installed-Size",
    "Origin",
    "Maintainer",
    "Bugs",
    "Architecture",
    "Multi-Arch",
    "Source",
    "Version",
    "Config-Version",
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
    "Conffiles",
    "Description",
    "Triggers-Pending",
    "Triggers-Awaited",
];

/// Fields dpkg knows but does not write for an installed package.
pub(super) const DROPPED_FIELDS: &[&str] =
    &["Revision", "Filename", "Size", "MD5sum", "MSDOS-Filename"];

pub(super) const RELATION_FIELDS: &[&str] = &[
    "Replaces",
    "Provides",
    "Depends",
    "Pre-Depends",
    "Recommends",
    "Suggests",
    "Breaks",
    "Conflicts",
    "Enhances",
];

/// Follows hard links and symlinks inside the package to a regular file's MD5.
pub(super) fn resolve_md5<'a>(
    index: &HashMap<&str, &'a DataEntry>,
    path: &str,
) -> Option<&'a [u8; 16]> {
    let mut path = path.to_string();
    for _ in 0..40 {
        match &index.get(path.as_str())?.kind {
            EntryKind::File(f) => return Some(&f.md5),
            EntryKind::Hardlink(target) => path = target.clone(),
            EntryKind::Symlink(target) => path = resolve_symlink(&path, target),
            EntryKind::Dir => return None,
        }
    }
    None
}

/// The absolute path a symlink at `link` pointing to `target` names, resolved
/// lexically (`..` at the root stays at the root).
pub(super) fn resolve_symlink(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !target.starts_with('/') {
        parts.extend(link.split('/').filter(|c| !c.is_empty()));
        parts.pop();
    }
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Drops a zero epoch the way dpkg displays versions (`0:1.0` → `1.0`).
pub(super) fn normalize_version(version: &str) -> String {
    let version = version.trim();
    if let Some((epoch, rest)) = version.split_once(':')
        && !epoch.is_empty()
        && epoch.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = epoch.parse::<u32>()
    {
        if n == 0 && !rest.contains(':') {
            return rest.to_string();
        }
        return format!("{n}:{rest}");
    }
    version.to_string()
}

/// Rewrites a relationship field as dpkg writes it: `a (>= 1), b | c:any`.
/// Values it cannot parse are kept verbatim.
pub(super) fn normalize_relations(value: &str) -> String {
    let normalized: Option<Vec<String>> = value
        .split(',')
        .map(|group| {
            let alternatives: Option<Vec<String>> =
                group.split('|').map(normalize_relation).collect();
            alternatives.map(|a| a.join(" | "))
        })
        .collect();
    normalized.map_or_else(|| value.to_string(), |groups| groups.join(", "))
}

pub(super) fn normalize_relation(relation: &str) -> Option<String> {
    let relation = relation.trim();
    let end = relation
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(relation.len());
    let (name, rest) = relation.split_at(end);
    if name.is_empty() {
        return None;
    }
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Some(name.to_string());
    }
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?.trim();
    let (op, version) = [
        ("<<", "<<"),
        ("<=", "<="),
        (">=", ">="),
        (">>", ">>"),
        ("=", "="),
        ("<", "<="),
        (">", ">="),
    ]
    .into_iter()
    .find_map(|(prefix, op)| inner.strip_prefix(prefix).map(|v| (op, v.trim())))?;
    if version.is_empty() || version.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
        return None;
    }
    Some(format!("{name} ({op} {})", normalize_version(version)))
}
