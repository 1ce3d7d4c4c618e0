//! The entry model shared by scanned trees and baselines.
//!
//! One [`Entry`] is about 150 bytes inline plus its path (and symlink
//! target) on the heap, so a tree of a million paths with an average path
//! of 60 bytes takes roughly 220 MB; file contents are never held (they are
//! streamed through a per-thread 256 KiB buffer into SHA-256).

use std::path::PathBuf;
use std::time::Duration;

use kiln_sbom::{FileKind, FileManifest, ManifestEntry};
use serde::Serialize;

use crate::escape::escape;

/// Type of a path, in the manifest's vocabulary plus the special files the
/// v1 manifest cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Regular file.
    File,
    /// Baseline only: a hard link to another regular file (on disk a hard
    /// link is just a `File` sharing an inode).
    Hardlink,
    /// Directory.
    Dir,
    /// Symbolic link (never followed).
    Symlink,
    /// Named pipe (never opened).
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    Chardev,
    /// Block device.
    Blockdev,
}

impl Kind {
    /// The manifest name: `file`, `hardlink`, `dir`, `symlink`, `fifo`,
    /// `socket`, `chardev`, `blockdev`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Hardlink => "hardlink",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::Chardev => "chardev",
            Kind::Blockdev => "blockdev",
        }
    }

    /// Inverse of [`Kind::as_str`].
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s {
            "file" => Kind::File,
            "hardlink" => Kind::Hardlink,
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            "fifo" => Kind::Fifo,
            "socket" => Kind::Socket,
            "chardev" => Kind::Chardev,
            "blockdev" => Kind::Blockdev,
            _ => return None,
        })
    }

    /// The kind of an `st_mode` file-type value.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::Chardev,
            libc::S_IFBLK => Kind::Blockdev,
            _ => return None,
        })
    }

    /// Whether the v1 file manifest can express this kind.
    pub fn in_v1(self) -> bool {
        matches!(
            self,
            Kind::File | Kind::Hardlink | Kind::Dir | Kind::Symlink
        )
    }

    /// Whether entries of this kind carry a content hash.
    pub fn has_content(self) -> bool {
        matches!(self, Kind::File | Kind::Hardlink)
    }

    /// Whether entries of this kind carry a device number.
    pub fn is_device(self) -> bool {
        matches!(self, Kind::Chardev | Kind::Blockdev)
    }

    /// One-letter code used in reports (`f d l h p s c b`).
    pub fn letter(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Hardlink => 'h',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::Chardev => 'c',
            Kind::Blockdev => 'b',
        }
    }
}

/// Inode metadata. A scanned entry has all of it. A baseline entry has
/// what its baseline records, the rest zero: a nonzero `ino` or `nlink` of
/// a baseline entry is an expectation [`crate::compare`] checks (zero: not
/// recorded, not compared). A kiln file manifest implies the link count of
/// every file (see [`baseline_from_manifest`]), a fim manifest records it,
/// and an [`crate::InodeRecord`] adds both from the time a tree was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Device of the filesystem holding the inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard-link count (for a baseline file: how many names its inode
    /// must have, counting names outside the tree).
    pub nlink: u64,
    /// Device number (character and block devices).
    pub rdev: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Inode change time, ns since the epoch.
    pub ctime_ns: i64,
}

/// Whether an entry's content could be verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    /// Fully read (or its hash taken from a matching cache record).
    Ok,
    /// The file changed while it was hashed, twice in a row (size, mtime,
    /// ctime or inode differed between before and after); no hash.
    Unstable,
    /// It could not be read (opening, reading or listing failed); no hash
    /// (or, for a directory, an incomplete listing).
    Unreadable(String),
}

/// One path of a tree or a baseline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Raw path bytes, absolute within the tree (`/` is the root).
    pub path: Box<[u8]>,
    /// Type.
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content size for files (`lstat` size otherwise; only compared for
    /// files and hard links).
    pub size: u64,
    /// SHA-256 of a regular file's content.
    pub sha256: Option<[u8; 32]>,
    /// Raw symlink target, or the absolute path a baseline hard link names.
    pub link: Option<Box<[u8]>>,
    /// Inode metadata (scanned trees only).
    pub meta: Meta,
    /// Whether the content could be verified.
    pub status: Status,
}

