//! The workspace (`phasetop workspace [ROOT|user@host:ROOT …]`): every run under the
//! roots as one list — name, config, status, phase, step, age, last loss and a
//! sparkline — that a filter narrows, a selection feeds to compare, and Enter opens.
//!
//! This room holds the list's state and its keys ([`Workspace`], pure and tested here),
//! its drawing (`draw`) and its terminal loop (`term`). Where the rows come from (local
//! run summaries, a remote `ls --json` over ssh) and what opening a run means (attach,
//! replay, compare) is the caller's: [`term::run`] returns a [`Choice`] and is called
//! again with the same `Workspace`, so the cursor, selection and filter survive a visit.

pub mod draw;
pub mod term;

use crate::keymap::Action;
use std::collections::BTreeSet;

/// One run as the list shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRow {
    /// Unique across roots: what opening it needs (a local path, or `user@host:path`).
    pub key: String,
    /// The run directory's name.
    pub name: String,
    /// `user@host` for a remote root; empty for a local one.
    pub host: String,
    pub config: String,
    /// `live`, `completed`, `stopped`, `failed`, `diverged`, `stale`, `paused`, …
    pub status: String,
    pub phase: String,
    pub step: u64,
    /// Seconds since the run last wrote its log.
    pub age_s: Option<u64>,
    pub last_loss: Option<f64>,
    /// Recent `train_loss` values, oldest first (a few dozen at most).
    pub spark: Vec<f64>,
    pub tags: Vec<String>,
}

impl RunRow {
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "live" | "running" | "paused")
    }
}

/// What the user asked the workspace for.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Quit,
    /// Enter: one run's dashboard (live → attach, finished → replay).
    Open(Box<RunRow>),
    /// `c`: the selected runs (two or more) in compare.
    Compare(Vec<RunRow>),
}

/// The list, its filter, cursor and selection.
#[derive(Debug, Default)]
pub struct Workspace {
    rows: Vec<RunRow>,
    /// The filter as typed: terms that must all match (see [`Filter`]).
    pub filter: String,
    /// `/` was pressed: typed characters go to the filter until Enter or Esc.
    pub editing_filter: bool,
    /// The cursor, as the key of the run it is on (so a rescan keeps it there).
    cursor: Option<String>,
    /// Selected runs' keys (Space).
    pub selected: BTreeSet<String>,
    /// A line for the footer: why a key did nothing, a root that did not answer.
    pub message: Option<String>,
    /// Roots that could not be listed, with why (shown above the list).
    pub problems: Vec<String>,
    /// Roots not listed yet (a first `ls` over ssh takes seconds): the list says it is
    /// still listing them rather than that there are no runs.
    pub pending: Vec<String>,
    pub help: bool,
    pub help_scroll: u16,
}

impl Workspace {
    /// New rows from a scan: the cursor stays on its run (or the nearest place), and
    /// selected runs that vanished are dropped from the selection.
    pub fn set_rows(&mut self, mut rows: Vec<RunRow>) {
        // Live runs first, then the most recently written; the name breaks ties.
        rows.sort_by(|a, b| {
            (!a.is_live(), a.age_s.unwrap_or(u64::MAX), &a.name).cmp(&(
                !b.is_live(),
                b.age_s.unwrap_or(u64::MAX),
                &b.name,
            ))
        });
        self.rows = rows;
        let keys: BTreeSet<&str> = self.rows.iter().map(|r| r.key.as_str()).collect();
        self.selected.retain(|k| keys.contains(k.as_str()));
        let gone = self.cursor.as_ref().is_none_or(|c| !keys.contains(c.as_str()));
        if gone {
            self.cursor = self.visible().first().map(|r| r.key.clone());
        }
    }

    pub fn rows(&self) -> &[RunRow] {
        &self.rows
    }

    /// The rows the filter lets through, in list order.
    pub fn visible(&self) -> Vec<&RunRow> {
        let f = Filter::parse(&self.filter);
        self.rows.iter().filter(|r| f.matches(r)).collect()
    }

