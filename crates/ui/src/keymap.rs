//! One table of key bindings drives both dispatch and the help overlay, so the help can
//! never disagree with what the keys do. Every key is in it, one section per mode (as
//! yazi's keymap has): the dashboard, the transport (a replay's, and a live run's
//! history; checked before the dashboard's keys, so the two share none), a focused list
//! panel, the help overlay, the quit dialog, the phase picker, a yes/no confirmation and
//! the `:` line (whose typed characters are text, not bindings). Users override keys in
//! a TOML file by action name, unique across sections: `[keys]\nswitch_phase = "S"`.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
    Back,
    Console,
    Overview,
    Help,
    Pause,
    SwitchPhase,
    Accept,
    Dismiss,
    Checkpoint,
    LogScale,
    ZoomIn,
    ZoomOut,
    ResetView,
    PanLeft,
    PanRight,
    CursorLeft,
    CursorRight,
    NextPanel,
    PrevPanel,
    NextLayer,
    NextDiversityMetric,
    SmoothMore,
    SmoothLess,
    IgnoreOutliers,
    FullHistory,
    CommandLine,
    ToggleBands,
    CycleRun,
    ScrubBack,
    ScrubForward,
    ToggleUniform,
    // The transport (a replay, a live run's history).
    PlayPause,
    Slower,
    Faster,
    StepBack,
    StepForward,
    GotoStart,
    GotoEnd,
    PrevPhaseChange,
    NextPhaseChange,
    PrevSignal,
    NextSignal,
    // A focused signals or events panel.
    RowNext,
    RowPrev,
    RowsPageDown,
    RowsPageUp,
    RowsNewest,
    RowsOldest,
    RowOpen,
    // The help overlay.
    HelpDown,
    HelpUp,
    HelpPageDown,
    HelpPageUp,
    HelpTop,
    HelpBottom,
    HelpClose,
    // The quit dialog.
    QuitDetach,
    QuitStop,
    QuitNextChoice,
    QuitChoose,
    // The phase picker.
    PickPrev,
    PickNext,
    PickChoose,
    // A yes/no question (a switch, a plan edit): any other key says no.
    ConfirmYes,
    // The `:` line.
    LineRun,
    LineComplete,
    LineHistoryPrev,
    LineHistoryNext,
    LineDeleteBack,
    LineCancel,
    // The console pane (the run's own output).
    ConsoleDown,
    ConsoleUp,
    ConsolePageDown,
    ConsolePageUp,
    ConsoleTop,
    ConsoleFollow,
    ConsoleClose,
    // The workspace's run list (`phasetop workspace`).
    WsDown,
    WsUp,
    WsPageDown,
    WsPageUp,
    WsTop,
    WsBottom,
    WsSelect,
    WsCompare,
    WsOpen,
    WsFilter,
    WsClearFilter,
    WsQuit,
}

/// The modes a key is read in; each has its own section of [`BINDINGS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    Dashboard,
    Transport,
    List,
    Help,
    Quit,
    Picker,
    Confirm,
    Line,
    Console,
    Workspace,
}

impl Section {
    pub const ALL: [Section; 10] = [
        Section::Dashboard,
        Section::Transport,
        Section::List,
        Section::Help,
        Section::Quit,
        Section::Picker,
        Section::Confirm,
        Section::Line,
        Section::Console,
        Section::Workspace,
    ];

    /// The heading of its part of the help overlay.
    pub fn title(self) -> &'static str {
        match self {
            Section::Dashboard => "dashboard",
            Section::Transport => "transport: replay, a live run's history (before the dashboard's keys)",
            Section::List => "signals/events panel focused (other keys: the dashboard's)",
            Section::Help => "this help",
            Section::Quit => "q → quit dialog (live runs; any other key cancels)",
            Section::Picker => "s → phase picker (any other key cancels)",
            Section::Confirm => "confirm a switch or a plan edit (any other key cancels)",
            Section::Line => ": line (typed characters are the command)",
            Section::Console => "O → console: the run's output, job.log / host.log (any other key is ignored)",
            Section::Workspace => "workspace: the run list (Esc in a run opened from it comes back here)",
        }
    }
}

