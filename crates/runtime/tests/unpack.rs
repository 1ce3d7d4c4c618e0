//! Unpacking: layer semantics, caching, concurrency, and hostile layers.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::{E, ImageOpts, put_image, tar_of};
use kiln_oci::{Digest, Store, media};
use kiln_runtime::{RuntimeError, unpack};

fn setup() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(t.path().join("store")).unwrap();
    (t, store)
}

fn empty(root: &Path) -> bool {
    !root.exists() || fs::read_dir(root).unwrap().next().is_none()
}

#[test]
fn applies_layers_in_order_with_whiteouts() {
    let (t, store) = setup();
    let l1 = tar_of(&[
        E::Dir("./", 0o755),
        E::Dir("etc/", 0o755),
        E::File("etc/keep", 0o4755, b"suid stays"),
        E::File("etc/gone", 0o644, b"x"),
        E::Dir("opq/", 0o700),
        E::File("opq/lower", 0o644, b"lower"),
        E::Dir("opq/sub/", 0o755),
        E::File("opq/sub/deep", 0o644, b"deep"),
        E::Sym("lnk", "/etc/keep"),
        E::File("f", 0o640, b"data"),
        E::Hard("h", "f"),
        E::Char("dev/null"),
        E::Fifo("pipe"),
    ]);
    let l2 = tar_of(&[
        E::File("etc/.wh.gone", 0o644, b""),
        E::File("opq/before", 0o644, b"kept: same layer"),
        E::File("opq/.wh..wh..opq", 0o644, b""),
        E::File("opq/upper", 0o644, b"upper"),
        E::File("lnk", 0o600, b"a file now"),
    ]);
    let (d, _) = put_image(
        &store,
        &[(media::LAYER_GZIP, l1), (media::LAYER_TAR, l2)],
        ImageOpts::default(),
    );
    let root = t.path().join("images");
    let r = unpack(&store, &d, &root).unwrap();
    assert!(r.fresh);
    assert_eq!(r.path, root.join(d.hex()).join("rootfs"));
    let p = &r.path;
    let keep = fs::metadata(p.join("etc/keep")).unwrap();
    assert_eq!(keep.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(keep.mtime(), 1_700_000_000);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!((keep.uid(), keep.gid()), (1234, 2345));
    }
    assert!(!p.join("etc/gone").exists());
    assert!(!p.join("opq/lower").exists());
    assert!(!p.join("opq/sub").exists());
    assert_eq!(fs::read(p.join("opq/before")).unwrap(), b"kept: same layer");
    assert_eq!(fs::read(p.join("opq/upper")).unwrap(), b"upper");
    assert_eq!(fs::read(p.join("lnk")).unwrap(), b"a file now");
    assert_eq!(
        fs::metadata(p.join("f")).unwrap().ino(),
        fs::metadata(p.join("h")).unwrap().ino()
    );
    assert!(!p.join("dev/null").exists());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        fs::symlink_metadata(p.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    for m in ["proc", "sys", "dev", "tmp", "run"] {
        assert!(p.join(m).is_dir(), "mount point {m}");
    }
    assert_eq!(fs::metadata(p.join("etc")).unwrap().mtime(), 1_700_000_000);
    let img: kiln_oci::ImageConfig =
        serde_json::from_slice(&fs::read(root.join(d.hex()).join("image.json")).unwrap()).unwrap();
    assert_eq!(img, r.config);

    // Second call: cheap, even with the layers gone from the store.
    let m = kiln_oci::ImageManifest::from_bytes(&store.read_blob(&d).unwrap(), "m").unwrap();
    for l in &m.layers {
        fs::remove_file(store.blob_path(&l.digest)).unwrap();
    }
    let again = unpack(&store, &d, &root).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.path, r.path);
    assert_eq!(fs::read_dir(&root).unwrap().count(), 1, "no temp dirs left");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn concurrent_unpackers_agree() {
    let (t, store) = setup();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut entries = vec![E::Dir("d/", 0o755)];
    let names: Vec<String> = (0..200).map(|i| format!("d/f{i}")).collect();
    for n in &names {
        entries.push(E::File(n, 0o644, b"x"));
    }
    entries.push(E::File("big", 0o644, &big));
    let (d, _) = put_image(
        &store,
        &[(media::LAYER_ZSTD, tar_of(&entries))],
        ImageOpts::default(),
    );
    let root = t.path().join("images");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| unpack(&store, &d, &root)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = results.iter().filter(|r| r.as_ref().unwrap().fresh).count();
    assert!(fresh >= 1);
    for r in &results {
        let r = r.as_ref().unwrap();
        assert_eq!(fs::read(r.path.join("big")).unwrap(), big);
        assert_eq!(fs::read_dir(r.path.join("d")).unwrap().count(), 200);
    }
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        1,
        "only <hex> is left"
    );
}

