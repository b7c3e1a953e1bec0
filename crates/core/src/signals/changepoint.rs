//! Online change-point detection: Bayesian online change-point detection (Adams &
//! MacKay 2007) with a conjugate Normal-Inverse-Gamma model per segment and the
//! run-length distribution truncated to `max_run`, so each point costs O(`max_run`).
//!
//! The segment model is a Bayesian polynomial regression `y = a + b·u + c·u² + ε`,
//! ε ~ N(0, σ²), with a Normal-Inverse-Gamma prior on (a, b, c, σ²) (u: steps since the
//! segment began, in units of the typical spacing). `trend = "constant"` keeps only `a`
//! and is the textbook Normal-Gamma model; the default `"quadratic"` exists because
//! training curves trend and bend: with a constant model a smoothly falling loss is a
//! "change" every few dozen points, and with a linear one a power-law loss still is
//! while it bends. On positive metrics the model works on ln(value)
//! (`transform = "auto"`): losses are heteroscedastic with noise roughly proportional
//! to their level, and exponential decays are straight lines in log space. Each
//! hypothesis clips outliers (`clip`) so that a lone spike is not a change point.
//! See docs/SIGNALS.md for the firing rule and measured behaviour.

use super::stats::{DiffScale, ema_alpha, ln_gamma, log_add_exp};
use super::{Detector, DetectorKind, Firing};
use crate::event::SignalFigures;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How the detector transforms values before modelling them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// ln(value) while every finite value so far is > 0. The first non-positive value
    /// switches the detector to raw values for good and restarts it (so a signed or
    /// zero-mean metric ends up raw within a few points).
    #[default]
    Auto,
    /// ln(value); non-positive values are ignored.
    Log,
    /// Raw values.
    None,
}

/// The model of a segment: a polynomial in the step of degree 0, 1 or 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    /// Piecewise constant: the textbook Normal-Gamma model.
    Constant,
    /// Piecewise linear.
    Linear,
    /// Piecewise quadratic: smoothly bending curves stay one segment.
    #[default]
    Quadratic,
}

impl Trend {
    fn terms(self) -> usize {
        match self {
            Trend::Constant => 1,
            Trend::Linear => 2,
            Trend::Quadratic => 3,
        }
    }
}

/// Parameters of [`Changepoint`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangepointParams {
    /// Expected segment length in points: the constant hazard is `1 / hazard_points`.
    /// Default 1000.
    pub hazard_points: f64,
    /// Run-length truncation: run lengths ≥ `max_run` are merged into one entry whose
    /// statistics are those of the last `max_run` points. Cost per point is
    /// O(`max_run`). Default 200.
    pub max_run: usize,
    /// Run lengths up to this many points count as "a change happened recently"; a
    /// change must become evident within this many points to be reported. Default 100.
    pub short_run: usize,
    /// Fire when the posterior mass on run lengths ≤ `short_run` reaches this. Default 0.5.
    pub threshold: f64,
    /// Value transform; see [`Transform`]. Default `auto`.
    pub transform: Transform,
    /// The within-segment model: `constant`, `linear` or `quadratic`. Default `quadratic`.
    pub trend: Trend,
    /// Prior standard deviation of a new segment's level, around the last value, in
    /// units of the noise scale. Default 10.
    pub prior_level_sd: f64,
    /// Prior standard deviation of a new segment's slope, in noise-scale units per
    /// typical point spacing. Default 0.1.
    pub prior_slope_sd: f64,
    /// Prior standard deviation of a new segment's curvature (the u² coefficient), in
    /// noise-scale units per spacing². Default 0.01.
    pub prior_curvature_sd: f64,
    /// Points seen before the detector may fire. Default 30.
    pub warmup: usize,
    /// Consecutive points the firing condition must hold (a lone outlier briefly looks
    /// like a new segment). Default 5.
    pub confirm: usize,
    /// Robustness to outliers: for each run hypothesis, a value more than `clip`
    /// predictive scale units from its prediction is clipped to that distance, both in
    /// the likelihood and in the run's statistics (a Huber-like winsorisation; a lone
    /// spike then neither wins a new segment nor corrupts the old one). 0 disables.
    /// Default 4.
    pub clip: f64,
    /// Smallest change that counts, in the model's units: on log-transformed metrics a
    /// change of ln(value) (0.02 ≈ 2 %), on raw ones a fraction of max(|level before|,
    /// |level after|, the series' range so far). The posterior alone finds changes of any
    /// size once the noise is small enough (a converged full-batch loss varying by 3e-5
    /// "changes" all the time); this asks for one a person would call a change. The
    /// size is the mean deviation of the points since the change from the trend before
    /// it (a line fitted to up to 100 points, extrapolated), less one standard error: a
    /// level shift, a kink and a bend count; a steady drift does not. Default 0.02.
    pub min_effect: f64,
    /// The change must also be at least this many times the series' point-to-point noise
    /// standard deviation σ̂: what a person sees as a change on a noisy curve is a move
    /// that stands out of its noise band (a batch-of-32 loss wandering by half its noise
    /// is no change; a halving is). Scale-free: the same in any units. Default 1.5.
    pub min_effect_sd: f64,
    /// The change must also move the raw value by this fraction of the series' range
    /// so far (what a linear chart of the whole run spans): a loss that fell from 2.3 to
    /// 1e-5 and wobbles there moves by far less than a pixel. Default 0.002.
    pub min_visible: f64,
    /// After a firing, no further firing for this many steps (applied by the
    /// [`super::Bank`], on top of the re-arm hysteresis). Default 0.
    pub quiet_steps: u64,
}

