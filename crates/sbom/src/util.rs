//! Small helpers shared by the writers and the parser.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::ops::Range;

use kiln_oci::time::{civil_from_days, days_from_civil, days_in_month};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    // No early exit: the check vectorises, which matters for 10^5 hashes.
    s.len() == len
        && s.bytes().fold(true, |ok, b| {
            ok & ((b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6))
        })
}

/// Strings per batch for [`touch_ahead`].
pub(crate) const TOUCH_BATCH: usize = 16;

/// Memory-level parallelism for loops over many small heap strings: at
/// every `TOUCH_BATCH`-th index `i`, reads the first and last byte of each
/// string of the items in the batch after the next, so the cache misses of
/// a whole batch overlap instead of stalling the loop one after the other.
/// Only reads; the result is ignored.
#[inline]
pub(crate) fn touch_ahead<'a, T: 'a, const N: usize>(
    items: &'a [T],
    i: usize,
    strings: impl Fn(&'a T) -> [Option<&'a str>; N],
) {
    if !i.is_multiple_of(TOUCH_BATCH) {
        return;
    }
    let batch = items
        .get(i + TOUCH_BATCH..)
        .unwrap_or_default()
        .iter()
        .take(TOUCH_BATCH);
    let mut acc = 0u8;
    for item in batch {
        for s in strings(item).into_iter().flatten() {
            let b = s.as_bytes();
            acc ^= b.first().copied().unwrap_or(0) ^ b.last().copied().unwrap_or(0);
        }
    }
    std::hint::black_box(acc);
}

/// `sha256:<64 lowercase hex>`.
pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

pub(crate) fn sha256_bytes(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// An absolute, normalised path: `/`, or `/` followed by non-empty components
/// separated by single slashes, none of them `.` or `..`, no NUL bytes.
pub(crate) fn check_abs_path(p: &str) -> Result<(), &'static str> {
    let b = p.as_bytes();
    if let ([b'/', rest @ ..], Some(&last)) = (b, b.last())
        && (rest.is_empty() || last != b'/')
        && last != 0
    {
        // One branch-free pass: without a NUL, `//` or `/.` a path that
        // starts and does not end with `/` is fine; otherwise look closer.
        let suspicious = b.iter().zip(rest).fold(false, |acc, (&x, &y)| {
            acc | (x == 0) | ((x == b'/') & ((y == b'/') | (y == b'.')))
        });
        if !suspicious {
            return Ok(());
        }
    }
    check_abs_path_in_detail(p)
}

/// [`check_abs_path`], component by component, naming the first problem.
fn check_abs_path_in_detail(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("path is empty");
    }
    if !p.starts_with('/') {
        return Err("path must be absolute (start with /)");
    }
    if p.contains('\0') {
        return Err("path contains a NUL byte");
    }
    if p == "/" {
        return Ok(());
    }
    if p.ends_with('/') {
        return Err("path must not end with /");
    }
    // The components after the leading `/`, in order.
    let mut rest = p.as_bytes().get(1..).unwrap_or_default();
    loop {
        let end = rest.iter().position(|&b| b == b'/');
        let component = rest.get(..end.unwrap_or(rest.len())).unwrap_or_default();
        match component {
            [] => return Err("path contains an empty component (//)"),
            [b'.'] | [b'.', b'.'] => return Err("path contains a . or .. component"),
            _ => {}
        }
        match end {
            Some(i) => rest = rest.get(i + 1..).unwrap_or_default(),
            None => return Ok(()),
        }
    }
}

/// The parent directory of a normalised absolute path other than `/`.
pub(crate) fn parent(p: &str) -> Option<&str> {
    if p == "/" {
        return None;
    }
    match p.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&p[..i]),
        None => None,
    }
}

/// Parses an RFC 3339 timestamp and renders it in UTC as
/// `YYYY-MM-DDThh:mm:ssZ`, the form SPDX requires (fractional seconds are
/// dropped). `None` when it is not RFC 3339.
pub(crate) fn normalize_created(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.iter().all(u8::is_ascii_digit) {
            Some(
                digits
                    .iter()
                    .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
            )
        } else {
            None
        }
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_seconds = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let oh = i64::from(h1 - b'0') * 10 + i64::from(h2 - b'0');
            let om = i64::from(m1 - b'0') * 10 + i64::from(m2 - b'0');
            if oh > 23 || om > 59 {
                return None;
            }
            let magnitude = oh * 3600 + om * 60;
            if *sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };
    // A leap second stays :60 only when no offset shifts it.
    let leap = second == 60;
    let seconds = days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + minute * 60
        + if leap { 59 } else { second }
        - offset_seconds;
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    let sec = if leap && offset_seconds == 0 {
        60
    } else {
        rem % 60
    };
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{sec:02}Z",
        rem / 3600,
        (rem % 3600) / 60
    ))
}

