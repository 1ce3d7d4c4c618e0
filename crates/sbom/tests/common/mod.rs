//! Inventories shared by the integration tests.
#![allow(dead_code)]

use kiln_sbom::{
    FileKind, FileOrigin, FileRecord, ImageSubject, Inventory, Package, PackageOrigin, ToolInfo,
};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha1(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

pub fn dir(path: &str, mode: u32, origin: FileOrigin) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: FileKind::Dir,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        sha256: None,
        sha1: None,
        link: None,
        origin,
    }
}

pub fn file(path: &str, mode: u32, content: &[u8], origin: FileOrigin) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: FileKind::File,
        mode,
        uid: 0,
        gid: 0,
        size: content.len() as u64,
        sha256: Some(sha256(content)),
        sha1: Some(sha1(content)),
        link: None,
        origin,
    }
}

pub fn symlink(path: &str, target: &str, origin: FileOrigin) -> FileRecord {
    FileRecord {
        path: path.into(),
        kind: FileKind::Symlink,
        mode: 0o777,
        uid: 0,
        gid: 0,
        size: target.len() as u64,
        sha256: None,
        sha1: None,
        link: Some(target.into()),
        origin,
    }
}

pub fn hardlink(path: &str, target: &str, content: &[u8], origin: FileOrigin) -> FileRecord {
    FileRecord {
        kind: FileKind::Hardlink,
        link: Some(target.into()),
        ..file(path, 0o644, content, origin)
    }
}

pub fn pkg(name: &str) -> FileOrigin {
    FileOrigin::Package(name.into())
}

pub fn image(name: &str, tag: &str, digest_seed: &str) -> ImageSubject {
    ImageSubject {
        name: name.into(),
        tag: tag.into(),
        digest: format!("sha256:{}", sha256(digest_seed.as_bytes())),
        created: "1970-01-01T00:00:00Z".into(),
        architecture: "amd64".into(),
        os: "linux".into(),
    }
}

pub fn tool() -> ToolInfo {
    ToolInfo {
        name: "kiln".into(),
        version: "0.1.0".into(),
    }
}

fn sorted(mut files: Vec<FileRecord>) -> Vec<FileRecord> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// A small fixed inventory: one .deb package, one base package, a spec file,
/// a symlink, and a base file no package owns.
pub fn small() -> Inventory {
    use FileOrigin::{Base, Spec};
    let busybox = b"\x7fELF busybox";
    Inventory {
        image: image("hello", "1.0.0", "hello manifest"),
        tool: tool(),
        packages: vec![
            Package {
                name: "busybox".into(),
                version: "1:1.35.0-4+b3".into(),
                architecture: "amd64".into(),
                source_name: "busybox".into(),
                source_version: "1:1.35.0-4".into(),
                maintainer: Some("Debian Busybox Team <busybox@packages.debian.org>".into()),
                homepage: Some("http://www.busybox.net".into()),
                summary: Some("Tiny utilities for small and embedded systems".into()),
                distro: Some("bookworm".into()),
                origin: PackageOrigin::Deb {
                    sha256: sha256(b"busybox.deb"),
                },
                files: vec!["/bin".into(), "/bin/busybox".into()],
                maintainer_scripts_not_run: vec![],
                done_by_kiln: vec![],
            },
            Package {
                name: "base-files".into(),
                version: "12.4+deb12u5".into(),
                architecture: "amd64".into(),
                source_name: "base-files".into(),
                source_version: "12.4+deb12u5".into(),
                maintainer: Some("Santiago Vila <sanvila@debian.org>".into()),
                homepage: None,
                summary: Some("Debian base system miscellaneous files".into()),
                distro: Some("bookworm".into()),
                origin: PackageOrigin::Base,
                files: vec!["/etc".into(), "/etc/debian_version".into()],
                maintainer_scripts_not_run: vec![],
                done_by_kiln: vec![],
            },
        ],
        files: sorted(vec![
            dir("/", 0o755, Base),
            dir("/bin", 0o755, Base),
            file("/bin/busybox", 0o755, busybox, pkg("busybox")),
            symlink("/bin/sh", "busybox", pkg("busybox")),
            dir("/etc", 0o755, Base),
            file("/etc/debian_version", 0o644, b"12.5\n", Base),
            file("/etc/hello.conf", 0o640, b"greeting = hello\n", Spec),
            file("/etc/hostname", 0o644, b"localhost\n", Base),
            dir("/tmp", 0o1777, Base),
        ]),
    }
}

