//! Excursions of a loss far above its running level, reported as one of two things:
//! a **spike** (the excursion began: one firing per burst, however many points it has)
//! or **divergence** (a non-finite value, or an excursion that does not come back within
//! `sustain_steps`). A memorised fit under AdamW spikes ×5–100 and recovers by itself;
//! that is a spike, not a run blowing up, and an operator reading "divergence" on it
//! would stop a healthy run.

use super::stats::{DiffScale, ema_alpha, fmt_num};
use super::{Detector, DetectorKind, Firing};
use crate::event::SignalFigures;
use serde::{Deserialize, Serialize};

/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;

/// Parameters of [`Divergence`] and [`Spike`] (the same excursion test).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DivergenceParams {
    /// A value above `factor ×` the running level is an excursion. Default 3.
    pub factor: f64,
    /// Time constant, in steps, of the running level (a slow EMA whose input is clipped
    /// at `factor ×` the level, so spikes barely move it). Default 200.
    pub level_steps: f64,
    /// Finite points seen before the ratio test applies (non-finite values fire at any
    /// time). Default 20.
    pub warmup: usize,
    /// The excess over the level must also exceed `min_z ×` the robust point-to-point
    /// noise standard deviation, which keeps the ratio test quiet on signed or
    /// zero-mean metrics whose level is near 0 (0 disables). Default 6.
    pub min_z: f64,
    /// The value must also reach this fraction of the highest running level the series
    /// has had: a converged loss that jitters from 1e-8 to 1e-7 is 10× its level, but
    /// nowhere near diverging (0 disables). Default 0.01.
    pub min_peak_fraction: f64,
    /// An excursion (a burst of points above the level, with gaps shorter than
    /// `quiet_steps`) still going this many steps after it began is divergence: the
    /// level stays up. Default 100.
    pub sustain_steps: u64,
    /// A burst ends once the values have stayed back under the re-arm level (half-way
    /// between the level and `factor ×` it) for this many steps; until then further
    /// points above belong to the same burst and fire nothing. Default 25.
    pub quiet_steps: u64,
    /// Divergence only: a sustained excursion must also reach this fraction of the run's
    /// early level (the median of its first `warmup` finite points, at least 5): a loss
    /// that went from 2.3 to 0.0131 and climbs back to 0.055 rose ×4 but is nowhere near
    /// blowing up (0 disables). Default 0.1.
    pub min_initial_fraction: f64,
}

impl Default for DivergenceParams {
    fn default() -> Self {
        DivergenceParams {
            factor: 3.0,
            level_steps: 200.0,
            warmup: 20,
            min_z: 6.0,
            min_peak_fraction: 0.01,
            sustain_steps: 100,
            quiet_steps: 25,
            min_initial_fraction: 0.1,
        }
    }
}

/// What one point did to the excursion tracker.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Nothing,
    /// The first point of a burst of non-finite values.
    NonFinite,
    /// A burst began with this point: (value / level, level, burst number in the run).
    Began {
        ratio: f64,
        level: f64,
        burst: u64,
    },
    /// The burst that began at `since` is still going `sustain_steps` later.
    Sustained {
        since: u64,
        ratio: f64,
        level: f64,
    },
}

/// Points of the fast reference level: the median of the last this many finite points.
const FAST_POINTS: usize = 9;

/// The shared excursion test: a running level, and bursts of points above it.
#[derive(Clone, Debug)]
struct Excursions {
    p: DivergenceParams,
    level: f64,
    /// The highest running level so far.
    peak: f64,
    last_step: Option<u64>,
    points: usize,
    in_nonfinite: bool,
    scale: DiffScale,
    /// The current burst: (first step, level before it, last step above, sustained reported).
    burst: Option<(u64, f64, u64, bool)>,
    bursts: u64,
    /// The last `FAST_POINTS` finite values (ring, oldest first once full).
    fast: std::collections::VecDeque<f64>,
    /// The first finite values (up to `max(warmup, 5)`), for the early level.
    early: Vec<f64>,
}

