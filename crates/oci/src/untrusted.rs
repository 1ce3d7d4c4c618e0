//! Reading files kiln did not write: keys, policies, specs, approvals,
//! signatures, blobs of a layout someone handed us.
//!
//! Every read here is bounded: the file must be a regular file (a FIFO, a
//! device such as `/dev/zero`, a socket or a directory is refused before a
//! single byte is read, so nothing blocks or runs forever), and at most a
//! known number of bytes is read — a longer file is an error, not a
//! truncation. Use [`read_small`] / [`read_small_string`] for any small
//! configuration or key file, and [`open_regular`] plus [`BoundedReader`]
//! for a blob whose size a descriptor states.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The cap for a key, policy, spec, approval, signature or other small
/// configuration file: 1 MiB.
pub const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// Whether [`open_regular`] follows a symlink in the last path component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// A user's own file (a key, a policy): a symlink to a regular file is fine.
    Yes,
    /// A blob inside a layout: a symlink is refused (`O_NOFOLLOW`).
    No,
}

/// Open `path` for reading without blocking on a FIFO and without reading
/// from anything but a regular file. Returns the file and its size.
///
/// The file is opened with `O_NONBLOCK` (opening a FIFO never waits for a
/// writer), `O_NOCTTY`, and with [`Follow::No`] `O_NOFOLLOW`; the type is then
/// checked on the open descriptor (`fstat`), so a swap between check and
/// read cannot change what is read.
pub fn open_regular(path: &Path, follow: Follow) -> io::Result<(File, u64)> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if follow == Follow::No {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            // O_NOFOLLOW on a symlink fails with ELOOP: say what it means.
            if follow == Follow::No && e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symbolic link, refused (only regular files are read)",
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(not_regular(ft));
    }
    Ok((f, meta.len()))
}

fn not_regular(ft: std::fs::FileType) -> io::Error {
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, refused (only regular files are read)"),
    )
}

/// Read a small untrusted file whole: a regular file (symlinks to one are
/// followed) of at most [`SMALL_FILE_LIMIT`] bytes.
pub fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    read_capped(path, SMALL_FILE_LIMIT, Follow::Yes)
}

/// [`read_small`] as UTF-8 text (an `InvalidData` error otherwise, as
/// `std::fs::read_to_string` gives).
pub fn read_small_string(path: &Path) -> io::Result<String> {
    let bytes = read_small(path)?;
    String::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Read a regular file of at most `limit` bytes. Reads at most `limit + 1`
/// bytes whatever the file claims, so a file growing under us is caught too.
pub fn read_capped(path: &Path, limit: u64, follow: Follow) -> io::Result<Vec<u8>> {
    let (f, size) = open_regular(path, follow)?;
    if size > limit {
        return Err(too_large(limit));
    }
    let mut out = Vec::with_capacity(size as usize);
    f.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Read the file at `rel` (a relative, `/`-separated path) inside the
/// directory `dir` (a directory someone handed us: an export, a bundle)
/// without following a symlink at any level below `dir`: each directory is
/// opened relative to its parent with `O_NOFOLLOW`, so neither a link nor a
/// rename race can lead outside `dir`. The file must be a regular file
/// (opened without blocking) of at most `limit` bytes; `..` and absolute
/// paths are refused.
pub fn read_beneath(dir: &Path, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags, openat};
    let comps: Vec<&str> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if rel.starts_with('/') || comps.contains(&"..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a path inside the directory"),
        ));
    }
    let (last, parents) = comps
        .split_last()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let link = |e: rustix::io::Errno, what: &str| -> io::Error {
        // O_NOFOLLOW on a link: ELOOP (a file), ENOTDIR (as a directory).
        if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{what} is a symbolic link or not a directory, refused (links are not followed)"
                ),
            )
        } else {
            io::Error::from(e)
        }
    };
    let mut cur = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for (i, c) in parents.iter().enumerate() {
        cur = openat(&cur, *c, dir_flags, Mode::empty())
            .map_err(|e| link(e, &parents[..=i].join("/")))?;
    }
    let fd = openat(
        &cur,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link, refused (only regular files are read)",
            )
        } else {
            io::Error::from(e)
        }
    })?;
    let f = File::from(fd);
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(meta.file_type()));
    }
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    f.take(limit.saturating_add(1)).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("is larger than {}, refused", human(limit)),
    )
}

