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
    let m = t.path().join("m.json");
    init(&root, &m);
    // The manifest of an image where /bin/ls is a hard link to /bin/busybox.
    let mut fm = FileManifest::parse(&std::fs::read(&m).expect("read")).expect("parse");
    let mut ls = fm.get("/bin/busybox").expect("busybox").clone();
    ls.path = "/bin/ls".into();
    ls.kind = FileKind::Hardlink;
    ls.link = Some("/bin/busybox".into());
    let at = fm.entries.partition_point(|e| e.path.as_str() < "/bin/ls");
    fm.entries.insert(at, ls);
    let fm = FileManifest::parse(&fm.to_json()).expect("still valid");
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).expect("link");
    let d = check_rootfs(&root, &fm, &[]).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    // Same content but no longer the same inode: the link is reported, and
    // both names now have one link where the image has two.
    std::fs::remove_file(root.join("bin/ls")).expect("rm");
    std::fs::copy(root.join("bin/busybox"), root.join("bin/ls")).expect("cp");
    let d = check_rootfs(&root, &fm, &[]).expect("check");
    assert_eq!(d.changed.len(), 2, "{}", d.render());
    assert_eq!(d.changed[0].path, "/bin/busybox");
    assert_eq!(d.changed[0].fields, vec![Field::Nlink]);
    assert_eq!(d.changed[1].fields, vec![Field::Link, Field::Nlink]);
}

/// A file with the same content, mode and owner as `orig`, outside the tree.
fn twin(orig: &Path, at: &Path) {
    std::fs::copy(orig, at).expect("cp");
    let mode = std::fs::metadata(orig).expect("stat").permissions();
    std::fs::set_permissions(at, mode).expect("chmod");
}

#[test]
fn hard_links_from_outside_are_changes_full_and_incremental() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    let out = t.path().join("outside");
    std::fs::create_dir(&out).expect("mkdir");
    sample_tree(&root);
    let m = t.path().join("m.json");
    init(&root, &m);
    // No file has a second name: the v1 manifest implies one each.
    assert!(FileManifest::parse(&std::fs::read(&m).expect("read")).is_ok());
    let changed = |incremental: bool| {
        let (d, _) = fim_check(&root, &m, incremental).expect("check");
        d.changed
            .iter()
            .map(|c| (c.path.clone(), c.fields.clone()))
            .collect::<Vec<_>>()
    };
    assert!(changed(true).is_empty());
    // (b) A second name outside the tree: nothing in the tree moved but ctime.
    std::fs::hard_link(root.join("etc/passwd"), out.join("passwd")).expect("ln");
    for inc in [true, false, true] {
        assert_eq!(
            changed(inc),
            vec![("/etc/passwd".to_string(), vec![Field::Nlink])],
            "incremental {inc}"
        );
    }
    // (d) Then edited from outside: the cache must not hide the new content.
    settle();
    std::fs::write(
        out.join("passwd"),
        b"root::0:0:root:/root:/bin/sh
",
    )
    .expect("w");
    let c = changed(true);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].1.contains(&Field::Sha256) && c[0].1.contains(&Field::Nlink),
        "{c:?}"
    );
    std::fs::remove_file(out.join("passwd")).expect("rm");
    std::fs::write(root.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").expect("w");
    assert!(changed(true).is_empty());
    // (a) A file replaced by a link to an outside twin (same content, mode).
    twin(&root.join("etc/motd"), &out.join("motd"));
    std::fs::hard_link(out.join("motd"), root.join("etc/.swap")).expect("ln");
    std::fs::rename(root.join("etc/.swap"), root.join("etc/motd")).expect("mv");
    for inc in [true, false] {
        assert_eq!(
            changed(inc),
            vec![("/etc/motd".to_string(), vec![Field::Nlink])],
            "incremental {inc}"
        );
    }
}

#[test]
fn internal_hard_links_at_init_are_no_change() {
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    sample_tree(&root);
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).expect("link");
    let m = t.path().join("m.json");
    init(&root, &m);
    let text = std::fs::read_to_string(&m).expect("read");
    assert!(text.contains(kiln_drift::FIM_MANIFEST_SCHEMA), "{text}");
    assert_eq!(text.matches("\"nlink\": 2").count(), 2, "{text}");
    for inc in [false, true] {
        let (d, _) = fim_check(&root, &m, inc).expect("check");
        assert!(d.is_empty(), "{}", d.render());
    }
    // Unlinking one of them changes the other's count.
    std::fs::remove_file(root.join("bin/ls")).expect("rm");
    let (d, _) = fim_check(&root, &m, true).expect("check");
    assert_eq!(d.exit_code(), 6, "{}", d.render());
    assert_eq!(d.changed[0].fields, vec![Field::Nlink]);
}

