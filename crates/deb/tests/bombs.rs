//! Decompression bombs are refused early, while streaming, and large
//! legitimate packages still read with bounded memory.

mod common;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::rc::Rc;

use common::*;
use kiln_deb::{ContentSink, Deb, DebError, EntryKind, Limits};
use md5::Digest as _;

/// Counts the bytes read from the underlying input.
struct Counting<R> {
    inner: R,
    n: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }
}

/// A sink that keeps nothing: it counts bytes and hashes them.
#[derive(Default)]
struct Discard {
    bytes: u64,
    md5: Vec<[u8; 16]>,
}

impl ContentSink for Discard {
    fn store(&mut self, _: &str, _: u64, r: &mut dyn Read) -> io::Result<u64> {
        let mut h = md5::Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            self.bytes += n as u64;
        }
        self.md5.push(h.finalize().into());
        Ok(self.md5.len() as u64 - 1)
    }
}

/// Writes a tar with one file `./big` of `size` bytes from `fill`.
fn write_tar(w: &mut dyn Write, size: u64, fill: &mut dyn FnMut(&mut [u8])) {
    let mut h = tar::Header::new_ustar();
    h.set_path("./big").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    w.write_all(h.as_bytes()).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        fill(&mut buf[..k]);
        w.write_all(&buf[..k]).unwrap();
        left -= k as u64;
    }
    let pad = (512 - size % 512) % 512;
    w.write_all(&vec![0u8; pad as usize + 1024]).unwrap();
}

/// That tar compressed with `ext` while it is generated (never held whole).
fn streamed_data_tar(ext: &str, size: u64, mut fill: impl FnMut(&mut [u8])) -> Vec<u8> {
    match ext {
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            write_tar(&mut e, size, &mut fill);
            e.finish().unwrap()
        }
        ".xz" => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            write_tar(&mut e, size, &mut fill);
            e.finish().unwrap()
        }
        ".zst" => {
            let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
            write_tar(&mut e, size, &mut fill);
            e.finish().unwrap()
        }
        _ => unreachable!(),
    }
}

/// xorshift: incompressible bytes, reproducibly.
fn random(seed: &mut u64) -> impl FnMut(&mut [u8]) + '_ {
    move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let b = seed.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

fn deb_of(data_member: &str, data: &[u8]) -> Vec<u8> {
    let control = compress(".gz", &control_tar(CONTROL, &[]));
    ar(&[
        ("debian-binary", b"2.0\n"),
        ("control.tar.gz", &control),
        (data_member, data),
    ])
}

fn read_counting(bytes: &[u8], limits: Limits) -> (Result<Deb, DebError>, u64, Discard) {
    let n = Rc::new(Cell::new(0));
    let mut sink = Discard::default();
    let r = Deb::read(
        Counting {
            inner: bytes,
            n: n.clone(),
        },
        Some(bytes.len() as u64),
        limits,
        &mut sink,
    );
    (r, n.get(), sink)
}

/// 512 MiB of zeros in ~0.5 MB of gzip: refused once 16 MiB + 100 × its
/// compressed size has come out, long before the input is read to its end.
#[test]
fn gzip_bomb_is_refused_before_its_input_is_read() {
    let data = streamed_data_tar(".gz", 512 << 20, |b| b.fill(0));
    let deb = deb_of("data.tar.gz", &data);
    let (r, consumed, sink) = read_counting(&deb, Limits::default());
    let e = r.unwrap_err();
    assert!(matches!(e, DebError::DecompressionLimit { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("data.tar.gz decompresses to more than")
            && msg.contains("refused as a decompression bomb"),
        "{msg}"
    );
    let limit = Limits::default().member_limit(data.len() as u64);
    assert!(sink.bytes <= limit, "{} > {limit}", sink.bytes);
    assert!(
        consumed < deb.len() as u64 / 2,
        "read {consumed} of {} input bytes before refusing",
        deb.len()
    );
}

/// zstd and xz bombs: refused with no more than the bound decompressed.
#[test]
fn zstd_and_xz_bombs_are_refused_at_the_bound() {
    for ext in [".zst", ".xz"] {
        let data = streamed_data_tar(ext, 128 << 20, |b| b.fill(0));
        let name = format!("data.tar{ext}");
        let deb = deb_of(&name, &data);
        let (r, _, sink) = read_counting(&deb, Limits::default());
        let e = r.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("{name} decompresses to more than")),
            "{e}"
        );
        let limit = Limits::default().member_limit(data.len() as u64);
        assert!(limit < 64 << 20, "{ext}: {limit}");
        assert!(sink.bytes <= limit, "{ext}: {} > {limit}", sink.bytes);
    }
}