/// A realistic inventory: three packages (one with an epoch and a Source
/// with its own version, one from the base image), ~25 paths with non-ASCII
/// and spaces in names, symlinks and hard links.
pub fn realistic() -> Inventory {
    use FileOrigin::{Base, Spec};
    let busybox = b"\x7fELF busybox 1.35.0".as_slice();
    let libc = b"\x7fELF libc.so.6".as_slice();
    let libm = b"\x7fELF libm.so.6".as_slice();
    let utc = b"TZif2 UTC".as_slice();
    let files = vec![
        dir("/", 0o755, Base),
        dir("/bin", 0o755, Base),
        file("/bin/busybox", 0o755, busybox, pkg("busybox")),
        hardlink("/bin/ls", "/bin/busybox", busybox, pkg("busybox")),
        symlink("/bin/sh", "busybox", pkg("busybox")),
        dir("/etc", 0o755, Base),
        file("/etc/hello.conf", 0o640, b"greeting = hello\n", Spec),
        symlink("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC", Spec),
        file("/etc/motd", 0o644, b"welcome\n", Base),
        symlink("/lib64", "usr/lib64", Base),
        dir("/srv", 0o755, Spec),
        dir("/srv/données", 0o750, Spec),
        file(
            "/srv/données/hello world – ünïcode.txt",
            0o644,
            "héllo wörld\n".as_bytes(),
            Spec,
        ),
        FileRecord {
            uid: 1000,
            gid: 1000,
            ..file("/srv/données/spaced  name", 0o600, b"", Spec)
        },
        dir("/tmp", 0o1777, Base),
        dir("/usr", 0o755, Base),
        dir("/usr/bin", 0o755, Base),
        file("/usr/bin/hello", 0o4755, b"#!/bin/sh\necho hello\n", Spec),
        dir("/usr/lib", 0o755, Base),
        dir("/usr/lib/x86_64-linux-gnu", 0o755, Base),
        file("/usr/lib/x86_64-linux-gnu/libc.so.6", 0o755, libc, Base),
        file("/usr/lib/x86_64-linux-gnu/libm.so.6", 0o644, libm, Base),
        dir("/usr/lib64", 0o755, Base),
        symlink(
            "/usr/lib64/ld-linux-x86-64.so.2",
            "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            Base,
        ),
        dir("/usr/share", 0o755, Base),
        dir("/usr/share/doc", 0o755, Base),
        dir("/usr/share/doc/busybox", 0o755, pkg("busybox")),
        file(
            "/usr/share/doc/busybox/copyright",
            0o644,
            b"Copyright: Erik Andersen\n",
            pkg("busybox"),
        ),
        dir("/usr/share/zoneinfo", 0o755, pkg("tzdata")),
        dir("/usr/share/zoneinfo/Etc", 0o755, pkg("tzdata")),
        file("/usr/share/zoneinfo/Etc/UTC", 0o644, utc, pkg("tzdata")),
        hardlink(
            "/usr/share/zoneinfo/UCT",
            "/usr/share/zoneinfo/Etc/UTC",
            utc,
            pkg("tzdata"),
        ),
        hardlink(
            "/usr/share/zoneinfo/Zulu",
            "/usr/share/zoneinfo/Etc/UTC",
            utc,
            pkg("tzdata"),
        ),
    ];
    Inventory {
        image: ImageSubject {
            created: "2024-05-01T12:34:56Z".into(),
            ..image("registry.example.com:5000/acme/hello", "1.0.0", "realistic")
        },
        tool: tool(),
        packages: vec![
            Package {
                name: "tzdata".into(),
                version: "2024a-0+deb12u1".into(),
                architecture: "all".into(),
                source_name: "tzdata".into(),
                source_version: "2024a-0+deb12u1".into(),
                maintainer: Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>".into()),
                homepage: Some("https://www.iana.org/time-zones".into()),
                summary: Some("time zone and daylight-saving time data".into()),
                distro: Some("bookworm".into()),
                origin: PackageOrigin::Deb {
                    sha256: sha256(b"tzdata.deb"),
                },
                files: vec![
                    "/usr/share/zoneinfo".into(),
                    "/usr/share/zoneinfo/Etc".into(),
                    "/usr/share/zoneinfo/Etc/UTC".into(),
                    "/usr/share/zoneinfo/UCT".into(),
                    "/usr/share/zoneinfo/Zulu".into(),
                ],
                maintainer_scripts_not_run: vec![
                    "config".into(),
                    "postinst".into(),
                    "postrm".into(),
                ],
                done_by_kiln: vec![],
            },
            Package {
                name: "busybox".into(),
                version: "1:1.35.0-4+b3".into(),
                architecture: "amd64".into(),
                source_name: "busybox".into(),
                source_version: "1:1.35.0-4".into(),
                maintainer: Some("Debian Busybox Team <busybox@packages.debian.org>".into()),
                homepage: Some("http://www.busybox.net".into()),
                summary: Some("Tiny utilities for small and embedded systems".into()),
                distro: Some("bookworm".into()),
                origin: PackageOrigin::Deb {
                    sha256: sha256(b"busybox.deb"),
                },
                files: vec![
                    "/bin/busybox".into(),
                    "/bin/ls".into(),
                    "/bin/sh".into(),
                    "/usr/share/doc/busybox".into(),
                    "/usr/share/doc/busybox/copyright".into(),
                ],
                maintainer_scripts_not_run: vec!["postinst".into(), "prerm".into()],
                done_by_kiln: vec![],
            },
            Package {
                name: "libc6".into(),
                version: "2.36-9+deb12u4".into(),
                architecture: "amd64".into(),
                source_name: "glibc".into(),
                source_version: "2.36-9+deb12u4".into(),
                // Parentheses in the name: no valid SPDX supplier can be made.
                maintainer: Some(
                    "GNU Libc (glibc) Maintainers <debian-glibc@lists.debian.org>".into(),
                ),
                // Not a URL: must be left out rather than written invalid.
                homepage: Some("see /usr/share/doc/libc6".into()),
                summary: Some("GNU C Library: Shared libraries".into()),
                distro: None,
                origin: PackageOrigin::Base,
                files: vec![
                    "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                    "/usr/lib/x86_64-linux-gnu/libm.so.6".into(),
                    "/usr/lib64/ld-linux-x86-64.so.2".into(),
                ],
                maintainer_scripts_not_run: vec![],
                done_by_kiln: vec![],
            },
        ],
        files: sorted(files),
    }
}

