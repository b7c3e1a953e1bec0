//! The false-alarm table of docs/SIGNALS.md ("Control runs"): control runs — healthy
//! curves on which nothing happens — through the host's `SignalState` with an `auto` rule
//! of every detector kind (tests/controls_common/mod.rs), and a detection table for
//! the phenomena the issue-23 changes are about.
//!
//! cargo bench --bench controls [-- SEEDS POINTS]
//!
//! SEEDS: comma-separated (default: the ten seeds `tests/controls.rs` asserts on; a
//! range such as `$(seq -s, 1 120)` scans for seeds the detectors mishandle); POINTS per
//! run (default 20 000). Without
//! `--bench` (`cargo test --all-targets`) a smoke run of one seed and 2 000 points.

#[path = "../tests/controls_common/mod.rs"]
mod controls_common;

use controls_common::{auto_rule, markdown, table};
use phasetop::rules::{Confirmation, RuleOutcome, SignalState};
use phasetop::signals::{DetectorKind, DetectorSpec};
use rand::{RngExt, SeedableRng};

fn gauss(rng: &mut rand_chacha::ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Firings of a default detector of `kind` on `f(step, noise)` for steps in `steps`.
fn fire(kind: DetectorKind, seed: u64, steps: impl Iterator<Item = u64>, f: impl Fn(u64, f64) -> f64) -> Vec<u64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut d = DetectorSpec::default_for(kind).build();
    steps.filter_map(|s| d.push(s, f(s, gauss(&mut rng)))).map(|f| f.step).collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The step an `auto` changepoint rule on `val_loss` (evals every 10 steps) switches at
/// on a plateau that drops over ~150 steps centred at `centre`, with `confirm` set or
/// the default; and the step where the loss has halved.
fn auto_switch_on_a_short_drop(seed: u64, centre: f64, confirm: Option<u64>) -> (Option<u64>, u64) {
    let mut rule = auto_rule(DetectorKind::Changepoint, "val_loss");
    rule.get_mut().confirm_steps = confirm;
    let mut state = SignalState::for_rule(Some(&rule));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let truth = |t: f64| 0.05 + 0.64 / (1.0 + ((t - centre) / 25.0).exp());
    let halved = (0..).map(|i| i * 10).find(|&s| truth(s as f64) < 0.5 * truth(0.0)).unwrap_or(0);
    for s in (0..4000u64).step_by(10) {
        let v = truth(s as f64) * (1.0 + 0.01 * gauss(&mut rng));
        let m = [("val_loss".to_string(), v)].into_iter().collect();
        for sig in state.push(s, s, &m) {
            if let Some(RuleOutcome::Switch { .. }) = state.judge(&sig, s, Some("next")) {
                return (Some(s), halved);
            }
        }
        if let Some(Confirmation::Confirmed(RuleOutcome::Switch { .. })) = state.confirm_due(s, Some("next")) {
            return (Some(s), halved);
        }
    }
    (None, halved)
}

fn detection_table(seeds: &[u64]) -> String {
    let mut rows = Vec::new();
    // Plateau: 1 + e^{−t/300}, 1 % noise; the change per 500 steps falls under 5 % at 1043.
    let first: Vec<i64> = seeds
        .iter()
        .filter_map(|&s| {
            fire(DetectorKind::Plateau, s, 0..5000, |t, z| (1.0 + (-(t as f64) / 300.0).exp()) * (1.0 + 0.01 * z))
                .first()
                .map(|&f| f as i64 - 1043)
        })
        .collect();
    rows.push(format!(
        "| plateau: 1 + e^(−t/300), 1 % noise (flat by the 5 % test from step 1043) | fired {} of {}; delay median {} steps |",
        first.len(),
        seeds.len(),
        if first.is_empty() { "—".into() } else { median(first).to_string() }
    ));
    // Changepoint: plateau 0.69 (2 % noise) → sigmoid drop to 0.05 centred at 5000.
    let first: Vec<i64> = seeds
        .iter()
        .filter_map(|&s| {
            fire(DetectorKind::Changepoint, s, 0..10_000, |t, z| {
                let t = t as f64;
                (0.69 - 0.64 / (1.0 + (-(t - 5000.0) / 20.0).exp())) * (1.0 + 0.02 * z)
            })
            .into_iter()
            .find(|f| (4800..5200).contains(f))
            .map(|f| f as i64 - 5000)
        })
        .collect();
    rows.push(format!(
        "| changepoint: plateau 0.69 → drop to 0.05 centred at 5000 | fired {} of {}; median {:+} steps from the centre |",
        first.len(),
        seeds.len(),
        if first.is_empty() { 0 } else { median(first) }
    ));
    // Changepoint: a kink 0 → −0.1σ/point at 2000 in N(0, 1).
    let first: Vec<i64> = seeds
        .iter()
        .filter_map(|&s| {
            let mut d = DetectorSpec::Changepoint(phasetop::signals::ChangepointParams {
                transform: phasetop::signals::Transform::None,
                ..Default::default()
            })
            .build();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s);
            (0..3000u64)
                .filter_map(|t| {
                    let v = if t < 2000 { 0.0 } else { -0.1 * (t - 2000) as f64 } + gauss(&mut rng);
                    d.push(t, v)
                })
                .map(|f| f.step as i64 - 2000)
                .find(|&f| f >= 0)
        })
        .collect();
    rows.push(format!(
        "| changepoint: kink 0 → −0.1σ/point at 2000, N(0, 1) | fired {} of {}; delay median {}, max {} points |",
        first.len(),
        seeds.len(),
        if first.is_empty() { 0 } else { median(first.clone()) },
        first.iter().max().copied().unwrap_or(0)
    ));
    // Spike right after a fast descent: ×13, ×20, ×28 bursts 40, 120, 300 steps after it.
    let (mut seen, mut total) = (0, 0);
    for &s in seeds {
        let end = 300u64;
        let bursts = [(end + 40, 13.0), (end + 120, 20.0), (end + 300, 28.0)];
        let f = fire(DetectorKind::Spike, s, 0..1200, |t, z| {
            let base = 0.02 + 2.28 * (-((t.max(100) - 100) as f64) / 40.0).exp();
            let k = bursts.iter().find(|(at, _)| (*at..at + 3).contains(&t)).map_or(1.0, |b| b.1);
            base * k * (1.0 + 0.03 * z)
        });
        total += bursts.len();
        seen += bursts.iter().filter(|(at, _)| f.contains(at)).count();
    }
    rows.push(format!(
        "| spike: ×13–×28 bursts 40–300 steps after a descent 2.3 → 0.02 (τ = 40) | {seen} of {total} bursts reported |"
    ));
    // Divergence: 2.3 → 0.0131, then 0.1 (×7.6) or 1.0 (×76) from step 2000 on.
    for (to, what) in [(0.1, "0.0131 → 0.1 and staying"), (1.0, "0.0131 → 1.0 and staying")] {
        let f = fire(DetectorKind::Divergence, 1, 0..4000, |t, _| {
            if t < 2000 { 0.0131 + 2.2869 * (-(t as f64) / 150.0).exp() } else { to }
        });
        rows.push(format!(
            "| divergence: a loss from 2.3 at {what} | {} |",
            if f.is_empty() { "none".to_string() } else { format!("fired at {f:?}") }
        ));
    }
    // An auto rule on a ~150-step drop at 550: the default confirm against a fixed 100.
    for (confirm, what) in [(None, "default (5 % of the phase)"), (Some(100), "fixed 100 (the old default)")] {
        let late: Vec<i64> = seeds
            .iter()
            .filter_map(|&s| match auto_switch_on_a_short_drop(s, 550.0, confirm) {
                (Some(sw), halved) => Some(100 * (sw as i64 - halved as i64) / halved as i64),
                _ => None,
            })
            .collect();
        rows.push(format!(
            "| auto changepoint(val_loss) on a ~150-step drop centred at 550, `confirm_steps` {what} | switched on {} of {}; median {:+} % of the halving step |",
            late.len(),
            seeds.len(),
            if late.is_empty() { 0 } else { median(late) }
        ));
    }
    let mut s = String::from("| scenario | result |\n|---|---|\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let seeds: Vec<u64> = args
        .first()
        .map(|a| a.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| if bench { vec![4, 11, 25, 36, 101, 202, 303, 404, 505, 606] } else { vec![101] });
    let points: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(if bench { 20_000 } else { 2_000 });
    if !bench {
        println!("control-run table, smoke run (cargo bench --bench controls for the full one)");
    }
    println!("Control runs, seeds {seeds:?}, {points} points each, an auto rule of every kind:\n");
    let cells = table(&seeds, points);
    println!("{}", markdown(&cells, seeds.len()));
    let total: usize = cells.iter().map(|c| c.false_alarms).sum();
    let switches: usize = cells.iter().map(|c| c.false_switches).sum();
    println!("all cells: {total} false alarms, {switches} false switches\n");
    let det_seeds: Vec<u64> = if bench { (1..=10).collect() } else { vec![1] };
    println!("Detection, seeds {det_seeds:?}:\n");
    println!("{}", detection_table(&det_seeds));
}
