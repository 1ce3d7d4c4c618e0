//! Reading the build context (the spec's directory) without leaving it
//! through a symlink.
//!
//! Every directory is opened relative to its parent's handle with
//! `O_DIRECTORY | O_NOFOLLOW`, and every entry is examined with `fstatat`
//! relative to that handle, never by a path the kernel walks again. So a
//! directory swapped for a symlink between a check and a read is refused,
//! not followed. Symlinks *named* by a spec path are followed only while
//! they stay inside the spec directory (resolved here, one hop at a time,
//! the way the kernel would, but clamped to the root).
//!
//! Host files are read later (hashing, writing the layer) by their
//! symlink-free absolute path with `openat2(RESOLVE_NO_SYMLINKS)` (or the
//! same walk one component at a time where `openat2` is unavailable),
//! `O_NONBLOCK` so a FIFO swapped in cannot block, and the opened
//! descriptor is checked to be the very inode the walk recorded.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// How many symlinks one spec path may go through (as Linux's `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Why a spec path could not be resolved inside the spec directory.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "resolves outside the spec's directory through the symlink {} -> {}",
        link.display(),
        target.display()
    )]
    Escapes { link: PathBuf, target: PathBuf },
    #[error("leaves the spec's directory")]
    Leaves,
    #[error("too many levels of symbolic links (more than {MAX_HOPS})")]
    Loop,
    #[error("{}: not a directory", path.display())]
    NotDir { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ResolveError {
    /// Whether the path (or one of its directories) does not exist: the
    /// spec parser lets that pass, so the build reports it with the file.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ResolveError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A spec path resolved inside the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Components from the root, none of them a symlink when resolved
    /// (except, when `dir` is false, possibly the last: it is examined
    /// with `lstat` and copied as a symlink).
    pub comps: Vec<OsString>,
    /// The path said "the directory" (`dir/`, `dir/.`, `.`): the last
    /// component was followed and is a directory.
    pub dir: bool,
}

/// The metadata of one entry, from `fstat`/`fstatat` without following.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    pub kind: FileType,
    pub mode: u32,
    pub nlink: u64,
    pub key: crate::source::StatKey,
}

impl Meta {
    #[allow(clippy::unnecessary_cast)] // the field types differ between architectures
    pub fn of(st: &rfs::Stat) -> Meta {
        Meta {
            kind: FileType::from_raw_mode(st.st_mode as _),
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            key: crate::source::StatKey {
                dev: st.st_dev as u64,
                ino: st.st_ino as u64,
                size: st.st_size as u64,
                mtime_ns: (st.st_mtime as i64) * 1_000_000_000 + st.st_mtime_nsec as i64,
                ctime_ns: (st.st_ctime as i64) * 1_000_000_000 + st.st_ctime_nsec as i64,
            },
        }
    }
}

/// An open handle on the spec directory.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

fn io_err(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn join(base: &Path, comps: &[OsString]) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in comps {
        p.push(c);
    }
    p
}

impl Root {
    /// Open `path` (the canonical spec directory) as the root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The absolute host path of `comps`.
    pub fn host(&self, comps: &[OsString]) -> PathBuf {
        join(&self.path, comps)
    }

