//! Known-answer scenarios (issue: signals): each trains a `configs/` scenario with the
//! real binary at three seeds and checks, on every seed, that the detectors fire where
//! the phenomenon happens. They assert properties measured on the run itself (where
//! held-out accuracy crosses 50 %, where the loss halves), never a fixed step, so they
//! hold on any CPU (AVX2 and AVX-512 kernels change the last bits, and with them the
//! exact step of a transition) and with `threads` 1 or 2. They are part of the default
//! suite (and so of CI). To see the measured rows:
//!
//!     cargo test --release --test known_answers -- --nocapture --test-threads 2
//!
//! Each prints one Markdown row per seed (docs/SIGNALS.md, "Known answers"). Runs are
//! kept in `target/known-answers/<scenario>-s<seed>` for `phasetop replay`.
//! `KNOWN_ANSWERS_THREADS=2` runs every scenario with two libtorch threads instead of
//! the configs' one (different reduction orders, different last bits).
//!
//! Every scenario's rule is also checked as an `auto` rule (with its default
//! `confirm_steps`), and an `auto` change-point rule on the training loss (the case that
//! once switched a phase 2 400 steps early on a drifting batch loss) is checked on every
//! run that has a plateau: by feeding the run's recorded metrics to the host's own
//! `SignalState` up to the first switch (the run is identical up to there), so a false
//! `auto` switch fails the test without training each variant again.

use phasetop::event::Event;
use phasetop::rules::{Confirmation, RuleOutcome, SignalState};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");
const SEEDS: [u64; 3] = [0, 1, 2];

fn train(scenario: &str, seed: u64) -> Vec<Event> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run: PathBuf = root.join("target/known-answers").join(format!("{scenario}-s{seed}"));
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(run.parent().unwrap()).unwrap();
    let mut config = root.join("configs").join(format!("{scenario}.toml"));
    // KNOWN_ANSWERS_THREADS=2 runs the scenarios with that many libtorch threads (the
    // configs pin 1): the answers must not depend on it.
    if let Ok(threads) = std::env::var("KNOWN_ANSWERS_THREADS") {
        let text = std::fs::read_to_string(&config).unwrap().replace("threads = 1", &format!("threads = {threads}"));
        config = root.join("target/known-answers").join(format!("{scenario}-s{seed}-t{threads}.toml"));
        std::fs::write(&config, text).unwrap();
    }
    let out = Command::new(BIN)
        .args(["train", "--headless", "--seed", &seed.to_string(), "--run-dir"])
        .arg(&run)
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{scenario} seed {seed}: {}", String::from_utf8_lossy(&out.stderr));
    phasetop::runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

