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
    let o = run(e
        .kiln()
        .arg("build")
        .arg("-f")
        .arg(e.spec())
        .arg("--out")
        .arg(&out));
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
fn fifo_socket_and_device_sources_are_refused() {
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
    // A character device (needs CAP_MKNOD; the suite runs as root in CI).
    let dev = e.spec_dir().join("www/null");
    if Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success())
    {
        fails(&e, &["www/null is a device node"]);
    } else {
        eprintln!("skipped device-node case: mknod not permitted");
    }
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
