//! Comparing a baseline with a scanned tree.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;

use crate::escape::escape;
use crate::tree::{Entry, Kind, Meta, Status, Tree, find};

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Ignored tree paths: a prefix `/proc` ignores `/proc` itself and
    /// everything below it (not `/procfoo`). Mount points of an instance
    /// exist in the image as empty dirs but are mounted over at run time.
    pub ignore: Vec<Vec<u8>>,
    /// The tree was scanned without reading file contents
    /// ([`crate::ScanOptions::hash`] off): every attribute but the content
    /// hash is compared.
    pub metadata_only: bool,
}

impl CompareOptions {
    /// Options ignoring these text prefixes.
    pub fn ignoring(prefixes: &[&str]) -> CompareOptions {
        CompareOptions {
            ignore: prefixes
                .iter()
                .map(|p| {
                    let p = p.trim_end_matches('/');
                    if p.is_empty() {
                        b"/".to_vec()
                    } else {
                        p.as_bytes().to_vec()
                    }
                })
                .collect(),
            metadata_only: false,
        }
    }
}

/// Whether `path` is `prefix` or below it.
pub(crate) fn under(path: &[u8], prefix: &[u8]) -> bool {
    if prefix == b"/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b'/'))
}

/// A compared attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// Entry type.
    Type,
    /// Permission bits.
    Mode,
    /// Owner.
    Uid,
    /// Group.
    Gid,
    /// Content size.
    Size,
    /// Content hash.
    Sha256,
    /// Symlink target, or the file a hard link shares its inode with.
    Link,
    /// Device number.
    Rdev,
    /// Inode number: the path names another inode than the one recorded
    /// (replaced, e.g. by a hard link to a file outside the tree).
    #[serde(rename = "ino")]
    Inode,
    /// Hard-link count: the inode gained or lost a name (possibly outside
    /// the tree, where it can be edited without a trace in the tree).
    Nlink,
}

impl Field {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Type => "type",
            Field::Mode => "mode",
            Field::Uid => "uid",
            Field::Gid => "gid",
            Field::Size => "size",
            Field::Sha256 => "sha256",
            Field::Link => "link",
            Field::Rdev => "rdev",
            Field::Inode => "ino",
            Field::Nlink => "nlink",
        }
    }
}

/// The reported attributes of one side of a path (never contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attrs {
    /// Type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Permission bits, 4 octal digits.
    pub mode: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size (files and hard links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex SHA-256 (files and hard links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Link target (escaped text form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Device number (devices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u64>,
    /// Inode number (only in a change of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// Hard-link count (only in a change of the inode or of the count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nlink: Option<u64>,
}

impl Attrs {
    fn of(e: &Entry) -> Attrs {
        Attrs {
            kind: e.kind,
            mode: format!("{:04o}", e.mode & 0o7777),
            uid: e.uid,
            gid: e.gid,
            size: e.kind.has_content().then_some(e.size),
            sha256: e.sha256.map(hex::encode),
            link: e.link.as_deref().map(escape),
            rdev: e.kind.is_device().then_some(e.meta.rdev),
            ino: None,
            nlink: None,
        }
    }

    /// [`Attrs::of`] with the inode identity the `fields` are about.
    fn with_identity(e: &Entry, fields: &[Field]) -> Attrs {
        let mut a = Attrs::of(e);
        let known = |v: u64| (v != 0).then_some(v);
        if fields.contains(&Field::Inode) {
            a.ino = known(e.meta.ino);
        }
        if fields.contains(&Field::Inode) || fields.contains(&Field::Nlink) {
            a.nlink = known(e.meta.nlink);
        }
        a
    }
}

/// A path present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Path (escaped text form, see [`crate::escape`]).
    pub path: String,
    /// Its attributes.
    #[serde(flatten)]
    pub attrs: Attrs,
}

/// A path present on both sides with differing attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Path (escaped text form).
    pub path: String,
    /// Which attributes differ, in [`Field`] order.
    pub fields: Vec<Field>,
    /// The baseline's attributes.
    pub baseline: Attrs,
    /// The tree's attributes.
    pub actual: Attrs,
}

/// A path of the tree whose content could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Path (escaped text form).
    pub path: String,
    /// `unstable` (changed while hashed, twice) or the read error.
    pub reason: String,
}

/// The difference between a baseline and a tree, each list sorted by path
/// bytes. Contains paths, attributes and hashes only, never file contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Entries in the baseline (after ignores).
    pub baseline_entries: u64,
    /// Entries in the tree (after ignores).
    pub actual_entries: u64,
    /// In the tree, not in the baseline.
    pub added: Vec<Item>,
    /// In the baseline, not in the tree.
    pub removed: Vec<Item>,
    /// In both, differing.
    pub changed: Vec<Change>,
    /// In the tree, but unreadable or changing while hashed (their content
    /// is not verified; they count as changed for the exit code).
    pub unverified: Vec<Problem>,
}

