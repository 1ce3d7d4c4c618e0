//! Malformed and malicious packages: each must give a precise typed error.

mod common;

use common::*;
use kiln_deb::{Deb, DebError, EntryKind, Limits};

#[track_caller]
fn err(bytes: &[u8]) -> String {
    match Deb::parse(bytes) {
        Ok(deb) => panic!("parsed unexpectedly: {deb:?}"),
        Err(e) => e.to_string(),
    }
}

#[track_caller]
fn assert_err(bytes: &[u8], needles: &[&str]) {
    let e = err(bytes);
    for needle in needles {
        assert!(e.contains(needle), "error {e:?} lacks {needle:?}");
    }
}

fn data_err(entries: &[TarEntry], needles: &[&str]) {
    assert_err(&deb(entries), needles);
}

#[test]
fn sample_parses() {
    let deb = Deb::parse(&deb(&sample_entries())).unwrap();
    let paths: Vec<_> = deb.data.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc",
            "/etc/t.conf",
            "/usr",
            "/usr/bin",
            "/usr/bin/t",
            "/usr/bin/t2",
            "/usr/bin/t3"
        ]
    );
    assert_eq!(deb.data[4].mode, 0o4755);
    assert_eq!(deb.data[5].kind, EntryKind::Hardlink("/usr/bin/t".into()));
    assert_eq!(deb.data[6].kind, EntryKind::Symlink("t".into()));
    assert_eq!(deb.data_compression, "none");
}

#[test]
fn bad_magic() {
    assert_err(b"", &["not a .deb", "ar magic"]);
    assert_err(b"PK\x03\x04 zip file", &["not a .deb"]);
    assert!(matches!(Deb::parse(b"!<arch"), Err(DebError::BadMagic)));
}

#[test]
fn truncated_ar() {
    let good = deb(&sample_entries());
    // Cut inside the second member's header.
    let cut = 8 + 60 + 4 + 30;
    assert_err(
        &good[..cut],
        &["truncated ar archive", "offset 72", "30 of 60 bytes"],
    );
    // Cut inside the last member's data.
    assert_err(
        &good[..good.len() - 10],
        &["truncated ar archive", "\"data.tar\"", "claims"],
    );
}

#[test]
fn member_size_larger_than_file() {
    let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
    bytes[8 + 48..8 + 58].copy_from_slice(b"999999    ");
    assert_err(
        &bytes,
        &["\"debian-binary\"", "claims 999999 bytes but only 4 remain"],
    );
}

#[test]
fn malformed_ar_header() {
    let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
    bytes[8 + 58] = b'x';
    assert_err(
        &bytes,
        &["malformed ar member header at offset 8", "terminator"],
    );
    let mut bytes = ar(&[("debian-binary", b"2.0\n")]);
    bytes[8 + 48..8 + 58].copy_from_slice(b"4x        ");
    assert_err(&bytes, &["size field \"4x\""]);
}

#[test]
fn missing_members() {
    assert_err(b"!<arch>\n", &["missing member debian-binary"]);
    assert_err(
        &ar(&[("debian-binary", b"2.0\n")]),
        &["missing member control.tar"],
    );
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    assert_err(
        &ar(&[("debian-binary", b"2.0\n"), ("control.tar.gz", &control)]),
        &["missing member data.tar"],
    );
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("data.tar", &tar(&[])),
            ("control.tar.gz", &control),
        ]),
        &["\"data.tar\"", "must come after control.tar"],
    );
}

#[test]
fn wrong_member_order_and_unknown_members() {
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    let data = tar(&[]);
    assert_err(
        &ar(&[("control.tar.gz", &control), ("debian-binary", b"2.0\n")]),
        &[
            "\"control.tar.gz\"",
            "first member of a .deb must be debian-binary",
        ],
    );
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &data),
            ("evil", b"x"),
        ]),
        &["unexpected ar member \"evil\""],
    );
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ]),
        &["a second control.tar member"],
    );
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &data),
            ("data.tar", &data),
        ]),
        &["a second data.tar member"],
    );
    // Members starting with '_' (signatures) are skipped, as dpkg does; GNU '/'-terminated names work.
    let deb = Deb::parse(&ar(&[
        ("debian-binary/", b"2.0\n"),
        ("_gpgorigin", b"signature"),
        ("control.tar.gz/", &control),
        ("data.tar/", &data),
    ]))
    .unwrap();
    assert_eq!(deb.name(), "t");
}

