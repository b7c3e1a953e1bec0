//! The workspace's terminal loop: takes the roots' latest listings (made by the caller
//! in the background) every tick, so the first frame with rows comes as soon as a root
//! is listed, redraws when something changed, and returns the user's [`Choice`]. The
//! terminal is the caller's to set up and restore (`crate::terminal`), so a dashboard
//! opened from the list and the list itself share one session of it.

use super::draw::{self, Look};
use super::{Choice, RunRow, Workspace};
use crate::keymap::{Action, Keymap, Section};
use crate::terminal::{Input, read_input};
use crate::theme::Theme;
use anyhow::Result;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the latest listings are taken (cheap: the caller's background listing
/// does the work; this only picks up what it found).
const RESCAN: Duration = Duration::from_millis(100);

/// The roots' latest listings as the list shows them.
#[derive(Debug, Default, PartialEq)]
pub struct Listed {
    /// The rows of every root listed so far.
    pub rows: Vec<RunRow>,
    /// Roots that could not be listed, with why.
    pub problems: Vec<String>,
    /// Roots not listed yet.
    pub pending: Vec<String>,
}

pub type Scan<'a> = dyn FnMut() -> Listed + 'a;

pub struct Setup<'a> {
    pub keymap: &'a Keymap,
    pub theme: &'a Theme,
    pub ascii: bool,
    pub roots: &'a str,
    /// Set by SIGINT/SIGTERM/SIGHUP: the list ends as if `q` was pressed.
    pub quit: &'a AtomicBool,
}

/// Runs the list on `term` until the user chooses; `ws` keeps its state for the next call.
pub fn run<B: ratatui::backend::Backend>(
    term: &mut ratatui::Terminal<B>,
    ws: &mut Workspace,
    scan: &mut Scan,
    setup: &Setup,
) -> Result<Choice>
where
    B::Error: Send + Sync + 'static,
{
    let look = Look { theme: setup.theme, keymap: setup.keymap, ascii: setup.ascii, roots: setup.roots };
    let mut last_scan: Option<Instant> = None;
    let mut dirty = true;
    loop {
        if setup.quit.load(Ordering::Relaxed) {
            return Ok(Choice::Quit);
        }
        // While a root is still being listed, look every tick: its rows show at once.
        let waiting = !ws.pending.is_empty();
        if waiting || last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            let listed = scan();
            if listed.rows != ws.rows() || listed.problems != ws.problems || listed.pending != ws.pending {
                ws.set_rows(listed.rows);
                ws.problems = listed.problems;
                ws.pending = listed.pending;
                dirty = true;
            }
            last_scan = Some(Instant::now());
        }
        if dirty {
            term.draw(|f| draw::draw(f, ws, &look))?;
            dirty = false;
        }
        // A closed terminal or a dropped SSH link ends the list (as it ends a dashboard).
        let tick = Duration::from_millis(if ws.pending.is_empty() { 100 } else { 10 });
        let Input::Events(events) = read_input(tick)? else {
            return Ok(Choice::Quit);
        };
        for ev in events {
            match ev {
                TermEvent::Resize(..) => dirty = true,
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    dirty = true;
                    if let Some(choice) = key(ws, setup.keymap, &k) {
                        return Ok(choice);
                    }
                }
                _ => {}
            }
        }
    }
}

/// One key: the filter's text while it is edited, the help's scrolling while it is
/// open, else the list's action.
fn key(ws: &mut Workspace, keymap: &Keymap, k: &event::KeyEvent) -> Option<Choice> {
    if ws.editing_filter {
        match k.code {
            KeyCode::Enter => ws.editing_filter = false,
            KeyCode::Esc => {
                ws.editing_filter = false;
                ws.act(Action::WsClearFilter);
            }
            KeyCode::Backspace => ws.filter_input(None),
            KeyCode::Char(c) if !c.is_control() => ws.filter_input(Some(c)),
            _ => {}
        }
        return None;
    }
    if ws.help {
        match keymap.action_in(Section::Help, k) {
            Some(Action::HelpDown) => ws.help_scroll = ws.help_scroll.saturating_add(1),
            Some(Action::HelpUp) => ws.help_scroll = ws.help_scroll.saturating_sub(1),
            Some(Action::HelpPageDown) => ws.help_scroll = ws.help_scroll.saturating_add(10),
            Some(Action::HelpPageUp) => ws.help_scroll = ws.help_scroll.saturating_sub(10),
            Some(Action::HelpTop) => ws.help_scroll = 0,
            Some(Action::HelpBottom) => ws.help_scroll = 200,
            Some(Action::HelpClose) => ws.help = false,
            _ => {}
        }
        return None;
    }
    let action = keymap.action_in(Section::Workspace, k).or_else(|| {
        // `?` is the dashboard's help key, wherever the user moved it.
        (keymap.action(k) == Some(Action::Help)).then_some(Action::Help)
    })?;
    ws.act(action)
}
