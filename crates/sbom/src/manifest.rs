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

use std::cmp::Ordering;
use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::json::JsonWriter;
use crate::owners::sorted_by_path;
use crate::util::{FastHash, check_abs_path, is_lower_hex, is_sha256_digest, parent, touch_ahead};
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

/// Read access to the fields of a manifest entry, shared by
/// [`ManifestEntry`] and [`FileRecord`] so that validating and writing an
/// inventory need not copy its records.
pub(crate) trait EntryView {
    fn path(&self) -> &str;
    fn kind(&self) -> FileKind;
    fn mode(&self) -> u32;
    fn uid(&self) -> u32;
    fn gid(&self) -> u32;
    fn size(&self) -> u64;
    fn sha256(&self) -> Option<&str>;
    /// Only inventory records have one (manifests carry no SHA-1).
    fn sha1(&self) -> Option<&str>;
    fn link(&self) -> Option<&str>;
    fn origin(&self) -> &FileOrigin;
}

macro_rules! entry_view {
    ($t:ty, |$this:ident| $sha1:expr) => {
        impl EntryView for $t {
            #[inline]
            fn path(&self) -> &str {
                &self.path
            }
            #[inline]
            fn kind(&self) -> FileKind {
                self.kind
            }
            #[inline]
            fn mode(&self) -> u32 {
                self.mode
            }
            #[inline]
            fn uid(&self) -> u32 {
                self.uid
            }
            #[inline]
            fn gid(&self) -> u32 {
                self.gid
            }
            #[inline]
            fn size(&self) -> u64 {
                self.size
            }
            #[inline]
            fn sha256(&self) -> Option<&str> {
                self.sha256.as_deref()
            }
            #[inline]
            fn sha1(&self) -> Option<&str> {
                let $this = self;
                $sha1
            }
            #[inline]
            fn link(&self) -> Option<&str> {
                self.link.as_deref()
            }
            #[inline]
            fn origin(&self) -> &FileOrigin {
                &self.origin
            }
        }
    };
}

entry_view!(ManifestEntry, |_entry| None);
entry_view!(FileRecord, |record| record.sha1.as_deref());

