//! Plateau: a line through the block medians of a metric's last `window` steps changes it
//! by less than `tolerance` (relative) across the window.

use super::stats::fmt_num;
use super::{Detector, DetectorKind, Firing};
use crate::event::SignalFigures;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Parameters of [`Plateau`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauParams {
    /// Steps the series must have been flat for: the span of the fitted window. Default 500.
    pub window: u64,
    /// Largest relative change across `window` steps (the robust slope × window, relative
    /// to the window's level) that still counts as flat. Default 0.05.
    pub tolerance: f64,
    /// Accepted for configs written for the first version of this detector (an EMA
    /// slope with this time constant); the slope test has no time constant. Default 150.
    pub ema_steps: f64,
    /// After firing, the detector re-arms once the relative change per window exceeds
    /// `rearm_factor × tolerance` (the series left the plateau). Default 4.
    pub rearm_factor: f64,
    /// The change is relative to `max(|level|, min_scale)` on raw (non-positive) series.
    /// Default 1e-300 (purely relative; a constant 0 series still counts as flat).
    pub min_scale: f64,
    /// After a firing, no further firing for this many steps (applied by the
    /// [`super::Bank`], on top of the re-arm hysteresis). Default 0.
    pub quiet_steps: u64,
}

impl Default for PlateauParams {
    fn default() -> Self {
        PlateauParams {
            window: 500,
            tolerance: 0.05,
            ema_steps: 150.0,
            rearm_factor: 4.0,
            min_scale: 1e-300,
            quiet_steps: 0,
        }
    }
}

/// Blocks per window: the window is cut into this many blocks of equal span in steps,
/// each summarised by its median.
pub const PLATEAU_BLOCKS: u64 = 10;
/// Non-empty blocks needed for a slope.
const MIN_BLOCKS: usize = 3;
/// Standard errors of the fitted change added before it is compared with `tolerance`:
/// flat means flat beyond the estimate's own noise. On a minibatch loss (10–20 % noise a
/// step) the change across a window is known to ±2–3 %, and a descent still falling
/// 10 % a window was called flat at "4.8 %" (3 false `auto` switches in 120 seeded
/// control runs); with the bound, none.
const FLAT_SE: f64 = 1.0;

/// Fires once when the slope of the last `window` steps, fitted robustly, changes the
/// series by at most `tolerance` of its level across the window (and the series has at
/// least `window` steps of data, so from the series' start a plateau is reported at
/// `window`). The window is cut into [`PLATEAU_BLOCKS`] blocks of ⌈`window` / 10⌉ steps
/// (counted from the series' first step); each complete block is summarised by the
/// median of its points, and the slope is the least-squares line through the block
/// medians at the blocks' steps. Positive series are tested in log space (a loss's noise
/// is proportional to its level and the change is relative by construction:
/// `exp(|slope| × window) − 1`); the first non-positive value switches the detector to
/// raw values for good (`|slope| × window / max(|level|, min_scale)`). The reported level
/// is the median of the block medians (the window's level). The test runs when a block
/// completes (every ⌈`window` / 10⌉ steps). Re-arms when the change exceeds
/// `rearm_factor × tolerance`. Score: the relative change per window at firing
/// (≤ `tolerance`).
///
/// Why block medians, not the previous version's least-squares line through every point
/// with each new point clipped to 4σ̂ of the current line: on a smooth full-batch loss
/// (σ̂ ≈ 0) the clip ratcheted — a drop that left the line faster than the clip allowed
/// was pulled back toward it, the line's slope lagged, and a loss still falling was
/// reported "flat, 4.79 % per window" at a level 80× off. A block median ignores a burst
/// of spikes shorter than half a block (AdamW's on a memorised fit) with no state that a
/// clip could bend, and a line through the ten medians still sees a drop confined to the
/// window's last blocks (a Theil–Sen slope through them would not: it takes up to ~29 %
/// of the blocks as outliers, and reported a 26× drop in the last fifth of a window as
/// flat). Cost: O(1) amortised per point (a median per block, a 10-point line per
/// block), memory O(points per block).
#[derive(Clone, Debug)]
pub struct Plateau {
    p: PlateauParams,
    /// Span of a block in steps.
    block: u64,
    /// The current (incomplete) block's index and values.
    cur: Option<(u64, Vec<f64>)>,
    /// Complete non-empty blocks: (index, median).
    blocks: VecDeque<(u64, f64)>,
    first_step: Option<u64>,
    last_step: Option<u64>,
    armed: bool,
    /// Fired, and the series has not left the plateau since.
    holds: bool,
    /// The last relative change per window (None before the window is full).
    change: Option<f64>,
    /// Test ln(value) (decided by the first point; a non-positive value turns it off).
    log: Option<bool>,
    /// The window's level at the last test.
    level: f64,
    /// The change at the last test plus [`FLAT_SE`] standard errors.
    upper: f64,
    /// Re-armed since the last test.
    rearmed: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl Plateau {
    pub fn new(p: PlateauParams) -> Plateau {
        let block = p.window.div_ceil(PLATEAU_BLOCKS).max(1);
        Plateau {
            p,
            block,
            cur: None,
            blocks: VecDeque::new(),
            first_step: None,
            last_step: None,
            armed: true,
            holds: false,
            change: None,
            log: None,
            level: 0.0,
            upper: 0.0,
            rearmed: false,
        }
    }

    pub fn params(&self) -> &PlateauParams {
        &self.p
    }

    /// The robust relative change across a window at the last test (None before
    /// `window` steps of data).
    pub fn relative_change(&self) -> Option<f64> {
        self.change
    }

    /// Blocks that make up one window.
    fn blocks_per_window(&self) -> u64 {
        (self.p.window / self.block).max(1)
    }

    /// (relative change across `window`, the same plus [`FLAT_SE`] standard errors, the
    /// window's level in the series' units) from the complete blocks in the window; None
    /// with fewer than `MIN_BLOCKS`. The standard error is the slope's, from the block
    /// medians' scatter about the line (a curve bending within the window widens it too).
    fn fit(&self) -> Option<(f64, f64, f64)> {
        let n = self.blocks.len();
        if n < MIN_BLOCKS {
            return None;
        }
        // Least squares through the block medians at the blocks' mid-steps.
        let xs = self.blocks.iter().map(|b| b.0 as f64);
        let x0 = xs.clone().sum::<f64>() / n as f64;
        let y0 = self.blocks.iter().map(|b| b.1).sum::<f64>() / n as f64;
        let sxx: f64 = xs.map(|x| (x - x0) * (x - x0)).sum();
        let sxy: f64 = self.blocks.iter().map(|b| (b.0 as f64 - x0) * (b.1 - y0)).sum();
        let per_block = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let slope = per_block / self.block as f64;
        let rss: f64 =
            self.blocks.iter().map(|b| (b.1 - y0 - per_block * (b.0 as f64 - x0)).powi(2)).sum::<f64>().max(0.0);
        let se = if sxx > 0.0 && n > 2 { (rss / (n - 2) as f64 / sxx).sqrt() / self.block as f64 } else { 0.0 };
        let mut levels: Vec<f64> = self.blocks.iter().map(|b| b.1).collect();
        let level = median(&mut levels);
        let w = self.p.window as f64;
        let across = (slope * w).abs();
        let upper = across + FLAT_SE * se * w;
        Some(if self.log == Some(true) {
            (across.exp_m1(), upper.exp_m1(), level.exp())
        } else {
            let scale = level.abs().max(self.p.min_scale);
            (across / scale, upper / scale, level)
        })
    }

    /// Closes the current block if `index` is past it; returns whether one closed.
    fn close_blocks(&mut self, index: u64) -> bool {
        let Some((ci, _)) = &self.cur else { return false };
        if *ci >= index {
            return false;
        }
        let (ci, mut vals) = self.cur.take().expect("checked");
        let m = median(&mut vals);
        self.blocks.push_back((ci, m));
        // Keep the blocks of the last window ending at block `index - 1`.
        let keep_from = index.saturating_sub(self.blocks_per_window());
        while self.blocks.front().is_some_and(|b| b.0 < keep_from) {
            self.blocks.pop_front();
        }
        true
    }
}

impl Detector for Plateau {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() || self.last_step.is_some_and(|l| step <= l) {
            return None;
        }
        let log = *self.log.get_or_insert(value > 0.0);
        if log && value <= 0.0 {
            *self = Plateau::new(self.p.clone());
            self.log = Some(false);
            return self.push(step, value);
        }
        let first = *self.first_step.get_or_insert(step);
        self.last_step = Some(step);
        let y = if log { value.ln() } else { value };
        let index = (step - first) / self.block;
        let closed = self.close_blocks(index);
        match &mut self.cur {
            Some((_, vals)) => vals.push(y),
            None => self.cur = Some((index, vec![y])),
        }
        let (change, upper, level) = if closed && step - first >= self.p.window {
            let (change, upper, level) = self.fit()?;
            self.change = Some(change);
            self.upper = upper;
            self.level = level;
            (change, upper, level)
        } else if self.rearmed && self.holds {
            // Re-armed on a plateau that never ended: the last test still stands.
            (self.change?, self.upper, self.level)
        } else {
            return None;
        };
        self.rearmed = false;
        if change > self.p.rearm_factor * self.p.tolerance {
            self.holds = false;
            self.armed = true;
        }
        if upper > self.p.tolerance || !self.armed {
            return None;
        }
        self.armed = false;
        self.holds = true;
        let since = first + index.saturating_sub(self.blocks_per_window()) * self.block;
        Some(Firing {
            step,
            score: change,
            message: format!(
                "plateau since step {since}: level {}, change {:.2}% per {} steps (at most {:.2}% by the \
                 window's scatter; tolerance {:.2}%)",
                fmt_num(level),
                100.0 * change,
                self.p.window,
                100.0 * upper,
                100.0 * self.p.tolerance
            ),
            figures: SignalFigures::finite(Some(since), None, Some(level)),
        })
    }

    fn reset(&mut self) {
        *self = Plateau::new(self.p.clone());
    }

    /// Forgets having fired: a series still flat fires again at its next point.
    fn rearm(&mut self) {
        self.armed = true;
        self.rearmed = true;
    }

    fn holds(&self) -> bool {
        self.holds
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Plateau
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_on_a_constant_series_after_warmup_and_window() {
        let mut d = Plateau::new(PlateauParams::default());
        let fired: Vec<u64> = (0..5000).filter_map(|s| d.push(s, 2.0)).map(|f| f.step).collect();
        // A full window of 500 steps from the first point.
        assert_eq!(fired, vec![500]);
    }

    #[test]
    fn the_firing_carries_where_the_plateau_began_and_its_level() {
        let mut d = Plateau::new(PlateauParams::default());
        let f = (0..2000).find_map(|s| d.push(s, if s < 300 { 5.0 - s as f64 / 100.0 } else { 2.0 })).unwrap();
        let since = f.figures.since_step.expect("a plateau says where it began");
        assert!(since >= 250 && since < f.step, "since {since}, fired at {}", f.step);
        assert!(f.message.contains(&format!("since step {since}")), "{}", f.message);
        assert_eq!(f.figures.level, Some(2.0));
    }

    #[test]
    fn rearmed_on_a_plateau_that_never_ended_it_fires_at_once() {
        let mut d = Plateau::new(PlateauParams::default());
        let fired: Vec<u64> = (0..1000).filter_map(|s| d.push(s, 2.0)).map(|f| f.step).collect();
        assert_eq!(fired, vec![500]);
        d.rearm();
        assert_eq!(d.push(1000, 2.0).map(|f| f.step), Some(1000));
        assert!(d.push(1001, 2.0).is_none(), "fires once per re-arm");
    }

    #[test]
    fn does_not_fire_on_a_steady_decline() {
        let mut d = Plateau::new(PlateauParams::default());
        // 1 % per 10 steps: 50× the threshold.
        for s in 0..20_000 {
            assert!(d.push(s, (-(s as f64) * 1e-3).exp()).is_none(), "fired at {s}");
        }
    }

    #[test]
    fn rearms_after_leaving_the_plateau() {
        let mut d = Plateau::new(PlateauParams::default());
        let mut fired = Vec::new();
        for s in 0..6000u64 {
            let v = if s < 2000 {
                1.0
            } else if s < 3000 {
                1.0 - 0.5 * (s - 2000) as f64 / 1000.0
            } else {
                0.5
            };
            if let Some(f) = d.push(s, v) {
                fired.push(f.step);
            }
        }
        assert_eq!(fired.len(), 2, "{fired:?}");
        assert_eq!(fired[0], 500);
        assert!(fired[1] > 3000 && fired[1] <= 3000 + 500, "{fired:?}");
    }

    #[test]
    fn irregular_steps_use_step_values() {
        let mut d = Plateau::new(PlateauParams::default());
        // Points every 50 steps: a window of 500 steps, as with every step.
        let fired: Vec<u64> = (0..100).map(|i| i * 50).filter_map(|s| d.push(s, 3.0)).map(|f| f.step).collect();
        assert_eq!(fired, vec![500]);
    }

    #[test]
    fn a_short_plateau_at_the_start_is_reported() {
        // Flat (with 1 % noise) for 700 steps from the first point, then falling fast:
        // shorter than the old warm-up + window (800), reported at about 500.
        let mut d = Plateau::new(PlateauParams::default());
        let mut x: u64 = 12345;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f64 / 1000.0 - 1.0
        };
        let fired: Vec<u64> = (0..3000u64)
            .filter_map(|s| {
                let base = if s < 700 { 1.0 } else { (-((s - 700) as f64) / 100.0).exp() };
                d.push(s, base * (1.0 + 0.01 * noise()))
            })
            .map(|f| f.step)
            .collect();
        assert!(!fired.is_empty() && fired[0] < 700, "{fired:?}");
        assert!(!d.holds(), "the fall ended the plateau");
    }
}

#[cfg(test)]
mod noise_tests {
    use super::*;

    #[test]
    fn a_noisy_plateau_with_a_slow_drift_is_reported() {
        // A batch-of-32-like loss: σ = 15 % of the level, drifting 0.78 → 0.69 over
        // 3 000 steps (2 % per window). The first version never fired on this.
        let mut x: u64 = 99;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_001) as f64 / 1_000_000.0
        };
        let mut d = Plateau::new(PlateauParams::default());
        let mut fired = Vec::new();
        for s in 0..3000u64 {
            // Sum of 12 uniforms − 6: near-Gaussian with σ = 1.
            let z: f64 = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
            let level = 0.78 - 0.09 * s as f64 / 3000.0;
            fired.extend(d.push(s, level * (1.0 + 0.15 * z)).map(|f| f.step));
        }
        assert!(!fired.is_empty() && fired[0] < 1500, "{fired:?}");
        assert_eq!(fired.len(), 1, "{fired:?}");
    }

    #[test]
    fn sums_stay_exact_over_a_long_series() {
        // 10^6 points with large step values: the rebuilt sums keep the fit exact.
        let mut d = Plateau::new(PlateauParams::default());
        let base = 1u64 << 40;
        for s in 0..1_000_000u64 {
            d.push(base + s, 5.0 + 1e-3 * (s % 2) as f64);
        }
        assert!(d.relative_change().unwrap() < 1e-3, "{:?}", d.relative_change());
    }
}
