//! Standing checks on control runs (issue 23): healthy curves on which nothing happens —
//! a full-batch loss still falling (a sum of exponentials; a power law), a minibatch loss
//! on its floor, a held-out loss rising smoothly as the model overfits — at three seeds
//! each (each seed draws its own curve
//! shape), fed through the host's `SignalState` with an `auto` rule of every detector
//! kind. No rule may switch on a false firing, and no detector may raise more than one
//! false alarm per 10⁴ points (tests/controls_common/mod.rs defines "false" per
//! detector). `cargo bench --bench controls` prints the same table for docs/SIGNALS.md.

mod controls_common;

use controls_common::{CONTROLS, markdown, table};

const SEEDS: [u64; 3] = [101, 202, 303];
const POINTS: u64 = 20_000;

#[test]
fn control_runs_make_no_false_switch_and_at_most_one_alarm_per_10k_points() {
    let cells = table(&SEEDS, POINTS);
    println!("{}", markdown(&cells, SEEDS.len()));
    assert_eq!(cells.len(), CONTROLS.len() * phasetop::signals::DetectorKind::ALL.len());
    let mut problems = Vec::new();
    for c in &cells {
        assert_eq!(c.points, SEEDS.len() * POINTS as usize, "{}: every point was fed", c.control);
        if c.false_switches > 0 {
            problems.push(format!(
                "{} / {}: {} false auto switches ({:?})",
                c.control, c.kind, c.false_switches, c.examples
            ));
        }
        if c.per_10k() > 1.0 {
            problems.push(format!(
                "{} / {}: {} false alarms in {} points ({:.2} per 10⁴): {:?}",
                c.control,
                c.kind,
                c.false_alarms,
                c.points,
                c.per_10k(),
                c.examples
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The judge of "false" can fail: a change point on a real level shift, fed through the
/// same machinery, is a firing that `is_false` would count (every changepoint firing on a
/// control is false), and a plateau on a curve falling 30 % per window is false.
#[test]
fn the_false_alarm_judge_sees_firings() {
    use controls_common::{Control, is_false, run_rule};
    use phasetop::signals::DetectorKind;
    let points: Vec<(u64, f64, f64)> = (0..4000u64)
        .map(|s| {
            let v = if s < 2000 { 1.0 } else { 0.5 };
            (s, v * (1.0 + 0.01 * ((s * 7919 % 13) as f64 / 6.0 - 1.0)), v)
        })
        .collect();
    let c = Control { name: "shift", metric: "train_loss", points };
    let o = run_rule(DetectorKind::Changepoint, &c);
    assert!(o.false_firings.iter().any(|&s| (2000..2100).contains(&s)), "{o:?}");
    assert!(o.switch.is_some_and(|(at, _)| at >= 2000), "{o:?}");
    let falling = Control {
        name: "falling",
        metric: "train_loss",
        points: (0..2000u64).map(|s| (s, 0.0, (-(s as f64) / 1400.0).exp())).collect(),
    };
    assert!(is_false(DetectorKind::Plateau, &falling, 1500));
    assert!(!is_false(DetectorKind::Plateau, &c, 1500));
}
