//! The list panels (signals, events): their rows, the keys that move the selection,
//! and a row's full text.

use super::{App, Mode, signals::detector_meaning};
use crate::keymap::{Action, Section};
use crate::layout::Panel;
use ratatui::crossterm::event::KeyEvent;

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