    /// The cursor's index among the visible rows.
    pub fn cursor_index(&self) -> Option<usize> {
        let vis = self.visible();
        let c = self.cursor.as_deref()?;
        vis.iter().position(|r| r.key == c)
    }

    pub fn current(&self) -> Option<&RunRow> {
        let c = self.cursor.as_deref()?;
        self.visible().into_iter().find(|r| r.key == c)
    }

    fn move_cursor(&mut self, by: isize) {
        let vis = self.visible();
        if vis.is_empty() {
            self.cursor = None;
            return;
        }
        let at = self.cursor_index().unwrap_or(0) as isize;
        let to = (at + by).clamp(0, vis.len() as isize - 1) as usize;
        self.cursor = Some(vis[to].key.clone());
    }

    /// A character typed while editing the filter; the cursor moves to the first match
    /// when its run is filtered out.
    pub fn filter_input(&mut self, c: Option<char>) {
        match c {
            Some(c) => self.filter.push(c),
            None => {
                self.filter.pop();
            }
        }
        if self.cursor_index().is_none() {
            self.cursor = self.visible().first().map(|r| r.key.clone());
        }
    }

    /// The list's action for a key; `Some` when the workspace should return a choice.
    pub fn act(&mut self, action: Action) -> Option<Choice> {
        self.message = None;
        match action {
            Action::WsQuit => return Some(Choice::Quit),
            Action::Help => {
                self.help = true;
                self.help_scroll = 0;
            }
            Action::WsDown => self.move_cursor(1),
            Action::WsUp => self.move_cursor(-1),
            Action::WsPageDown => self.move_cursor(10),
            Action::WsPageUp => self.move_cursor(-10),
            Action::WsTop => self.move_cursor(isize::MIN / 2),
            Action::WsBottom => self.move_cursor(isize::MAX / 2),
            Action::WsFilter => self.editing_filter = true,
            Action::WsClearFilter => {
                self.filter.clear();
                if self.cursor.is_none() {
                    self.move_cursor(0);
                }
            }
            Action::WsSelect => {
                if let Some(key) = self.current().map(|r| r.key.clone())
                    && !self.selected.remove(&key)
                {
                    self.selected.insert(key);
                }
                self.move_cursor(1);
            }
            Action::WsCompare => {
                // The selection in list order; with none, the cursor's run alone is not
                // a comparison.
                let picked: Vec<RunRow> =
                    self.rows.iter().filter(|r| self.selected.contains(&r.key)).cloned().collect();
                if picked.len() < 2 {
                    self.message = Some(format!(
                        "compare needs two or more runs: select them with space ({} selected)",
                        picked.len()
                    ));
                } else {
                    return Some(Choice::Compare(picked));
                }
            }
            Action::WsOpen => match self.current() {
                Some(r) => return Some(Choice::Open(Box::new(r.clone()))),
                None => self.message = Some("no run here: the filter hides them all, or there are none".into()),
            },
            _ => {}
        }
        None
    }
}

/// The filter: whitespace-separated terms, all of which must match. `status:S`,
/// `config:C`, `tag:T`, `phase:P` match that field (a substring, any case); any other
/// term is a substring of the name, config, phase, host or a tag.
#[derive(Debug, Default)]
pub struct Filter {
    terms: Vec<(Option<&'static str>, String)>,
}

impl Filter {
    pub fn parse(text: &str) -> Filter {
        let terms = text
            .split_whitespace()
            .map(|t| {
                for field in ["status", "config", "tag", "phase"] {
                    if let Some(v) = t.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
                        return (Some(field), v.to_lowercase());
                    }
                }
                (None, t.to_lowercase())
            })
            .collect();
        Filter { terms }
    }

