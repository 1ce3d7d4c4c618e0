//! deb822 stanzas ("paragraphs"): the syntax of `DEBIAN/control` and `/var/lib/dpkg/status`.

use crate::DebError;

/// Whitespace that deb822 strips at the end of lines (a stray `\r` from CRLF included).
const TRAILING_WS: [char; 3] = [' ', '\t', '\r'];

/// One deb822 stanza: an ordered list of `(name, value)` fields.
///
/// Field names are matched case-insensitively and keep the spelling they were
/// given. A value holds the text after `Name:` with surrounding whitespace
/// removed; a multi-line value keeps its continuation lines verbatim (each after
/// a `\n`, starting with their space or tab), so the `Description` of
/// `Description: short\n long\n .\n more` is `"short\n long\n .\n more"` and a
/// field whose first line is empty, like `Conffiles:`, has a value starting with
/// `\n`. Whitespace at the start and end of the whole value is dropped; inner
/// lines are kept exactly (dpkg keeps trailing spaces inside descriptions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    fields: Vec<(String, String)>,
}

impl Stanza {
    /// An empty stanza.
    pub fn new() -> Stanza {
        Stanza::default()
    }

    /// Parses text holding exactly one stanza (blank lines around it are allowed).
    pub fn parse(text: &str) -> Result<Stanza, DebError> {
        let mut stanzas = parse_stanzas(text)?;
        match stanzas.len() {
            1 => Ok(stanzas.remove(0)),
            n => Err(DebError::Syntax {
                line: 1,
                reason: format!("expected exactly one stanza, found {n}"),
            }),
        }
    }

    /// The value of field `name` (case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| self.fields[i].1.as_str())
    }

    /// Sets field `name` to `value`: replaces the value (and the name's spelling)
    /// of an existing field in place, or appends a new field at the end.
    ///
    /// Fails when the name is not a valid deb822 field name or the value would not
    /// parse back to itself: it must not start or end with whitespace, and every
    /// line after the first must start with a space or tab and hold something
    /// besides whitespace.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), DebError> {
        check_field_name(name).map_err(|reason| DebError::InvalidFieldName {
            line: 0,
            name: name.to_string(),
            reason,
        })?;
        check_value(value).map_err(|reason| DebError::InvalidFieldValue {
            name: name.to_string(),
            reason,
        })?;
        match self.position(name) {
            Some(i) => self.fields[i] = (name.to_string(), value.to_string()),
            None => self.fields.push((name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Removes field `name` (case-insensitive) and returns its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.position(name).map(|i| self.fields.remove(i).1)
    }

    /// The fields as `(name, value)` pairs, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the stanza has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Renders the stanza as deb822 text, one `Name: value` per field, ending with
    /// `"\n"` (an empty stanza renders as the empty string).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.fields {
            out.push_str(name);
            out.push(':');
            if !value.is_empty() && !value.starts_with('\n') {
                out.push(' ');
            }
            out.push_str(value);
            out.push('\n');
        }
        out
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Appends without validation; for values known to be well formed.
    pub(crate) fn push_unchecked(&mut self, name: &str, value: &str) {
        self.fields.push((name.to_string(), value.to_string()));
    }
}

/// Parses a whole deb822 file, such as `/var/lib/dpkg/status`, into its stanzas.
///
/// Stanzas are separated by one or more blank lines (lines of only spaces, tabs
/// and carriage returns). Lines starting with `#` outside a value are comments
/// and are skipped. As in dpkg, whitespace is stripped at the start and at the
/// end of each value, while the inside of a multi-line value (trailing spaces of
/// its inner lines included) is kept verbatim.
///
/// Errors name the 1-based line: a continuation line with no field before it, a
/// line without `:`, an invalid field name, a field repeated within a stanza.
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza>, DebError> {
    let mut stanzas = Vec::new();
    let mut current = Stanza::new();
    // Whether a continuation line may extend the current stanza's last field
    // (not after a comment line, where it would be ambiguous).
    let mut in_field = false;
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        if line.trim_start_matches(TRAILING_WS).is_empty() {
            finish_value(&mut current);
            if !current.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            in_field = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match current.fields.last_mut() {
                Some((_, value)) if in_field => {
                    value.push('\n');
                    value.push_str(line);
                }
                _ => {
                    return Err(DebError::Syntax {
                        line: line_no,
                        reason: "continuation line without a field before it".into(),
                    });
                }
            }
            continue;
        }
        finish_value(&mut current);
        if line.starts_with('#') {
            in_field = false;
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(DebError::Syntax {
                line: line_no,
                reason: format!("expected \"Field: value\", found {:?}", shorten(line)),
            });
        };
        check_field_name(name).map_err(|reason| DebError::InvalidFieldName {
            line: line_no,
            name: shorten(name),
            reason,
        })?;
        if current.position(name).is_some() {
            return Err(DebError::DuplicateField {
                line: line_no,
                name: name.to_string(),
            });
        }
        current.push_unchecked(name, value.trim_start_matches([' ', '\t']));
        in_field = true;
    }
    finish_value(&mut current);
    if !current.is_empty() {
        stanzas.push(current);
    }
    Ok(stanzas)
}