/// (mode, action, name in key files, default keys, help text), one section per mode.
pub const BINDINGS: &[(Section, Action, &str, &[&str], &str)] = &[
    (Section::Dashboard, Action::Quit, "quit", &["q"], "quit (a live run asks: detach or stop it)"),
    (Section::Dashboard, Action::Help, "help", &["?"], "this help"),
    (
        Section::Dashboard,
        Action::Overview,
        "overview",
        &["i"],
        "run overview: config, tags, notes, summary, last values",
    ),
    (Section::Dashboard, Action::Console, "console", &["O"], "console: the run's own output (job.log, host.log)"),
    (Section::Dashboard, Action::Back, "back", &["esc"], "back to the workspace's list (a run opened from it)"),
    (
        Section::Dashboard,
        Action::CommandLine,
        "command_line",
        &[":"],
        "command line (switch, set lr=…, goto, smooth, layout)",
    ),
    (Section::Dashboard, Action::Pause, "pause", &["p"], "pause / resume training"),
    (Section::Dashboard, Action::SwitchPhase, "switch_phase", &["s"], "switch phase (pick, then confirm)"),
    (Section::Dashboard, Action::Accept, "accept", &["a"], "accept the pending suggestion"),
    (Section::Dashboard, Action::Dismiss, "dismiss", &["d"], "dismiss the pending suggestion"),
    (Section::Dashboard, Action::Checkpoint, "checkpoint", &["c"], "checkpoint now"),
    (Section::Dashboard, Action::LogScale, "log_scale", &["l"], "log-scale y axis (focused chart)"),
    (
        Section::Dashboard,
        Action::IgnoreOutliers,
        "ignore_outliers",
        &["o"],
        "focused chart: fit y to the 1–99% range (outliers clipped)",
    ),
    (
        Section::Dashboard,
        Action::SmoothMore,
        "smooth_more",
        &["S"],
        "focused chart: more smoothing (debiased EMA; never lr)",
    ),
    (Section::Dashboard, Action::SmoothLess, "smooth_less", &["A"], "focused chart: less smoothing"),
    (Section::Dashboard, Action::ZoomIn, "zoom_in", &["+", "="], "zoom in on the step axis"),
    (Section::Dashboard, Action::ZoomOut, "zoom_out", &["-"], "zoom out"),
    (Section::Dashboard, Action::ResetView, "reset_view", &["0"], "reset zoom, pan and cursor (follow live)"),
    (Section::Dashboard, Action::FullHistory, "full_history", &["f"], "full history ↔ recent window"),
    (Section::Dashboard, Action::PanLeft, "pan_left", &["H", "shift+left"], "pan left"),
    (Section::Dashboard, Action::PanRight, "pan_right", &["L", "shift+right"], "pan right"),
    (Section::Dashboard, Action::CursorLeft, "cursor_left", &["left"], "move the value cursor left"),
    (Section::Dashboard, Action::CursorRight, "cursor_right", &["right"], "move the value cursor right"),
    (Section::Dashboard, Action::NextPanel, "next_panel", &["tab", "j", "down"], "focus next panel"),
    (Section::Dashboard, Action::PrevPanel, "prev_panel", &["backtab", "k", "up"], "focus previous panel"),
    (Section::Dashboard, Action::NextLayer, "next_layer", &["n"], "diversity chart: next probed layer"),
    (Section::Dashboard, Action::NextDiversityMetric, "next_diversity_metric", &["m"], "diversity chart: next metric"),
    (
        Section::Dashboard,
        Action::ToggleBands,
        "toggle_bands",
        &["b"],
        "compare: phase bands of all runs / each run / none",
    ),
    (
        Section::Dashboard,
        Action::CycleRun,
        "cycle_run",
        &["r"],
        "compare: whose signals, events and plan the panels show (next run)",
    ),
    (
        Section::Dashboard,
        Action::ScrubBack,
        "scrub_back",
        &["(", "ctrl+left"],
        "replay, history: jump back 1/20 of the run (scrubber)",
    ),
    (
        Section::Dashboard,
        Action::ScrubForward,
        "scrub_forward",
        &[")", "ctrl+right"],
        "replay, history: jump forward 1/20 of the run",
    ),
    (
        Section::Dashboard,
        Action::ToggleUniform,
        "toggle_uniform",
        &["u"],
        "replay, history: pacing by steps (speed × 10/s) ↔ recorded",
    ),
    (Section::Transport, Action::PlayPause, "play_pause", &["space"], "play / pause (live: hold the view here)"),
    (Section::Transport, Action::Slower, "slower", &["<"], "slower"),
    (Section::Transport, Action::Faster, "faster", &[">"], "faster"),
    (Section::Transport, Action::StepBack, "step_back", &[","], "one event back (pauses)"),
    (Section::Transport, Action::StepForward, "step_forward", &["."], "one event forward (pauses)"),
    (Section::Transport, Action::GotoStart, "goto_start", &["g"], "the start"),
    (Section::Transport, Action::GotoEnd, "goto_end", &["G"], "the end (live: back to following the run)"),
    (Section::Transport, Action::PrevPhaseChange, "prev_phase_change", &["["], "previous phase change"),
    (Section::Transport, Action::NextPhaseChange, "next_phase_change", &["]"], "next phase change"),
    (Section::Transport, Action::PrevSignal, "prev_signal", &["{"], "previous signal"),
    (Section::Transport, Action::NextSignal, "next_signal", &["}"], "next signal"),
    (Section::List, Action::RowNext, "row_next", &["j", "down"], "select an older row"),
    (Section::List, Action::RowPrev, "row_prev", &["k", "up"], "select a newer row"),
    (Section::List, Action::RowsPageDown, "rows_page_down", &["pagedown"], "10 rows older"),
    (Section::List, Action::RowsPageUp, "rows_page_up", &["pageup"], "10 rows newer"),
    (Section::List, Action::RowsNewest, "rows_newest", &["home", "esc"], "follow the newest rows"),
    (Section::List, Action::RowsOldest, "rows_oldest", &["end"], "the oldest row"),
    (Section::List, Action::RowOpen, "row_open", &["enter"], "open the row's full text (any key closes it)"),
    (Section::Help, Action::HelpDown, "help_down", &["j", "down"], "scroll down"),
    (Section::Help, Action::HelpUp, "help_up", &["k", "up"], "scroll up"),
    (Section::Help, Action::HelpPageDown, "help_page_down", &["pagedown", "space"], "a page down"),
    (Section::Help, Action::HelpPageUp, "help_page_up", &["pageup"], "a page up"),
    (Section::Help, Action::HelpTop, "help_top", &["home", "g"], "the top"),
    (Section::Help, Action::HelpBottom, "help_bottom", &["end", "G"], "the bottom"),
    (Section::Help, Action::HelpClose, "help_close", &["?", "esc"], "close"),
    (Section::Quit, Action::QuitDetach, "quit_detach", &["d"], "detach (training goes on)"),
    (Section::Quit, Action::QuitStop, "quit_stop", &["s"], "stop the run"),
    (Section::Quit, Action::QuitNextChoice, "quit_next_choice", &["left", "right", "tab"], "next choice"),
    (Section::Quit, Action::QuitChoose, "quit_choose", &["enter"], "take the highlighted choice"),
    (Section::Picker, Action::PickPrev, "pick_prev", &["k", "up"], "previous phase"),
    (Section::Picker, Action::PickNext, "pick_next", &["j", "down", "tab"], "next phase"),
    (Section::Picker, Action::PickChoose, "pick_choose", &["enter"], "choose it (then confirm)"),
    (Section::Confirm, Action::ConfirmYes, "confirm_yes", &["y", "enter"], "yes"),
    (Section::Line, Action::LineRun, "line_run", &["enter"], "run the command"),
    (Section::Line, Action::LineComplete, "line_complete", &["tab"], "complete the word"),
    (Section::Line, Action::LineHistoryPrev, "line_history_prev", &["up"], "previous command"),
    (Section::Line, Action::LineHistoryNext, "line_history_next", &["down"], "next command"),
    (Section::Line, Action::LineDeleteBack, "line_delete_back", &["backspace"], "delete a character"),
    (Section::Line, Action::LineCancel, "line_cancel", &["esc"], "cancel"),
    (Section::Console, Action::ConsoleUp, "console_up", &["k", "up"], "a line up (older)"),
    (Section::Console, Action::ConsoleDown, "console_down", &["j", "down"], "a line down (newer)"),
    (Section::Console, Action::ConsolePageUp, "console_page_up", &["pageup"], "a page up"),
    (Section::Console, Action::ConsolePageDown, "console_page_down", &["pagedown", "space"], "a page down"),
    (Section::Console, Action::ConsoleTop, "console_top", &["home", "g"], "the oldest line kept"),
    (Section::Console, Action::ConsoleFollow, "console_follow", &["end", "G"], "the end: follow new output"),
    (Section::Console, Action::ConsoleClose, "console_close", &["esc"], "close"),
    (Section::Workspace, Action::WsDown, "ws_down", &["j", "down"], "next run"),
    (Section::Workspace, Action::WsUp, "ws_up", &["k", "up"], "previous run"),
    (Section::Workspace, Action::WsPageDown, "ws_page_down", &["pagedown"], "10 runs down"),
    (Section::Workspace, Action::WsPageUp, "ws_page_up", &["pageup"], "10 runs up"),
    (Section::Workspace, Action::WsTop, "ws_top", &["home", "g"], "the first run"),
    (Section::Workspace, Action::WsBottom, "ws_bottom", &["end", "G"], "the last run"),
    (Section::Workspace, Action::WsSelect, "ws_select", &["space"], "select / unselect the run (for compare)"),
    (Section::Workspace, Action::WsCompare, "ws_compare", &["c"], "compare the selected runs"),
    (Section::Workspace, Action::WsOpen, "ws_open", &["enter"], "open the run (live: attach; finished: replay)"),
    (
        Section::Workspace,
        Action::WsFilter,
        "ws_filter",
        &["/"],
        "filter: words match name, config, phase or tag; status: config: tag: phase: one field",
    ),
    (Section::Workspace, Action::WsClearFilter, "ws_clear_filter", &["esc"], "clear the filter"),
    (Section::Workspace, Action::WsQuit, "ws_quit", &["q"], "quit"),
];