/// The package-wide bound holds even when each member is within its own.
#[test]
fn package_bound() {
    let mut seed = 7;
    let data = streamed_data_tar(".gz", 3 << 20, random(&mut seed));
    let deb = deb_of("data.tar.gz", &data);
    let limits = Limits {
        max_package_bytes: 2 << 20,
        ..Limits::default()
    };
    let (r, _, sink) = read_counting(&deb, limits);
    let e = r.unwrap_err();
    assert!(matches!(e, DebError::PackageTooLarge { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("the package decompresses to more than 2097152 bytes"),
        "{e}"
    );
    assert!(sink.bytes <= 2 << 20);
}

/// A large legitimate member (64 MiB of random bytes, and 64 MiB of
/// compressible text within the bound) streams through to the sink.
#[test]
fn large_legitimate_members_stream() {
    let mut seed = 42;
    let mut want = md5::Md5::new();
    let mut seed2 = 42;
    let mut fill = random(&mut seed2);
    let mut left = 64u64 << 20;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        fill(&mut buf);
        want.update(&buf);
        left -= 1 << 20;
    }
    let want: [u8; 16] = want.finalize().into();
    let data = streamed_data_tar(".zst", 64 << 20, random(&mut seed));
    let deb = deb_of("data.tar.zst", &data);
    let (r, consumed, sink) = read_counting(&deb, Limits::default());
    let deb_parsed = r.unwrap();
    assert_eq!(consumed, deb.len() as u64);
    assert_eq!(sink.bytes, 64 << 20);
    assert_eq!(sink.md5, vec![want]);
    match &deb_parsed.data[0].kind {
        EntryKind::File(f) => {
            assert_eq!(f.size, 64 << 20);
            assert_eq!(f.md5, want);
            assert!(f.contents.is_none());
        }
        other => panic!("{other:?}"),
    }

    // Text that compresses ~10× stays under 16 MiB + 100 × its size.
    let mut i = 0u64;
    let data = streamed_data_tar(".gz", 64 << 20, |b| {
        for chunk in b.chunks_mut(64) {
            let line = format!("{:063x}\n", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20);
            chunk.copy_from_slice(&line.as_bytes()[..chunk.len()]);
            i += 1;
        }
    });
    assert!(data.len() < 16 << 20, "{}", data.len());
    let deb = deb_of("data.tar.gz", &data);
    let (r, _, sink) = read_counting(&deb, Limits::default());
    r.unwrap();
    assert_eq!(sink.bytes, 64 << 20);
}

/// A PAX extension header is read into memory whole by the tar reader: one
/// of 8 MiB (well within the decompression bounds) is refused by its size.
#[test]
fn huge_extension_headers_are_refused() {
    for kind in [b'x', b'L'] {
        let mut h = tar::Header::new_ustar();
        h.set_path("./PaxHeaders/big").unwrap();
        h.set_size(8 << 20);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        let mut t = h.as_bytes().to_vec();
        t.extend(std::iter::repeat_n(b'a', 8 << 20));
        t.extend([0u8; 1024]);
        let deb = deb_of("data.tar.zst", &compress(".zst", &t));
        let (r, _, _) = read_counting(&deb, Limits::default());
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "tar extension header ({}) of 8388608 bytes",
                char::from(kind)
            )),
            "{e}"
        );
    }
}