impl Default for ChangepointParams {
    fn default() -> Self {
        ChangepointParams {
            hazard_points: 1000.0,
            max_run: 200,
            short_run: 100,
            threshold: 0.5,
            transform: Transform::Auto,
            trend: Trend::Quadratic,
            prior_level_sd: 10.0,
            prior_slope_sd: 0.1,
            prior_curvature_sd: 0.01,
            warmup: 30,
            confirm: 5,
            clip: 4.0,
            min_effect: 0.02,
            min_effect_sd: 1.5,
            min_visible: 0.002,
            quiet_steps: 0,
        }
    }
}

/// Prior shape a₀ of the Inverse-Gamma on σ²; b₀ = (a₀ − 1)·σ̂² makes its mean the
/// robust running noise estimate σ̂² at the segment's birth.
const PRIOR_SHAPE: f64 = 2.0;
/// Prior precision of a regression term left out of the model.
const OFF: f64 = 1e300;
/// Points that only seed the noise-scale estimate before the model starts.
const BOOTSTRAP_POINTS: usize = 8;
/// Time constant (points) of the robust noise-scale and spacing estimates.
const SCALE_POINTS: f64 = 200.0;

/// One run-length hypothesis: a segment born after step `birth`, with its own prior
/// (fixed at birth) and sufficient statistics of the points since, in coordinates
/// u = (step − birth) / spacing and ỹ = y − c.
#[derive(Clone, Copy, Debug)]
struct Run {
    log_mass: f64,
    birth: u64,
    /// Prior mean of the level at u = 0 (the last value before the segment).
    c: f64,
    /// 1 / spacing (multiplying is cheaper than dividing, on every hypothesis every point).
    inv_spacing: f64,
    /// Prior Inverse-Gamma scale.
    b0: f64,
    /// Σ uᵖ for p = 0..=4 (Σ u⁰ = n).
    su: [f64; 5],
    /// Σ uᵖ ỹ for p = 0..=2.
    sy: [f64; 3],
    syy: f64,
    /// Every point so far sat at u = 1, 2, …, n (see [`Factor`]).
    regular: bool,
}

impl Run {
    fn born(log_mass: f64, birth: u64, c: f64, spacing: f64, sigma: f64) -> Run {
        let b0 = (PRIOR_SHAPE - 1.0) * sigma * sigma;
        Run { log_mass, birth, c, inv_spacing: 1.0 / spacing, b0, su: [0.0; 5], sy: [0.0; 3], syy: 0.0, regular: true }
    }

    fn n(&self) -> usize {
        self.su[0] as usize
    }

    fn u(&self, step: u64) -> f64 {
        (step - self.birth) as f64 * self.inv_spacing
    }

    /// Adds the point at `u` (see [`Run::u`]).
    fn add(&mut self, u: f64, y: f64) {
        let yt = y - self.c;
        let mut up = 1.0;
        for p in 0..5 {
            self.su[p] += up;
            if p < 3 {
                self.sy[p] += up * yt;
            }
            up *= u;
        }
        self.syy += yt * yt;
    }

    /// Posterior predictive of y at `u` under the Normal-Inverse-Gamma regression on
    /// (1, u, u²) with prior precisions `prec` (prior mean 0 in ỹ coordinates; a term
    /// left out of the model has precision [`OFF`], which pins its coefficient at 0):
    /// (mean, scale², degrees of freedom).
    fn predictive(&self, u: f64, prec: &[f64; 3]) -> (f64, f64, f64) {
        Factor::new(&self.su, prec, u).predict(self, u)
    }
}

