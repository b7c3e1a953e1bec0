//! Run log throughput: writes N small records to a temporary file, reads them back, and
//! prints records per second against the 1 million/s target.
//!
//! cargo bench --bench runlog [-- N]        (N defaults to 2,000,000)
//!
//! Two record kinds: a `Step` with three metrics (what the trainer writes every step) and
//! an `Event::Log` line. Writing is `append` + `flush_if_due` per record (as the host
//! does), then a `sync` timed on its own; reading is the streaming `Reader` (events
//! dropped as they come), a `Tail` catching up from the start (`poll_each`, streaming;
//! `poll`, collecting), `read_all` (every event held in memory), and
//! `Summary::from_contents` over the result.

use phasetop::event::{Event, LogLevel, Metrics};
use phasetop::inspect::Summary;
use phasetop::runlog::{self, Reader, Tail, Writer};
use std::path::Path;
use std::time::Instant;

const TARGET: f64 = 1_000_000.0;

fn report(what: &str, n: u64, bytes: u64, secs: f64) {
    let rate = n as f64 / secs;
    println!(
        "  {what:<28} {n:>9} records in {secs:>6.3} s = {:>6.2} M records/s, {:>6.1} MB/s  ({:.2}x the 1M/s target)",
        rate / 1e6,
        bytes as f64 / secs / 1e6,
        rate / TARGET
    );
}

/// Writes `n` events made by `make` (which mutates one event in place, so that building
/// events costs nothing here).
fn write(path: &Path, n: u64, mut ev: Event, make: impl Fn(&mut Event, u64)) -> u64 {
    let t = Instant::now();
    let mut w = Writer::create(path).unwrap();
    for i in 0..n {
        make(&mut ev, i);
        w.append(&ev).unwrap();
        w.flush_if_due().unwrap();
    }
    w.flush().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path).unwrap().len();
    report("write (append+flush_if_due)", n, bytes, secs);
    let t = Instant::now();
    w.sync().unwrap();
    drop(w);
    println!("  then sync (fsync of the whole file): {:.3} s", t.elapsed().as_secs_f64());
    bytes
}

fn read(path: &Path, n: u64, bytes: u64) {
    let t = Instant::now();
    let mut count = 0u64;
    for item in Reader::open(path).unwrap() {
        let r = item.unwrap();
        std::hint::black_box(&r.event);
        count += 1;
    }
    assert_eq!(count, n);
    report("read (streaming Reader)", n, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let got = Tail::new(path).poll_each(|r| drop(std::hint::black_box(r))).unwrap() as u64;
    assert_eq!(got, n);
    report("Tail::poll_each (catch up)", n, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let got = Tail::new(path).poll().unwrap().len() as u64;
    assert_eq!(got, n);
    report("Tail::poll (catch up, held)", n, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let c = runlog::read_all(path).unwrap();
    assert_eq!(c.records.len() as u64, n);
    assert!(c.problems.is_empty());
    report("read_all (held in memory)", n, bytes, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let s = Summary::from_contents(&c);
    std::hint::black_box(&s);
    report("Summary::from_contents", n, bytes, t.elapsed().as_secs_f64());
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run log benchmark: run it with `cargo bench --bench runlog`");
        return;
    }
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().unwrap();
    println!("run log: {n} records per kind, file in {}", dir.path().display());

    let path = dir.path().join("step.log");
    let metrics: Metrics =
        [("train_loss".to_string(), 0.0), ("lr".to_string(), 3e-4), ("grad_norm".to_string(), 0.0)].into();
    let step = Event::Step { step: 0, phase: "main".into(), t: 0.0, metrics };
    let bytes = write(&path, n, step, |ev, i| {
        if let Event::Step { step, t, metrics, .. } = ev {
            *step = i;
            *t = 1_700_000_000.0 + i as f64 * 0.001;
            if let Some(v) = metrics.get_mut("train_loss") {
                *v = 2.3 / (1.0 + i as f64 * 1e-4);
            }
            if let Some(v) = metrics.get_mut("grad_norm") {
                *v = 0.5 + (i % 97) as f64 * 0.01;
            }
        }
    });
    println!("Step with 3 metrics ({:.0} bytes per record on disk):", bytes as f64 / n as f64);
    read(&path, n, bytes);
    std::fs::remove_file(&path).unwrap();

    let path = dir.path().join("log.log");
    let log = Event::Log { step: 0, level: LogLevel::Info, message: "checkpoint saved".into() };
    let bytes = write(&path, n, log, |ev, i| {
        if let Event::Log { step, .. } = ev {
            *step = i;
        }
    });
    println!("Log line ({:.0} bytes per record on disk):", bytes as f64 / n as f64);
    read(&path, n, bytes);
    std::fs::remove_file(&path).unwrap();

    demo_steps(dir.path(), n.min(500_000));
}

/// The demo's seven step metrics, as JSON step records (schema ≤ 1.3, before) and as
/// compact binary ones (1.4, after): bytes per step (target ≤ 120), write and read rates.
fn demo_steps(dir: &Path, n: u64) {
    let names = ["train_loss", "train_acc", "lr", "grad_norm", "weight_norm", "dist_init", "steps_per_s"];
    let mut rows = Vec::new();
    for compact in [false, true] {
        let path = dir.join(if compact { "demo-compact.log" } else { "demo-json.log" });
        let t = Instant::now();
        let mut w = Writer::create(&path).unwrap();
        w.set_compact_steps(compact);
        let mut metrics: Metrics = names.iter().map(|k| (k.to_string(), 0.0)).collect();
        for i in 0..n {
            let x = i as f64;
            for (j, v) in metrics.values_mut().enumerate() {
                *v = (x * 0.001 + j as f64).sin() * 2.3 / (1.0 + x * 1e-4);
            }
            let ev = Event::Step {
                step: i,
                phase: "main".into(),
                t: 1_765_000_000.0 + x / 1400.0,
                metrics: metrics.clone(),
            };
            w.append(&ev).unwrap();
            w.flush_if_due().unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let write = t.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&path).unwrap().len();
        let t = Instant::now();
        let count = Reader::open(&path).unwrap().filter(|r| r.is_ok()).count() as u64;
        assert_eq!(count, n);
        let read = t.elapsed().as_secs_f64();
        rows.push((bytes as f64 / n as f64, n as f64 / write / 1e6, n as f64 / read / 1e6));
        std::fs::remove_file(&path).unwrap();
    }
    let (o, c) = (rows[0], rows[1]);
    println!("Demo step, 7 metrics, {n} steps: before (JSON) vs after (compact binary, schema 1.4):");
    println!("  bytes per step      {:>7.1} vs {:>6.1}   ({:.2}x; target ≤ 120)", o.0, c.0, c.0 / o.0);
    println!("  write M steps/s     {:>7.2} vs {:>6.2}", o.1, c.1);
    println!("  read M steps/s      {:>7.2} vs {:>6.2}   (streaming Reader)", o.2, c.2);
}
