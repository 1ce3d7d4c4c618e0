//! Unpacking an OSV export archive (osv.dev's `<ecosystem>/all.zip`: one
//! `<ID>.json` record per entry) that came from the network, safely.
//!
//! The archive is untrusted. Before anything is written: at most
//! [`ZipLimits::max_entries`] entries. Per entry: a name made only of plain
//! relative components (no `..`, `.`, absolute path, backslash, NUL or empty
//! component; such an archive is refused whole, not partly unpacked); no
//! symbolic link, device or FIFO (refused); directories are implied, and
//! entries not named `*.json` are counted and skipped unread. Every `*.json`
//! entry is decompressed through a bound of [`ZipLimits::max_entry`] bytes
//! (whatever size the archive declares), and all of them together through
//! the smaller of [`ZipLimits::max_total`] and the workspace's decompression
//! bound ([`kiln_oci::expansion::limit`] of the archive's size): a zip bomb
//! is refused the moment it passes either. A duplicate name is refused
//! (files are created exclusively), and each entry's CRC-32 is checked when
//! it has been read to its end.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::feed::FeedError;

/// Bounds on what an archive may unpack to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    pub max_entries: usize,
    /// Uncompressed bytes of one entry.
    pub max_entry: u64,
    /// Uncompressed bytes of all entries (further bounded by the archive's
    /// size, [`kiln_oci::expansion::limit`]).
    pub max_total: u64,
}

impl Default for ZipLimits {
    /// osv.dev's Debian export is tens of thousands of small records: a
    /// million entries, 64 MiB per record and 8 GiB in all leave a wide margin.
    fn default() -> ZipLimits {
        ZipLimits {
            max_entries: 1_000_000,
            max_entry: 64 << 20,
            max_total: 8 << 30,
        }
    }
}

/// What unpacking wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries in the archive (directories included).
    pub entries: usize,
    /// `*.json` files written.
    pub json_files: usize,
    /// Entries not named `*.json`, skipped.
    pub skipped: usize,
    /// Uncompressed bytes written.
    pub bytes: u64,
}

/// Why an entry name is unsafe to unpack, if it is.
pub fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.contains('\0') {
        return Some("NUL in the name");
    }
    if name.contains('\\') {
        return Some("backslash in the name");
    }
    if name.starts_with('/') {
        return Some("absolute path");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for c in trimmed.split('/') {
        match c {
            "" => return Some("empty path component"),
            "." | ".." => return Some("`.` or `..` path component"),
            _ => {}
        }
    }
    None
}

