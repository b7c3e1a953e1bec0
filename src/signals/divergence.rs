//! Divergence: a non-finite value, or a value far above the series' running level.

use super::stats::{DiffScale, ema_alpha, fmt_num};
use super::{Detector, DetectorKind, Firing};
use serde::{Deserialize, Serialize};

/// Time constant (points) of the robust noise estimate.
const SCALE_POINTS: f64 = 200.0;

/// Parameters of [`Divergence`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DivergenceParams {
    /// Fire when a value exceeds `factor ×` the running level. Default 3.
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
}

impl Default for DivergenceParams {
    fn default() -> Self {
        DivergenceParams { factor: 3.0, level_steps: 200.0, warmup: 20, min_z: 6.0, min_peak_fraction: 0.01 }
    }
}

/// Fires on the first non-finite value of a run of them, and when a finite value
/// exceeds `factor ×` the running level and the level by `min_z` noise standard
/// deviations and reaches `min_peak_fraction` of the highest level so far (only while the
/// level is > 0, after `warmup` points). A spike fires once: the ratio test re-arms when a value is back at or under
/// `factor ×` the level. Score: value / level (`f64::MAX` for a non-finite value).
#[derive(Clone, Debug)]
pub struct Divergence {
    p: DivergenceParams,
    level: f64,
    /// The highest running level so far.
    peak: f64,
    last_step: Option<u64>,
    points: usize,
    spike_armed: bool,
    in_nonfinite: bool,
    scale: DiffScale,
}

impl Divergence {
    pub fn new(p: DivergenceParams) -> Divergence {
        Divergence {
            p,
            level: 0.0,
            peak: 0.0,
            last_step: None,
            points: 0,
            spike_armed: true,
            in_nonfinite: false,
            scale: DiffScale::new(SCALE_POINTS),
        }
    }

    pub fn params(&self) -> &DivergenceParams {
        &self.p
    }

    /// The running level (0 before the first finite point).
    pub fn level(&self) -> f64 {
        self.level
    }
}

impl Detector for Divergence {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() {
            if self.in_nonfinite {
                return None;
            }
            self.in_nonfinite = true;
            return Some(Firing { step, score: f64::MAX, message: format!("non-finite value ({value})") });
        }
        self.in_nonfinite = false;
        let Some(last) = self.last_step else {
            self.last_step = Some(step);
            self.level = value;
            self.peak = value;
            self.points = 1;
            self.scale.push(value);
            return None;
        };
        if step <= last {
            return None;
        }
        self.last_step = Some(step);
        self.points += 1;
        let limit = self.p.factor * self.level;
        let mut fired = None;
        let noisy = self.p.min_z > 0.0 && value - self.level < self.p.min_z * self.scale.sigma();
        let negligible = value < self.p.min_peak_fraction * self.peak;
        if self.level > 0.0 && value > limit && !noisy && !negligible {
            if self.spike_armed && self.points > self.p.warmup {
                self.spike_armed = false;
                let ratio = value / self.level;
                fired = Some(Firing {
                    step,
                    score: ratio,
                    message: format!(
                        "value {} is {ratio:.1}× the running level {}",
                        fmt_num(value),
                        fmt_num(self.level)
                    ),
                });
            }
        } else if value <= 0.5 * (1.0 + self.p.factor) * self.level {
            self.spike_armed = true;
        }
        let x = if self.level > 0.0 { value.min(limit) } else { value };
        self.level += ema_alpha((step - last) as f64, self.p.level_steps) * (x - self.level);
        self.peak = self.peak.max(self.level);
        self.scale.push(value);
        fired
    }

    fn reset(&mut self) {
        *self = Divergence::new(self.p.clone());
    }

    fn rearm(&mut self) {
        self.spike_armed = true;
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Divergence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_fires_immediately_and_once_per_run_of_nans() {
        let mut d = Divergence::new(DivergenceParams::default());
        let series = [1.0, f64::NAN, f64::NAN, 1.0, f64::INFINITY];
        let fired: Vec<u64> =
            series.iter().enumerate().filter_map(|(s, &v)| d.push(s as u64, v)).map(|f| f.step).collect();
        assert_eq!(fired, vec![1, 4]);
    }

    #[test]
    fn jitter_of_a_converged_loss_is_not_divergence_but_a_real_blow_up_is() {
        let mut d = Divergence::new(DivergenceParams::default());
        // ln 8 decaying to ~1e-8 over 5000 steps, then 30× relative spikes down there.
        let mut fired = Vec::new();
        for s in 0..8000u64 {
            let base = 2.08 * (-(s as f64) / 270.0).exp() + 1e-8;
            let v = if s > 5000 && s % 37 == 0 { 30.0 * base } else { base };
            fired.extend(d.push(s, v).map(|f| f.step));
        }
        assert!(fired.is_empty(), "{fired:?}");
        // Back to a tenth of the starting loss in one step: that diverges.
        let f = d.push(8000, 0.2).expect("a blow-up fires");
        assert!(f.score > 3.0, "{f:?}");
        // With the floor off, the jitter would have fired (the test can fail).
        let mut raw = Divergence::new(DivergenceParams { min_peak_fraction: 0.0, ..DivergenceParams::default() });
        let jitter = (0..8000u64)
            .filter_map(|s| {
                let base = 2.08 * (-(s as f64) / 270.0).exp() + 1e-8;
                raw.push(s, if s > 5000 && s % 37 == 0 { 30.0 * base } else { base })
            })
            .count();
        assert!(jitter > 0);
    }

    #[test]
    fn spike_fires_once_after_warmup() {
        let mut d = Divergence::new(DivergenceParams::default());
        let v = |s: u64| if s == 10 || (100..105).contains(&s) { 10.0 } else { 1.0 };
        let fired: Vec<u64> = (0..200).filter_map(|s| d.push(s, v(s))).map(|f| f.step).collect();
        assert_eq!(fired, vec![100]);
    }
}