/// Trains every seed of a scenario at once (each run pins one libtorch thread; three on
/// two cores finish sooner than two and then one).
fn train_seeds(scenario: &str) -> Vec<(u64, Vec<Event>)> {
    let handles: Vec<_> = SEEDS
        .iter()
        .map(|&seed| {
            let scenario = scenario.to_string();
            std::thread::spawn(move || (seed, train(&scenario, seed)))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// The scenario's config with its first phase's `until` rule replaced by `rule` (TOML
/// inline table) — or, with `None`, its own rule made `auto`.
fn auto_rule_config(scenario: &str, rule: Option<&str>) -> phasetop::config::Config {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("configs").join(format!("{scenario}.toml"))).unwrap();
    let mut done = false;
    let text: String = text
        .lines()
        .map(|l| {
            if !done && l.starts_with("until = ") {
                done = true;
                match rule {
                    Some(r) => format!("until = {r}"),
                    None => l.replace("mode = \"suggest\"", "mode = \"auto\""),
                }
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(done, "{scenario} has an until rule");
    phasetop::config::parse("auto.toml", &text).unwrap()
}

/// The step at which an `auto` rule (see [`auto_rule_config`]) would first switch the
/// phase of this recorded run: its metrics fed to the host's `SignalState` in log order,
/// as the run loop feeds them. None: no switch within the run.
fn first_auto_switch(evs: &[Event], cfg: &phasetop::config::Config) -> Option<u64> {
    let next = cfg.phases.get(1).map(|p| p.name().to_string());
    let mut state = SignalState::new(&cfg.phases[0]);
    for ev in evs {
        let (step, fired) = match ev {
            Event::Step { step, metrics, .. } | Event::Eval { step, metrics, .. } => {
                (*step, state.push(*step, *step, metrics))
            }
            Event::Probe { step, layer, metrics } => {
                let named = metrics.iter().map(|(k, v)| (format!("{layer}/{k}"), *v)).collect();
                (*step, state.push(*step, *step, &named))
            }
            // The recorded run switched here (by a suggestion or a rule): what follows is
            // another phase.
            Event::PhaseChanged { step, .. } if *step > 0 => return None,
            _ => continue,
        };
        for sig in &fired {
            if let Some(RuleOutcome::Switch { .. }) = state.judge(sig, step, next.as_deref()) {
                return Some(step);
            }
        }
        if let Some(Confirmation::Confirmed(RuleOutcome::Switch { .. })) = state.confirm_due(step, next.as_deref()) {
            return Some(step);
        }
    }
    None
}

/// An auto change-point rule on the training loss, as a user would write it.
const AUTO_CHANGEPOINT_ON_TRAIN_LOSS: &str = "{ detector = \"changepoint\", metric = \"train_loss\", mode = \"auto\" }";

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

/// Grokking: held-out accuracy jumps long after train accuracy saturates. On every
/// seed the jump detector must fire within 10 % (in steps) of where held-out accuracy
/// first crosses 50 %, and never before train accuracy saturates; as an `auto` rule it
/// would switch after the jump, never before.
#[test]
fn grokking_jump_fires_at_the_held_out_jump() {
    let auto = auto_rule_config("grokking", None);
    for (seed, evs) in train_seeds("grokking") {
        let train_acc = trailing_mean(&steps(&evs, "train_acc"), 50);
        let saturated = first_step(&train_acc, |v| v >= 0.99).expect("train accuracy saturates");
        let crossed = first_step(&evals(&evs, "val_acc"), |v| v >= 0.5)
            .unwrap_or_else(|| panic!("seed {seed}: held-out accuracy never crosses 50 % (no grokking)"));
        let jumps = fired(&evs, "jump", "val_acc");
        let switch = first_auto_switch(&evs, &auto);
        println!(
            "| grokking s{seed} | train acc ≥ 99 % at {saturated}; held-out acc ≥ 50 % at {crossed} | jump(val_acc): {}; spikes: {}; divergence: {}; as an auto rule, switches at {} |",
            list(&jumps),
            fired(&evs, "spike", "train_loss").len(),
            list(&fired(&evs, "divergence", "train_loss")),
            switch.map_or("never".into(), |s| s.to_string()),
        );
        assert!(crossed > saturated, "seed {seed}: no delay between memorisation and generalisation");
        assert!(jumps.iter().all(|&j| j >= saturated), "seed {seed}: jump before train accuracy saturated: {jumps:?}");
        let tol = crossed / 10;
        assert!(
            jumps.iter().any(|&j| j.abs_diff(crossed) <= tol),
            "seed {seed}: no jump within ±{tol} steps of {crossed}: {jumps:?}"
        );
        assert!(
            fired(&evs, "divergence", "train_loss").is_empty(),
            "seed {seed}: the memorised fit's loss spikes recover: they are spikes, not divergence"
        );
        let switch = switch.unwrap_or_else(|| panic!("seed {seed}: the auto rule never switched"));
        assert!(switch + tol >= crossed && switch <= crossed + tol + 200, "seed {seed}: auto switch at {switch}");
    }
}

/// Sparse parity / XOR: a long loss plateau (signal finding), then a drop (signal
/// heavy). On every seed the rule's change-point detector on the held-out loss must fire
/// within 10 % of the end of the plateau and not inside it; the plateau detector must
/// flag the plateau. No `auto` rule — the scenario's own, or a change point on the
/// batch-of-32 training loss — may switch inside the plateau.
#[test]
fn parity_change_point_at_the_end_of_the_plateau() {
    let own = auto_rule_config("parity", None);
    let on_train = auto_rule_config("parity", Some(AUTO_CHANGEPOINT_ON_TRAIN_LOSS));
    for (seed, evs) in train_seeds("parity") {
        let loss = trailing_mean(&steps(&evs, "train_loss"), 50);
        let level = loss.iter().find(|(s, _)| *s >= 200).expect("a plateau").1;
        let drop =
            first_step(&loss, |v| v < 0.5 * level).unwrap_or_else(|| panic!("seed {seed}: the loss never drops"));
        let cps = fired(&evs, "changepoint", "val_loss");
        let plateaus = fired(&evs, "plateau", "train_loss");
        let tol = drop / 10;
        let inside = |c: &[u64]| c.iter().copied().filter(|&c| c > 200 && c + tol < drop).collect::<Vec<u64>>();
        let noisy = inside(&fired(&evs, "changepoint", "train_loss"));
        let (own_switch, train_switch) = (first_auto_switch(&evs, &own), first_auto_switch(&evs, &on_train));
        let show = |s: Option<u64>| s.map_or("never".to_string(), |s| s.to_string());
        println!(
            "| parity s{seed} | plateau at loss {level:.3} from step 200; loss halves at {drop} | changepoint(val_loss): {}; plateau(train_loss): {}; changepoint(train_loss) inside the plateau: {}; auto switch: own rule {}, changepoint(train_loss) {} |",
            list(&cps),
            list(&plateaus),
            list(&noisy),
            show(own_switch),
            show(train_switch),
        );
        assert!(
            cps.iter().any(|&c| c.abs_diff(drop) <= tol),
            "seed {seed}: no change point within ±{tol} of {drop}: {cps:?}"
        );
        assert!(inside(&cps).is_empty(), "seed {seed}: change points inside the plateau: {:?}", inside(&cps));
        assert!(
            plateaus.iter().any(|&p| p < drop),
            "seed {seed}: the plateau was not flagged before the drop: {plateaus:?}"
        );
        for (what, switch) in [("own rule", own_switch), ("changepoint(train_loss)", train_switch)] {
            assert!(
                switch.is_none_or(|s| s + tol >= drop),
                "seed {seed}: a false auto switch by the {what} at {switch:?}, inside the plateau (drop at {drop})"
            );
        }
        assert!(own_switch.is_some(), "seed {seed}: the auto rule never switched");
    }
}

/// Deep-MLP diversity trap: the loss stays flat while the deep layers' feature diversity
/// falls, then the loss drops. On every seed the deep layer's effective rank must halve
/// before the loss does, collapse must fire within 10 % of the drop (the rule's answer),
/// and a change point near the drop; no `auto` switch inside the plateau.
#[test]
fn deep_mlp_diversity_falls_before_the_loss_drops() {
    let own = auto_rule_config("deep_mlp", None);
    let on_train = auto_rule_config("deep_mlp", Some(AUTO_CHANGEPOINT_ON_TRAIN_LOSS));
    for (seed, evs) in train_seeds("deep_mlp") {
        let loss = trailing_mean(&steps(&evs, "train_loss"), 50);
        let level = loss.iter().find(|(s, _)| *s >= 100).expect("a start").1;
        let drop =
            first_step(&loss, |v| v < 0.5 * level).unwrap_or_else(|| panic!("seed {seed}: the loss never drops"));
        let layer = "mlp.5";
        let rank = probes(&evs, layer, "eff_rank");
        let start_rank = rank.first().expect("probes").1;
        let low_rank = rank.iter().filter(|(s, _)| *s <= drop).map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let collapses = fired(&evs, "collapse", &format!("{layer}/eff_rank"));
        let cps = fired(&evs, "changepoint", "train_loss");
        let tol = (drop / 5).max(200);
        let rule_tol = drop / 10;
        let (own_switch, train_switch) = (first_auto_switch(&evs, &own), first_auto_switch(&evs, &on_train));
        let show = |s: Option<u64>| s.map_or("never".to_string(), |s| s.to_string());
        println!(
            "| deep_mlp s{seed} | {layer} effective rank {start_rank:.1} → {low_rank:.1} before the drop; loss halves at {drop} | collapse({layer}/eff_rank): {}; changepoint(train_loss): {}; auto switch: own rule {}, changepoint(train_loss) {} |",
            list(&collapses),
            list(&cps),
            show(own_switch),
            show(train_switch),
        );
        assert!(low_rank < 0.5 * start_rank, "seed {seed}: diversity did not fall before the drop");
        // The phenomenon: the rank halves before the loss does (a property of the run);
        // the rule's answer: collapse within 10 % of the drop. (The detector smooths
        // over 3 probes and waits for 2, ~75 steps at a probe every 25: on a seed where
        // rank and loss fall together it can fire just after the 50-step mean halves.)
        let rank_halved = first_step(&rank, |v| v < 0.5 * start_rank).expect("the rank halves");
        assert!(rank_halved <= drop, "seed {seed}: the rank halved at {rank_halved}, after the loss ({drop})");
        assert!(
            collapses.iter().any(|&c| c.abs_diff(drop) <= rule_tol),
            "seed {seed}: collapse did not fire within ±{rule_tol} of the drop at {drop}: {collapses:?}"
        );
        assert!(
            cps.iter().any(|&c| c.abs_diff(drop) <= tol),
            "seed {seed}: no change point within ±{tol} of {drop}: {cps:?}"
        );
        for (what, switch) in [("own rule", own_switch), ("changepoint(train_loss)", train_switch)] {
            assert!(
                switch.is_none_or(|s| s + tol >= drop),
                "seed {seed}: a false auto switch by the {what} at {switch:?} (drop at {drop})"
            );
        }
    }
}

/// Cyclical learning rate: the loss follows the cycle, and so must the change points:
/// on every seed, change points in at least two cycles after the first (the swing, ~8 %
/// of the loss against a batch noise of ~4 % a step, shrinks from cycle to cycle, and a
/// change must stand 1.5 σ̂ out of the noise: the later cycles mostly do not), at least
/// 3 in 4 at the same phase of the cycle (within ±1/4 cycle of their circular mean), at
/// most a few per cycle.
#[test]
fn cyclical_change_points_follow_the_cycle() {
    for (seed, evs) in train_seeds("cyclical") {
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
            "| cyclical s{seed} | {cycles} cycles of {cycle} steps, lr peaks {} steps into each | changepoint(train_loss) after the first cycle: {}; in {covered} of {} cycles, {phase_step:.0} ± {worst:.0} steps into the cycle |",
            cycle / 2,
            list(&cps),
            per_cycle.len()
        );
        assert!(covered >= 2, "seed {seed}: change points in only {covered} of {} cycles", per_cycle.len());
        let in_phase = cps.iter().filter(|&&s| off(s) <= cycle as f64 / 4.0).count();
        assert!(
            in_phase * 4 >= cps.len() * 3,
            "seed {seed}: change points at scattered phases: {in_phase} of {} within ±¼ cycle (worst {worst:.0} steps off)",
            cps.len()
        );
        assert!(
            per_cycle.iter().all(|&n| n <= 3),
            "seed {seed}: change points fire on noise, not on the cycle: {per_cycle:?}"
        );
    }
}
