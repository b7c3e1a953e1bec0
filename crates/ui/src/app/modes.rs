//! The small modal dialogs' keys: help (scrolling), quit (detach or stop), the phase
//! picker. Each mode's state lives in [`Mode`].

use super::{App, Exit, Link, Mode};
use crate::event::Command;
use crate::keymap::{Action, Section};
use ratatui::crossterm::event::KeyEvent;

impl App {
    /// The help overlay scrolls (arrows, j/k, PgUp/PgDn, Home/End) and closes on `?`
    /// (the help key) or Esc only, so a key pressed to scroll never loses it.
    pub(super) fn on_help_key(&mut self, key: KeyEvent) {
        // The dashboard's help key closes it too (it may have been rebound).
        let close = self.keymap.action(&key) == Some(Action::Help);
        let action = if close { Some(Action::HelpClose) } else { self.keymap.action_in(Section::Help, &key) };
        if !self.help.on_action(action) {
            self.mode = Mode::Normal;
        }
    }

    pub(super) fn on_quit_key(&mut self, key: KeyEvent, selected: usize) {
        match self.keymap.action_in(Section::Quit, &key) {
            Some(Action::QuitDetach) => self.exit = Some(Exit::Detach),
            Some(Action::QuitStop) => self.exit = Some(Exit::Stop),
            Some(Action::QuitNextChoice) => self.mode = Mode::Quit { selected: (selected + 1) % 3 },
            Some(Action::QuitChoose) => match selected {
                0 => self.exit = Some(Exit::Detach),
                1 => self.exit = Some(Exit::Stop),
                _ => self.mode = Mode::Normal,
            },
            _ => self.mode = Mode::Normal,
        }
        if self.exit == Some(Exit::Stop) {
            if self.link == Link::Live {
                self.send(Command::Stop);
            } else {
                self.exit = Some(Exit::Detach);
            }
        }
    }

    pub(super) fn on_picker_key(&mut self, key: KeyEvent, selected: usize) {
        let n = self.live_view().plan.len().max(1);
        match self.keymap.action_in(Section::Picker, &key) {
            Some(Action::PickPrev) => self.mode = Mode::PhasePicker { selected: (selected + n - 1) % n },
            Some(Action::PickNext) => self.mode = Mode::PhasePicker { selected: (selected + 1) % n },
            Some(Action::PickChoose) => {
                let phase = self.live_view().plan.get(selected).map(|p| p.name.clone()).unwrap_or_default();
                self.mode = Mode::Confirm { phase };
            }
            _ => self.mode = Mode::Normal,
        }
    }
}
