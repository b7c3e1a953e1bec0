//! Trainer throughput against the same model, optimizer and batch in PyTorch eager
//! (scripts/bench_peer.py, run with the project's venv), measured side by side in one
//! run with the same thread count; and the monitoring overhead (log + default metrics +
//! eval schedule) against a bare step loop.
//!
//! cargo bench --bench trainer [-- STEPS [overhead]]   (PHASETOP_BENCH_THREADS=N to pin the thread count)

use phasetop::config;
use phasetop::trainer::Trainer;
use std::process::Command;
use std::time::Instant;

const MLP: &str = r#"
[run]
name = "bench-mlp"
max_steps = 1000000
threads = THREADS
[task]
kind = "gaussian"
dim = 32
classes = 8
clusters_per_class = 3
n_train = 8192
[model]
kind = "mlp"
depth = 3
width = 128
[eval]
# The default schedule ("auto": the whole held-out split, about 1 % of the compute).
[checkpoint]
every = 0
[[phase]]
name = "main"
optimizer = "adamw"
lr = 0.002
weight_decay = 0.01
batch_size = 128
"#;

const TRANSFORMER: &str = r#"
[run]
name = "bench-transformer"
max_steps = 1000000
threads = THREADS
[task]
kind = "modular"
p = 59
train_fraction = 0.4
[model]
kind = "transformer"
d_model = 64
heads = 4
layers = 1
d_ff = 256
[eval]
# The default schedule, as for the MLP.
[checkpoint]
every = 0
[[phase]]
name = "main"
optimizer = "adamw"
lr = 0.001
weight_decay = 1.0
batch_size = 512
"#;

fn ours(src: &str, steps: usize, full_metrics: bool) -> f64 {
    let cfg = config::parse("bench.toml", src).unwrap();
    let mut t = Trainer::new(&cfg, 0).unwrap();
    t.set_full_metrics(full_metrics);
    for _ in 0..20 {
        t.train_step();
    }
    let t0 = Instant::now();
    for _ in 0..steps {
        t.train_step();
    }
    steps as f64 / t0.elapsed().as_secs_f64()
}

/// Per-step metrics on vs off on one trainer, in alternating blocks of 25 steps: the
/// machine's drift then lands on both sides equally. Returns (bare/s, with metrics/s).
fn metrics_interleaved(src: &str, steps: usize) -> (f64, f64) {
    let cfg = config::parse("bench.toml", src).unwrap();
    let mut t = Trainer::new(&cfg, 0).unwrap();
    for _ in 0..20 {
        t.train_step();
    }
    let (mut bare, mut full) = (0.0, 0.0);
    for block in 0..steps / 25 {
        let on = block % 2 == 1;
        t.set_full_metrics(on);
        let t0 = Instant::now();
        for _ in 0..25 {
            t.train_step();
        }
        *(if on { &mut full } else { &mut bare }) += t0.elapsed().as_secs_f64();
    }
    let per_side = (steps / 50 * 25) as f64;
    (per_side / bare, per_side / full)
}

fn peer(kind: &str, steps: usize, threads: usize) -> Option<f64> {
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_peer.py");
    let out = Command::new(py).arg(script).args([kind, &steps.to_string(), &threads.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["steps_per_s"].as_f64()
}

/// Steps per second of a recorded run between its 20th and its last step, from the
/// `step` events' timestamps: the rate while it runs, without start-up (data, socket)
/// and the final checkpoint, which the bare loop does not have either.
fn steady_rate(log: &std::path::Path) -> f64 {
    let steps: Vec<(u64, f64)> = phasetop::runlog::read_all(log)
        .unwrap()
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            phasetop::event::Event::Step { step, t, .. } if step >= 20 => Some((step, t)),
            _ => None,
        })
        .collect();
    let (first, last) = (steps.first().unwrap(), steps.last().unwrap());
    (last.0 - first.0) as f64 / (last.1 - first.1)
}

/// The run's own account of its monitoring cost (the `monitoring took …` line the host
/// logs at the end): the share of its busy time, and the line itself.
fn logged_cost(log: &std::path::Path) -> (f64, String) {
    let line = phasetop::runlog::read_all(log)
        .unwrap()
        .records
        .into_iter()
        .find_map(|r| match r.event {
            phasetop::event::Event::Log { message, .. } if message.starts_with("monitoring took") => Some(message),
            _ => None,
        })
        .expect("the host logs its monitoring cost");
    let pct = line.trim_start_matches("monitoring took ").split(' ').next().unwrap().parse().unwrap();
    (pct, line)
}

