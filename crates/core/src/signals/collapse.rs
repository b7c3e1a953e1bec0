//! Diversity collapse: a metric falls below a fraction of its starting value.

use super::stats::{DiffScale, ema_alpha, fmt_num};
use super::{Detector, DetectorKind, Firing};
use crate::event::SignalFigures;
use serde::{Deserialize, Serialize};

/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;
/// On a noisy metric (a minibatch loss, 10–20 % a step) the EMA crosses the line by
/// chance a little before the metric does, and three points of patience are not
/// independent tries: the smoothed value must also be this many of its own noise's
/// standard deviations under [`SLACK`] × the line — the metric is then within 5 % of the
/// line or under it, with confidence. On a quiet metric (a probe's rank) the line itself
/// is the stricter bound and nothing changes.
const MARGIN_SD: f64 = 2.0;
const SLACK: f64 = 1.05;

/// Parameters of [`Collapse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollapseParams {
    /// Fire when the smoothed value is below `fraction ×` the baseline. Default 0.5.
    pub fraction: f64,
    /// The baseline is the mean of the first this many finite points. Default 10.
    pub baseline_points: usize,
    /// Time constant, in points, of the EMA that smooths the value. Default 3.
    pub ema_points: f64,
    /// Consecutive points the smoothed value must stay below before firing. Default 3.
    pub patience: usize,
    /// The drop from the baseline must also exceed `min_z ×` the robust point-to-point
    /// noise standard deviation, which keeps the detector quiet on metrics whose
    /// baseline is near 0 (0 disables). Default 4.
    pub min_z: f64,
    /// After a firing, no further firing for this many steps (applied by the
    /// [`super::Bank`], on top of the re-arm hysteresis). Default 0.
    pub quiet_steps: u64,
}

impl Default for CollapseParams {
    fn default() -> Self {
        CollapseParams { fraction: 0.5, baseline_points: 10, ema_points: 3.0, patience: 3, min_z: 4.0, quiet_steps: 0 }
    }
}

/// Fires when an EMA of the value (over `ema_points` points) has been below
/// `fraction ×` the baseline (mean of the first `baseline_points` points) — and, on a
/// noisy metric, under 1.05 × that line by two standard deviations of the EMA's own
/// noise (see [`MARGIN_SD`]) — and below the baseline by `min_z`
/// noise standard deviations, for `patience` consecutive points. Re-arms when the smoothed value recovers to at least
/// `(1 + fraction) / 2 ×` the baseline. Never fires when the baseline is ≤ 0.
/// Score: smoothed value / baseline.
#[derive(Clone, Debug)]
pub struct Collapse {
    p: CollapseParams,
    sum: f64,
    count: usize,
    baseline: Option<f64>,
    smoothed: f64,
    last_step: Option<u64>,
    below: usize,
    armed: bool,
    /// Fired, and not back above the re-arm level since.
    holds: bool,
    scale: DiffScale,
}

impl Collapse {
    pub fn new(p: CollapseParams) -> Collapse {
        Collapse {
            p,
            sum: 0.0,
            count: 0,
            baseline: None,
            smoothed: 0.0,
            last_step: None,
            below: 0,
            armed: true,
            holds: false,
            scale: DiffScale::new(SCALE_POINTS),
        }
    }

    pub fn params(&self) -> &CollapseParams {
        &self.p
    }

    /// The baseline, once `baseline_points` points have been seen.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }
}

impl Detector for Collapse {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() || self.last_step.is_some_and(|l| step <= l) {
            return None;
        }
        if self.last_step.is_none() {
            self.smoothed = value;
        } else {
            self.smoothed += ema_alpha(1.0, self.p.ema_points) * (value - self.smoothed);
        }
        self.last_step = Some(step);
        self.scale.push(value);
        let Some(base) = self.baseline else {
            self.sum += value;
            self.count += 1;
            if self.count >= self.p.baseline_points.max(1) {
                self.baseline = Some(self.sum / self.count as f64);
            }
            return None;
        };
        if base <= 0.0 {
            return None;
        }
        let sigma = self.scale.sigma();
        let clear = self.p.min_z <= 0.0 || base - self.smoothed >= self.p.min_z * sigma;
        // The EMA's noise: σ · √(α / (2 − α)) for i.i.d. noise of σ a point.
        let a = ema_alpha(1.0, self.p.ema_points);
        let line = self.p.fraction * base;
        let limit = line.min(SLACK * line - MARGIN_SD * sigma * (a / (2.0 - a)).sqrt());
        if self.smoothed < limit && clear {
            self.below += 1;
            if self.armed && self.below >= self.p.patience.max(1) {
                self.armed = false;
                self.holds = true;
                let ratio = self.smoothed / base;
                return Some(Firing {
                    step,
                    score: ratio,
                    message: format!(
                        "collapsed to {} ({:.0}% of the starting {})",
                        fmt_num(self.smoothed),
                        100.0 * ratio,
                        fmt_num(base)
                    ),
                    figures: SignalFigures::finite(None, Some(base), Some(self.smoothed)),
                });
            }
        } else {
            self.below = 0;
            if self.smoothed >= 0.5 * (1.0 + self.p.fraction) * base {
                self.armed = true;
                self.holds = false;
            }
        }
        None
    }

    fn reset(&mut self) {
        *self = Collapse::new(self.p.clone());
    }

    fn rearm(&mut self) {
        self.armed = true;
    }

    fn holds(&self) -> bool {
        self.holds
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Collapse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudden_collapse_fires_after_smoothing_and_patience() {
        let mut d = Collapse::new(CollapseParams::default());
        let fired: Vec<u64> =
            (0..100u64).filter_map(|s| d.push(s, if s < 50 { 0.8 } else { 0.0 })).map(|f| f.step).collect();
        // EMA (τ = 3 points) of a drop to 0 is under half after 3 points (0.717³ ≈ 0.37),
        // then 3 points of patience: the 5th point after the drop.
        assert_eq!(fired, vec![54]);
    }

    #[test]
    fn non_positive_baseline_never_fires() {
        let mut d = Collapse::new(CollapseParams::default());
        assert!((0..100u64).all(|s| d.push(s, if s < 50 { -1.0 } else { -10.0 }).is_none()));
    }
}
