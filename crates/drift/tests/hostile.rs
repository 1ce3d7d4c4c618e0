mod common;

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{is_root, sample_tree, settle, write};
use kiln_drift::{
    FIM_MANIFEST_SCHEMA, Kind, ScanOptions, Status, fim_check, fim_init, read_manifest, scan,
};

#[test]
fn symlink_loops_are_reported_not_followed() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path();
    sample_tree(root);
    std::os::unix::fs::symlink("b", root.join("a")).expect("ln");
    std::os::unix::fs::symlink("a", root.join("b")).expect("ln");
    std::os::unix::fs::symlink(".", root.join("self")).expect("ln");
    std::os::unix::fs::symlink("/", root.join("hostroot")).expect("ln");
    std::os::unix::fs::symlink("..", root.join("etc/up")).expect("ln");
    let tree = scan(root, &ScanOptions::default()).expect("scan");
    for (p, target) in [
        ("/a", "b"),
        ("/b", "a"),
        ("/self", "."),
        ("/hostroot", "/"),
        ("/etc/up", ".."),
    ] {
        let e = tree.get(p.as_bytes()).expect("listed");
        assert_eq!(e.kind, Kind::Symlink);
        assert_eq!(e.link.as_deref(), Some(target.as_bytes()));
    }
    assert!(tree.entries.iter().all(|e| !e.path.starts_with(b"/self/")));
    assert!(
        tree.entries
            .iter()
            .all(|e| !e.path.starts_with(b"/hostroot/"))
    );
    assert!(
        tree.entries.windows(2).all(|w| w[0].path < w[1].path),
        "sorted, unique"
    );
}

#[test]
fn fifo_socket_and_non_utf8_names_round_trip_through_the_fim_schema() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    sample_tree(&root);
    let fifo = CString::new(root.join("run.fifo").as_os_str().as_bytes()).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let _sock = std::os::unix::net::UnixListener::bind(root.join("s.sock")).expect("bind");
    let weird = root.join(OsStr::from_bytes(b"caf\xe9\\n\x01"));
    std::fs::write(&weird, b"latin-1 name").expect("write");
    std::os::unix::fs::symlink(OsStr::from_bytes(b"\xff\xfe"), root.join("badlink")).expect("ln");

    // Scanning never opens the FIFO (it would block forever).
    let tree = scan(&root, &ScanOptions::default()).expect("scan");
    assert_eq!(tree.get(b"/run.fifo").map(|e| e.kind), Some(Kind::Fifo));
    assert_eq!(tree.get(b"/s.sock").map(|e| e.kind), Some(Kind::Socket));
    let w = tree.get(b"/caf\xe9\\n\x01").expect("weird name listed");
    assert_eq!(w.display_path(), "/caf\\xe9\\x5cn\\x01");
    assert!(w.sha256.is_some());

    let m = t.path().join("m.json");
    settle();
    let s = fim_init(&root, &m).expect("init");
    assert_eq!(s.schema, FIM_MANIFEST_SCHEMA);
    let loaded = read_manifest(&std::fs::read(&m).expect("read")).expect("parse");
    assert!(
        loaded
            .entries
            .iter()
            .any(|e| &*e.path == b"/caf\xe9\\n\x01")
    );
    assert!(
        loaded
            .entries
            .iter()
            .any(|e| e.link.as_deref() == Some(&b"\xff\xfe"[..]))
    );
    let (d, _) = fim_check(&root, &m, false).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    // Byte-exact comparison: a name differing in one invalid byte is another path.
    std::fs::rename(&weird, root.join(OsStr::from_bytes(b"caf\xe8\\n\x01"))).expect("mv");
    let (d, _) = fim_check(&root, &m, true).expect("check");
    assert_eq!(d.exit_code(), 3, "{}", d.render());
    assert_eq!(d.added[0].path, "/caf\\xe8\\x5cn\\x01");
}

