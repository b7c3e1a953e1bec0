//! Small streaming statistics shared by the detectors.

/// Weight of a new point in an exponential moving average with time constant `tau`
/// (in the same unit as `dt`): `1 - exp(-dt / tau)`. `tau <= 0` means no smoothing.
pub(crate) fn ema_alpha(dt: f64, tau: f64) -> f64 {
    if tau <= 0.0 || !tau.is_finite() { 1.0 } else { 1.0 - (-dt / tau).exp() }
}

/// Number of first differences averaged plainly before the winsorised EMA takes over.
const SCALE_BOOTSTRAP: u64 = 8;
/// Differences larger than this many times the current mean absolute difference are
/// clipped before they enter the average (spikes and level shifts barely move it).
const SCALE_CLIP: f64 = 4.0;

/// Robust running estimate of a series' point-to-point noise standard deviation, from
/// first differences: a winsorised EMA of |x_t − x_{t−1}|. For i.i.d. Gaussian noise
/// E|Δ| = 2σ/√π, so σ̂ = mean|Δ| · √π / 2. Differences are insensitive to the level
/// and to slow trends; a level shift or a spike is one (clipped) outlier.
#[derive(Clone, Debug)]
pub(crate) struct DiffScale {
    tau_points: f64,
    prev: Option<f64>,
    n: u64,
    mean_abs: f64,
}

impl DiffScale {
    pub(crate) fn new(tau_points: f64) -> DiffScale {
        DiffScale { tau_points, prev: None, n: 0, mean_abs: 0.0 }
    }

    pub(crate) fn push(&mut self, x: f64) {
        if let Some(p) = self.prev {
            let mut d = (x - p).abs();
            self.n += 1;
            if self.n <= SCALE_BOOTSTRAP {
                self.mean_abs += (d - self.mean_abs) / self.n as f64;
            } else {
                if self.mean_abs > 0.0 {
                    d = d.min(SCALE_CLIP * self.mean_abs);
                }
                self.mean_abs += ema_alpha(1.0, self.tau_points) * (d - self.mean_abs);
            }
        }
        self.prev = Some(x);
    }

    /// The noise standard deviation estimate (0 before two points).
    pub(crate) fn sigma(&self) -> f64 {
        self.mean_abs * std::f64::consts::PI.sqrt() / 2.0
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error ~1e-15).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// ln(e^a + e^b), exact for infinities.
pub(crate) fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// Formats a value compactly for messages.
pub(crate) fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e4 || x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_gamma_matches_known_values() {
        // Γ(1) = Γ(2) = 1, Γ(5) = 24, Γ(1/2) = √π, Γ(10.5) from tables.
        assert!(ln_gamma(1.0).abs() < 1e-13);
        assert!(ln_gamma(2.0).abs() < 1e-13);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(10.5) - 1_133_278.388_948_785_5_f64.ln()).abs() < 1e-10);
        assert!((ln_gamma(0.1) - 9.513_507_698_668_732_f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn diff_scale_estimates_gaussian_sigma() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut s = DiffScale::new(1000.0);
        for i in 0..200_000 {
            let u: f64 = 1.0 - rng.random::<f64>();
            let v: f64 = rng.random::<f64>();
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            s.push(5.0 + 0.001 * i as f64 * 1e-3 + 2.0 * z);
        }
        // Winsorising at 4× the mean |Δ| trims a little of the tail (≈1% low).
        assert!((s.sigma() - 2.0).abs() < 0.1, "sigma {}", s.sigma());
    }

    #[test]
    fn log_add_exp_is_stable() {
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(log_add_exp(f64::NEG_INFINITY, -3.0), -3.0);
        assert!((log_add_exp(-1000.0, -1001.0) - (-1000.0 + (-1f64).exp().ln_1p())).abs() < 1e-12);
    }
}
