//! Positions in text files for error messages: `file:line:col` and the
//! offending line with a caret. Shared by every kiln parser of
//! human-written files (kiln.toml, trust.toml, deploy.toml).

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `"\n    | <line>\n    |    ^"` for `line`/`column` in `text` (empty if
/// the line does not exist).
pub fn snippet(text: &str, line: usize, column: usize) -> String {
    match text.lines().nth(line.wrapping_sub(1)) {
        Some(l) if line > 0 => {
            let pad: String = l
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            format!("\n    | {l}\n    | {pad}^")
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_carets() {
        let t = "a = 1\nbé = x\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 12), (2, 6));
        assert_eq!(line_col(t, 8), (2, 2)); // inside 'é': clamped to its start
        assert_eq!(line_col(t, 999), (3, 1));
        assert_eq!(snippet(t, 2, 6), "\n    | bé = x\n    |      ^");
        assert_eq!(snippet(t, 0, 1), "");
        assert_eq!(snippet(t, 9, 1), "");
    }
}