/// Λ = V₀⁻¹ + XᵀX = L D Lᵀ of a run (3×3, unit lower L, unrolled; r = 1/D) and the
/// predictive variance factor x*ᵀ Λ⁻¹ x* at one u, x* = (1, u, u²). It depends on the
/// run's u values only, which for a metric logged at a steady interval are 1, 2, …, n:
/// the detector then takes it from a table by n instead of three divisions per run.
#[derive(Clone, Copy, Debug)]
struct Factor {
    r: [f64; 3],
    l10: f64,
    l20: f64,
    l21: f64,
    quad: f64,
}

impl Factor {
    fn new(s: &[f64; 5], prec: &[f64; 3], u: f64) -> Factor {
        let r0 = 1.0 / (s[0] + prec[0]);
        let l10 = s[1] * r0;
        let l20 = s[2] * r0;
        let d1 = s[2] + prec[1] - l10 * s[1];
        let r1 = 1.0 / d1.max(1e-300);
        let l21 = (s[3] - l20 * s[1]) * r1;
        let d2 = s[4] + prec[2] - l20 * s[2] - l21 * l21 * d1;
        let r2 = 1.0 / d2.max(1e-300);
        let mut f = Factor { r: [r0, r1, r2], l10, l20, l21, quad: 0.0 };
        let (w0, w1, w2) = f.forward(1.0, u, u * u);
        f.quad = w0 * w0 * r0 + w1 * w1 * r1 + w2 * w2 * r2;
        f
    }

    /// y = L⁻¹ b, so bᵀ Λ⁻¹ b = Σ yᵢ² / Dᵢ.
    fn forward(&self, b0: f64, b1: f64, b2: f64) -> (f64, f64, f64) {
        let y1 = b1 - self.l10 * b0;
        (b0, y1, b2 - self.l20 * b0 - self.l21 * y1)
    }

    /// (mean, scale², degrees of freedom) of `run`'s predictive at `u` (the u this
    /// factor was made for).
    fn predict(&self, run: &Run, u: f64) -> (f64, f64, f64) {
        let [r0, r1, r2] = self.r;
        // Posterior mean m = Λ⁻¹ Xᵀỹ, and ỹᵀX m.
        let (y0, y1, y2) = self.forward(run.sy[0], run.sy[1], run.sy[2]);
        let m2 = y2 * r2;
        let m1 = y1 * r1 - self.l21 * m2;
        let m0 = y0 * r0 - self.l10 * m1 - self.l20 * m2;
        let fit = y0 * y0 * r0 + y1 * y1 * r1 + y2 * y2 * r2;
        let an = PRIOR_SHAPE + 0.5 * run.su[0];
        let bn = run.b0 + 0.5 * (run.syy - fit).max(0.0);
        (run.c + m0 + m1 * u + m2 * u * u, bn / an * (1.0 + self.quad), 2.0 * an)
    }
}

/// Bayesian online change-point detection with run-length truncation. Fires when the
/// posterior mass on run lengths ≤ `short_run` (not counting the run that began with
/// the series) is at least `threshold` and the most probable run length is
/// ≤ `short_run`, for `confirm` consecutive points, after `warmup` points; re-arms when
/// that mass falls under `threshold / 2`. Score: that mass.
/// The message names the step after which the most probable new segment began.
#[derive(Clone, Debug)]
pub struct Changepoint {
    p: ChangepointParams,
    /// Run-length hypotheses, index = run length in points (front = youngest).
    runs: VecDeque<Run>,
    /// ln Γ((ν+1)/2) − ln Γ(ν/2) for ν = 2a₀ + n, n = 0..=max_run.
    lg: Vec<f64>,
    /// Prior precisions of (level, slope, curvature).
    prec: [f64; 3],
    /// [`Factor`] of a regular run of n points, n = 0..=max_run + 1.
    factors: Vec<Factor>,
    log_transform: Option<bool>,
    scale: DiffScale,
    spacing: f64,
    last: Option<(u64, f64)>,
    points: usize,
    armed: bool,
    short_mass: f64,
    /// Scratch: each run's evidence share, exp(log joint − max).
    share: Vec<f64>,
    /// Consecutive points the firing condition has held.
    held: usize,
    /// The last points, newest last: (step, modelled value, raw value), enough for the
    /// effect size of a change up to `short_run` points old.
    recent: VecDeque<(u64, f64, f64)>,
    /// Lowest and highest raw value so far (the range a chart of the run spans).
    raw_range: (f64, f64),
    /// The last firing's change, followed since (for [`Detector::holds`]).
    fired: Option<Fired>,
    /// Whether that change still stands out of its prior trend as a change (updated every
    /// point while `fired` is set).
    holds: bool,
}