#[test]
fn debian_binary_versions() {
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    let data = tar(&[]);
    let with = |v: &[u8]| {
        ar(&[
            ("debian-binary", v),
            ("control.tar.gz", &control),
            ("data.tar", &data),
        ])
    };
    assert!(Deb::parse(&with(b"2.0\n")).is_ok());
    assert!(Deb::parse(&with(b"2.1\n")).is_ok());
    assert_err(
        &with(b"3.0\n"),
        &["unsupported debian-binary \"3.0\\n\"", "2.x"],
    );
    assert_err(&with(b"2.0"), &["unsupported debian-binary"]);
    assert_err(&with(b"!<arch>\n"), &["unsupported debian-binary"]);
}

#[test]
fn unsupported_compression() {
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    for (name, what) in [("data.tar.bz2", "bzip2"), ("data.tar.lzma", "lzma")] {
        assert_err(
            &ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                (name, b"BZh91AY&SY"),
            ]),
            &[name, &format!("unsupported compression {what}")],
        );
    }
    assert_err(
        &ar(&[("debian-binary", b"2.0\n"), ("control.tar.bz2", b"BZh")]),
        &["control.tar.bz2: unsupported compression bzip2"],
    );
}

#[test]
fn corrupt_compressed_data() {
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    for ext in [".gz", ".xz", ".zst"] {
        let mut data = compress(ext, &tar(&sample_entries()));
        let mid = data.len() / 2;
        data.truncate(mid);
        let name = format!("data.tar{ext}");
        assert_err(
            &ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                (&name, &data),
            ]),
            &[&format!("cannot decompress {name}")],
        );
    }
}

#[test]
fn garbage_tar() {
    let mut block = vec![b'A'; 512];
    block.extend(vec![0u8; 1024]);
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &block),
        ]),
        &["malformed tar in data.tar", "cksum"],
    );
}

#[test]
fn truncated_tar_inside_complete_member() {
    let data = tar(&[file("./big", &[7u8; 2000])]);
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    // Keep the header and part of the file's data, but no end-of-archive blocks.
    let cut = &data[..512 + 1000];
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", cut),
        ]),
        &[
            "malformed tar in data.tar",
            "./big is cut short: 1000 of 2000 bytes",
        ],
    );
}

