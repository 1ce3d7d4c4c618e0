//! Bounded, streaming decompression of `control.tar*` / `data.tar*` members.
//!
//! Nothing is decompressed into memory as a whole: a member's decoder is a
//! [`Read`] that counts what comes out and fails the moment a [`Limits`]
//! bound is passed, so a decompression bomb is refused after reading only
//! the bytes needed to prove it is one.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

use crate::{DebError, Limits};

/// The compression of a tar member, from its name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// The name used in [`crate::Deb::data_compression`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// Classifies a member name such as `data.tar.xz` given its stem (`data.tar`).
    /// `Ok(None)` means the name does not start with the stem at all.
    pub(crate) fn from_member(name: &str, stem: &str) -> Result<Option<Compression>, DebError> {
        let Some(suffix) = name.strip_prefix(stem) else {
            return Ok(None);
        };
        let unsupported = |compression: &str| DebError::UnsupportedCompression {
            member: name.to_string(),
            compression: compression.to_string(),
        };
        match suffix {
            "" => Ok(Some(Compression::None)),
            ".gz" => Ok(Some(Compression::Gzip)),
            ".xz" => Ok(Some(Compression::Xz)),
            ".zst" => Ok(Some(Compression::Zstd)),
            ".bz2" => Err(unsupported("bzip2")),
            ".lzma" => Err(unsupported("lzma")),
            other => match other.strip_prefix('.') {
                Some(ext) if !ext.is_empty() => Err(unsupported(ext)),
                _ => Ok(None),
            },
        }
    }
}

/// Most memory the xz decoder may use (mostly its dictionary): what `xz -9`
/// needs (65 MiB) with room to spare, so any real package decodes, while a
/// header asking for a gigantic dictionary is refused before it is allocated.
const XZ_MEMLIMIT: u64 = 96 << 20;

/// Which bound a member passed, shared between the counting reader (deep
/// inside the tar reader) and the code that reports the error.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Bytes decompressed so far by the whole package.
    pub(crate) package_out: Cell<u64>,
    /// Set when a bound was passed: the error to report.
    pub(crate) exceeded: Cell<Option<Exceeded>>,
    /// Set when the decoder itself failed (a corrupt compressed stream).
    pub(crate) decode_failed: Cell<bool>,
}

/// A bound that was passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// The member's own bound (floor + ratio × compressed size, or the control cap).
    Member { limit: u64, compressed: u64 },
    /// The whole package's bound.
    Package { limit: u64 },
}

impl Budget {
    /// The typed error for `member` if a bound was passed.
    pub(crate) fn error(&self, member: &str) -> Option<DebError> {
        self.exceeded.get().map(|e| match e {
            Exceeded::Member { limit, compressed } => DebError::DecompressionLimit {
                member: member.to_string(),
                limit,
                compressed,
            },
            Exceeded::Package { limit } => DebError::PackageTooLarge {
                member: member.to_string(),
                limit,
            },
        })
    }
}

/// Counts decompressed bytes and fails once a bound is passed.
struct Bounded<R> {
    inner: R,
    out: u64,
    limit: u64,
    compressed: u64,
    package_limit: u64,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.budget.exceeded.get().is_some() {
            return Err(io::Error::other("decompression limit exceeded"));
        }
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.budget.decode_failed.set(true);
            }
        })?;
        self.out += n as u64;
        let total = self.budget.package_out.get() + n as u64;
        self.budget.package_out.set(total);
        let exceeded = if self.out > self.limit {
            Some(Exceeded::Member {
                limit: self.limit,
                compressed: self.compressed,
            })
        } else if total > self.package_limit {
            Some(Exceeded::Package {
                limit: self.package_limit,
            })
        } else {
            None
        };
        if let Some(e) = exceeded {
            self.budget.exceeded.set(Some(e));
            return Err(io::Error::other("decompression limit exceeded"));
        }
        Ok(n)
    }
}

