//! Known-answer scenarios (issue: signals): each trains a `configs/` scenario with the
//! real binary and checks that the detectors fire where the phenomenon happens. They are
//! part of the default suite (and so of CI): about four minutes on two cores, the
//! grokking run most of it. To see the measured rows:
//!
//!     cargo test --release --test known_answers -- --nocapture --test-threads 2
//!
//! Each prints one Markdown row with what it measured (docs/SIGNALS.md, "Known answers").
//! A run is kept in `target/known-answers/<scenario>` for `phasetop replay`.

use phasetop::event::Event;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn train(scenario: &str) -> Vec<Event> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run: PathBuf = root.join("target/known-answers").join(scenario);
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(run.parent().unwrap()).unwrap();
    let config = root.join("configs").join(format!("{scenario}.toml"));
    let out = Command::new(BIN).args(["train", "--headless", "--run-dir"]).arg(&run).arg(&config).output().unwrap();
    assert!(out.status.success(), "{scenario}: {}", String::from_utf8_lossy(&out.stderr));
    phasetop::runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

/// (step, value) of a per-step metric.
fn steps(evs: &[Event], name: &str) -> Vec<(u64, f64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Step { step, metrics, .. } => metrics.get(name).map(|v| (*step, *v)),
            _ => None,
        })
        .collect()
}

/// (step, value) of an eval metric.
fn evals(evs: &[Event], name: &str) -> Vec<(u64, f64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Eval { step, metrics, .. } => metrics.get(name).map(|v| (*step, *v)),
            _ => None,
        })
        .collect()
}

/// (step, value) of a probe metric of one layer.
fn probes(evs: &[Event], layer: &str, name: &str) -> Vec<(u64, f64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Probe { step, layer: l, metrics } if l == layer => metrics.get(name).map(|v| (*step, *v)),
            _ => None,
        })
        .collect()
}

/// Steps at which `detector` fired on `metric`.
fn fired(evs: &[Event], detector: &str, metric: &str) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Signal { step, detector: d, metric: m, .. } if d == detector && m == metric => Some(*step),
            _ => None,
        })
        .collect()
}

