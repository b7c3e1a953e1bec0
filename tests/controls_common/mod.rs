//! Control runs — healthy training curves on which nothing happens — and what the
//! detectors and `auto` rules do on them (issue 23). Shared by `tests/controls.rs`
//! (which asserts on it) and `benches/controls.rs` (which prints the tables of
//! docs/SIGNALS.md). Pure Rust, seeded (ChaCha8): each seed draws its own curve shape
//! (time constants, levels, noise) from a range, so no seed's curve is the one the
//! detectors were tried on.

#![allow(dead_code)]

use phasetop::config::UntilRule;
use phasetop::rules::{Confirmation, RuleOutcome, SignalState};
use phasetop::signals::{DetectorKind, PlateauParams};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// A control: a metric series and its noiseless curve.
pub struct Control {
    pub name: &'static str,
    pub metric: &'static str,
    /// (step, observed value, noiseless value).
    pub points: Vec<(u64, f64, f64)>,
}

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn between(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Multiplicative log-normal noise of relative sd ≈ `sd` (a loss stays positive).
fn noisy(rng: &mut ChaCha8Rng, v: f64, sd: f64) -> f64 {
    v * (sd * gauss(rng) - 0.5 * sd * sd).exp()
}

/// A slow relative wobble: AR(1) noise of sd `sd` and lag-one correlation `rho`, the
/// kind a deterministic full-batch loss or a held-out loss on a fixed set has (the
/// weights move smoothly, so does the error). The first versions of the change-point
/// and plateau detectors were tried on i.i.d. noise only and fired on this.
struct Wobble {
    e: f64,
    sd: f64,
    rho: f64,
}

impl Wobble {
    fn new(rng: &mut ChaCha8Rng) -> Wobble {
        Wobble { e: 0.0, sd: 10f64.powf(between(rng, -4.0, -2.5)), rho: between(rng, 0.9, 0.99) }
    }

    /// `v` with the wobble, stored as an f32 (as a run logs it).
    fn apply(&mut self, rng: &mut ChaCha8Rng, v: f64) -> f64 {
        self.e = self.rho * self.e + (1.0 - self.rho * self.rho).sqrt() * gauss(rng);
        (v * (self.sd * self.e).exp()) as f32 as f64
    }
}

/// The control names, in table order.
pub const CONTROLS: [&str; 4] =
    ["full-batch, exponential", "full-batch, power law", "minibatch floor", "overfitting val_loss"];

/// The control `which` (an index into [`CONTROLS`]) at `seed`, `n` points.
pub fn control(which: usize, seed: u64, n: u64) -> Control {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9).wrapping_add(which as u64));
    let name = CONTROLS[which.min(CONTROLS.len() - 1)];
    match which {
        // A full-batch loss: the sum of a fast and a slow exponential, still falling
        // 6–15 % per 500 steps at the end, every step, with a wobble of relative sd
        // 10⁻⁴–3·10⁻³ (log-uniform).
        0 => {
            let l0 = between(&mut rng, 1.5, 3.0);
            let a = between(&mut rng, 0.5, 0.8);
            let t1 = between(&mut rng, 300.0, 1500.0);
            let t2 = between(&mut rng, 3000.0, 8000.0);
            let mut w = Wobble::new(&mut rng);
            let points = (0..n)
                .map(|s| {
                    let t = s as f64;
                    let v = l0 * (a * (-t / t1).exp() + (1.0 - a) * (-t / t2).exp());
                    (s, w.apply(&mut rng, v), v)
                })
                .collect();
            Control { name, metric: "train_loss", points }
        }
        // A full-batch loss bending as a power law from the first step,
        // l0 · (1 + t/τ)^−p, with the same wobble.
        1 => {
            let l0 = between(&mut rng, 1.5, 3.0);
            let tau = between(&mut rng, 30.0, 300.0);
            let p = between(&mut rng, 0.7, 2.0);
            let mut w = Wobble::new(&mut rng);
            let points = (0..n)
                .map(|s| {
                    let v = l0 * (1.0 + s as f64 / tau).powf(-p);
                    (s, w.apply(&mut rng, v), v)
                })
                .collect();
            Control { name, metric: "train_loss", points }
        }
        // A minibatch loss: an exponential descent onto a floor, 10–20 % i.i.d. noise a step.
        2 => {
            let l0 = between(&mut rng, 1.5, 3.0);
            let floor = between(&mut rng, 0.2, 0.5);
            let tau = between(&mut rng, 200.0, 800.0);
            let sd = between(&mut rng, 0.1, 0.2);
            let points = (0..n)
                .map(|s| {
                    let v = floor + (l0 - floor) * (-(s as f64) / tau).exp();
                    (s, noisy(&mut rng, v, sd), v)
                })
                .collect();
            Control { name, metric: "train_loss", points }
        }
        // A held-out loss that falls, bottoms out and rises smoothly (overfitting) by
        // 0.2–0.4, evaluated every 5 steps on a fixed set (the same wobble).
        _ => {
            let m = between(&mut rng, 0.4, 0.7);
            let d = between(&mut rng, 1.2, 2.0);
            let t1 = between(&mut rng, 1000.0, 3000.0);
            let r = between(&mut rng, 0.2, 0.4);
            let t2 = between(&mut rng, 20_000.0, 60_000.0);
            let mut w = Wobble::new(&mut rng);
            let points = (0..n)
                .map(|i| {
                    let s = 5 * i;
                    let t = s as f64;
                    let v = m + d * (-t / t1).exp() + r * (1.0 - (-t / t2).exp());
                    (s, w.apply(&mut rng, v), v)
                })
                .collect();
            Control { name, metric: "val_loss", points }
        }
    }
}