/// Unpack the archive at `archive` (a file of `size` bytes; `label` names it
/// in errors) into the existing, empty directory `dest`.
pub fn extract(
    archive: &Path,
    label: &str,
    dest: &Path,
    limits: &ZipLimits,
) -> Result<Extracted, FeedError> {
    let file = File::open(archive).map_err(|e| FeedError::io(archive, e))?;
    let size = file
        .metadata()
        .map_err(|e| FeedError::io(archive, e))?
        .len();
    let zerr = |source| FeedError::Zip {
        archive: label.to_string(),
        source,
    };
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(zerr)?;
    let refuse = |entry: &str, reason: String| FeedError::Unsafe {
        archive: label.to_string(),
        entry: entry.to_string(),
        reason,
    };
    if zip.len() > limits.max_entries {
        return Err(refuse(
            "",
            format!(
                "{} entries, more than the {} allowed",
                zip.len(),
                limits.max_entries
            ),
        ));
    }
    let max_total = limits.max_total.min(kiln_oci::expansion::limit(size));
    let mut out = Extracted {
        entries: zip.len(),
        ..Extracted::default()
    };
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(zerr)?;
        let name = f.name().map_err(zerr)?.into_owned();
        if let Some(why) = unsafe_name(&name) {
            return Err(refuse(&name, why.to_string()));
        }
        if f.is_symlink() {
            return Err(refuse(&name, "a symbolic link".into()));
        }
        let kind = f.unix_mode().map_or(0, |m| m & 0o170000);
        if kind != 0 && kind != 0o100000 && kind != 0o040000 {
            return Err(refuse(
                &name,
                format!("not a regular file or directory (mode {kind:o})"),
            ));
        }
        if f.is_dir() {
            continue;
        }
        if !name.ends_with(".json") {
            out.skipped += 1;
            continue;
        }
        if f.size() > limits.max_entry {
            return Err(refuse(
                &name,
                format!(
                    "declares {} bytes, more than the {}-byte limit for one record file",
                    f.size(),
                    limits.max_entry
                ),
            ));
        }
        let target = dest.join(&name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| FeedError::io(parent, e))?;
        }
        let mut w = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    refuse(&name, "a second entry of the same name".into())
                } else {
                    FeedError::io(&target, e)
                }
            })?;
        let mut buf = [0u8; 64 * 1024];
        let mut n: u64 = 0;
        loop {
            let k = f.read(&mut buf).map_err(|e| {
                refuse(
                    &name,
                    format!("could not be decompressed ({e}); the archive is damaged"),
                )
            })?;
            if k == 0 {
                break;
            }
            n += k as u64;
            if n > limits.max_entry {
                return Err(refuse(
                    &name,
                    format!(
                        "decompresses to more than the {}-byte limit for one record file",
                        limits.max_entry
                    ),
                ));
            }
            if out.bytes + n > max_total {
                return Err(refuse(
                    &name,
                    format!(
                        "the archive decompresses to more than {max_total} bytes \
                         (16 MiB plus 100 times its {size} bytes, at most {}); refused as a \
                         decompression bomb",
                        limits.max_total
                    ),
                ));
            }
            w.write_all(&buf[..k])
                .map_err(|e| FeedError::io(&target, e))?;
        }
        out.bytes += n;
        out.json_files += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn build(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn unpack(
        bytes: &[u8],
        limits: &ZipLimits,
    ) -> (tempfile::TempDir, Result<Extracted, FeedError>) {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("all.zip");
        std::fs::write(&a, bytes).unwrap();
        let dest = d.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let r = extract(&a, "all.zip", &dest, limits);
        (d, r)
    }

    #[test]
    fn names_are_checked() {
        for bad in [
            "",
            "/etc/x.json",
            "../x.json",
            "a/../x.json",
            "a//x.json",
            "a\\x.json",
            "./x.json",
        ] {
            assert!(unsafe_name(bad).is_some(), "{bad:?}");
        }
        for good in ["DSA-1.json", "a/b.json", "dir/", "x..json"] {
            assert!(unsafe_name(good).is_none(), "{good:?}");
        }
    }

    #[test]
    fn json_entries_are_unpacked_and_others_skipped() {
        let z = build(&[("A.json", b"{}"), ("sub/B.json", b"[]"), ("README", b"hi")]);
        let (d, r) = unpack(&z, &ZipLimits::default());
        let r = r.unwrap();
        assert_eq!((r.entries, r.json_files, r.skipped, r.bytes), (3, 2, 1, 4));
        assert_eq!(
            std::fs::read(d.path().join("out/sub/B.json")).unwrap(),
            b"[]"
        );
        assert!(!d.path().join("out/README").exists());
    }

    #[test]
    fn a_dotdot_entry_refuses_the_archive() {
        let z = build(&[("A.json", b"{}"), ("../evil.json", b"{}")]);
        let (d, r) = unpack(&z, &ZipLimits::default());
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("\"../evil.json\"") && e.contains("refused"),
            "{e}"
        );
        assert!(!d.path().join("evil.json").exists());
    }

    #[test]
    fn a_symlink_is_refused() {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.add_symlink("link.json", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        let z = w.finish().unwrap().into_inner();
        let (_d, r) = unpack(&z, &ZipLimits::default());
        assert!(r.unwrap_err().to_string().contains("symbolic link"));
    }

    #[test]
    fn too_many_entries_are_refused() {
        let z = build(&[("A.json", b"{}"), ("B.json", b"{}"), ("C.json", b"{}")]);
        let limits = ZipLimits {
            max_entries: 2,
            ..ZipLimits::default()
        };
        let (_d, r) = unpack(&z, &limits);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("3 entries, more than the 2 allowed"), "{e}");
    }

    #[test]
    fn a_bomb_is_refused_per_entry_and_in_total() {
        // 40 MiB of zeros compresses to ~40 KiB: past 16 MiB + 100 × size.
        let zeros = vec![0u8; 40 << 20];
        let z = build(&[("bomb.json", &zeros)]);
        assert!(z.len() < 1 << 20);
        let (_d, r) = unpack(&z, &ZipLimits::default());
        let e = r.unwrap_err().to_string();
        assert!(e.contains("decompression bomb"), "{e}");
        // A small per-entry limit trips first.
        let limits = ZipLimits {
            max_entry: 1000,
            ..ZipLimits::default()
        };
        let z = build(&[("big.json", &[b' '; 5000])]);
        let (_d, r) = unpack(&z, &limits);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("1000-byte limit"), "{e}");
    }

    #[test]
    fn garbage_and_truncated_archives_are_refused() {
        let z = build(&[("A.json", b"{}")]);
        let (_d, r) = unpack(b"this is not a zip", &ZipLimits::default());
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("not a readable zip archive")
        );
        // A truncated archive (no central directory) is not readable either.
        let (_d, r) = unpack(&z[..z.len() / 2], &ZipLimits::default());
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("not a readable zip archive")
        );
    }
}
