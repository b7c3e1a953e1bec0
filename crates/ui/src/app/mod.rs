//! The dashboard's view state and input handling, free of terminal I/O so that it can
//! be driven by tests. Commands for the run go out through a [`CommandSink`].

// The rooms App is made of (types with their own methods; none of them imports App)…
mod charts;
mod help;
mod line_history;
mod rows;
mod signals;
mod status;
// …and App's handlers, each using App and the rooms, never the other way round:
// `keys` dispatches to `modes`, `command_line`, `timeline`, `lists` and `actions`.
mod actions;
pub mod command_line;
mod console;
mod keys;
mod lists;
mod modes;
mod overview;
mod timeline;

pub use charts::{ChartOpts, ChartView, DIVERSITY_METRICS, RECENT_WINDOW};
pub use console::ConsolePane;
pub use help::HelpScroll;
pub use line_history::LineHistory;
pub use rows::Rows;
pub use signals::{detector_meaning, signal_gist};
pub use status::{STATUS_TTL, StatusLine};

use crate::control::Reply;
use crate::event::Command;
use crate::keymap::{Action, Keymap};
use crate::layout::{Layout, Panel};
use crate::model::state::RunView;
use crate::theme::Theme;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// The console pane (the run's own output).
    Console,
    /// A signal or event row's full text (Enter on a focused row).
    Detail {
        title: String,
        lines: Vec<String>,
    },
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

pub struct App {
    pub view: RunView,
    pub keymap: Keymap,
    pub theme: Theme,
    pub layout: Layout,
    pub layouts_dir: PathBuf,
    pub mode: Mode,
    pub link: Link,
    pub focus: usize,
    /// What the charts show: span, zoom, pan, cursor, each chart's options.
    pub charts: ChartView,
    /// ASCII/dot glyphs instead of braille and box-drawing (weak terminals).
    pub ascii: bool,
    /// Opened from the workspace: Esc goes back to its list (the run goes on).
    pub back_to_list: bool,
    pub status: StatusLine,
    /// The list panels' selection and, comparing, whose rows they show.
    pub rows: Rows,
    /// The `:` line's history.
    pub line_history: LineHistory,
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
    /// The help overlay's scrolling.
    pub help: HelpScroll,
    sink: Box<dyn CommandSink>,
    /// A remote run's host (from its sink), said in the header.
    pub remote: Option<String>,
    /// The run's own output (a local run's job.log / host.log); `None`: none to read.
    pub console: Option<console::ConsolePane>,
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
            charts: ChartView::default(),
            ascii: false,
            back_to_list: false,
            status: StatusLine::default(),
            rows: Rows::default(),
            line_history: LineHistory::default(),
            exit: None,
            last_plan_text: None,
            player: None,
            compare: None,
            small: std::cell::Cell::new(false),
            help: HelpScroll::default(),
            remote: sink.remote(),
            sink,
            console: None,
        }
    }

    pub fn focused_panel(&self) -> Option<Panel> {
        self.panels().get(self.focus).copied()
    }

    /// The view whose signals, events and plan the list panels show: the first run's,
    /// or (comparing, after `r`) another's.
    pub fn rows_view(&self) -> &RunView {
        match &self.compare {
            Some(c) if self.rows.run > 0 => c.others.get(self.rows.run - 1).map_or(&self.view, |o| &o.view),
            _ => &self.view,
        }
    }

    /// Comparing: the name of the run the list panels show, for their titles.
    pub fn rows_run_name(&self) -> Option<&str> {
        self.compare.as_ref().map(|c| c.names.get(self.rows.run).map_or("", |n| n.as_str()))
    }

    /// The panels on screen, in focus order.
    pub fn panels(&self) -> Vec<Panel> {
        self.layout.panels_for(self.small.get())
    }

    /// The view options of a chart panel.
    pub fn opts(&self, panel: Panel) -> ChartOpts {
        self.charts.opts(panel)
    }

    /// A status message for the footer, gone after [`STATUS_TTL`].
    pub fn set_status(&mut self, msg: impl Into<String>, error: bool) {
        self.set_status_for(msg, error, STATUS_TTL);
    }

    pub fn set_status_for(&mut self, msg: impl Into<String>, error: bool, ttl: Duration) {
        self.status.set_for(msg, error, ttl);
    }

    /// Drops a status message whose time is up; true when one went (redraw).
    pub fn expire_status(&mut self, now: Instant) -> bool {
        self.status.expire(now)
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
            Action::Back => self.back_to_list,
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
}
