//! A minimal reader for the common `ar` archive format used by `.deb` files.

use std::io::{self, Read};

use crate::DebError;

const MAGIC: &[u8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;

/// One member of an `ar` archive, borrowing its data from the input.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Member<'a> {
    /// Name with trailing spaces and a GNU-style trailing `/` removed,
    /// decoded lossily (names are ASCII in valid archives).
    pub(crate) name: String,
    /// The member's bytes.
    pub(crate) data: &'a [u8],
}

/// Splits an `ar` archive into its members, in order.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Member<'_>>, DebError> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Err(DebError::BadMagic);
    };
    let mut offset = MAGIC.len();
    let mut members = Vec::new();
    while !rest.is_empty() {
        let Some((header, after)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return Err(DebError::TruncatedArHeader {
                offset,
                available: rest.len(),
            });
        };
        if &header[58..60] != b"`\n" {
            return Err(DebError::BadArHeader {
                offset,
                reason: "missing the \"`\\n\" terminator".into(),
            });
        }
        let name = parse_name(&header[0..16]);
        let size = parse_size(&header[48..58]).ok_or_else(|| DebError::BadArHeader {
            offset,
            reason: format!(
                "member {name:?} has size field {:?}, expected a decimal number",
                String::from_utf8_lossy(&header[48..58]).trim_end()
            ),
        })?;
        let data_offset = offset + HEADER_LEN;
        let len = match usize::try_from(size) {
            Ok(len) if len <= after.len() => len,
            _ => {
                return Err(DebError::ArMemberTooLarge {
                    member: name,
                    offset: data_offset,
                    size,
                    available: after.len(),
                });
            }
        };
        let (data, mut next) = after.split_at(len);
        let mut consumed = HEADER_LEN + len;
        // Member data is padded to an even length; tolerate a missing final pad byte.
        if len % 2 == 1 && !next.is_empty() {
            next = &next[1..];
            consumed += 1;
        }
        members.push(Member { name, data });
        rest = next;
        offset += consumed;
    }
    Ok(members)
}

/// Reads an `ar` archive from a stream, one member at a time, never holding
/// a member in memory: [`ArReader::next_member`] gives a member's name and
/// size, and the member's bytes are then read from [`ArReader::member`].
pub(crate) struct ArReader<R> {
    inner: R,
    offset: u64,
    /// The total input length, when known: member sizes are checked against it.
    total: Option<u64>,
    /// Bytes of the current member not yet read, and its padding.
    left: u64,
    pad: bool,
    started: bool,
}

fn read_err(source: io::Error) -> DebError {
    DebError::Read { source }
}

impl<R: Read> ArReader<R> {
    pub(crate) fn new(inner: R, total: Option<u64>) -> Self {
        ArReader {
            inner,
            offset: 0,
            total,
            left: 0,
            pad: false,
            started: false,
        }
    }

