//! Dates and RFC 3339 timestamps without a date library: the workspace's one
//! civil-date implementation (proleptic Gregorian, Howard Hinnant's algorithms),
//! Unix seconds to and from `YYYY-MM-DDThh:mm:ssZ`.

use std::time::{SystemTime, UNIX_EPOCH};

/// `1970-01-01T00:00:00Z` style UTC timestamp.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `2026-11-22T06:00:00.123Z`: a UTC timestamp with milliseconds.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let s = rfc3339(d.as_secs());
    format!("{}.{:03}Z", &s[..s.len() - 1], d.subsec_millis())
}

/// Unix seconds of a UTC `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff]Z`
/// (the forms kiln writes); `None` for anything else or an impossible date.
pub fn parse_utc(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (mut hh, mut mm, mut ss) = (0, 0, 0);
    if b.len() > 10 {
        if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || *b.last()? != b'Z' {
            return None;
        }
        (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let frac = &b[19..b.len() - 1];
        let frac_ok = frac.is_empty()
            || (frac.len() > 1 && frac[0] == b'.' && frac[1..].iter().all(u8::is_ascii_digit));
        if hh > 23 || mm > 59 || ss > 59 || !frac_ok {
            return None;
        }
    }
    let days = days_from_civil(y, m, d);
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Is `y` a leap year of the proleptic Gregorian calendar?
pub fn is_leap_year(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in month `m` (1-12) of year `y`; February of a leap year has 29.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of the date `y-m-d` (Howard Hinnant's days-from-civil;
/// `m` is 1-12, dates before the epoch are negative).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(year, month 1-12, day 1-31)` of a day count since 1970-01-01
/// (Howard Hinnant's civil-from-days; the inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn parse_round_trips() {
        for s in [0u64, 951_782_400, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse_utc(&rfc3339(s)), Some(s));
        }
        assert_eq!(parse_utc("2026-11-01"), Some(1_793_491_200));
        assert_eq!(
            parse_utc("2026-11-22T06:00:00.123Z"),
            parse_utc("2026-11-22T06:00:00Z")
        );
        for bad in [
            "",
            "2026-13-01",
            "2026-02-29",
            "2026-11-01T25:00:00Z",
            "2026-11-01 ",
            "26-11-01",
            "2026-11-01T00:00:00",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_042);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.042Z");
    }

    #[test]
    fn calendar_helpers() {
        assert!(is_leap_year(2000) && is_leap_year(2024));
        assert!(!is_leap_year(1900) && !is_leap_year(2026));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        for z in [-719_468i64, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, i64::from(m), i64::from(d)), z);
        }
    }

    #[test]
    fn agrees_with_gnu_date() {
        for s in [86_399u64, 1_234_567_890, 1_798_000_000] {
            let o = std::process::Command::new("date")
                .args(["-u", "-d", &format!("@{s}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), rfc3339(s));
        }
    }
}