    /// Open the directory at `comps` (from the root) one component at a
    /// time, refusing a symlink at any level. A fresh open file
    /// description, so it can be listed from the start.
    pub fn open_dir(&self, comps: &[OsString]) -> io::Result<OwnedFd> {
        let mut cur = rfs::openat(&self.fd, c".", DIR_FLAGS, Mode::empty()).map_err(io_err)?;
        for c in comps {
            cur = rfs::openat(&cur, c.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(io_err)?;
        }
        Ok(cur)
    }

    /// Read the regular file `name` directly in the root, without following
    /// a symlink or blocking, at most `cap` bytes; `None` if it does not exist.
    pub fn read_file(&self, name: &str, cap: u64) -> io::Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        match rfs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => read_bounded(fd, cap).map(Some),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::LOOP) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symlink; it must be a regular file in the spec's directory",
            )),
            Err(e) => Err(io_err(e)),
        }
    }

    /// The target of the symlink at `comps`.
    pub fn read_link(&self, comps: &[OsString]) -> io::Result<OsString> {
        let (last, parents) = comps
            .split_last()
            .ok_or_else(|| io::Error::other("empty path"))?;
        read_link(&self.open_dir(parents)?, last)
    }

    /// The metadata of `r`, examined without following its last component
    /// unless `r.dir`; with the directory handle when it is one.
    pub fn stat(&self, r: &Resolved) -> io::Result<(Meta, Option<OwnedFd>)> {
        if r.dir || r.comps.is_empty() {
            let fd = self.open_dir(&r.comps)?;
            let st = rfs::fstat(&fd).map_err(io_err)?;
            return Ok((Meta::of(&st), Some(fd)));
        }
        let (last, parents) = r
            .comps
            .split_last()
            .ok_or_else(|| io::Error::other("empty path"))?;
        let parent = self.open_dir(parents)?;
        let st =
            rfs::statat(&parent, last.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)?;
        let meta = Meta::of(&st);
        if meta.kind == FileType::Directory {
            let fd =
                rfs::openat(&parent, last.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(io_err)?;
            let st = rfs::fstat(&fd).map_err(io_err)?;
            return Ok((Meta::of(&st), Some(fd)));
        }
        Ok((meta, None))
    }

    /// Resolve `written` (a path relative to the root, as written in the
    /// spec) without leaving the root. Symlinks among its directories are
    /// followed while they stay inside (an absolute target is accepted when
    /// it points into the root); the last component is followed only when
    /// the path says it names a directory (`dir/`, `dir/.`, `.`), as the
    /// kernel would. `..` never climbs above the root.
    pub fn resolve(&self, written: &str) -> Result<Resolved, ResolveError> {
        let follow_last = written.is_empty()
            || written.ends_with('/')
            || matches!(written.rsplit('/').next(), Some("." | ".."));
        let mut pending: VecDeque<OsString> = split(OsStr::new(written)).collect();
        // Directories entered so far: their handles and names.
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let mut hops = 0;
        let mut last_link: Option<(PathBuf, PathBuf)> = None;
        let rel = |stack: &[(OwnedFd, OsString)], c: &OsStr| {
            let mut p: PathBuf = stack.iter().map(|(_, n)| n.as_os_str()).collect();
            p.push(c);
            p
        };
        let escapes = |last_link: &Option<(PathBuf, PathBuf)>| match last_link.clone() {
            Some((link, target)) => ResolveError::Escapes { link, target },
            None => ResolveError::Leaves,
        };
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(escapes(&last_link));
                }
                continue;
            }
            if pending.is_empty() && !follow_last {
                let mut comps: Vec<OsString> = stack.into_iter().map(|(_, n)| n).collect();
                comps.push(c);
                return Ok(Resolved { comps, dir: false });
            }
            let base: BorrowedFd<'_> = stack.last().map_or(self.fd.as_fd(), |(f, _)| f.as_fd());
            let io = |e| ResolveError::Io {
                path: rel(&stack, &c),
                source: io_err(e),
            };
            let st = rfs::statat(base, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
            match FileType::from_raw_mode(st.st_mode as _) {
                FileType::Symlink => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(ResolveError::Loop);
                    }
                    let t = rfs::readlinkat(base, c.as_os_str(), Vec::new()).map_err(io)?;
                    let target = PathBuf::from(OsString::from_vec(t.into_bytes()));
                    let link = rel(&stack, &c);
                    last_link = Some((link.clone(), target.clone()));
                    let rest: &Path = if target.is_absolute() {
                        match target.strip_prefix(&self.path) {
                            Ok(r) => {
                                stack.clear();
                                r
                            }
                            Err(_) => return Err(ResolveError::Escapes { link, target }),
                        }
                    } else {
                        &target
                    };
                    let parts: Vec<OsString> = split(rest.as_os_str()).collect();
                    for p in parts.into_iter().rev() {
                        pending.push_front(p);
                    }
                }
                FileType::Directory => {
                    let fd =
                        rfs::openat(base, c.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(io)?;
                    stack.push((fd, c));
                }
                _ => {
                    return Err(ResolveError::NotDir {
                        path: rel(&stack, &c),
                    });
                }
            }
        }
        Ok(Resolved {
            comps: stack.into_iter().map(|(_, n)| n).collect(),
            dir: true,
        })
    }
}

/// The components of a relative path, keeping `..` (its meaning depends on
/// the symlinks before it) and dropping `.` and empty ones.
fn split(p: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    p.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsString::from_vec(c.to_vec()))
}

/// The most a spec or lock file may hold: the same 1 MiB as every other
/// small file kiln reads (`kiln_oci::untrusted::SMALL_FILE_LIMIT`).
pub const MAX_TEXT: u64 = kiln_oci::untrusted::SMALL_FILE_LIMIT;

fn kind_name(k: FileType) -> &'static str {
    match k {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "of an unknown type",
    }
}

/// Read the regular file `fd`, at most `cap` bytes.
fn read_bounded(fd: OwnedFd, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let m = Meta::of(&rfs::fstat(&fd).map_err(io_err)?);
    if m.kind != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file", kind_name(m.kind)),
        ));
    }
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is larger than {}, refused",
                kiln_oci::untrusted::human(cap)
            ),
        )
    };
    if m.key.size > cap {
        return Err(too_big());
    }
    let mut v = Vec::new();
    File::from(fd).take(cap + 1).read_to_end(&mut v)?;
    if v.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(v)
}

