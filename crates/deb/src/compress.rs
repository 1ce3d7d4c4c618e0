//! Bounded decompression of `control.tar*` / `data.tar*` members.

use std::borrow::Cow;
use std::io::{self, Write};

use crate::DebError;

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

/// Most memory the xz decoder may use (mostly its dictionary): four times what
/// `xz -9` needs, so any real package decodes, while a header asking for a
/// gigantic dictionary is refused before it is allocated.
const XZ_MEMLIMIT: u64 = 256 << 20;

/// Decompresses `data` into memory, failing once more than `limit` bytes come out.
/// Every decoder streams into a bounded sink, so memory stays within `limit`
/// (plus the decoder's own state, bounded for xz by [`XZ_MEMLIMIT`] and for zstd
/// by its default window limit).
pub(crate) fn decompress<'a>(
    member: &str,
    compression: Compression,
    data: &'a [u8],
    limit: u64,
) -> Result<Cow<'a, [u8]>, DebError> {
    let mut sink = LimitedSink {
        buf: Vec::new(),
        limit,
        exceeded: false,
    };
    let result: io::Result<()> = match compression {
        Compression::None => return Ok(Cow::Borrowed(data)),
        Compression::Gzip => {
            io::copy(&mut flate2::read::MultiGzDecoder::new(data), &mut sink).map(drop)
        }
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(data)
            .and_then(|mut decoder| io::copy(&mut decoder, &mut sink))
            .map(drop),
        Compression::Xz => {
            liblzma::stream::Stream::new_stream_decoder(XZ_MEMLIMIT, liblzma::stream::CONCATENATED)
                .map_err(io::Error::from)
                .and_then(|stream| {
                    io::copy(
                        &mut liblzma::bufread::XzDecoder::new_stream(data, stream),
                        &mut sink,
                    )
                })
                .map(drop)
        }
    };
    if sink.exceeded {
        return Err(DebError::DecompressionLimit {
            member: member.to_string(),
            limit,
        });
    }
    result.map_err(|source| DebError::Decompress {
        member: member.to_string(),
        source,
    })?;
    Ok(Cow::Owned(sink.buf))
}

/// A `Vec` sink that refuses to grow beyond `limit` bytes.
struct LimitedSink {
    buf: Vec<u8>,
    limit: u64,
    exceeded: bool,
}

impl Write for LimitedSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.buf.len() as u64);
        if bytes.len() as u64 > room {
            self.exceeded = true;
            return Err(io::Error::other("decompression limit exceeded"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn limit_is_enforced() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let gz = gz.finish().unwrap();
        let e = decompress("data.tar.gz", Compression::Gzip, &gz, 1000).unwrap_err();
        assert!(
            e.to_string()
                .contains("data.tar.gz decompresses to more than 1000 bytes"),
            "{e}"
        );
        let ok = decompress("data.tar.gz", Compression::Gzip, &gz, 1 << 20).unwrap();
        assert_eq!(ok.len(), 1 << 20);
    }

    #[test]
    fn corrupt_streams_are_errors() {
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let e = decompress("m", c, b"garbage garbage", 1 << 20).unwrap_err();
            assert!(e.to_string().starts_with("cannot decompress m: "), "{e}");
        }
    }
}