/// A streaming decoder for one member of `compressed` bytes read from
/// `input`, bounded by `limits` (and by `cap`, when smaller) and by the
/// package-wide `budget`.
pub(crate) fn decoder<'a, R: BufRead + 'a>(
    compression: Compression,
    input: R,
    compressed: u64,
    limits: &Limits,
    cap: Option<u64>,
    budget: Rc<Budget>,
) -> io::Result<Box<dyn Read + 'a>> {
    let inner: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Xz => {
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                liblzma::stream::CONCATENATED,
            )?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(input, stream))
        }
    };
    let mut limit = limits.member_limit(compressed);
    if let Some(cap) = cap {
        limit = limit.min(cap);
    }
    Ok(Box::new(Bounded {
        inner,
        out: 0,
        limit,
        compressed,
        package_limit: limits.max_package_bytes,
        budget,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn classifies_member_names() {
        let c = |n| Compression::from_member(n, "data.tar");
        assert_eq!(c("data.tar").unwrap(), Some(Compression::None));
        assert_eq!(c("data.tar.gz").unwrap(), Some(Compression::Gzip));
        assert_eq!(c("data.tar.xz").unwrap(), Some(Compression::Xz));
        assert_eq!(c("data.tar.zst").unwrap(), Some(Compression::Zstd));
        assert_eq!(c("control.tar").unwrap(), None);
        assert_eq!(c("data.tarx").unwrap(), None);
        let e = c("data.tar.bz2").unwrap_err().to_string();
        assert!(e.contains("unsupported compression bzip2"), "{e}");
        let e = c("data.tar.lzma").unwrap_err().to_string();
        assert!(e.contains("unsupported compression lzma"), "{e}");
    }

    fn limits(floor: u64, ratio: u64, package: u64) -> Limits {
        Limits {
            floor_bytes: floor,
            ratio,
            max_package_bytes: package,
            max_control_bytes: u64::MAX,
        }
    }

    #[test]
    fn member_limit_is_floor_plus_ratio() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let budget = Rc::new(Budget::default());
        let l = limits(1000, 1, u64::MAX);
        let mut d = decoder(
            Compression::Gzip,
            &gz[..],
            gz.len() as u64,
            &l,
            None,
            budget.clone(),
        )
        .unwrap();
        assert!(io::copy(&mut d, &mut io::sink()).is_err());
        let e = budget.error("data.tar.gz").unwrap().to_string();
        let want = format!("more than {} bytes", 1000 + gz.len());
        assert!(e.contains(&want), "{e}");
        // Allowed under a larger limit, and the package-wide count adds up.
        let budget = Rc::new(Budget::default());
        let l = limits(1 << 20, 1, u64::MAX);
        let mut d = decoder(
            Compression::Gzip,
            &gz[..],
            gz.len() as u64,
            &l,
            None,
            budget.clone(),
        )
        .unwrap();
        assert_eq!(io::copy(&mut d, &mut io::sink()).unwrap(), 1 << 20);
        assert_eq!(budget.package_out.get(), 1 << 20);
        // The package bound applies across members.
        let l = limits(1 << 20, 1, (1 << 20) + 10);
        let mut d = decoder(
            Compression::Gzip,
            &gz[..],
            gz.len() as u64,
            &l,
            None,
            budget.clone(),
        )
        .unwrap();
        assert!(io::copy(&mut d, &mut io::sink()).is_err());
        let e = budget.error("data.tar.gz").unwrap().to_string();
        assert!(e.contains("package decompresses to more than"), "{e}");
    }

    #[test]
    fn corrupt_streams_are_errors() {
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let l = limits(1 << 20, 1, u64::MAX);
            let budget = Rc::new(Budget::default());
            let r = decoder(c, &b"garbage garbage"[..], 15, &l, None, budget.clone());
            let failed = match r {
                Err(_) => true,
                Ok(mut d) => io::copy(&mut d, &mut io::sink()).is_err(),
            };
            assert!(failed, "{c:?}");
            assert!(budget.error("m").is_none());
        }
    }
}