    pub fn matches(&self, r: &RunRow) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(needle);
        self.terms.iter().all(|(field, v)| match field {
            Some("status") => has(&r.status, v),
            Some("config") => has(&r.config, v),
            Some("phase") => has(&r.phase, v),
            Some(_) => r.tags.iter().any(|t| has(t, v)),
            None => {
                has(&r.name, v)
                    || has(&r.config, v)
                    || has(&r.phase, v)
                    || has(&r.host, v)
                    || r.tags.iter().any(|t| has(t, v))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, config: &str, status: &str, age: u64) -> RunRow {
        RunRow {
            key: format!("runs/{name}"),
            name: name.into(),
            config: config.into(),
            status: status.into(),
            age_s: Some(age),
            ..RunRow::default()
        }
    }

    fn ws() -> Workspace {
        let mut w = Workspace::default();
        w.set_rows(vec![
            row("a", "demo", "completed", 50),
            row("b", "parity", "completed", 10),
            row("c", "demo", "live", 1000),
            row("d", "demo", "failed", 5),
        ]);
        w
    }

    #[test]
    fn live_runs_come_first_then_the_newest() {
        let w = ws();
        let names: Vec<&str> = w.visible().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c", "d", "b", "a"]);
        assert_eq!(w.current().map(|r| r.name.as_str()), Some("c"));
    }

    #[test]
    fn the_filter_narrows_by_field_and_by_substring() {
        let mut w = ws();
        w.filter = "config:demo status:comp".into();
        assert_eq!(w.visible().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
        w.filter = "PAR".into();
        assert_eq!(w.visible().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["b"]);
        w.filter = "nothing-like-it".into();
        assert!(w.visible().is_empty());
        assert_eq!(w.act(Action::WsOpen), None);
        assert!(w.message.as_deref().unwrap_or_default().contains("no run here"));
    }

    #[test]
    fn typing_a_filter_moves_the_cursor_onto_a_match() {
        let mut w = ws();
        for c in "parity".chars() {
            w.filter_input(Some(c));
        }
        assert_eq!(w.current().map(|r| r.name.as_str()), Some("b"));
        for _ in 0..6 {
            w.filter_input(None);
        }
        assert_eq!(w.filter, "");
        assert_eq!(w.current().map(|r| r.name.as_str()), Some("b"), "the cursor stays where it is");
    }

    #[test]
    fn selection_feeds_compare_and_survives_a_rescan() {
        let mut w = ws();
        assert_eq!(w.act(Action::WsCompare), None, "nothing selected");
        assert!(w.message.as_deref().unwrap_or_default().contains("0 selected"));
        w.act(Action::WsSelect); // c, cursor → d
        w.act(Action::WsDown); // → b
        w.act(Action::WsSelect); // b
        let rescanned: Vec<RunRow> = w.rows().to_vec();
        w.set_rows(rescanned);
        assert_eq!(w.selected.len(), 2);
        match w.act(Action::WsCompare) {
            Some(Choice::Compare(runs)) => {
                assert_eq!(runs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["c", "b"])
            }
            other => panic!("expected a comparison, got {other:?}"),
        }
        // A run that is gone leaves the selection; the cursor falls back to the first.
        let fewer: Vec<RunRow> = w.rows().iter().filter(|r| r.name != "b").cloned().collect();
        w.set_rows(fewer);
        assert_eq!(w.selected.len(), 1);
    }

    #[test]
    fn the_cursor_stays_on_its_run_when_rows_reorder() {
        let mut w = ws();
        w.act(Action::WsBottom);
        assert_eq!(w.current().map(|r| r.name.as_str()), Some("a"));
        let mut rows = w.rows().to_vec();
        rows.iter_mut().for_each(|r| r.age_s = r.age_s.map(|a| 2000 - a));
        w.set_rows(rows);
        assert_eq!(w.current().map(|r| r.name.as_str()), Some("a"));
        assert_eq!(w.act(Action::WsOpen).map(|c| matches!(c, Choice::Open(r) if r.name == "a")), Some(true));
    }
}
