//! Runs today's default detectors (and optionally one more) over a recorded run's
//! metrics and prints every firing: a quick way to see how a detector change moves the
//! firings of a known run without training it again.
//!
//!     cargo run --release --example detect -- target/known-answers/parity [DETECTOR METRIC]

use phasetop::event::Event;
use phasetop::signals::{DetectorKind, DetectorSpec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: detect RUN_DIR [DETECTOR METRIC]");
        std::process::exit(2);
    };
    let log = phasetop::runlog::read_all(&std::path::Path::new(dir).join("events.log")).expect("readable log");
    let mut bank = phasetop::rules::default_bank();
    if let [_, detector, metric] = args.as_slice() {
        let kind: DetectorKind = detector.parse().expect("a detector name");
        bank.insert(DetectorSpec::default_for(kind), metric);
    }
    // DETECT_HOLDS=N: also say whether each firing's condition still holds N steps later.
    let holds_after: Option<u64> = std::env::var("DETECT_HOLDS").ok().and_then(|v| v.parse().ok());
    let mut watch: Vec<(u64, String, String)> = Vec::new();
    for r in log.records {
        if let (Some(n), Event::Step { step, .. }) = (holds_after, &r.event) {
            watch.retain(|(at, det, metric)| {
                if *step < at + n {
                    return true;
                }
                println!("{:>6}   {det}({metric}) fired at {at}: holds = {}", step, bank.holds(det, metric));
                false
            });
        }
        let fired = match &r.event {
            Event::Step { step, metrics, .. } | Event::Eval { step, metrics, .. } => bank.push_all(*step, metrics),
            Event::Probe { step, layer, metrics } => {
                metrics.iter().flat_map(|(k, v)| bank.push(*step, &format!("{layer}/{k}"), *v)).collect()
            }
            _ => Vec::new(),
        };
        for s in fired {
            watch.push((s.step, s.detector.clone(), s.metric.clone()));
            println!("{:>6} {}({}): {}", s.step, s.detector, s.metric, s.message);
        }
    }
}