impl Excursions {
    fn new(p: DivergenceParams) -> Excursions {
        Excursions {
            p,
            level: 0.0,
            peak: 0.0,
            last_step: None,
            points: 0,
            in_nonfinite: false,
            scale: DiffScale::new(SCALE_POINTS),
            burst: None,
            bursts: 0,
            fast: std::collections::VecDeque::with_capacity(FAST_POINTS + 1),
            early: Vec::new(),
        }
    }

    /// The reference an excursion is measured against: the slow level, or the median of
    /// the last `FAST_POINTS` values when that is lower (the slow level lags a fast
    /// descent, and a ×20 burst right after the drop would stay under `factor ×` it).
    fn reference(&self) -> f64 {
        if self.fast.len() < FAST_POINTS {
            return self.level;
        }
        let mut v: Vec<f64> = self.fast.iter().copied().collect();
        v.sort_unstable_by(f64::total_cmp);
        let m = v[FAST_POINTS / 2];
        if m > 0.0 { self.level.min(m) } else { self.level }
    }

    /// The run's early level: the median of its first finite points (0 before any).
    fn early_level(&self) -> f64 {
        let mut v = self.early.clone();
        v.sort_unstable_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    fn remember(&mut self, value: f64) {
        if self.early.len() < self.p.warmup.max(5) {
            self.early.push(value);
        }
        if self.fast.len() == FAST_POINTS {
            self.fast.pop_front();
        }
        self.fast.push_back(value);
    }

    fn push(&mut self, step: u64, value: f64) -> Outcome {
        if !value.is_finite() {
            if self.in_nonfinite {
                return Outcome::Nothing;
            }
            self.in_nonfinite = true;
            return Outcome::NonFinite;
        }
        self.in_nonfinite = false;
        let Some(last) = self.last_step else {
            self.last_step = Some(step);
            self.level = value;
            self.peak = value;
            self.points = 1;
            self.scale.push(value);
            self.remember(value);
            return Outcome::Nothing;
        };
        if step <= last {
            return Outcome::Nothing;
        }
        self.last_step = Some(step);
        self.points += 1;
        let limit = self.p.factor * self.level;
        let reference = self.reference();
        let noisy = self.p.min_z > 0.0 && value - reference < self.p.min_z * self.scale.sigma();
        let negligible = value < self.p.min_peak_fraction * self.peak;
        let above = reference > 0.0
            && value > self.p.factor * reference
            && !noisy
            && !negligible
            && self.points > self.p.warmup;
        let floor = self.p.min_initial_fraction * self.early_level();
        let mut out = Outcome::Nothing;
        match &mut self.burst {
            None if above => {
                self.bursts += 1;
                self.burst = Some((step, reference, step, false));
                out = Outcome::Began { ratio: value / reference, level: reference, burst: self.bursts };
            }
            None => {}
            Some((since, before, last_above, sustained)) => {
                // Back: under the re-arm level of the reference now, or of the one the burst
                // was measured against if that was higher (a burst measured against a
                // fast descent ends once the loss settles anywhere near it; a level that
                // stays up keeps the slow reference under it and the burst going).
                if value > 0.5 * (1.0 + self.p.factor) * before.max(reference) {
                    *last_above = step;
                }
                if step - *last_above >= self.p.quiet_steps.max(1) {
                    self.burst = None;
                } else if !*sustained && step - *since >= self.p.sustain_steps && value >= floor {
                    *sustained = true;
                    out = Outcome::Sustained { since: *since, ratio: value / *before, level: *before };
                }
            }
        }
        let x = if self.level > 0.0 { value.min(limit) } else { value };
        self.level += ema_alpha((step - last) as f64, self.p.level_steps) * (x - self.level);
        self.peak = self.peak.max(self.level);
        self.scale.push(value);
        self.remember(value);
        out
    }

    /// Whether the series is in a burst (or a run of non-finite values) now.
    fn in_excursion(&self) -> bool {
        self.in_nonfinite || self.burst.is_some()
    }
}

/// Divergence: fires on the first non-finite value of a run of them, and once per burst
/// when an excursion above `factor ×` the running level (by `min_z` noise standard
/// deviations, and at least `min_peak_fraction` of the highest level so far, after
/// `warmup` points) is still going `sustain_steps` after it began. A burst ends after
/// `quiet_steps` back under the re-arm level. Score: value / level before the burst
/// (`f64::MAX` for a non-finite value).
#[derive(Clone, Debug)]
pub struct Divergence {
    x: Excursions,
    fired: bool,
}

impl Divergence {
    pub fn new(p: DivergenceParams) -> Divergence {
        Divergence { x: Excursions::new(p), fired: false }
    }

