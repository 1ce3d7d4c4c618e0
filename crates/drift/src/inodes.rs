//! The inode identity of a tree at the time it was written.
//!
//! A content hash cannot see a file swapped for a hard link to a file with
//! the same content outside the tree, and neither inotify on the tree's
//! directories nor the hash sees a second name given to a tree file from
//! outside: writes through that name reach the same inode without any
//! event in the tree. An [`InodeRecord`] taken when the tree was written
//! (kiln takes it while unpacking an image, before the root filesystem is
//! visible) keeps the inode number and link count of every path; a later
//! scan that finds another inode or another count at a path is drift
//! ([`crate::Field::Inode`], [`crate::Field::Nlink`]).
//!
//! Inode numbers are only meaningful on the filesystem that holds the tree:
//! a record does not survive a copy or a restore of the tree.
//!
//! Binary layout (little endian): `KILNINOD\x01\n`, entry count u64, then
//! per entry sorted by path bytes: path length u32, path bytes, ino u64,
//! nlink u64.

use std::path::Path;

use crate::compare::{CompareOptions, Diff, compare};
use crate::error::DriftError;
use crate::scan::{ScanOptions, scan};
use crate::tree::{Entry, Tree};

const MAGIC: &[u8; 10] = b"KILNINOD\x01\n";

/// One path's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InodeEntry {
    /// Raw path bytes within the tree (`/` is the root).
    pub path: Box<[u8]>,
    /// Inode number.
    pub ino: u64,
    /// Hard-link count.
    pub nlink: u64,
}

/// The identity of every path of a tree (sorted by path bytes, unique).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InodeRecord {
    /// Entries, sorted by path bytes.
    pub entries: Vec<InodeEntry>,
}

impl InodeRecord {
    /// The record of a scanned tree (entries whose `lstat` failed are left
    /// out: they have no identity to record).
    pub fn from_tree(tree: &Tree) -> InodeRecord {
        InodeRecord {
            entries: tree
                .entries
                .iter()
                .filter(|e| e.meta.ino != 0)
                .map(|e| InodeEntry {
                    path: e.path.clone(),
                    ino: e.meta.ino,
                    nlink: e.meta.nlink,
                })
                .collect(),
        }
    }

    /// The entry for `path`, by binary search.
    pub fn get(&self, path: &[u8]) -> Option<&InodeEntry> {
        self.entries
            .binary_search_by(|e| (*e.path).cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Sets the recorded inode number and link count as expectations on
    /// every baseline entry the record has (overriding a link count the
    /// baseline implied). Entries the record lacks keep theirs.
    pub fn apply(&self, baseline: &mut [Entry]) {
        for e in baseline {
            if let Some(r) = self.get(&e.path) {
                e.meta.ino = r.ino;
                e.meta.nlink = r.nlink;
            }
        }
    }

    /// Serialises the record (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let paths: usize = self.entries.iter().map(|e| e.path.len()).sum();
        let mut b = Vec::with_capacity(18 + self.entries.len() * 20 + paths);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            let len = u32::try_from(e.path.len()).unwrap_or(u32::MAX);
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(e.path.get(..len as usize).unwrap_or(&e.path));
            b.extend_from_slice(&e.ino.to_le_bytes());
            b.extend_from_slice(&e.nlink.to_le_bytes());
        }
        b
    }

    /// Parses [`InodeRecord::to_bytes`] output; entries must be sorted and
    /// unique, and nothing may trail them.
    pub fn from_bytes(bytes: &[u8]) -> Result<InodeRecord, DriftError> {
        Self::parse(bytes).map_err(|e| match e {
            DriftError::Cache(why) => DriftError::Manifest(format!("inode record: {why}")),
            e => e,
        })
    }

    fn parse(bytes: &[u8]) -> Result<InodeRecord, DriftError> {
        let bad = |why: &str| DriftError::Manifest(format!("inode record: {why}"));
        let mut r = crate::cache::Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(bad("bad magic"));
        }
        let count = r.u64()?;
        // Each entry takes at least 20 bytes: a count beyond that is a lie.
        if count > (bytes.len() / 20) as u64 {
            return Err(bad("entry count larger than the record"));
        }
        let mut entries: Vec<InodeEntry> = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for _ in 0..count {
            let path: Box<[u8]> = r.bytes()?.into();
            if entries.last().is_some_and(|p| p.path >= path) {
                return Err(bad("entries not sorted"));
            }
            entries.push(InodeEntry {
                path,
                ino: r.u64()?,
                nlink: r.u64()?,
            });
        }
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(InodeRecord { entries })
    }
}

/// Records the inode identity of every path below `root` (a metadata
/// sweep: no file is read), leaving out the `exclude` path prefixes.
pub fn record_inodes(root: &Path, exclude: &[&str]) -> Result<InodeRecord, DriftError> {
    let opts = ScanOptions {
        exclude: CompareOptions::ignoring(exclude).ignore,
        hash: false,
        ..ScanOptions::default()
    };
    Ok(InodeRecord::from_tree(&scan(root, &opts)?))
}

