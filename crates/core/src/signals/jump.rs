//! Jump: a sustained rise (or fall) of a metric at any time scale, e.g. held-out
//! accuracy going from chance to ~1 when a model groks, whether that takes 200 steps
//! or 3 000.
//!
//! The rise is measured from the lowest value since the detector last fired (or began),
//! not within a fixed window: a fixed window makes the firing step depend on how fast
//! the rise is (a rise slower than the window fires late, or never), and so on the last
//! digits of the arithmetic that set its speed. From the run's own low, the detector
//! fires where the series first stands `min_rise` above it, whatever the time scale; a
//! `window` can still bound the time scale when a config wants only fast rises.

use super::stats::{DiffScale, fmt_num};
use super::{Detector, DetectorKind, Firing};
use crate::event::SignalFigures;
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
    /// Smallest rise that counts, above the lowest value since the detector last fired
    /// (within the last `window` steps when `window` > 0). Absolute, or a fraction of
    /// |that lowest value| when `relative`. Default 0.5.
    pub min_rise: f64,
    /// Longest time scale, in steps, a rise may take: 0 (the default) means any (the
    /// lowest value since the last firing is the base).
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
    /// After a firing, no further firing for this many steps (applied by the
    /// [`super::Bank`], on top of the re-arm hysteresis). Default 0.
    pub quiet_steps: u64,
}

impl Default for JumpParams {
    fn default() -> Self {
        JumpParams {
            min_rise: 0.5,
            window: 0,
            relative: false,
            direction: Direction::Up,
            min_z: 10.0,
            warmup: 20,
            quiet_steps: 0,
        }
    }
}

/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;

/// Fires when `value − base` is at least `min_rise` (absolute or relative) and at least
/// `min_z` noise standard deviations, `base` the lowest value since the last firing
/// (in the last `window` steps when `window` > 0). The message gives the rise's time
/// scale: the steps since the series last stood at its base level. Once fired,
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
    /// The last step whose value was within a tenth of `min_rise` of the base (where the
    /// rise began, for the message).
    near_base: u64,
    /// The level a firing rose from, and whether its condition still holds (the value
    /// has not fallen back below the midpoint between that base and the firing level).
    fired_from: Option<(f64, f64)>,
    holds: bool,
}

impl Jump {
    pub fn new(p: JumpParams) -> Jump {
        Jump {
            p,
            mins: VecDeque::new(),
            scale: DiffScale::new(SCALE_POINTS),
            last_step: None,
            points: 0,
            peak: None,
            near_base: 0,
            fired_from: None,
            holds: false,
        }
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
        if self.p.window > 0 {
            let horizon = step.saturating_sub(self.p.window);
            while self.mins.front().is_some_and(|&(s, _)| s < horizon) {
                self.mins.pop_front();
            }
        }
        if let Some((base, level)) = self.fired_from {
            self.holds = v >= 0.5 * (base + level);
        }
        let mut fired = None;
        if let Some(&(_, base)) = self.mins.front() {
            let rise = v - base;
            let tenth = 0.1 * if self.p.relative { self.p.min_rise * base.abs() } else { self.p.min_rise };
            if rise <= tenth {
                self.near_base = step;
            }
            let size = if self.p.relative { rise / base.abs().max(1e-12) } else { rise };
            let noisy = self.p.min_z > 0.0 && rise < self.p.min_z * self.scale.sigma();
            if self.points > self.p.warmup && size >= self.p.min_rise && !noisy {
                let s = self.sign();
                fired = Some(Firing {
                    step,
                    score: size,
                    message: format!(
                        "jump {}: {} at step {} → {} ({} steps)",
                        if s > 0.0 { "up" } else { "down" },
                        fmt_num(s * base),
                        self.near_base,
                        fmt_num(value),
                        step - self.near_base
                    ),
                    figures: SignalFigures::finite(Some(self.near_base), Some(s * base), Some(value)),
                });
                self.mins.clear();
                self.peak = Some(v);
                self.fired_from = Some((base, v));
                self.holds = true;
            }
        }
        if fired.is_none()
            && let Some(peak) = &mut self.peak
            && v >= *peak
        {
            *peak = v;
            self.mins.clear();
        }
        if self.mins.is_empty() {
            self.near_base = step;
        }
        while self.mins.back().is_some_and(|&(_, b)| b >= v) {
            self.mins.pop_back();
        }
        self.mins.push_back((step, v));
        if self.p.window == 0 {
            // Only the minimum is ever read: keep memory O(1) on a long monotone rise.
            self.mins.truncate(1);
        }
        self.scale.push(v);
        fired
    }

    fn reset(&mut self) {
        *self = Jump::new(self.p.clone());
    }

    fn rearm(&mut self) {}

    fn holds(&self) -> bool {
        self.holds
    }

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
    fn a_slow_rise_fires_where_it_is_half_way_up() {
        // Rising 0.02 → 0.98 over ~20 000 steps: by default any time scale counts, and
        // the firing is where the value first stands 0.5 above its low (step 0).
        let fired = sigmoid_run(JumpParams::default(), 10_000.0, 4000.0, 20_000);
        let v = |s: u64| 0.02 + 0.96 / (1.0 + (-(s as f64 - 10_000.0) / 4000.0).exp());
        let expect = (0..20_000u64).find(|&s| v(s) >= v(0) + 0.5).unwrap();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert!(fired[0].abs_diff(expect) <= 2, "{fired:?} vs {expect}");
        // A `window` bounds the time scale: never 0.5 within 1000 steps.
        let fired = sigmoid_run(JumpParams { window: 1000, ..Default::default() }, 10_000.0, 4000.0, 20_000);
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn fires_at_the_same_level_whatever_the_rise_time() {
        // The same rise at time scales from 50 to 3200 steps fires where the value is
        // 0.5 above the low: the firing tracks the level, not the speed.
        for width in [50.0, 200.0, 800.0, 3200.0] {
            let fired = sigmoid_run(JumpParams::default(), 30_000.0, width, 60_000);
            let v = |s: f64| 0.02 + 0.96 / (1.0 + (-(s - 30_000.0) / width).exp());
            assert_eq!(fired.len(), 1, "width {width}: {fired:?}");
            let at = v(fired[0] as f64);
            assert!((0.52..0.53).contains(&at), "width {width}: fired at value {at}");
        }
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