/// The full host loop (run log, every-step metrics, eval schedule, control socket) vs
/// bare `train_step`s, on the same config: alternated three times, best of each, so a
/// burst of load on this noisy machine does not land on one side only.
fn monitoring_overhead(src: &str, steps: u64) -> (f64, f64, f64, f64, f64, (f64, String)) {
    // Paired rounds, each measuring all three back to back, and the median of the
    // per-round ratios: this VM's speed drifts by ±30 % within a minute, which a
    // best-of or a mean over separate blocks would mistake for overhead (or a gain).
    const ROUNDS: usize = 7;
    let (mut bare, mut metrics, mut full, mut r_metrics, mut r_full) = (vec![], vec![], vec![], vec![], vec![]);
    let mut logged = vec![];
    for _ in 0..ROUNDS {
        let b = ours(src, steps as usize, false);
        let m = ours(src, steps as usize, true);
        let tmp = tempfile::tempdir().unwrap();
        let loaded = config::LoadedConfig {
            config: config::parse("bench.toml", src).unwrap(),
            path: "bench.toml".into(),
            source: src.to_string(),
        };
        let run = phasetop::host::NewRun {
            config: loaded,
            run_dir: tmp.path().join("run"),
            seed: None,
            max_steps: Some(steps + 20),
        };
        let host = phasetop::host::create(run, Default::default()).unwrap();
        host.run(Box::new(())).unwrap();
        let f = steady_rate(&tmp.path().join("run/events.log"));
        logged.push(logged_cost(&tmp.path().join("run/events.log")));
        bare.push(b);
        metrics.push(m);
        full.push(f);
        r_metrics.push(m / b);
        r_full.push(f / b);
    }
    logged.sort_by(|a, b| a.0.total_cmp(&b.0));
    let logged = logged.swap_remove(logged.len() / 2);
    (median(bare), median(metrics), median(full), median(r_metrics), median(r_full), logged)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("trainer benchmark: run it with `cargo bench --bench trainer`");
        return;
    }
    let steps: usize = std::env::args().find_map(|s| s.parse().ok()).unwrap_or(400);
    let threads = std::env::var("PHASETOP_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("trainer benchmark: {steps} steps, {threads} threads, same machine, one run");
    // `-- STEPS overhead` measures only the monitoring overhead.
    let peers = if std::env::args().any(|a| a == "overhead") {
        vec![]
    } else {
        vec![("mlp", MLP), ("transformer", TRANSFORMER)]
    };
    println!("{:<26} {:>12} {:>12} {:>8}", "model", "phasetop/s", "pytorch/s", "ratio");
    for (name, kind, src) in
        [("demo MLP (batch 128)", "mlp", MLP), ("transformer (batch 512)", "transformer", TRANSFORMER)]
            .into_iter()
            .filter(|(_, kind, _)| peers.iter().any(|(k, _)| k == kind))
    {
        let src = src.replace("THREADS", &threads.to_string());
        // Alternate to spread machine noise over both sides.
        let a1 = ours(&src, steps, false);
        let p1 = peer(kind, steps, threads);
        let a2 = ours(&src, steps, false);
        let p2 = peer(kind, steps, threads);
        let a = (a1 + a2) / 2.0;
        match (p1, p2) {
            (Some(p1), Some(p2)) => {
                let p = (p1 + p2) / 2.0;
                println!("{name:<26} {a:>12.1} {p:>12.1} {:>7.2}x", a / p);
            }
            _ => println!("{name:<26} {a:>12.1} {:>12} {:>8}", "n/a", "-"),
        }
    }
    println!();
    println!("monitoring overhead (log + per-step metrics + eval schedule vs bare steps)");
    for (name, src) in [("demo MLP", MLP), ("transformer", TRANSFORMER)] {
        let src = src.replace("THREADS", &threads.to_string());
        let n = if name == "transformer" { (steps / 4).max(100) } else { steps };
        let (ib, im) = metrics_interleaved(&src, n * 4);
        println!(
            "{name:<12} per-step metrics, interleaved blocks of 25 steps on one trainer: bare {ib:>6.1}/s, \
             metrics {im:>6.1}/s, overhead {:>5.1}%",
            (1.0 - im / ib) * 100.0
        );
        let (bare, metrics, full, r_metrics, r_full, (_, logged)) = monitoring_overhead(&src, n as u64);
        println!(
            "{name:<12} bare {bare:>6.1}/s  +step metrics {metrics:>6.1}/s  +log/eval/socket {full:>6.1}/s  \
             overhead: metrics {:>5.1}%, all {:>5.1}% (median of paired rounds)",
            (1.0 - r_metrics) * 100.0,
            (1.0 - r_full) * 100.0
        );
        println!("{name:<12} the run's own account (median round): {logged}");
    }
}