impl Diff {
    /// Whether nothing differs and everything was verified.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.unverified.is_empty()
    }

    /// AIDE-compatible bitmask: 1 added, 2 removed, 4 changed (also set by
    /// unverified entries); 0 if equal.
    pub fn exit_code(&self) -> i32 {
        let mut c = 0;
        if !self.added.is_empty() {
            c |= 1;
        }
        if !self.removed.is_empty() {
            c |= 2;
        }
        if !self.changed.is_empty() || !self.unverified.is_empty() {
            c |= 4;
        }
        c
    }

    /// A human report in the spirit of `aide --check`: a summary with the
    /// counts, then the added, removed and changed entries, then the
    /// details of every change.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let rule = "---------------------------------------------------\n";
        if self.is_empty() {
            let _ = writeln!(
                s,
                "kiln fim: NO differences between the baseline and the tree ({} entries).",
                self.actual_entries
            );
            return s;
        }
        let _ = writeln!(
            s,
            "kiln fim: found differences between the baseline and the tree!!\n"
        );
        let _ = writeln!(s, "Summary:");
        let _ = writeln!(s, "  Total number of entries:\t{}", self.actual_entries);
        let _ = writeln!(s, "  Added entries:\t\t{}", self.added.len());
        let _ = writeln!(s, "  Removed entries:\t\t{}", self.removed.len());
        let _ = writeln!(s, "  Changed entries:\t\t{}", self.changed.len());
        if !self.unverified.is_empty() {
            let _ = writeln!(s, "  Unverified entries:\t\t{}", self.unverified.len());
        }
        let section = |s: &mut String, title: &str| {
            let _ = write!(s, "\n{rule}{title}:\n{rule}\n");
        };
        if !self.added.is_empty() {
            section(&mut s, "Added entries");
            for i in &self.added {
                let _ = writeln!(s, "{}++++++++: {}", i.attrs.kind.letter(), i.path);
            }
        }
        if !self.removed.is_empty() {
            section(&mut s, "Removed entries");
            for i in &self.removed {
                let _ = writeln!(s, "{}--------: {}", i.attrs.kind.letter(), i.path);
            }
        }
        if !self.changed.is_empty() {
            section(&mut s, "Changed entries");
            for c in &self.changed {
                let flags: String = [
                    (Field::Type, 'T'),
                    (Field::Mode, 'p'),
                    (Field::Uid, 'u'),
                    (Field::Gid, 'g'),
                    (Field::Size, 's'),
                    (Field::Sha256, 'H'),
                    (Field::Link, 'l'),
                    (Field::Rdev, 'r'),
                    (Field::Inode, 'i'),
                    (Field::Nlink, 'n'),
                ]
                .iter()
                .map(|(f, ch)| if c.fields.contains(f) { *ch } else { '.' })
                .collect();
                let _ = writeln!(s, "{}{}: {}", c.actual.kind.letter(), flags, c.path);
            }
        }
        if !self.unverified.is_empty() {
            section(&mut s, "Unverified entries");
            for p in &self.unverified {
                let _ = writeln!(s, "?: {} ({})", p.path, p.reason);
            }
        }
        if !self.changed.is_empty() {
            section(&mut s, "Detailed information about changes");
            for c in &self.changed {
                let _ = writeln!(s, "Path: {}", c.path);
                for f in &c.fields {
                    let (a, b) = field_text(*f, &c.baseline, &c.actual);
                    let _ = writeln!(s, "  {:<8}: {:<66} | {}", f.as_str(), a, b);
                }
                s.push('\n');
            }
        }
        s
    }
}

fn field_text(f: Field, a: &Attrs, b: &Attrs) -> (String, String) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let num = |o: Option<u64>| o.map_or_else(|| "-".into(), |n| n.to_string());
    match f {
        Field::Type => (a.kind.as_str().into(), b.kind.as_str().into()),
        Field::Mode => (a.mode.clone(), b.mode.clone()),
        Field::Uid => (a.uid.to_string(), b.uid.to_string()),
        Field::Gid => (a.gid.to_string(), b.gid.to_string()),
        Field::Size => (num(a.size), num(b.size)),
        Field::Sha256 => (opt(&a.sha256), opt(&b.sha256)),
        Field::Link => (opt(&a.link), opt(&b.link)),
        Field::Rdev => (num(a.rdev), num(b.rdev)),
        Field::Inode => (num(a.ino), num(b.ino)),
        Field::Nlink => (num(a.nlink), num(b.nlink)),
    }
}

fn ignored(opts: &CompareOptions, path: &[u8]) -> bool {
    opts.ignore.iter().any(|p| under(path, p))
}

