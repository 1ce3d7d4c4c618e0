//! The `Release` file of a suite (the text inside `InRelease`): which
//! indexes exist with their SHA256 and size, whether they may be fetched by
//! hash, the suite's validity window (`Date`, `Valid-Until`) and its names.
//! Only SHA256 is trusted; MD5Sum and SHA1 lists are ignored, as apt does.

use std::collections::BTreeMap;

use kiln_oci::Digest;
use kiln_oci::time::days_from_civil;

use crate::error::Deb822Error;
use kiln_solve::deb822;

/// An index file listed in a Release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub sha256: Digest,
    pub size: u64,
}

/// A parsed Release.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Release {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub codename: Option<String>,
    pub version: Option<String>,
    /// `Date`, as Unix seconds.
    pub date: Option<u64>,
    /// `Valid-Until`, as Unix seconds.
    pub valid_until: Option<u64>,
    /// `Acquire-By-Hash: yes`.
    pub acquire_by_hash: bool,
    pub architectures: Vec<String>,
    pub components: Vec<String>,
    /// `SHA256`: path relative to `dists/<suite>/` → digest and size.
    pub sha256: BTreeMap<String, IndexEntry>,
}

impl Release {
    /// Parse a Release text (already verified, with LF line ends).
    pub fn parse(text: &str) -> Result<Release, Deb822Error> {
        let paras = deb822::parse(text)?;
        let p = match paras.as_slice() {
            [p] => p,
            [] => {
                return Err(Deb822Error {
                    line: 1,
                    reason: "empty Release".into(),
                });
            }
            [_, second, ..] => {
                return Err(Deb822Error {
                    line: second.line,
                    reason: "a Release has exactly one paragraph".into(),
                });
            }
        };
        let s = |n: &str| p.get(n).map(str::to_string);
        let date_of = |n: &str| -> Result<Option<u64>, Deb822Error> {
            match p.get(n) {
                None => Ok(None),
                Some(v) => parse_date(v).map(Some).ok_or_else(|| Deb822Error {
                    line: field_line(text, p.line, n),
                    reason: format!("{n}: {v:?} is not an RFC 2822 date"),
                }),
            }
        };
        let words = |n: &str| -> Vec<String> {
            p.get(n)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let mut sha256 = BTreeMap::new();
        if let Some(f) = p.field("SHA256") {
            let base = field_line(text, p.line, "SHA256");
            for (i, line) in f.lines().enumerate() {
                if line.is_empty() {
                    continue;
                }
                let bad = |reason: String| Deb822Error {
                    line: base + i,
                    reason,
                };
                let mut it = line.split_whitespace();
                let (Some(h), Some(sz), Some(path), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(bad(format!(
                        "SHA256 entry {line:?} is not `hash size path`"
                    )));
                };
                let sha = Digest::from_hex(h).map_err(|e| bad(format!("SHA256 entry: {e}")))?;
                let size: u64 = sz
                    .parse()
                    .map_err(|_| bad(format!("SHA256 entry: size {sz:?} is not a number")))?;
                if sha256
                    .insert(path.to_string(), IndexEntry { sha256: sha, size })
                    .is_some()
                {
                    return Err(bad(format!("SHA256 lists {path} twice")));
                }
            }
        }
        Ok(Release {
            origin: s("Origin"),
            label: s("Label"),
            suite: s("Suite"),
            codename: s("Codename"),
            version: s("Version"),
            date: date_of("Date")?,
            valid_until: date_of("Valid-Until")?,
            acquire_by_hash: p
                .get("Acquire-By-Hash")
                .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            architectures: words("Architectures"),
            components: words("Components"),
            sha256,
        })
    }
}

/// The line a field starts on (for error messages), searching from the
/// paragraph's first line.
fn field_line(text: &str, from: usize, name: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .map_or(from, |(i, _)| i + 1)
}

/// Parse an RFC 2822 date as Release files write it, e.g.
/// `Sat, 11 Jul 2026 10:16:37 UTC` (zone `UTC`, `GMT`, `Z` or `±hhmm`; the
/// weekday is optional and not checked). Unix seconds, or `None`.
pub fn parse_date(s: &str) -> Option<u64> {
    let mut s = s.trim();
    if let Some((_, rest)) = s.split_once(',') {
        s = rest.trim();
    }
    let mut it = s.split_whitespace();
    let day: i64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    let zone = it.next().unwrap_or("UTC");
    if it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as i64 + 1;
    if !(1970..=9999).contains(&year) || day < 1 || day > kiln_oci::time::days_in_month(year, m) {
        return None;
    }
    let mut t = time.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next().map_or(Some(0), |x| x.parse().ok())?;
    if t.next().is_some()
        || !(0..24).contains(&hh)
        || !(0..60).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    let offset = match zone {
        "UTC" | "GMT" | "Z" | "UT" => 0,
        z => {
            let (sign, digits) = match z.as_bytes().first()? {
                b'+' => (1, &z[1..]),
                b'-' => (-1, &z[1..]),
                _ => return None,
            };
            if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let h: i64 = digits[..2].parse().ok()?;
            let mi: i64 = digits[2..].parse().ok()?;
            sign * (h * 3600 + mi * 60)
        }
    };
    let secs = days_from_civil(year, m, day) * 86_400 + hh * 3600 + mm * 60 + ss - offset;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "Origin: Debian
Label: Debian
Suite: oldstable
Codename: bookworm
Date: Sat, 11 Jul 2026 10:16:37 UTC
Valid-Until: Sat, 18 Jul 2026 10:16:37 +0200
Acquire-By-Hash: yes
Architectures: all amd64 arm64
Components: main contrib
MD5Sum:
 0ed6d4c8891eb86358b94bb35d9e4da4  1484322 contrib/Contents-all
SHA256:
 37ce44ed35c564ad121583cb41ed7da6341e5caf210365502da07a294487c836   386328 main/binary-amd64/Packages.xz
 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855        0 contrib/Contents-amd64
";

    #[test]
    fn parses_a_debian_release() {
        let r = Release::parse(SAMPLE).unwrap();
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert_eq!(r.suite.as_deref(), Some("oldstable"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.architectures, ["all", "amd64", "arm64"]);
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.sha256.len(), 2);
        let e = r.sha256["main/binary-amd64/Packages.xz"];
        assert_eq!(e.size, 386328);
        assert_eq!(r.date, Some(1_783_764_997));
        assert_eq!(r.valid_until.unwrap(), r.date.unwrap() + 7 * 86_400 - 7200);
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_date("Thu, 01 Jan 1970 01:00:00 +0100"), Some(0));
        assert_eq!(parse_date("1 Jan 1970 00:00:10 GMT"), Some(10));
        assert_eq!(
            parse_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        for bad in [
            "",
            "Sat, 32 Jul 2026 10:16:37 UTC",
            "Sat, 11 Foo 2026 10:16:37 UTC",
            "11 Jul 2026 25:00:00 UTC",
            "11 Jul 2026 10:00:00 CEST",
            "11 Jul 2026 10:00:00 UTC x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "SHA256:\n xyz 1 a\n",
            "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 x a\n",
            "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 1\n",
            "SHA256:\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 1 a\n e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 1 a\n",
            "Date: yesterday\n",
            "A: 1\n\nB: 2\n",
            "",
        ] {
            assert!(Release::parse(bad).is_err(), "{bad}");
        }
        let e = Release::parse("Origin: x\nSHA256:\n e3b0 1 a\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = Release::parse(&s);
            let _ = parse_date(&s);
        }

        #[test]
        fn date_round_trip(secs in 0u64..253_402_300_799) {
            let (y, m, d) = kiln_oci::time::civil_from_days((secs / 86_400) as i64);
            const MONTHS: [&str; 12] = ["Jan","Feb","Mar","Apr","May","Jun","Jul","Aug","Sep","Oct","Nov","Dec"];
            let rem = secs % 86_400;
            let text = format!("{:02} {} {} {:02}:{:02}:{:02} UTC", d, MONTHS[m as usize - 1], y, rem / 3600, rem / 60 % 60, rem % 60);
            prop_assert_eq!(parse_date(&text), Some(secs));
        }
    }
}
