#![allow(dead_code)]

use std::path::Path;

pub fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(p, content).expect("write");
}

/// A small tree: dirs, files (one setuid), a symlink, a hard link.
pub fn sample_tree(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    write(root, "bin/busybox", b"#!busybox\x00\x01\x02 binary");
    write(root, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
    write(root, "etc/motd", b"hello\n");
    write(root, "usr/share/doc/a.txt", &vec![7u8; 200_000]);
    std::fs::create_dir_all(root.join("proc")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("symlink");
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .expect("chmod");
}

/// Lets the racy-timestamp window of the cache pass.
pub fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(250));
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
