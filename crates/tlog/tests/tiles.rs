//! tlog-tiles export: layout, independent verification, tamper detection,
//! atomic replacement, and an interop check with an independent reader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tlog::tiles::{TilesError, encode_index, export, verify_dir};
use kiln_tlog::{Checkpoint, Log, Signer, leaf_hash, root};

const SEED: [u8; 32] = [9; 32];

fn signer() -> Signer {
    Signer::from_seed("kiln.test/tiles", &SEED).unwrap()
}

fn open(dir: &Path) -> Log {
    let s = signer();
    let v = s.verifier();
    Log::open(dir, Some(s), v).unwrap()
}

fn event(i: u64) -> Vec<u8> {
    format!(
        "{{\"event\":{i},\"pad\":\"{}\"}}",
        "x".repeat((i % 50) as usize)
    )
    .into_bytes()
}

/// Append events `from..to` in batches of up to 1,000.
fn fill(log: &Log, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let end = (i + 1000).min(to);
        let es: Vec<Vec<u8>> = (i..end).map(event).collect();
        let refs: Vec<&[u8]> = es.iter().map(|e| e.as_slice()).collect();
        assert_eq!(log.append_batch(&refs).unwrap(), i);
        i = end;
    }
    assert_eq!(log.size(), to);
}

/// Every regular file under `dir`, relative path → length.
fn files(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, m.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Names in `dir` (non-recursive).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// Flip one byte of `rel`: verify_dir must fail naming that file, and pass
/// again once the byte is restored.
fn assert_tamper_detected(dir: &Path, log: &Log, rel: &str, at: usize) {
    let path = dir.join(rel);
    flip(&path, at);
    let err = verify_dir(dir, log.verifier()).expect_err(&format!("{rel}@{at} undetected"));
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "flipping {rel}@{at}: error does not name the file: {msg}"
    );
    flip(&path, at);
    verify_dir(dir, log.verifier()).unwrap();
}

fn expected_layout(size: u64) -> BTreeMap<String, u64> {
    // Written out independently of the library's path helpers.
    let mut m = BTreeMap::new();
    let enc = |n: u64| {
        if n < 1000 {
            format!("{n:03}")
        } else {
            format!("x{:03}/{:03}", n / 1000, n % 1000)
        }
    };
    let mut level = 0u32;
    loop {
        let count = if 8 * level >= 64 {
            0
        } else {
            size >> (8 * level)
        };
        if count == 0 {
            break;
        }
        for n in 0..count / 256 {
            m.insert(format!("tile/{level}/{}", enc(n)), 8192);
        }
        if count % 256 != 0 {
            let w = count % 256;
            m.insert(format!("tile/{level}/{}.p/{w}", enc(count / 256)), w * 32);
        }
        level += 1;
    }
    m
}

struct Fixture {
    _tmp: tempfile::TempDir,
    log: Log,
    out: PathBuf,
}

fn fixture(size: u64) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(&tmp.path().join("log"));
    fill(&log, 0, size);
    let out = tmp.path().join("web").join("tiles");
    Fixture {
        _tmp: tmp,
        log,
        out,
    }
}

