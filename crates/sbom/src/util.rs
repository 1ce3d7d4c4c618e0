//! Small helpers shared by the writers and the parser.

use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

/// Pretty JSON (2-space indent, struct field order) plus a trailing newline.
pub(crate) fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    // Serialising derive(Serialize) structs made of strings, integers, bools,
    // options and vectors into a Vec cannot fail: there are no maps with
    // non-string keys and no fallible writer. This is not input-dependent.
    serde_json::to_writer_pretty(&mut out, value)
        .expect("serialising plain structs into memory is infallible");
    out.push(b'\n');
    out
}

pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

fn is_leap_year(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    let mut out = String::with_capacity(s.len().min(max_len));
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

    #[test]
    fn id_fragments() {
        assert_eq!(spdx_id_fragment("/usr/bin/busybox", 80), "usr-bin-busybox");
        assert_eq!(spdx_id_fragment("1:1.35.0-4+b3", 80), "1-1.35.0-4-b3");
        assert_eq!(spdx_id_fragment("/////", 80), "x");
        assert_eq!(spdx_id_fragment("/caf\u{e9} au lait", 80), "caf-au-lait");
    }
}
