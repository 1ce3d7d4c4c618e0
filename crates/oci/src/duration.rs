//! Durations written `<digits><unit>` (`500ms`, `5s`, `15m`, `24h`, `7d`, `2w`):
//! the workspace's one duration parser, shared by deploy files, the fleet CLI
//! and `kiln gc`.

use std::time::Duration;

/// Units [`format_duration`] writes, largest first, in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Weeks are read but never written (a week is written as `7d`).
const WEEK_MS: u64 = 7 * 86_400_000;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<digits><unit>` with a known unit.
    #[error(
        "{input:?} is not a duration (expected digits and a unit: \"500ms\", \"5s\", \"15m\", \"24h\", \"7d\")"
    )]
    Malformed {
        /// The rejected text.
        input: String,
    },
    /// More milliseconds than a `u64` holds (about 584 million years).
    #[error("{input:?} is too long a duration")]
    TooLong {
        /// The rejected text.
        input: String,
    },
}

/// Parses `"<digits><unit>"` with unit `ms`, `s`, `m`, `h`, `d` or `w` (e.g. `"500ms"`,
/// `"7d"`). No sign, space, fraction or upper case; at most 20 digits; the total must
/// fit a `u64` of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Malformed { input: s.into() };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() || digits.len() > 20 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = match unit {
        "w" => WEEK_MS,
        _ => UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, ms)| *ms)
            .ok_or_else(bad)?,
    };
    let ms = n
        .checked_mul(per)
        .ok_or_else(|| DurationError::TooLong { input: s.into() })?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration in the largest unit (up to days) that is exact; sub-millisecond
/// parts are dropped. `parse_duration(&format_duration(d)) == d` for every whole number
/// of milliseconds that fits a `u64`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, per) in UNITS {
        let per = u128::from(per);
        if ms.is_multiple_of(per) {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_unit() {
        for (s, ms) in [
            ("0s", 0),
            ("500ms", 500),
            ("5s", 5_000),
            ("30m", 1_800_000),
            ("12h", 43_200_000),
            ("7d", 604_800_000),
            ("2w", 1_209_600_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "5", "s", "d", "-5s", "5 s", " 5s", "5S", "7D", "1.5h", "5sec", "1y", "7 d",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed { .. })),
                "{bad:?}"
            );
        }
        for long in ["99999999999999d", "99999999999999999999d"] {
            assert!(parse_duration(long).is_err(), "{long}");
        }
        assert_eq!(
            parse_duration("99999999999999d").unwrap_err().to_string(),
            "\"99999999999999d\" is too long a duration"
        );
        assert_eq!(
            parse_duration("5sec").unwrap_err().to_string(),
            "\"5sec\" is not a duration (expected digits and a unit: \"500ms\", \"5s\", \"15m\", \"24h\", \"7d\")"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn strings_round_trip(n in 0u64..1_000_000, u in prop::sample::select(vec![
            ("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000),
        ])) {
            let d = parse_duration(&format!("{n}{}", u.0)).unwrap();
            prop_assert_eq!(d, Duration::from_millis(n * u.1));
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn durations_round_trip(ms in 0u64..=u64::MAX) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
