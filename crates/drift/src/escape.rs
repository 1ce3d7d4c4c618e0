//! Lossless text form of raw path bytes.
//!
//! Paths on disk are byte strings; reports and the `fim-manifest` schema need
//! text. [`escape`] keeps valid UTF-8 as is, except that the backslash, ASCII
//! control characters (`0x00..=0x1f`, `0x7f`) and every byte that is not part
//! of valid UTF-8 are written as `\xNN` (two lowercase hex digits).
//! [`unescape`] reverses it exactly, so `unescape(escape(b)) == b` for every
//! byte string, and comparisons are always done on the bytes.

use std::fmt::Write as _;

/// Whether `bytes` is shown unchanged by [`escape`].
pub fn is_plain(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => !s.chars().any(needs_escape),
        Err(_) => false,
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_ascii_control()
}

/// The text form of `bytes` (see the module documentation).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if needs_escape(c) {
                // `c` is ASCII here, so it is one byte.
                let _ = write!(out, "\\x{:02x}", c as u32);
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The bytes behind an [`escape`]d string; `None` if it contains a
/// backslash that does not start a `\xNN` escape.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.contains(&b'\\') {
        return Some(b.to_vec());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            let (Some(b'x'), Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2), b.get(i + 3))
            else {
                return None;
            };
            out.push(hex_val(h)? << 4 | hex_val(l)?);
            i += 4;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(escape(b"/bin/busybox"), "/bin/busybox");
        assert_eq!(escape(b"/a\\b"), "/a\\x5cb");
        assert_eq!(escape(b"/caf\xc3\xa9"), "/caf\u{e9}");
        assert_eq!(escape(b"/x\xffy\n"), "/x\\xffy\\x0a");
        assert_eq!(unescape("/x\\xffy").as_deref(), Some(&b"/x\xffy"[..]));
        assert_eq!(unescape("/x\\q"), None);
        assert_eq!(unescape("/x\\x4"), None);
        assert!(is_plain(b"/usr/share"));
        assert!(!is_plain(b"/a\\b"));
        assert!(!is_plain(b"/\xfe"));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = escape(&bytes);
            prop_assert_eq!(unescape(&text), Some(bytes.clone()));
            prop_assert_eq!(is_plain(&bytes), text.as_bytes() == bytes.as_slice());
        }

        #[test]
        fn round_trip_text(s in "\\PC{0,20}") {
            prop_assert_eq!(unescape(&escape(s.as_bytes())), Some(s.clone().into_bytes()));
        }
    }
}