/// Read until `buf` is full or the input ends, retrying on EINTR; returns
/// how many bytes were read (fewer than `buf.len()` only at end of input).
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// `n` bytes as a person reads a limit: `1 MiB`, `64 KiB`, `100 bytes`.
pub fn human(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// A reader that yields exactly `expected` bytes of `inner` or fails: it
/// never reads more than `expected + 1` bytes, errors as soon as there is a
/// byte too many, and errors at end of input when there were too few.
pub struct BoundedReader<R> {
    inner: R,
    expected: u64,
    seen: u64,
}

impl<R: Read> BoundedReader<R> {
    pub fn new(inner: R, expected: u64) -> BoundedReader<R> {
        BoundedReader {
            inner,
            expected,
            seen: 0,
        }
    }

    /// Bytes read so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Allow one byte past the end so "longer" is seen, never more.
        let room = self.expected.saturating_add(1) - self.seen;
        let want = (buf.len() as u64).min(room) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        self.seen += n as u64;
        if self.seen > self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "is longer than the {} bytes its descriptor states",
                    self.expected
                ),
            ));
        }
        if n == 0 && self.seen < self.expected {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "has {} bytes, its descriptor states {}",
                    self.seen, self.expected
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_devices_fifos_dirs_and_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_small(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let fifo = dir.path().join("fifo");
        crate::sys::mkfifo(&fifo);
        let e = read_small(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_small(dir.path()).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2 << 20]).unwrap();
        let e = read_small(&big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("1 MiB"), "{e}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"hello").unwrap();
        assert_eq!(read_small(&ok).unwrap(), b"hello");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read_small(&link).unwrap(), b"hello");
        let e = read_capped(&link, 10, Follow::No).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let zl = dir.path().join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &zl).unwrap();
        assert!(read_small(&zl).is_err());
        std::fs::write(&ok, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_small_string(&ok).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn read_beneath_follows_no_link_and_reads_only_regular_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), b"ok").unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/f"), b"secret").unwrap();
        assert_eq!(read_beneath(d, "a/b/f", 10).unwrap(), b"ok");
        std::os::unix::fs::symlink("b", d.join("a/l")).unwrap();
        std::os::unix::fs::symlink("../outside", d.join("a/up")).unwrap();
        std::os::unix::fs::symlink("b/f", d.join("a/lf")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("a/zero")).unwrap();
        let fifo = d.join("a/fifo");
        crate::sys::mkfifo(&fifo);
        for (rel, want) in [
            ("a/l/f", "a/l is a symbolic link"),
            ("a/up/f", "a/up is a symbolic link"),
            ("a/lf", "symbolic link"),
            ("a/zero", "symbolic link"),
            ("a/fifo", "FIFO"),
            ("a/b", "directory"),
            ("a/../outside/f", "not a path inside"),
            ("/etc/passwd", "not a path inside"),
        ] {
            let e = read_beneath(d, rel, 10).unwrap_err().to_string();
            assert!(e.contains(want), "{rel}: {e}");
        }
        let e = read_beneath(d, "a/b/f", 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("1 bytes"), "{e}");
    }

    #[test]
    fn bounded_reader_never_reads_past_one_extra_byte() {
        // An endless source: only size + 1 bytes are ever asked for.
        let mut r = BoundedReader::new(io::repeat(0), 10);
        let mut sink = Vec::new();
        let e = r.read_to_end(&mut sink).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(r.seen(), 11);
    }

    proptest! {
        #[test]
        fn bounded_reader_accepts_exactly_the_stated_size(len in 0usize..3000, expected in 0u64..3000, chunk in 1usize..700) {
            let data = vec![7u8; len];
            let mut r = BoundedReader::new(&data[..], expected);
            let mut out = Vec::new();
            let mut buf = vec![0u8; chunk];
            let res = loop {
                match r.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) => break Err(e),
                }
            };
            if len as u64 == expected {
                prop_assert!(res.is_ok());
                prop_assert_eq!(out.len(), len);
            } else {
                prop_assert!(res.is_err());
                prop_assert!(r.seen() <= expected + 1);
            }
        }
    }
}
