//! Plateau: a least-squares line over the last `window` steps of a metric changes it by
//! less than `tolerance` (relative) across the window.

use super::stats::{DiffScale, fmt_num};
use super::{Detector, DetectorKind, Firing};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Parameters of [`Plateau`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauParams {
    /// Steps the series must have been flat for: the span of the fitted window. Default 500.
    pub window: u64,
    /// Largest relative change across `window` steps (the fitted line's slope × window,
    /// relative to the window's mean) that still counts as flat. Default 0.05.
    pub tolerance: f64,
    /// Accepted for configs written for the first version of this detector (an EMA
    /// slope with this time constant); the line fit has no time constant. Default 150.
    pub ema_steps: f64,
    /// After firing, the detector re-arms once the relative change per window exceeds
    /// `rearm_factor × tolerance` (the series left the plateau). Default 4.
    pub rearm_factor: f64,
    /// The change is relative to `max(|mean|, min_scale)`. Default 1e-300 (purely
    /// relative; a constant 0 series still counts as flat).
    pub min_scale: f64,
}

impl Default for PlateauParams {
    fn default() -> Self {
        PlateauParams { window: 500, tolerance: 0.05, ema_steps: 150.0, rearm_factor: 4.0, min_scale: 1e-300 }
    }
}

/// Outliers are clipped to this many noise standard deviations from the line before they
/// enter it (a loss spike of ×100 is one point, not a slope).
const CLIP_SD: f64 = 4.0;
/// Points in the window before clipping starts (the line needs a few).
const CLIP_AFTER: usize = 10;
/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;

/// Points kept per window before the sums are rebuilt from them (floating-point sums
/// updated by adding and removing drift over millions of points).
const REBUILD_POINTS: usize = 4096;

/// Fires once when the least-squares line through the points of the last `window` steps
/// (at least `window` steps of data, so from the series' start a plateau is reported at
/// `window`) changes by at most `tolerance` of the window's mean across the window.
/// Positive series are fitted in log space (a loss's noise is proportional to its level,
/// and the change across the window is then relative by construction); the first
/// non-positive value switches the detector to raw values for good. Each point is
/// clipped to `CLIP_SD` robust noise standard deviations from the current line before it
/// enters the fit, so that a loss spike (AdamW's, on a memorised fit) neither re-arms the
/// detector nor hides a plateau.
/// Re-arms when that change exceeds `rearm_factor × tolerance`. Score: the relative
/// change per window at firing (≤ `tolerance`).
///
/// Why a line over the window, not the first version's EMA slope that had to stay under
/// the threshold for `window` steps: the EMA slope's noise is ~1e-3 σ per step, so on a
/// batch-of-32 loss (σ ≈ 15 % of the level) it crossed the threshold every few dozen
/// steps and a 2 500-step plateau was never reported; a line over 500 points has a
/// noise of ~2 % per window there. And its warm-up of 2 × `ema_steps` hid plateaus
/// shorter than ~800 steps at the start of a run. Cost: O(1) amortised per point, memory
/// O(points per window).
#[derive(Clone, Debug)]
pub struct Plateau {
    p: PlateauParams,
    /// The window's points as (step − origin, value).
    pts: VecDeque<(f64, f64)>,
    origin: u64,
    /// Σx, Σy, Σxy, Σxx over `pts`.
    sums: [f64; 4],
    since_rebuild: usize,
    first_step: Option<u64>,
    last_step: Option<u64>,
    armed: bool,
    /// Fired, and the series has not left the plateau since.
    holds: bool,
    /// The last relative change per window (None before the window is full).
    change: Option<f64>,
    /// Fit ln(value) (decided by the first point; a non-positive value turns it off).
    log: Option<bool>,
    scale: DiffScale,
}

impl Plateau {
    pub fn new(p: PlateauParams) -> Plateau {
        Plateau {
            p,
            pts: VecDeque::new(),
            origin: 0,
            sums: [0.0; 4],
            since_rebuild: 0,
            first_step: None,
            last_step: None,
            armed: true,
            holds: false,
            change: None,
            log: None,
            scale: DiffScale::new(SCALE_POINTS),
        }
    }

    pub fn params(&self) -> &PlateauParams {
        &self.p
    }

    /// The fitted relative change across a window, at the last point (None before
    /// `window` steps of data).
    pub fn relative_change(&self) -> Option<f64> {
        self.change
    }

    fn add(&mut self, x: f64, y: f64, sign: f64) {
        self.sums[0] += sign * x;
        self.sums[1] += sign * y;
        self.sums[2] += sign * x * y;
        self.sums[3] += sign * x * x;
    }

    fn rebuild(&mut self) {
        // Re-centre the x coordinates on the window's first point too.
        if let Some(&(x0, _)) = self.pts.front() {
            let shift = x0.floor();
            self.origin += shift as u64;
            for p in self.pts.iter_mut() {
                p.0 -= shift;
            }
        }
        self.sums = [0.0; 4];
        let pts: Vec<(f64, f64)> = self.pts.iter().copied().collect();
        for (x, y) in pts {
            self.add(x, y, 1.0);
        }
        self.since_rebuild = 0;
    }

    /// (mean x, mean y, slope) of the line through the window's points.
    fn line(&self) -> (f64, f64, f64) {
        let n = self.pts.len() as f64;
        let [sx, sy, sxy, sxx] = self.sums;
        let var_x = sxx - sx * sx / n;
        let slope = if var_x > 0.0 { (sxy - sx * sy / n) / var_x } else { 0.0 };
        (sx / n, sy / n, slope)
    }

    /// (relative change across `window`, the window's level in the series' units).
    fn fit(&self) -> (f64, f64) {
        let (_, mean, slope) = self.line();
        let across = (slope * self.p.window as f64).abs();
        if self.log == Some(true) {
            (across.exp_m1(), mean.exp())
        } else {
            (across / mean.abs().max(self.p.min_scale), mean)
        }
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
        if self.first_step.is_none() {
            self.first_step = Some(step);
            self.origin = step;
        }
        self.last_step = Some(step);
        let x = (step - self.origin) as f64;
        let y = if log { value.ln() } else { value };
        let mut yc = y;
        if self.pts.len() >= CLIP_AFTER {
            let (mx, my, slope) = self.line();
            let predicted = my + slope * (x - mx);
            // Never tighter than the re-arm change: on a noiseless series σ̂ is ~0 and a
            // clip at 4σ̂ would pin every new point to the old line.
            let floor = self.p.rearm_factor * self.p.tolerance * if log { 1.0 } else { my.abs().max(self.p.min_scale) };
            let limit = (CLIP_SD * self.scale.sigma()).max(floor);
            yc = y.clamp(predicted - limit, predicted + limit);
        }
        self.scale.push(y);
        self.pts.push_back((x, yc));
        self.add(x, yc, 1.0);
        let horizon = step.saturating_sub(self.p.window);
        while self.pts.front().is_some_and(|&(x, _)| self.origin + (x as u64) < horizon) {
            let (x, y) = self.pts.pop_front().expect("non-empty");
            self.add(x, y, -1.0);
        }
        self.since_rebuild += 1;
        if self.since_rebuild >= REBUILD_POINTS.max(self.pts.len()) {
            self.rebuild();
        }
        let first = self.first_step.unwrap_or(step);
        if step - first < self.p.window || self.pts.len() < 3 {
            return None;
        }
        let (change, mean) = self.fit();
        self.change = Some(change);
        if change > self.p.rearm_factor * self.p.tolerance {
            self.holds = false;
            self.armed = true;
        }
        if change > self.p.tolerance || !self.armed {
            return None;
        }
        self.armed = false;
        self.holds = true;
        let since = self.origin + self.pts.front().map_or(0, |p| p.0 as u64);
        Some(Firing {
            step,
            score: change,
            message: format!(
                "plateau since step {since}: level {}, change {:.2}% per {} steps (tolerance {:.2}%)",
                fmt_num(mean),
                100.0 * change,
                self.p.window,
                100.0 * self.p.tolerance
            ),
        })
    }

    fn reset(&mut self) {
        *self = Plateau::new(self.p.clone());
    }

    /// Forgets having fired: a series still flat fires again at its next point.
    fn rearm(&mut self) {
        self.armed = true;
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