/// A key as written in key files: `q`, `?`, `shift+left`, `ctrl+c`, `tab`, `f1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub shift: bool,
}

/// `KeyCode` subset with an order, so keys can live in maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeOrd {
    Char(char),
    Left,
    Right,
    Up,
    Down,
    Tab,
    BackTab,
    Enter,
    Esc,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
    F(u8),
}

pub fn parse_key(s: &str) -> Option<Key> {
    let mut ctrl = false;
    let mut shift = false;
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix("ctrl+") {
            ctrl = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("shift+") {
            shift = true;
            rest = r;
        } else {
            break;
        }
    }
    let code = match rest {
        "left" => KeyCodeOrd::Left,
        "right" => KeyCodeOrd::Right,
        "up" => KeyCodeOrd::Up,
        "down" => KeyCodeOrd::Down,
        "tab" => KeyCodeOrd::Tab,
        "backtab" => KeyCodeOrd::BackTab,
        "enter" => KeyCodeOrd::Enter,
        "esc" => KeyCodeOrd::Esc,
        "pageup" => KeyCodeOrd::PageUp,
        "pagedown" => KeyCodeOrd::PageDown,
        "home" => KeyCodeOrd::Home,
        "end" => KeyCodeOrd::End,
        "backspace" => KeyCodeOrd::Backspace,
        "space" => KeyCodeOrd::Char(' '),
        f if f.len() > 1 && f.starts_with('f') => KeyCodeOrd::F(f[1..].parse().ok()?),
        c if c.chars().count() == 1 => KeyCodeOrd::Char(c.chars().next()?),
        _ => return None,
    };
    Some(Key { code, ctrl, shift })
}

