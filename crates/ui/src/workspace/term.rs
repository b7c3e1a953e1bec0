//! The workspace's terminal loop: rescans the roots about once a second (live runs
//! move), redraws when something changed, and returns the user's [`Choice`]. The
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

/// How often the roots are listed again.
const RESCAN: Duration = Duration::from_secs(1);

/// The rows of every root, and the roots that could not be listed (with why).
pub type Scan<'a> = dyn FnMut() -> (Vec<RunRow>, Vec<String>) + 'a;

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
        if last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            let (rows, problems) = scan();
            if rows != ws.rows() || problems != ws.problems {
                ws.set_rows(rows);
                ws.problems = problems;
                dirty = true;
            }
            last_scan = Some(Instant::now());
        }
        if dirty {
            term.draw(|f| draw::draw(f, ws, &look))?;
            dirty = false;
        }
        // A closed terminal or a dropped SSH link ends the list (as it ends a dashboard).
        let Input::Events(events) = read_input(Duration::from_millis(100))? else {
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
