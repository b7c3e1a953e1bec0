//! The `:` command line: typing, history, completion, and running a line (the run's
//! commands in `ctl`'s grammar, and the dashboard's own view verbs); also a watched
//! config's edit, offered as a plan change.

use super::{App, Mode};
use crate::event::Command;
use crate::grammar::{GrammarError, Request};
use crate::keymap::{Action, Section};
use crate::layout::{Layout, Panel};
use ratatui::crossterm::event::{KeyCode, KeyEvent};

impl App {
    pub(super) fn on_command_key(&mut self, key: KeyEvent, mut input: String, history_pos: Option<usize>) {
        match self.keymap.action_in(Section::Line, &key) {
            Some(Action::LineCancel) => self.mode = Mode::Normal,
            Some(Action::LineRun) => {
                self.mode = Mode::Normal;
                let line = input.trim().to_string();
                if !line.is_empty() {
                    self.line_history.0.push(line.clone());
                    self.run_command_line(&line);
                }
            }
            Some(Action::LineDeleteBack) => {
                input.pop();
                self.mode = Mode::Command { input, history_pos: None };
            }
            Some(Action::LineComplete) => {
                let completed = self.complete(&input);
                self.mode = Mode::Command { input: completed, history_pos: None };
            }
            Some(Action::LineHistoryPrev) if !self.line_history.0.is_empty() => {
                let (input, pos) = self.line_history.prev(history_pos);
                self.mode = Mode::Command { input, history_pos: Some(pos) };
            }
            Some(Action::LineHistoryNext) => {
                let (input, pos) = self.line_history.next(history_pos);
                self.mode = Mode::Command { input, history_pos: pos };
            }
            Some(_) => {}
            None => {
                if let KeyCode::Char(c) = key.code {
                    input.push(c);
                    self.mode = Mode::Command { input, history_pos: None };
                }
            }
        }
    }

