//! The bundle's `MANIFEST` body: `sha256sum` lines `<hex>  <path>`, one per
//! file, sorted by path, each path listed once.

use std::fmt::Write as _;

/// Why a MANIFEST body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: expected `<64 lowercase hex>  <path>`")]
    BadLine { line: usize },
    #[error("line {line}: invalid path {path:?}")]
    BadPath { line: usize, path: String },
    #[error("line {line}: {path} is out of order or listed twice")]
    Unsorted { line: usize, path: String },
    #[error("the manifest lists no files")]
    Empty,
}

/// Whether `p` is a path kiln writes in a bundle: relative, `/`-separated,
/// components of `[A-Za-z0-9._-]`, none empty, `.` or `..`.
pub fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Render entries (which must have valid paths) sorted by path.
pub fn render(entries: &[(String, [u8; 32])]) -> String {
    let mut sorted: Vec<&(String, [u8; 32])> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (p, h) in sorted {
        let _ = writeln!(out, "{}  {p}", hex::encode(h));
    }
    out
}

/// Parse a body strictly: every line well-formed, paths valid, sorted and
/// unique, at least one entry.
pub fn parse(text: &str) -> Result<Vec<(String, [u8; 32])>, ManifestError> {
    let mut out: Vec<(String, [u8; 32])> = Vec::new();
    let body = text
        .strip_suffix('\n')
        .ok_or(ManifestError::BadLine { line: 1 })?;
    for (n, line) in body.split('\n').enumerate() {
        let line_no = n + 1;
        let bad = ManifestError::BadLine { line: line_no };
        let (h, path) = line.split_at_checked(64).ok_or(bad.clone())?;
        let path = path.strip_prefix("  ").ok_or(bad.clone())?;
        if !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad);
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(h, &mut hash).map_err(|_| bad)?;
        if !valid_path(path) {
            return Err(ManifestError::BadPath {
                line: line_no,
                path: path.to_string(),
            });
        }
        if out.last().is_some_and(|(p, _)| p.as_str() >= path) {
            return Err(ManifestError::Unsorted {
                line: line_no,
                path: path.to_string(),
            });
        }
        out.push((path.to_string(), hash));
    }
    if out.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_rejections() {
        let e = vec![("b/c".to_string(), [1u8; 32]), ("a".to_string(), [2u8; 32])];
        let t = render(&e);
        assert!(t.starts_with(&format!("{}  a\n", hex::encode([2u8; 32]))));
        let p = parse(&t).unwrap();
        assert_eq!(p[0].0, "a");
        assert_eq!(p[1].1, [1u8; 32]);
        let h = hex::encode([0xabu8; 32]);
        for bad in [
            String::new(),
            format!("{h}  a"),
            format!("{h} a\n"),
            format!("{}  a\n", h.to_uppercase()),
            format!("{h}  ../x\n"),
            format!("{h}  /x\n"),
            format!("{h}  a//b\n"),
            format!("{h}  b\n{h}  a\n"),
            format!("{h}  a\n{h}  a\n"),
            format!("{h}  a\n\n"),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn render_parse_round_trips(
            files in prop::collection::btree_map("[a-z0-9_-]{1,8}(/[a-z0-9._-]{1,8}){0,2}", any::<[u8; 32]>(), 1..20)
        ) {
            let entries: Vec<(String, [u8; 32])> = files
                .into_iter()
                .filter(|(p, _)| valid_path(p))
                .collect();
            prop_assume!(!entries.is_empty());
            let parsed = parse(&render(&entries)).unwrap();
            prop_assert_eq!(parsed, entries);
        }
    }
}
