//! Writes a run directory with a long synthetic log, for measuring the viewer on big
//! runs (`scripts/bench-startup`: the dashboard's memory after attaching to 10^6 steps).
//!
//!   cargo run --release --example synth_run -- DIR STEPS
//!
//! Each step records 4 metrics (as a small model writes every step), an eval every 50
//! steps and a phase change half-way.

use phasetop::event::{Event, Metrics, PhaseCause};
use phasetop::runlog::Writer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(steps)) = (args.get(1), args.get(2).and_then(|s| s.replace('_', "").parse::<u64>().ok()))
    else {
        eprintln!("usage: synth_run DIR STEPS");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut w = Writer::create(&std::path::Path::new(dir).join("events.log")).unwrap();
    let phase_change = |step, from: Option<&str>, to: &str, cause| Event::PhaseChanged {
        step,
        from: from.map(str::to_string),
        to: to.into(),
        cause,
        detail: None,
    };
    w.append(&phase_change(0, None, "warmup", PhaseCause::Start)).unwrap();
    let mut phase = "warmup";
    for step in 1..=steps {
        if step == steps / 2 {
            w.append(&phase_change(step, Some("warmup"), "main", PhaseCause::Scheduled)).unwrap();
            phase = "main";
        }
        let s = step as f64;
        let m: Metrics = [
            ("train_loss".to_string(), 4.0 * (-s / steps as f64).exp() + 0.01 * (s * 0.37).sin()),
            ("train_acc".to_string(), 1.0 - (-s / steps as f64).exp()),
            ("lr".to_string(), 0.001),
            ("grad_norm".to_string(), 1.0 + (s * 0.01).cos()),
        ]
        .into();
        w.append(&Event::Step { step, phase: phase.into(), t: s / 1000.0, metrics: m }).unwrap();
        if step.is_multiple_of(50) {
            let val: Metrics = [("val_loss".to_string(), 4.0 * (-s / steps as f64).exp())].into();
            w.append(&Event::Eval { step, split: "val".into(), metrics: val }).unwrap();
        }
        w.flush_if_due().unwrap();
    }
    w.flush().unwrap();
}