/// No packages and no files at all.
pub fn empty() -> Inventory {
    Inventory {
        image: image("scratch", "", "empty"),
        tool: tool(),
        packages: vec![],
        files: vec![],
    }
}

/// Awkward but valid input: names and paths with control characters, quotes,
/// backslashes, emoji, colliding SPDX-ID fragments, a very long path,
/// multi-arch duplicates of one package name, odd versions and maintainers.
pub fn hostile() -> Inventory {
    use FileOrigin::{Base, Spec};
    let long = format!("/srv/{}", "ä".repeat(120));
    let mut files = vec![
        dir("/", 0o755, Base),
        dir("/srv", 0o755, Spec),
        file("/srv/a b", 0o644, b"1", Spec),
        file("/srv/a-b", 0o644, b"2", Spec),
        file("/srv/a_b", 0o644, b"3", Spec),
        file("/srv/a-b-2", 0o644, b"4", Spec),
        file("/srv/tab\there", 0o644, b"5", Spec),
        file("/srv/new\nline", 0o644, b"6", Spec),
        file("/srv/quote\"back\\slash", 0o644, b"7", Spec),
        file("/srv/emoji 🚀.txt", 0o644, b"8", Spec),
        file("/srv/%41%2F?#&=@:+", 0o644, b"9", Spec),
        file(&long, 0o644, b"10", Spec),
        symlink("/srv/dangling", "../nowhere/\u{1}", Spec),
        dir("/usr", 0o755, Base),
        dir("/usr/lib", 0o755, Base),
        file("/usr/lib/libfoo++.so", 0o644, b"amd64", pkg("libfoo++")),
        file("/usr/lib/libfoo++.so.i386", 0o644, b"i386", pkg("libfoo++")),
        hardlink(
            "/usr/lib/same-content",
            "/usr/lib/libfoo++.so",
            b"amd64",
            pkg("libfoo++"),
        ),
    ];
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let libfoo = |arch: &str, path: &str| Package {
        name: "libfoo++".into(),
        version: "2:1.0~rc1+dfsg-1~bpo12+1".into(),
        architecture: arch.into(),
        source_name: "foo".into(),
        source_version: "2:1.0~rc1+dfsg-1".into(),
        maintainer: Some("Ünïcode Person <u@example.org>".into()),
        homepage: Some("https://exämple.org/ä b".into()),
        summary: Some("line one\nline two".into()),
        distro: Some("bookworm-backports".into()),
        origin: PackageOrigin::Deb {
            sha256: sha256(arch.as_bytes()),
        },
        files: vec![path.into()],
        maintainer_scripts_not_run: vec!["preinst".into(), "postinst".into()],
        done_by_kiln: vec![],
    };
    let mut amd64 = libfoo("amd64", "/usr/lib/libfoo++.so");
    amd64.files.push("/usr/lib/same-content".into());
    Inventory {
        image: ImageSubject {
            created: "2024-05-01T14:34:56.123456+02:00".into(),
            ..image(
                "Registry.Example.com:5000/Acme/Hello",
                "v1.0.0-rc.1",
                "hostile",
            )
        },
        tool: ToolInfo {
            name: "kiln".into(),
            version: "0.1.0-dev+g1234abc".into(),
        },
        packages: vec![
            libfoo("i386", "/usr/lib/libfoo++.so.i386"),
            amd64,
            Package {
                name: "nomaint".into(),
                version: "0".into(),
                architecture: "all".into(),
                source_name: String::new(),
                source_version: String::new(),
                maintainer: Some("(nobody) <>".into()),
                homepage: None,
                summary: None,
                distro: None,
                origin: PackageOrigin::Base,
                files: vec![],
                maintainer_scripts_not_run: vec![],
                done_by_kiln: vec![],
            },
        ],
        files,
    }
}
