//! Compare: several recorded runs overlaid on the same charts, aligned by step. The
//! first run's player is the transport; the others are seeked to its step after every
//! move, so play, seek and step keys drive all of them. Runs are told apart by colour
//! and, where colour is unavailable (mono, NO_COLOR, ASCII), by marker and line style.

use super::replay::Player;
use crate::model::state::RunView;
use crate::theme::{Theme, ThemeKind};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::widgets::GraphType;

/// A run other than the first (whose view and player are the app's own).
pub struct Other {
    pub name: String,
    pub view: RunView,
    pub player: Player,
}

pub struct Compare {
    /// Every run's name, the first run's included (legend order).
    pub names: Vec<String>,
    pub others: Vec<Other>,
    /// Which runs' phase bands are drawn under the charts.
    pub bands: Vec<bool>,
    /// The first run's step the others were last moved to.
    synced: Option<u64>,
    /// The timeline's step past the first run's end (`replay A B` with B longer): the
    /// first run stays at its end, the others are at this step.
    pub beyond: Option<u64>,
    /// Playing on past the first run's end, paced by the longest run's player.
    pub playing_on: bool,
    /// The first run stopped at its end while playing, before the timeline past it was
    /// known (an index still being built): play on as soon as it is.
    pub play_through: bool,
}

impl Compare {
    pub fn new(first: String, others: Vec<Other>) -> Compare {
        let mut names = vec![first];
        names.extend(others.iter().map(|o| o.name.clone()));
        let bands = vec![true; names.len()];
        Compare { names, others, bands, synced: None, beyond: None, playing_on: false, play_through: false }
    }

    /// The largest step any other run's index knows.
    pub fn last_step(&self) -> u64 {
        self.others.iter().map(|o| o.player.last_step()).max().unwrap_or(0)
    }

    /// The other run that goes furthest: the one whose player paces the timeline past
    /// the first run's end.
    pub fn lead(&mut self) -> Option<&mut Other> {
        self.others.iter_mut().max_by_key(|o| o.player.last_step())
    }

    /// Plays the timeline on past the first run's end by `dt` seconds: the longest run
    /// plays at `speed` (its own recorded pacing), the others follow its step. Returns
    /// whether anything moved.
    pub fn play_on(&mut self, speed: usize, uniform: bool, dt: f64) -> bool {
        if !self.playing_on {
            return false;
        }
        let Some(lead) = self.lead() else { return false };
        lead.player.speed = speed;
        lead.player.set_uniform(uniform);
        lead.player.playing = true;
        let moved = lead.player.tick(&mut lead.view, dt);
        let (step, playing) = (lead.view.step, lead.player.playing);
        self.playing_on = playing;
        self.beyond = Some(self.beyond.map_or(step, |b| b.max(step)));
        moved | self.sync(self.beyond.unwrap_or(step))
    }

    /// One training step forward past the first run's end (the longest run's next step).
    pub fn step_on(&mut self, from: u64) {
        if let Some(lead) = self.lead() {
            if lead.view.step < from {
                lead.player.seek_step(&mut lead.view, from);
            }
            lead.player.step_forward(&mut lead.view);
            let step = lead.view.step;
            self.beyond = Some(step.max(from));
        }
    }

    /// Moves every other run to `step` (forward moves fold on, back moves restore a
    /// snapshot). Returns whether anything moved.
    pub fn sync(&mut self, step: u64) -> bool {
        if self.synced == Some(step) {
            return false;
        }
        self.synced = Some(step);
        for o in &mut self.others {
            if o.view.step == step && o.player.playing {
                continue; // the lead, playing on: already there
            }
            o.player.playing = false;
            o.player.seek_step(&mut o.view, step);
        }
        true
    }

    /// Forces the next [`Compare::sync`] to move the runs (their logs may have grown).
    pub fn invalidate(&mut self) {
        self.synced = None;
    }

    /// All runs' views, the first run's first.
    pub fn views<'a>(&'a self, first: &'a RunView) -> Vec<&'a RunView> {
        std::iter::once(first).chain(self.others.iter().map(|o| &o.view)).collect()
    }

    /// Cycles the bands shown: all runs → each run alone in turn → none → all.
    pub fn cycle_bands(&mut self) -> String {
        let n = self.bands.len();
        let shown: Vec<usize> = (0..n).filter(|&i| self.bands[i]).collect();
        let next = match shown.as_slice() {
            s if s.len() == n && n > 1 => Some(0),
            [i] if i + 1 < n => Some(i + 1),
            [_] => None,
            [] => {
                self.bands = vec![true; n];
                return "phase bands: all runs".into();
            }
            _ => None,
        };
        self.bands = (0..n).map(|i| Some(i) == next).collect();
        match next {
            Some(i) => format!("phase bands: {} only", self.names[i]),
            None => "phase bands: none".into(),
        }
    }