pub fn key_of(ev: &KeyEvent) -> Option<Key> {
    let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
    let code = match ev.code {
        KeyCode::Char(c) => KeyCodeOrd::Char(c),
        KeyCode::Left => KeyCodeOrd::Left,
        KeyCode::Right => KeyCodeOrd::Right,
        KeyCode::Up => KeyCodeOrd::Up,
        KeyCode::Down => KeyCodeOrd::Down,
        KeyCode::Tab => KeyCodeOrd::Tab,
        KeyCode::BackTab => KeyCodeOrd::BackTab,
        KeyCode::Enter => KeyCodeOrd::Enter,
        KeyCode::Esc => KeyCodeOrd::Esc,
        KeyCode::PageUp => KeyCodeOrd::PageUp,
        KeyCode::PageDown => KeyCodeOrd::PageDown,
        KeyCode::Home => KeyCodeOrd::Home,
        KeyCode::End => KeyCodeOrd::End,
        KeyCode::Backspace => KeyCodeOrd::Backspace,
        KeyCode::F(n) => KeyCodeOrd::F(n),
        _ => return None,
    };
    // Shift is part of the character for printable keys; it matters for the others.
    let shift = !matches!(code, KeyCodeOrd::Char(_)) && ev.modifiers.contains(KeyModifiers::SHIFT);
    Some(Key { code, ctrl, shift })
}