/// Which fields of `b` (baseline) and `a` (actual) differ. `a_tree` is the
/// whole actual side (to resolve a baseline hard link's target).
/// `metadata_only`: the tree was not hashed.
fn differing(b: &Entry, a: &Entry, a_tree: &[Entry], metadata_only: bool) -> Vec<Field> {
    let mut f = Vec::new();
    // On disk a hard link is a regular file sharing its target's inode.
    let hardlink_as_file = b.kind == Kind::Hardlink && a.kind == Kind::File;
    if b.kind != a.kind && !hardlink_as_file {
        f.push(Field::Type);
    }
    if b.mode != a.mode {
        f.push(Field::Mode);
    }
    if b.uid != a.uid {
        f.push(Field::Uid);
    }
    if b.gid != a.gid {
        f.push(Field::Gid);
    }
    let both_content = b.kind.has_content() && a.kind.has_content();
    let verified = a.status == Status::Ok;
    if both_content && verified && b.size != a.size {
        f.push(Field::Size);
    }
    if both_content && verified && !metadata_only && b.sha256 != a.sha256 {
        f.push(Field::Sha256);
    }
    match (b.kind, a.kind) {
        (Kind::Symlink, Kind::Symlink) if b.link != a.link => f.push(Field::Link),
        (Kind::Hardlink, Kind::File) => {
            // The target must be the same inode as this file (if it is a
            // regular file on the tree side at all).
            let same = b
                .link
                .as_deref()
                .and_then(|t| find(a_tree, t))
                .is_some_and(|t| {
                    t.kind == Kind::File && (t.meta.dev, t.meta.ino) == (a.meta.dev, a.meta.ino)
                });
            if !same {
                f.push(Field::Link);
            }
        }
        (Kind::Hardlink, Kind::Hardlink) if b.link != a.link => f.push(Field::Link),
        (x, y) if x == y && x.is_device() && b.meta.rdev != a.meta.rdev => f.push(Field::Rdev),
        _ => {}
    }
    f.extend(identity_changes(&b.meta, &a.meta));
    f
}

/// The inode identity a baseline entry records (nonzero `ino`, `nlink`)
/// against what a scan found: [`Field::Inode`] if the path names another
/// inode, [`Field::Nlink`] if its inode has another number of names. An
/// attribute the baseline does not record (zero) is not compared.
pub fn identity_changes(baseline: &Meta, actual: &Meta) -> Vec<Field> {
    let mut f = Vec::new();
    if baseline.ino != 0 && baseline.ino != actual.ino {
        f.push(Field::Inode);
    }
    if baseline.nlink != 0 && baseline.nlink != actual.nlink {
        f.push(Field::Nlink);
    }
    f
}

/// Compares a baseline (sorted by path bytes, e.g. from a manifest) with a
/// scanned tree. Linear merge; the result is sorted by path.
pub fn compare(baseline: &[Entry], actual: &Tree, opts: &CompareOptions) -> Diff {
    compare_entries(baseline, &actual.entries, opts)
}

