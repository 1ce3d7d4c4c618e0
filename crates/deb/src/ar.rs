//! A minimal reader for the common `ar` archive format used by `.deb` files.

use crate::DebError;

const MAGIC: &[u8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;

/// One member of an `ar` archive, borrowing its data from the input.
#[derive(Debug)]
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