#[derive(Debug)]
pub struct Keymap {
    map: BTreeMap<(Section, Key), Action>,
    /// Keys per action, for the help overlay and the footer.
    pub keys: BTreeMap<Action, Vec<String>>,
}

impl Keymap {
    /// The defaults, with `overrides` (action name → keys) replacing an action's keys.
    /// A key bound twice in one mode is an error (the transport and the dashboard
    /// count as one mode: both are read together).
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, String> {
        for name in overrides.keys() {
            if !BINDINGS.iter().any(|b| b.2 == name) {
                let names: Vec<&str> = BINDINGS.iter().map(|b| b.2).collect();
                return Err(format!("unknown action \"{name}\", expected one of {}", names.join(", ")));
            }
        }
        let mut map = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for (section, action, name, defaults, _) in BINDINGS {
            let chosen: Vec<String> = match overrides.get(*name) {
                Some(k) => k.clone(),
                None => defaults.iter().map(|s| s.to_string()).collect(),
            };
            for k in &chosen {
                let key = parse_key(k).ok_or_else(|| format!("action \"{name}\": cannot read key \"{k}\""))?;
                for other in shares_keys(*section) {
                    if let Some(prev) = map.get(&(other, key))
                        && prev != action
                    {
                        return Err(format!("key \"{k}\" is bound to both {prev:?} and {action:?}"));
                    }
                }
                map.insert((*section, key), *action);
            }
            keys.insert(*action, chosen);
        }
        Ok(Keymap { map, keys })
    }

    /// The dashboard's action for a key.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        self.action_in(Section::Dashboard, ev)
    }

    /// The action a key means in `section`.
    pub fn action_in(&self, section: Section, ev: &KeyEvent) -> Option<Action> {
        key_of(ev).and_then(|k| self.map.get(&(section, k)).copied())
    }

    /// Rows for the help overlay, in table order.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        self.help_rows_where(|_| true)
    }

    /// Help rows of the actions `keep` accepts (those that work in this session).
    pub fn help_rows_where(&self, keep: impl Fn(Action) -> bool) -> Vec<(String, &'static str)> {
        BINDINGS.iter().filter(|b| keep(b.1)).map(|(_, a, _, _, help)| (self.keys[a].join(" "), *help)).collect()
    }

    /// The help overlay's sections: each mode's heading and rows (those `keep` accepts),
    /// modes whose rows are all left out omitted.
    pub fn help_sections(&self, keep: impl Fn(Section, Action) -> bool) -> Vec<(Section, Vec<(String, &'static str)>)> {
        Section::ALL
            .iter()
            .map(|&sec| {
                let rows = BINDINGS
                    .iter()
                    .filter(|b| b.0 == sec && keep(sec, b.1))
                    .map(|(_, a, _, _, help)| (self.keys[a].join(" "), *help))
                    .collect::<Vec<_>>();
                (sec, rows)
            })
            .filter(|(_, rows)| !rows.is_empty())
            .collect()
    }

    pub fn first_key(&self, a: Action) -> &str {
        self.keys.get(&a).and_then(|k| k.first()).map_or("?", |s| s.as_str())
    }
}

