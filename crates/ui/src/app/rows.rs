//! The list panels (signals, events): their rows, the selection and a row's full text.

use super::{App, Mode, signals::detector_meaning};
use crate::keymap::{Action, Section};
use crate::layout::Panel;
use ratatui::crossterm::event::KeyEvent;
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
    fn on_action(&mut self, panel: Panel, n: usize, action: Option<Action>) -> bool {
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

impl App {
    /// Rows in a list panel, oldest first.
    pub fn list_len(&self, panel: Panel) -> usize {
        match panel {
            Panel::Signals => self.rows_view().signals.len(),
            Panel::Events => self.rows_view().log.len(),
            _ => 0,
        }
    }

    /// The full text of a list row (oldest first), for the detail overlay.
    pub fn row_detail(&self, panel: Panel, i: usize) -> Option<(String, Vec<String>)> {
        match panel {
            Panel::Signals => {
                let s = self.rows_view().signals.get(i)?;
                let title = format!("signal at step {}", crate::fmt::step(s.step));
                let mut lines = vec![format!("{} on {}", s.detector, s.metric), s.message.clone()];
                if s.count > 1 {
                    lines.push(format!(
                        "fired {} times in this phase, steps {} to {} (one episode, one row; each firing is a marker on the charts)",
                        s.count,
                        crate::fmt::step(s.step),
                        crate::fmt::step(s.last_step)
                    ));
                }
                if let Some(m) = detector_meaning(&s.detector) {
                    lines.push(String::new());
                    lines.push(m.to_string());
                }
                Some((title, lines))
            }
            Panel::Events => {
                let r = self.rows_view().log.get(i)?;
                Some((format!("{} at step {}", r.kind, crate::fmt::step(r.step)), vec![r.text.clone()]))
            }
            _ => None,
        }
    }

    /// ↑/↓ (and j/k, PgUp/PgDn, Home/End) move the selection of a focused signals or
    /// events panel, Enter opens the row, Esc goes back to following the newest rows;
    /// Tab still moves the focus. Returns whether the key was used.
    pub(super) fn on_list_key(&mut self, key: KeyEvent) -> bool {
        let Some(panel) = self.focused_panel().filter(|p| p.is_list()) else { return false };
        let n = self.list_len(panel);
        let action = self.keymap.action_in(Section::List, &key);
        if action == Some(Action::RowOpen) {
            let i = self.rows.selected.get(&panel).copied().unwrap_or(n.saturating_sub(1));
            match self.row_detail(panel, i) {
                Some((title, lines)) => self.mode = Mode::Detail { title, lines },
                None => self.set_status(format!("no {} yet", panel.title()), false),
            }
            return true;
        }
        self.rows.on_action(panel, n, action)
    }
}
