//! `update-alternatives` links, as the packages' postinsts would make them.
//!
//! Each unpacked package's `postinst` is read for
//! `update-alternatives --install <link> <name> <path> <priority>
//! [--slave <link> <name> <path>]...` with literal arguments (continuation
//! lines joined); a call using shell variables, quotes or substitutions is
//! skipped and noted. Per name, the choice of highest priority whose path
//! exists in the image wins (auto mode; ties go to the first path in byte
//! order): `<link>` -> `/etc/alternatives/<name>` -> `<path>`, the same for
//! each slave whose path exists, and `/var/lib/dpkg/alternatives/<name>`
//! in update-alternatives' own format. Links are only made under `/usr`,
//! `/bin`, `/sbin`, `/lib*`, `/etc` and `/opt` (never `/etc/alternatives`),
//! from clean absolute paths, and never replace anything but a symlink.

use std::collections::BTreeMap;

use super::{Installed, Notes, Over, SystemError, is_clean_abs, note, symlink};
use crate::tarw::EntryType;
use crate::tree::{self, Lookup as _, Node, Origin, Tree};

/// One `update-alternatives --install` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Install {
    pub link: String,
    pub name: String,
    pub path: String,
    pub priority: i64,
    /// `(link, name, path)` of each `--slave`.
    pub slaves: Vec<(String, String, String)>,
}

/// The `--install` calls of a postinst, and a description of each call
/// that was skipped (not literal, or malformed).
pub fn parse_postinst(text: &str) -> (Vec<Install>, Vec<String>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let mut logical = String::new();
    let mut first = 0;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim_end();
        if logical.is_empty() {
            first = i + 1;
        }
        if let Some(cont) = l.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(l);
        let line = std::mem::take(&mut logical);
        match parse_line(&line) {
            None => {}
            Some(Ok(inst)) => found.push(inst),
            Some(Err(why)) => skipped.push(format!("postinst line {first}: {why}")),
        }
    }
    (found, skipped)
}

/// `None` when the line has no `update-alternatives --install`.
fn parse_line(line: &str) -> Option<Result<Install, String>> {
    let mut toks: Vec<&str> = Vec::new();
    for t in line.split_whitespace() {
        if t.starts_with('#') {
            break;
        }
        toks.push(t);
    }
    let at = toks
        .iter()
        .position(|t| *t == "update-alternatives" || t.ends_with("/update-alternatives"))?;
    let mut args = Vec::new();
    for t in &toks[at + 1..] {
        if matches!(*t, ";" | "&&" | "||" | "|") || t.starts_with(['>', '<']) || t.starts_with("2>")
        {
            break;
        }
        if let Some(t) = t.strip_suffix(';') {
            args.push(t);
            break;
        }
        args.push(t);
    }
    let mut args = args
        .into_iter()
        .skip_while(|a| matches!(*a, "--quiet" | "--force"));
    if args.next() != Some("--install") {
        return None;
    }
    let args: Vec<&str> = args.collect();
    if args
        .iter()
        .any(|a| a.contains(['$', '`', '"', '\'', '(', ')', '*', '?', '[', '{']))
    {
        return Some(Err(format!(
            "update-alternatives --install with shell variables or quoting: {}",
            args.join(" ")
        )));
    }
    let bad = || {
        Err(format!(
            "malformed update-alternatives --install {}",
            args.join(" ")
        ))
    };
    let [link, name, path, prio, rest @ ..] = args.as_slice() else {
        return Some(bad());
    };
    let Ok(priority) = prio.parse::<i64>() else {
        return Some(bad());
    };
    let mut slaves = Vec::new();
    for s in rest.chunks(4) {
        match s {
            ["--slave", l, n, p] => slaves.push((l.to_string(), n.to_string(), p.to_string())),
            _ => return Some(bad()),
        }
    }
    Some(Ok(Install {
        link: link.to_string(),
        name: name.to_string(),
        path: path.to_string(),
        priority,
        slaves,
    }))
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n != "."
        && n != ".."
        && !n.contains(['/', '\0', '\n'])
        && !n.chars().any(char::is_whitespace)
}

/// Where an alternative link may be made (after resolving its parents).
fn link_allowed(p: &str) -> bool {
    is_clean_abs(p)
        && !p.starts_with("/etc/alternatives/")
        && [
            "/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/", "/opt/",
        ]
        .iter()
        .any(|pre| p.starts_with(pre))
}

fn check(i: &Install) -> Result<(), String> {
    for (l, n, p) in std::iter::once((&i.link, &i.name, &i.path))
        .chain(i.slaves.iter().map(|(l, n, p)| (l, n, p)))
    {
        if !valid_name(n) {
            return Err(format!("alternative name {n:?} is not a plain name"));
        }
        if !link_allowed(l) {
            return Err(format!(
                "link {l:?} is not a clean path under /usr, /bin, /sbin, /lib*, /etc or /opt"
            ));
        }
        if !is_clean_abs(p) {
            return Err(format!("path {p:?} is not a clean absolute path"));
        }
    }
    Ok(())
}

