use super::*;
use proptest::prelude::*;

#[test]
fn refs() {
    assert_eq!(
        ImageRef::parse("hello:1.0.0").unwrap(),
        ImageRef::Tag {
            name: "hello".into(),
            tag: "1.0.0".into()
        }
    );
    assert_eq!(
        ImageRef::parse("localhost:5000/team/hello:1").unwrap(),
        ImageRef::Tag {
            name: "localhost:5000/team/hello".into(),
            tag: "1".into()
        }
    );
    assert!(ImageRef::parse("hello").is_err());
    assert!(ImageRef::parse("Hello:1").is_err());
    assert!(ImageRef::parse("hello:").is_err());
    assert!(ImageRef::parse("hello:-x").is_err());
    assert!(ImageRef::parse("../x:1").is_err());
    let d = Digest::of(b"x");
    assert_eq!(
        ImageRef::parse(&format!("hello@{d}")).unwrap(),
        ImageRef::Digest {
            name: Some("hello".into()),
            digest: d
        }
    );
}

proptest! {
    #[test]
    fn ref_parser_never_panics(s in ".{0,100}") {
        let _ = ImageRef::parse(&s);
    }

    #[test]
    fn valid_refs_roundtrip(name in "[a-z0-9]{1,10}(/[a-z0-9]{1,8}){0,2}", tag in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}") {
        let s = format!("{name}:{tag}");
        let r = ImageRef::parse(&s).unwrap();
        prop_assert_eq!(r.to_string(), s);
    }
}

#[test]
fn staging_commit_and_abort() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path().join("s")).unwrap();
    let mut st = store.staging().unwrap();
    let d = st.put(media::CONFIG, b"abc").unwrap();
    assert!(!store.has_blob(&d.digest));
    drop(st);
    assert!(!store.has_blob(&d.digest), "aborted staging leaked a blob");
    let mut st = store.staging().unwrap();
    let d = st.put(media::CONFIG, b"abc").unwrap();
    st.commit().unwrap();
    assert_eq!(store.read_descriptor(&d).unwrap(), b"abc");
    store
        .tag("a", "1", &Descriptor::new(media::MANIFEST, d.digest, 3))
        .unwrap();
    let imgs = store.images().unwrap();
    assert_eq!((imgs[0].name.as_str(), imgs[0].tag.as_str()), ("a", "1"));
}

#[test]
fn write_atomic_with_a_bare_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let old = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let r = write_atomic(Path::new("plain.txt"), b"x");
    std::env::set_current_dir(old).unwrap();
    r.unwrap();
    assert_eq!(fs::read(dir.path().join("plain.txt")).unwrap(), b"x");
}

#[test]
fn corrupt_blob_detected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut st = store.staging().unwrap();
    let d = st.put(media::CONFIG, b"abc").unwrap();
    st.commit().unwrap();
    fs::write(store.blob_path(&d.digest), b"abd").unwrap();
    let e = store.read_blob(&d.digest).unwrap_err().to_string();
    assert!(e.contains("corrupt"), "{e}");
    assert!(store.verify_blob(&d).is_err());
}

fn mkfifo(p: &Path) {
    crate::sys::mkfifo(p);
}

/// A blob replaced by a symlink to /dev/zero, a FIFO, a longer or a
/// shorter file: every read fails promptly, none blocks or runs forever.
#[test]
fn hostile_blob_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let mut st = store.staging().unwrap();
    let d = st.put(media::CONFIG, b"{\"abc\":1}").unwrap();
    st.commit().unwrap();
    let p = store.blob_path(&d.digest);
    let check = |want: &str| {
        for e in [
            store.read_blob(&d.digest).unwrap_err(),
            store.read_descriptor(&d).unwrap_err(),
            store.verify_blob(&d).unwrap_err(),
            store.open_blob(&d).err().unwrap(),
        ] {
            assert!(e.to_string().contains(want), "{want:?} not in {e}");
        }
    };
    fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    check("symbolic link");
    assert!(!store.has_blob(&d.digest));
    fs::remove_file(&p).unwrap();
    mkfifo(&p);
    check("FIFO");
    fs::remove_file(&p).unwrap();
    // Longer or shorter: a streamed read stops at the size, an
    // in-memory read reports the content as corrupt.
    for wrong in [&b"{\"abc\":1}  "[..], b"{}"] {
        fs::write(&p, wrong).unwrap();
        let e = store.read_descriptor(&d).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = store.verify_blob(&d).unwrap_err().to_string();
        assert!(e.contains("has size"), "{e}");
    }
    // Far longer than the manifest limit: refused without reading it all.
    fs::write(&p, vec![b' '; (MAX_MANIFEST_SIZE + 10) as usize]).unwrap();
    let e = store.read_descriptor(&d).unwrap_err().to_string();
    assert!(e.contains("has size"), "{e}");
    // A descriptor claiming a huge blob is never read into memory.
    let mut huge = d.clone();
    huge.size = 1 << 40;
    let e = store.read_descriptor(&huge).unwrap_err().to_string();
    assert!(e.contains("more than the"), "{e}");
    // The index too is read only from a regular file.
    fs::rename(dir.path().join("index.json"), dir.path().join("i")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("index.json")).unwrap();
    assert!(store.index().is_err());
}

#[test]
fn stale_stages_are_swept_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let tmp = dir.path().join(".kiln/tmp");
    // A dead process's stage: lock file present, nobody holds it.
    let dead = tmp.join("stage-999999-0-1");
    fs::create_dir_all(&dead).unwrap();
    fs::write(dead.join(STAGE_LOCK), b"").unwrap();
    fs::write(dead.join("blob-1"), b"partial").unwrap();
    // A stage from before stage locks existed.
    let legacy = tmp.join("stage-999999-1-1");
    fs::create_dir_all(&legacy).unwrap();
    // A live one, held by this process.
    let mut live = store.staging().unwrap();
    live.put(media::CONFIG, b"x").unwrap();
    let live_dir = live.dir.clone();
    let store = Store::open_or_init(dir.path()).unwrap();
    assert!(!dead.exists(), "a dead stage survived the sweep");
    assert!(!legacy.exists(), "an unlocked legacy stage survived");
    assert!(live_dir.exists(), "the sweep removed a live stage");
    assert_eq!(store.sweep_stale_stages(), 0);
    live.commit().unwrap();
    assert!(!live_dir.exists());
    // A failed operation (dropped staging) leaves nothing.
    let st = store.staging().unwrap();
    let d = st.dir.clone();
    drop(st);
    assert!(!d.exists());
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn concurrent_index_updates_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_or_init(dir.path()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || {
                let d = Descriptor::new(media::MANIFEST, Digest::of(&[i]), 1);
                s.tag("img", &format!("t{i}"), &d).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.images().unwrap().len(), 8);
}