/// Creates `depth` nested directories named `dir` below `root` with the
/// `*at` calls (the full path is far beyond PATH_MAX), and a file at the
/// bottom.
fn deep_chain(root: &Path, depth: usize) {
    let c = CString::new(root.as_os_str().as_bytes()).expect("cstr");
    // SAFETY: valid path; the fd is closed below.
    let mut fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    assert!(fd >= 0);
    let name = CString::new("dir").expect("cstr");
    for _ in 0..depth {
        // SAFETY: `fd` is an open directory, `name` NUL-terminated.
        unsafe {
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            assert!(next >= 0);
            libc::close(fd);
            fd = next;
        }
    }
    let f = CString::new("bottom").expect("cstr");
    // SAFETY: as above.
    unsafe {
        let file = libc::openat(fd, f.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
        assert!(file >= 0);
        assert_eq!(libc::write(file, b"deep".as_ptr().cast(), 4), 4);
        libc::close(file);
        libc::close(fd);
    }
}

#[test]
fn a_2000_deep_chain_beyond_path_max() {
    let t = tempfile::tempdir().expect("tmp");
    deep_chain(t.path(), 2000);
    let tree = scan(t.path(), &ScanOptions::default()).expect("scan");
    assert_eq!(tree.entries.len(), 2002);
    let bottom = tree
        .entries
        .iter()
        .max_by_key(|e| e.path.len())
        .expect("entries");
    assert_eq!(bottom.path.len(), 2000 * 4 + "/bottom".len());
    assert!(bottom.path.len() > libc::PATH_MAX as usize);
    assert_eq!(bottom.status, Status::Ok);
    assert_eq!(bottom.size, 4);
}

#[test]
fn a_file_growing_while_hashed_is_unstable() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    write(&root, "quiet", b"q");
    let p = root.join("growing.log");
    std::fs::write(&p, vec![0u8; 32 << 20]).expect("write");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let p = p.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .expect("open");
            while !stop.load(Ordering::Relaxed) {
                let _ = f.write_all(&[1u8; 512]);
            }
        })
    };
    let mut unstable = false;
    for _ in 0..5 {
        let tree = scan(&root, &ScanOptions::default()).expect("scan");
        let e = tree.get(b"/growing.log").expect("listed");
        assert_eq!(
            tree.get(b"/quiet").map(|q| q.status.clone()),
            Some(Status::Ok)
        );
        if e.status == Status::Unstable {
            assert!(e.sha256.is_none());
            unstable = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(
        unstable,
        "a file appended to while hashed must be reported unstable"
    );
}

/// Set in the copy of the test binary that runs without root's permission
/// overrides.
const NO_DAC_ENV: &str = "KILN_TEST_WITHOUT_DAC_OVERRIDE";

#[test]
fn unreadable_entries_are_reported_not_fatal() {
    if is_root() && std::env::var_os(NO_DAC_ENV).is_none() {
        // Root reads everything (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): run
        // this test again in a copy of the test binary without them, where
        // mode 000 keeps root out as it keeps anyone else.
        let name = "unreadable_entries_are_reported_not_fatal";
        let o = std::process::Command::new("setpriv")
            .arg("--bounding-set=-dac_override,-dac_read_search")
            .arg(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--nocapture"])
            .env(NO_DAC_ENV, "1")
            .output()
            .expect("setpriv (util-linux)");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("1 passed"),
            "{name} without CAP_DAC_OVERRIDE: {}\n{out}{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().expect("tmp");
    write(t.path(), "locked/secret", b"s");
    write(t.path(), "closed", b"c");
    std::fs::set_permissions(
        t.path().join("locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    std::fs::set_permissions(
        t.path().join("closed"),
        std::fs::Permissions::from_mode(0o000),
    )
    .expect("chmod");
    let tree = scan(t.path(), &ScanOptions::default()).expect("scan");
    std::fs::set_permissions(
        t.path().join("locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    assert!(matches!(
        tree.get(b"/locked").map(|e| &e.status),
        Some(Status::Unreadable(_))
    ));
    assert!(matches!(
        tree.get(b"/closed").map(|e| &e.status),
        Some(Status::Unreadable(_))
    ));
}

/// Runs `f` on a thread; a read that blocks (a FIFO opened for reading
/// waits for a writer forever) fails the test instead of hanging it.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the check blocked: killed after 60 s")
}

/// A manifest (or cache sidecar) that is a FIFO, a device, a directory or
/// larger than the limit is refused at once, naming the file and the cause.
#[test]
fn hostile_manifest_and_cache_files_are_refused_without_blocking() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    sample_tree(&root);
    let fifo = t.path().join("m.fifo");
    let c = CString::new(fifo.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let zero = t.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("ln");
    // Sparse: larger than the limit without using the disk.
    let big = t.path().join("big.json");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(kiln_drift::MAX_MANIFEST_BYTES + 1))
        .expect("big");
    for (m, want) in [
        (fifo.clone(), "FIFO"),
        (zero, "character device"),
        (t.path().to_path_buf(), "directory"),
        (big.clone(), "larger than 1024 MiB"),
    ] {
        let r = root.clone();
        let mm = m.clone();
        let e = within_a_minute(move || fim_check(&r, &mm, false).map(|_| ()))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains(&m.display().to_string()) && e.contains(want),
            "{e}"
        );
    }
    // A FIFO where the cache sidecar is expected only costs speed.
    let m = t.path().join("m.json");
    fim_init(&root, &m).expect("init");
    let cache = kiln_drift::cache_path(&m);
    let _ = std::fs::remove_file(&cache);
    let c = CString::new(cache.as_os_str().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (r, mm) = (root.clone(), m.clone());
    let (diff, _) = within_a_minute(move || fim_check(&r, &mm, true)).expect("check");
    assert!(diff.is_empty(), "{diff:?}");
}