/// The series smoothed by a trailing mean over `window` points.
fn trailing_mean(series: &[(u64, f64)], window: usize) -> Vec<(u64, f64)> {
    let mut sum = 0.0;
    series
        .iter()
        .enumerate()
        .map(|(i, &(s, v))| {
            sum += v;
            if i >= window {
                sum -= series[i - window].1;
            }
            (s, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

fn first_step(series: &[(u64, f64)], pred: impl Fn(f64) -> bool) -> Option<u64> {
    series.iter().find(|(_, v)| pred(*v)).map(|(s, _)| *s)
}

fn list(steps: &[u64]) -> String {
    if steps.is_empty() { "none".into() } else { steps.iter().map(u64::to_string).collect::<Vec<_>>().join(", ") }
}

/// Grokking: held-out accuracy jumps long after train accuracy saturates. The jump
/// detector must fire within 10 % (in steps) of where held-out accuracy first crosses
/// 50 %, and never before train accuracy saturates.
#[test]
fn grokking_jump_fires_at_the_held_out_jump() {
    let evs = train("grokking");
    let train_acc = trailing_mean(&steps(&evs, "train_acc"), 50);
    let saturated = first_step(&train_acc, |v| v >= 0.99).expect("train accuracy saturates");
    let crossed = first_step(&evals(&evs, "val_acc"), |v| v >= 0.5).expect("held-out accuracy crosses 50 %");
    let jumps = fired(&evs, "jump", "val_acc");
    println!(
        "| grokking | train acc ≥ 99 % at {saturated}; held-out acc ≥ 50 % at {crossed} | jump(val_acc): {} |",
        list(&jumps)
    );
    assert!(crossed > saturated, "no delay between memorisation and generalisation");
    assert!(jumps.iter().all(|&j| j >= saturated), "jump fired before train accuracy saturated: {jumps:?}");
    let tol = crossed / 10;
    assert!(jumps.iter().any(|&j| j.abs_diff(crossed) <= tol), "no jump within ±{tol} steps of {crossed}: {jumps:?}");
}

/// Sparse parity / XOR: a long loss plateau (signal finding), then a drop (signal
/// heavy). The phase rule's change-point detector on the held-out loss must fire at the
/// end of the plateau and not inside it; the plateau detector must flag the plateau.
#[test]
fn parity_change_point_at_the_end_of_the_plateau() {
    let evs = train("parity");
    let loss = trailing_mean(&steps(&evs, "train_loss"), 50);
    let level = loss.iter().find(|(s, _)| *s >= 200).expect("a plateau").1;
    let drop = first_step(&loss, |v| v < 0.5 * level).expect("the loss drops");
    let cps = fired(&evs, "changepoint", "val_loss");
    let plateaus = fired(&evs, "plateau", "train_loss");
    let tol = (drop / 5).max(200);
    let inside = |c: &[u64]| c.iter().copied().filter(|&c| c > 200 && c + tol < drop).collect::<Vec<u64>>();
    let noisy = inside(&fired(&evs, "changepoint", "train_loss"));
    println!(
        "| parity | plateau at loss {level:.3} from step 200; loss halves at {drop} | changepoint(val_loss): {}; plateau(train_loss): {}; changepoint(train_loss, batch of 32) inside the plateau: {} |",
        list(&cps),
        list(&plateaus),
        list(&noisy)
    );
    assert!(cps.iter().any(|&c| c.abs_diff(drop) <= tol), "no change point within ±{tol} of {drop}: {cps:?}");
    assert!(inside(&cps).is_empty(), "change points inside the plateau: {:?}", inside(&cps));
    assert!(plateaus.iter().any(|&p| p < drop), "the plateau was not flagged before the drop: {plateaus:?}");
}

/// Deep-MLP diversity trap: the loss stays flat while the deep layers' feature diversity
/// falls, then the loss drops. Collapse must fire on a deep layer before the drop, and a
/// change point at the drop.
#[test]
fn deep_mlp_diversity_falls_before_the_loss_drops() {
    let evs = train("deep_mlp");
    let loss = trailing_mean(&steps(&evs, "train_loss"), 50);
    let level = loss.iter().find(|(s, _)| *s >= 100).expect("a start").1;
    let drop = first_step(&loss, |v| v < 0.5 * level).expect("the loss drops");
    let layer = "mlp.5";
    let rank = probes(&evs, layer, "eff_rank");
    let start_rank = rank.first().expect("probes").1;
    let low_rank = rank.iter().filter(|(s, _)| *s <= drop).map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
    let collapses = fired(&evs, "collapse", &format!("{layer}/eff_rank"));
    let cps = fired(&evs, "changepoint", "train_loss");
    let tol = (drop / 5).max(200);
    println!(
        "| deep_mlp | {layer} effective rank {start_rank:.1} → {low_rank:.1} before the drop; loss halves at {drop} | collapse({layer}/eff_rank): {}; changepoint(train_loss): {} |",
        list(&collapses),
        list(&cps)
    );
    assert!(low_rank < 0.5 * start_rank, "diversity did not fall before the drop");
    assert!(collapses.iter().any(|&c| c < drop), "collapse did not fire before the drop: {collapses:?}");
    assert!(cps.iter().any(|&c| c.abs_diff(drop) <= tol), "no change point within ±{tol} of {drop}: {cps:?}");
}

/// Cyclical learning rate: the loss follows the cycle, and so must the change points:
/// one in at least 3 of 4 full cycles after the first, all at the same phase of the
/// cycle (within ±1/4 cycle of their circular mean), at most a few per cycle.
#[test]
fn cyclical_change_points_follow_the_cycle() {
    let evs = train("cyclical");
    let cycle = 400u64;
    let last = steps(&evs, "train_loss").last().expect("steps").0;
    let cps: Vec<u64> = fired(&evs, "changepoint", "train_loss").into_iter().filter(|&s| s > cycle).collect();
    let cycles = last / cycle;
    let per_cycle: Vec<usize> =
        (1..cycles).map(|c| cps.iter().filter(|&&s| s > c * cycle && s <= (c + 1) * cycle).count()).collect();
    let covered = per_cycle.iter().filter(|&&n| n > 0).count();
    // Circular mean of the change points' phase within the cycle.
    let angle = |s: u64| (s % cycle) as f64 / cycle as f64 * std::f64::consts::TAU;
    let (sin, cos) = cps.iter().fold((0.0, 0.0), |(a, b), &s| (a + angle(s).sin(), b + angle(s).cos()));
    let mean = sin.atan2(cos).rem_euclid(std::f64::consts::TAU);
    let off = |s: u64| {
        let d = (angle(s) - mean).rem_euclid(std::f64::consts::TAU);
        d.min(std::f64::consts::TAU - d) / std::f64::consts::TAU * cycle as f64
    };
    let worst = cps.iter().map(|&s| off(s)).fold(0.0, f64::max);
    let phase_step = mean / std::f64::consts::TAU * cycle as f64;
    println!(
        "| cyclical | {cycles} cycles of {cycle} steps, lr peaks {} steps into each | changepoint(train_loss) after the first cycle: {}; in {covered} of {} cycles, {phase_step:.0} ± {worst:.0} steps into the cycle |",
        cycle / 2,
        list(&cps),
        per_cycle.len()
    );
    assert!(covered * 4 >= per_cycle.len() * 3, "change points in only {covered} of {} cycles", per_cycle.len());
    assert!(worst <= cycle as f64 / 4.0, "change points at scattered phases (worst {worst:.0} steps off)");
    assert!(per_cycle.iter().all(|&n| n <= 3), "change points fire on noise, not on the cycle: {per_cycle:?}");
}