/// The sections whose keys are read together with `s`'s (so none may share a key).
fn shares_keys(s: Section) -> Vec<Section> {
    match s {
        Section::Dashboard => vec![Section::Dashboard, Section::Transport],
        Section::Transport => vec![Section::Transport, Section::Dashboard],
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_key_dispatches_to_its_action_in_its_mode() {
        let km = Keymap::new(&BTreeMap::new()).unwrap();
        for (section, action, _, keys, _) in BINDINGS {
            for k in *keys {
                let key = parse_key(k).unwrap();
                assert_eq!(km.map.get(&(*section, key)), Some(action), "{k} in {section:?}");
            }
        }
        assert_eq!(km.help_rows().len(), BINDINGS.len());
    }

    /// Every binding is in the help once, under its mode; no key is bound twice in one
    /// mode (the transport is read with the dashboard's keys: `]` was both).
    #[test]
    fn every_binding_is_in_the_help_once_and_no_key_is_bound_twice_in_a_mode() {
        let km = Keymap::new(&BTreeMap::new()).unwrap();
        let sections = km.help_sections(|_, _| true);
        assert_eq!(sections.len(), Section::ALL.len(), "every mode has a section");
        for (section, action, _, _, help) in BINDINGS {
            let rows = &sections.iter().find(|(s, _)| s == section).unwrap().1;
            let keys = km.keys[action].join(" ");
            let n = rows.iter().filter(|(k, h)| *k == keys && h == help).count();
            assert_eq!(n, 1, "{action:?} appears {n} times under {section:?}");
        }
        let total: usize = sections.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(total, BINDINGS.len(), "nothing else in the help's key rows");
        for group in
            [vec![Section::Dashboard, Section::Transport]].into_iter().chain(Section::ALL.iter().map(|s| vec![*s]))
        {
            let mut seen = std::collections::BTreeSet::new();
            for (section, _, _, keys, _) in BINDINGS.iter().filter(|b| group.contains(&b.0)) {
                for k in *keys {
                    assert!(seen.insert(parse_key(k).unwrap()), "{k} bound twice in {group:?} (at {section:?})");
                }
            }
        }
        let names: std::collections::BTreeSet<&str> = BINDINGS.iter().map(|b| b.2).collect();
        assert_eq!(names.len(), BINDINGS.len(), "action names are unique across sections");
    }

    #[test]
    fn overrides_replace_keys_and_bad_names_are_errors() {
        let o = BTreeMap::from([("log_scale".to_string(), vec!["y".to_string()])]);
        let km = Keymap::new(&o).unwrap();
        let y = KeyEvent::new(KeyCode::Char('y'), KeyModifiers::NONE);
        assert_eq!(km.action(&y), Some(Action::LogScale));
        let o = BTreeMap::from([("logscale".to_string(), vec!["y".to_string()])]);
        assert!(Keymap::new(&o).unwrap_err().contains("unknown action \"logscale\""));
        let o = BTreeMap::from([("log_scale".to_string(), vec!["q".to_string()])]);
        assert!(Keymap::new(&o).is_err(), "q is already quit");
        let o = BTreeMap::from([("log_scale".to_string(), vec!["G".to_string()])]);
        assert!(Keymap::new(&o).is_err(), "G is replay's goto_end");
        // A key of another mode is free: y is also the confirmation's yes.
        assert_eq!(km.action_in(Section::Confirm, &y), Some(Action::ConfirmYes));
    }
}
