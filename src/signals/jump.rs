//! Jump: a sharp rise (or fall) of a metric within a window of steps, e.g. held-out
//! accuracy going from chance to ~1 when a model groks.

use super::stats::{DiffScale, fmt_num};
use super::{Detector, DetectorKind, Firing};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Which way a jump goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A rise (accuracy).
    #[default]
    Up,
    /// A drop (loss); handled as a rise of the negated value.
    Down,
}

/// Parameters of [`Jump`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JumpParams {
    /// Smallest rise that counts, above the lowest value of the last `window` steps.
    /// Absolute, or a fraction of |that lowest value| when `relative`. Default 0.5.
    pub min_rise: f64,
    /// Steps within which the rise must happen. Default 1000.
    pub window: u64,
    /// Measure `min_rise` relative to the prior level. Default false.
    pub relative: bool,
    /// `up` or `down`. Default `up`.
    pub direction: Direction,
    /// The rise must also exceed `min_z ×` the series' robust point-to-point noise
    /// standard deviation (0 disables). Default 10.
    pub min_z: f64,
    /// Points seen before the detector may fire (the noise estimate needs a few).
    /// Default 20.
    pub warmup: usize,
}

impl Default for JumpParams {
    fn default() -> Self {
        JumpParams { min_rise: 0.5, window: 1000, relative: false, direction: Direction::Up, min_z: 10.0, warmup: 20 }
    }
}

/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;

/// Fires when `value − min(values in the last window steps)` is at least `min_rise`
/// (absolute or relative) and at least `min_z` noise standard deviations. Once fired,
/// the points so far are forgotten and, while the series keeps making new highs, so are
/// those: a further firing needs a new rise of `min_rise` from a low reached after the
/// post-jump peak. Score: the rise (in the series' units, or relative).
#[derive(Clone, Debug)]
pub struct Jump {
    p: JumpParams,
    /// Monotonic deque (increasing values) of (step, value) in the window: the front is
    /// the window minimum.
    mins: VecDeque<(u64, f64)>,
    scale: DiffScale,
    last_step: Option<u64>,
    points: usize,
    /// After a firing: the highest value since.
    peak: Option<f64>,
}

impl Jump {
    pub fn new(p: JumpParams) -> Jump {
        Jump { p, mins: VecDeque::new(), scale: DiffScale::new(SCALE_POINTS), last_step: None, points: 0, peak: None }
    }

    pub fn params(&self) -> &JumpParams {
        &self.p
    }

    fn sign(&self) -> f64 {
        match self.p.direction {
            Direction::Up => 1.0,
            Direction::Down => -1.0,
        }
    }
}

impl Detector for Jump {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() || self.last_step.is_some_and(|l| step <= l) {
            return None;
        }
        self.last_step = Some(step);
        self.points += 1;
        let v = self.sign() * value;
        let horizon = step.saturating_sub(self.p.window);
        while self.mins.front().is_some_and(|&(s, _)| s < horizon) {
            self.mins.pop_front();
        }
        let mut fired = None;
        if let Some(&(base_step, base)) = self.mins.front() {
            let rise = v - base;
            let size = if self.p.relative { rise / base.abs().max(1e-12) } else { rise };
            let noisy = self.p.min_z > 0.0 && rise < self.p.min_z * self.scale.sigma();
            if self.points > self.p.warmup && size >= self.p.min_rise && !noisy {
                let s = self.sign();
                fired = Some(Firing {
                    step,
                    score: size,
                    message: format!(
                        "jump {}: {} at step {base_step} → {} ({} steps)",
                        if s > 0.0 { "up" } else { "down" },
                        fmt_num(s * base),
                        fmt_num(value),
                        step - base_step
                    ),
                });
                self.mins.clear();
                self.peak = Some(v);
            }
        }
        if fired.is_none()
            && let Some(peak) = &mut self.peak
            && v >= *peak
        {
            *peak = v;
            self.mins.clear();
        }
        while self.mins.back().is_some_and(|&(_, b)| b >= v) {
            self.mins.pop_back();
        }
        self.mins.push_back((step, v));
        self.scale.push(v);
        fired
    }

    fn reset(&mut self) {
        *self = Jump::new(self.p.clone());
    }

    fn rearm(&mut self) {}

    fn kind(&self) -> DetectorKind {
        DetectorKind::Jump
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigmoid_run(p: JumpParams, centre: f64, width: f64, n: u64) -> Vec<u64> {
        let mut d = Jump::new(p);
        (0..n)
            .filter_map(|s| d.push(s, 0.02 + 0.96 / (1.0 + (-(s as f64 - centre) / width).exp())))
            .map(|f| f.step)
            .collect()
    }

    #[test]
    fn fires_once_at_the_middle_of_a_rise() {
        let fired = sigmoid_run(JumpParams::default(), 5000.0, 50.0, 20_000);
        assert_eq!(fired.len(), 1, "{fired:?}");
        // Value − 0.02 ≥ 0.5 at about centre + 0.04·width.
        assert!((5000..5010).contains(&fired[0]), "{fired:?}");
    }

    #[test]
    fn too_slow_a_rise_does_not_fire() {
        // Rising 0.02 → 0.98 over ~20 000 steps: never 0.5 within 1000 steps.
        let fired = sigmoid_run(JumpParams::default(), 10_000.0, 4000.0, 20_000);
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn down_direction_detects_a_drop() {
        let mut d = Jump::new(JumpParams { direction: Direction::Down, relative: true, ..Default::default() });
        let fired: Vec<u64> =
            (0..3000u64).filter_map(|s| d.push(s, if s < 1000 { 0.69 } else { 0.05 })).map(|f| f.step).collect();
        assert_eq!(fired, vec![1000]);
    }

    #[test]
    fn a_second_jump_after_a_dip_fires_again() {
        let mut d = Jump::new(JumpParams::default());
        let series = |s: u64| match s {
            0..1000 => 0.0,
            1000..2000 => 0.9,
            2000..3000 => 0.1,
            _ => 0.9,
        };
        let fired: Vec<u64> = (0..4000u64).filter_map(|s| d.push(s, series(s))).map(|f| f.step).collect();
        assert_eq!(fired, vec![1000, 3000]);
    }
}