/// [`compare`] on two sorted entry lists (a tree can serve as baseline; its
/// inode numbers and link counts are then compared too).
pub fn compare_entries(baseline: &[Entry], actual: &[Entry], opts: &CompareOptions) -> Diff {
    let mut d = Diff::default();
    let mut bi = baseline
        .iter()
        .filter(|e| !ignored(opts, &e.path))
        .peekable();
    let mut ai = actual.iter().filter(|e| !ignored(opts, &e.path)).peekable();
    let unverified = |d: &mut Diff, a: &Entry| match &a.status {
        Status::Ok => {}
        Status::Unstable => d.unverified.push(Problem {
            path: escape(&a.path),
            reason: "unstable: changed while being hashed".into(),
        }),
        Status::Unreadable(why) => d.unverified.push(Problem {
            path: escape(&a.path),
            reason: format!("unreadable: {why}"),
        }),
    };
    loop {
        let ord = match (bi.peek(), ai.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(b), Some(a)) => b.path.cmp(&a.path),
        };
        match ord {
            Ordering::Less => {
                if let Some(b) = bi.next() {
                    d.baseline_entries += 1;
                    d.removed.push(Item {
                        path: escape(&b.path),
                        attrs: Attrs::of(b),
                    });
                }
            }
            Ordering::Greater => {
                if let Some(a) = ai.next() {
                    d.actual_entries += 1;
                    unverified(&mut d, a);
                    d.added.push(Item {
                        path: escape(&a.path),
                        attrs: Attrs::of(a),
                    });
                }
            }
            Ordering::Equal => {
                if let (Some(b), Some(a)) = (bi.next(), ai.next()) {
                    d.baseline_entries += 1;
                    d.actual_entries += 1;
                    unverified(&mut d, a);
                    let fields = differing(b, a, actual, opts.metadata_only);
                    if !fields.is_empty() {
                        d.changed.push(Change {
                            path: escape(&a.path),
                            baseline: Attrs::with_identity(b, &fields),
                            actual: Attrs::with_identity(a, &fields),
                            fields,
                        });
                    }
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(path: &[u8], content: u8, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode,
            uid: 0,
            gid: 0,
            size: 10,
            sha256: Some([content; 32]),
            link: None,
            meta: Meta::default(),
            status: Status::Ok,
        }
    }

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..6),
            (any::<u8>(), 0u32..0o7777, 0usize..3),
            1..20,
        )
        .prop_map(|m| {
            m.into_iter()
                .map(|(mut name, (c, mode, kind))| {
                    name.retain(|b| *b != b'/' && *b != 0);
                    name.insert(0, b'/');
                    let mut e = file(&name, c, mode);
                    match kind {
                        1 => {
                            e.kind = Kind::Symlink;
                            e.sha256 = None;
                            e.link = Some(vec![c].into());
                        }
                        2 => {
                            e.kind = Kind::Dir;
                            e.sha256 = None;
                        }
                        _ => {}
                    }
                    e
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|mut v| {
            v.sort_by(|a, b| a.path.cmp(&b.path));
            v.dedup_by(|a, b| a.path == b.path);
            v
        })
    }

    proptest! {
        #[test]
        fn identity_is_empty_and_swapping_sides_swaps_added_and_removed(a in entries(), b in entries()) {
            let same = compare_entries(&a, &a, &CompareOptions::default());
            prop_assert!(same.is_empty());
            prop_assert_eq!(same.exit_code(), 0);
            let ab = compare_entries(&a, &b, &CompareOptions::default());
            let ba = compare_entries(&b, &a, &CompareOptions::default());
            prop_assert_eq!(&ab.added, &ba.removed);
            prop_assert_eq!(&ab.removed, &ba.added);
            let paths = |d: &Diff| d.changed.iter().map(|c| (c.path.clone(), c.fields.clone())).collect::<Vec<_>>();
            prop_assert_eq!(paths(&ab), paths(&ba));
            let b_code = ab.exit_code();
            prop_assert_eq!(b_code & 1 != 0, !ab.added.is_empty());
            prop_assert_eq!(ba.exit_code() & 3, ((b_code & 1) << 1) | ((b_code & 2) >> 1));
        }

        #[test]
        fn any_single_mutation_is_detected(a in entries(), pick in any::<prop::sample::Index>(), how in 0usize..7) {
            let mut b = a.clone();
            let i = pick.index(b.len());
            let (code, field) = {
                let e = &mut b[i];
                match how {
                    0 if e.kind == Kind::File => { e.sha256 = Some([e.sha256.map_or(0, |h| h[0]).wrapping_add(1); 32]); (4, Some(Field::Sha256)) }
                    1 => { e.mode ^= 0o4000; (4, Some(Field::Mode)) }
                    2 => { e.uid += 1; (4, Some(Field::Uid)) }
                    3 => { e.gid += 1; (4, Some(Field::Gid)) }
                    4 if e.kind == Kind::Symlink => { e.link = Some(b"elsewhere/x".to_vec().into()); (4, Some(Field::Link)) }
                    5 => { b.remove(i); (2, None) }
                    _ => {
                        let mut extra = e.path.to_vec();
                        extra.extend_from_slice(b"\xffadded");
                        let n = file(&extra, 9, 0o644);
                        let at = b.partition_point(|x| *x.path < *n.path);
                        if b.get(at).is_some_and(|x| x.path == n.path) { return Ok(()); }
                        b.insert(at, n);
                        (1, None)
                    }
                }
            };
            let d = compare_entries(&a, &b, &CompareOptions::default());
            prop_assert_eq!(d.exit_code(), code);
            if let Some(f) = field {
                prop_assert_eq!(d.changed.len(), 1);
                prop_assert_eq!(&d.changed[0].fields, &vec![f]);
            }
        }
    }

    #[test]
    fn type_change_and_ignores() {
        let a = vec![file(b"/etc", 1, 0o755), file(b"/proc", 1, 0o555)];
        let mut b = a.clone();
        b[0].kind = Kind::Dir;
        b[0].sha256 = None;
        b.push(file(b"/proc/1", 1, 0o444));
        b.push(file(b"/procx", 1, 0o444));
        let d = compare_entries(&a, &b, &CompareOptions::ignoring(&["/proc"]));
        assert_eq!(d.exit_code(), 5);
        assert_eq!(d.changed[0].fields, vec![Field::Type]);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].path, "/procx");
        assert!(d.render().contains("Added entries:\t\t1"));
    }
}