/// Unpack a one-layer image of `entries`; it must fail with nothing left.
fn refuse(entries: &[E]) -> (RuntimeError, tempfile::TempDir) {
    let (t, store) = setup();
    let (d, _) = put_image(
        &store,
        &[(media::LAYER_TAR, tar_of(entries))],
        ImageOpts::default(),
    );
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).expect_err("hostile layer accepted");
    assert!(
        empty(&root),
        "left behind: {:?}",
        fs::read_dir(&root).unwrap().collect::<Vec<_>>()
    );
    (e, t)
}

fn assert_unsafe(e: &RuntimeError, needle: &str) {
    assert!(matches!(e, RuntimeError::UnsafeEntry { .. }), "{e:?}");
    assert!(e.to_string().contains(needle), "{e}");
}

#[test]
fn refuses_dotdot() {
    let (e, _t) = refuse(&[E::Dir("a/", 0o755), E::File("a/../../escape", 0o644, b"x")]);
    assert_unsafe(&e, "..");
}

#[test]
fn refuses_absolute_paths() {
    let (e, _t) = refuse(&[E::File("/etc/kiln-pwned", 0o644, b"x")]);
    assert_unsafe(&e, "absolute");
    assert!(!Path::new("/etc/kiln-pwned").exists());
}

#[test]
fn refuses_writing_through_a_symlink_parent() {
    let (e, _t) = refuse(&[E::Sym("a", "/etc"), E::File("a/passwd", 0o644, b"pwned")]);
    assert_unsafe(&e, "symlink");
    // Relative escape into a directory the test owns, outside the rootfs.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let (e, _t) = refuse(&[E::Sym("b", &target), E::File("b/pwned", 0o644, b"x")]);
    assert_unsafe(&e, "symlink");
    assert!(!outside.path().join("pwned").exists());
    // A nested symlink parent, created as a directory by a later entry.
    let (e, _t) = refuse(&[
        E::Dir("x/", 0o755),
        E::Sym("x/y", &target),
        E::Dir("x/y/z/", 0o755),
    ]);
    assert_unsafe(&e, "symlink");
    assert!(!outside.path().join("z").exists());
}

#[test]
fn refuses_hard_links_outside_or_missing() {
    let (e, _t) = refuse(&[E::Hard("h", "../../../etc/passwd")]);
    assert_unsafe(&e, "hard link target");
    let (e, _t) = refuse(&[E::Hard("h", "/etc/passwd")]);
    assert_unsafe(&e, "hard link target");
    let (e, _t) = refuse(&[E::Hard("h", "later"), E::File("later", 0o644, b"x")]);
    assert_unsafe(&e, "not (yet)");
    let (e, _t) = refuse(&[E::Sym("s", "/etc"), E::Hard("h", "s/passwd")]);
    assert_unsafe(&e, "symlink");
}

#[test]
fn a_hard_link_to_a_symlink_links_the_symlink_itself() {
    let (t, store) = setup();
    let l = tar_of(&[E::Sym("s", "/etc/passwd"), E::Hard("h", "s")]);
    let (d, _) = put_image(&store, &[(media::LAYER_TAR, l)], ImageOpts::default());
    let r = unpack(&store, &d, &t.path().join("images")).unwrap();
    let md = fs::symlink_metadata(r.path.join("h")).unwrap();
    assert!(
        md.file_type().is_symlink(),
        "the host's /etc/passwd was linked"
    );
}

#[test]
fn refuses_bad_whiteouts() {
    let (e, _t) = refuse(&[E::Dir("a/", 0o755), E::File("a/.wh...", 0o644, b"")]);
    assert_unsafe(&e, "whiteout");
    let (e, _t) = refuse(&[E::File(".wh..", 0o644, b"")]);
    assert_unsafe(&e, "whiteout");
    let (e, _t) = refuse(&[E::Sym("a", "/etc"), E::File("a/.wh.passwd", 0o644, b"")]);
    assert_unsafe(&e, "symlink");
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn refuses_a_corrupt_layer_blob() {
    let (t, store) = setup();
    let (d, m) = put_image(
        &store,
        &[(media::LAYER_GZIP, tar_of(&[E::File("f", 0o644, b"hello")]))],
        ImageOpts::default(),
    );
    // Replace the blob with another valid gzip of a different tar.
    let other = common::compress(media::LAYER_GZIP, &tar_of(&[E::File("f", 0o644, b"HELLO")]));
    let p = store.blob_path(&m.layers[0].digest);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&p, other).unwrap();
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).unwrap_err();
    assert!(
        matches!(e, RuntimeError::LayerDigestMismatch { .. }),
        "{e:?}"
    );
    assert!(empty(&root));
}