#[test]
fn an_unpack_record_catches_swaps_the_hashes_cannot() {
    use kiln_drift::{check_rootfs_with, record_inodes, sweep};
    let t = tempfile::tempdir().expect("tmp");
    let root = t.path().join("root");
    let out = t.path().join("outside");
    std::fs::create_dir(&out).expect("mkdir");
    sample_tree(&root);
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).expect("link");
    let m = t.path().join("m.json");
    init(&root, &m);
    // The image manifest of this tree: /bin/ls as a hard link to busybox.
    let loaded = kiln_drift::read_manifest(&std::fs::read(&m).expect("r")).expect("parse");
    let fm = to_v1(&loaded.entries);
    let rec = record_inodes(&root, &["/proc", "/tmp"]).expect("record");
    let ignore = ["/proc", "/tmp"];
    let (d, _) = check_rootfs_with(&root, &fm, Some(&rec), &ignore).expect("check");
    assert!(d.is_empty(), "{}", d.render());
    let base = kiln_drift::baseline_from_manifest(&fm);
    assert!(
        sweep(&root, &base, Some(&rec), &ignore)
            .expect("sweep")
            .is_empty()
    );
    // A swap whose outside name is gone (the attacker keeps a descriptor):
    // content, mode and link count all match; only the inode differs.
    twin(&root.join("etc/motd"), &out.join("motd"));
    let keep = std::fs::OpenOptions::new()
        .append(true)
        .open(out.join("motd"))
        .expect("open");
    std::fs::hard_link(out.join("motd"), root.join("etc/.swap")).expect("ln");
    std::fs::rename(root.join("etc/.swap"), root.join("etc/motd")).expect("mv");
    std::fs::remove_file(out.join("motd")).expect("rm");
    let d = check_rootfs(&root, &fm, &ignore).expect("check");
    assert!(d.is_empty(), "without a record this swap is invisible");
    let (d, _) = check_rootfs_with(&root, &fm, Some(&rec), &ignore).expect("check");
    assert_eq!(d.changed.len(), 1, "{}", d.render());
    assert_eq!(d.changed[0].fields, vec![Field::Inode]);
    let d = sweep(&root, &base, Some(&rec), &ignore).expect("sweep");
    assert_eq!(d.changed[0].fields, vec![Field::Inode]);
    drop(keep);
}

/// A kiln file manifest v1 of fim baseline entries, on-disk hard links
/// (same hash, nlink > 1) written as `hardlink` to the first name.
fn to_v1(entries: &[kiln_drift::Entry]) -> FileManifest {
    let mut first: std::collections::HashMap<[u8; 32], String> = Default::default();
    let mut out = Vec::new();
    for e in entries {
        let path = String::from_utf8(e.path.to_vec()).expect("utf8");
        let (kind, link) = match e.kind {
            Kind::Dir => (FileKind::Dir, None),
            Kind::Symlink => (
                FileKind::Symlink,
                e.link
                    .as_deref()
                    .map(|l| String::from_utf8(l.to_vec()).expect("utf8")),
            ),
            _ => match (
                e.meta.nlink > 1,
                e.sha256.and_then(|h| first.get(&h).cloned()),
            ) {
                (true, Some(to)) => (FileKind::Hardlink, Some(to)),
                _ => {
                    if let Some(h) = e.sha256 {
                        first.insert(h, path.clone());
                    }
                    (FileKind::File, None)
                }
            },
        };
        out.push(kiln_sbom::ManifestEntry {
            path,
            kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: if e.kind == Kind::File { e.size } else { 0 },
            sha256: e.sha256.map(hex::encode),
            link,
            origin: kiln_sbom::FileOrigin::Base,
        });
    }
    let fm = FileManifest {
        schema: kiln_sbom::FILE_MANIFEST_SCHEMA.to_string(),
        subject: kiln_sbom::ManifestSubject {
            name: "t".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
        },
        entries: out,
    };
    FileManifest::parse(&fm.to_json()).expect("valid v1")
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
#[ignore = "needs a populated /usr/share/doc"]
fn usr_share_doc_round_trip() {
    let src = Path::new("/usr/share/doc");
    assert!(
        src.is_dir(),
        "this test copies /usr/share/doc, which is missing"
    );
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
