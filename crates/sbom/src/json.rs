//! A small streaming writer for pretty JSON.
//!
//! It produces exactly what `serde_json::to_writer_pretty` produces for the
//! same sequence of keys and values (2-space indent, `"key": value`, empty
//! arrays and objects as `[]` and `{}`, serde_json's string escaping), but
//! writes straight into one pre-sized `Vec<u8>` instead of going through
//! `Serialize` impls, which matters for documents with ~10^5 objects.
//!
//! The caller is responsible for the structure: keys only inside objects,
//! every `begin_*` matched by its `end_*`. Keys are `&'static str` literals
//! that need no escaping.

/// Separators and indentation are copied as a fixed-size chunk of
/// `SEPARATOR` (no `memcpy` call) and then cut to length; this many bytes.
const CHUNK: usize = 32;
/// `,` + newline + spaces: a separator with its indentation is a prefix of
/// it, or of it without the `,`.
const SEPARATOR: &[u8; CHUNK + 1] = b",\n                               ";
/// The deepest nesting whose separator fits in one chunk.
const MAX_FAST_DEPTH: usize = (CHUNK - 2) / 2;

/// serde_json's escape table: 0 = copy the byte, otherwise the character
/// after the backslash (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

pub(crate) struct JsonWriter {
    out: Vec<u8>,
    depth: usize,
    /// No element written yet in the innermost open container.
    first: bool,
}

impl JsonWriter {
    pub fn with_capacity(capacity: usize) -> JsonWriter {
        JsonWriter {
            out: Vec::with_capacity(capacity),
            depth: 0,
            first: true,
        }
    }

    /// Nesting depth: 1 inside the top-level object, 2 inside an array
    /// that is a field of it, ...
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The document plus a trailing newline.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'\n');
        self.out
    }

    /// Newline and indentation (after a `,` unless `first`).
    #[inline]
    fn newline(&mut self, first: bool) {
        let start = usize::from(first);
        if self.depth <= MAX_FAST_DEPTH {
            let len = self.out.len() + 2 + self.depth * 2 - start;
            let mut chunk = [0u8; CHUNK];
            chunk.copy_from_slice(&SEPARATOR[start..start + CHUNK]);
            self.out.extend_from_slice(&chunk);
            self.out.truncate(len);
        } else {
            self.out.extend_from_slice(&SEPARATOR[start..2]);
            for _ in 0..self.depth {
                self.out.extend_from_slice(b"  ");
            }
        }
    }

    /// Separator and indentation before an object key or array element.
    #[inline]
    fn separator(&mut self) {
        self.newline(self.first);
        self.first = false;
    }

    #[inline]
    pub fn begin_object(&mut self) {
        self.out.push(b'{');
        self.depth += 1;
        self.first = true;
    }

    #[inline]
    pub fn end_object(&mut self) {
        self.close(b'}');
    }

    #[inline]
    pub fn begin_array(&mut self) {
        self.out.push(b'[');
        self.depth += 1;
        self.first = true;
    }

    #[inline]
    pub fn end_array(&mut self) {
        self.close(b']');
    }

    #[inline]
    fn close(&mut self, bracket: u8) {
        self.depth = self.depth.saturating_sub(1);
        if !self.first {
            self.newline(true);
        }
        self.out.push(bracket);
        // The enclosing container now holds (at least) this value.
        self.first = false;
    }

    /// `"key": ` inside an object; the value must follow.
    #[inline]
    pub fn key(&mut self, key: &'static str) {
        self.separator();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\": ");
    }

    /// Starts the next element of an array; the value must follow.
    #[inline]
    pub fn element(&mut self) {
        self.separator();
    }

    /// A string value.
    #[inline]
    pub fn string(&mut self, s: &str) {
        self.out.push(b'"');
        self.string_part(s);
        self.out.push(b'"');
    }

    /// Opens a string value made of several parts (see `string_part`).
    #[inline]
    pub fn open_string(&mut self) {
        self.out.push(b'"');
    }

    /// Closes a string opened with `open_string`.
    #[inline]
    pub fn close_string(&mut self) {
        self.out.push(b'"');
    }

    /// Appends `s`, escaped, to the string value being written.
    #[inline]
    pub fn string_part(&mut self, s: &str) {
        let bytes = s.as_bytes();
        if needs_escape(bytes) {
            self.escaped_part(bytes);
        } else {
            self.out.extend_from_slice(bytes);
        }
    }

    fn escaped_part(&mut self, bytes: &[u8]) {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = ESCAPE[usize::from(b)];
            if escape == 0 {
                continue;
            }
            self.out.extend_from_slice(&bytes[start..i]);
            self.write_escape(b, escape);
            start = i + 1;
        }
        self.out.extend_from_slice(&bytes[start..]);
    }

    #[cold]
    fn write_escape(&mut self, byte: u8, escape: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        if escape == b'u' {
            self.out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            self.out.extend_from_slice(&[b'\\', escape]);
        }
    }

    /// Appends bytes known to need no escaping (ASCII letters, digits and
    /// punctuation other than `"` and `\`) to the string being written.
    #[inline]
    pub fn raw_part(&mut self, s: &str) {
        self.raw_bytes_part(s.as_bytes());
    }

    /// `raw_part` for bytes.
    #[inline]
    pub fn raw_bytes_part(&mut self, bytes: &[u8]) {
        debug_assert!(!needs_escape(bytes));
        self.out.extend_from_slice(bytes);
    }

    /// An unsigned integer value.
    #[inline]
    pub fn uint(&mut self, n: u64) {
        write_uint(&mut self.out, n);
    }

    /// `true` or `false`.
    #[inline]
    pub fn bool(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// `"key": "value"`.
    #[inline]
    pub fn field_str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        self.string(value);
    }

    /// `"key": "value"` when `value` is `Some`.
    #[inline]
    pub fn field_opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.field_str(key, v);
        }
    }

    /// Bytes appended verbatim to the document.
    #[inline]
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// Whether any byte of `bytes` must be escaped in a JSON string: a control
/// character, `"` or `\`. Checks eight bytes at a time.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact "some byte is zero" / "some byte is below 0x20" tests (the
    // classic haszero/hasless bit tricks; bytes >= 0x80 never match).
    let word = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        (control | quote | backslash) & HIGH != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        if word(u64::from_le_bytes(b)) {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| ESCAPE[usize::from(b)] != 0)
}

