//! The help overlay's scrolling.

use crate::keymap::Action;
use std::cell::Cell;

/// The help overlay's first line shown, and (set when drawing) the largest that still
/// fills it and the lines visible: PgUp/PgDn move by a page.
#[derive(Debug)]
pub struct HelpScroll {
    pub scroll: usize,
    pub max: Cell<usize>,
    pub page: Cell<usize>,
}

impl Default for HelpScroll {
    fn default() -> HelpScroll {
        HelpScroll { scroll: 0, max: Cell::new(0), page: Cell::new(10) }
    }
}

impl HelpScroll {
    /// Scrolls for a help key; false when the key closes the help (scrolled back to the top).
    pub(super) fn on_action(&mut self, action: Option<Action>) -> bool {
        let max = self.max.get();
        let s = self.scroll.min(max);
        let page = self.page.get().max(1);
        self.scroll = match action {
            Some(Action::HelpClose) => {
                self.scroll = 0;
                return false;
            }
            Some(Action::HelpDown) => (s + 1).min(max),
            Some(Action::HelpUp) => s.saturating_sub(1),
            Some(Action::HelpPageDown) => (s + page).min(max),
            Some(Action::HelpPageUp) => s.saturating_sub(page),
            Some(Action::HelpTop) => 0,
            Some(Action::HelpBottom) => max,
            _ => s,
        };
        true
    }
}