    /// Toggles run `i`'s bands (1-based, as the legend counts).
    pub fn toggle_bands(&mut self, i: usize) -> Result<String, String> {
        let Some(b) = i.checked_sub(1).and_then(|i| self.bands.get_mut(i)) else {
            return Err(format!("bands needs a run number 1..{}", self.bands.len()));
        };
        *b = !*b;
        Ok(format!("phase bands of {}: {}", self.names[i - 1], if *b { "shown" } else { "hidden" }))
    }
}

/// Without colour, runs differ by marker; with colour, by colour (series within a run
/// then differ by line vs dots).
fn colourless(theme: &Theme, ascii: bool) -> bool {
    theme.kind == ThemeKind::Mono || ascii
}

pub fn run_style(theme: &Theme, run: usize) -> Style {
    theme.series(run)
}

/// How run `run`'s series number `key` is drawn.
pub fn run_marker(theme: &Theme, ascii: bool, run: usize, key: usize) -> (Marker, GraphType) {
    if colourless(theme, ascii) {
        const MARKERS: [Marker; 4] = [Marker::Braille, Marker::Dot, Marker::Block, Marker::Bar];
        let m = if ascii && run == 0 { Marker::Dot } else { MARKERS[run % MARKERS.len()] };
        let g = if run == 0 { GraphType::Line } else { GraphType::Scatter };
        return (m, g);
    }
    let m = if ascii { Marker::Dot } else { Marker::Braille };
    (m, if key == 0 { GraphType::Line } else { GraphType::Scatter })
}

/// The legend glyph of a run, matching [`run_marker`].
pub fn run_glyph(theme: &Theme, ascii: bool, run: usize) -> &'static str {
    if colourless(theme, ascii) {
        const GLYPHS: [&str; 4] = ["━", "•", "█", "▄"];
        const ASCII: [&str; 4] = ["-", "*", "#", "="];
        return if ascii { ASCII[run % 4] } else { GLYPHS[run % 4] };
    }
    if ascii { "-" } else { "━" }
}

/// A short legend name for a run directory: its last path component, at most 24 chars,
/// cut in the middle (`parity-xor-2…b16000-main`): run ids share their beginning (the
/// config's name, the date) and differ at their end (time, a branch's suffix).
pub fn run_name(dir: &std::path::Path) -> String {
    let n = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    middle_cut(&n, 24)
}

/// Legend names for several runs, each told apart: [`run_name`]s, and a `#k` where two
/// would still read the same.
pub fn run_names(dirs: &[&std::path::Path]) -> Vec<String> {
    let mut names: Vec<String> = dirs.iter().map(|d| run_name(d)).collect();
    for i in 1..names.len() {
        if names[..i].contains(&names[i]) {
            names[i] = format!("{}#{}", middle_cut(&names[i], 21), i + 1);
        }
    }
    names
}

fn middle_cut(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let head = (width - 1) / 2;
    let tail = width - 1 - head;
    let h: String = s.chars().take(head).collect();
    let t: String = s.chars().skip(n - tail).collect();
    format!("{h}…{t}")
}

/// Final metrics of several runs side by side: one row per metric any run has, the
/// last recorded value (and its step) per run.
pub fn comparison_table(names: &[String], views: &[&RunView]) -> String {
    use std::fmt::Write;
    let mut keys: Vec<&String> = views.iter().flat_map(|v| v.series.keys()).collect();
    keys.sort();
    keys.dedup();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(14);
    let mut s = String::new();
    let _ = write!(s, "{:<24}", "metric");
    for n in names {
        let _ = write!(s, "  {n:>width$}");
    }
    s.push('\n');
    let row = |s: &mut String, label: &str, cells: Vec<String>| {
        let _ = write!(s, "{label:<24}");
        for c in cells {
            let _ = write!(s, "  {c:>width$}");
        }
        s.push('\n');
    };
    row(&mut s, "step", views.iter().map(|v| v.step.to_string()).collect());
    row(&mut s, "status", views.iter().map(|v| v.ended.map_or("not ended", |e| e.as_str()).to_string()).collect());
    row(
        &mut s,
        "phase",
        views.iter().map(|v| v.current_phase().map(|p| p.name.clone()).unwrap_or_else(|| "-".into())).collect(),
    );
    for k in keys {
        let cells = views
            .iter()
            .map(|v| match v.series.get(k).and_then(|s| s.last()) {
                Some((_, x)) => crate::fmt::num(x),
                None => "-".into(),
            })
            .collect();
        row(&mut s, k, cells);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Issue 26 #2: a parent and its branch never read as the same run.
    #[test]
    fn runs_with_a_common_beginning_are_told_apart() {
        let names = run_names(&[
            Path::new("runs/parity-xor-20261206-1743"),
            Path::new("runs/parity-xor-20261206-1743-b16000-main"),
            Path::new("runs/parity-xor-20261206-1743-b16000-main"),
        ]);
        assert_eq!(names[0], "parity-xor-20261206-1743");
        assert_ne!(names[0], names[1]);
        assert!(names[1].ends_with("b16000-main") && names[1].contains('…'), "{names:?}");
        assert_ne!(names[1], names[2], "{names:?}");
        assert!(names.iter().all(|n| n.chars().count() <= 24), "{names:?}");
    }
}
