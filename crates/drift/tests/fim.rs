mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{is_root, sample_tree, settle, write};
use kiln_drift::{
    Cache, CheckOptions, Field, Kind, ScanOptions, Status, cache_path, check_rootfs, fim_check,
    fim_check_with, fim_init, scan,
};
use kiln_sbom::{FileKind, FileManifest};

fn init(dir: &Path, out: &Path) {
    settle();
    fim_init(dir, out).expect("fim init");
}

#[test]
fn round_trip_clean_and_v1_parseable() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    sample_tree(&root);
    let m = t.path().join("tree.manifest");
    init(&root, &m);
    let bytes = std::fs::read(&m).expect("read");
    let fm = FileManifest::parse(&bytes).expect("v1 parses");
    assert_eq!(fm.get("/bin/busybox").map(|e| e.mode), Some(0o4755));
    assert_eq!(
        fm.get("/bin/sh").and_then(|e| e.link.clone()).as_deref(),
        Some("busybox")
    );
    for incremental in [false, true] {
        let (d, _) = fim_check(&root, &m, incremental).expect("check");
        assert!(d.is_empty(), "{}", d.render());
        assert_eq!(d.exit_code(), 0);
    }
    // check_rootfs agrees, and ignores mount points.
    write(&root, "proc/1/status", b"x");
    write(&root, "tmp/scratch", b"x");
    let d = check_rootfs(&root, &fm, &["/proc", "/tmp/"]).expect("rootfs");
    assert!(d.is_empty(), "{}", d.render());
    let d = check_rootfs(&root, &fm, &[]).expect("rootfs");
    assert_eq!(d.exit_code(), 1);
    assert_eq!(d.added.len(), 3, "{}", d.render());
}

/// Applies mutation `which` to the sample tree; returns the expected exit
/// code and changed field.
fn mutate(root: &Path, which: usize) -> (i32, Option<Field>) {
    match which {
        0 => {
            // One byte, same size.
            let p = root.join("etc/motd");
            std::fs::write(&p, b"hellO\n").expect("write");
            (4, Some(Field::Sha256))
        }
        1 => {
            std::fs::set_permissions(
                root.join("etc/passwd"),
                std::fs::Permissions::from_mode(0o666),
            )
            .expect("chmod");
            (4, Some(Field::Mode))
        }
        2 => {
            std::os::unix::fs::lchown(root.join("etc/passwd"), Some(4242), None).expect("chown");
            (4, Some(Field::Uid))
        }
        3 => {
            write(root, "etc/cron.d/evil", b"* * * * * root nc -e /bin/sh\n");
            (1, None)
        }
        4 => {
            std::fs::remove_file(root.join("etc/motd")).expect("rm");
            (2, None)
        }
        5 => {
            std::fs::remove_file(root.join("bin/sh")).expect("rm");
            std::os::unix::fs::symlink("/tmp/evil", root.join("bin/sh")).expect("ln");
            (4, Some(Field::Link))
        }
        _ => {
            std::fs::remove_file(root.join("etc/motd")).expect("rm");
            std::fs::create_dir(root.join("etc/motd")).expect("mkdir");
            (4, Some(Field::Type))
        }
    }
}

#[test]
fn every_single_mutation_is_detected() {
    for which in 0..7 {
        if which == 2 && !is_root() {
            continue;
        }
        for incremental in [false, true] {
            let t = tempfile::tempdir().expect("tmp");
            let root = t.path().join("root");
            sample_tree(&root);
            let m = t.path().join("m.json");
            init(&root, &m);
            let (code, field) = mutate(&root, which);
            let (d, _) = fim_check(&root, &m, incremental).expect("check");
            assert_eq!(d.exit_code(), code, "mutation {which}: {}", d.render());
            if let Some(f) = field {
                assert_eq!(d.changed.len(), 1, "mutation {which}: {}", d.render());
                assert!(
                    d.changed[0].fields.contains(&f),
                    "mutation {which}: {}",
                    d.render()
                );
            }
            let json = serde_json::to_string(&d).expect("json");
            assert!(!json.contains("nc -e"), "diff must not carry contents");
        }
    }
}

