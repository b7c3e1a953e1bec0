//! The list panels' selection (signals, events) and, comparing, whose rows they show.

use crate::keymap::Action;
use crate::layout::Panel;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Rows {
    /// Selected row of a list panel (signals, events), counted from the oldest row;
    /// none: the panel follows the newest rows.
    pub selected: BTreeMap<Panel, usize>,
    /// Compare: the run (0: the first) whose signals, events and plan the panels show.
    pub run: usize,
}

impl Rows {
    /// Moves a panel's selection of `n` rows for a list key; false when the action is
    /// not a move.
    pub(super) fn on_action(&mut self, panel: Panel, n: usize, action: Option<Action>) -> bool {
        // Positions counted from the newest row (the top of the panel).
        let pos = self.selected.get(&panel).map(|&i| n.saturating_sub(1).saturating_sub(i));
        let new_pos: Option<usize> = match action {
            Some(Action::RowNext) => Some(pos.map_or(0, |p| p + 1)),
            Some(Action::RowPrev) => pos.and_then(|p| p.checked_sub(1)),
            Some(Action::RowsPageDown) => Some(pos.map_or(0, |p| p + 10)),
            Some(Action::RowsPageUp) => pos.and_then(|p| p.checked_sub(10)),
            Some(Action::RowsNewest) => None,
            Some(Action::RowsOldest) => Some(n.saturating_sub(1)),
            _ => return false,
        };
        match new_pos.filter(|_| n > 0) {
            Some(p) => {
                let p = p.min(n - 1);
                self.selected.insert(panel, n - 1 - p);
            }
            None => {
                self.selected.remove(&panel);
            }
        }
        true
    }

    /// Comparing `runs` runs: the next run's rows, none selected; returns which.
    pub fn next_run(&mut self, runs: usize) -> usize {
        self.run = (self.run + 1) % runs.max(1);
        self.selected.clear();
        self.run
    }
}