#[test]
fn decompression_bombs_are_bounded() {
    let big = vec![file("./zeros", &vec![0u8; 4 << 20])];
    for ext in [".gz", ".xz", ".zst"] {
        let bytes = deb_with(CONTROL, &[], &big, ext);
        assert!(bytes.len() < 64 << 10, "{ext}: {}", bytes.len());
        let e = Deb::parse_with_limits(
            &bytes,
            Limits {
                floor_bytes: 1 << 20,
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert!(
            matches!(e, DebError::DecompressionLimit { .. }),
            "{ext}: {e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("data.tar{ext} decompresses to more than")),
            "{e}"
        );
        // The default limit allows it (16 MiB floor).
        assert!(Deb::parse(&bytes).is_ok());
    }
    assert_eq!(Limits::default().member_limit(1), (16 << 20) + 100);
}

/// Found by the fuzzer: an xz footer whose backward size is 0xFFFFFFFF made
/// the pure-Rust xz decoder used at first overflow and panic.
#[test]
fn fuzz_regression_xz_footer_overflow() {
    let bytes = include_bytes!("fixtures/xz-footer-overflow.deb");
    assert_err(bytes, &["cannot decompress data.tar.xz"]);
}

#[test]
fn malformed_control() {
    let with_control = |control: &str| deb_with(control, &[], &[], "");
    assert_err(
        &with_control("Version: 1\nArchitecture: all\n"),
        &["lacks required field Package"],
    );
    assert_err(
        &with_control("Package: a\nArchitecture: all\n"),
        &["lacks required field Version"],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\n"),
        &["lacks required field Architecture"],
    );
    assert_err(
        &with_control("Package: a\nVersion:\nArchitecture: all\n"),
        &["lacks required field Version"],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: all\nBad Field: x\n"),
        &[
            "malformed control file in control.tar.gz",
            "line 4",
            "invalid field name \"Bad Field\"",
        ],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: all\nno colon here\n"),
        &[
            "malformed control file",
            "line 4",
            "expected \"Field: value\"",
        ],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: all\npackage: b\n"),
        &["duplicate field \"package\""],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\n"),
        &["has 2 paragraphs, expected exactly 1"],
    );
    assert_err(&with_control(""), &["has 0 paragraphs"]);
    assert_err(
        &with_control("Package: ../../etc/passwd\nVersion: 1\nArchitecture: all\n"),
        &["control field Package has invalid value \"../../etc/passwd\""],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1 2\nArchitecture: all\n"),
        &["control field Version has invalid value \"1 2\""],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: amd64/x\n"),
        &["control field Architecture has invalid value"],
    );
    assert_err(
        &with_control("Package: a\nVersion: 1\nArchitecture: all\nMulti-Arch: sometimes\n"),
        &["Multi-Arch", "expected one of no, same, foreign, allowed"],
    );
    // Not UTF-8.
    let control = compress(".gz", &tar(&[file("./control", b"Package: \xff\n")]));
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &tar(&[])),
        ]),
        &["control in control.tar.gz is not valid UTF-8"],
    );
    // No control file at all.
    let control = compress(".gz", &tar(&[file("./md5sums", b"")]));
    assert_err(
        &ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.gz", &control),
            ("data.tar", &tar(&[])),
        ]),
        &["control.tar.gz has no control file"],
    );
}

#[test]
fn malformed_control_tar_members() {
    let bad = |entries: &[TarEntry], needles: &[&str]| {
        let control = compress(".gz", &tar(entries));
        assert_err(
            &ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                ("data.tar", &tar(&[])),
            ]),
            needles,
        );
    };
    let control = file("./control", CONTROL.as_bytes());
    bad(
        &[control.clone(), symlink("./postinst", "/bin/sh")],
        &["./postinst in control.tar.gz is a symlink"],
    );
    bad(
        &[control.clone(), file("../postinst", b"")],
        &["unsafe path \"../postinst\" in control.tar.gz"],
    );
    bad(
        &[control.clone(), file("./sub/postinst", b"")],
        &["must not have subdirectories"],
    );
    bad(
        &[control.clone(), control.clone()],
        &["duplicate path control in control.tar.gz"],
    );
    bad(
        &[control.clone(), special(b"./fifo", b'6')],
        &["./fifo in control.tar.gz is a fifo"],
    );
    bad(
        &[control, file("./conffiles", b"/etc/ok\netc/relative\n")],
        &["conffiles line 2", "etc/relative"],
    );
}

#[test]
fn path_traversal() {
    data_err(
        &[file("../etc/passwd", b"x")],
        &[
            "unsafe path \"../etc/passwd\" in data.tar",
            "'..' component",
        ],
    );
    data_err(
        &[file("./usr/../../etc/passwd", b"x")],
        &["unsafe path \"./usr/../../etc/passwd\""],
    );
    data_err(&[file("./usr/..", b"x")], &["'..' component"]);
    data_err(&[file("./a\nb", b"x")], &["newline"]);
    data_err(
        &[file("./", b"x")],
        &["non-directory entry for the archive root"],
    );
    data_err(&[file("./x/", b"x")], &["trailing '/' on a non-directory"]);
}

