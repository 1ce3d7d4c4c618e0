//! The kiln file manifest: every path of the image's root filesystem with its
//! type, mode, owner, size, content hash and link target. It is the baseline
//! a drift detector compares running instances against, so reading it back is
//! strict: anything kiln would not have written is rejected.
//!
//! ```json
//! {
//!   "schema": "https://kiln.dev/file-manifest/v1",
//!   "subject": { "name": "hello", "digest": "sha256:…" },
//!   "entries": [
//!     { "path": "/", "type": "dir", "mode": "0755", "uid": 0, "gid": 0, "size": 0, "origin": "base" },
//!     { "path": "/bin/busybox", "type": "file", "mode": "0755", "uid": 0, "gid": 0,
//!       "size": 1234, "sha256": "…", "origin": "package:busybox" },
//!     { "path": "/bin/sh", "type": "symlink", "mode": "0777", "uid": 0, "gid": 0,
//!       "size": 7, "link": "busybox", "origin": "spec" }
//!   ]
//! }
//! ```
//!
//! Entry rules: `path` absolute and normalised (`/`, or no trailing slash,
//! no empty, `.` or `..` components, no NUL); entries strictly increasing in
//! byte order (so sorted and unique, parents first); the parent of every path
//! other than a top-level one listed earlier as a `dir`; `mode` exactly four
//! octal digits; `sha256` (64 lowercase hex) present exactly for `file` and
//! `hardlink`; `link` present exactly for `symlink` (non-empty) and
//! `hardlink` (the absolute path of a listed `file` with the same sha256);
//! `origin` one of `base`, `spec`, `package:<name>`. Unknown and `null`
//! fields are rejected.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::util::{check_abs_path, is_lower_hex, is_sha256_digest, parent, to_json_bytes};
use crate::{FileKind, FileOrigin, FileRecord, Inventory, SbomError};

/// The `schema` value of a version 1 file manifest.
pub const FILE_MANIFEST_SCHEMA: &str = "https://kiln.dev/file-manifest/v1";

/// A parsed (and validated) file manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileManifest {
    /// Always [`FILE_MANIFEST_SCHEMA`].
    pub schema: String,
    /// The image the manifest describes.
    pub subject: ManifestSubject,
    /// Every path of the root filesystem, in byte order.
    pub entries: Vec<ManifestEntry>,
}

/// The image a file manifest is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSubject {
    /// Image name.
    pub name: String,
    /// Image manifest digest, `sha256:<hex>`.
    pub digest: String,
}

/// One path of the root filesystem: a [`FileRecord`] without the SHA-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Absolute normalised path.
    pub path: String,
    /// Entry type.
    pub kind: FileKind,
    /// Permission bits, at most `0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 (files and hard links).
    pub sha256: Option<String>,
    /// Symlink target or hard-link target path.
    pub link: Option<String>,
    /// Which input put the entry there.
    pub origin: FileOrigin,
}

impl From<&FileRecord> for ManifestEntry {
    fn from(r: &FileRecord) -> ManifestEntry {
        ManifestEntry {
            path: r.path.clone(),
            kind: r.kind,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            sha256: r.sha256.clone(),
            link: r.link.clone(),
            origin: r.origin.clone(),
        }
    }
}

#[derive(Serialize)]
struct WireManifest<'a> {
    schema: &'a str,
    subject: WireSubject<'a>,
    entries: Vec<WireEntry<'a>>,
}

#[derive(Serialize)]
struct WireSubject<'a> {
    name: &'a str,
    digest: &'a str,
}

#[derive(Serialize)]
struct WireEntry<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<&'a str>,
    origin: String,
}

impl<'a> From<&'a ManifestEntry> for WireEntry<'a> {
    fn from(e: &'a ManifestEntry) -> WireEntry<'a> {
        WireEntry {
            path: &e.path,
            kind: e.kind.as_str(),
            // Only permission bits are recorded; the type is in `type`.
            mode: format!("{:04o}", e.mode & 0o7777),
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            sha256: e.sha256.as_deref(),
            link: e.link.as_deref(),
            origin: origin_name(&e.origin),
        }
    }
}