/// The trend of the points before a change (see `Changepoint::trend_before`).
#[derive(Clone, Copy, Debug)]
struct TrendLine {
    /// Mean step and mean value of the points it was fitted to.
    x0: f64,
    y0: f64,
    /// 0 when not significant.
    slope: f64,
    /// Σ(x − x0)² (0 when the slope is not used).
    sxx: f64,
    n: usize,
    /// The curvature term of the points before the change: `curv · q(x − x0)` with
    /// q(d) = d² − `m2` − `k`·d (orthogonal to 1 and d over those points); `curv` is 0
    /// when not significant, and `sqq` = Σq² (0 when not used).
    curv: f64,
    m2: f64,
    k: f64,
    sqq: f64,
    /// The last step it was fitted to (the change's birth).
    x_end: f64,
}

impl TrendLine {
    /// The trend's value at step x, the line extrapolated past the change's birth: a
    /// curve that goes on as it went (an exponential decay, a smoothly rising held-out
    /// loss) deviates from it by its noise only. Extrapolating a slope fitted to noise
    /// would invent a deviation, so the slope is used only when significant, and the
    /// extrapolation's own uncertainty counts in [`TrendLine::variance`].
    fn at(&self, x: f64) -> f64 {
        self.y0 + self.slope * (x - self.x0)
    }

    /// Variance factor (per σ²) of the trend's mean value over points at mean step `x`.
    fn variance(&self, x: f64) -> f64 {
        1.0 / self.n as f64 + if self.sxx > 0.0 { (x - self.x0).powi(2) / self.sxx } else { 0.0 }
    }

    fn q(&self, x: f64) -> f64 {
        let d = x - self.x0;
        d * d - self.m2 - self.k * d
    }

    /// The trend with its curvature, extrapolated: a smoothly bending curve (a power
    /// law, a sum of exponentials) whose bend eases lies between this and the line.
    fn at_bent(&self, x: f64) -> f64 {
        self.at(x) + self.curv * self.q(x)
    }

    /// [`TrendLine::variance`] of [`TrendLine::at_bent`].
    fn variance_bent(&self, x: f64) -> f64 {
        self.variance(x) + if self.sqq > 0.0 { self.q(x).powi(2) / self.sqq } else { 0.0 }
    }

    /// The level where the trend stood at the change's birth, held: a curve that stops
    /// falling (a descent bending into a plateau) leaves the extrapolated line but not
    /// this level, and the plateau detector, not this one, reports a curve that stopped.
    fn held(&self, x: f64) -> f64 {
        self.at(x.min(self.x_end))
    }
}

/// Mean deviations of the points after a change from the trend before it: from the
/// extrapolated line ([`TrendLine::at`]), the bent trend ([`TrendLine::at_bent`]) and the
/// held level ([`TrendLine::held`]).
#[derive(Clone, Copy, Debug, Default)]
struct Devs {
    line: f64,
    bent: f64,
    held: f64,
}

impl Devs {
    fn add(&mut self, line: &TrendLine, x: f64, y: f64) {
        self.line += y - line.at(x);
        self.bent += y - line.at_bent(x);
        self.held += y - line.held(x);
    }

    fn mean(&self, n: f64) -> Devs {
        Devs { line: self.line / n, bent: self.bent / n, held: self.held / n }
    }
}

/// After a firing: the trend before the change and the running sums of the points since
/// it began (deviation from the trend, raw value), so that `holds` judges the
/// change on everything seen since, in O(1) per point.
#[derive(Clone, Copy, Debug)]
struct Fired {
    birth: u64,
    line: TrendLine,
    raw_level: f64,
    sign: f64,
    /// Σ deviations of the points since the change.
    dev_sum: Devs,
    raw_sum: f64,
    x_sum: f64,
    n: usize,
}

/// Points before a change that its "before" trend is fitted to (at most; at least
/// `BEFORE_MIN` are needed to judge a change's size).
const BEFORE_MAX: usize = 100;
const BEFORE_MIN: usize = 10;