#[test]
fn absolute_and_dot_paths_normalize() {
    let deb = Deb::parse(&deb(&[
        dir("/"),
        dir("/usr"),
        dir("./usr/bin/"),
        file("usr/bin/a", b"a"),
        file("/usr//bin/./b", b"b"),
    ]))
    .unwrap();
    let paths: Vec<_> = deb.data.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["/usr", "/usr/bin", "/usr/bin/a", "/usr/bin/b"]);
}

#[test]
fn hardlinks_must_point_to_earlier_files() {
    data_err(
        &[hardlink("./a", "./b"), file("./b", b"x")],
        &["hard link /a in data.tar points to /b, which is not an earlier regular file"],
    );
    data_err(
        &[dir("./d/"), hardlink("./a", "./d")],
        &["hard link /a", "points to /d"],
    );
    data_err(
        &[
            file("./f", b"x"),
            symlink("./s", "f"),
            hardlink("./a", "./s"),
        ],
        &["points to /s"],
    );
    data_err(
        &[hardlink("./a", "../etc/shadow")],
        &["points to ../etc/shadow"],
    );
    data_err(&[hardlink("./a", "")], &["hard link /a"]);
    // A link to a link resolves to the file.
    let deb = Deb::parse(&deb(&[
        file("./f", b"x"),
        hardlink("./a", "f"),
        hardlink("./b", "/a"),
    ]))
    .unwrap();
    assert_eq!(deb.data[2].kind, EntryKind::Hardlink("/f".into()));
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    data_err(
        &[dir("./dev/"), special(b"./dev/x", b'3')],
        &["character device node /dev/x in data.tar is not supported"],
    );
    data_err(
        &[special(b"./dev/sda", b'4')],
        &["block device node /dev/sda in data.tar is not supported"],
    );
    data_err(
        &[special(b"./run/fifo", b'6')],
        &["fifo /run/fifo in data.tar is not supported"],
    );
    data_err(
        &[special(b"./vol", b'V')],
        &["tar entry of type 'V' /vol in data.tar is not supported"],
    );
}

#[test]
fn duplicate_paths() {
    data_err(
        &[dir("./x/"), file("./x", b"")],
        &["duplicate path /x in data.tar: first a directory, then a regular file"],
    );
    data_err(
        &[file("./x", b""), symlink("./x", "y")],
        &["duplicate path /x", "first a regular file, then a symlink"],
    );
    data_err(
        &[file("./x", b"1"), file("./x", b"2")],
        &["duplicate path /x"],
    );
    // The same directory twice is merged; the later metadata wins.
    let mut again = dir("./d");
    again.mode = 0o700;
    let deb = Deb::parse(&deb(&[dir("./d/"), file("./d/f", b""), again])).unwrap();
    assert_eq!(deb.data.len(), 2);
    assert_eq!(deb.data[0].mode, 0o700);
}

#[test]
fn entries_beneath_non_directories() {
    data_err(
        &[symlink("./etc", "/tmp"), file("./etc/passwd", b"x")],
        &["path /etc/passwd in data.tar lies beneath /etc, which is a symlink"],
    );
    data_err(
        &[file("./a", b""), dir("./a/b/"), file("./a/b/c", b"")],
        &["lies beneath /a, which is a regular file"],
    );
}

#[test]
fn non_utf8_paths() {
    data_err(
        &[file("./ok", b""), special(b"./bad\xffname", b'0')],
        &["non-UTF-8 path \"./bad\u{fffd}name\" in data.tar"],
    );
    let mut link = symlink("./l", "x");
    link.link = b"\xfe".to_vec();
    data_err(&[link], &["non-UTF-8 path \"\u{fffd}\" in data.tar"]);
}

#[test]
fn bad_symlinks_and_ids() {
    data_err(
        &[symlink("./l", "")],
        &["symlink /l in data.tar: empty link target"],
    );
    let mut f = file("./f", b"");
    f.uid = 1 << 40;
    data_err(
        &[f],
        &["uid 1099511627776 of /f in data.tar is out of range"],
    );
}

