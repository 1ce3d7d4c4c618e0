//! A runc environment for the tests and the start-up benchmark: a busybox
//! image unpacked into a temporary store, a private runc root, and helpers
//! to start instances and wait for them to serve.

#![allow(dead_code)]

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_oci::Store;
use kiln_runtime::{Bundle, InstanceSpec, Rootfs, Runc, Runtime, http_get_in_netns, unpack};

use crate::common;

/// Panics unless this runs as root with runc and /bin/busybox.
pub fn prerequisites() {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root");
    }
    if !Runc::new("/nonexistent").available() {
        missing.push("runc");
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("/bin/busybox");
    }
    assert!(
        missing.is_empty(),
        "this test needs {} (scripts/install-deps.sh)",
        missing.join(", ")
    );
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub runc: Runc,
    pub rootfs: Rootfs,
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(tmp.path().join("store")).unwrap();
        let d = common::busybox_image(&store);
        let rootfs = unpack(&store, &d, &tmp.path().join("images")).unwrap();
        let runc = Runc::new(tmp.path().join("runc"));
        Env { tmp, runc, rootfs }
    }

    pub fn bundle(&self, spec: &InstanceSpec) -> PathBuf {
        let dir = self.tmp.path().join("bundles").join(&spec.id);
        Bundle::write(&dir, spec, &self.rootfs.path).unwrap();
        dir
    }
}

/// Force-deletes the container when dropped (also on test failure).
pub struct Guard<'a>(pub &'a Runc, pub String);
impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.delete(&self.1, true);
    }
}

pub fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded, so both fds are open and owned by us alone.
    unsafe {
        use std::os::fd::FromRawFd;
        (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

pub fn wait_healthy(pid: u32, deadline: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if let Ok(200) = http_get_in_netns(pid, 8080, "/", Duration::from_millis(300)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < deadline,
            "instance not healthy after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
