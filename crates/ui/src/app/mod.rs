//! The dashboard's view state and input handling, free of terminal I/O so that it can
//! be driven by tests. Commands for the run go out through a [`CommandSink`].

use crate::control::Reply;
use crate::event::Command;
use crate::grammar::{GrammarError, Request};
use crate::keymap::{Action, Keymap, Section};
use crate::layout::{Layout, Panel};
use crate::model::state::RunView;
use crate::theme::Theme;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a status message stays in the footer.
pub const STATUS_TTL: Duration = Duration::from_secs(5);

/// Sends a command to the run's host and returns its answer.
pub trait CommandSink {
    fn send(&mut self, c: &Command) -> Result<Reply, String>;

    /// Why commands cannot reach the host now, when the sink knows better than "not
    /// answering" (a remote run: the link is down).
    fn down(&self) -> Option<String> {
        None
    }

    /// The host a remote run lives on (`user@host`), for the header; `None` when local.
    fn remote(&self) -> Option<String> {
        None
    }
}

/// Sends over the control socket in the run directory.
pub struct SocketSink(pub PathBuf);

impl CommandSink for SocketSink {
    fn send(&mut self, c: &Command) -> Result<Reply, String> {
        let body = serde_json::to_value(c).map_err(|e| e.to_string())?;
        crate::control::request(&self.0, &body).map_err(|e| format!("run not reachable: {e}"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    Command {
        input: String,
        history_pos: Option<usize>,
    },
    PhasePicker {
        selected: usize,
    },
    Confirm {
        phase: String,
    },
    Quit {
        selected: usize,
    },
    /// An edited config whose future phases differ: apply them?
    ConfirmPlan {
        file: String,
        text: String,
        phases: Vec<String>,
    },
    /// A signal or event row's full text (Enter on a focused row).
    Detail {
        title: String,
        lines: Vec<String>,
    },
}

/// A chart's own view options: `l`, `o`, `S`/`A` change the focused chart only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartOpts {
    pub smoothing: f64,
    pub log_y: bool,
    pub clip: bool,
}

impl ChartOpts {
    /// Charts start smoothed (0.6), except the learning rate, which is never smoothed:
    /// a schedule is exact, and an EMA would draw a warmup or a step that never was.
    pub fn default_for(panel: Panel) -> ChartOpts {
        ChartOpts { smoothing: if panel == Panel::Lr { 0.0 } else { 0.6 }, log_y: false, clip: false }
    }
}

/// The link to the host, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Live,
    /// The host stopped answering without ending the run, but something still holds it
    /// (a host starting or hung; for a remote run, the link is down).
    Stale,
    /// Nobody holds the run: its host exited without recording an end (killed,
    /// crashed). The header says FAILED, as `ls` does.
    Gone,
    /// Reading a finished run.
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Detach,
    Stop,
}

pub const DIVERSITY_METRICS: &[&str] = &["eff_rank", "entropy", "diversity", "participation", "mean_cos"];
/// Steps shown in the recent-window view at zoom 0.
pub const RECENT_WINDOW: u64 = 2000;

pub struct App {
    pub view: RunView,
    pub keymap: Keymap,
    pub theme: Theme,
    pub layout: Layout,
    pub layouts_dir: PathBuf,
    pub mode: Mode,
    pub link: Link,
    pub focus: usize,
    /// Per chart kind; a chart not in the map has [`ChartOpts::default_for`].
    pub chart_opts: BTreeMap<Panel, ChartOpts>,
    pub full_history: bool,
    /// Each level halves the visible span.
    pub zoom: u32,
    /// Right edge of the view; `None` follows the newest step.
    pub pan_end: Option<u64>,
    pub cursor: Option<u64>,
    pub diversity_metric: usize,
    /// `None` shows every probed layer.
    pub diversity_layer: Option<usize>,
    /// ASCII/dot glyphs instead of braille and box-drawing (weak terminals).
    pub ascii: bool,
    pub status: Option<(String, bool)>,
    /// When the status message goes (see [`App::expire_status`]); `None`: it stays.
    pub status_until: Option<Instant>,
    /// Selected row of a list panel (signals, events), counted from the oldest row;
    /// none: the panel follows the newest rows.
    pub selected: BTreeMap<Panel, usize>,
    pub history: Vec<String>,
    pub exit: Option<Exit>,
    /// The last config text offered, so one edit asks once.
    pub last_plan_text: Option<String>,
    /// The run's log as a player: a replay's, or a live attach's (whose view follows the
    /// live end until moved into its history). `None`: a view without a log (tests).
    pub player: Option<crate::player::replay::Player>,
    /// Other runs overlaid on the charts (`replay RUN_A RUN_B …`), moved with `player`.
    pub compare: Option<crate::player::compare::Compare>,
    /// Whether the last frame used the layout's small arrangement (set when drawing):
    /// focus moves over the panels on screen.
    pub small: std::cell::Cell<bool>,
    /// The help overlay's first line shown, and (set when drawing) the largest that
    /// still fills it.
    pub help_scroll: usize,
    pub help_max: std::cell::Cell<usize>,
    /// The help's visible lines as last drawn: PgUp/PgDn move by a page.
    pub help_page: std::cell::Cell<usize>,
    /// Compare: the run (0: the first) whose signals, events and plan the panels show.
    pub rows_run: usize,
    sink: Box<dyn CommandSink>,
    /// A remote run's host (from its sink), said in the header.
    pub remote: Option<String>,
}

impl App {
    pub fn new(
        view: RunView,
        keymap: Keymap,
        theme: Theme,
        layout: Layout,
        layouts_dir: PathBuf,
        sink: Box<dyn CommandSink>,
    ) -> App {
        App {
            view,
            keymap,
            theme,
            layout,
            layouts_dir,
            mode: Mode::Normal,
            link: Link::Live,
            focus: 0,
            chart_opts: BTreeMap::new(),
            full_history: true,
            zoom: 0,
            pan_end: None,
            cursor: None,
            diversity_metric: 0,
            diversity_layer: None,
            ascii: false,
            status: None,
            status_until: None,
            selected: BTreeMap::new(),
            history: Vec::new(),
            exit: None,
            last_plan_text: None,
            player: None,
            compare: None,
            small: std::cell::Cell::new(false),
            help_scroll: 0,
            help_max: std::cell::Cell::new(0),
            help_page: std::cell::Cell::new(10),
            rows_run: 0,
            remote: sink.remote(),
            sink,
        }
    }