#[test]
fn errors_are_typed() {
    assert!(matches!(
        Deb::parse(&deb(&[special(b"./dev/x", b'3')])),
        Err(DebError::UnsupportedEntry { .. })
    ));
    assert!(matches!(
        Deb::parse(&deb(&[file("../x", b"")])),
        Err(DebError::UnsafePath { .. })
    ));
    assert!(matches!(
        Deb::parse(&deb(&[hardlink("./x", "y")])),
        Err(DebError::BadHardlink { .. })
    ));
}

#[test]
fn accessors_on_a_minimal_package() {
    let bytes = deb_with(
        CONTROL,
        &[("conffiles", b"/etc/t.conf\n"), ("prerm", b"#!/bin/sh\n")],
        &sample_entries(),
        ".zst",
    );
    let deb = Deb::parse(&bytes).unwrap();
    assert_eq!(deb.data_compression, "zstd");
    assert_eq!(deb.source(), ("t".to_string(), "1.0".to_string()));
    assert_eq!(deb.info_name(), "t");
    assert_eq!(deb.multi_arch(), None);
    assert_eq!(deb.maintainer_scripts(), ["prerm"]);
    assert_eq!(
        deb.list_file(),
        "/.\n/etc\n/etc/t.conf\n/usr\n/usr/bin\n/usr/bin/t\n/usr/bin/t2\n/usr/bin/t3\n"
    );
    // Generated like dpkg does: regular files and hard links, archive order.
    assert_eq!(
        deb.md5sums_file(),
        "0d0ea6fb7a5d8ba0ec1e5e8ac0fa2f9f  etc/t.conf\n\
         5b2b0ca4b9c7d9e4d6b4e0f5f3d5ce7a  usr/bin/t\n\
         5b2b0ca4b9c7d9e4d6b4e0f5f3d5ce7a  usr/bin/t2\n"
            .replace("0d0ea6fb7a5d8ba0ec1e5e8ac0fa2f9f", &md5(b"conf=1\n"))
            .replace(
                "5b2b0ca4b9c7d9e4d6b4e0f5f3d5ce7a",
                &md5(b"#!/bin/sh\necho t\n")
            )
    );
    assert_eq!(
        deb.status_stanza().render(),
        format!(
            "Package: t\nStatus: install ok installed\nMaintainer: x <x@y>\n\
             Architecture: all\nVersion: 1.0\nConffiles:\n /etc/t.conf {}\nDescription: d\n",
            md5(b"conf=1\n")
        )
    );
    let names: Vec<_> = deb
        .info_files()
        .into_iter()
        .map(|(n, _, m)| (n, m))
        .collect();
    assert_eq!(
        names,
        [
            ("t.conffiles".to_string(), 0o644),
            ("t.list".to_string(), 0o644),
            ("t.md5sums".to_string(), 0o644),
            ("t.prerm".to_string(), 0o755),
        ]
    );

    // A shipped md5sums wins over the generated one.
    let deb = Deb::parse(&deb_with(CONTROL, &[("md5sums", b"x  y\n")], &[], ".xz")).unwrap();
    assert_eq!(deb.md5sums_file(), "x  y\n");
    assert_eq!(deb.data_compression, "xz");

    let control = format!("{CONTROL}Source: src\nMulti-Arch: same\n");
    let deb = Deb::parse(&deb_with(&control, &[], &[], "")).unwrap();
    assert_eq!(deb.source(), ("src".to_string(), "1.0".to_string()));
    assert_eq!(deb.info_name(), "t:all");
}

fn md5(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

/// Runs `f` on a thread; a call that blocks (a FIFO opened for reading
/// waits for a writer forever) fails the test instead of hanging it.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the read blocked: killed after 60 s")
}

#[test]
fn read_path_refuses_fifos_and_devices_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("p.deb");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let e = within_a_minute(move || Deb::read_path(&fifo).unwrap_err().to_string());
    assert!(e.contains("FIFO"), "{e}");
    let e = within_a_minute(|| {
        Deb::read_path(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string()
    });
    assert!(e.contains("character device"), "{e}");
}