/// Read a file the user named (a symlink is followed: they chose it),
/// refusing anything but a regular file and more than `cap` bytes, and
/// never blocking on a FIFO.
pub fn read_named(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::open(path, flags, Mode::empty()).map_err(io_err)?;
    read_bounded(fd, cap)
}

/// One directory's entries (names and metadata, not following symlinks),
/// sorted by name, listed from the handle `fd`.
pub fn list(fd: &OwnedFd) -> io::Result<Vec<(OsString, Meta)>> {
    let mut dir = rfs::Dir::new(fd.try_clone()?).map_err(io_err)?;
    let mut out = Vec::new();
    while let Some(e) = dir.read() {
        let e = e.map_err(io_err)?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from_vec(name.to_vec());
        let st = rfs::statat(fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW).map_err(io_err)?;
        out.push((name, Meta::of(&st)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The target of the symlink `name` in the directory `fd`.
pub fn read_link(fd: &OwnedFd, name: &OsStr) -> io::Result<OsString> {
    let t = rfs::readlinkat(fd, name, Vec::new()).map_err(io_err)?;
    Ok(OsString::from_vec(t.into_bytes()))
}

/// Open the regular file at the absolute, symlink-free `path` for reading:
/// no symlink is followed anywhere in the path, a FIFO or device cannot
/// block the open, and the result is checked to be a regular file whose
/// device and inode are `key`'s (the file the walk recorded).
pub fn open_host(path: &Path, key: &crate::source::StatKey) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rfs::openat2(
        rfs::CWD,
        path,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        // No openat2 (before Linux 5.6, or filtered by seccomp): the same
        // guarantee one component at a time.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => open_walk(path, flags)?,
        r => r.map_err(io_err)?,
    };
    check_same(fd, key)
}

fn check_same(fd: OwnedFd, key: &crate::source::StatKey) -> io::Result<File> {
    let m = Meta::of(&rfs::fstat(&fd).map_err(io_err)?);
    if m.kind != FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is no longer a regular file (it was replaced during the build); build again",
        ));
    }
    if (m.key.dev, m.key.ino) != (key.dev, key.ino) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "was replaced by another file during the build; build again",
        ));
    }
    Ok(File::from(fd))
}

