//! A key's way to its handler: the mode's own (help, `:` line, picker, confirmations,
//! quit), else in normal mode the transport, a focused list, then the dashboard's keys.

use super::{App, Mode};
use crate::event::Command;
use crate::keymap::{Action, Section};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

impl App {
    pub fn on_key(&mut self, key: KeyEvent) {
        let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match self.mode.clone() {
            Mode::Help => self.on_help_key(key),
            Mode::Console => self.on_console_key(key),
            Mode::Detail { .. } => self.mode = Mode::Normal,
            Mode::Command { input, history_pos } => self.on_command_key(key, input, history_pos),
            Mode::PhasePicker { selected } => self.on_picker_key(key, selected),
            Mode::Confirm { phase } => match self.keymap.action_in(Section::Confirm, &key) {
                Some(Action::ConfirmYes) => {
                    self.mode = Mode::Normal;
                    self.send(Command::Switch { phase });
                }
                _ => {
                    self.mode = Mode::Normal;
                    self.set_status("switch cancelled", false);
                }
            },
            Mode::Quit { selected } => self.on_quit_key(key, selected),
            Mode::ConfirmPlan { text, .. } => {
                self.mode = Mode::Normal;
                if self.keymap.action_in(Section::Confirm, &key) == Some(Action::ConfirmYes) {
                    self.send(Command::Plan { config: text });
                } else {
                    self.set_status("plan edit not applied", false);
                }
            }
            Mode::Normal if ctrl_c => self.on_action(Action::Quit),
            Mode::Normal if self.player.is_some() && self.on_transport_key(key) => {}
            Mode::Normal if self.on_list_key(key) => {}
            Mode::Normal => {
                if let Some(a) = self.keymap.action(&key) {
                    self.on_action(a);
                }
            }
        }
    }
}
