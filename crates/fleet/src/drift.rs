//! Drift of running instances beyond their files: processes that are not
//! unmodified image executables started by the instance itself, listening
//! sockets the image did not declare, a runtime config that differs from the
//! one kiln generated — and an inotify watcher that notices changes to an
//! unpacked root filesystem within milliseconds, with a periodic metadata
//! sweep for what inotify cannot see.
//!
//! inotify watches the rootfs's directories. It sees a path replaced (a
//! hard link or rename into the tree is `IN_CREATE`/`IN_MOVED_TO`), but not
//! a rootfs file given a second name from outside (`ln rootfs/f /elsewhere`
//! delivers `IN_ATTRIB` only to a watch on the file itself, none to its
//! directory's; checked on Linux 6.x), nor a write through such a name
//! (events go to the directory of the name written through). One watch per
//! file would exhaust `max_user_watches` on real images, so [`sweep_rootfs`]
//! `lstat`s every path every few seconds instead and compares inode numbers
//! and link counts with the record taken at unpack.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// One finding, paths and hashes only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// `process`, `socket` or `config`.
    pub kind: String,
    pub detail: String,
}

fn finding(kind: &str, detail: String) -> Finding {
    Finding {
        kind: kind.to_string(),
        detail,
    }
}

/// Caches executable hashes by (dev, ino, size, ctime).
#[derive(Default)]
pub struct ExeHashes {
    cache: Mutex<HashMap<(u64, u64, u64, i64), String>>,
}

impl ExeHashes {
    fn hash(&self, pid: u32) -> Option<String> {
        let mut f = std::fs::File::open(format!("/proc/{pid}/exe")).ok()?;
        let m = f.metadata().ok()?;
        let key = (
            m.dev(),
            m.ino(),
            m.size(),
            m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        );
        if let Some(h) = kiln_oci::sync::lock(&self.cache).get(&key) {
            return Some(h.clone());
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => h.update(&buf[..n]),
                Err(_) => return None,
            }
        }
        let hex = hex::encode(h.finalize());
        kiln_oci::sync::lock(&self.cache).insert(key, hex.clone());
        Some(hex)
    }
}

fn ns_of(pid: u32, ns: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

fn ppid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Processes in the PID namespace of the instance whose init is `init`:
/// each must be `init` or a descendant of it (a process entered from outside
/// with `nsenter`/`setns` has a parent outside the instance), and its
/// executable must be a file of the image (`files`: path → sha256) with the
/// same content, not deleted or replaced.
pub fn process_drift(
    init: u32,
    files: &HashMap<String, String>,
    hashes: &ExeHashes,
) -> Vec<Finding> {
    let Some(ns) = ns_of(init, "pid") else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let members: HashSet<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| ns_of(p, "pid").as_deref() == Some(ns.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut pids: Vec<u32> = members.iter().copied().collect();
    pids.sort_unstable();
    for p in pids {
        if p != init {
            match ppid_of(p) {
                Some(pp) if members.contains(&pp) => {}
                Some(pp) => out.push(finding(
                    "process",
                    format!("pid {p} was started from outside the instance (parent pid {pp} is not in it)"),
                )),
                None => continue,
            }
        }
        let Ok(exe) = std::fs::read_link(format!("/proc/{p}/exe")) else {
            continue;
        };
        let exe = exe.to_string_lossy().into_owned();
        if let Some(path) = exe.strip_suffix(" (deleted)") {
            out.push(finding(
                "process",
                format!("pid {p} runs {path}, which was deleted or replaced"),
            ));
            continue;
        }
        match files.get(&exe) {
            None => out.push(finding(
                "process",
                format!("pid {p} runs {exe}, which is not a file of the image"),
            )),
            Some(want) => {
                if let Some(got) = hashes.hash(p)
                    && &got != want
                {
                    out.push(finding(
                        "process",
                        format!("pid {p} runs {exe} with sha256 {got}, the image has {want}"),
                    ));
                }
            }
        }
    }
    out
}

/// The address of a `/proc/net/tcp{,6}` local-address column (`0100007F:1F90`): the
/// kernel prints each 32-bit word of the address in host byte order.
fn proc_net_addr(col: &str) -> Option<SocketAddr> {
    let (ip, port) = col.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::from(word(0)?),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// TCP listeners inside the network namespace of `init` that are neither on a port in
/// `ports` (any address) nor at exactly one of `addrs` (kiln's egress listeners).
pub fn socket_drift(init: u32, ports: &[u16], addrs: &[SocketAddr]) -> Vec<Finding> {
    let mut found: Vec<SocketAddr> = Vec::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{init}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 || cols[3] != "0A" {
                continue;
            }
            if let Some(a) = proc_net_addr(cols[1])
                && !ports.contains(&a.port())
                && !addrs
                    .iter()
                    .any(|x| x.port() == a.port() && x.ip().to_canonical() == a.ip().to_canonical())
                && !found.contains(&a)
            {
                found.push(a);
            }
        }
    }
    found.sort_unstable();
    found
        .into_iter()
        .map(|a| {
            finding(
                "socket",
                format!(
                    "listening on TCP port {} ({a}), which the image does not declare",
                    a.port()
                ),
            )
        })
        .collect()
}

/// The bundle's `config.json` must still hash to what kiln wrote.
pub fn config_drift(bundle: &Path, want_sha256: &str) -> Option<Finding> {
    let bytes = std::fs::read(bundle.join("config.json")).ok()?;
    let got = hex::encode(Sha256::digest(&bytes));
    (got != want_sha256).then(|| {
        finding(
            "config",
            format!(
                "{}/config.json has sha256 {got}, kiln generated {want_sha256}",
                bundle.display()
            ),
        )
    })
}

/// The metadata sweep of one root filesystem: every path `lstat`ed (no file
/// read) and compared with the image's file manifest, and, with `record`
/// (taken when the rootfs was unpacked), each path's inode number and link
/// count; without one, the link counts the manifest implies. `ignore`: the
/// instances' mount points. `None` when nothing differs.
pub fn sweep_rootfs(
    root: &Path,
    baseline: &[kiln_drift::Entry],
    record: Option<&kiln_drift::InodeRecord>,
    ignore: &[&str],
) -> Result<Option<kiln_drift::Diff>, kiln_drift::DriftError> {
    let d = kiln_drift::sweep(root, baseline, record, ignore)?;
    Ok((d.exit_code() != 0).then_some(d))
}

/// Watches every directory of a root filesystem with inotify; `dirty` is set
/// on any change (content, metadata, create, delete, rename).
pub struct RootfsWatch {
    pub dirty: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for RootfsWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_MOVE_SELF
    | libc::IN_CLOSE_WRITE;

fn add_watch(fd: &OwnedFd, dir: &Path) -> bool {
    crate::sys::inotify_add_watch(fd.as_fd(), dir, MASK)
}

fn watch_tree(fd: &OwnedFd, root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if add_watch(fd, &d) {
            n += 1;
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    n
}

impl RootfsWatch {
    /// Start watching `root`; the watcher thread ends when this is dropped.
    pub fn new(root: &Path) -> std::io::Result<RootfsWatch> {
        let fd = crate::sys::inotify_init()?;
        watch_tree(&fd, root);
        // Nothing is known about the time before the watch: check at once.
        let dirty = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s, root): (_, _, PathBuf) = (dirty.clone(), stop.clone(), root.to_path_buf());
        std::thread::Builder::new()
            .name("kiln-rootfs-watch".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !s.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    if !crate::sys::poll(std::slice::from_mut(&mut pfd), 200).is_ok_and(|r| r > 0) {
                        continue;
                    }
                    let n = crate::sys::read(fd.as_fd(), &mut buf).unwrap_or(0);
                    if n > 0 {
                        d.store(true, Ordering::Relaxed);
                        // New directories need watches too.
                        watch_tree(&fd, &root);
                    }
                }
            })?;
        Ok(RootfsWatch { dirty, stop })
    }
}

