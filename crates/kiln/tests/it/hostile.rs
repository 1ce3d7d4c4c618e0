//! Hostile input: a clear error, a non-zero exit, and nothing left behind
//! in the store or at --out.

use std::fs;
use std::process::Command;

use crate::support::*;

/// Run a build expected to fail; assert the message and that the store and
/// --out are untouched.
fn fails(e: &Env, want: &[&str]) -> String {
    let before = e.store_snapshot();
    let out = e.path().join("failed-out");
    let o = run_bounded(
        e.kiln()
            .arg("build")
            .arg("-f")
            .arg(e.spec())
            .arg("--out")
            .arg(&out),
    );
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1, got {:?}: {err}",
        o.status
    );
    for w in want {
        assert!(err.contains(w), "error lacks {w:?}:\n{err}");
    }
    assert_eq!(
        e.store_snapshot(),
        before,
        "a failed build changed the store"
    );
    assert!(!out.exists(), "a failed build left --out behind");
    let leftovers: Vec<_> = fs::read_dir(e.path())
        .unwrap()
        .filter_map(|x| x.ok())
        .filter(|x| x.file_name().to_string_lossy().contains("kiln-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary export left behind: {leftovers:?}"
    );
    err
}

fn with_spec_edit(f: impl FnOnce(&str) -> String) -> Env {
    let e = Env::new();
    e.build(&[]); // a populated store, so "unchanged" means something
    let t = f(&e.spec_text());
    e.write_spec(&t);
    e
}

#[test]
fn dst_escaping_the_root() {
    let e = with_spec_edit(|t| t.replace("dst = \"/www\"", "dst = \"/www/../../etc\""));
    fails(&e, &["kiln.toml:21:7", "files[1].dst", "escape"]);
}

#[test]
fn unknown_key_and_bad_value_are_located() {
    let e = with_spec_edit(|t| t.replace("workdir = \"/\"", "workdir = \"/\"\nworkdri = \"/\""));
    fails(&e, &["kiln.toml:10:1", "workdri"]);
    let e = with_spec_edit(|t| t.replace("ports = [8080]", "ports = [80800]"));
    fails(&e, &["kiln.toml:11:10", "80800 is not a port"]);
    let e = with_spec_edit(|t| t.replace("mode = \"0755\"", "mode = 755"));
    fails(&e, &["kiln.toml:17:8"]);
    let e = with_spec_edit(|t| format!("{t}\n[image\n"));
    fails(&e, &["kiln.toml:"]);
}

#[test]
fn missing_source_file() {
    let e = with_spec_edit(|t| t.replace("src = \"bin/busybox\"", "src = \"bin/nope\""));
    fails(&e, &["files[0].src", "bin/nope", "No such file"]);
}