/// Strips trailing whitespace from the value of the stanza's last field.
fn finish_value(stanza: &mut Stanza) {
    if let Some((_, value)) = stanza.fields.last_mut() {
        let len = value.trim_end_matches(TRAILING_WS).len();
        value.truncate(len);
    }
}

/// Renders stanzas the way dpkg writes its status file: each stanza followed by
/// one blank line, in the order given (callers sort if they want to). Empty
/// stanzas are skipped, as they would not survive a parse.
pub fn render_status(stanzas: &[Stanza]) -> String {
    let mut out = String::new();
    for stanza in stanzas.iter().filter(|s| !s.is_empty()) {
        out.push_str(&stanza.render());
        out.push('\n');
    }
    out
}

/// deb822: US-ASCII from `!` to `~` except `:`, not starting with `#` or `-`.
pub(crate) fn check_field_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty field name");
    }
    if name.starts_with('#') || name.starts_with('-') {
        return Err("must not start with '#' or '-'");
    }
    if !name
        .bytes()
        .all(|b| (b'!'..=b'~').contains(&b) && b != b':')
    {
        return Err("only printable US-ASCII other than ':' and space is allowed");
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), &'static str> {
    if value.starts_with([' ', '\t']) {
        return Err("it starts with whitespace");
    }
    if value.ends_with(TRAILING_WS) {
        return Err("it ends with whitespace");
    }
    for line in value.split('\n').skip(1) {
        if !line.starts_with([' ', '\t']) {
            return Err("a continuation line does not start with a space or tab");
        }
        if line.trim_start_matches(TRAILING_WS).is_empty() {
            return Err("a continuation line is blank");
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multiline_and_empty_first_line() {
        let text = "Package: foo\nConffiles:\n /etc/a 123\n /etc/b 456\nDescription: short\n long\n .\n more\n";
        let s = Stanza::parse(text).unwrap();
        assert_eq!(s.get("package"), Some("foo"));
        assert_eq!(s.get("Conffiles"), Some("\n /etc/a 123\n /etc/b 456"));
        assert_eq!(s.get("DESCRIPTION"), Some("short\n long\n .\n more"));
        assert_eq!(s.render(), text);
    }

    #[test]
    fn separators_comments_and_crlf() {
        let text = "\n\n# comment\nA: 1\r\n# inner\nB:2  \n \t \nC: 3  \n x \n y\t\n\n\n";
        let v = parse_stanzas(text).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].get("a"), Some("1"));
        assert_eq!(v[0].get("b"), Some("2"));
        assert_eq!(v[1].get("c"), Some("3  \n x \n y"));
        assert_eq!(render_status(&v), "A: 1\nB: 2\n\nC: 3  \n x \n y\n\n");
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_stanzas("A: 1\nnot a field\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("not a field"), "{e}");
        let e = parse_stanzas(" cont\n").unwrap_err().to_string();
        assert!(e.contains("line 1: continuation line"), "{e}");
        let e = parse_stanzas("A: 1\n# c\n cont\n").unwrap_err().to_string();
        assert!(e.contains("line 3: continuation line"), "{e}");
        let e = parse_stanzas("A: 1\na: 2\n").unwrap_err().to_string();
        assert!(e.contains("line 2: duplicate field \"a\""), "{e}");
        let e = parse_stanzas("A B: 1\n").unwrap_err().to_string();
        assert!(e.contains("invalid field name \"A B\""), "{e}");
        let e = parse_stanzas("-A: 1\n").unwrap_err().to_string();
        assert!(e.contains("must not start with"), "{e}");
        let e = parse_stanzas(": 1\n").unwrap_err().to_string();
        assert!(e.contains("empty field name"), "{e}");
        let e = parse_stanzas("Ä: 1\n").unwrap_err().to_string();
        assert!(e.contains("printable US-ASCII"), "{e}");
    }

    #[test]
    fn set_validates_and_replaces_in_place() {
        let mut s = Stanza::new();
        s.set("Package", "a").unwrap();
        s.set("Version", "1").unwrap();
        s.set("package", "b").unwrap();
        assert_eq!(s.render(), "package: b\nVersion: 1\n");
        assert!(s.set("Bad Name", "x").is_err());
        assert!(s.set("X", " lead").is_err());
        assert!(s.set("X", "trail ").is_err());
        assert!(s.set("X", "trail\n x\t").is_err());
        s.set("X", "inner  \n x").unwrap();
        assert!(s.set("X", "a\nb").is_err());
        assert!(s.set("X", "a\n  ").is_err());
        assert!(s.set("X", "a\n\n b").is_err());
        s.set("X", "").unwrap();
        s.set("Y", "\n line").unwrap();
        assert_eq!(s.render(), "package: b\nVersion: 1\nX:\nY:\n line\n");
        assert_eq!(s.remove("x").as_deref(), Some(""));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn single_stanza_parse_counts() {
        assert!(Stanza::parse("").is_err());
        assert!(Stanza::parse("A: 1\n\nB: 2\n").is_err());
    }
}
