//! The crate's raw libc calls, each behind a safe function: who runs this
//! process and on which host. Nothing else in the crate is `unsafe`.

use std::ffi::CStr;

/// The effective user id.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The login name of `uid` from the password database, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    // SAFETY: `passwd` is plain data (integers and pointers); all-zero is a
    // valid value that getpwuid_r overwrites.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives `pwd`'s
    // string fields, which are copied before it is dropped.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// `uname(2)`'s node name, `None` if the call fails.
pub(crate) fn nodename() -> Option<String> {
    // SAFETY: `utsname` is plain data (byte arrays); all-zero is a valid value
    // that uname overwrites.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    // SAFETY: nodename is NUL-terminated by uname.
    let n = unsafe { CStr::from_ptr(u.nodename.as_ptr()) };
    Some(n.to_string_lossy().into_owned())
}
