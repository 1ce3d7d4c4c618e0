//! Durations written `<digits><unit>` (`500ms`, `5s`, `15m`, `24h`, `7d`, `2w`):
//! the workspace's one duration parser. Each caller names its [`Grammar`]:
//! which units it accepts and how large a value may be. Deploy files and the
//! fleet CLI use [`Grammar::DEPLOY`] (through [`parse_duration`]); `kiln gc`
//! uses [`Grammar::GC`].

use std::time::Duration;

/// Units [`format_duration`] writes, largest first, in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The units a caller accepts, and its bounds.
#[derive(Clone, Copy, Debug)]
pub struct Grammar {
    /// Unit suffixes and their length in milliseconds.
    units: &'static [(&'static str, u64)],
    /// Most digits before the unit.
    max_digits: usize,
    /// The value must fit a `u64` of this many milliseconds (1: ms, 1000: s).
    base_ms: u64,
}

impl Grammar {
    /// `ms`, `s`, `m`, `h`, `d`; at most 20 digits; a `u64` of milliseconds.
    pub const DEPLOY: Grammar = Grammar {
        units: &UNITS,
        max_digits: 20,
        base_ms: 1,
    };
    /// `s`, `m`, `h`, `d`, `w`; at most 12 digits; a `u64` of seconds.
    pub const GC: Grammar = Grammar {
        units: &[
            ("s", 1_000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
            ("w", 7 * 86_400_000),
        ],
        max_digits: 12,
        base_ms: 1_000,
    };
}

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<digits><unit>` with a unit of the grammar.
    #[error(
        "{input:?} is not a duration (expected digits and a unit: \"500ms\", \"5s\", \"15m\", \"24h\", \"7d\")"
    )]
    Malformed {
        /// The rejected text.
        input: String,
    },
    /// Larger than the grammar allows.
    #[error("{input:?} is too long a duration")]
    TooLong {
        /// The rejected text.
        input: String,
    },
}

/// Parses `"<digits><unit>"` in the deploy grammar ([`Grammar::DEPLOY`]: `ms`, `s`,
/// `m`, `h` or `d`, e.g. `"500ms"`, `"7d"`). No sign, space, fraction or upper case.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_duration_in(s, Grammar::DEPLOY)
}

/// Parses `"<digits><unit>"` with a unit of `grammar`.
pub fn parse_duration_in(s: &str, grammar: Grammar) -> Result<Duration, DurationError> {
    let bad = || DurationError::Malformed { input: s.into() };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() || digits.len() > grammar.max_digits {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = grammar
        .units
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, ms)| *ms)
        .ok_or_else(bad)?;
    let ms = u128::from(n) * u128::from(per);
    if ms / u128::from(grammar.base_ms) > u128::from(u64::MAX) {
        return Err(DurationError::TooLong { input: s.into() });
    }
    let secs = u64::try_from(ms / 1000).map_err(|_| DurationError::TooLong { input: s.into() })?;
    Ok(Duration::new(secs, (ms % 1000) as u32 * 1_000_000))
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
    fn deploy_grammar() {
        for (s, ms) in [
            ("0s", 0),
            ("500ms", 500),
            ("5s", 5_000),
            ("30m", 1_800_000),
            ("12h", 43_200_000),
            ("7d", 604_800_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        for bad in [
            "",
            "5",
            "s",
            "d",
            "-5s",
            "5 s",
            " 5s",
            "5S",
            "7D",
            "1.5h",
            "5sec",
            "1y",
            "7 d",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed { .. })),
                "{bad:?}"
            );
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

    #[test]
    fn gc_grammar() {
        let gc = |s| parse_duration_in(s, Grammar::GC).map(|d| d.as_secs());
        assert_eq!(gc("7d"), Ok(7 * 86_400));
        assert_eq!(gc("12h"), Ok(12 * 3600));
        assert_eq!(gc("30m"), Ok(1800));
        assert_eq!(gc("0s"), Ok(0));
        assert_eq!(gc("2w"), Ok(14 * 86_400));
        // Up to 12 digits, as long as the seconds fit a u64.
        assert_eq!(gc("999999999999w"), Ok(999_999_999_999 * 604_800));
        for bad in [
            "",
            "7",
            "d",
            "-1d",
            "1.5h",
            "7D",
            "7 d",
            "1y",
            "500ms",
            "9999999999999s",
        ] {
            assert!(gc(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,24}") {
            let _ = parse_duration(&s);
            let _ = parse_duration_in(&s, Grammar::GC);
        }

        #[test]
        fn strings_round_trip(n in 0u64..1_000_000, u in prop::sample::select(UNITS.to_vec())) {
            let d = parse_duration(&format!("{n}{}", u.0)).unwrap();
            prop_assert_eq!(d, Duration::from_millis(n * u.1));
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn gc_units(n in 0u64..1_000_000, u in prop::sample::select(Grammar::GC.units.to_vec())) {
            let d = parse_duration_in(&format!("{n}{}", u.0), Grammar::GC).unwrap();
            prop_assert_eq!(d, Duration::from_millis(n * u.1));
        }

        #[test]
        fn durations_round_trip(ms in 0u64..=u64::MAX) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
