//! Plateau: the EMA-smoothed relative slope of a metric stays small for a window.

use super::stats::{ema_alpha, fmt_num};
use super::{Detector, DetectorKind, Firing};
use serde::{Deserialize, Serialize};

/// Parameters of [`Plateau`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauParams {
    /// Steps the relative slope must stay under the threshold. Default 500.
    pub window: u64,
    /// Largest relative change over `window` steps that still counts as flat; the slope
    /// threshold is `tolerance / window` per step. Default 0.05 (5 % per window).
    pub tolerance: f64,
    /// Time constant, in steps, of the EMA of the value (the level) and of the EMA of the
    /// level's increments (the slope). Default 150.
    pub ema_steps: f64,
    /// After firing, the detector re-arms once the relative slope exceeds
    /// `rearm_factor ×` the threshold (the series left the plateau). Default 4.
    pub rearm_factor: f64,
    /// The slope is relative to `max(|level|, min_scale)`. Default 1e-300 (purely
    /// relative; a constant 0 series still counts as flat).
    pub min_scale: f64,
}

impl Default for PlateauParams {
    fn default() -> Self {
        PlateauParams { window: 500, tolerance: 0.05, ema_steps: 150.0, rearm_factor: 4.0, min_scale: 1e-300 }
    }
}

/// Fires once when the EMA-smoothed relative slope |dL/dstep| / |L| (L the EMA level)
/// has stayed at or under `tolerance / window` for `window` steps, counted from the
/// series' second point: a plateau from the start of a run is reported after `window`
/// steps like any other (an earlier version waited for a `2 × ema_steps` warm-up first,
/// which hid plateaus shorter than warm-up + window). The start-up lag of the EMAs
/// cannot fake a plateau: a falling series' slope estimate passes the threshold within
/// a fraction of `ema_steps`, long before `window`. Re-arms when the relative slope
/// exceeds `rearm_factor` times the threshold. Score: the relative change per window
/// at firing (≤ `tolerance`).
#[derive(Clone, Debug)]
pub struct Plateau {
    p: PlateauParams,
    last_step: Option<u64>,
    level: f64,
    slope: f64,
    /// Accumulated EMA weight of the slope (for bias correction at start).
    slope_weight: f64,
    below_since: Option<u64>,
    armed: bool,
    /// Fired, and the series has not left the plateau since.
    holds: bool,
}

impl Plateau {
    pub fn new(p: PlateauParams) -> Plateau {
        Plateau {
            p,
            last_step: None,
            level: 0.0,
            slope: 0.0,
            slope_weight: 0.0,
            below_since: None,
            armed: true,
            holds: false,
        }
    }

    pub fn params(&self) -> &PlateauParams {
        &self.p
    }

    /// The current relative slope per step (None before two points).
    pub fn relative_slope(&self) -> Option<f64> {
        (self.slope_weight > 0.0)
            .then(|| (self.slope / self.slope_weight).abs() / self.level.abs().max(self.p.min_scale))
    }

    fn threshold(&self) -> f64 {
        self.p.tolerance / self.p.window.max(1) as f64
    }
}

impl Detector for Plateau {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() {
            return None;
        }
        let Some(last) = self.last_step else {
            self.last_step = Some(step);
            self.level = value;
            return None;
        };
        if step <= last {
            return None;
        }
        self.last_step = Some(step);
        let dt = (step - last) as f64;
        let a = ema_alpha(dt, self.p.ema_steps);
        let new_level = self.level + a * (value - self.level);
        let increment = (new_level - self.level) / dt;
        self.level = new_level;
        self.slope += a * (increment - self.slope);
        self.slope_weight += a * (1.0 - self.slope_weight);
        let rel = self.relative_slope().unwrap_or(f64::INFINITY);
        let thr = self.threshold();
        if rel > self.p.rearm_factor * thr {
            self.holds = false;
        }
        if rel > thr {
            self.below_since = None;
            if !self.armed && rel > self.p.rearm_factor * thr {
                self.armed = true;
            }
            return None;
        }
        // Kept while disarmed too, so that a re-armed detector on a plateau that never
        // ended fires at once (`rearm`).
        let since = *self.below_since.get_or_insert(step);
        if !self.armed || step - since < self.p.window {
            return None;
        }
        self.armed = false;
        self.holds = true;
        let per_window = rel * self.p.window as f64;
        Some(Firing {
            step,
            score: per_window,
            message: format!(
                "plateau since step {since}: level {}, change {:.2}% per {} steps (tolerance {:.2}%)",
                fmt_num(self.level),
                100.0 * per_window,
                self.p.window,
                100.0 * self.p.tolerance
            ),
        })
    }

    fn reset(&mut self) {
        *self = Plateau::new(self.p.clone());
    }

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
        // 500 steps under the threshold, counted from the second point.
        assert_eq!(fired, vec![501]);
    }

    #[test]
    fn rearmed_on_a_plateau_that_never_ended_it_fires_at_once() {
        let mut d = Plateau::new(PlateauParams::default());
        let fired: Vec<u64> = (0..1000).filter_map(|s| d.push(s, 2.0)).map(|f| f.step).collect();
        assert_eq!(fired, vec![501]);
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
        assert_eq!(fired[0], 501);
        assert!(fired[1] > 3000 && fired[1] < 3000 + 500 + 900, "{fired:?}");
    }

    #[test]
    fn irregular_steps_use_step_values() {
        let mut d = Plateau::new(PlateauParams::default());
        // Points every 50 steps: 500 steps from the second point, as with every step.
        let fired: Vec<u64> = (0..100).map(|i| i * 50).filter_map(|s| d.push(s, 3.0)).map(|f| f.step).collect();
        assert_eq!(fired, vec![550]);
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