/// Whether `path` names something in the image, following symlinks (as
/// `stat` does).
pub(crate) fn exists(fs: &dyn tree::Lookup, path: &str) -> Result<bool, SystemError> {
    let mut cur = tree::resolve_parents(fs, path)?;
    for _ in 0..40 {
        match fs.node(&cur) {
            None => return Ok(false),
            Some(n) if n.kind == EntryType::Symlink => {
                let t = n.link.as_deref().unwrap_or("");
                let base = if t.starts_with('/') {
                    "/"
                } else {
                    tree::parent(&cur).unwrap_or("/")
                };
                cur = tree::resolve_parents(fs, &tree::lexical_join(base, t))?;
            }
            Some(_) => return Ok(true),
        }
    }
    Err(tree::SymlinkLoop(path.into()).into())
}

/// Put a symlink at `link` (resolved through its parents) unless something
/// other than a symlink is there; the path it went to, or why not.
fn place(
    layer: &mut Tree,
    lower: &dyn tree::Lookup,
    link: &str,
    target: &str,
) -> Result<Result<String, String>, SystemError> {
    let at = tree::resolve_parents(&Over(layer, lower), link)?;
    if !link_allowed(&at) {
        return Ok(Err(format!(
            "{link} resolves to {at}, outside the allowed places"
        )));
    }
    if let Some(n) = Over(layer, lower).node(&at)
        && n.kind != EntryType::Symlink
    {
        return Ok(Err(format!(
            "{at} exists and is not a symlink: not replaced"
        )));
    }
    layer.insert(at.clone(), symlink(target));
    Ok(Ok(at))
}

pub(super) fn apply(
    layer: &mut Tree,
    lower: &dyn tree::Lookup,
    installed: &Installed<'_>,
    notes: &mut Notes,
) -> Result<(), SystemError> {
    // name -> (package, install) of every valid call whose path exists.
    let mut by_name: BTreeMap<String, Vec<(String, Install)>> = BTreeMap::new();
    for (pkg, script) in installed.postinsts {
        let (found, skipped) = parse_postinst(&String::from_utf8_lossy(script));
        for s in skipped {
            note(notes, pkg, format!("kiln: not done: {s}"));
        }
        for inst in found {
            if let Err(why) = check(&inst) {
                note(
                    notes,
                    pkg,
                    format!("kiln: not done: alternative {}: {why}", inst.name),
                );
                continue;
            }
            if !exists(&Over(layer, lower), &inst.path)? {
                note(
                    notes,
                    pkg,
                    format!(
                        "kiln: not done: alternative {}: {} is not in the image",
                        inst.name, inst.path
                    ),
                );
                continue;
            }
            by_name
                .entry(inst.name.clone())
                .or_default()
                .push((pkg.clone(), inst));
        }
    }
    for (name, mut choices) in by_name {
        choices.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        let master = choices[best_of(&choices)].1.link.clone();
        choices.retain(|(pkg, c)| {
            let same = c.link == master;
            if !same {
                note(
                    notes,
                    pkg,
                    format!(
                        "kiln: not done: alternative {name}: link {} differs from {master}",
                        c.link
                    ),
                );
            }
            same
        });
        let best = best_of(&choices);
        let (pkg, chosen) = &choices[best];
        let mut made = Vec::new();
        match place(layer, lower, &master, &format!("/etc/alternatives/{name}"))? {
            Ok(at) => made.push(at),
            Err(why) => {
                note(
                    notes,
                    pkg,
                    format!("kiln: not done: alternative {name}: {why}"),
                );
                continue;
            }
        }
        layer.insert(format!("/etc/alternatives/{name}"), symlink(&chosen.path));
        // Slaves: the union over the choices, in order of first appearance.
        let mut slaves: Vec<(String, String)> = Vec::new();
        for (_, c) in &choices {
            for (l, n, _) in &c.slaves {
                if !slaves.iter().any(|(_, sn)| sn == n) {
                    slaves.push((l.clone(), n.clone()));
                }
            }
        }
        for (l, n) in &slaves {
            let Some((_, _, p)) = chosen.slaves.iter().find(|s| &s.1 == n) else {
                continue;
            };
            if !exists(&Over(layer, lower), p)? {
                continue;
            }
            match place(layer, lower, l, &format!("/etc/alternatives/{n}"))? {
                Ok(at) => {
                    layer.insert(format!("/etc/alternatives/{n}"), symlink(p));
                    made.push(at);
                }
                Err(why) => note(
                    notes,
                    pkg,
                    format!("kiln: not done: alternative {n}: {why}"),
                ),
            }
        }
        let mut db = format!("auto\n{master}\n");
        for (l, n) in &slaves {
            db.push_str(&format!("{n}\n{l}\n"));
        }
        db.push('\n');
        for (_, c) in &choices {
            db.push_str(&format!("{}\n{}\n", c.path, c.priority));
            for (_, n) in &slaves {
                if let Some((_, _, p)) = c.slaves.iter().find(|s| &s.1 == n) {
                    db.push_str(p);
                }
                db.push('\n');
            }
        }
        db.push('\n');
        layer.insert(
            format!("/var/lib/dpkg/alternatives/{name}"),
            Node::bytes(db.into_bytes(), 0o644, 0, 0, Origin::Spec),
        );
        note(
            notes,
            pkg,
            format!(
                "kiln: alternatives {name} -> {} ({})",
                chosen.path,
                made.join(", ")
            ),
        );
    }
    Ok(())
}

/// The highest-priority choice (the first on a tie).
fn best_of(choices: &[(String, Install)]) -> usize {
    let mut best = 0;
    for (i, c) in choices.iter().enumerate() {
        if c.1.priority > choices[best].1.priority {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests;