/// The creation time as SPDX and CycloneDX want it; an unparseable value is
/// passed through unchanged so the validators flag it rather than kiln
/// silently inventing a time.
pub(crate) fn created_utc(s: &str) -> String {
    normalize_created(s).unwrap_or_else(|| s.to_string())
}

/// A conservative `http(s)` URL check: accepted URLs pass both the SPDX
/// tools' URL pattern and the JSON-schema `iri-reference` format.
pub(crate) fn is_plain_web_url(url: &str) -> bool {
    let rest = match url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    {
        Some(r) => r,
        None => return false,
    };
    // Printable ASCII only, none of the characters URIs never contain raw.
    if !rest.bytes().all(|b| {
        b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
    }) {
        return false;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let tail = &rest[end..];
    // A '%' must start a percent-escape.
    let tb = tail.as_bytes();
    for (i, &b) in tb.iter().enumerate() {
        if b == b'%'
            && !(tb.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && tb.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return false;
        }
    }
    if tail.matches('#').count() > 1 {
        return false;
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
            && !l.contains("--")
    };
    if !labels.iter().all(|l| label_ok(l)) {
        return false;
    }
    labels
        .last()
        .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Characters SPDX allows in an SPDXID after `SPDXRef-`: `[A-Za-z0-9.-]`.
/// Everything else becomes `-`; runs of `-` collapse.
pub(crate) fn spdx_id_fragment(s: &str, max_len: usize) -> String {
    let mut out = Vec::with_capacity(s.len().min(max_len));
    let range = push_spdx_id_fragment(&mut out, s, max_len);
    out.get(range)
        .map(|b| b.iter().copied().map(char::from).collect())
        .unwrap_or_else(|| "x".to_string())
}

/// Appends the SPDXID fragment of `s` (see [`spdx_id_fragment`]), ASCII,
/// to `out` and returns where it is. (A leading `-` may be left in `out`
/// before the returned range.)
pub(crate) fn push_spdx_id_fragment(out: &mut Vec<u8>, s: &str, max_len: usize) -> Range<usize> {
    const DASH: u8 = b'-';
    /// Each byte as it appears in a fragment.
    static MAP: [u8; 256] = {
        let mut map = [DASH; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            if c.is_ascii_alphanumeric() || c == b'.' {
                map[b] = c;
            }
            b += 1;
        }
        map
    };
    /// Fragments up to this long are built in a stack buffer.
    const FAST_MAX: usize = 128;
    let start = out.len();
    // Byte-wise: every byte of a non-ASCII character maps to `-`, and the
    // run collapses to one `-`, exactly as mapping the character would.
    if max_len <= FAST_MAX {
        // Branch-free: every mapped byte is stored, but the position only
        // advances when it does not extend a run of `-`.
        let mut buf = [0u8; FAST_MAX];
        let mut len = 0;
        let mut last_dash = false;
        for &b in s.as_bytes() {
            let c = MAP[usize::from(b)];
            let dash = c == DASH;
            buf[len % FAST_MAX] = c;
            len += usize::from(!(dash & last_dash));
            last_dash = dash;
            if len >= max_len {
                break;
            }
        }
        out.extend_from_slice(buf.get(..len).unwrap_or_default());
    } else {
        let mut len = 0;
        let mut last = 0u8;
        for &b in s.as_bytes() {
            let c = MAP[usize::from(b)];
            if c == DASH && last == DASH {
                continue;
            }
            out.push(c);
            last = c;
            len += 1;
            if len >= max_len {
                break;
            }
        }
    }
    let mut from = start;
    let mut to = out.len();
    // Runs are collapsed, so at most one `-` to trim at either end.
    if out.get(from) == Some(&DASH) {
        from += 1;
    }
    if to > from && out.get(to - 1) == Some(&DASH) {
        to -= 1;
        out.truncate(to);
    }
    if to <= from {
        out.truncate(start);
        out.push(b'x');
        return start..start + 1;
    }
    from..to
}

/// A fast hasher for byte-string keys (eight bytes per 64x64->128-bit
/// multiply, folded), randomly seeded per map like the standard one. The
/// sets it backs are only queried, never iterated, so the seed cannot affect
/// any output.
#[derive(Clone)]
pub(crate) struct FastHash {
    seed: u64,
}

impl FastHash {
    pub fn new() -> FastHash {
        FastHash {
            seed: RandomState::new().hash_one(0x6b69_6c6e_u64),
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { state: self.seed }
    }
}

pub(crate) struct FastHasher {
    state: u64,
}

const MUL_A: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL_B: u64 = 0xa076_1d64_78bd_642f;

#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    // Low and high halves of the product, folded together.
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.state;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            state = fold_mul(state ^ u64::from_le_bytes(word), MUL_A);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Fixed-size (overlapping) reads of the tail; the length is
            // hashed separately, so this stays a function of the bytes.
            let word = if let Some(last) = bytes.last_chunk::<8>() {
                u64::from_le_bytes(*last)
            } else if let (Some(first), Some(last)) =
                (rest.first_chunk::<4>(), rest.last_chunk::<4>())
            {
                u64::from(u32::from_le_bytes(*first)) | (u64::from(u32::from_le_bytes(*last)) << 32)
            } else {
                let byte = |i: usize| u64::from(rest.get(i).copied().unwrap_or(0));
                byte(0) | (byte(rest.len() / 2) << 8) | (byte(rest.len() - 1) << 16)
            };
            state = fold_mul(state ^ word, MUL_B);
        }
        self.state = state;
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.state = fold_mul(self.state ^ n, MUL_A);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.state, MUL_B)
    }
}