    pub fn focused_panel(&self) -> Option<Panel> {
        self.panels().get(self.focus).copied()
    }

    /// The view whose signals, events and plan the list panels show: the first run's,
    /// or (comparing, after `r`) another's.
    pub fn rows_view(&self) -> &RunView {
        match &self.compare {
            Some(c) if self.rows_run > 0 => c.others.get(self.rows_run - 1).map_or(&self.view, |o| &o.view),
            _ => &self.view,
        }
    }

    /// Comparing: the name of the run the list panels show, for their titles.
    pub fn rows_run_name(&self) -> Option<&str> {
        self.compare.as_ref().map(|c| c.names.get(self.rows_run).map_or("", |n| n.as_str()))
    }

    /// The panels on screen, in focus order.
    pub fn panels(&self) -> Vec<Panel> {
        self.layout.panels_for(self.small.get())
    }

    /// The step range the charts show.
    pub fn x_range(&self) -> (u64, u64) {
        let last = self.timeline_step().max(1);
        let first = self.view.series.get("train_loss").and_then(|s| s.first_step()).unwrap_or(1).min(last);
        let base = if self.full_history { last - first + 1 } else { RECENT_WINDOW.min(last - first + 1) };
        let span = (base >> self.zoom.min(40)).max(10);
        let end = self.pan_end.unwrap_or(last).clamp(first.saturating_add(span.min(last - first)).min(last), last);
        (end.saturating_sub(span - 1).max(first.min(end)), end)
    }