/// `open_host` without `openat2`: from `/`, each directory with
/// `O_NOFOLLOW | O_DIRECTORY`, then the file with `flags`.
pub(crate) fn open_walk(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    if !path.is_absolute() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an absolute path",
        ));
    }
    let comps: Vec<OsString> = split(path.as_os_str()).collect();
    let (last, parents) = comps
        .split_last()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut cur = rfs::open("/", DIR_FLAGS, Mode::empty()).map_err(io_err)?;
    for c in parents {
        if c == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "'..' in path"));
        }
        cur = rfs::openat(&cur, c.as_os_str(), DIR_FLAGS, Mode::empty()).map_err(io_err)?;
    }
    rfs::openat(&cur, last.as_os_str(), flags, Mode::empty()).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Root, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(t.path()).unwrap();
        let spec = base.join("spec");
        let out = base.join("outside");
        std::fs::create_dir_all(spec.join("www/sub")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("secret"), "s").unwrap();
        std::fs::write(spec.join("www/f"), "f").unwrap();
        symlink("/etc", spec.join("etc")).unwrap();
        symlink("www", spec.join("alias")).unwrap();
        symlink(spec.join("www"), spec.join("absalias")).unwrap();
        symlink("alias/sub/../..", spec.join("dotdot")).unwrap();
        symlink("../outside", spec.join("up")).unwrap();
        symlink("loop", spec.join("loop")).unwrap();
        symlink("www/f", spec.join("flink")).unwrap();
        let r = Root::open(&spec).unwrap();
        (t, r, spec)
    }

    fn comps(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn resolves_inside_and_refuses_outside() {
        let (_t, r, _) = root();
        let ok = |s: &str| r.resolve(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            ok("."),
            Resolved {
                comps: vec![],
                dir: true
            }
        );
        assert_eq!(
            ok("./"),
            Resolved {
                comps: vec![],
                dir: true
            }
        );
        assert_eq!(
            ok("www/.."),
            Resolved {
                comps: vec![],
                dir: true
            }
        );
        assert_eq!(
            ok("www/"),
            Resolved {
                comps: comps(&["www"]),
                dir: true
            }
        );
        assert_eq!(
            ok("alias/"),
            Resolved {
                comps: comps(&["www"]),
                dir: true
            }
        );
        assert_eq!(
            ok("absalias/."),
            Resolved {
                comps: comps(&["www"]),
                dir: true
            }
        );
        assert_eq!(
            ok("dotdot/"),
            Resolved {
                comps: vec![],
                dir: true
            }
        );
        // The last component unfollowed: a symlink stays a symlink.
        assert_eq!(
            ok("etc"),
            Resolved {
                comps: comps(&["etc"]),
                dir: false
            }
        );
        assert_eq!(
            ok("alias"),
            Resolved {
                comps: comps(&["alias"]),
                dir: false
            }
        );
        assert_eq!(
            ok("alias/f"),
            Resolved {
                comps: comps(&["www", "f"]),
                dir: false
            }
        );
        for bad in [
            "etc/",
            "etc/.",
            "etc/passwd",
            "up/",
            "up/secret",
            "etc/ssl/..",
        ] {
            let e = r.resolve(bad).unwrap_err();
            assert!(matches!(e, ResolveError::Escapes { .. }), "{bad}: {e}");
        }
        assert!(matches!(r.resolve(".."), Err(ResolveError::Leaves)));
        assert!(matches!(r.resolve("loop/"), Err(ResolveError::Loop)));
        assert!(matches!(
            r.resolve("flink/"),
            Err(ResolveError::NotDir { .. })
        ));
        assert!(r.resolve("nope/x").unwrap_err().is_not_found());
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_followed() {
        let (t, r, spec) = root();
        let fd = r.open_dir(&comps(&["www", "sub"])).unwrap();
        drop(fd);
        std::fs::remove_dir(spec.join("www/sub")).unwrap();
        symlink(t.path().join("outside"), spec.join("www/sub")).unwrap();
        let e = r.open_dir(&comps(&["www", "sub"])).unwrap_err();
        // O_DIRECTORY | O_NOFOLLOW on a symlink: ENOTDIR (or ELOOP).
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
            "{e}"
        );
        // And a swapped parent, for the file read.
        let f = spec.join("www/f");
        let key = Meta::of(&rfs::stat(&f).unwrap()).key;
        open_host(&f, &key).unwrap();
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
        open_walk(&f, flags).unwrap();
        std::fs::rename(spec.join("www"), spec.join("www2")).unwrap();
        symlink("www2", spec.join("www")).unwrap();
        assert!(open_host(&f, &key).is_err());
        assert!(open_walk(&f, flags).is_err());
    }

    #[test]
    fn bounded_reads_refuse_links_fifos_devices_and_big_files() {
        let (t, r, spec) = root();
        std::fs::write(spec.join("ok"), "hello").unwrap();
        assert_eq!(r.read_file("ok", 5).unwrap().unwrap(), b"hello");
        assert!(r.read_file("nope", 5).unwrap().is_none());
        let e = r.read_file("ok", 4).unwrap_err().to_string();
        assert!(e.contains("larger than 4 bytes"), "{e}");
        symlink(t.path().join("outside/secret"), spec.join("lnk")).unwrap();
        let e = r.read_file("lnk", 99).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        rfs::mkfifoat(&r.fd, "fifo", Mode::from_raw_mode(0o644)).unwrap();
        let e = r.read_file("fifo", 99).unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        let e = read_named(Path::new("/dev/zero"), 99)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a character device"), "{e}");
        let e = read_named(&spec.join("fifo"), 99).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        assert_eq!(read_named(&spec.join("lnk"), 99).unwrap(), b"s");
    }

    proptest::proptest! {
        #[test]
        fn resolution_never_leaves_the_root(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "www", "sub", "..", ".", "", "alias", "absalias", "etc", "up",
                    "dotdot", "loop", "f", "flink", "nope",
                ]),
                0..8,
            ),
            slash in proptest::bool::ANY,
        ) {
            let (_t, r, spec) = root();
            let mut path = parts.join("/");
            if slash {
                path.push('/');
            }
            if let Ok(res) = r.resolve(&path) {
                proptest::prop_assert!(res.comps.iter().all(|c| c != ".." && c != "."));
                let host = r.host(&res.comps);
                let dir = if res.dir { host.as_path() } else { host.parent().unwrap_or(&spec) };
                if let Ok(real) = std::fs::canonicalize(dir) {
                    proptest::prop_assert!(real.starts_with(&spec), "{path} -> {}", real.display());
                }
            }
        }
    }

    #[test]
    fn a_fifo_swapped_in_does_not_block() {
        let (_t, _r, spec) = root();
        let f = spec.join("www/f");
        let key = Meta::of(&rfs::stat(&f).unwrap()).key;
        std::fs::remove_file(&f).unwrap();
        rfs::mkfifoat(rfs::CWD, &f, Mode::from_raw_mode(0o644)).unwrap();
        let e = open_host(&f, &key).unwrap_err();
        assert!(e.to_string().contains("regular file"), "{e}");
    }
}