    /// Completes the word being typed: command names, then phase or layout names.
    pub fn complete(&self, input: &str) -> String {
        let words: Vec<&str> = input.split_whitespace().collect();
        let typing_first = words.len() <= 1 && !input.ends_with(' ');
        let candidates: Vec<String> = if typing_first {
            commands().into_iter().map(str::to_string).collect()
        } else {
            match words.first().copied() {
                Some("switch") => self.live_view().plan.iter().map(|p| p.name.clone()).collect(),
                Some("layout") => crate::layout::SHIPPED.iter().map(|s| s.0.to_string()).collect(),
                Some("set") => crate::session::SetKeys::of_run_config(&self.live_view().config)
                    .names()
                    .into_iter()
                    .map(|k| format!("{k}="))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let partial = if input.ends_with(' ') { "" } else { words.last().copied().unwrap_or("") };
        let matches: Vec<&String> = candidates.iter().filter(|c| c.starts_with(partial)).collect();
        let Some(first) = matches.first() else { return input.to_string() };
        // The longest common prefix of the matches.
        let mut prefix = first.to_string();
        for m in &matches[1..] {
            while !m.starts_with(&prefix) {
                prefix.pop();
            }
        }
        let head = &input[..input.len() - partial.len()];
        let sep = if matches.len() == 1 && !prefix.ends_with('=') { " " } else { "" };
        format!("{head}{prefix}{sep}")
    }

    /// Runs a `:` command line. Errors go to the status line and change nothing.
    pub fn run_command_line(&mut self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            None => {}
            Some(verb) if VIEW_VERBS.contains(verb) => self.run_view_verb(line, &words),
            // The run's commands: the same grammar, command and error text as `ctl`.
            Some(_) => match crate::grammar::parse(&words) {
                Ok(Request::Command(Command::Switch { phase })) => {
                    let names: Vec<&str> = self.live_view().plan.iter().map(|x| x.name.as_str()).collect();
                    match crate::grammar::check_phase(&phase, &names) {
                        Ok(()) => self.send(Command::Switch { phase }),
                        Err(e) => self.set_status(e.to_string(), true),
                    }
                }
                Ok(Request::Command(Command::Set { key, value })) => {
                    // The run's own keys: the trainer's, or an external run's plan's.
                    match crate::session::SetKeys::of_run_config(&self.live_view().config).check(&key, value) {
                        Ok(()) => self.send(Command::Set { key, value }),
                        Err(e) => self.set_status(e, true),
                    }
                }
                Ok(Request::Command(c)) => self.send(c),
                Ok(Request::Plan { path }) => match std::fs::read_to_string(&path) {
                    Ok(config) => self.send(Command::Plan { config }),
                    Err(e) => self.set_status(format!("{path}: {e}"), true),
                },
                Ok(Request::Status) => {
                    self.set_status("the screen is the status (`phasetop ctl RUN status` prints it)", false)
                }
                Err(GrammarError::UnknownVerb(v)) => {
                    self.set_status(format!("unknown command \"{v}\", expected one of {}", commands().join(", ")), true)
                }
                Err(e) => self.set_status(e.to_string(), true),
            },
        }
    }

    /// The dashboard's own verbs (what the screen shows, not the run).
    pub(super) fn run_view_verb(&mut self, line: &str, words: &[&str]) {
        if words.len() > 2 {
            return self.set_status(format!("too many arguments: {line}"), true);
        }
        match (words[0], words.get(1).copied()) {
            ("goto", Some(s)) if self.player.is_some() => match s.parse::<u64>() {
                Ok(step) if self.first_end().is_some_and(|end| step > end) => {
                    self.player.as_mut().expect("checked").playing = false;
                    self.seek_timeline(step);
                    self.set_status(format!("replay at step {}", self.timeline_step()), false);
                }
                Ok(step) => {
                    let p = self.player.as_mut().expect("checked");
                    p.playing = false;
                    if let Some(c) = self.compare.as_mut() {
                        c.beyond = None;
                        c.playing_on = false;
                    }
                    if p.goto_step(&mut self.view, step) {
                        self.sync_compare();
                        let msg = self.position_status();
                        self.set_status(msg, false);
                    } else {
                        self.set_status(format!("going to step {step} once the log is indexed that far"), false);
                    }
                }
                Err(_) => self.set_status(format!("goto needs a step number, got \"{s}\""), true),
            },
            ("goto", Some(s)) => match s.parse::<u64>() {
                Ok(step) => {
                    let range = self.x_range();
                    self.charts.goto(range, step, self.view.step);
                    self.set_status(format!("cursor at step {}", step.min(self.view.step)), false);
                }
                Err(_) => self.set_status(format!("goto needs a step number, got \"{s}\""), true),
            },
            ("bands", Some(n)) if self.compare.is_some() => {
                let r = self.compare.as_mut().expect("checked").toggle_bands(n.parse().unwrap_or(0));
                match r {
                    Ok(m) => self.set_status(m, false),
                    Err(e) => self.set_status(e, true),
                }
            }
            ("smooth", Some(s)) => match s.parse::<f64>() {
                Ok(v) if (0.0..1.0).contains(&v) => {
                    // The focused chart, or every chart but the learning rate's.
                    match self.focused_panel().filter(|p| p.is_chart()) {
                        Some(Panel::Lr) => return self.set_status("the learning-rate chart is never smoothed", true),
                        Some(p) => self.charts.opts_mut(p).smoothing = v,
                        None => {
                            for p in [Panel::Loss, Panel::Accuracy, Panel::Grad, Panel::Diversity] {
                                self.charts.opts_mut(p).smoothing = v;
                            }
                        }
                    }
                    self.set_status(format!("smoothing {v}"), false);
                }
                _ => self.set_status(format!("smooth needs a number in [0, 1), got \"{s}\""), true),
            },
            ("layout", Some(name)) => match Layout::load(name, &self.layouts_dir) {
                Ok(l) => {
                    self.layout = l;
                    self.focus = 0;
                    self.set_status(format!("layout {name}"), false);
                }
                Err(e) => self.set_status(e, true),
            },
            ("help", None) => self.mode = Mode::Help,
            ("bands", Some(_)) => self.set_status("bands: only when comparing runs (replay A B …)", true),
            (verb, None) => self.set_status(format!("{verb} needs an argument"), true),
            (verb, Some(extra)) => self.set_status(format!("{verb} takes no argument, got \"{extra}\""), true),
        }
    }

    /// A watched config file changed: an invalid edit shows its error and changes
    /// nothing; a valid one with different phases asks whether to apply them.
    pub fn on_config_edit(&mut self, file: &str, text: String) {
        match crate::config::parse(file, &text) {
            Err(e) => self.set_status(format!("config edit not applied: {e}"), true),
            Ok(cfg) => {
                let phases = cfg.phase_names();
                let new_plan = serde_json::to_value(&cfg).unwrap_or_default().get("phase").cloned();
                let offered = self.last_plan_text.as_deref() == Some(text.as_str());
                if offered || new_plan.as_ref() == self.live_view().config.get("phase") {
                    return;
                }
                self.last_plan_text = Some(text.clone());
                self.mode = Mode::ConfirmPlan { file: file.to_string(), text, phases };
            }
        }
    }
}

/// The `:` line's own verbs; the run's commands are [`crate::grammar::VERBS`].
pub const VIEW_VERBS: &[&str] = &["goto", "smooth", "layout", "bands", "help"];

/// Every verb the `:` line knows, for completion and errors.
pub fn commands() -> Vec<&'static str> {
    crate::grammar::VERBS.iter().chain(VIEW_VERBS).copied().collect()
}
