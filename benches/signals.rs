//! Cost of the signals layer at its default schedule, as a share of training time, on
//! the demo and grokking configs: probes (every `probes.every` steps, on the configured
//! layers) and the default detector bank (every step, eval and probe metric), measured
//! side by side with the training steps they ride on, in one run.
//!
//! cargo bench --bench signals [-- STEPS]

use phasetop::config::{self, Config};
use phasetop::event::Metrics;
use phasetop::trainer::Trainer;
use std::time::Instant;

struct Costs {
    step_s: f64,
    probe_s: f64,
    detect_s: f64,
}

/// Mean seconds per training step, per probe, and per step's worth of detector pushes.
fn measure(cfg: &Config, steps: usize) -> Costs {
    let mut t = Trainer::new(cfg, 0).unwrap();
    for _ in 0..20 {
        t.train_step();
    }
    let mut recorded: Vec<Metrics> = Vec::with_capacity(steps);
    let t0 = Instant::now();
    for _ in 0..steps {
        recorded.push(t.train_step());
    }
    let step_s = t0.elapsed().as_secs_f64() / steps as f64;

    let wanted: Vec<String> = cfg.probes.layers.iter().map(|l| l.get_ref().clone()).collect();
    let probes = 10;
    let mut probe_metrics = Metrics::new();
    let t0 = Instant::now();
    for _ in 0..probes {
        for f in t.probe_features().iter().filter(|f| wanted.contains(&f.layer)) {
            for (k, v) in phasetop::probes::layer_metrics(f) {
                probe_metrics.insert(format!("{}/{k}", f.layer), v);
            }
        }
    }
    let probe_s = t0.elapsed().as_secs_f64() / probes as f64;

    // The host's bank: defaults, plus collapse on each probed layer, fed every step's
    // metrics, the eval metrics and the probe metrics on their schedules.
    let mut signals = phasetop::rules::SignalState::new(&cfg.phases[0]);
    for l in wanted.iter().filter(|l| !l.ends_with(".attn")) {
        signals.watch_probe_layer(l);
    }
    let val = t.evaluate();
    let t0 = Instant::now();
    for (i, m) in recorded.iter().enumerate() {
        let step = i as u64 + 1;
        signals.push(step, step, m);
        if t.eval_every() > 0 && step.is_multiple_of(t.eval_every()) {
            signals.push(step, step, &val);
        }
        if cfg.probes.every > 0 && step.is_multiple_of(cfg.probes.every) {
            signals.push(step, step, &probe_metrics);
        }
    }
    let detect_s = t0.elapsed().as_secs_f64() / steps as f64;
    Costs { step_s, probe_s, detect_s }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("signals benchmark: run it with `cargo bench --bench signals`");
        return;
    }
    let steps: usize =
        std::env::args().skip(1).find(|a| !a.starts_with('-')).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let configs =
        [("demo", include_str!("../configs/demo.toml")), ("grokking", include_str!("../configs/grokking.toml"))];
    println!("signals cost at the default schedule ({steps} steps; best of 3, alternated)");
    println!(
        "{:<10} {:>10} {:>8} {:>12} {:>14} {:>10} {:>10}",
        "config", "ms/step", "every", "ms/probe", "µs detect/step", "probes %", "total %"
    );
    for (name, src) in configs {
        let cfg = config::parse(&format!("configs/{name}.toml"), src).unwrap();
        let mut best: Option<Costs> = None;
        for _ in 0..3 {
            let c = measure(&cfg, if name == "grokking" { steps / 10 } else { steps });
            best = Some(match best {
                None => c,
                Some(b) => Costs {
                    step_s: b.step_s.min(c.step_s),
                    probe_s: b.probe_s.min(c.probe_s),
                    detect_s: b.detect_s.min(c.detect_s),
                },
            });
        }
        let c = best.unwrap();
        let every = cfg.probes.every.max(1) as f64;
        let probe_share = c.probe_s / every / c.step_s * 100.0;
        let total = (c.probe_s / every + c.detect_s) / c.step_s * 100.0;
        println!(
            "{name:<10} {:>10.3} {:>8} {:>12.3} {:>14.1} {:>9.2}% {:>9.2}%",
            c.step_s * 1e3,
            cfg.probes.every,
            c.probe_s * 1e3,
            c.detect_s * 1e6,
            probe_share,
            total
        );
    }
}