    /// Skips what is left of the current member and reads the next header:
    /// `None` at the end of the archive.
    pub(crate) fn next_member(&mut self) -> Result<Option<(String, u64)>, DebError> {
        if !self.started {
            let mut magic = [0u8; MAGIC.len()];
            let n = read_full(&mut self.inner, &mut magic).map_err(read_err)?;
            if n < magic.len() || magic != MAGIC {
                return Err(DebError::BadMagic);
            }
            self.offset = MAGIC.len() as u64;
            self.started = true;
        }
        let skip = self.left + u64::from(self.pad);
        let skipped =
            io::copy(&mut (&mut self.inner).take(skip), &mut io::sink()).map_err(read_err)?;
        self.offset += skipped;
        // A missing final pad byte is tolerated, as by `parse`.
        if skipped < self.left {
            return Err(DebError::Read {
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "the .deb is cut short"),
            });
        }
        self.left = 0;
        self.pad = false;
        let mut header = [0u8; HEADER_LEN];
        let n = read_full(&mut self.inner, &mut header).map_err(read_err)?;
        if n == 0 {
            return Ok(None);
        }
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        if n < HEADER_LEN {
            return Err(DebError::TruncatedArHeader {
                offset,
                available: n,
            });
        }
        if &header[58..60] != b"`\n" {
            return Err(DebError::BadArHeader {
                offset,
                reason: "missing the \"`\\n\" terminator".into(),
            });
        }
        let name = parse_name(&header[0..16]);
        let size = parse_size(&header[48..58]).ok_or_else(|| DebError::BadArHeader {
            offset,
            reason: format!(
                "member {name:?} has size field {:?}, expected a decimal number",
                String::from_utf8_lossy(&header[48..58]).trim_end()
            ),
        })?;
        self.offset += HEADER_LEN as u64;
        if let Some(total) = self.total {
            let available = total.saturating_sub(self.offset);
            if size > available {
                return Err(DebError::ArMemberTooLarge {
                    member: name,
                    offset: usize::try_from(self.offset).unwrap_or(usize::MAX),
                    size,
                    available: usize::try_from(available).unwrap_or(usize::MAX),
                });
            }
        }
        self.left = size;
        self.pad = size % 2 == 1;
        Ok(Some((name, size)))
    }

    /// The rest of the current member's bytes.
    pub(crate) fn member(&mut self) -> Member2<'_, R> {
        Member2 { ar: self }
    }
}

/// A reader over the current member of an [`ArReader`].
pub(crate) struct Member2<'a, R> {
    ar: &'a mut ArReader<R>,
}

impl<R: Read> Read for Member2<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.ar.left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.ar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the .deb is cut short inside a member",
            ));
        }
        self.ar.left -= n as u64;
        self.ar.offset += n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
use kiln_oci::untrusted::read_full;

fn parse_name(field: &[u8]) -> String {
    let mut end = field.len();
    while end > 0 && field[end - 1] == b' ' {
        end -= 1;
    }
    let mut name = &field[..end];
    // GNU ar terminates names with '/'; keep the special names "/" and "//" as they are.
    if name.len() > 1 && name.ends_with(b"/") && name != b"//" {
        name = &name[..name.len() - 1];
    }
    String::from_utf8_lossy(name).into_owned()
}

fn parse_size(field: &[u8]) -> Option<u64> {
    let digits = field
        .iter()
        .position(|&b| b == b' ')
        .map_or(field, |end| &field[..end]);
    // Everything after the digits must be padding.
    if digits.is_empty() || field[digits.len()..].iter().any(|&b| b != b' ') {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: &str) -> Vec<u8> {
        let mut h = format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
            "0", "0", "0", "100644"
        )
        .into_bytes();
        h.truncate(60);
        h
    }

    #[test]
    fn parses_members_with_padding_and_gnu_names() {
        let mut a = MAGIC.to_vec();
        a.extend(header("one/", "3"));
        a.extend(b"abc\n");
        a.extend(header("two", "2"));
        a.extend(b"de");
        let m = parse(&a).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].name, "one");
        assert_eq!(m[0].data, b"abc");
        assert_eq!(m[1].name, "two");
        assert_eq!(m[1].data, b"de");
    }

    #[test]
    fn tolerates_missing_final_pad() {
        let mut a = MAGIC.to_vec();
        a.extend(header("x", "1"));
        a.extend(b"z");
        assert_eq!(parse(&a).unwrap()[0].data, b"z");
    }

    #[test]
    fn rejects_bad_size_fields() {
        for size in ["", "1x", "-1", "1 2", "9999999999"] {
            let mut a = MAGIC.to_vec();
            a.extend(header("x", size));
            let err = parse(&a).unwrap_err().to_string();
            assert!(
                err.contains("size field") || err.contains("claims"),
                "{size:?}: {err}"
            );
        }
    }

    #[test]
    fn size_parser() {
        assert_eq!(parse_size(b"12        "), Some(12));
        assert_eq!(parse_size(b"0123456789"), Some(123456789));
        assert_eq!(parse_size(b"          "), None);
        assert_eq!(parse_size(b" 1        "), None);
    }
}