/// Whether a firing of `kind` at `step` on a control is false. A control has no change
/// point, jump, spike or divergence, so every firing of those is; a plateau firing is
/// false when the noiseless curve changed by more than 2 × `tolerance` over the window
/// before it; a collapse firing when the noiseless value is not below `fraction` × the
/// detector's baseline (the mean of the first 10 observed values) with 5 % slack.
pub fn is_false(kind: DetectorKind, c: &Control, step: u64) -> bool {
    let truth = |s: u64| {
        let i = c.points.partition_point(|p| p.0 < s).min(c.points.len() - 1);
        c.points[i].2
    };
    match kind {
        DetectorKind::Plateau => {
            let p = PlateauParams::default();
            let change = (truth(step) / truth(step.saturating_sub(p.window))).ln().abs().exp_m1();
            change > 2.0 * p.tolerance
        }
        DetectorKind::Collapse => {
            let base = c.points.iter().take(10).map(|p| p.1).sum::<f64>() / 10.0;
            truth(step) > 0.5 * base * 1.05
        }
        _ => true,
    }
}

/// What one detector kind did on one control run, as an `auto` rule with its defaults.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Every firing of the rule's detector on the control's metric.
    pub firings: Vec<u64>,
    /// Those that are false ([`is_false`]).
    pub false_firings: Vec<u64>,
    /// The step of the rule's first confirmed switch and the firing it acted on.
    pub switch: Option<(u64, u64)>,
    /// Whether that switch acted on a false firing.
    pub false_switch: bool,
}

/// An `auto` rule on `metric` watched by `kind`, defaults everywhere (as a user writes it).
pub fn auto_rule(kind: DetectorKind, metric: &str) -> toml::Spanned<UntilRule> {
    #[derive(serde::Deserialize)]
    struct Wrap {
        until: toml::Spanned<UntilRule>,
    }
    let text = format!("until = {{ detector = \"{}\", metric = \"{metric}\", mode = \"auto\" }}", kind.name());
    let w: Wrap = toml::from_str(&text).expect("a valid rule");
    w.until
}

/// Feeds a control through the host's `SignalState` with an `auto` rule of `kind` on its
/// metric (the run's default bank beside it), as the run loop does; records the rule
/// detector's firings and the first switch. The run goes on after a switch (the
/// firings are counted over the whole control).
pub fn run_rule(kind: DetectorKind, c: &Control) -> Outcome {
    let rule = auto_rule(kind, c.metric);
    let mut state = SignalState::for_rule(Some(&rule));
    let next = Some("next");
    let mut out = Outcome::default();
    let mut m = BTreeMap::new();
    for &(step, v, _) in &c.points {
        m.insert(c.metric.to_string(), v);
        for sig in state.push(step, step, &m) {
            if sig.detector != kind.name() || sig.metric != c.metric {
                continue;
            }
            out.firings.push(sig.step);
            if is_false(kind, c, sig.step) {
                out.false_firings.push(sig.step);
            }
            if let Some(RuleOutcome::Switch { .. }) = state.judge(&sig, step, next)
                && out.switch.is_none()
            {
                out.switch = Some((step, sig.step));
            }
        }
        if let Some(Confirmation::Confirmed(RuleOutcome::Switch { detail })) = state.confirm_due(step, next)
            && out.switch.is_none()
        {
            out.switch = Some((step, fired_at(&detail).unwrap_or(step)));
        }
    }
    if let Some((_, fired)) = out.switch {
        out.false_switch = is_false(kind, c, fired);
    }
    out
}

/// The firing's step in a switch's detail ("detector(metric) at step N: …").
fn fired_at(detail: &str) -> Option<u64> {
    let rest = &detail[detail.find(" at step ")? + 9..];
    rest.split(|ch: char| !ch.is_ascii_digit()).next()?.parse().ok()
}

/// One cell of the false-alarm table: a control × a detector kind over its seeds.
#[derive(Clone, Debug)]
pub struct Cell {
    pub control: &'static str,
    pub kind: DetectorKind,
    pub points: usize,
    pub false_alarms: usize,
    pub false_switches: usize,
    /// (seed, steps of the false firings) for the message of a failed assertion.
    pub examples: Vec<(u64, Vec<u64>)>,
}

impl Cell {
    pub fn per_10k(&self) -> f64 {
        1e4 * self.false_alarms as f64 / self.points.max(1) as f64
    }
}

/// The whole table: every control × every detector kind, `seeds`, `n` points each.
pub fn table(seeds: &[u64], n: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    for (which, name) in CONTROLS.iter().enumerate() {
        let runs: Vec<(u64, Control)> = seeds.iter().map(|&s| (s, control(which, s, n))).collect();
        for kind in DetectorKind::ALL {
            let mut cell =
                Cell { control: name, kind, points: 0, false_alarms: 0, false_switches: 0, examples: Vec::new() };
            for (seed, c) in &runs {
                let o = run_rule(kind, c);
                cell.points += c.points.len();
                cell.false_alarms += o.false_firings.len();
                cell.false_switches += usize::from(o.false_switch);
                if !o.false_firings.is_empty() {
                    cell.examples.push((*seed, o.false_firings.clone()));
                }
            }
            cells.push(cell);
        }
    }
    cells
}

/// The table as markdown: alarms per 10⁴ points and false switches, per control and detector.
pub fn markdown(cells: &[Cell], seeds: usize) -> String {
    let mut s =
        String::from("| control | detector | points | false alarms | per 10⁴ points | false `auto` switches |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for c in cells {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {} of {seeds} |\n",
            c.control,
            c.kind,
            c.points,
            c.false_alarms,
            c.per_10k(),
            c.false_switches
        ));
    }
    s
}