#[test]
fn incremental_rehashes_only_changed_files_and_full_is_the_backstop() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    for i in 0..200 {
        write(
            &root,
            &format!("d{}/f{i}", i % 10),
            format!("file {i}\n").as_bytes(),
        );
    }
    let m = t.path().join("m.json");
    init(&root, &m);
    let (d, s) = fim_check(&root, &m, true).expect("check");
    assert!(d.is_empty());
    assert_eq!((s.files, s.files_hashed, s.full), (200, 0, false));

    // A same-size change with the mtime put back: ctime still moves.
    let p = root.join("d3/f3");
    let before = std::fs::metadata(&p).expect("stat");
    std::fs::write(&p, b"FILE 3\n").expect("write");
    let f = std::fs::File::options().write(true).open(&p).expect("open");
    f.set_modified(before.modified().expect("mtime"))
        .expect("utimens");
    drop(f);
    let (d, s) = fim_check(&root, &m, true).expect("check");
    assert_eq!(s.files_hashed, 1);
    assert_eq!(d.exit_code(), 4);
    assert_eq!(d.changed[0].path, "/d3/f3");
    assert_eq!(d.changed[0].fields, vec![Field::Sha256]);

    // If the metadata fast path is fooled (here: a forged cache record
    // matching the new metadata with the old hash), only a full re-hash
    // sees the change.
    settle();
    let (_, s) = fim_check(&root, &m, true).expect("check");
    assert_eq!(s.files_hashed, 1, "a racy entry is re-hashed once more");
    let cp = cache_path(&m);
    let mut cache = Cache::load(&cp).expect("load").expect("exists");
    let now = std::fs::symlink_metadata(&p).expect("stat");
    let old_hash = {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(b"file 3\n").into();
        h
    };
    let rec = cache
        .records
        .iter_mut()
        .find(|r| &*r.path == b"/d3/f3")
        .expect("record");
    use std::os::unix::fs::MetadataExt;
    rec.ctime_ns = now.ctime() * 1_000_000_000 + now.ctime_nsec();
    rec.mtime_ns = now.mtime() * 1_000_000_000 + now.mtime_nsec();
    rec.sha256 = old_hash;
    kiln_drift::write_atomic(&cp, &cache.to_bytes()).expect("write cache");
    let (d, s) = fim_check(&root, &m, true).expect("check");
    assert_eq!((d.exit_code(), s.files_hashed), (0, 0));
    let (d, s) = fim_check(&root, &m, false).expect("check");
    assert_eq!((d.exit_code(), s.files_hashed, s.full), (4, 200, true));
    // max_cache_age forces the full hash too.
    let opts = CheckOptions {
        incremental: true,
        max_cache_age: Some(std::time::Duration::from_millis(1)),
        ..CheckOptions::default()
    };
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (_, s) = fim_check_with(&root, &m, &opts).expect("check");
    assert!(s.full);
}

#[test]
fn manifest_hardlink_accepts_an_on_disk_hard_link() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    sample_tree(&root);
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).expect("link");
    let m = t.path().join("m.json");
    init(&root, &m);
    let mut fm = FileManifest::parse(&std::fs::read(&m).expect("read")).expect("parse");
    for e in &mut fm.entries {
        if e.path == "/bin/ls" {
            assert_eq!(e.kind, FileKind::File);
            e.kind = FileKind::Hardlink;
            e.link = Some("/bin/busybox".into());
        }
    }
    let fm = FileManifest::parse(&fm.to_json()).expect("still valid");
    let d = check_rootfs(&root, &fm, &[]).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    // Same content but no longer the same inode: the link is reported.
    std::fs::remove_file(root.join("bin/ls")).expect("rm");
    std::fs::copy(root.join("bin/busybox"), root.join("bin/ls")).expect("cp");
    let d = check_rootfs(&root, &fm, &[]).expect("check");
    assert_eq!(d.changed.len(), 1, "{}", d.render());
    assert_eq!(d.changed[0].fields, vec![Field::Link]);
}

fn copy_tree(from: &Path, to: &Path) -> bool {
    std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn usr_share_doc_round_trip() {
    let src = Path::new("/usr/share/doc");
    if !src.is_dir() {
        eprintln!("skipped: no /usr/share/doc");
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("doc");
    assert!(copy_tree(src, &root), "cp -a failed");
    let m = t.path().join("doc.manifest");
    init(&root, &m);
    let tree = scan(&root, &ScanOptions::default()).expect("scan");
    assert!(tree.entries.iter().all(|e| e.status == Status::Ok));
    assert!(tree.entries.iter().any(|e| e.kind == Kind::Symlink));
    let (d, s) = fim_check(&root, &m, false).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    assert!(s.files > 100 && s.files_hashed == s.files);
    let (d, s) = fim_check(&root, &m, true).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    assert_eq!(s.files_hashed, 0);
    // Change one file: found, and only it re-hashed.
    let victim = tree
        .entries
        .iter()
        .find(|e| e.kind == Kind::File && e.size > 10)
        .expect("a file");
    let p = root.join(std::str::from_utf8(&victim.path[1..]).expect("utf8"));
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[5] ^= 1;
    std::fs::write(&p, &bytes).expect("write");
    let (d, s) = fim_check(&root, &m, true).expect("check");
    assert_eq!(d.exit_code(), 4);
    assert_eq!(s.files_hashed, 1);
}
