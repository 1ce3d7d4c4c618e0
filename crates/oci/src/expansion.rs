//! Bounds on decompression: a compressed layer (or any compressed member)
//! may expand to at most 16 MiB plus 100 times its compressed size. A
//! decompression bomb is refused the moment it passes the bound, before it
//! costs time, memory or disk.

use std::io::{self, Read};

/// Bytes every compressed stream may expand to, whatever its size.
pub const FLOOR: u64 = 16 << 20;
/// Bytes allowed per compressed byte beyond [`FLOOR`].
pub const RATIO: u64 = 100;

/// The most bytes a stream of `compressed` bytes may decompress to.
pub fn limit(compressed: u64) -> u64 {
    compressed.saturating_mul(RATIO).saturating_add(FLOOR)
}

/// A reader over decompressed bytes that fails (`InvalidData`) once more
/// than `limit` bytes have come out.
pub struct Bounded<R> {
    inner: R,
    out: u64,
    limit: u64,
}

impl<R> Bounded<R> {
    /// Bounds `inner` (the decoder of a stream of `compressed` bytes) by [`limit`].
    pub fn for_compressed(inner: R, compressed: u64) -> Self {
        Bounded {
            inner,
            out: 0,
            limit: limit(compressed),
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.out
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out > self.limit {
            return Err(exceeded(self.limit));
        }
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        if self.out > self.limit {
            return Err(exceeded(self.limit));
        }
        Ok(n)
    }
}

fn exceeded(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "decompresses to more than {limit} bytes (16 MiB plus 100 times its compressed size); refused as a decompression bomb"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_bound() {
        let zeros = io::repeat(0).take(1 << 40);
        let mut b = Bounded::for_compressed(zeros, 1000);
        let e = io::copy(&mut b, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("decompression bomb"), "{e}");
        assert!(b.count() <= limit(1000) + (64 << 10));
        let mut ok = Bounded::for_compressed(io::repeat(0).take(FLOOR), 0);
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), FLOOR);
    }
}