/// Test fixture: `root` as kiln unpacks it, with its file manifest (metadata left out, as
/// the image's SBOM lists it) and its unpack-time inode record.
#[cfg(test)]
pub(crate) fn as_unpacked(
    root: PathBuf,
) -> (PathBuf, Vec<kiln_drift::Entry>, kiln_drift::InodeRecord) {
    let tree = kiln_drift::scan(&root, &kiln_drift::ScanOptions::default()).unwrap();
    let mut base: Vec<kiln_drift::Entry> = tree
        .entries
        .iter()
        .filter(|e| &*e.path != b"/")
        .cloned()
        .collect();
    for e in &mut base {
        e.meta = kiln_drift::Meta::default();
    }
    let rec = kiln_drift::record_inodes(&root, &[]).unwrap();
    (root, base, rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undeclared_listening_port_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let found = socket_drift(me, &[], &[]);
        assert!(
            found
                .iter()
                .any(|f| f.kind == "socket" && f.detail.contains(&format!("port {port}"))),
            "{found:?}"
        );
        assert!(
            socket_drift(me, &[port], &[])
                .iter()
                .all(|f| !f.detail.contains(&format!("port {port} (")))
        );
    }

    #[test]
    fn an_egress_port_is_allowed_only_at_kiln_s_own_address() {
        // kiln's egress listener for a declared name, and the instance's own listener on
        // the same port elsewhere.
        let kiln = std::net::TcpListener::bind("127.0.1.1:0").unwrap();
        let via = kiln.local_addr().unwrap();
        let other = std::net::TcpListener::bind(("127.0.0.1", via.port())).unwrap();
        let me = std::process::id();
        let about = |a: SocketAddr| format!("port {} ({a})", a.port());
        let found = socket_drift(me, &[], &[via]);
        assert!(
            !found.iter().any(|f| f.detail.contains(&about(via))),
            "{found:?}"
        );
        let at = other.local_addr().unwrap();
        assert!(
            found.iter().any(|f| f.detail.contains(&about(at))),
            "{found:?}"
        );
        // A v4-mapped spelling of the allowed address is the same address.
        let mapped = SocketAddr::new(
            IpAddr::V6(std::net::Ipv4Addr::new(127, 0, 1, 1).to_ipv6_mapped()),
            via.port(),
        );
        assert!(
            !socket_drift(me, &[], &[mapped])
                .iter()
                .any(|f| f.detail.contains(&about(via)))
        );
    }

    #[test]
    fn proc_net_addresses_parse() {
        let v4 = proc_net_addr(&format!("{:08X}:1F90", u32::from_ne_bytes([127, 0, 1, 2])));
        assert_eq!(v4, Some("127.0.1.2:8080".parse().unwrap()));
        let b = std::net::Ipv6Addr::LOCALHOST.octets();
        let words: String = b
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        assert_eq!(
            proc_net_addr(&format!("{words}:0050")),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(proc_net_addr("zz:0050"), None);
    }

    #[test]
    fn a_changed_runtime_config_is_found() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), b"{\"ociVersion\":\"1.0.2\"}").unwrap();
        let want = hex::encode(Sha256::digest(b"{\"ociVersion\":\"1.0.2\"}"));
        assert_eq!(config_drift(d.path(), &want), None);
        std::fs::write(
            d.path().join("config.json"),
            b"{\"ociVersion\":\"1.0.2\",\"x\":1}",
        )
        .unwrap();
        let f = config_drift(d.path(), &want).expect("drift");
        assert_eq!(f.kind, "config");
    }

    #[test]
    fn an_executable_outside_the_image_is_found() {
        // This test process: its executable is not a file of an (empty) image.
        let me = std::process::id();
        let found = process_drift(me, &HashMap::new(), &ExeHashes::default());
        assert!(
            found
                .iter()
                .any(|f| f.kind == "process" && f.detail.contains("not a file of the image")),
            "{found:?}"
        );
    }

    /// A rootfs as unpacked: files (two of them one inode, as the image has
    /// it), its manifest and its unpack-time record.
    fn rootfs(d: &Path) -> (PathBuf, Vec<kiln_drift::Entry>, kiln_drift::InodeRecord) {
        let root = d.join("rootfs");
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::write(root.join("www/index.html"), b"<h1>v1</h1>").unwrap();
        std::fs::hard_link(root.join("www/index.html"), root.join("www/copy.html")).unwrap();
        std::fs::write(root.join("www/other.html"), b"<h1>other</h1>").unwrap();
        as_unpacked(root)
    }

    #[test]
    fn the_sweep_finds_hard_link_swaps_and_outside_links_but_not_the_image_s_own() {
        let d = tempfile::tempdir().unwrap();
        let (root, base, rec) = rootfs(d.path());
        let out = d.path().join("outside");
        std::fs::create_dir(&out).unwrap();
        let ignore = ["/proc"];
        // (c) The image's own hard link (two names, one inode) is no drift.
        assert!(
            sweep_rootfs(&root, &base, Some(&rec), &ignore)
                .unwrap()
                .is_none()
        );
        // (b) An outside name for a rootfs file: 1 -> 2 links.
        std::fs::hard_link(root.join("www/other.html"), out.join("o")).unwrap();
        let diff = sweep_rootfs(&root, &base, Some(&rec), &ignore)
            .unwrap()
            .expect("drift");
        assert_eq!(diff.changed.len(), 1);
        assert_eq!(diff.changed[0].path, "/www/other.html");
        assert_eq!(diff.changed[0].fields, vec![kiln_drift::Field::Nlink]);
        std::fs::remove_file(out.join("o")).unwrap();
        assert!(
            sweep_rootfs(&root, &base, Some(&rec), &ignore)
                .unwrap()
                .is_none()
        );
        // (a) A file replaced by a link to an outside twin (same content).
        std::fs::write(out.join("twin"), b"<h1>other</h1>").unwrap();
        std::fs::hard_link(out.join("twin"), root.join("www/.swap")).unwrap();
        std::fs::rename(root.join("www/.swap"), root.join("www/other.html")).unwrap();
        let diff = sweep_rootfs(&root, &base, Some(&rec), &ignore)
            .unwrap()
            .expect("drift");
        assert_eq!(
            diff.changed[0].fields,
            vec![kiln_drift::Field::Inode, kiln_drift::Field::Nlink]
        );
        // Without a record, the link count still gives it away (the
        // manifest's entries imply one name each here).
        let mut implied = base.clone();
        for e in &mut implied {
            if e.kind == kiln_drift::Kind::File {
                e.meta.nlink = if e.path.ends_with(b"other.html") {
                    1
                } else {
                    2
                };
            }
        }
        let diff = sweep_rootfs(&root, &implied, None, &ignore)
            .unwrap()
            .expect("drift");
        assert_eq!(diff.changed[0].fields, vec![kiln_drift::Field::Nlink]);
    }

    #[test]
    fn a_change_under_a_watched_tree_sets_dirty() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let w = RootfsWatch::new(d.path()).unwrap();
        w.dirty.store(false, Ordering::Relaxed);
        std::fs::write(d.path().join("sub/new"), b"x").unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !w.dirty.load(Ordering::Relaxed) {
            assert!(std::time::Instant::now() < end, "no inotify event");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
