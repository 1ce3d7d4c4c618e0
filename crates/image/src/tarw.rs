//! A deterministic tar writer: POSIX ustar headers, PAX extended headers
//! (`x`) for whatever ustar cannot hold (long or non-ASCII names, large
//! sizes or ids, xattrs). Never GNU extensions, never host metadata: the
//! caller passes every field, so the bytes depend only on the entries.

use std::io::{self, Write};

/// The kind of a tar entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    Hardlink,
}

/// Everything written into one header.
#[derive(Clone, Debug)]
pub struct Header<'a> {
    /// Path relative to the root, without a leading `/` (e.g. `bin/busybox`).
    pub path: &'a str,
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: u64,
    /// Symlink target or hard-link target path (relative, no leading `/`).
    pub link: Option<&'a str>,
    /// Declared extended attributes, written as `SCHILY.xattr.<name>`.
    pub xattrs: &'a [(String, Vec<u8>)],
}

const BLOCK: usize = 512;
/// The largest value an 11-digit octal header field holds.
const MAX_OCT11: u64 = 0o77_777_777_777;

/// Streams tar entries into `W`.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    /// Write a header; for files the caller then writes exactly `size` bytes
    /// of content through [`TarWriter::content`] and calls [`TarWriter::pad`].
    pub fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        let name = match h.kind {
            EntryType::Dir => format!("{}/", h.path),
            _ => h.path.to_string(),
        };
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        let split = split_ustar_name(&name);
        if split.is_none() {
            pax.push(("path", name.as_bytes().to_vec()));
        }
        if let Some(l) = h.link
            && (l.len() > 100 || !l.is_ascii())
        {
            pax.push(("linkpath", l.as_bytes().to_vec()));
        }
        if h.size > MAX_OCT11 {
            pax.push(("size", h.size.to_string().into_bytes()));
        }
        if h.uid > 0o7_777_777 {
            pax.push(("uid", h.uid.to_string().into_bytes()));
        }
        if h.gid > 0o7_777_777 {
            pax.push(("gid", h.gid.to_string().into_bytes()));
        }
        let xkeys: Vec<String> = h
            .xattrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        for (k, (_, v)) in xkeys.iter().zip(h.xattrs) {
            pax.push((k, v.clone()));
        }
        if !pax.is_empty() {
            pax.sort_by(|a, b| a.0.cmp(b.0));
            let mut body = Vec::new();
            for (k, v) in &pax {
                body.extend(pax_record(k, v));
            }
            let base = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let mut pname = format!("PaxHeaders/{base}");
            truncate_utf8(&mut pname, 100);
            let mut b = [0u8; BLOCK];
            fill_header(
                &mut b,
                (&[], pname.as_bytes()),
                b'x',
                0o644,
                0,
                0,
                body.len() as u64,
                h.mtime,
                &[],
            );
            self.out.write_all(&b)?;
            self.out.write_all(&body)?;
            self.pad(body.len() as u64)?;
        }
        let (prefix, short) = split.unwrap_or((&[], &name.as_bytes()[..name.len().min(100)]));
        let typeflag = match h.kind {
            EntryType::File => b'0',
            EntryType::Hardlink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Dir => b'5',
        };
        let link = h
            .link
            .map(|l| &l.as_bytes()[..l.len().min(100)])
            .unwrap_or(&[]);
        let size = if h.kind == EntryType::File { h.size } else { 0 };
        let mut b = [0u8; BLOCK];
        fill_header(
            &mut b,
            (prefix, short),
            typeflag,
            h.mode,
            h.uid,
            h.gid,
            size,
            h.mtime,
            link,
        );
        self.out.write_all(&b)
    }

    /// Write content bytes of the current file.
    pub fn content(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)
    }

    /// Pad the current entry's content (of length `len`) to a block boundary.
    pub fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Write the end-of-archive marker and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// Split a name into ustar (prefix, name) if it fits: ASCII, name ≤ 100,
