//! Debian package versions (Policy §5.6.12), parsed and ordered exactly as
//! `dpkg --compare-versions` does (dpkg 1.21 `parseversion` / `verrevcmp`).
//!
//! Parsing follows dpkg: leading and trailing blanks are trimmed; the epoch is
//! everything before the *first* colon and must be a decimal number that fits
//! in an `i32`; the revision is everything after the *last* hyphen of the
//! rest. dpkg's hard errors are [`VersionError`]s; what dpkg only warns about
//! (an upstream version that does not start with a digit, characters outside
//! the allowed sets) is accepted and listed by [`DebVersion::warnings`], so
//! that ordering matches dpkg on every string dpkg itself accepts.
//!
//! One deliberate difference: dpkg's `strtol` accepts a sign (`+1:2`) and
//! leading blanks in the epoch; kiln requires plain digits.
//!
//! Its own crate because the scanner, the solver and the repository client
//! all compare versions, and none of them should depend on another for it.

#![forbid(unsafe_code)]

use std::cmp::Ordering;
use std::fmt;

/// Why a version string is not a Debian version (dpkg's own messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version string is empty")]
    Empty,
    #[error("version string {0:?} has embedded spaces")]
    EmbeddedSpaces(String),
    #[error("epoch in version {0:?} is empty")]
    EmptyEpoch(String),
    #[error("epoch in version {0:?} is not a number")]
    EpochNotNumber(String),
    #[error("epoch in version {0:?} is too big")]
    EpochTooBig(String),
    #[error("nothing after colon in version {0:?}")]
    NothingAfterColon(String),
    #[error("revision number is empty in version {0:?}")]
    EmptyRevision(String),
    #[error("version number is empty in version {0:?}")]
    EmptyUpstream(String),
}

/// A parsed Debian version. Equality and order are dpkg's: `1.0` equals
/// `1.0-0` and `0:1.0`, `1.01` equals `1.1`.
#[derive(Clone)]
pub struct DebVersion {
    epoch: u32,
    upstream: String,
    revision: String,
    original: String,
}

impl DebVersion {
    /// Parse `s` as dpkg does; see the module documentation.
    pub fn parse(s: &str) -> Result<DebVersion, VersionError> {
        let is_blank = |c: char| c == ' ' || c == '\t';
        let t = s.trim_matches(is_blank);
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        if t.contains(is_blank) {
            return Err(VersionError::EmbeddedSpaces(s.to_string()));
        }
        let (epoch, rest) = match t.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() {
                    return Err(VersionError::EmptyEpoch(s.to_string()));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::EpochNotNumber(s.to_string()));
                }
                let n: u32 = e
                    .parse()
                    .ok()
                    .filter(|n| *n <= i32::MAX as u32)
                    .ok_or_else(|| VersionError::EpochTooBig(s.to_string()))?;
                if rest.is_empty() {
                    return Err(VersionError::NothingAfterColon(s.to_string()));
                }
                (n, rest)
            }
            None => (0, t),
        };
        let (upstream, revision) = match rest.rfind('-') {
            Some(i) => {
                let rev = &rest[i + 1..];
                if rev.is_empty() {
                    return Err(VersionError::EmptyRevision(s.to_string()));
                }
                (&rest[..i], rev)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(VersionError::EmptyUpstream(s.to_string()));
        }
        Ok(DebVersion {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            original: t.to_string(),
        })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision; empty when the version has no hyphen.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The string as given (blanks trimmed).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// What dpkg would warn about (it still accepts and orders the version).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.upstream.starts_with(|c: char| c.is_ascii_digit()) {
            w.push("version number does not start with digit".to_string());
        }
        let bad = |set: &str, s: &str| {
            s.bytes()
                .any(|b| !b.is_ascii_alphanumeric() && !set.as_bytes().contains(&b))
        };
        if bad(".-+~:", self.upstream.get(1..).unwrap_or("")) {
            w.push("invalid character in version number".to_string());
        }
        if bad(".+~", &self.revision) {
            w.push("invalid character in revision number".to_string());
        }
        w
    }
}

/// dpkg's `order()`: digits 0 (never reached for them), letters their code,
/// `~` -1 (before everything, even the end), the end 0, anything else its
/// code + 256 (dpkg's `char` is signed, hence the `i8` cast for non-ASCII).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c as i8) + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl fmt::Debug for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DebVersion({:?})", self.original)
    }
}

impl std::str::FromStr for DebVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DebVersion::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        DebVersion::parse(s).expect(s)
    }

    #[test]
    fn policy_tilde_order() {
        // ~~ < ~~a < ~ < "" < a, as in formats.md.
        let seq = ["1.0~~", "1.0~~a", "1.0~", "1.0", "1.0a"];
        for w in seq.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn basics() {
        assert!(v("1:0.1") > v("9.9"));
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("0:1.01"), v("1.1"));
        assert!(v("1.0-1") < v("1.0-1+deb12u1"));
        assert!(v("2.36-9+deb12u3") < v("2.36-9+deb12u10"));
        assert!(v("1.2.3-1") < v("1.2.3-1.1"));
        assert!(v("1.0+dfsg-1") > v("1.0-1"));
        assert!(v("1.0-1~bpo12+1") < v("1.0-1"));
        assert_eq!(v("1:2.3-4-5").upstream(), "2.3-4");
        assert_eq!(v("1:2.3-4-5").revision(), "5");
        assert_eq!(v(" 1.0 ").as_str(), "1.0");
        assert!(
            v("a1")
                .warnings()
                .iter()
                .any(|w| w.contains("start with digit"))
        );
        assert!(v("1.0").warnings().is_empty());
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "   ",
            "1 2",
            ":1",
            "a:1",
            "1:",
            "1.0-",
            "-1",
            "99999999999:1",
        ] {
            assert!(DebVersion::parse(bad).is_err(), "{bad:?}");
        }
    }
}