#[test]
fn fifo_and_socket_sources_are_refused() {
    let e = Env::new();
    e.build(&[]);
    let fifo = e.spec_dir().join("www/pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    fails(&e, &["files[1].src", "www/pipe is a fifo"]);
    fs::remove_file(&fifo).unwrap();
    let sock = e.spec_dir().join("www/sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    fails(&e, &["www/sock is a socket"]);
    drop(l);
    fs::remove_file(&sock).unwrap();
}

#[test]
#[ignore = "needs root (mknod of a character device)"]
fn device_node_sources_are_refused() {
    require_root();
    let e = Env::new();
    e.build(&[]);
    let dev = e.spec_dir().join("www/null");
    assert!(
        Command::new("mknod")
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success(),
        "mknod"
    );
    fails(&e, &["www/null is a device node"]);
}

#[test]
fn source_outside_the_spec_directory() {
    let e = with_spec_edit(|t| t.replace("src = \"bin/busybox\"", "src = \"../../etc/passwd\""));
    fails(&e, &["files[0].src", "leaves the spec's directory"]);
    // Through a symlinked directory.
    let e = Env::new();
    e.build(&[]);
    std::os::unix::fs::symlink("/etc", e.spec_dir().join("sneaky")).unwrap();
    e.write_spec(
        &e.spec_text()
            .replace("src = \"bin/busybox\"", "src = \"sneaky/passwd\""),
    );
    fails(&e, &["resolves outside the spec's directory"]);
}

#[test]
fn deb_hash_mismatch_and_corrupt_deb() {
    let e = with_spec_edit(|t| t.replace("sha256 = \"fe33", "sha256 = \"ee33"));
    fails(&e, &["debs[0]", "sha256 mismatch", "fe33a1f6"]);
    // A file whose pin matches but is not a .deb.
    let e = Env::new();
    e.build(&[]);
    let junk = e.spec_dir().join("debs/junk.deb");
    fs::write(&junk, b"!<arch>\ngarbage").unwrap();
    let sha = sha256_file(&junk);
    let t = e.spec_text();
    let start = t.find("[[debs]]").unwrap();
    let end = t.find("[baseline]").unwrap();
    e.write_spec(&format!(
        "{}[[debs]]\npath = \"debs/junk.deb\"\nsha256 = \"{sha}\"\n\n{}",
        &t[..start],
        &t[end..]
    ));
    fails(&e, &["debs[0]", "junk.deb"]);
}

fn sha256_file(p: &std::path::Path) -> String {
    let o = run(Command::new("sha256sum").arg(p));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn base_with_a_wrong_blob_digest() {
    let e = Env::new();
    let layout = e.path().join("base");
    let d = e.build(&["--out", layout.to_str().unwrap()]);
    let m = manifest(&layout, &d);
    e.write_spec(&format!(
        "[image]\nname = \"app\"\ntag = \"1\"\nbase = \"oci:../base@{d}\"\n\n[[files]]\nsrc = \"www/\"\ndst = \"/srv\"\n"
    ));
    // Corrupt one byte of the base's files layer.
    let layer = m["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let p = layout.join("blobs/sha256").join(&layer);
    let mut b = fs::read(&p).unwrap();
    let n = b.len() / 2;
    b[n] ^= 0xff;
    fs::write(&p, b).unwrap();
    fails(&e, &["base oci:", "layer 1", "corrupt", &layer[..12]]);
    // A pin to a digest the layout does not have.
    e.write_spec(&e.spec_text().replace(&d[7..], &"0".repeat(64)));
    fails(&e, &["base oci:", "not in the store"]);
}

#[test]
fn bad_source_date_epoch() {
    let e = Env::new();
    let o = run(e
        .kiln()
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .arg("build")
        .arg("-f")
        .arg(e.spec()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("SOURCE_DATE_EPOCH=\"yesterday\" is not"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn entrypoint_must_exist_in_the_image() {
    let e = with_spec_edit(|t| {
        t.replace(
            "entrypoint = [\"/bin/busybox\"",
            "entrypoint = [\"/bin/bosybux\"",
        )
    });
    fails(&e, &["kiln.toml:7:14", "/bin/bosybux is not in the image"]);
}

#[test]
fn non_utf8_file_name() {
    use std::os::unix::ffi::OsStrExt;
    let e = Env::new();
    e.build(&[]);
    let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
    fs::write(e.spec_dir().join("www").join(name), "x").unwrap();
    fails(&e, &["not UTF-8"]);
}

#[test]
fn out_refuses_to_replace_a_non_layout_directory() {
    let e = Env::new();
    let out = e.path().join("precious");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = run(e
        .kiln()
        .arg("build")
        .arg("-f")
        .arg(e.spec())
        .arg("--out")
        .arg(&out));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refusing to replace"), "{}", stderr(&o));
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
}

#[test]
fn two_files_entries_writing_the_same_path() {
    // A directory copy and a single file both produce /www/index.html.
    let e = with_spec_edit(|t| {
        t.replace(
            "[[debs]]",
            "[[files]]\nsrc = \"www/index.html\"\ndst = \"/www/index.html\"\n\n[[debs]]",
        )
    });
    fails(&e, &["/www/index.html is written twice"]);
    // And the other order: the file first, then the directory over it.
    let e = with_spec_edit(|t| {
        t.replace(
            "[[files]]\nsrc = \"www/\"",
            "[[files]]\nsrc = \"www/index.html\"\ndst = \"/www/index.html\"\n\n[[files]]\nsrc = \"www/\"",
        )
    });
    fails(&e, &["/www/index.html is written twice"]);
}

/// Replace the `www/` source with `src`.
fn with_www_src(src: &str) -> Env {
    with_spec_edit(|t| t.replace("src = \"www/\"", &format!("src = {src:?}")))
}

#[test]
fn symlinked_source_directories_are_refused_at_every_level() {
    use std::os::unix::fs::symlink;
    // A directory outside the spec directory holding a secret.
    let outside = |e: &Env| {
        let o = e.path().join("outside");
        fs::create_dir_all(o.join("deeper")).unwrap();
        fs::write(o.join("secret"), "host secret").unwrap();
        fs::write(o.join("deeper/secret"), "host secret").unwrap();
        o
    };
    // The top-level source, followed because of its trailing slash (or `/.`).
    for src in ["etclink/", "etclink/.", "etclink/./", "etclink/ssl/.."] {
        let e = with_www_src(src);
        symlink("/etc", e.spec_dir().join("etclink")).unwrap();
        fails(
            &e,
            &[
                "files[1].src",
                "outside the spec's directory",
                "etclink -> /etc",
            ],
        );
    }
    // A chain of in-tree links whose last hop leaves.
    let e = with_www_src("hop1/");
    let o = outside(&e);
    symlink("hop2", e.spec_dir().join("hop1")).unwrap();
    symlink("sub/../hop3", e.spec_dir().join("hop2")).unwrap();
    fs::create_dir(e.spec_dir().join("sub")).unwrap();
    symlink(&o, e.spec_dir().join("hop3")).unwrap();
    fails(
        &e,
        &["files[1].src", "outside the spec's directory", "hop3"],
    );
    // A relative chain climbing out with `..`.
    let e = with_www_src("up/");
    outside(&e);
    symlink("www/../../outside", e.spec_dir().join("up")).unwrap();
    fails(&e, &["files[1].src", "outside the spec's directory", "up"]);
    // A link in the middle of the path.
    let e = with_www_src("a/b/deeper/");
    let o = outside(&e);
    fs::create_dir(e.spec_dir().join("a")).unwrap();
    symlink(&o, e.spec_dir().join("a/b")).unwrap();
    fails(&e, &["files[1].src", "outside the spec's directory", "b"]);
    // Nothing of the secret reached the store.
    let e = with_www_src("etclink/");
    symlink("/etc", e.spec_dir().join("etclink")).unwrap();
    fails(&e, &["etclink"]);
}

#[test]
fn in_tree_links_and_nested_links_are_kept() {
    use std::os::unix::fs::symlink;
    // A directory reached through links that stay inside is copied...
    let e = with_www_src("alias/");
    symlink("www", e.spec_dir().join("alias")).unwrap();
    e.build(&[]);
    let e2 = with_www_src("absalias/");
    symlink(e2.spec_dir().join("www"), e2.spec_dir().join("absalias")).unwrap();
    e2.build(&[]);
    // ...and a link to outside *inside* a copied tree is copied as a link.
    let e3 = Env::new();
    symlink("/etc", e3.spec_dir().join("www/etc")).unwrap();
    let layout = e3.path().join("out");
    let d = e3.build(&["--out", layout.to_str().unwrap()]);
    let m = manifest(&layout, &d);
    assert!(m["layers"].as_array().is_some_and(|l| !l.is_empty()));
}

#[test]
fn the_spec_directory_itself_is_a_source() {
    for src in [".", "./", "www/..", "www/../"] {
        let e = with_www_src(src);
        e.build(&[]);
    }
}

#[test]
fn a_non_utf8_spec_names_the_line_and_column() {
    let e = Env::new();
    let mut b = e.spec_text().into_bytes();
    // Line 5 is `name = "hello"`: corrupt the `e` of hello (column 10).
    let at = b
        .windows(14)
        .position(|w| w == b"name = \"hello\"")
        .unwrap()
        + 9;
    b[at] = 0xff;
    fs::write(e.spec(), b).unwrap();
    let err = fails(&e, &["kiln.toml:5:10", "not UTF-8", "0xff"]);
    assert!(!err.contains(":0:0"), "{err}");
}

#[test]
fn a_key_file_that_is_not_a_key_says_so() {
    let e = Env::new();
    e.build(&[]);
    for (body, found) in [
        (&b"hello, I am not a key\n"[..], "text"),
        (&b""[..], "empty"),
        (&b"\0\x01binary\x02"[..], "binary"),
    ] {
        let k = e.path().join("notakey.key");
        fs::write(&k, body).unwrap();
        let o = run(e.kiln().args(["sign", "hello:1.0.0", "--key"]).arg(&k));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("not a recognised key"), "{err}");
        assert!(err.contains("PEM"), "{err}");
        assert!(err.contains(found), "{err}");
        assert!(!err.contains("NUL byte"), "{err}");
    }
}

// ------------------------------------------------- bounded reads and waits

/// Run `c`, killing it if it has not finished within a minute: a regression
/// to an endless read or wait fails the test instead of hanging the suite.
/// (A bound, not a timing assertion: nothing checks how long it took.)
fn run_bounded(c: &mut Command) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{c:?} hung: killed after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn mkfifo(p: &std::path::Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// The ways a blob file can lie about itself, and what the error says.
const BLOB_VARIANTS: [(&str, &str); 4] = [
    ("zero", "symbolic link"),
    ("fifo", "FIFO"),
    ("longer", "has size"),
    ("shorter", "has size"),
];

/// Make the blob at `p` hostile in the way `variant` names.
fn spoil_blob(p: &std::path::Path, variant: &str) {
    match variant {
        "zero" => {
            fs::remove_file(p).unwrap();
            std::os::unix::fs::symlink("/dev/zero", p).unwrap();
        }
        "fifo" => {
            fs::remove_file(p).unwrap();
            mkfifo(p);
        }
        "longer" => {
            let mut b = fs::read(p).unwrap();
            b.extend_from_slice(&[0u8; 4096]);
            fs::write(p, b).unwrap();
        }
        "shorter" => {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() / 2]).unwrap();
        }
        other => panic!("unknown variant {other}"),
    }
}

fn layer_hex(layout: &std::path::Path, manifest_digest: &str, i: usize) -> String {
    let m = manifest(layout, manifest_digest);
    m["layers"][i]["digest"].as_str().unwrap()[7..].to_string()
}

#[test]
fn import_of_a_layout_with_hostile_blobs_fails_and_leaves_nothing() {
    let e = Env::new();
    let d = e.build(&[]);
    let layout = e.path().join("layout");
    let o = run(e
        .kiln()
        .args(["export", "hello:1.0.0", "--out"])
        .arg(&layout));
    assert!(o.status.success(), "{}", stderr(&o));
    let layer = layer_hex(&layout, &d, 0);
    // Import into another, existing store (one without these blobs).
    let state = e.path().join("other-state");
    kiln_oci::Store::open_or_init(state.join("store")).unwrap();
    let snapshot = || {
        let mut v: Vec<String> = fs::read_dir(state.join("store/blobs/sha256"))
            .unwrap()
            .map(|x| x.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        v.sort();
        v.push(fs::read_to_string(state.join("store/index.json")).unwrap());
        let tmp = state.join("store/.kiln/tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            for x in rd {
                v.push(format!("leftover staging: {:?}", x.unwrap().file_name()));
            }
        }
        v
    };
    let before = snapshot();
    for (variant, want) in BLOB_VARIANTS {
        let bad = e.path().join(format!("layout-{variant}"));
        copy_dir(&layout, &bad);
        spoil_blob(&bad.join("blobs/sha256").join(&layer), variant);
        let o = run_bounded(
            e.kiln()
                .env("KILN_STATE_DIR", &state)
                .arg("import")
                .arg(&bad),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{variant}: {err}");
        assert!(
            err.contains(want) && err.contains(&layer[..12]),
            "{variant}: {want:?} not in {err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert_eq!(
            snapshot(),
            before,
            "{variant}: a failed import changed the store"
        );
    }
    // The intact layout imports.
    let o = run_bounded(
        e.kiln()
            .env("KILN_STATE_DIR", &state)
            .arg("import")
            .arg(&layout),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn base_layout_with_hostile_blobs() {
    for (variant, want) in BLOB_VARIANTS {
        let e = Env::new();
        let layout = e.path().join("base");
        let d = e.build(&["--out", layout.to_str().unwrap()]);
        e.write_spec(&format!(
            "[image]\nname = \"app\"\ntag = \"1\"\nbase = \"oci:../base@{d}\"\n\n[[files]]\nsrc = \"www/\"\ndst = \"/srv\"\n"
        ));
        let layer = layer_hex(&layout, &d, 1);
        spoil_blob(&layout.join("blobs/sha256").join(&layer), variant);
        fails(&e, &["base oci:", "layer 1", want]);
    }
}

/// trust.toml requiring a `ci` signature, with `ci` read from `key_file`.
fn trust_toml(e: &Env, key_file: &str) -> std::path::PathBuf {
    let p = e.path().join("trust.toml");
    fs::write(
        &p,
        format!(
            "[keys]\nci = \"{key_file}\"\n\n[roles.builder]\nkeys = [\"ci\"]\nthreshold = 1\n\n[require]\nsignature = \"builder\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn verify_with_hostile_blobs_in_the_store() {
    for (variant, want) in BLOB_VARIANTS {
        let e = Env::new();
        let d = e.build(&[]);
        keygen(&e, "ci");
        let pol = trust_toml(&e, "ci.pub");
        let layer = layer_hex(&e.store(), &d, 0);
        spoil_blob(&e.store().join("blobs/sha256").join(&layer), variant);
        let o = run_bounded(
            e.kiln()
                .args(["verify", "hello:1.0.0", "--policy"])
                .arg(&pol),
        );
        let all = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert_eq!(o.status.code(), Some(1), "{variant}: {all}");
        assert!(all.contains(want), "{variant}: {want:?} not in {all}");
    }
}

#[test]
fn hostile_key_and_policy_files() {
    let e = Env::new();
    e.build(&[]);
    keygen(&e, "ci");
    let fifo = e.path().join("fifo");
    mkfifo(&fifo);
    let big = e.path().join("big.pem");
    fs::write(&big, vec![b'A'; 2 << 20]).unwrap();
    let zero = e.path().join("zero.pub");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let cases = [
        (std::path::Path::new("/dev/zero"), "character device"),
        (zero.as_path(), "character device"),
        (fifo.as_path(), "FIFO"),
        (big.as_path(), "larger than 1 MiB"),
    ];
    // The signing key.
    for (key, want) in cases {
        let o = run_bounded(
            e.kiln()
                .env("KILN_KEY_PASSWORD", PASSWORD)
                .args(["sign", "hello:1.0.0", "--key"])
                .arg(key),
        );
        assert_eq!(o.status.code(), Some(1), "{key:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{key:?}: {want:?} not in {}",
            stderr(&o)
        );
    }
    // A key named by the policy.
    for (key, want) in cases {
        let pol = trust_toml(&e, key.to_str().unwrap());
        let o = run_bounded(
            e.kiln()
                .args(["verify", "hello:1.0.0", "--policy"])
                .arg(&pol),
        );
        assert_eq!(o.status.code(), Some(1), "{key:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{key:?}: {want:?} not in {}",
            stderr(&o)
        );
    }
    // The policy itself.
    for (pol, want) in cases {
        let o = run_bounded(
            e.kiln()
                .args(["verify", "hello:1.0.0", "--policy"])
                .arg(pol),
        );
        assert_eq!(o.status.code(), Some(1), "{pol:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{pol:?}: {want:?} not in {}",
            stderr(&o)
        );
    }
    // The spec: the same 1 MiB limit (and a one-line 2 MiB spec is refused
    // before it is parsed, so no 2 MiB snippet is echoed).
    for (spec, want) in cases {
        let o = run_bounded(e.kiln().args(["build", "-f"]).arg(spec));
        assert_eq!(o.status.code(), Some(1), "{spec:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{spec:?}: {want:?} not in {}",
            stderr(&o)
        );
        assert!(stderr(&o).len() < 4096, "{spec:?}: a huge error message");
    }
}

#[test]
fn stale_stage_dirs_are_swept_live_ones_kept() {
    let e = Env::new();
    e.build(&[]);
    let tmp = e.store().join(".kiln/tmp");
    // A stage left by a killed process: its lock file is held by nobody.
    let dead = tmp.join("stage-4242420-0-0");
    fs::create_dir_all(&dead).unwrap();
    fs::write(dead.join(".lock"), b"").unwrap();
    fs::write(dead.join("blob-1"), vec![0u8; 1 << 20]).unwrap();
    // One from before stage locks existed.
    let legacy = tmp.join("stage-4242421-0-0");
    fs::create_dir_all(&legacy).unwrap();
    fs::write(legacy.join("blob-1"), b"partial").unwrap();
    // One a live process holds.
    let live = tmp.join("stage-4242422-0-0");
    fs::create_dir_all(&live).unwrap();
    let held = fs::File::create(live.join(".lock")).unwrap();
    held.lock().unwrap();
    e.build(&[]);
    assert!(!dead.exists(), "a dead process's stage survived");
    assert!(!legacy.exists(), "an unlocked legacy stage survived");
    assert!(live.exists(), "a stage held by a live process was removed");
    drop(held);
}

// ------------------------------------------------------ hostile registries

/// What a test registry does with a request for the misbehaving path.
#[derive(Clone, Copy, PartialEq)]
enum Reg {
    /// Serve an endless body for the config blob.
    EndlessBlob,
    /// Accept and never answer anything.
    Silent,
    /// Send headers and 100 bytes of the manifest, then stall.
    Stall,
    /// Send headers, then one byte every 200 ms.
    Drip,
}

/// A loopback registry serving `hello:1` (a manifest with one config blob),
/// misbehaving as `how` says. Returns the port and the config digest.
fn registry(how: Reg) -> (u16, String) {
    use std::io::{BufRead, BufReader, Write};
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cfg_digest = kiln_oci::Digest::of(cfg);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cfg_digest.to_string(),
            "size": cfg.len(),
        },
        "layers": [],
    })
    .to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let blob_path = format!("/v2/hello/blobs/{cfg_digest}");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let manifest = manifest.clone();
            let blob_path = blob_path.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim_end().is_empty() {
                        break;
                    }
                }
                let head = |len: usize| {
                    format!(
                        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {len}\r\n\r\n"
                    )
                };
                let hold = |mut c: std::net::TcpStream| {
                    let mut b = [0u8; 1];
                    let _ = std::io::Read::read(&mut c, &mut b);
                };
                match how {
                    Reg::Silent => return hold(conn),
                    Reg::Stall => {
                        let _ = conn.write_all(head(100_000).as_bytes());
                        let _ = conn.write_all(&manifest.as_bytes()[..100]);
                        return hold(conn);
                    }
                    Reg::Drip => {
                        let _ = conn.write_all(head(100_000).as_bytes());
                        while conn.write_all(b" ").and_then(|_| conn.flush()).is_ok() {
                            std::thread::sleep(std::time::Duration::from_millis(200));
                        }
                        return;
                    }
                    Reg::EndlessBlob => {}
                }
                if path == "/v2/hello/manifests/1" {
                    let _ = conn.write_all(head(manifest.len()).as_bytes());
                    let _ = conn.write_all(manifest.as_bytes());
                } else if path == blob_path {
                    // No length: the body runs until the client hangs up.
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
                    let chunk = [b'x'; 65536];
                    while conn.write_all(&chunk).is_ok() {}
                } else {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (port, cfg_digest.to_string())
}

#[test]
fn pull_of_a_blob_longer_than_its_descriptor() {
    let e = Env::new();
    let (port, cfg) = registry(Reg::EndlessBlob);
    let o = run_bounded(
        e.kiln()
            .args(["pull", "--insecure"])
            .arg(format!("127.0.0.1:{port}/hello:1")),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&cfg) && err.contains("got more than"), "{err}");
    let leftovers = fs::read_dir(e.store().join(".kiln/tmp"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "a failed pull left a stage directory");
}

#[test]
fn pull_and_push_time_out_naming_the_url() {
    let e = Env::new();
    e.build(&[]);
    for (how, want) in [
        (Reg::Silent, "no response within 1 s"),
        (Reg::Stall, "sent nothing for 1 s"),
        (Reg::Drip, "too slow"),
    ] {
        let (port, _) = registry(how);
        let o = run_bounded(
            e.kiln()
                .env("KILN_REGISTRY_LOW_SPEED", "1024/1")
                .args(["pull", "--insecure", "--timeout", "1"])
                .arg(format!("127.0.0.1:{port}/hello:1")),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        let url = format!("GET http://127.0.0.1:{port}/v2/hello/manifests/1");
        assert!(err.contains(&url) && err.contains(want), "{want:?}: {err}");
    }
    // Push: the environment variable sets the response limit too.
    let (port, _) = registry(Reg::Silent);
    let o = run_bounded(
        e.kiln()
            .env("KILN_REGISTRY_TIMEOUT", "1")
            .args(["push", "--insecure", "hello:1.0.0"])
            .arg(format!("127.0.0.1:{port}/hello:1")),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("http://127.0.0.1:{port}/v2/hello/blobs/sha256:"))
            && err.contains("no response within 1 s"),
        "{err}"
    );
}

#[test]
fn a_killed_archive_imports_scratch_is_swept_a_live_one_kept() {
    let e = Env::new();
    e.build(&[]);
    let archive = e.path().join("hello.oci.tar");
    let o = run(e
        .kiln()
        .args(["export", "hello:1.0.0", "--format", "oci-archive", "--out"])
        .arg(&archive));
    assert!(o.status.success(), "{}", stderr(&o));
    let tmp = e.state().join("tmp");
    // Left by a killed import: a lock file nobody holds, and extracted data.
    let dead = tmp.join("import-4242420-1");
    fs::create_dir_all(dead.join("blobs")).unwrap();
    fs::write(dead.join(".lock"), "").unwrap();
    fs::write(dead.join("blobs/big"), vec![0u8; 1 << 20]).unwrap();
    // An import still running in another process: its lock is held.
    let live = tmp.join("import-4242421-1");
    fs::create_dir_all(&live).unwrap();
    let held = fs::File::create(live.join(".lock")).unwrap();
    held.lock().unwrap();
    let o = run(e.kiln().arg("import").arg(&archive));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dead.exists(), "a killed import's scratch was left behind");
    assert!(live.exists(), "a running import's scratch was removed");
    drop(held);
}