impl Changepoint {
    pub fn new(p: ChangepointParams) -> Changepoint {
        let max_run = p.max_run.max(2);
        let lg = (0..=max_run + 1)
            .map(|n| {
                let nu = 2.0 * PRIOR_SHAPE + n as f64;
                ln_gamma(0.5 * (nu + 1.0)) - ln_gamma(0.5 * nu)
            })
            .collect();
        let log_transform = match p.transform {
            Transform::Auto => None,
            Transform::Log => Some(true),
            Transform::None => Some(false),
        };
        let sq = |x: f64| 1.0 / (x * x);
        let k = p.trend.terms();
        let prec = [
            sq(p.prior_level_sd),
            if k > 1 { sq(p.prior_slope_sd) } else { OFF },
            if k > 2 { sq(p.prior_curvature_sd) } else { OFF },
        ];
        let mut su = [0.0; 5];
        let factors = (0..=max_run + 1)
            .map(|n| {
                if n > 0 {
                    let mut up = 1.0;
                    for s in su.iter_mut() {
                        *s += up;
                        up *= n as f64;
                    }
                }
                Factor::new(&su, &prec, (n + 1) as f64)
            })
            .collect();
        Changepoint {
            p,
            runs: VecDeque::with_capacity(max_run + 2),
            lg,
            prec,
            factors,
            log_transform,
            scale: DiffScale::new(SCALE_POINTS),
            spacing: 0.0,
            last: None,
            points: 0,
            armed: true,
            short_mass: 0.0,
            share: Vec::with_capacity(max_run + 2),
            held: 0,
            recent: VecDeque::new(),
            raw_range: (f64::INFINITY, f64::NEG_INFINITY),
            fired: None,
            holds: false,
        }
    }

    pub fn params(&self) -> &ChangepointParams {
        &self.p
    }

    /// Posterior mass on run lengths ≤ `short_run` after the last point.
    pub fn short_run_mass(&self) -> f64 {
        self.short_mass
    }

    /// The most probable run length (in points) after the last point.
    pub fn map_run_length(&self) -> usize {
        self.runs.iter().enumerate().max_by(|a, b| a.1.log_mass.total_cmp(&b.1.log_mass)).map(|(i, _)| i).unwrap_or(0)
    }

    /// The trend before a change that began after step `birth`: a line fitted to up to
    /// `BEFORE_MAX` points before it, or their mean level when the slope is not
    /// significant (within two standard errors of 0: extrapolating a slope fitted to
    /// noise over the points after the change would invent a deviation). None with
    /// fewer than `BEFORE_MIN` points.
    fn trend_before(&self, birth: u64) -> Option<TrendLine> {
        let pts: Vec<(f64, f64)> = self
            .recent
            .iter()
            .rev()
            .filter(|(s, _, _)| *s <= birth)
            .take(BEFORE_MAX)
            .map(|&(s, y, _)| (s as f64, y))
            .collect();
        if pts.len() < BEFORE_MIN {
            return None;
        }
        let n = pts.len() as f64;
        let x0 = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let y0 = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx = pts.iter().map(|p| (p.0 - x0) * (p.0 - x0)).sum::<f64>();
        let sxy = pts.iter().map(|p| (p.0 - x0) * (p.1 - y0)).sum::<f64>();
        let mut slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let sigma = self.scale.sigma();
        let significant = sxx > 0.0 && slope.abs() >= 2.0 * sigma / sxx.sqrt();
        if !significant {
            slope = 0.0;
        }
        // The curvature: the points' projection on q(d) = d² − m2 − k·d, orthogonal to
        // the level and the slope; used when it is two standard errors from 0.
        let m2 = sxx / n;
        let k =
            if sxx > 0.0 { pts.iter().map(|p| (p.0 - x0) * ((p.0 - x0).powi(2) - m2)).sum::<f64>() / sxx } else { 0.0 };
        let q = |x: f64| (x - x0).powi(2) - m2 - k * (x - x0);
        let sqq = pts.iter().map(|p| q(p.0).powi(2)).sum::<f64>();
        let mut curv = if sqq > 0.0 { pts.iter().map(|p| q(p.0) * (p.1 - y0)).sum::<f64>() / sqq } else { 0.0 };
        let bent = sqq > 0.0 && curv.abs() >= 2.0 * sigma / sqq.sqrt();
        if !bent {
            curv = 0.0;
        }
        Some(TrendLine {
            x0,
            y0,
            slope,
            sxx: if significant { sxx } else { 0.0 },
            n: pts.len(),
            curv,
            m2,
            k,
            sqq: if bent { sqq } else { 0.0 },
            x_end: birth as f64,
        })
    }

