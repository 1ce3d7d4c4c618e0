//! Helpers shared by the integration tests: building `.deb` files in process,
//! including malformed ones that no packaging tool would write.

#![allow(dead_code)]

use std::io::Write;

/// A minimal valid control file.
pub const CONTROL: &str =
    "Package: t\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@y>\nDescription: d\n";

/// One tar entry, written with raw header bytes so that hostile names survive.
#[derive(Clone, Debug)]
pub struct TarEntry {
    pub path: Vec<u8>,
    pub kind: u8,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
}

fn entry(path: &[u8], kind: u8) -> TarEntry {
    TarEntry {
        path: path.to_vec(),
        kind,
        data: Vec::new(),
        link: Vec::new(),
        mode: 0o644,
        uid: 0,
    }
}

pub fn dir(path: &str) -> TarEntry {
    TarEntry {
        mode: 0o755,
        ..entry(path.as_bytes(), b'5')
    }
}

pub fn file(path: &str, data: &[u8]) -> TarEntry {
    TarEntry {
        data: data.to_vec(),
        ..entry(path.as_bytes(), b'0')
    }
}

pub fn symlink(path: &str, target: &str) -> TarEntry {
    TarEntry {
        link: target.as_bytes().to_vec(),
        mode: 0o777,
        ..entry(path.as_bytes(), b'2')
    }
}

pub fn hardlink(path: &str, target: &str) -> TarEntry {
    TarEntry {
        link: target.as_bytes().to_vec(),
        ..entry(path.as_bytes(), b'1')
    }
}

/// An entry of any type byte (`3` char device, `4` block device, `6` fifo, ...).
pub fn special(path: &[u8], kind: u8) -> TarEntry {
    entry(path, kind)
}

/// A GNU tar archive of `entries`; names and link names must fit in 100 bytes.
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..e.path.len()].copy_from_slice(&e.path);
            gnu.linkname[..e.link.len()].copy_from_slice(&e.link);
        }
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        builder.append(&h, e.data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Compresses with `ext` as in a member name: `""`, `".gz"`, `".xz"`, `".zst"`.
pub fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "" => data.to_vec(),
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ".xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        ".zst" => zstd::encode_all(data, 3).unwrap(),
        other => panic!("unknown extension {other}"),
    }
}

/// An `ar` archive of `members`.
pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            data.len()
        );
        assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// A control.tar holding `control` and the given extra files.
pub fn control_tar(control: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries = vec![dir("./"), file("./control", control.as_bytes())];
    for (name, data) in extra {
        entries.push(file(&format!("./{name}"), data));
    }
    tar(&entries)
}

/// A complete .deb with the given control text and data entries, data.tar
/// compressed with `ext`.
pub fn deb_with(control: &str, extra: &[(&str, &[u8])], data: &[TarEntry], ext: &str) -> Vec<u8> {
    let control = compress(".gz", &control_tar(control, extra));
    let data = compress(ext, &tar(data));
    ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control),
        (&format!("data.tar{ext}"), &data),
    ])
}

/// A .deb with the minimal control file and uncompressed data.tar.
pub fn deb(data: &[TarEntry]) -> Vec<u8> {
    deb_with(CONTROL, &[], data, "")
}

/// A small but complete package exercising every entry kind.
pub fn sample_entries() -> Vec<TarEntry> {
    vec![
        dir("./"),
        dir("./etc/"),
        file("./etc/t.conf", b"conf=1\n"),
        dir("./usr/"),
        dir("./usr/bin/"),
        TarEntry {
            mode: 0o4755,
            ..file("./usr/bin/t", b"#!/bin/sh\necho t\n")
        },
        hardlink("./usr/bin/t2", "./usr/bin/t"),
        symlink("./usr/bin/t3", "t"),
    ]
}
