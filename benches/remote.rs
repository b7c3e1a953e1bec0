//! Remote attach: bytes on the ssh channel for a run at 1 000 steps/s, once the backfill
//! is done (the issue's figure: ≤ 2 KB/s), next to the same run streamed with every step
//! and to the log's own growth, measured side by side over one window through a real
//! loopback sshd (scripts/setup-sshd.sh). Bytes are counted as read from the ssh
//! process's stdout.
//!
//! cargo bench --bench remote [-- SECONDS]     (measurement window, default 10)

use phasetop::event::{Event, Metrics};
use phasetop::remote::{Spec, mirror::Mirror, proto::DEFAULT_STEPS_PER_SEC};
use phasetop::runlog::Writer;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RATE: u64 = 1000;

/// A step as the built-in host records it (the metrics every step carries).
fn step(i: u64, t: f64) -> Event {
    let mut m = Metrics::new();
    let x = i as f64;
    for (k, v) in [
        ("train_loss", 2.3 / (1.0 + x * 1e-3) + 1e-4 * (x * 0.37).sin()),
        ("train_acc", 0.1 + 0.8 * (1.0 - (-x * 1e-4).exp())),
        ("lr", 0.001),
        ("grad_norm", 0.8 + 0.1 * (x * 0.11).cos()),
        ("weight_norm", 31.4 + x * 1e-5),
        ("dist_init", x.sqrt() * 1e-2),
        ("steps_per_s", 1000.0 + (x * 0.7).sin()),
    ] {
        m.insert(k.into(), v);
    }
    Event::Step { step: i, phase: "main".into(), t, metrics: m }
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test --all-targets` it is only built (the
    // measurement starts an sshd and streams for seconds).
    if !std::env::args().any(|a| a == "--bench") {
        println!("remote benchmark: run it with `cargo bench --bench remote`");
        return;
    }
    let secs: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    let tmp = tempfile::tempdir().unwrap();
    let setup = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-sshd.sh"))
        .arg(tmp.path().join("sshd"))
        .arg(std::process::id().to_string())
        .output()
        .unwrap();
    if !setup.status.success() {
        eprintln!("remote bench skipped: {}", String::from_utf8_lossy(&setup.stderr).trim());
        return;
    }
    let out = String::from_utf8(setup.stdout).unwrap();
    let ssh = out.lines().find_map(|l| l.strip_prefix("PHASETOP_SSH=")).unwrap();
    unsafe {
        std::env::set_var("PHASETOP_SSH", ssh);
        std::env::set_var("PHASETOP_REMOTE_BIN", env!("CARGO_BIN_EXE_phasetop"));
    }

    // A run with 60 s of history at 1 000 steps/s, then live at 1 000 steps/s of wall time;
    // an eval every 250 steps (4 a second).
    let run = tmp.path().join("runs/bench");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("run.json"),
        r#"{"run_id":"bench","config_name":"bench","seed":0,"max_steps":0,"created_at":0}"#,
    )
    .unwrap();
    let log = run.join("events.log");
    let mut w = Writer::create(&log).unwrap();
    let t0 = 1.0e9;
    let history = 60 * RATE;
    let eval = |i: u64| {
        let mut m = Metrics::new();
        m.insert("val_loss".into(), 1.0 / (1.0 + i as f64 * 1e-3));
        m.insert("val_acc".into(), 0.5);
        Event::Eval { step: i, split: "val".into(), metrics: m }
    };
    for i in 1..=history {
        w.append(&step(i, t0 + i as f64 / RATE as f64)).unwrap();
        if i.is_multiple_of(250) {
            w.append(&eval(i)).unwrap();
        }
    }
    w.flush().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let live = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = history;
        while !s.load(Ordering::Relaxed) {
            // Catch up with the wall clock in 1 ms slices, flushing as the host does.
            let due = history + (start.elapsed().as_secs_f64() * RATE as f64) as u64;
            while i < due {
                i += 1;
                w.append(&step(i, t0 + i as f64 / RATE as f64)).unwrap();
                if i.is_multiple_of(250) {
                    w.append(&eval(i)).unwrap();
                }
            }
            w.flush_if_due().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        w.flush().unwrap();
    });

    let spec = Spec { host: "phasetop-test".into(), path: run.display().to_string() };
    let cache = tmp.path().join("cache");
    let t_open = Instant::now();
    let thin = Mirror::open(&spec, &cache, DEFAULT_STEPS_PER_SEC).unwrap();
    assert!(thin.wait_backfill(Duration::from_secs(120)));
    let thin_backfill = (thin.bytes_received(), t_open.elapsed().as_secs_f64());
    let t_open = Instant::now();
    let full = Mirror::open(&spec, &cache, 0.0).unwrap();
    assert!(full.wait_backfill(Duration::from_secs(300)));
    let full_backfill = (full.bytes_received(), t_open.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(1));

    let (b_thin, b_full, b_log) =
        (thin.bytes_received(), full.bytes_received(), std::fs::metadata(&log).unwrap().len());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let el = start.elapsed().as_secs_f64();
    let (e_thin, e_full, e_log) =
        (thin.bytes_received(), full.bytes_received(), std::fs::metadata(&log).unwrap().len());
    stop.store(true, Ordering::Relaxed);
    live.join().unwrap();

    let rate = |a: u64, b: u64| (b - a) as f64 / el;
    let (r_thin, r_full, r_log) = (rate(b_thin, e_thin), rate(b_full, e_full), rate(b_log, e_log));
    println!("remote attach over ssh (loopback sshd), a run at {RATE} steps/s + 4 evals/s, {el:.1} s window:");
    println!(
        "  backfill of {history} steps: decimated {:>9} B in {:.2} s   every step {:>9} B in {:.2} s",
        thin_backfill.0, thin_backfill.1, full_backfill.0, full_backfill.1
    );
    println!("  the run's log grows             {:>8.0} B/s", r_log);
    println!("  stream, every step (rate 0)     {:>8.0} B/s  ({:.2}x the log)", r_full, r_full / r_log);
    println!(
        "  stream, decimated ({DEFAULT_STEPS_PER_SEC} steps/s)   {:>8.0} B/s  ({:.4}x the log, {:.1}x less than every step) — target ≤ 2048 B/s: {}",
        r_thin,
        r_thin / r_log,
        r_full / r_thin.max(1.0),
        if r_thin <= 2048.0 { "met" } else { "MISSED" }
    );
}
