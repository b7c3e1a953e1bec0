//! One table of key bindings drives both dispatch and the help overlay, so the help can
//! never disagree with what the keys do. Users override keys in a TOML file:
//! `[keys]\nswitch_phase = "S"\nlog_scale = "L"`.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Quit,
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
}

/// (action, name in key files, default keys, help text).
pub const BINDINGS: &[(Action, &str, &[&str], &str)] = &[
    (Action::Quit, "quit", &["q"], "quit (a live run asks: detach or stop it)"),
    (Action::Help, "help", &["?"], "this help"),
    (Action::CommandLine, "command_line", &[":"], "command line (switch, set lr=…, goto, smooth, layout)"),
    (Action::Pause, "pause", &["p"], "pause / resume training"),
    (Action::SwitchPhase, "switch_phase", &["s"], "switch phase (pick, then confirm)"),
    (Action::Accept, "accept", &["a"], "accept the pending suggestion"),
    (Action::Dismiss, "dismiss", &["d"], "dismiss the pending suggestion"),
    (Action::Checkpoint, "checkpoint", &["c"], "checkpoint now"),
    (Action::LogScale, "log_scale", &["l"], "log-scale y axis (focused chart)"),
    (Action::IgnoreOutliers, "ignore_outliers", &["o"], "focused chart: fit y to the 1–99% range (outliers clipped)"),
    (Action::SmoothMore, "smooth_more", &["S"], "focused chart: more smoothing (debiased EMA; never lr)"),
    (Action::SmoothLess, "smooth_less", &["A"], "focused chart: less smoothing"),
    (Action::ZoomIn, "zoom_in", &["+", "="], "zoom in on the step axis"),
    (Action::ZoomOut, "zoom_out", &["-"], "zoom out"),
    (Action::ResetView, "reset_view", &["0"], "reset zoom, pan and cursor (follow live)"),
    (Action::FullHistory, "full_history", &["f"], "full history ↔ recent window"),
    (Action::PanLeft, "pan_left", &["H", "shift+left"], "pan left"),
    (Action::PanRight, "pan_right", &["L", "shift+right"], "pan right"),
    (Action::CursorLeft, "cursor_left", &["left"], "move the value cursor left"),
    (Action::CursorRight, "cursor_right", &["right"], "move the value cursor right"),
    (Action::NextPanel, "next_panel", &["tab", "j", "down"], "focus next panel"),
    (Action::PrevPanel, "prev_panel", &["backtab", "k", "up"], "focus previous panel"),
    (Action::NextLayer, "next_layer", &["]"], "diversity chart: next probed layer"),
    (Action::NextDiversityMetric, "next_diversity_metric", &["m"], "diversity chart: next metric"),
    (Action::ToggleBands, "toggle_bands", &["b"], "compare: phase bands of all runs / each run / none"),
    (Action::CycleRun, "cycle_run", &["r"], "compare: whose signals, events and plan the panels show (next run)"),
    (Action::ScrubBack, "scrub_back", &["(", "ctrl+left"], "replay: jump back 1/20 of the run (scrubber)"),
    (Action::ScrubForward, "scrub_forward", &[")", "ctrl+right"], "replay: jump forward 1/20 of the run"),
    (Action::ToggleUniform, "toggle_uniform", &["u"], "replay: pacing by steps (speed × 10/s) ↔ recorded"),
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
        KeyCode::F(n) => KeyCodeOrd::F(n),
        _ => return None,
    };
    // Shift is part of the character for printable keys; it matters for the others.
    let shift = !matches!(code, KeyCodeOrd::Char(_)) && ev.modifiers.contains(KeyModifiers::SHIFT);
    Some(Key { code, ctrl, shift })
}

#[derive(Debug)]
pub struct Keymap {
    map: BTreeMap<Key, Action>,
    /// Keys per action, for the help overlay and the footer.
    pub keys: BTreeMap<Action, Vec<String>>,
}

impl Keymap {
    /// The defaults, with `overrides` (action name → keys) replacing an action's keys.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, String> {
        for name in overrides.keys() {
            if !BINDINGS.iter().any(|b| b.1 == name) {
                let names: Vec<&str> = BINDINGS.iter().map(|b| b.1).collect();
                return Err(format!("unknown action \"{name}\", expected one of {}", names.join(", ")));
            }
        }
        let mut map = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for (action, name, defaults, _) in BINDINGS {
            let chosen: Vec<String> = match overrides.get(*name) {
                Some(k) => k.clone(),
                None => defaults.iter().map(|s| s.to_string()).collect(),
            };
            for k in &chosen {
                let key = parse_key(k).ok_or_else(|| format!("action \"{name}\": cannot read key \"{k}\""))?;
                if let Some(prev) = map.insert(key, *action)
                    && prev != *action
                {
                    return Err(format!("key \"{k}\" is bound to both {prev:?} and {action:?}"));
                }
            }
            keys.insert(*action, chosen);
        }
        Ok(Keymap { map, keys })
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        key_of(ev).and_then(|k| self.map.get(&k).copied())
    }

    /// Rows for the help overlay, in table order.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        BINDINGS.iter().map(|(a, _, _, help)| (self.keys[a].join(" "), *help)).collect()
    }

    /// Help rows of the actions `keep` accepts (those that work in this session).
    pub fn help_rows_where(&self, keep: impl Fn(Action) -> bool) -> Vec<(String, &'static str)> {
        BINDINGS.iter().filter(|b| keep(b.0)).map(|(a, _, _, help)| (self.keys[a].join(" "), *help)).collect()
    }

    pub fn first_key(&self, a: Action) -> &str {
        self.keys.get(&a).and_then(|k| k.first()).map_or("?", |s| s.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_key_dispatches_to_its_action() {
        let km = Keymap::new(&BTreeMap::new()).unwrap();
        for (action, _, keys, _) in BINDINGS {
            for k in *keys {
                let key = parse_key(k).unwrap();
                assert_eq!(km.map.get(&key), Some(action), "{k}");
            }
        }
        assert_eq!(km.help_rows().len(), BINDINGS.len());
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
    }
}
