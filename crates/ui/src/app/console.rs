//! The console pane's state and keys: the run's own output ([`Console`]) over the lower
//! part of the dashboard, following its end until scrolled back.

use super::{App, Mode};
use crate::keymap::{Action, Section};
use crate::model::console::Console;
use ratatui::crossterm::event::KeyEvent;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often the files are read while the pane is open.
const POLL_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct ConsolePane {
    pub console: Console,
    /// Lines up from the newest; 0 follows the end.
    pub scroll: usize,
    /// Lines the pane showed at its last draw (a page for PgUp/PgDn).
    pub page: Cell<usize>,
    last_poll: Option<Instant>,
}

impl ConsolePane {
    pub fn new(console: Console) -> ConsolePane {
        ConsolePane { console, scroll: 0, page: Cell::new(10), last_poll: None }
    }

    /// Reads new output (at most every [`POLL_EVERY`]); true when there was some. A
    /// scrolled-back pane keeps its lines where they are on screen.
    pub fn poll(&mut self) -> bool {
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL_EVERY) {
            return false;
        }
        self.last_poll = Some(Instant::now());
        let before = self.console.lines.len() as u64 + self.console.dropped;
        if !self.console.poll() {
            return false;
        }
        if self.scroll > 0 {
            let after = self.console.lines.len() as u64 + self.console.dropped;
            self.scroll = (self.scroll + (after - before) as usize).min(self.max_scroll());
        }
        true
    }

    fn max_scroll(&self) -> usize {
        self.console.lines.len().saturating_sub(self.page.get())
    }

    /// Scrolls for a console key; false when the key closes the pane.
    fn on_action(&mut self, action: Option<Action>) -> bool {
        let page = self.page.get().max(1);
        let max = self.max_scroll();
        self.scroll = match action {
            Some(Action::ConsoleClose) => return false,
            Some(Action::ConsoleUp) => (self.scroll + 1).min(max),
            Some(Action::ConsoleDown) => self.scroll.saturating_sub(1),
            Some(Action::ConsolePageUp) => (self.scroll + page).min(max),
            Some(Action::ConsolePageDown) => self.scroll.saturating_sub(page),
            Some(Action::ConsoleTop) => max,
            Some(Action::ConsoleFollow) => 0,
            _ => self.scroll,
        };
        true
    }
}

impl App {
    /// `O`: the console pane, or why there is none.
    pub(super) fn open_console(&mut self) {
        match self.console.as_mut() {
            Some(c) => {
                c.poll();
                self.mode = Mode::Console;
            }
            None => self.set_status("no console for this view".to_string(), true),
        }
    }

    pub(super) fn on_console_key(&mut self, key: KeyEvent) {
        // The dashboard's console key closes it too (it may have been rebound).
        let close = self.keymap.action(&key) == Some(Action::Console);
        let action = if close { Some(Action::ConsoleClose) } else { self.keymap.action_in(Section::Console, &key) };
        if let Some(c) = self.console.as_mut()
            && !c.on_action(action)
        {
            self.mode = Mode::Normal;
        }
    }

    /// New output for an open pane; true when it should be drawn again.
    pub fn poll_console(&mut self) -> bool {
        matches!(self.mode, Mode::Console) && self.console.as_mut().is_some_and(ConsolePane::poll)
    }
}
