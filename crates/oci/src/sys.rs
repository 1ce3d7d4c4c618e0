//! The crate's raw libc calls, each behind a safe function. Nothing else in
//! the crate is `unsafe`.

use std::fs::File;
use std::os::fd::AsRawFd;

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: start writeback of `len` bytes at
/// `offset` (0, 0: the whole file) without waiting. Errors are ignored: it is
/// a hint, and fsync reports real failures.
pub(crate) fn start_writeback(f: &File, offset: u64, len: u64) {
    // SAFETY: a valid open fd and plain integers; the call only schedules I/O.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// `mkfifo(path, 0600)`, for tests that need a FIFO where a file belongs.
#[cfg(test)]
pub(crate) fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path that mkfifo does not retain.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}