/// Hands out unique names in order: a wanted name itself while it is free,
/// otherwise the first free `<name><sep>2`, `<name><sep>3`, ... Returns the
/// suffix number, 0 for none.
///
/// Equivalent to checking each candidate against the set of names handed
/// out so far, but linear: the next suffix to try is remembered per name
/// (every smaller one was taken when it was last handed out, and names are
/// never released).
pub(crate) struct UniqueNames<'a> {
    taken: HashSet<Cow<'a, [u8]>, FastHash>,
    next: HashMap<&'a [u8], u64, FastHash>,
    sep: u8,
}

impl<'a> UniqueNames<'a> {
    pub fn with_capacity(capacity: usize, sep: u8) -> UniqueNames<'a> {
        UniqueNames {
            taken: HashSet::with_capacity_and_hasher(capacity, FastHash::new()),
            next: HashMap::with_hasher(FastHash::new()),
            sep,
        }
    }

    pub fn allocate(&mut self, wanted: &'a [u8]) -> u64 {
        if self.taken.insert(Cow::Borrowed(wanted)) {
            return 0;
        }
        let mut n = self.next.get(wanted).copied().unwrap_or(2);
        let mut candidate = Vec::with_capacity(wanted.len() + 4);
        loop {
            candidate.clear();
            candidate.extend_from_slice(wanted);
            candidate.push(self.sep);
            crate::json::write_uint(&mut candidate, n);
            if !self.taken.contains(candidate.as_slice()) {
                break;
            }
            n += 1;
        }
        self.taken.insert(Cow::Owned(candidate));
        self.next.insert(wanted, n + 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_normalisation() {
        assert_eq!(
            normalize_created("1970-01-01T00:00:00Z").as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
        assert_eq!(
            normalize_created("2024-02-29t23:59:59.123456z").as_deref(),
            Some("2024-02-29T23:59:59Z")
        );
        assert_eq!(
            normalize_created("2024-03-01T01:30:00+02:00").as_deref(),
            Some("2024-02-29T23:30:00Z")
        );
        assert_eq!(
            normalize_created("2023-12-31T23:30:00-01:00").as_deref(),
            Some("2024-01-01T00:30:00Z")
        );
        assert_eq!(
            normalize_created("2016-12-31T23:59:60Z").as_deref(),
            Some("2016-12-31T23:59:60Z")
        );
        for bad in [
            "",
            "1970-01-01",
            "1970-01-01 00:00:00Z",
            "1970-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+0100",
            "1970-01-01T00:00:00Zjunk",
            "１970-01-01T00:00:00Z",
        ] {
            assert_eq!(normalize_created(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_abs_path("/").is_ok());
        assert!(check_abs_path("/a/b c/é").is_ok());
        for bad in ["", "a", "/a/", "//a", "/a//b", "/./a", "/a/..", "/a\0b"] {
            assert!(check_abs_path(bad).is_err(), "{bad:?}");
        }
        // Same verdicts (and messages) as splitting into components.
        let reference = |p: &str| -> Result<(), &'static str> {
            if p.is_empty() {
                return Err("path is empty");
            }
            if !p.starts_with('/') {
                return Err("path must be absolute (start with /)");
            }
            if p.contains('\0') {
                return Err("path contains a NUL byte");
            }
            if p == "/" {
                return Ok(());
            }
            if p.ends_with('/') {
                return Err("path must not end with /");
            }
            for component in p[1..].split('/') {
                match component {
                    "" => return Err("path contains an empty component (//)"),
                    "." | ".." => return Err("path contains a . or .. component"),
                    _ => {}
                }
            }
            Ok(())
        };
        let pieces = ["/", ".", "..", "a", ".a", "a.", "...", "\0", "é"];
        let mut inputs = vec![String::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for s in &inputs {
                for p in pieces {
                    next.push(format!("{s}{p}"));
                }
            }
            inputs.extend(next);
        }
        for p in &inputs {
            assert_eq!(check_abs_path(p), reference(p), "{p:?}");
        }
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/"), None);
    }

    #[test]
    fn urls() {
        for good in [
            "https://busybox.net/",
            "http://www.gnu.org/software/coreutils",
            "https://github.com/tukaani-project/xz?x=1#frag",
            "https://example.org:8443/a%20b",
        ] {
            assert!(is_plain_web_url(good), "{good}");
        }
        for bad in [
            "ftp://example.org",
            "https://localhost/",
            "https://exa mple.org",
            "https://example.org/a b",
            "https://ex_ample.org/",
            "https://example.123/",
            "https://example.org/%zz",
            "https://exämple.org/",
            "<https://example.org>",
            "https://example.org:/",
        ] {
            assert!(!is_plain_web_url(bad), "{bad}");
        }
    }

    /// The original, char-based definition.
    fn reference_fragment(s: &str, max_len: usize) -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            };
            if c == '-' && out.ends_with('-') {
                continue;
            }
            out.push(c);
            if out.len() >= max_len {
                break;
            }
        }
        let trimmed = out.trim_matches('-');
        if trimmed.is_empty() {
            "x".to_string()
        } else {
            trimmed.to_string()
        }
    }

    #[test]
    fn id_fragments_match_reference() {
        let pieces = ["a", "/", "é", "-", ".", "🚀", " ", "Z9", "--", "\u{1}", "ä"];
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &inputs {
                for p in pieces {
                    next.push(format!("{s}{p}"));
                }
            }
            inputs.extend(next);
            inputs.dedup();
        }
        inputs.push(format!("/srv/{}", "ä".repeat(120)));
        inputs.push(format!("/{}/b", "a".repeat(95)));
        inputs.push(format!("/{}-", "a".repeat(94)));
        for s in &inputs {
            for max in [1, 2, 3, 5, 96, 128, 129, 200] {
                assert_eq!(
                    spdx_id_fragment(s, max),
                    reference_fragment(s, max),
                    "{s:?} {max}"
                );
                // Appending after other content gives the same fragment.
                let mut arena = b"prefix-".to_vec();
                let range = push_spdx_id_fragment(&mut arena, s, max);
                assert_eq!(
                    arena
                        .get(range)
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    Some(reference_fragment(s, max))
                );
            }
        }
    }

    #[test]
    fn unique_names_match_reference() {
        let wanted: Vec<&[u8]> = [
            "a", "a", "a-2", "a", "b", "a-3", "a-2", "a", "b", "b-2", "b",
        ]
        .iter()
        .map(|s| s.as_bytes())
        .collect();
        let mut names = UniqueNames::with_capacity(0, b'-');
        let mut taken = std::collections::BTreeSet::new();
        for w in wanted {
            let n = names.allocate(w);
            // The original: try the name, then name-2, name-3, ...
            let w = String::from_utf8_lossy(w).into_owned();
            let mut id = w.clone();
            let mut k = 2;
            while taken.contains(&id) {
                id = format!("{w}-{k}");
                k += 1;
            }
            taken.insert(id.clone());
            let got = if n == 0 {
                w.clone()
            } else {
                format!("{w}-{n}")
            };
            assert_eq!(got, id);
        }
    }

    #[test]
    fn lower_hex() {
        assert!(is_lower_hex("0123456789abcdef", 16));
        assert!(!is_lower_hex("0123456789abcdeF", 16));
        assert!(!is_lower_hex("0123456789abcdeg", 16));
        assert!(!is_lower_hex("0123456789abcde/", 16));
        assert!(!is_lower_hex("0123456789abcde:", 16));
        assert!(!is_lower_hex("0123456789abcde`", 16));
        assert!(!is_lower_hex("0123456789abcde", 16));
        assert!(!is_lower_hex("0123456789abcdé", 16));
    }

    #[test]
    fn id_fragments() {
        assert_eq!(spdx_id_fragment("/usr/bin/busybox", 80), "usr-bin-busybox");
        assert_eq!(spdx_id_fragment("1:1.35.0-4+b3", 80), "1-1.35.0-4-b3");
        assert_eq!(spdx_id_fragment("/////", 80), "x");
        assert_eq!(spdx_id_fragment("/caf\u{e9} au lait", 80), "caf-au-lait");
    }
}