/// Decimal digits of `n`, as `itoa` (and so serde_json) writes them.
pub(crate) fn write_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pretty<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
        out.push(b'\n');
        out
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut samples: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b"))
            .collect();
        samples.push("quote\"back\\slash\u{1}\u{7f} é 🚀 \t\n\r\u{8}\u{c}".into());
        // Every byte value that can start a character, at every position of
        // a string long enough for the eight-byte scan.
        for c in (0u32..0x100).filter_map(char::from_u32) {
            for at in 0..20 {
                let mut s: String = "0123456789abcdefghij".chars().take(at).collect();
                s.push(c);
                s.push_str("é~ \u{7f}xyz0123456789");
                samples.push(s);
            }
        }
        samples.push(String::new());
        let mut w = JsonWriter::with_capacity(0);
        w.begin_array();
        for s in &samples {
            w.element();
            w.string(s);
        }
        w.end_array();
        assert_eq!(w.finish(), pretty(&samples));
    }

    #[test]
    fn escape_scan_is_exact() {
        for fill in [b'a', b' ', 0x7f, 0x80, 0xc3, 0xff] {
            for len in 1..20 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut v = vec![fill; len];
                        v[at] = b;
                        let expected = v.iter().any(|&x| ESCAPE[usize::from(x)] != 0);
                        assert_eq!(needs_escape(&v), expected, "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn structure_matches_serde_json_pretty() {
        let value = serde_json::json!({
            "a": [],
            "b": {},
            "c": [1u64, {"d": true, "e": [false]}, u64::MAX, 0u64],
            "f": {"g": {"h": "i"}},
        });
        let mut w = JsonWriter::with_capacity(0);
        w.begin_object();
        w.key("a");
        w.begin_array();
        w.end_array();
        w.key("b");
        w.begin_object();
        w.end_object();
        w.key("c");
        w.begin_array();
        w.element();
        w.uint(1);
        w.element();
        w.begin_object();
        w.key("d");
        w.bool(true);
        w.key("e");
        w.begin_array();
        w.element();
        w.bool(false);
        w.end_array();
        w.end_object();
        w.element();
        w.uint(u64::MAX);
        w.element();
        w.uint(0);
        w.end_array();
        w.key("f");
        w.begin_object();
        w.key("g");
        w.begin_object();
        w.field_str("h", "i");
        w.end_object();
        w.end_object();
        w.end_object();
        assert_eq!(w.finish(), pretty(&value));
    }
}
