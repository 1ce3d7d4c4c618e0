//! Positions in text files for error messages: `file:line:col` and the
//! offending line with a caret. Shared by every kiln parser of
//! human-written files (kiln.toml, trust.toml, deploy.toml).

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `"\n    | <line>\n    |    ^"` for `line`/`column` in `text` (empty if
/// the line does not exist).
pub fn snippet(text: &str, line: usize, column: usize) -> String {
    match text.lines().nth(line.wrapping_sub(1)) {
        Some(l) if line > 0 => {
            // A hostile or generated file may hold one enormous line: show
            // at most SNIPPET_WIDTH characters of it, around the column.
            let chars: Vec<char> = l.chars().collect();
            let col = column.saturating_sub(1).min(chars.len());
            let start = col.saturating_sub(SNIPPET_WIDTH / 2);
            let end = (start + SNIPPET_WIDTH).min(chars.len());
            let start = end.saturating_sub(SNIPPET_WIDTH).min(start);
            let lead = if start > 0 { "…" } else { "" };
            let tail = if end < chars.len() { "…" } else { "" };
            let shown: String = chars[start..end].iter().collect();
            let pad: String = std::iter::once(lead)
                .filter(|l| !l.is_empty())
                .map(|_| ' ')
                .chain(
                    chars[start..col]
                        .iter()
                        .map(|&c| if c == '\t' { '\t' } else { ' ' }),
                )
                .collect();
            format!("\n    | {lead}{shown}{tail}\n    | {pad}^")
        }
        _ => String::new(),
    }
}

/// The most characters of a line a snippet shows.
pub const SNIPPET_WIDTH: usize = 120;

/// Where a file stops being UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUtf8 {
    /// 1-based line and column (in characters) of the first invalid byte.
    pub line: usize,
    pub column: usize,
    /// Its byte offset in the file and its value.
    pub offset: usize,
    pub byte: u8,
    /// The offending line (invalid bytes shown as U+FFFD) with a caret.
    pub snippet: String,
}

impl NotUtf8 {
    /// `"<what> is not UTF-8: byte 0xff at offset 12"`.
    pub fn message(&self, what: &str) -> String {
        format!(
            "{what} is not UTF-8: byte 0x{:02x} at offset {}",
            self.byte, self.offset
        )
    }
}

/// Decode a human-written file as UTF-8, or say where it is not.
pub fn decode(bytes: Vec<u8>) -> Result<String, NotUtf8> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let byte = bytes.get(offset).copied().unwrap_or(0);
        let valid = String::from_utf8_lossy(&bytes[..offset]);
        let (line, column) = line_col(&valid, offset);
        let line_start = bytes[..offset]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let line_end = bytes[offset..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |i| offset + i);
        let text = String::from_utf8_lossy(&bytes[line_start..line_end]);
        NotUtf8 {
            line,
            column,
            offset,
            byte,
            snippet: snippet(&text, 1, column),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_is_located() {
        let e = decode(b"a = 1\nb\xc3\xa9 = \"x\xffy\"\n".to_vec()).unwrap_err();
        assert_eq!((e.line, e.column, e.offset, e.byte), (2, 8, 14, 0xff));
        assert_eq!(
            e.snippet,
            "\n    | b\u{e9} = \"x\u{fffd}y\"\n    |        ^"
        );
        assert!(e.message("kiln.toml").contains("byte 0xff at offset 14"));
        let e = decode(vec![0x80]).unwrap_err();
        assert_eq!((e.line, e.column, e.offset), (1, 1, 0));
        // A truncated sequence at the end.
        let e = decode(b"ok\n\xe2\x82".to_vec()).unwrap_err();
        assert_eq!((e.line, e.column, e.byte), (2, 1, 0xe2));
        assert_eq!(decode(b"fine\n".to_vec()).unwrap(), "fine\n");
    }

    #[test]
    fn snippets_of_long_lines_are_cut_around_the_column() {
        let line = "A".repeat(2 << 20);
        let s = snippet(&line, 1, 2 << 20);
        assert!(s.len() < 2 * SNIPPET_WIDTH + 40, "{} bytes", s.len());
        let rows: Vec<&str> = s.lines().collect();
        assert!(rows[1].starts_with("    | …A"), "{s}");
        // The caret sits under the last shown character, the column's.
        let caret = rows[2].chars().count() - 1;
        assert_eq!(rows[1].chars().nth(caret), Some('A'));
        let s = snippet("short = 1", 1, 7);
        assert_eq!(s, "\n    | short = 1\n    |       ^");
        let mid = format!("{}x{}", "a".repeat(500), "b".repeat(500));
        let s = snippet(&mid, 1, 501);
        let rows: Vec<&str> = s.lines().collect();
        assert!(
            rows[1].starts_with("    | …") && rows[1].ends_with('…'),
            "{s}"
        );
        let caret = rows[2].chars().count() - 1;
        assert_eq!(rows[1].chars().nth(caret), Some('x'));
    }

    proptest::proptest! {
        #[test]
        fn snippet_caret_points_at_the_column(
            line in "[a-z=\" ]{1,400}",
            col in 1usize..420,
        ) {
            let s = snippet(&line, 1, col);
            let rows: Vec<&str> = s.lines().collect();
            proptest::prop_assert_eq!(rows.len(), 3);
            proptest::prop_assert!(rows[1].chars().count() <= SNIPPET_WIDTH + 8);
            let caret = rows[2].chars().count() - 1;
            let want = line.chars().nth(col - 1);
            if let Some(c) = want {
                proptest::prop_assert_eq!(rows[1].chars().nth(caret), Some(c));
            }
        }

        #[test]
        fn decode_agrees_with_std(b in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            match decode(b.clone()) {
                Ok(s) => proptest::prop_assert_eq!(s.as_bytes(), &b[..]),
                Err(e) => {
                    let v = std::str::from_utf8(&b).unwrap_err().valid_up_to();
                    proptest::prop_assert_eq!(e.offset, v);
                    proptest::prop_assert_eq!(e.line, b[..v].iter().filter(|c| **c == b'\n').count() + 1);
                    proptest::prop_assert!(e.column >= 1);
                }
            }
        }
    }

    #[test]
    fn positions_and_carets() {
        let t = "a = 1\nbé = x\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 12), (2, 6));
        assert_eq!(line_col(t, 8), (2, 2)); // inside 'é': clamped to its start
        assert_eq!(line_col(t, 999), (3, 1));
        assert_eq!(snippet(t, 2, 6), "\n    | bé = x\n    |      ^");
        assert_eq!(snippet(t, 0, 1), "");
        assert_eq!(snippet(t, 9, 1), "");
    }
}
