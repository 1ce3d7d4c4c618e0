//! A deb822 reader (the control-file syntax of Release and Packages files,
//! Debian Policy §5.1): paragraphs separated by blank lines, `Field: value`
//! lines, continuation lines starting with a space or a tab. Values borrow
//! from the input; nothing is copied. Field names compare case-insensitively.
//!
//! Strict where apt is: a line that is neither a field nor a continuation, a
//! continuation before any field, an empty field name, or the same field
//! twice in one paragraph is an error with its line number. Lines starting
//! with `#` at column 0 are comments (allowed in `.sources`, absent from
//! archive indexes).

/// Why a deb822 text (Release, Packages, sources) is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Deb822Error {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// One field: its name and its raw value (first line trimmed, continuation
/// lines kept with their newlines and indentation; see [`Field::lines`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl<'a> Field<'a> {
    /// The value's lines, each trimmed; the first is the text after the colon
    /// (often empty for multi-line fields such as `SHA256`).
    pub fn lines(&self) -> impl Iterator<Item = &'a str> {
        self.value.split('\n').map(str::trim)
    }
}

/// One paragraph (stanza).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Paragraph<'a> {
    /// 1-based line of the paragraph's first field.
    pub line: usize,
    pub fields: Vec<Field<'a>>,
}

impl<'a> Paragraph<'a> {
    /// The raw value of `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// The field `name` (case-insensitive), if present.
    pub fn field(&self, name: &str) -> Option<Field<'a>> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .copied()
    }
}

/// Parse a whole deb822 text into paragraphs. `\r\n` line ends are accepted.
pub fn parse<'a>(text: &'a str) -> Result<Vec<Paragraph<'a>>, Deb822Error> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    // (field index, byte start of value, byte end so far)
    let mut open: Option<(usize, usize, usize)> = None;
    let mut pos = 0usize;
    let mut lineno = 0usize;
    let close = |cur: &mut Paragraph<'a>, open: &mut Option<(usize, usize, usize)>| {
        if let Some((i, s, e)) = open.take() {
            cur.fields[i].value = text[s..e].trim_end();
        }
    };
    while pos < text.len() {
        lineno += 1;
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
        let raw = &text[pos..end];
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line_start = pos;
        let line_end = line_start + line.len();
        pos = end + 1;
        if line.trim().is_empty() {
            close(&mut cur, &mut open);
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match open.as_mut() {
                Some((_, _, e)) => *e = line_end,
                None => {
                    return Err(Deb822Error {
                        line: lineno,
                        reason: "continuation line before any field".into(),
                    });
                }
            }
            continue;
        }
        close(&mut cur, &mut open);
        let Some(colon) = line.find(':') else {
            return Err(Deb822Error {
                line: lineno,
                reason: format!("not a `Field: value` line: {:?}", truncate(line)),
            });
        };
        let name = &line[..colon];
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(Deb822Error {
                line: lineno,
                reason: format!("bad field name {:?}", truncate(name)),
            });
        }
        if cur.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
            return Err(Deb822Error {
                line: lineno,
                reason: format!("field {name} appears twice in one paragraph"),
            });
        }
        if cur.fields.is_empty() {
            cur.line = lineno;
        }
        let vstart = line_start + colon + 1;
        // Skip leading blanks of the first value line.
        let lead = text[vstart..line_end].len() - text[vstart..line_end].trim_start().len();
        cur.fields.push(Field { name, value: "" });
        open = Some((cur.fields.len() - 1, vstart + lead, line_end));
    }
    close(&mut cur, &mut open);
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paragraphs_fields_and_continuations() {
        let t = "Package: a\nDepends: b,\n c (>= 1)\r\nDescription: x\n y\n .\n z\n\n\n# c\nPackage: b\n";
        let ps = parse(t).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].line, 1);
        assert_eq!(ps[0].get("package"), Some("a"));
        assert_eq!(ps[0].get("Depends"), Some("b,\n c (>= 1)"));
        let d: Vec<_> = ps[0].field("Description").unwrap().lines().collect();
        assert_eq!(d, ["x", "y", ".", "z"]);
        assert_eq!(ps[1].line, 11);
        assert_eq!(ps[1].get("Package"), Some("b"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse(" x\n").unwrap_err().line, 1);
        assert_eq!(parse("A: 1\nnot a field\n").unwrap_err().line, 2);
        assert_eq!(parse("A: 1\na: 2\n").unwrap_err().line, 2);
        assert_eq!(parse("A: 1\n: 2\n").unwrap_err().line, 2);
        assert!(parse("").unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_line_soup(lines in proptest::collection::vec("[A-Za-z: \t#\r.-]{0,12}", 0..30)) {
            let _ = parse(&lines.join("\n"));
        }

        #[test]
        fn round_trips(ps in proptest::collection::vec(
            proptest::collection::btree_map("[A-Z][a-z0-9-]{0,8}", proptest::collection::vec("[a-z0-9.,|()<>=][a-z0-9.,|()<>= ]{0,9}", 1..3), 1..5), 1..5)) {
            let mut text = String::new();
            for p in &ps {
                for (k, lines) in p {
                    text.push_str(&format!("{k}: {}\n", lines[0]));
                    for l in &lines[1..] {
                        text.push_str(&format!(" {l}\n"));
                    }
                }
                text.push('\n');
            }
            let parsed = parse(&text).unwrap();
            prop_assert_eq!(parsed.len(), ps.len());
            for (got, want) in parsed.iter().zip(&ps) {
                for (k, lines) in want {
                    let f = got.field(k).unwrap();
                    let got_lines: Vec<&str> = f.lines().filter(|l| !l.is_empty()).collect();
                    let want_lines: Vec<&str> = lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
                    prop_assert_eq!(got_lines, want_lines);
                }
            }
        }
    }
}
