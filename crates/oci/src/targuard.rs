//! A pass-through reader that follows the tar stream's structure and
//! refuses extension headers (PAX `x`/`g`, GNU long names `L`/`K`) larger
//! than [`MAX_EXTENSION`]: the `tar` crate reads those into memory whole, so
//! without this a crafted member could make it buffer gigabytes. Every tar
//! stream kiln reads from something it did not write (a `.deb` member, a
//! base or imported layer, an archive given to `kiln import`, a layer being
//! unpacked or scanned) goes through it.

use std::io::{self, Read};

/// The largest extension header accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// What the guard refused: the message of the `InvalidData` error it returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TarRefusal {
    #[error("a tar header has a malformed size field")]
    MalformedSize,
    #[error(
        "a tar extension header ({kind}) of {size} bytes; at most {MAX_EXTENSION} are accepted"
    )]
    ExtensionTooLarge { kind: char, size: u64 },
    #[error("a GNU sparse tar entry")]
    Sparse,
    #[error("a tar entry size overflows")]
    SizeOverflow,
}

/// Wraps a tar stream: bytes pass through unchanged; an oversized extension
/// header (or a GNU sparse entry, which kiln never writes) is an
/// `InvalidData` error before the `tar` crate sees it.
pub struct TarGuard<R> {
    inner: R,
    header: [u8; 512],
    filled: usize,
    /// Bytes of the current entry's data and padding still to pass.
    data_left: u64,
    /// The contents of a PAX `x` header being passed, for its `size`.
    pax: Option<Vec<u8>>,
    /// A `size` from the last PAX header, for the next entry.
    pax_size: Option<u64>,
    failed: Option<TarRefusal>,
    /// Set on a header with a bad checksum: the `tar` crate refuses it
    /// with its own error, so the guard steps aside.
    off: bool,
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner`.
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            header: [0; 512],
            filled: 0,
            data_left: 0,
            pax: None,
            pax_size: None,
            failed: None,
            off: false,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), TarRefusal> {
        while !bytes.is_empty() && !self.off {
            if self.data_left > 0 {
                let k = bytes
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                if let Some(p) = &mut self.pax {
                    p.extend_from_slice(&bytes[..k]);
                }
                self.data_left -= k as u64;
                bytes = &bytes[k..];
                if self.data_left == 0
                    && let Some(p) = self.pax.take()
                {
                    self.pax_size = pax_size(&p);
                }
                continue;
            }
            let k = bytes.len().min(512 - self.filled);
            self.header[self.filled..self.filled + k].copy_from_slice(&bytes[..k]);
            self.filled += k;
            bytes = &bytes[k..];
            if self.filled == 512 {
                self.filled = 0;
                self.header_done()?;
            }
        }
        Ok(())
    }

    fn header_done(&mut self) -> Result<(), TarRefusal> {
        let h = &self.header;
        if h.iter().all(|&b| b == 0) {
            return Ok(());
        }
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if parse_size(&h[148..156]) != Some(sum) {
            self.off = true;
            return Ok(());
        }
        let size = parse_size(&h[124..136]).ok_or(TarRefusal::MalformedSize)?;
        let kind = h[156];
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if size > MAX_EXTENSION {
                    return Err(TarRefusal::ExtensionTooLarge {
                        kind: char::from(kind),
                        size,
                    });
                }
                if kind == b'x' {
                    self.pax = Some(Vec::new());
                }
                size
            }
            b'S' => return Err(TarRefusal::Sparse),
            _ => self.pax_size.take().unwrap_or(size),
        };
        // Data is padded to whole blocks.
        self.data_left = size
            .checked_add(BLOCK - 1)
            .map(|s| s / BLOCK * BLOCK)
            .ok_or(TarRefusal::SizeOverflow)?;
        if self.data_left == 0
            && let Some(p) = self.pax.take()
        {
            self.pax_size = pax_size(&p);
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, f.clone()));
        }
        let n = self.inner.read(buf)?;
        if self.off {
            return Ok(n);
        }
        if let Err(f) = self.observe(&buf[..n]) {
            self.failed = Some(f.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, f));
        }
        Ok(n)
    }
}

/// A header numeric field: octal text, or GNU base-256.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| b != b' ' && b != 0)
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&text).ok()?;
    u64::from_str_radix(s, 8).ok()
}

/// The `size` record of a PAX header.
fn pax_size(records: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(records);
    let mut rest: &str = &text;
    let mut size = None;
    while let Some((len, _)) = rest.split_once(' ') {
        let n: usize = len.parse().ok()?;
        let record = rest.get(..n)?;
        rest = &rest[n..];
        let kv = record.split_once(' ')?.1.trim_end_matches('\n');
        if let Some(v) = kv.strip_prefix("size=") {
            size = v.parse().ok();
        }
    }
    size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path("x").unwrap();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pass(bytes: &[u8]) -> io::Result<u64> {
        let mut g = TarGuard::new(bytes);
        // Small reads, to cross every boundary.
        let mut buf = [0u8; 7];
        let mut n = 0u64;
        loop {
            let k = g.read(&mut buf)?;
            if k == 0 {
                return Ok(n);
            }
            n += k as u64;
        }
    }

    #[test]
    fn refuses_huge_extension_headers_and_follows_pax_sizes() {
        let mut t = header(b'L', 2 << 20);
        t.extend(vec![b'a'; 4096]);
        let e = pass(&t).unwrap_err().to_string();
        assert!(
            e.contains("tar extension header (L) of 2097152 bytes"),
            "{e}"
        );
        // A PAX size record moves the next header: a huge 'x' hidden as
        // file data is found.
        let rec = b"16 size=1000000\n";
        let mut t = header(b'x', rec.len() as u64);
        t.extend(rec);
        t.resize(1024, 0);
        t.extend(header(b'0', 5));
        t.extend(vec![0u8; 1000000 + 512 - 1000000 % 512]);
        t.extend(header(b'x', 5 << 20));
        let e = pass(&t).unwrap_err().to_string();
        assert!(e.contains("(x) of 5242880 bytes"), "{e}");
        // A normal archive passes unchanged.
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(80) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert_eq!(pass(&t).unwrap(), t.len() as u64);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"     1750 \0\0"), Some(1000));
        assert_eq!(
            parse_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_size(b"0000000175x\0"), None);
        assert_eq!(
            pax_size(b"16 size=1000000\n20 path=abcdefghijk\n"),
            Some(1000000)
        );
    }
}