    pub fn params(&self) -> &DivergenceParams {
        &self.x.p
    }

    /// The running level (0 before the first finite point).
    pub fn level(&self) -> f64 {
        self.x.level
    }
}

impl Detector for Divergence {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        let firing = match self.x.push(step, value) {
            Outcome::NonFinite => Some(Firing {
                step,
                score: f64::MAX,
                message: format!("non-finite value ({value})"),
                figures: SignalFigures::default(),
            }),
            Outcome::Sustained { since, ratio, level } => Some(Firing {
                step,
                score: ratio,
                message: format!(
                    "still {ratio:.1}× the level {} before step {since}, {} steps on: the loss does not come back",
                    fmt_num(level),
                    step - since
                ),
                figures: SignalFigures::finite(Some(since), Some(level), None),
            }),
            _ => None,
        };
        self.fired |= firing.is_some();
        firing
    }

    fn reset(&mut self) {
        *self = Divergence::new(self.x.p.clone());
    }

    /// Non-finite values and sustained excursions fire once each by construction;
    /// there is no condition to re-arm.
    fn rearm(&mut self) {}

    fn holds(&self) -> bool {
        self.fired && self.x.in_excursion()
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Divergence
    }
}

/// Spike: fires on the first point of each burst above `factor ×` the running level
/// (the same test as [`Divergence`]); further points of the burst fire nothing, and a
/// burst ends after `quiet_steps` back under the re-arm level. Non-finite values are
/// divergence's. Score: value / level.
#[derive(Clone, Debug)]
pub struct Spike {
    x: Excursions,
}

impl Spike {
    pub fn new(p: DivergenceParams) -> Spike {
        Spike { x: Excursions::new(p) }
    }

    pub fn params(&self) -> &DivergenceParams {
        &self.x.p
    }
}