    /// The view options of a chart panel.
    pub fn opts(&self, panel: Panel) -> ChartOpts {
        self.chart_opts.get(&panel).copied().unwrap_or_else(|| ChartOpts::default_for(panel))
    }

    fn opts_mut(&mut self, panel: Panel) -> &mut ChartOpts {
        self.chart_opts.entry(panel).or_insert_with(|| ChartOpts::default_for(panel))
    }

    /// A status message for the footer, gone after [`STATUS_TTL`].
    pub fn set_status(&mut self, msg: impl Into<String>, error: bool) {
        self.set_status_for(msg, error, STATUS_TTL);
    }

    pub fn set_status_for(&mut self, msg: impl Into<String>, error: bool, ttl: Duration) {
        self.status = Some((msg.into(), error));
        self.status_until = Some(Instant::now() + ttl);
    }

    /// Drops a status message whose time is up; true when one went (redraw).
    pub fn expire_status(&mut self, now: Instant) -> bool {
        if self.status.is_some() && self.status_until.is_some_and(|t| now >= t) {
            self.status = None;
            self.status_until = None;
            return true;
        }
        false
    }

    /// The live run as it is now: the view, or while the view shows a live run's history,
    /// the live fold kept aside. The run's controls (pause, switch, accept, a plan edit)
    /// read this, so they act on the live run wherever the view is.
    pub fn live_view(&self) -> &RunView {
        self.player.as_ref().and_then(|p| p.live_view()).unwrap_or(&self.view)
    }

    /// A replay (not a live attach).
    pub fn is_replay(&self) -> bool {
        self.player.as_ref().is_some_and(|p| !p.is_live())
    }

    /// The view shows a live run's history, not its live end.
    pub fn in_history(&self) -> bool {
        self.player.as_ref().is_some_and(|p| p.is_live() && !p.at_live_end())
    }

    /// Whether commands can reach a running host: not a replay, not ended, answering.
    pub fn is_live(&self) -> bool {
        !self.is_replay() && self.live_view().ended.is_none() && self.link == Link::Live
    }

    /// Why a live-only key does nothing here, in words.
    fn not_live(&self, what: &str) -> String {
        if self.is_replay() {
            return format!("replay: {what} needs a live run (phasetop attach RUN)");
        }
        let v = self.live_view();
        match v.ended {
            Some(status) => format!(
                "the run is not live ({} at step {}): {what} needs a live run",
                status.as_str(),
                crate::fmt::step(v.step)
            ),
            None if self.link == Link::Gone => format!(
                "the run failed at step {}: {}; {what} needs a live run",
                crate::fmt::step(self.view.step),
                crate::rundir::HOST_GONE
            ),
            None => match self.sink.down() {
                Some(why) => format!("{why}: {what} needs a live run"),
                None => format!("the run's host is not answering: {what} needs a live run"),
            },
        }
    }

    /// Whether a key's action can do anything in this session (help and footer list
    /// only those).
    pub fn action_available(&self, a: Action) -> bool {
        match a {
            Action::Pause | Action::SwitchPhase | Action::Checkpoint => self.is_live(),
            Action::Accept | Action::Dismiss => self.is_live(),
            Action::ScrubBack | Action::ScrubForward | Action::ToggleUniform => self.player.is_some(),
            Action::ToggleBands | Action::CycleRun => self.compare.is_some(),
            _ => true,
        }
    }

