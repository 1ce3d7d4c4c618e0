//! Thin safe wrappers over the `*at` system calls the scanner needs. Every
//! name is a single path component resolved relative to an open directory,
//! so no path is ever longer than one component (deep trees cannot hit
//! `PATH_MAX`) and no symlink is ever followed (`AT_SYMLINK_NOFOLLOW`,
//! `O_NOFOLLOW`, `O_DIRECTORY`).

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The `stat` fields the scanner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stat {
    fn from_raw(st: &libc::stat) -> Stat {
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Stat {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            dev: st.st_dev,
            ino: st.st_ino,
            #[allow(clippy::useless_conversion)] // u32 on some targets
            nlink: u64::from(st.st_nlink),
            rdev: st.st_rdev,
            mtime_ns: ns(st.st_mtime, st.st_mtime_nsec),
            ctime_ns: ns(st.st_ctime, st.st_ctime_nsec),
        }
    }

    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `open(2)` of a directory given by a full path (the scan root only).
pub(crate) fn open_dir_path(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string; the returned fd is
    // owned by nobody else.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by open(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` of one component below `dir`.
pub(crate) fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor for the duration of the call and
    // `name` is NUL-terminated.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by openat(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(2)`.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid out-pointer of the right type; `fd` is open.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised `st`.
    Ok(Stat::from_raw(unsafe { st.assume_init_ref() }))
}

/// `fstatat(2)` with `AT_SYMLINK_NOFOLLOW` (an lstat relative to `dir`).
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, NUL-terminated name, valid out-pointer.
    cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    // SAFETY: fstatat succeeded, so it initialised `st`.
    Ok(Stat::from_raw(unsafe { st.assume_init_ref() }))
}

/// `readlinkat(2)`: the raw target bytes of the symlink `name` in `dir`.
pub(crate) fn read_link_at(dir: BorrowedFd<'_>, name: &CStr, hint: u64) -> io::Result<Vec<u8>> {
    let mut cap = usize::try_from(hint).unwrap_or(0).clamp(64, 1 << 16) + 1;
    loop {
        let mut buf = vec![0u8; cap];
        // SAFETY: `buf` has `cap` writable bytes; fd and name are valid.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if n < cap {
            buf.truncate(n);
            return Ok(buf);
        }
        // Possibly truncated (the link changed since lstat): grow, bounded.
        if cap > 1 << 20 {
            return Err(io::Error::other("symlink target longer than 1 MiB"));
        }
        cap *= 4;
    }
}

/// The names in directory `dir` (without `.` and `..`), read through a
/// duplicate descriptor so `dir` stays usable for `*at` calls.
pub(crate) fn read_dir_names(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let dup = dir.try_clone_to_owned()?;
    // The duplicate shares the file offset with `dir`; rewind so a reused
    // descriptor is read from the start.
    use std::os::fd::IntoRawFd;
    let raw = dup.into_raw_fd();
    // SAFETY: `raw` is an open descriptor we own; fdopendir takes ownership
    // on success.
    let dirp = unsafe { libc::fdopendir(raw) };
    if dirp.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `raw` is still ours to close.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Err(e);
    }
    // SAFETY: `dirp` is a valid DIR* we own.
    unsafe { libc::rewinddir(dirp) };
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; clearing it distinguishes the end
        // of the directory from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `dirp` is valid and used by this thread only.
        let ent = unsafe { libc::readdir(dirp) };
        if ent.is_null() {
            let e = io::Error::last_os_error();
            break if e.raw_os_error().unwrap_or(0) == 0 {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: readdir returned a valid dirent whose d_name is
        // NUL-terminated and lives until the next readdir/closedir.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b != b"." && b != b".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: `dirp` is valid and closed exactly once (this also closes `raw`).
    unsafe { libc::closedir(dirp) };
    result.map(|()| names)
}

/// Tells the kernel the file will be read sequentially (bigger readahead).
pub(crate) fn advise_sequential(fd: BorrowedFd<'_>) {
    // SAFETY: advisory only; `fd` is open.
    unsafe {
        libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Wall-clock time in nanoseconds since the epoch (0 if before it).
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