    /// The size of a change against the trend before it, from the points after it
    /// (their mean deviations from the extrapolated line, from the bent trend and from
    /// the held level — see [`Devs`] — their count and mean step): whether it is big
    /// enough (see `min_effect`, `min_effect_sd`, `min_visible`). The deviation must pass
    /// against all three, on the same side: a smooth curve whose bend eases lies between
    /// the line and the bent trend, and a curve that goes on as it went (an exponential
    /// decay, a held-out loss rising) or eases off (a descent bending into a plateau)
    /// lies between the line and the held level. What is left is a change in course a
    /// person sees: a level shift, a drop or a rise that breaks from where the curve was
    /// and from where it was going.
    fn judge_effect(&self, line: &TrendLine, d: &Devs, n_after: usize, x_after: f64, raw_dev: f64) -> bool {
        if n_after == 0 || d.line * d.bent <= 0.0 || d.line * d.held <= 0.0 {
            return false;
        }
        let sigma = self.scale.sigma();
        let n = 1.0 / n_after as f64;
        let size = (d.line.abs() - sigma * (n + line.variance(x_after)).sqrt())
            .min(d.bent.abs() - sigma * (n + line.variance_bent(x_after)).sqrt())
            .min(d.held.abs() - sigma * (n + line.variance(line.x_end)).sqrt());
        let range = (self.raw_range.1 - self.raw_range.0).max(0.0);
        let reference =
            if self.log_transform == Some(true) { 1.0 } else { line.y0.abs().max((line.y0 + d.line).abs()).max(range) };
        size >= self.p.min_effect * reference
            && size >= self.p.min_effect_sd * sigma
            && raw_dev.abs() >= self.p.min_visible * range
    }

    /// The change that began after step `birth`: (its trend line, signed mean deviation,
    /// whether it is big enough).
    fn effect(&self, birth: u64) -> Option<(TrendLine, f64, bool)> {
        let line = self.trend_before(birth)?;
        // All the points since the change (not only the latest: the trend before a change
        // found long after its birth would be compared across a slow drift).
        let after: Vec<&(u64, f64, f64)> = self.recent.iter().filter(|(s, _, _)| *s > birth).collect();
        let n = after.len();
        if n == 0 {
            return None;
        }
        let mut sum = Devs::default();
        for p in &after {
            sum.add(&line, p.0 as f64, p.1);
        }
        let d = sum.mean(n as f64);
        let dev = d.line;
        let x_after = after.iter().map(|p| p.0 as f64).sum::<f64>() / n as f64;
        // The raw move, against the raw values just before the change.
        let raw_before: Vec<f64> =
            self.recent.iter().rev().filter(|(s, _, _)| *s <= birth).take(line.n).map(|p| p.2).collect();
        let raw_level = raw_before.iter().sum::<f64>() / raw_before.len().max(1) as f64;
        let raw_dev = after.iter().map(|p| p.2).sum::<f64>() / n as f64 - raw_level;
        let big = self.judge_effect(&line, &d, n, x_after, raw_dev);
        Some((line, dev, big))
    }

    /// Points kept in `recent`: the trend before the earliest birth judged (up to
    /// 3 × `short_run` points back: a birth up to `short_run` old and the earlier one
    /// twice its age before it) must still have its [`BEFORE_MAX`] points, and a run of
    /// `max_run` its own.
    fn recent_capacity(&self) -> usize {
        self.p.max_run.max(3 * self.p.short_run.max(10)) + self.p.confirm + BEFORE_MAX + 1
    }

    fn sigma(&self) -> f64 {
        // A floor keeps the prior proper on constant (or quantised, not yet moving) series.
        let (_, y) = self.last.unwrap_or((0, 0.0));
        self.scale.sigma().max(1e-9 * y.abs().max(1e-3))
    }
}