    fn send(&mut self, c: Command) {
        if !self.is_live() {
            let msg = self.not_live(&format!("\"{c}\""));
            return self.set_status(msg, true);
        }
        match self.sink.send(&c) {
            Ok(r) => self.set_status(format!("step {}: {}", r.step, r.message), !r.ok),
            Err(e) => self.set_status(e, true),
        }
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match self.mode.clone() {
            Mode::Help => self.on_help_key(key),
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

    /// The help overlay scrolls (arrows, j/k, PgUp/PgDn, Home/End) and closes on `?`
    /// (the help key) or Esc only, so a key pressed to scroll never loses it.
    fn on_help_key(&mut self, key: KeyEvent) {
        let max = self.help_max.get();
        let s = self.help_scroll.min(max);
        // The dashboard's help key closes it too (it may have been rebound).
        let close = self.keymap.action(&key) == Some(Action::Help);
        self.help_scroll = match self.keymap.action_in(Section::Help, &key) {
            _ if close => {
                self.mode = Mode::Normal;
                0
            }
            Some(Action::HelpClose) => {
                self.mode = Mode::Normal;
                0
            }
            Some(Action::HelpDown) => (s + 1).min(max),
            Some(Action::HelpUp) => s.saturating_sub(1),
            Some(Action::HelpPageDown) => (s + self.help_page.get().max(1)).min(max),
            Some(Action::HelpPageUp) => s.saturating_sub(self.help_page.get().max(1)),
            Some(Action::HelpTop) => 0,
            Some(Action::HelpBottom) => max,
            _ => s,
        };
    }

    fn on_quit_key(&mut self, key: KeyEvent, selected: usize) {
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

    fn on_picker_key(&mut self, key: KeyEvent, selected: usize) {
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

    fn on_command_key(&mut self, key: KeyEvent, mut input: String, history_pos: Option<usize>) {
        match self.keymap.action_in(Section::Line, &key) {
            Some(Action::LineCancel) => self.mode = Mode::Normal,
            Some(Action::LineRun) => {
                self.mode = Mode::Normal;
                let line = input.trim().to_string();
                if !line.is_empty() {
                    self.history.push(line.clone());
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
            Some(Action::LineHistoryPrev) if !self.history.is_empty() => {
                let pos = history_pos.map_or(self.history.len() - 1, |p| p.saturating_sub(1));
                self.mode = Mode::Command { input: self.history[pos].clone(), history_pos: Some(pos) };
            }
            Some(Action::LineHistoryNext) => {
                let pos = history_pos.map(|p| p + 1).filter(|p| *p < self.history.len());
                let input = pos.map(|p| self.history[p].clone()).unwrap_or_default();
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
    fn run_view_verb(&mut self, line: &str, words: &[&str]) {
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
                    self.cursor = Some(step.min(self.view.step));
                    let (a, b) = self.x_range();
                    if step < a || step > b {
                        self.pan_end = Some((step + (b - a) / 2).min(self.view.step));
                    }
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
                        Some(p) => self.opts_mut(p).smoothing = v,
                        None => {
                            for p in [Panel::Loss, Panel::Accuracy, Panel::Grad, Panel::Diversity] {
                                self.opts_mut(p).smoothing = v;
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
    fn on_list_key(&mut self, key: KeyEvent) -> bool {
        let Some(panel) = self.focused_panel().filter(|p| p.is_list()) else { return false };
        let n = self.list_len(panel);
        // Positions counted from the newest row (the top of the panel).
        let pos = self.selected.get(&panel).map(|&i| n.saturating_sub(1).saturating_sub(i));
        let new_pos: Option<Option<usize>> = match self.keymap.action_in(Section::List, &key) {
            Some(Action::RowNext) => Some(Some(pos.map_or(0, |p| p + 1))),
            Some(Action::RowPrev) => Some(pos.and_then(|p| p.checked_sub(1))),
            Some(Action::RowsPageDown) => Some(Some(pos.map_or(0, |p| p + 10))),
            Some(Action::RowsPageUp) => Some(pos.and_then(|p| p.checked_sub(10))),
            Some(Action::RowsNewest) => Some(None),
            Some(Action::RowsOldest) => Some(Some(n.saturating_sub(1))),
            Some(Action::RowOpen) => {
                let i = self.selected.get(&panel).copied().unwrap_or(n.saturating_sub(1));
                match self.row_detail(panel, i) {
                    Some((title, lines)) => self.mode = Mode::Detail { title, lines },
                    None => self.set_status(format!("no {} yet", panel.title()), false),
                }
                return true;
            }
            _ => None,
        };
        let Some(new_pos) = new_pos else { return false };
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

    /// Where the view is, for the status line after a move.
    fn position_status(&self) -> String {
        match &self.player {
            Some(p) if p.at_live_end() => "following the live run".to_string(),
            Some(p) if p.is_live() => format!("history at step {}", crate::fmt::step(self.view.step)),
            _ => format!("replay at step {}", crate::fmt::step(self.view.step)),
        }
    }

    /// Transport keys (a replay's, and a live run's history); returns whether the key was
    /// one of them.
    fn on_transport_key(&mut self, key: KeyEvent) -> bool {
        if self.player.is_none() {
            return false;
        }
        let Some(action) = self.keymap.action_in(Section::Transport, &key) else { return false };
        // An old message ("nothing further …") does not outlive the next move.
        self.status = None;
        self.status_until = None;
        // Past the first run's end (or stepping off it) the compared runs carry the
        // timeline; the marks ([ ] { }) and the start (g) are the first run's.
        let end = self.first_end();
        let p = self.player.as_mut().expect("checked");
        let v = &mut self.view;
        if let Some(c) = self.compare.as_mut() {
            // A key of the transport is the operator's: no pending play-through.
            c.play_through = false;
        }
        if let (Some(c), Some(end)) = (self.compare.as_mut(), end) {
            match action {
                Action::PlayPause if c.beyond.is_some() => {
                    c.playing_on = !c.playing_on;
                    return true;
                }
                Action::StepForward if c.beyond.is_some() || v.step >= end => {
                    p.playing = false;
                    c.playing_on = false;
                    p.seek(v, p.len());
                    c.step_on(c.beyond.unwrap_or(v.step));
                    self.sync_compare();
                    return true;
                }
                Action::StepBack if c.beyond.is_some() => {
                    c.playing_on = false;
                    let to = c.beyond.unwrap_or(end).saturating_sub(1);
                    self.seek_timeline(to);
                    return true;
                }
                Action::GotoEnd => {
                    p.playing = false;
                    c.playing_on = false;
                    let last = c.last_step();
                    self.seek_timeline(last);
                    return true;
                }
                Action::GotoStart
                | Action::PrevPhaseChange
                | Action::NextPhaseChange
                | Action::PrevSignal
                | Action::NextSignal => {
                    c.beyond = None;
                    c.playing_on = false;
                }
                _ => {}
            }
        }
        match action {
            // At a live run's end: hold the view here (history, paused).
            Action::PlayPause if p.at_live_end() => p.leave_live(v),
            Action::PlayPause => p.playing = !p.playing,
            Action::Slower => p.speed = p.speed.saturating_sub(1),
            Action::Faster => p.speed = (p.speed + 1).min(crate::player::replay::SPEEDS.len() - 1),
            Action::StepForward => {
                p.playing = false;
                p.step_forward(v);
            }
            Action::StepBack => {
                p.playing = false;
                p.step_back(v);
            }
            // The start: the run's first events (its start and first phase) applied, so
            // the header is never empty.
            Action::GotoStart => p.seek_step(v, 0),
            Action::GotoEnd => p.goto_end(v),
            a @ (Action::PrevPhaseChange | Action::NextPhaseChange | Action::PrevSignal | Action::NextSignal) => {
                use crate::model::replay_index::MarkKind::{Phase, Signal};
                use crate::player::replay::Jump;
                let (forward, kind) = match a {
                    Action::PrevPhaseChange => (false, Phase),
                    Action::NextPhaseChange => (true, Phase),
                    Action::PrevSignal => (false, Signal),
                    _ => (true, Signal),
                };
                match p.jump(v, forward, kind) {
                    Jump::Moved => {}
                    Jump::Pending => self.set_status("going there once the log is indexed", false),
                    Jump::Nothing => self.set_status("nothing further in that direction", true),
                }
            }
            _ => return false,
        }
        self.sync_compare();
        true
    }

    /// Moves the compared runs to the first run's step; true when they moved.
    pub fn sync_compare(&mut self) -> bool {
        let step = self.timeline_step();
        self.compare.as_mut().is_some_and(|c| c.sync(step))
    }

    /// The replay timeline's step: the first run's, or past its end (comparing a longer
    /// run) the step the others are at.
    pub fn timeline_step(&self) -> u64 {
        self.compare.as_ref().and_then(|c| c.beyond).unwrap_or(self.view.step).max(self.view.step)
    }

    /// The timeline's end: the largest step any compared run's index knows.
    pub fn timeline_last(&self) -> u64 {
        let first = self.player.as_ref().map_or(self.view.step, |p| p.last_step().max(self.view.step));
        first.max(self.compare.as_ref().map_or(0, |c| c.last_step()))
    }

    /// The first run's last step, once its whole log is indexed and not followed (a
    /// growing log has no end yet); `None` when no compared run goes further.
    fn first_end(&self) -> Option<u64> {
        let p = self.player.as_ref()?;
        let end = p.last_step();
        // (`state()` holds the index's lock: not across `last_step`, which takes it too.)
        let whole = {
            let s = p.index().state();
            s.done && !s.following
        };
        (whole && self.compare.as_ref().is_some_and(|c| c.last_step() > end)).then_some(end)
    }

    /// Moves the timeline to `step`: the first run there, or, past its end, the first run
    /// at its end and the others at `step`.
    pub fn seek_timeline(&mut self, step: u64) {
        let end = self.first_end();
        let last = self.timeline_last();
        let (Some(p), Some(c)) = (self.player.as_mut(), self.compare.as_mut()) else { return };
        match end {
            Some(end) if step > end => {
                if self.view.step < end {
                    p.seek_step(&mut self.view, end);
                }
                p.seek(&mut self.view, p.len());
                c.beyond = Some(step.min(last));
            }
            _ => {
                c.beyond = None;
                c.playing_on = false;
                p.seek_step(&mut self.view, step);
            }
        }
        self.sync_compare();
    }

    /// Replay playback past the first run's end: when the first run's player stopped at
    /// its end while playing (`was_playing`), the longest run plays on. Called after the
    /// first run's tick; returns whether anything moved.
    pub fn tick_timeline(&mut self, was_playing: bool, dt: f64) -> bool {
        let at_end = self.first_end().is_some();
        let (Some(p), Some(c)) = (self.player.as_mut(), self.compare.as_mut()) else { return false };
        if was_playing && !p.playing {
            c.play_through = true;
        }
        if c.play_through && at_end && !c.playing_on {
            c.play_through = false;
            c.playing_on = true;
            c.beyond = Some(c.beyond.unwrap_or(self.view.step).max(self.view.step));
        }
        c.play_on(p.speed, p.uniform, dt)
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

    fn pan(&mut self, right: bool) {
        let (a, b) = self.x_range();
        let step = ((b - a) / 4).max(1);
        let end = if right { b + step } else { b.saturating_sub(step) };
        self.pan_end = if end >= self.view.step { None } else { Some(end) };
    }

    fn on_action(&mut self, a: Action) {
        match a {
            // Nothing to detach from or stop: quit at once.
            Action::Quit if !self.is_live() => self.exit = Some(Exit::Detach),
            Action::Quit => self.mode = Mode::Quit { selected: 0 },
            Action::Pause | Action::SwitchPhase | Action::Checkpoint | Action::Accept | Action::Dismiss
                if !self.is_live() =>
            {
                let k = self.keymap.first_key(a).to_string();
                let what = match a {
                    Action::Pause => "pause",
                    Action::SwitchPhase => "switch",
                    Action::Checkpoint => "checkpoint",
                    Action::Accept => "accept",
                    _ => "dismiss",
                };
                let msg = self.not_live(&format!("{k} ({what})"));
                self.set_status(msg, true);
            }
            Action::Help => self.mode = Mode::Help,
            Action::CommandLine => self.mode = Mode::Command { input: String::new(), history_pos: None },
            Action::Pause => self.send(if self.live_view().paused { Command::Resume } else { Command::Pause }),
            Action::SwitchPhase => {
                let v = self.live_view();
                let current = v.current_phase().map(|p| p.name.clone());
                let selected = v.plan.iter().position(|p| Some(&p.name) != current.as_ref()).unwrap_or(0);
                self.mode = Mode::PhasePicker { selected };
            }
            Action::Accept | Action::Dismiss => match self.live_view().pending_suggestion().map(|s| s.id) {
                Some(id) => self.send(if a == Action::Accept {
                    Command::Accept { id: Some(id) }
                } else {
                    Command::Dismiss { id: Some(id) }
                }),
                None => self.set_status("no pending suggestion", true),
            },
            Action::Checkpoint => self.send(Command::Checkpoint),
            Action::LogScale | Action::IgnoreOutliers | Action::SmoothMore | Action::SmoothLess => {
                let Some(panel) = self.focused_panel().filter(|p| p.is_chart()) else {
                    let k = self.keymap.first_key(a).to_string();
                    return self.set_status(format!("{k} changes the focused chart: focus one with Tab"), true);
                };
                if panel == Panel::Lr && matches!(a, Action::SmoothMore | Action::SmoothLess) {
                    return self.set_status("the learning-rate chart is never smoothed", true);
                }
                let o = self.opts_mut(panel);
                match a {
                    Action::LogScale => o.log_y = !o.log_y,
                    Action::IgnoreOutliers => o.clip = !o.clip,
                    Action::SmoothMore => o.smoothing = ((o.smoothing + 0.1).min(0.99) * 100.0).round() / 100.0,
                    _ => o.smoothing = ((o.smoothing - 0.1).max(0.0) * 100.0).round() / 100.0,
                }
            }
            Action::ZoomIn => self.zoom = (self.zoom + 1).min(30),
            Action::ZoomOut => self.zoom = self.zoom.saturating_sub(1),
            Action::ResetView => {
                self.zoom = 0;
                self.pan_end = None;
                self.cursor = None;
            }
            Action::FullHistory => self.full_history = !self.full_history,
            Action::ToggleBands => match self.compare.as_mut() {
                Some(c) => {
                    let msg = c.cycle_bands();
                    self.set_status(msg, false);
                }
                None => self.set_status("phase bands per run: only when comparing runs (replay RUN_A RUN_B)", true),
            },
            Action::CycleRun => match self.compare.as_ref() {
                Some(c) => {
                    self.rows_run = (self.rows_run + 1) % c.names.len().max(1);
                    self.selected.clear();
                    let msg = format!("signals, events and plan: {}", c.names[self.rows_run]);
                    self.set_status(msg, false);
                }
                None => self.set_status("whose rows: only when comparing runs (replay RUN_A RUN_B)", true),
            },
            Action::ScrubBack | Action::ScrubForward | Action::ToggleUniform => {
                let Some(p) = self.player.as_mut() else {
                    return self.set_status("scrubbing and pacing: only in replay (phasetop replay RUN)", true);
                };
                if a == Action::ToggleUniform {
                    p.set_uniform(!p.uniform);
                    let msg = if p.uniform { "uniform pacing: speed × 10 steps/s" } else { "recorded pacing" };
                    self.set_status(msg, false);
                } else if self.compare.is_some() {
                    // Over the whole timeline, every compared run's steps.
                    let (now, last) = (self.timeline_step(), self.timeline_last());
                    let delta = (last / crate::player::replay::SCRUB_FRACTION).max(1);
                    let to = if a == Action::ScrubForward {
                        now.saturating_add(delta).min(last)
                    } else {
                        now.saturating_sub(delta)
                    };
                    self.seek_timeline(to);
                } else {
                    p.scrub(&mut self.view, a == Action::ScrubForward);
                    self.sync_compare();
                }
            }
            Action::PanLeft => self.pan(false),
            Action::PanRight => self.pan(true),
            Action::CursorLeft | Action::CursorRight => {
                let (a0, b0) = self.x_range();
                let step = ((b0 - a0) / 60).max(1);
                let c = self.cursor.unwrap_or(b0);
                self.cursor =
                    Some(if a == Action::CursorLeft { c.saturating_sub(step).max(a0) } else { (c + step).min(b0) });
            }
            Action::NextPanel => self.focus = (self.focus + 1) % self.panels().len().max(1),
            Action::PrevPanel => {
                let n = self.panels().len().max(1);
                self.focus = (self.focus + n - 1) % n;
            }
            Action::NextLayer => {
                let n = self.view.probe_layers.len();
                self.diversity_layer = match self.diversity_layer {
                    None if n > 0 => Some(0),
                    Some(i) if i + 1 < n => Some(i + 1),
                    _ => None,
                };
            }
            Action::NextDiversityMetric => {
                self.diversity_metric = (self.diversity_metric + 1) % DIVERSITY_METRICS.len()
            }
            // The other modes' actions: their handlers read them (`on_transport_key`, …).
            _ => {}
        }
    }
}

/// The `:` line's own verbs; the run's commands are [`crate::grammar::VERBS`].
pub const VIEW_VERBS: &[&str] = &["goto", "smooth", "layout", "bands", "help"];

/// Every verb the `:` line knows, for completion and errors.
pub fn commands() -> Vec<&'static str> {
    crate::grammar::VERBS.iter().chain(VIEW_VERBS).copied().collect()
}

/// A signal row in words: what the firing means for this metric and what one might do
/// about it (`train_loss flat for 500 steps — consider switching phase (s)`). `switch`
/// is the key that switches phase when the run is live (else the advice names no key);
/// the detector's own message, with its figures, is the row's full text (Enter).
/// `next`: the plan's phase after the one the signal fired in (`None`: it fired in the last
/// phase, so there is nothing to switch to and no row advises it).
pub fn signal_gist(
    detector: &str,
    metric: &str,
    step: u64,
    message: &str,
    switch: Option<&str>,
    next: Option<&str>,
    ascii: bool,
) -> String {
    let dash = if ascii { "-" } else { "—" };
    let key = |what: &str| match next {
        None => "the plan has no later phase".to_string(),
        Some(next) => {
            let what = what.replace("PHASE", next);
            switch.map_or(what.clone(), |k| format!("{what} ({k})"))
        }
    };
    // "… since step N …": the plateau's start.
    let since = message
        .split("since step ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= step);
    let (what, todo) = match detector {
        "plateau" => (
            match since {
                Some(n) => format!("{metric} flat for {} steps", step - n),
                None => format!("{metric} flat"),
            },
            key("consider switching to PHASE"),
        ),
        "change_point" | "changepoint" => (format!("{metric} changed course"), "a new stage may have begun".into()),
        "jump" => {
            let dir = if message.contains("jump down") { "dropped" } else { "jumped" };
            (format!("{metric} {dir}"), key("the stage you waited for? switch to PHASE"))
        }
        "divergence" => (format!("{metric} blew up and stays up"), "lower the lr or branch from before".into()),
        "spike" => (format!("{metric} spiked and came back"), "harmless unless it repeats".into()),
        "collapse" => (format!("{metric} collapsed"), "features lost diversity; try a lower lr".into()),
        _ => return format!("{detector}: {metric}: {message}"),
    };
    format!("{detector}: {what} {dash} {todo}")
}

/// What a detector's firing means, in words, for a signal row's full text.
pub fn detector_meaning(detector: &str) -> Option<&'static str> {
    Some(match detector {
        "plateau" => "the metric stopped improving: consider switching phase (s) or changing the lr (:set lr=…)",
        "change_point" | "changepoint" => {
            "the metric's level or trend changed: a phase of training may have begun or ended"
        }
        "jump" => "a sudden rise or fall, larger than the metric's usual step-to-step noise",
        "divergence" => "the loss went non-finite or far above its running level",
        "collapse" => "a layer's features lost diversity (rank or spread fell well below the start)",
        "spike" => "a short burst of loss that came back down on its own",
        _ => return None,
    })
}