/// prefix ≤ 155, split at a `/`.
fn split_ustar_name(name: &str) -> Option<(&[u8], &[u8])> {
    if !name.is_ascii() {
        return None;
    }
    let b = name.as_bytes();
    if b.len() <= 100 {
        return Some((&[], b));
    }
    if b.len() > 256 {
        return None;
    }
    // Choose the rightmost-but-valid split: prefix ≤ 155, name ≤ 100.
    let body = &b[..b.len() - usize::from(name.ends_with('/'))];
    for (i, &c) in body.iter().enumerate() {
        if c == b'/' && i <= 155 && b.len() - i - 1 <= 100 && i > 0 {
            return Some((&b[..i], &b[i + 1..]));
        }
    }
    None
}

fn truncate_utf8(s: &mut String, max: usize) {
    while s.len() > max {
        s.pop();
    }
}

/// One PAX record: `"<len> <key>=<value>\n"` where len counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[allow(clippy::too_many_arguments)]
fn fill_header(
    b: &mut [u8; BLOCK],
    (prefix, name): (&[u8], &[u8]),
    typeflag: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: u64,
    link: &[u8],
) {
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(mode & 0o7777));
    octal(&mut b[108..116], u64::from(uid.min(0o7_777_777)));
    octal(&mut b[116..124], u64::from(gid.min(0o7_777_777)));
    octal(&mut b[124..136], size.min(MAX_OCT11));
    octal(&mut b[136..148], mtime.min(MAX_OCT11));
    b[148..156].fill(b' ');
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    b[345..345 + prefix.len()].copy_from_slice(prefix);
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// Zero-padded octal with a trailing NUL, filling the field.
fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    field[..w].copy_from_slice(&s.as_bytes()[s.len() - w..]);
    field[w] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_one(path: &str, kind: EntryType, data: &[u8], link: Option<&str>) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        w.header(&Header {
            path,
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 1_700_000_000,
            link,
            xattrs: &[],
        })
        .unwrap();
        if kind == EntryType::File {
            w.content(data).unwrap();
            w.pad(data.len() as u64).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_back(bytes: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().to_string();
                let l = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string());
                let mut d = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut d).unwrap();
                (p, l, d)
            })
            .collect()
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", b"a");
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_record("path", &long);
        assert_eq!(String::from_utf8_lossy(&r[..4]), "105 ");
        assert_eq!(r.len(), 105);
    }

    #[test]
    fn long_and_unicode_names_use_pax_and_read_back() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        for p in [long.as_str(), "usr/share/doc/caf\u{e9}/README", "a b/c"] {
            let t = write_one(p, EntryType::File, b"hello", None);
            let r = read_back(&t);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, p);
            assert_eq!(r[0].2, b"hello");
            assert!(
                !t.windows(12).any(|w| w == b"././@LongLin"),
                "GNU extension used"
            );
        }
        let target = "t".repeat(150);
        let t = write_one("l", EntryType::Symlink, b"", Some(&target));
        assert_eq!(read_back(&t)[0].1.as_deref(), Some(target.as_str()));
    }

    #[test]
    fn matches_gnu_tar_listing() {
        // GNU tar must list what we wrote (it is the reference reader).
        let t = write_one("usr/bin/x", EntryType::File, b"abc", None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.tar");
        std::fs::write(&p, t).unwrap();
        let out = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("usr/bin/x") && s.contains("-rwxr-xr-x"), "{s}");
    }

    proptest! {
        #[test]
        fn any_path_roundtrips(parts in proptest::collection::vec("[a-zA-Z0-9._\u{e0}-\u{ff} -]{1,40}", 1..10)) {
            let p = parts.join("/");
            prop_assume!(!parts.iter().any(|c| c == "." || c == ".."));
            let t = write_one(&p, EntryType::File, b"z", None);
            let r = read_back(&t);
            prop_assert_eq!(&r[0].0, &p);
        }
    }
}