/// The cheap periodic check of a tree against its baseline: `lstat` (and
/// `readlink`) of every path, no file read. Finds added and removed paths
/// and every attribute change except content that kept its size and inode
/// identity; with `record`, a changed inode number or link count. The
/// baseline's root directory is only compared if the baseline lists `/`.
pub fn sweep(
    root: &Path,
    baseline: &[Entry],
    record: Option<&InodeRecord>,
    ignore: &[&str],
) -> Result<Diff, DriftError> {
    let mut cmp = CompareOptions::ignoring(ignore);
    cmp.metadata_only = true;
    let opts = ScanOptions {
        exclude: cmp.ignore.clone(),
        hash: false,
        ..ScanOptions::default()
    };
    let mut tree = scan(root, &opts)?;
    if !baseline.iter().any(|e| &*e.path == b"/") {
        tree.entries.retain(|e| &*e.path != b"/");
    }
    match record {
        Some(r) => {
            let mut b = baseline.to_vec();
            r.apply(&mut b);
            Ok(compare(&b, &tree, &cmp))
        }
        None => Ok(compare(baseline, &tree, &cmp)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Field, compare_entries};
    use crate::tree::{Kind, Meta, Status};
    use proptest::prelude::*;

    fn entry(path: &[u8], ino: u64, nlink: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            sha256: Some([1; 32]),
            link: None,
            meta: Meta {
                ino,
                nlink,
                ..Meta::default()
            },
            status: Status::Ok,
        }
    }

    fn record(v: &[(&[u8], u64, u64)]) -> InodeRecord {
        InodeRecord {
            entries: v
                .iter()
                .map(|(p, ino, nlink)| InodeEntry {
                    path: (*p).into(),
                    ino: *ino,
                    nlink: *nlink,
                })
                .collect(),
        }
    }

    #[test]
    fn a_recorded_identity_is_compared_and_an_unrecorded_one_is_not() {
        // The image: /a and /b are one inode (an internal hard link), /c alone.
        let rec = record(&[(b"/a", 10, 2), (b"/b", 10, 2), (b"/c", 11, 1)]);
        let mut base = vec![entry(b"/a", 0, 0), entry(b"/b", 0, 0), entry(b"/c", 0, 0)];
        rec.apply(&mut base);
        let opts = CompareOptions::default();
        let same = vec![
            entry(b"/a", 10, 2),
            entry(b"/b", 10, 2),
            entry(b"/c", 11, 1),
        ];
        assert!(compare_entries(&base, &same, &opts).is_empty());
        // (a) /c replaced by a link to an outside file: another inode, and
        // the outside name makes two.
        let mut swapped = same.clone();
        swapped[2].meta = Meta {
            ino: 99,
            nlink: 2,
            ..Meta::default()
        };
        let d = compare_entries(&base, &swapped, &opts);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].fields, vec![Field::Inode, Field::Nlink]);
        assert_eq!(d.changed[0].baseline.ino, Some(11));
        assert_eq!(d.changed[0].actual.ino, Some(99));
        assert_eq!(d.exit_code(), 4);
        // The same swap after the outside name is removed (an attacker
        // holding a descriptor): the inode alone gives it away.
        swapped[2].meta.nlink = 1;
        let d = compare_entries(&base, &swapped, &opts);
        assert_eq!(d.changed[0].fields, vec![Field::Inode]);
        // (b) an outside name for /c: 1 -> 2 names.
        let mut linked = same.clone();
        linked[2].meta.nlink = 2;
        let d = compare_entries(&base, &linked, &opts);
        assert_eq!(d.changed[0].fields, vec![Field::Nlink]);
        assert_eq!(d.changed[0].baseline.nlink, Some(1));
        assert_eq!(d.changed[0].actual.nlink, Some(2));
        assert_eq!(d.changed[0].actual.ino, None);
        // (c) the image's own link broken up: both names change.
        let mut split = same.clone();
        split[1].meta = Meta {
            ino: 12,
            nlink: 1,
            ..Meta::default()
        };
        split[0].meta.nlink = 1;
        let d = compare_entries(&base, &split, &opts);
        assert_eq!(d.changed.len(), 2);
        // Nothing recorded: nothing compared.
        let plain = vec![entry(b"/a", 0, 0), entry(b"/b", 0, 0), entry(b"/c", 0, 0)];
        assert!(compare_entries(&plain, &swapped, &opts).is_empty());
    }

    #[test]
    fn metadata_only_comparison_ignores_the_missing_hash() {
        let base = vec![entry(b"/a", 5, 1)];
        let mut t = base.clone();
        t[0].sha256 = None;
        let mut opts = CompareOptions::default();
        assert_eq!(compare_entries(&base, &t, &opts).exit_code(), 4);
        opts.metadata_only = true;
        assert!(compare_entries(&base, &t, &opts).is_empty());
        t[0].size = 4;
        assert_eq!(
            compare_entries(&base, &t, &opts).changed[0].fields,
            vec![Field::Size]
        );
    }

    #[test]
    fn bad_records_are_refused() {
        let rec = record(&[(b"/", 2, 3), (b"/a", 10, 1)]);
        let b = rec.to_bytes();
        assert!(InodeRecord::from_bytes(&b[..b.len() - 1]).is_err());
        let mut t = b.clone();
        t.push(0);
        assert!(InodeRecord::from_bytes(&t).is_err());
        let mut huge = b.clone();
        huge[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(InodeRecord::from_bytes(&huge).is_err());
        let unsorted = record(&[(b"/a", 10, 1), (b"/", 2, 3)]).to_bytes();
        assert!(InodeRecord::from_bytes(&unsorted).is_err());
        assert!(InodeRecord::from_bytes(b"KILNFIMC\x02\n").is_err());
    }

    proptest! {
        #[test]
        fn records_round_trip(v in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..12), (any::<u64>(), any::<u64>()), 0..30)) {
            let rec = InodeRecord {
                entries: v.into_iter().map(|(p, (ino, nlink))| InodeEntry { path: p.into(), ino, nlink }).collect(),
            };
            let back = InodeRecord::from_bytes(&rec.to_bytes()).expect("parse");
            prop_assert_eq!(back, rec);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&b);
            let _ = InodeRecord::from_bytes(&bytes);
        }
    }
}