fn origin_name(origin: &FileOrigin) -> String {
    match origin {
        FileOrigin::Base => "base".to_string(),
        FileOrigin::Spec => "spec".to_string(),
        FileOrigin::Package(name) => format!("package:{name}"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: String,
    subject: RawSubject,
    entries: Vec<EntryItem>,
}

/// One element of `entries`, read with its keys in order and duplicates
/// kept, so a repeated key is an error rather than silently last-wins (as a
/// `serde_json::Map` would make it), and a non-object is reported with its
/// index instead of failing the whole document.
enum EntryItem {
    Object(Vec<(String, Value)>),
    NotObject(&'static str),
}

impl<'de> Deserialize<'de> for EntryItem {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EntryItemVisitor)
    }
}

struct EntryItemVisitor;

impl<'de> serde::de::Visitor<'de> for EntryItemVisitor {
    type Value = EntryItem;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a file manifest entry")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EntryItem, A::Error> {
        let mut pairs = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            pairs.push((key, value));
        }
        Ok(EntryItem::Object(pairs))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<EntryItem, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(EntryItem::NotObject("an array"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("a string"))
    }

    fn visit_unit<E>(self) -> Result<EntryItem, E> {
        Ok(EntryItem::NotObject("null"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    name: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    mode: String,
    uid: u32,
    gid: u32,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    link: Option<String>,
    origin: String,
}

/// The file manifest of an inventory's image, as JSON.
pub fn file_manifest_json(inv: &Inventory) -> Vec<u8> {
    FileManifest::from_inventory(inv).to_json()
}

impl FileManifest {
    /// The manifest of an inventory: subject from the image, one entry per
    /// file record (sorted by path).
    pub fn from_inventory(inv: &Inventory) -> FileManifest {
        let mut entries: Vec<ManifestEntry> = inv.files.iter().map(ManifestEntry::from).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        FileManifest {
            schema: FILE_MANIFEST_SCHEMA.to_string(),
            subject: ManifestSubject {
                name: inv.image.name.clone(),
                digest: inv.image.digest.clone(),
            },
            entries,
        }
    }

    /// Pretty JSON with a trailing newline, keys in a fixed order.
    pub fn to_json(&self) -> Vec<u8> {
        to_json_bytes(&WireManifest {
            schema: &self.schema,
            subject: WireSubject {
                name: &self.subject.name,
                digest: &self.subject.digest,
            },
            entries: self.entries.iter().map(WireEntry::from).collect(),
        })
    }

    /// Reads a file manifest, rejecting anything that breaks the rules in
    /// the module documentation. Errors for an entry name its index and why.
    pub fn parse(bytes: &[u8]) -> Result<FileManifest, SbomError> {
        let raw: RawManifest = serde_json::from_slice(bytes)?;
        if raw.schema != FILE_MANIFEST_SCHEMA {
            return Err(SbomError::Manifest(format!(
                "schema must be {FILE_MANIFEST_SCHEMA:?}, got {:?}",
                raw.schema
            )));
        }
        if raw.subject.name.is_empty() {
            return Err(SbomError::Manifest("subject name is empty".into()));
        }
        if !is_sha256_digest(&raw.subject.digest) {
            return Err(SbomError::Manifest(format!(
                "subject digest must be sha256:<64 lowercase hex>, got {:?}",
                raw.subject.digest
            )));
        }
        let mut entries = Vec::with_capacity(raw.entries.len());
        for (index, item) in raw.entries.into_iter().enumerate() {
            entries.push(parse_entry(index, item)?);
        }
        check_entries(&entries).map_err(|p| SbomError::ManifestEntry {
            index: p.index,
            path: p.path,
            reason: p.reason,
        })?;
        Ok(FileManifest {
            schema: raw.schema,
            subject: ManifestSubject {
                name: raw.subject.name,
                digest: raw.subject.digest,
            },
            entries,
        })
    }

    /// The entry for `path`, if listed (binary search; entries are sorted).
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
}

fn parse_entry(index: usize, item: EntryItem) -> Result<ManifestEntry, SbomError> {
    let pairs = match item {
        EntryItem::Object(pairs) => pairs,
        EntryItem::NotObject(what) => {
            return Err(SbomError::ManifestEntry {
                index,
                path: None,
                reason: format!("entry is {what}, not a JSON object"),
            });
        }
    };
    let path_hint = pairs
        .iter()
        .find(|(k, _)| k == "path")
        .and_then(|(_, v)| v.as_str())
        .map(str::to_string);
    let fail = |reason: String| SbomError::ManifestEntry {
        index,
        path: path_hint.clone(),
        reason,
    };
    let mut object = serde_json::Map::with_capacity(pairs.len());
    for (key, value) in pairs {
        if value.is_null() {
            return Err(fail(format!("field `{key}` is null")));
        }
        if object.contains_key(&key) {
            return Err(fail(format!("duplicate field `{key}`")));
        }
        object.insert(key, value);
    }
    let raw = RawEntry::deserialize(Value::Object(object)).map_err(|e| fail(e.to_string()))?;
    let kind = FileKind::from_name(&raw.kind).ok_or_else(|| {
        fail(format!(
            "type must be file, dir, symlink or hardlink, got {:?}",
            raw.kind
        ))
    })?;
    let mode = parse_mode(&raw.mode).ok_or_else(|| {
        fail(format!(
            "mode must be 4 octal digits like \"0755\", got {:?}",
            raw.mode
        ))
    })?;
    let origin = match raw.origin.as_str() {
        "base" => FileOrigin::Base,
        "spec" => FileOrigin::Spec,
        other => match other.strip_prefix("package:") {
            Some(name) if !name.is_empty() => FileOrigin::Package(name.to_string()),
            _ => {
                return Err(fail(format!(
                    "origin must be \"base\", \"spec\" or \"package:<name>\", got {other:?}"
                )));
            }
        },
    };
    Ok(ManifestEntry {
        path: raw.path,
        kind,
        mode,
        uid: raw.uid,
        gid: raw.gid,
        size: raw.size,
        sha256: raw.sha256,
        link: raw.link,
        origin,
    })
}

fn parse_mode(s: &str) -> Option<u32> {
    if s.len() != 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok()
}

/// What is wrong with which entry.
pub(crate) struct EntryProblem {
    pub index: usize,
    pub path: Option<String>,
    pub reason: String,
}

/// The entry-level rules shared by [`FileManifest::parse`] and
/// `Inventory::validate`.
pub(crate) fn check_entries(entries: &[ManifestEntry]) -> Result<(), EntryProblem> {
    let mut dirs: BTreeSet<&str> = BTreeSet::new();
    let mut regular: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut previous: Option<&str> = None;
    for (index, e) in entries.iter().enumerate() {
        let problem = |reason: String| EntryProblem {
            index,
            path: Some(e.path.clone()),
            reason,
        };
        check_abs_path(&e.path).map_err(|why| problem(why.to_string()))?;
        if let Some(prev) = previous {
            if e.path.as_str() == prev {
                return Err(problem("duplicate path".into()));
            }
            if e.path.as_str() < prev {
                return Err(problem(format!(
                    "entries must be sorted by path: this comes before the previous entry {prev:?}"
                )));
            }
        }
        previous = Some(&e.path);
        if let Some(dir) = parent(&e.path)
            && dir != "/"
            && !dirs.contains(dir)
        {
            return Err(problem(format!(
                "parent directory {dir:?} is not listed before it as a dir"
            )));
        }
        if e.path == "/" && e.kind != FileKind::Dir {
            return Err(problem("/ must be a dir".into()));
        }
        if e.mode > 0o7777 {
            return Err(problem(format!(
                "mode {:o} has bits outside 0o7777",
                e.mode
            )));
        }
        match (&e.sha256, e.kind.has_content()) {
            (Some(h), true) if is_lower_hex(h, 64) => {}
            (Some(_), true) => {
                return Err(problem("sha256 must be 64 lowercase hex digits".into()));
            }
            (None, true) => return Err(problem(format!("a {} needs a sha256", e.kind.as_str()))),
            (Some(_), false) => {
                return Err(problem(format!("a {} has no sha256", e.kind.as_str())));
            }
            (None, false) => {}
        }
        match (e.kind, &e.link) {
            (FileKind::Symlink, Some(target)) => {
                if target.is_empty() {
                    return Err(problem("symlink target is empty".into()));
                }
                if target.contains('\0') {
                    return Err(problem("symlink target contains a NUL byte".into()));
                }
            }
            (FileKind::Hardlink, Some(target)) => {
                check_abs_path(target)
                    .map_err(|why| problem(format!("hard link target: {why}")))?;
                if target == &e.path {
                    return Err(problem("hard link points to itself".into()));
                }
            }
            (FileKind::Symlink | FileKind::Hardlink, None) => {
                return Err(problem(format!("a {} needs a link", e.kind.as_str())));
            }
            (FileKind::File | FileKind::Dir, Some(_)) => {
                return Err(problem(format!("a {} has no link", e.kind.as_str())));
            }
            (FileKind::File | FileKind::Dir, None) => {}
        }
        if let FileOrigin::Package(name) = &e.origin
            && name.is_empty()
        {
            return Err(problem("origin package name is empty".into()));
        }
        match e.kind {
            FileKind::Dir => {
                dirs.insert(&e.path);
            }
            FileKind::File => {
                regular.insert(&e.path, e.sha256.as_deref());
            }
            FileKind::Symlink | FileKind::Hardlink => {}
        }
    }
    for (index, e) in entries.iter().enumerate() {
        if let (FileKind::Hardlink, Some(target)) = (e.kind, &e.link) {
            let problem = |reason: String| EntryProblem {
                index,
                path: Some(e.path.clone()),
                reason,
            };
            match regular.get(target.as_str()) {
                None => {
                    return Err(problem(format!(
                        "hard link target {target:?} is not a listed regular file"
                    )));
                }
                Some(hash) if *hash != e.sha256.as_deref() => {
                    return Err(problem(format!(
                        "hard link sha256 differs from its target {target:?}"
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