/// Pretty JSON of a manifest with these entries, in the given order.
fn write_manifest<'e, E: EntryView + 'e>(
    name: &str,
    digest: &str,
    entries: &[&'e E],
    schema: &str,
) -> Vec<u8> {
    let path_bytes: usize = entries.iter().map(|e| e.path().len()).sum();
    // Roughly 250 bytes of JSON per entry plus its path.
    let mut w = JsonWriter::with_capacity(1024 + entries.len() * 256 + path_bytes);
    w.begin_object();
    w.field_str("schema", schema);
    w.key("subject");
    w.begin_object();
    w.field_str("name", name);
    w.field_str("digest", digest);
    w.end_object();
    w.key("entries");
    w.begin_array();
    for (i, e) in entries.iter().enumerate() {
        touch_ahead(entries, i, |e| [Some(e.path()), e.sha256(), e.link()]);
        write_entry(&mut w, *e);
    }
    w.end_array();
    w.end_object();
    w.finish()
}

/// One element of the top-level `entries` array, laid out as serde_json's
/// pretty printer does at that depth (element at 4 spaces, fields at 6);
/// written as whole chunks because there are ~10^5.
fn write_entry<E: EntryView>(w: &mut JsonWriter, e: &E) {
    debug_assert_eq!(w.depth(), 2);
    w.element();
    w.raw(b"{\n      \"path\": \"");
    w.string_part(e.path());
    w.raw(b"\",\n      \"type\": \"");
    w.raw(e.kind().as_str().as_bytes());
    // Only permission bits are recorded (four octal digits); the type is
    // in `type`.
    let mode = e.mode() & 0o7777;
    w.raw(b"\",\n      \"mode\": \"");
    w.raw(&[
        octal_digit(mode >> 9),
        octal_digit(mode >> 6),
        octal_digit(mode >> 3),
        octal_digit(mode),
    ]);
    w.raw(b"\",\n      \"uid\": ");
    w.uint(u64::from(e.uid()));
    w.raw(b",\n      \"gid\": ");
    w.uint(u64::from(e.gid()));
    w.raw(b",\n      \"size\": ");
    w.uint(e.size());
    if let Some(h) = e.sha256() {
        w.raw(b",\n      \"sha256\": \"");
        w.string_part(h);
        w.raw(b"\"");
    }
    if let Some(l) = e.link() {
        w.raw(b",\n      \"link\": \"");
        w.string_part(l);
        w.raw(b"\"");
    }
    w.raw(b",\n      \"origin\": \"");
    match e.origin() {
        FileOrigin::Base => w.raw(b"base"),
        FileOrigin::Spec => w.raw(b"spec"),
        FileOrigin::Package(name) => {
            w.raw(b"package:");
            w.string_part(name);
        }
    }
    w.raw(b"\"\n    }");
}

fn octal_digit(bits: u32) -> u8 {
    // `bits & 7` is below 8, so the cast cannot truncate.
    b'0' + (bits & 7) as u8
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
    // The same bytes as `FileManifest::from_inventory(inv).to_json()`,
    // without copying the records.
    let entries = sorted_by_path(inv.files.iter().collect(), |f: &FileRecord| f.path.as_str());
    write_manifest(
        &inv.image.name,
        &inv.image.digest,
        &entries,
        FILE_MANIFEST_SCHEMA,
    )
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
        let entries: Vec<&ManifestEntry> = self.entries.iter().collect();
        write_manifest(
            &self.subject.name,
            &self.subject.digest,
            &entries,
            &self.schema,
        )
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
pub(crate) fn check_entries<E: EntryView>(entries: &[E]) -> Result<(), EntryProblem> {
    check_entries_and(entries, |_, _| true)
}

/// [`check_entries`], also calling `also(index, entry)` on every entry in
/// order during the same pass (so a caller with further per-entry rules
/// reads each entry once); `also` returning false stops those calls.
pub(crate) fn check_entries_and<'e, E: EntryView>(
    entries: &'e [E],
    mut also: impl FnMut(usize, &'e E) -> bool,
) -> Result<(), EntryProblem> {
    let mut also_active = true;
    let mut dirs: HashSet<&str, FastHash> = HashSet::with_hasher(FastHash::new());
    // The parent directory most recently found in `dirs` (siblings are
    // usually adjacent, so most entries need no lookup).
    let mut known_parent: Option<&str> = None;
    let mut previous: Option<&str> = None;
    for (index, e) in entries.iter().enumerate() {
        touch_ahead(entries, index, |e| {
            [Some(e.path()), e.sha256(), e.sha1(), e.link()]
        });
        let path = e.path();
        let kind = e.kind();
        let problem = |reason: String| EntryProblem {
            index,
            path: Some(path.to_string()),
            reason,
        };
        check_abs_path(path).map_err(|why| problem(why.to_string()))?;
        if let Some(prev) = previous {
            match path.cmp(prev) {
                Ordering::Greater => {}
                Ordering::Equal => return Err(problem("duplicate path".into())),
                Ordering::Less => {
                    return Err(problem(format!(
                        "entries must be sorted by path: this comes before the previous entry {prev:?}"
                    )));
                }
            }
        }
        previous = Some(path);
        if let Some(dir) = parent(path)
            && dir != "/"
            && known_parent != Some(dir)
        {
            if !dirs.contains(dir) {
                return Err(problem(format!(
                    "parent directory {dir:?} is not listed before it as a dir"
                )));
            }
            known_parent = Some(dir);
        }
        if path == "/" && kind != FileKind::Dir {
            return Err(problem("/ must be a dir".into()));
        }
        if e.mode() > 0o7777 {
            return Err(problem(format!(
                "mode {:o} has bits outside 0o7777",
                e.mode()
            )));
        }
        match (e.sha256(), kind.has_content()) {
            (Some(h), true) if is_lower_hex(h, 64) => {}
            (Some(_), true) => {
                return Err(problem("sha256 must be 64 lowercase hex digits".into()));
            }
            (None, true) => return Err(problem(format!("a {} needs a sha256", kind.as_str()))),
            (Some(_), false) => {
                return Err(problem(format!("a {} has no sha256", kind.as_str())));
            }
            (None, false) => {}
        }
        match (kind, e.link()) {
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
                if target == path {
                    return Err(problem("hard link points to itself".into()));
                }
            }
            (FileKind::Symlink | FileKind::Hardlink, None) => {
                return Err(problem(format!("a {} needs a link", kind.as_str())));
            }
            (FileKind::File | FileKind::Dir, Some(_)) => {
                return Err(problem(format!("a {} has no link", kind.as_str())));
            }
            (FileKind::File | FileKind::Dir, None) => {}
        }
        if let FileOrigin::Package(name) = e.origin()
            && name.is_empty()
        {
            return Err(problem("origin package name is empty".into()));
        }
        if kind == FileKind::Dir {
            dirs.insert(path);
        }
        if also_active {
            also_active = also(index, e);
        }
    }
    // The entries are now known to be strictly sorted by path, so a hard
    // link's target is found by binary search.
    for (index, e) in entries.iter().enumerate() {
        if let (FileKind::Hardlink, Some(target)) = (e.kind(), e.link()) {
            let problem = |reason: String| EntryProblem {
                index,
                path: Some(e.path().to_string()),
                reason,
            };
            let regular = entries
                .binary_search_by(|x| x.path().cmp(target))
                .ok()
                .and_then(|i| entries.get(i))
                .filter(|x| x.kind() == FileKind::File);
            match regular {
                None => {
                    return Err(problem(format!(
                        "hard link target {target:?} is not a listed regular file"
                    )));
                }
                Some(t) if t.sha256() != e.sha256() => {
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