impl Detector for Spike {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        match self.x.push(step, value) {
            Outcome::Began { ratio, level, burst } => Some(Firing {
                step,
                score: ratio,
                message: format!(
                    "spike to {} ({ratio:.1}× the running level {}; burst {burst} of the run)",
                    fmt_num(value),
                    fmt_num(level)
                ),
                figures: SignalFigures::finite(None, Some(level), Some(value)),
            }),
            _ => None,
        }
    }

    fn reset(&mut self) {
        *self = Spike::new(self.x.p.clone());
    }

    fn rearm(&mut self) {}

    fn holds(&self) -> bool {
        self.x.burst.is_some()
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Spike
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut dyn Detector, n: u64, v: impl Fn(u64) -> f64) -> Vec<u64> {
        (0..n).filter_map(|s| d.push(s, v(s))).map(|f| f.step).collect()
    }

    #[test]
    fn nan_fires_immediately_and_once_per_run_of_nans() {
        let mut d = Divergence::new(DivergenceParams::default());
        let series = [1.0, f64::NAN, f64::NAN, 1.0, f64::INFINITY];
        let fired: Vec<u64> =
            series.iter().enumerate().filter_map(|(s, &v)| d.push(s as u64, v)).map(|f| f.step).collect();
        assert_eq!(fired, vec![1, 4]);
        let mut sp = Spike::new(DivergenceParams::default());
        assert!(series.iter().enumerate().all(|(s, &v)| sp.push(s as u64, v).is_none()), "NaN is not a spike");
    }

    #[test]
    fn jitter_of_a_converged_loss_is_not_a_spike_but_a_real_blow_up_is() {
        let mut d = Spike::new(DivergenceParams::default());
        // ln 8 decaying to ~1e-8 over 5000 steps, then 30× relative spikes down there.
        let base = |s: u64| 2.08 * (-(s as f64) / 270.0).exp() + 1e-8;
        let jitter = |s: u64| if s > 5000 && s.is_multiple_of(37) { 30.0 * base(s) } else { base(s) };
        assert!(run(&mut d, 8000, jitter).is_empty());
        // Back to a tenth of the starting loss in one step: that is an excursion.
        let f = d.push(8000, 0.2).expect("a blow-up fires");
        assert!(f.score > 3.0, "{f:?}");
        // With the floor off, the jitter would have fired (the test can fail).
        let mut raw = Spike::new(DivergenceParams { min_peak_fraction: 0.0, ..DivergenceParams::default() });
        assert!(!run(&mut raw, 8000, jitter).is_empty());
    }

    #[test]
    fn a_burst_is_one_spike_and_a_recovered_burst_is_no_divergence() {
        // An unstable stretch: 4 points above in 14 steps, then calm; later a lone spike.
        let v = |s: u64| if [100, 104, 109, 113, 400].contains(&s) { 10.0 } else { 1.0 };
        let mut sp = Spike::new(DivergenceParams::default());
        assert_eq!(run(&mut sp, 600, v), vec![100, 400]);
        let mut d = Divergence::new(DivergenceParams::default());
        assert!(run(&mut d, 600, v).is_empty());
        // Without the quiet period the stretch would be four spikes (the test can fail).
        let mut eager = Spike::new(DivergenceParams { quiet_steps: 1, ..Default::default() });
        assert_eq!(run(&mut eager, 600, v).len(), 5);
    }

    #[test]
    fn a_level_that_stays_up_is_divergence_once() {
        let v = |s: u64| if s < 300 { 1.0 } else { 20.0 };
        let mut d = Divergence::new(DivergenceParams::default());
        assert_eq!(run(&mut d, 2000, v), vec![400]);
        let mut sp = Spike::new(DivergenceParams::default());
        assert_eq!(run(&mut sp, 2000, v), vec![300]);
    }

    #[test]
    fn spike_fires_once_after_warmup() {
        let mut d = Spike::new(DivergenceParams::default());
        let v = |s: u64| if s == 10 || (100..105).contains(&s) { 10.0 } else { 1.0 };
        assert_eq!(run(&mut d, 200, v), vec![100]);
        assert!(!d.holds(), "the burst ended");
    }

    #[test]
    fn a_small_rise_of_a_converged_loss_is_not_divergence_but_a_return_to_the_start_is() {
        // 2.3 falling to 0.0131, then climbing to 0.1 and staying (×7.6): not a blow-up
        // of a run that started at 2.3.
        let v = |s: u64| if s < 2000 { 0.0131 + 2.2869 * (-(s as f64) / 150.0).exp() } else { 0.1 };
        let mut d = Divergence::new(DivergenceParams::default());
        assert!(run(&mut d, 4000, v).is_empty());
        // The ratio test alone would have called it divergence (the test can fail).
        let mut raw = Divergence::new(DivergenceParams { min_initial_fraction: 0.0, ..Default::default() });
        assert_eq!(run(&mut raw, 4000, v).len(), 1);
        // Back to 1.0 (43 % of the start) and staying: divergence, `sustain_steps` on.
        let up = |s: u64| if s < 2000 { v(s) } else { 1.0 };
        let mut d = Divergence::new(DivergenceParams::default());
        assert_eq!(run(&mut d, 4000, up), vec![2100]);
    }
}