impl Detector for Changepoint {
    fn push(&mut self, step: u64, value: f64) -> Option<Firing> {
        if !value.is_finite() {
            return None;
        }
        let log = *self.log_transform.get_or_insert(value > 0.0);
        if log && value <= 0.0 {
            if self.p.transform == Transform::Log {
                return None;
            }
            *self = Changepoint::new(self.p.clone());
            self.log_transform = Some(false);
            return self.push(step, value);
        }
        let y = if log { value.ln() } else { value };
        if let Some((last_step, _)) = self.last
            && step <= last_step
        {
            return None;
        }
        self.raw_range = (self.raw_range.0.min(value), self.raw_range.1.max(value));
        self.recent.push_back((step, y, value));
        if self.recent.len() > self.recent_capacity() {
            self.recent.pop_front();
        }
        if let Some(f) = &mut self.fired
            && step > f.birth
        {
            let line = f.line;
            f.dev_sum.add(&line, step as f64, y);
            f.raw_sum += value;
            f.x_sum += step as f64;
            f.n += 1;
            let f = *f;
            let n = f.n as f64;
            let d = f.dev_sum.mean(n);
            self.holds =
                d.line * f.sign > 0.0 && self.judge_effect(&f.line, &d, f.n, f.x_sum / n, f.raw_sum / n - f.raw_level);
        }
        if let Some((last_step, _)) = self.last {
            let dt = (step - last_step) as f64;
            self.spacing =
                if self.points == 1 { dt } else { self.spacing + ema_alpha(1.0, SCALE_POINTS) * (dt - self.spacing) };
        }
        if self.points <= BOOTSTRAP_POINTS {
            // The first points only seed the noise scale (a prior built from one or two
            // differences would be arbitrarily narrow); the first segment is born after
            // the last of them.
            self.scale.push(y);
            self.last = Some((step, y));
            self.points += 1;
            if self.points > BOOTSTRAP_POINTS {
                let r = Run::born(0.0, step, y, self.spacing, self.sigma());
                self.runs.push_back(r);
            }
            return None;
        }
        let h = 1.0 / self.p.hazard_points.max(1.0);
        let (ln_h, ln_1mh) = (h.ln(), (-h).ln_1p());

        // Growth and change-point masses (Adams & MacKay eqs. 3–4), in log space. The
        // change-point mass is H · Σ joint and the growth masses (1 − H) · joint, so
        // dividing by the evidence Σ joint normalises them.
        let clip2 = self.p.clip * self.p.clip;
        let mut max_joint = f64::NEG_INFINITY;
        for r in self.runs.iter_mut() {
            let n = r.n();
            let lg = self.lg[n.min(self.lg.len() - 1)];
            let mut u = r.u(step);
            let next = (n + 1) as f64;
            // A steady interval gives u = n + 1 up to rounding; snapping it keeps the
            // run's sums those of the table's factor.
            let (mean, s2, nu) = if r.regular && n < self.factors.len() && (u - next).abs() <= 1e-9 * next {
                u = next;
                self.factors[n].predict(r, u)
            } else {
                r.regular = false;
                r.predictive(u, &self.prec)
            };
            let dev = y - mean;
            let yr = if clip2 > 0.0 && dev * dev > clip2 * s2 { mean + dev.signum() * (clip2 * s2).sqrt() } else { y };
            let z2 = (yr - mean) * (yr - mean) / (nu * s2);
            // ln(1 + z²) by `ln`, not `ln_1p`: three times cheaper, and the absolute error
            // (~1e-16) is all a log-likelihood needs.
            r.log_mass += lg - 0.5 * (nu * std::f64::consts::PI * s2).ln() - 0.5 * (nu + 1.0) * (1.0 + z2).ln();
            max_joint = max_joint.max(r.log_mass);
            r.add(u, yr);
        }
        // Each run's share of the evidence, kept for the short-run mass below.
        self.share.clear();
        self.share.extend(self.runs.iter().map(|r| (r.log_mass - max_joint).exp()));
        let total: f64 = self.share.iter().sum();
        let evidence = max_joint + total.ln();
        let (mut map, mut map_mass) = (0, ln_h);
        for (i, r) in self.runs.iter_mut().enumerate() {
            r.log_mass += ln_1mh - evidence;
            if r.log_mass >= map_mass {
                (map, map_mass) = (i + 1, r.log_mass);
            }
        }
        self.scale.push(y);
        self.last = Some((step, y));
        self.points += 1;
        let newborn = Run::born(ln_h, step, y, self.spacing, self.sigma());
        self.runs.push_front(newborn);
        let max_run = self.p.max_run.max(2);
        if self.runs.len() > max_run + 1 {
            // Truncation: the oldest hypothesis merges into the next one, which holds the
            // statistics of the last `max_run` points.
            let oldest = self.runs.pop_back().expect("non-empty");
            let last = self.runs.len() - 1;
            let back = &mut self.runs[last];
            back.log_mass = log_add_exp(back.log_mass, oldest.log_mass);
            if map > last || back.log_mass >= map_mass {
                map = last;
            }
        }
        // Recent runs: length ≤ short_run, excluding the run that began with the series
        // (at start-up every run is short; the series' own start is no change point).
        let recent = self.p.short_run.min(self.runs.len().saturating_sub(2));
        // The newborn's mass is H; the older runs' are (1 − H) · their share.
        let older: f64 = self.share.iter().take(recent).sum();
        let short = (h + (1.0 - h) * older / total).min(1.0);
        self.short_mass = short;
        if !self.armed {
            if short < 0.5 * self.p.threshold {
                self.armed = true;
            }
            return None;
        }
        if self.points < self.p.warmup || short < self.p.threshold || map > self.p.short_run {
            self.held = 0;
            return None;
        }
        self.held += 1;
        if self.held < self.p.confirm.max(1) {
            return None;
        }
        // The posterior's most probable birth lags a kink out of a level course (the first
        // points past it fit the old segment as well as a new one), and a trend fitted
        // across the kink bends with it: an earlier birth, 2 × max(its age, 10 points)
        // before, is also judged, but only where the course before it was level (no
        // significant slope over at least half of `BEFORE_MAX` points: over a dozen, a
        // smooth descent's slope hides in its wobble and the descent itself would pass
        // for the change), so that a smooth descent gains no second try. Too small a
        // change to matter: keep watching while the posterior holds (the change may still
        // grow), without firing.
        let map_birth = self.runs[map].birth;
        let lag = (step - map_birth).max((10.0 * self.spacing).round() as u64);
        let (after, (line, delta, _)) =
            [0, 2 * lag].into_iter().map(|back| map_birth.saturating_sub(back)).find_map(|b| {
                self.effect(b)
                    .filter(|e| e.2 && (b == map_birth || (e.0.slope == 0.0 && e.0.n >= BEFORE_MAX / 2)))
                    .map(|e| (b, e))
            })?;
        self.held = 0;
        self.armed = false;
        let mut f = Fired {
            birth: after,
            line,
            raw_level: 0.0,
            sign: delta.signum(),
            dev_sum: Devs::default(),
            raw_sum: 0.0,
            x_sum: 0.0,
            n: 0,
        };
        let raw_before: Vec<f64> =
            self.recent.iter().rev().filter(|(s, _, _)| *s <= after).take(line.n).map(|p| p.2).collect();
        f.raw_level = raw_before.iter().sum::<f64>() / raw_before.len().max(1) as f64;
        for &(s, y, r) in self.recent.iter().filter(|(s, _, _)| *s > after) {
            f.dev_sum.add(&line, s as f64, y);
            f.raw_sum += r;
            f.x_sum += s as f64;
            f.n += 1;
        }
        let before = f.raw_level;
        self.fired = Some(f);
        self.holds = true;
        let size = if self.log_transform == Some(true) {
            format!("{:+.0}%", 100.0 * delta.exp_m1())
        } else {
            format!("{:+}", super::stats::fmt_num(delta))
        };
        Some(Firing {
            step,
            score: short,
            message: format!(
                "change point after step {after}: level {size} (P(run ≤ {} points) = {short:.2}, most likely run {map} points)",
                self.p.short_run
            ),
            figures: SignalFigures::finite(Some(after), Some(before), None),
        })
    }