fn check_export(size: u64, explicit: &[&str]) -> Fixture {
    let f = fixture(size);
    let rep = export(&f.log, &f.out).unwrap();
    assert_eq!(rep.tree_size, size);
    let got = files(&f.out);
    // Hash tiles: exact set and sizes.
    let tiles: BTreeMap<String, u64> = got
        .iter()
        .filter(|(k, _)| k.starts_with("tile/") && !k.starts_with("tile/entries/"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(tiles, expected_layout(size), "size {size}");
    assert_eq!(rep.hash_tiles, tiles.len() as u64);
    // Entry bundles: names and contents.
    let bundles: Vec<&String> = got
        .keys()
        .filter(|k| k.starts_with("tile/entries/"))
        .collect();
    assert_eq!(rep.entry_bundles, bundles.len() as u64);
    assert_eq!(bundles.len() as u64, size.div_ceil(256));
    let mut all = Vec::new();
    for n in 0..size.div_ceil(256) {
        let w = (size - n * 256).min(256);
        let rel = if w == 256 {
            format!("tile/entries/{}", encode_index(n))
        } else {
            format!("tile/entries/{}.p/{w}", encode_index(n))
        };
        let data = std::fs::read(f.out.join(&rel)).unwrap();
        let mut want = Vec::new();
        for i in n * 256..n * 256 + w {
            let e = event(i);
            want.extend_from_slice(&(e.len() as u16).to_be_bytes());
            want.extend_from_slice(&e);
            all.push(leaf_hash(&e));
        }
        assert_eq!(data, want, "{rel}");
    }
    for p in explicit {
        assert!(got.contains_key(*p), "size {size}: missing {p}: {got:?}");
    }
    // Checkpoint, byte for byte, and nothing else at the top.
    let (cp, note) = f.log.checkpoint().unwrap();
    assert_eq!(
        std::fs::read(f.out.join("checkpoint")).unwrap(),
        note.as_bytes()
    );
    assert_eq!(rep.bytes, got.values().sum::<u64>());
    let top = names(&f.out);
    if size == 0 {
        assert_eq!(top, ["checkpoint"]);
    } else {
        assert_eq!(top, ["checkpoint", "tile"]);
    }
    // No temp siblings left behind.
    assert_eq!(names(f.out.parent().unwrap()), ["tiles"]);
    let got_cp = verify_dir(&f.out, f.log.verifier()).unwrap();
    assert_eq!(got_cp, cp);
    assert_eq!(got_cp.size, size);
    assert_eq!(got_cp.root, root(&all));
    f
}

#[test]
fn n_encoding_spec_example() {
    assert_eq!(encode_index(1234067), "x001/x234/067");
    assert_eq!(encode_index(67), "067");
    assert_eq!(encode_index(234067), "x234/067");
    assert_eq!(encode_index(1_000_000), "x001/x000/000");
}

#[test]
fn empty_log() {
    let f = check_export(0, &["checkpoint"]);
    assert_tamper_detected(&f.out, &f.log, "checkpoint", 0);
}

#[test]
fn one_entry() {
    let f = check_export(1, &["tile/0/000.p/1", "tile/entries/000.p/1"]);
    for rel in ["tile/0/000.p/1", "tile/entries/000.p/1"] {
        assert_tamper_detected(&f.out, &f.log, rel, 5);
    }
}

#[test]
fn small_sizes_layout_and_tamper() {
    check_export(255, &["tile/0/000.p/255", "tile/entries/000.p/255"]);
    check_export(256, &["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]);
    check_export(
        257,
        &[
            "tile/0/000",
            "tile/0/001.p/1",
            "tile/1/000.p/1",
            "tile/entries/000",
            "tile/entries/001.p/1",
        ],
    );
    let f = check_export(
        513,
        &[
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/1",
            "tile/1/000.p/2",
            "tile/entries/000",
            "tile/entries/001",
            "tile/entries/002.p/1",
        ],
    );
    // Every file, at its first, middle and last byte.
    for (rel, len) in files(&f.out) {
        let len = len as usize;
        for at in [0, len / 2, len - 1] {
            assert_tamper_detected(&f.out, &f.log, &rel, at);
        }
    }
    // A missing tile is named.
    let p = f.out.join("tile/1/000.p/2");
    let saved = std::fs::read(&p).unwrap();
    std::fs::remove_file(&p).unwrap();
    let err = verify_dir(&f.out, f.log.verifier()).unwrap_err();
    assert!(matches!(err, TilesError::Missing { .. }), "{err}");
    assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    std::fs::write(&p, saved).unwrap();
    // A truncated tile is named.
    let p = f.out.join("tile/0/001");
    let saved = std::fs::read(&p).unwrap();
    std::fs::write(&p, &saved[..8160]).unwrap();
    let err = verify_dir(&f.out, f.log.verifier()).unwrap_err();
    assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    std::fs::write(&p, saved).unwrap();
    verify_dir(&f.out, f.log.verifier()).unwrap();
    // Another key does not verify the checkpoint.
    let other = Signer::from_seed("kiln.test/tiles", &[1; 32])
        .unwrap()
        .verifier();
    let err = verify_dir(&f.out, &other).unwrap_err();
    assert!(matches!(err, TilesError::Checkpoint { .. }), "{err}");
}

/// An export with level-two tiles (and partial tiles at every level).
fn level_two_export() -> Fixture {
    let size = 65_536 + 300;
    check_export(
        size,
        &[
            "tile/0/000",
            "tile/0/255",
            "tile/0/256",
            "tile/0/257.p/44",
            "tile/1/000",
            "tile/1/001.p/1",
            "tile/2/000.p/1",
            "tile/entries/256",
            "tile/entries/257.p/44",
        ],
    )
}

#[test]
fn level_two_tiles() {
    let f = level_two_export();
    let all = files(&f.out);
    // checkpoint + 258 + 2 + 1 tiles + 258 bundles.
    assert_eq!(all.len(), 1 + 258 + 2 + 1 + 258);
    for rel in [
        "tile/2/000.p/1",
        "tile/1/000",
        "tile/1/001.p/1",
        "tile/0/128",
        "tile/0/257.p/44",
        "tile/entries/100",
        "tile/entries/257.p/44",
        "checkpoint",
    ] {
        assert_tamper_detected(&f.out, &f.log, rel, 17);
    }
}

/// Interop: an independent Python reader (scripts/check-tlog-tiles.py)
/// agrees with the export, and notices tampering.
#[test]
#[ignore = "needs python3 with the cryptography module"]
fn an_independent_python_reader_agrees() {
    let f = level_two_export();
    python_check(&f.out, &f.log);
}

#[test]
fn reexport_replaces_atomically() {
    let f = fixture(300);
    export(&f.log, &f.out).unwrap();
    assert!(f.out.join("tile/0/001.p/44").exists());
    fill(&f.log, 300, 600);
    let rep = export(&f.log, &f.out).unwrap();
    assert_eq!(rep.tree_size, 600);
    let cp = verify_dir(&f.out, f.log.verifier()).unwrap();
    assert_eq!(cp.size, 600);
    // The old partial tiles are gone; only the new layout is present.
    assert!(!f.out.join("tile/0/001.p/44").exists());
    let got: Vec<String> = files(&f.out)
        .into_keys()
        .filter(|k| !k.starts_with("tile/entries/"))
        .filter(|k| k != "checkpoint")
        .collect();
    let want: Vec<String> = expected_layout(600).into_keys().collect();
    assert_eq!(got, want);
    // No temp or old directories left next to it.
    assert_eq!(names(f.out.parent().unwrap()), ["tiles"]);
    // Exporting the same size again is fine too.
    export(&f.log, &f.out).unwrap();
    verify_dir(&f.out, f.log.verifier()).unwrap();
    assert_eq!(names(f.out.parent().unwrap()), ["tiles"]);
}

#[test]
fn refuses_non_export_out() {
    let f = fixture(10);
    // A directory with other content.
    std::fs::create_dir_all(&f.out).unwrap();
    std::fs::write(f.out.join("notes.txt"), b"keep me").unwrap();
    let err = export(&f.log, &f.out).unwrap_err();
    assert!(matches!(err, TilesError::NotAnExport { .. }), "{err}");
    assert!(
        err.to_string().contains(&f.out.display().to_string()),
        "{err}"
    );
    assert_eq!(names(&f.out), ["notes.txt"]);
    assert_eq!(std::fs::read(f.out.join("notes.txt")).unwrap(), b"keep me");
    assert_eq!(names(f.out.parent().unwrap()), ["tiles"]);
    // A checkpoint plus foreign files is not an export either.
    std::fs::write(f.out.join("checkpoint"), b"x").unwrap();
    let err = export(&f.log, &f.out).unwrap_err();
    assert!(matches!(err, TilesError::NotAnExport { .. }), "{err}");
    assert_eq!(names(&f.out), ["checkpoint", "notes.txt"]);
    // A regular file.
    let file = f.out.parent().unwrap().join("plain");
    std::fs::write(&file, b"data").unwrap();
    let err = export(&f.log, &file).unwrap_err();
    assert!(matches!(err, TilesError::NotAnExport { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
    assert_eq!(names(f.out.parent().unwrap()), ["plain", "tiles"]);
}

#[test]
fn read_only_handle_exports_the_checkpoint_size() {
    // The export covers exactly the signed checkpoint, read from a handle
    // without a signing key.
    let f = fixture(40);
    let ro = Log::open(f.log.dir(), None, signer().verifier()).unwrap();
    let rep = export(&ro, &f.out).unwrap();
    assert_eq!(rep.tree_size, 40);
    let cp: Checkpoint = verify_dir(&f.out, ro.verifier()).unwrap();
    assert_eq!(cp.root, f.log.root());
}

fn python_check(dir: &Path, log: &Log) {
    fn missing(why: String) -> ! {
        panic!("{why} (scripts/install-deps.sh)")
    }
    let probe = Command::new("python3")
        .args([
            "-c",
            "import cryptography.hazmat.primitives.asymmetric.ed25519",
        ])
        .output();
    match probe {
        Err(e) => missing(format!("python3 not runnable: {e}")),
        Ok(o) if !o.status.success() => {
            missing(format!(
                "python3 has no `cryptography` module: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(_) => {}
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let key = log.verifier().to_key_str();
    let run = |d: &Path| {
        Command::new("python3")
            .arg("scripts/check-tlog-tiles.py")
            .arg(d)
            .arg(&key)
            .current_dir(&ws)
            .output()
            .unwrap()
    };
    let o = run(dir);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "check-tlog-tiles.py failed: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("\"ok\": true"), "{stdout}");
    assert!(
        stdout.contains(&format!("\"size\": {}", log.size())),
        "{stdout}"
    );
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    eprintln!("check-tlog-tiles.py: {}", stdout.trim());
    // And it notices tampering.
    for rel in ["tile/entries/003", "tile/0/004", "checkpoint"] {
        let p = dir.join(rel);
        flip(&p, 40);
        let o = run(dir);
        assert!(!o.status.success(), "python check missed a flip in {rel}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("\"ok\": false"), "{out}");
        flip(&p, 40);
    }
}

/// Runs `f` on a thread; a read that blocks (a FIFO opened for reading
/// waits for a writer forever) fails the test instead of hanging it.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("verify_dir blocked: killed after 60 s")
}

/// An export is untrusted input: a file replaced by a FIFO, a link to
/// /dev/zero, a link to a valid copy elsewhere, a directory reached through
/// a link, or an oversized file, is refused at once naming the file.
#[test]
fn hostile_export_files_are_refused_without_blocking() {
    let f = fixture(257);
    export(&f.log, &f.out).unwrap();
    let elsewhere = f._tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let mkfifo = |p: &Path| {
        assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    };
    type Spoil = fn(&Path, &Path, &dyn Fn(&Path));
    let cases: [(&str, Spoil, &str); 7] = [
        ("checkpoint", |p, _, mk| mk(p), "FIFO"),
        ("tile/0/000", |p, _, mk| mk(p), "FIFO"),
        ("tile/entries/000", |p, _, mk| mk(p), "FIFO"),
        (
            "tile/entries/001.p/1",
            |p, _, _| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
            "symbolic link",
        ),
        (
            "tile/0/001.p/1",
            |p, e, _| {
                let copy = e.join("copy");
                std::fs::write(&copy, b"").unwrap();
                std::os::unix::fs::symlink(&copy, p).unwrap();
            },
            "symbolic link",
        ),
        (
            "checkpoint",
            |p, _, _| std::fs::write(p, vec![b'a'; (2 << 20) as usize]).unwrap(),
            "larger than 1 MiB",
        ),
        (
            "tile/entries/000",
            |p, _, _| {
                std::fs::File::create(p)
                    .and_then(|f| f.set_len(256 * 65537 + 1))
                    .unwrap()
            },
            "larger than 16777472 bytes",
        ),
    ];
    for (rel, spoil, want) in cases {
        let p = f.out.join(rel);
        let saved = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        spoil(&p, &elsewhere, &mkfifo);
        let (out, v) = (f.out.clone(), f.log.verifier().clone());
        let e = within_a_minute(move || verify_dir(&out, &v).map(|_| ()))
            .expect_err(rel)
            .to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains(want),
            "{rel}: {e}"
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, saved).unwrap();
        verify_dir(&f.out, f.log.verifier()).unwrap();
    }
    // A directory of the export replaced by a link to a copy of itself.
    let entries = f.out.join("tile/entries");
    let moved = elsewhere.join("entries");
    std::fs::rename(&entries, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &entries).unwrap();
    let e = verify_dir(&f.out, f.log.verifier())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tile/entries is a symbolic link"), "{e}");
}