#[test]
fn refuses_a_diff_id_mismatch() {
    let (t, store) = setup();
    let (d, _) = put_image(
        &store,
        &[(media::LAYER_ZSTD, tar_of(&[E::File("f", 0o644, b"hello")]))],
        ImageOpts {
            diff_ids: Some(vec![Digest::of(b"something else")]),
            ..Default::default()
        },
    );
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).unwrap_err();
    assert!(
        matches!(e, RuntimeError::DiffIdMismatch { index: 0, .. }),
        "{e:?}"
    );
    assert!(empty(&root));
}

#[test]
fn refuses_a_corrupt_manifest_or_config() {
    let (t, store) = setup();
    let (d, m) = put_image(
        &store,
        &[(media::LAYER_TAR, tar_of(&[E::File("f", 0o644, b"x")]))],
        ImageOpts::default(),
    );
    let p = store.blob_path(&m.config.digest);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&p, b"{\"tampered\":true}").unwrap();
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).unwrap_err();
    assert!(
        matches!(
            e,
            RuntimeError::Oci(kiln_oci::OciError::DigestMismatch { .. })
        ),
        "{e:?}"
    );
    assert!(empty(&root));
    let e = unpack(&store, &Digest::of(b"no such manifest"), &root).unwrap_err();
    assert!(
        matches!(e, RuntimeError::Oci(kiln_oci::OciError::MissingBlob(_))),
        "{e:?}"
    );
}

#[test]
fn refuses_a_layer_count_mismatch() {
    let (t, store) = setup();
    let (d, _) = put_image(
        &store,
        &[(media::LAYER_TAR, tar_of(&[E::File("f", 0o644, b"x")]))],
        ImageOpts {
            diff_ids: Some(vec![]),
            ..Default::default()
        },
    );
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).unwrap_err();
    assert!(matches!(e, RuntimeError::BadImage { .. }), "{e:?}");
    assert!(empty(&root));
}

/// The unpacker records every path's inode and link count before the
/// rootfs is visible; a cached rootfs has no record (it was not seen being
/// written).
#[test]
fn a_fresh_unpack_records_inodes_and_link_counts() {
    let (t, store) = setup();
    let l = tar_of(&[
        E::Dir("./", 0o755),
        E::File("f", 0o644, b"data"),
        E::Hard("h", "f"),
        E::File("g", 0o644, b"data"),
        E::Sym("s", "f"),
    ]);
    let (d, _) = put_image(&store, &[(media::LAYER_TAR, l)], ImageOpts::default());
    let root = t.path().join("images");
    let r = unpack(&store, &d, &root).unwrap();
    let rec = r.inodes.as_ref().expect("a fresh unpack has a record");
    for (name, nlink) in [("f", 2), ("h", 2), ("g", 1), ("s", 1)] {
        let md = fs::symlink_metadata(r.path.join(name)).unwrap();
        let e = rec.get(format!("/{name}").as_bytes()).expect(name);
        assert_eq!((e.ino, e.nlink), (md.ino(), nlink), "{name}");
    }
    assert!(rec.get(b"/").is_some() && rec.get(b"/proc").is_some());
    let again = unpack(&store, &d, &root).unwrap();
    assert!(!again.fresh && again.inodes.is_none());
}

/// A layer whose GNU long-name header claims 4 MiB: refused by the tar
/// guard (naming the limit) before the tar reader buffers it, and nothing
/// is left unpacked.
#[test]
fn refuses_a_huge_tar_extension_header() {
    let (t, store) = setup();
    let mut h = tar::Header::new_gnu();
    h.set_path("x").unwrap();
    h.set_size(4 << 20);
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_cksum();
    let mut layer = h.as_bytes().to_vec();
    layer.resize(512 + (4 << 20) + 1024, b'a');
    let (d, _) = put_image(&store, &[(media::LAYER_GZIP, layer)], ImageOpts::default());
    let root = t.path().join("images");
    let e = unpack(&store, &d, &root).unwrap_err().to_string();
    assert!(
        e.contains("tar extension header (L) of 4194304 bytes"),
        "{e}"
    );
    assert!(empty(&root));
}