    fn reset(&mut self) {
        *self = Changepoint::new(self.p.clone());
    }

    fn rearm(&mut self) {
        self.armed = true;
        self.held = 0;
    }

    /// The change persists: the points since it began, all of them, still deviate from
    /// the trend before it by an effect that passes the firing's own size test
    /// (`min_effect`, `min_effect_sd`, `min_visible`, less a standard error that shrinks
    /// as points accrue), on the same side. A burst of noise that looked like a change
    /// over its first few points does not pass over a hundred.
    fn holds(&self) -> bool {
        self.holds
    }

    fn kind(&self) -> DetectorKind {
        DetectorKind::Changepoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: u64) -> impl FnMut() -> f64 {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        move || {
            let u: f64 = 1.0 - rng.random::<f64>();
            let v: f64 = rng.random::<f64>();
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    #[test]
    fn detects_a_level_shift_quickly() {
        let mut z = noise(1);
        let mut d = Changepoint::new(ChangepointParams { transform: Transform::None, ..Default::default() });
        let mut fired = Vec::new();
        for s in 0..1000u64 {
            let v = if s < 500 { 0.0 } else { 5.0 } + z();
            if let Some(f) = d.push(s, v) {
                fired.push(f.step);
            }
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert!((500..510).contains(&fired[0]), "{fired:?}");
    }

    #[test]
    fn a_straight_line_is_one_segment() {
        let mut z = noise(2);
        let mut d = Changepoint::new(ChangepointParams::default());
        for s in 0..20_000u64 {
            // Exponential decay: a straight line in log space.
            let v = (-(s as f64) / 3000.0).exp() * (1.0 + 0.01 * z());
            assert!(d.push(s, v).is_none(), "fired at {s}");
        }
        assert!(d.map_run_length() >= 150);
    }

    #[test]
    fn truncation_keeps_cost_bounded() {
        let mut d = Changepoint::new(ChangepointParams { max_run: 50, ..Default::default() });
        for s in 0..1000u64 {
            d.push(s, 1.0 + 1e-3 * (s % 7) as f64);
        }
        assert_eq!(d.runs.len(), 51);
    }
}