impl Entry {
    /// The path in its lossless text form (see [`crate::escape`]).
    pub fn display_path(&self) -> String {
        escape(&self.path)
    }

    /// A baseline entry from a kiln file-manifest entry.
    pub fn from_manifest(e: &ManifestEntry) -> Entry {
        Entry {
            path: e.path.as_bytes().into(),
            kind: match e.kind {
                FileKind::File => Kind::File,
                FileKind::Hardlink => Kind::Hardlink,
                FileKind::Dir => Kind::Dir,
                FileKind::Symlink => Kind::Symlink,
            },
            mode: e.mode & 0o7777,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            sha256: e.sha256.as_deref().and_then(parse_sha256),
            link: e.link.as_deref().map(|l| l.as_bytes().into()),
            meta: Meta::default(),
            status: Status::Ok,
        }
    }
}

/// `[u8; 32]` from 64 hex digits.
pub(crate) fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Baseline entries for a parsed file manifest (same order), with the link
/// count every file implies: a kiln file manifest lists every name of an
/// inode (the first as `file`, the others as `hardlink` to it), so a file
/// and its hard links must have exactly as many names as the group has
/// entries; a file without hard links must have one. A name outside the
/// tree is a change.
pub fn baseline_from_manifest(m: &FileManifest) -> Vec<Entry> {
    let mut entries: Vec<Entry> = m.entries.iter().map(Entry::from_manifest).collect();
    imply_nlink(&mut entries);
    entries
}

/// Sets `meta.nlink` of every file and hard link of a sorted baseline from
/// its link group (see [`baseline_from_manifest`]). A hard link whose target
/// is missing or not a file gets no expectation (the link itself is
/// reported by the comparison).
pub(crate) fn imply_nlink(entries: &mut [Entry]) {
    use std::collections::HashMap;
    let group_of = |entries: &[Entry], e: &Entry| -> Option<Box<[u8]>> {
        match e.kind {
            Kind::File => Some(e.path.clone()),
            Kind::Hardlink => {
                let t = e.link.as_deref()?;
                find(entries, t)
                    .filter(|t| t.kind == Kind::File)
                    .map(|t| t.path.clone())
            }
            _ => None,
        }
    };
    let mut sizes: HashMap<Box<[u8]>, u64> = HashMap::new();
    for e in entries.iter() {
        if let Some(g) = group_of(entries, e) {
            *sizes.entry(g).or_insert(0) += 1;
        }
    }
    let groups: Vec<Option<Box<[u8]>>> = entries.iter().map(|e| group_of(entries, e)).collect();
    for (e, g) in entries.iter_mut().zip(groups) {
        if let Some(n) = g.and_then(|g| sizes.get(&g).copied()) {
            e.meta.nlink = n;
        }
    }
}

/// Counters of one scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Regular files seen.
    pub files: u64,
    /// Directories seen.
    pub dirs: u64,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
    /// Files read and hashed (the rest came from the cache).
    pub files_hashed: u64,
    /// Wall time of the scan.
    pub elapsed: Duration,
    /// Whether every file was hashed (no cache used).
    pub full: bool,
}

/// A scanned tree: entries sorted by path bytes.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The directory that was scanned.
    pub root: PathBuf,
    /// `st_dev`/`st_ino` of the root directory.
    pub root_id: (u64, u64),
    /// Every path, sorted by bytes, unique.
    pub entries: Vec<Entry>,
    /// Counters.
    pub stats: Stats,
    /// Wall-clock time (ns) at which the scan started.
    pub started_ns: i64,
}

impl Tree {
    /// The entry for `path`, by binary search.
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        find(&self.entries, path)
    }
}

pub(crate) fn find<'a>(entries: &'a [Entry], path: &[u8]) -> Option<&'a Entry> {
    entries
        .binary_search_by(|e| (*e.path).cmp(path))
        .ok()
        .and_then(|i| entries.get(i))
}
