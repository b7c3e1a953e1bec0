//! What the charts show: the step span (whole run or a recent window, zoomed, panned),
//! the cursor, the diversity chart's metric and layer, and each chart's own options.

use crate::layout::Panel;
use std::collections::BTreeMap;

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

pub const DIVERSITY_METRICS: &[&str] = &["eff_rank", "entropy", "diversity", "participation", "mean_cos"];
/// Steps shown in the recent-window view at zoom 0.
pub const RECENT_WINDOW: u64 = 2000;

#[derive(Debug, Clone)]
pub struct ChartView {
    /// Per chart kind; a chart not in the map has [`ChartOpts::default_for`].
    pub opts: BTreeMap<Panel, ChartOpts>,
    pub full_history: bool,
    /// Each level halves the visible span.
    pub zoom: u32,
    /// Right edge of the view; `None` follows the newest step.
    pub pan_end: Option<u64>,
    pub cursor: Option<u64>,
    pub diversity_metric: usize,
    /// `None` shows every probed layer.
    pub diversity_layer: Option<usize>,
}

impl Default for ChartView {
    fn default() -> ChartView {
        ChartView {
            opts: BTreeMap::new(),
            full_history: true,
            zoom: 0,
            pan_end: None,
            cursor: None,
            diversity_metric: 0,
            diversity_layer: None,
        }
    }
}

impl ChartView {
    /// The view options of a chart panel.
    pub fn opts(&self, panel: Panel) -> ChartOpts {
        self.opts.get(&panel).copied().unwrap_or_else(|| ChartOpts::default_for(panel))
    }

    pub fn opts_mut(&mut self, panel: Panel) -> &mut ChartOpts {
        self.opts.entry(panel).or_insert_with(|| ChartOpts::default_for(panel))
    }

    /// The step range shown of a timeline from `first` to `last`.
    pub fn x_range(&self, first: u64, last: u64) -> (u64, u64) {
        let base = if self.full_history { last - first + 1 } else { RECENT_WINDOW.min(last - first + 1) };
        let span = (base >> self.zoom.min(40)).max(10);
        let end = self.pan_end.unwrap_or(last).clamp(first.saturating_add(span.min(last - first)).min(last), last);
        (end.saturating_sub(span - 1).max(first.min(end)), end)
    }

    /// Moves the shown range `(a, b)` a quarter of its span; back at the run's `newest`
    /// step it follows the newest again.
    pub fn pan(&mut self, (a, b): (u64, u64), right: bool, newest: u64) {
        let step = ((b - a) / 4).max(1);
        let end = if right { b + step } else { b.saturating_sub(step) };
        self.pan_end = if end >= newest { None } else { Some(end) };
    }

    /// Moves the cursor a sixtieth of the shown range `(a, b)`, within it.
    pub fn move_cursor(&mut self, (a, b): (u64, u64), left: bool) {
        let step = ((b - a) / 60).max(1);
        let c = self.cursor.unwrap_or(b);
        self.cursor = Some(if left { c.saturating_sub(step).max(a) } else { (c + step).min(b) });
    }

    /// Puts the cursor at `step` (at most the run's `newest`), panning there when it is
    /// outside the shown range `(a, b)`.
    pub fn goto(&mut self, (a, b): (u64, u64), step: u64, newest: u64) {
        self.cursor = Some(step.min(newest));
        if step < a || step > b {
            self.pan_end = Some((step + (b - a) / 2).min(newest));
        }
    }

    /// Whole run, no zoom, following the newest step, no cursor.
    pub fn reset(&mut self) {
        self.zoom = 0;
        self.pan_end = None;
        self.cursor = None;
    }

    /// The next probed layer of `n` on the diversity chart, then all of them again.
    pub fn next_layer(&mut self, n: usize) {
        self.diversity_layer = match self.diversity_layer {
            None if n > 0 => Some(0),
            Some(i) if i + 1 < n => Some(i + 1),
            _ => None,
        };
    }

    pub fn next_diversity_metric(&mut self) {
        self.diversity_metric = (self.diversity_metric + 1) % DIVERSITY_METRICS.len();
    }
}
