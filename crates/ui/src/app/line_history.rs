//! The `:` line's history: the lines run, recalled with ↑/↓.

/// The lines run on the `:` line, oldest first (↑/↓ recall them).
#[derive(Debug, Default)]
pub struct LineHistory(pub Vec<String>);

impl LineHistory {
    /// The line before `pos` (from none: the newest) and its position; the history is
    /// not empty.
    pub(super) fn prev(&self, pos: Option<usize>) -> (String, usize) {
        let pos = pos.map_or(self.0.len() - 1, |p| p.saturating_sub(1));
        (self.0[pos].clone(), pos)
    }

    /// The line after `pos`; past the newest, an empty line and no position.
    pub(super) fn next(&self, pos: Option<usize>) -> (String, Option<usize>) {
        let pos = pos.map(|p| p + 1).filter(|p| *p < self.0.len());
        (pos.map(|p| self.0[p].clone()).unwrap_or_default(), pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_and_down_walk_the_lines_run_and_end_on_an_empty_line() {
        let h = LineHistory(vec!["pause".into(), "switch cool".into()]);
        // ↑ from a fresh line: the newest, then the one before, which it stays at.
        assert_eq!(h.prev(None), ("switch cool".to_string(), 1));
        assert_eq!(h.prev(Some(1)), ("pause".to_string(), 0));
        assert_eq!(h.prev(Some(0)), ("pause".to_string(), 0));
        // ↓ back: the newer line, then past the newest an empty line.
        assert_eq!(h.next(Some(0)), ("switch cool".to_string(), Some(1)));
        assert_eq!(h.next(Some(1)), (String::new(), None));
    }
}
