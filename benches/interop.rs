//! Interop speed: opening a run in phasetop vs TensorBoard opening its export, and
//! `import` of a large event file.
//!
//! cargo bench --bench interop [-- N]       (N scalars, defaults to 1,000,000)
//!
//! (a) A run with N scalars (10 step metrics per step, N/10 steps) is written with the
//!     run-log `Writer` and exported to tfevents. Then, side by side: TensorBoard's
//!     `EventAccumulator` (the project's venv; `size_guidance` scalars=0 keeps every
//!     point) loading the event file, timed inside Python around `Reload()`, against
//!     phasetop opening the run log (`runlog::read_all`, then the inspect `Summary` and
//!     the dashboard's `RunView` with its series). Best of 3 each, alternated.
//! (b) `import` of that event file into a new run directory (target ≤ 2 s), detectors
//!     included.

use phasetop::event::{Event, Metrics, PhaseCause};
use phasetop::inspect::Summary;
use phasetop::interop::{self, Format};
use phasetop::runlog::{self, Writer};
use phasetop::ui::model::state::RunView;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const METRICS: u64 = 10;

fn write_run(dir: &Path, scalars: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut w = Writer::create(&dir.join("events.log")).unwrap();
    w.append(&Event::RunStarted {
        run_id: "bench".into(),
        schema_major: 1,
        schema_minor: 1,
        config_name: "bench".into(),
        config: serde_json::json!({}),
        phases: vec!["main".into()],
        device: "cpu".into(),
        seed: 0,
        started_at: 1_700_000_000.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    })
    .unwrap();
    w.append(&Event::PhaseChanged { step: 0, from: None, to: "main".into(), cause: PhaseCause::Start, detail: None })
        .unwrap();
    let names: Vec<String> = (0..METRICS).map(|i| if i == 0 { "train_loss".into() } else { format!("m{i}") }).collect();
    for step in 1..=scalars / METRICS {
        let metrics: Metrics = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), 1.0 / (1.0 + step as f64 * 1e-3) + i as f64 + 1e-3 * (step % 7) as f64))
            .collect();
        w.append(&Event::Step { step, phase: "main".into(), t: 1_700_000_000.0 + step as f64 * 0.01, metrics })
            .unwrap();
    }
    w.flush().unwrap();
}

fn open_phasetop(run: &Path) -> f64 {
    let t = Instant::now();
    let contents = runlog::read_all(&run.join("events.log")).unwrap();
    let summary = Summary::from_contents(&contents);
    let view = RunView::from_events(contents.records.iter().map(|r| &r.event));
    std::hint::black_box((&summary, &view));
    t.elapsed().as_secs_f64()
}

/// Seconds `EventAccumulator.Reload()` takes, and the scalar count it loaded.
fn open_tensorboard(py: &Path, dir: &Path) -> Option<(f64, u64)> {
    let script = r#"
import sys, time
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})
t = time.perf_counter()
acc.Reload()
dt = time.perf_counter() - t
n = sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
print(dt, n)
"#;
    let out = Command::new(py).arg("-c").arg(script).arg(dir).output().ok()?;
    if !out.status.success() {
        eprintln!("EventAccumulator failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("interop benchmark: run it with `cargo bench --bench interop`");
        return;
    }
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let t = Instant::now();
    write_run(&run, n);
    println!(
        "interop: {n} scalars ({METRICS} metrics × {} steps), written in {:.2} s",
        n / METRICS,
        t.elapsed().as_secs_f64()
    );
    let tb = tmp.path().join("tb");
    std::fs::create_dir(&tb).unwrap();
    let t = Instant::now();
    let done = interop::export(&run, Format::Tfevents, &tb).unwrap();
    let size = std::fs::metadata(&done.path).unwrap().len();
    println!("  export to tfevents: {:.2} s, {:.1} MB", t.elapsed().as_secs_f64(), size as f64 / 1e6);

    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let (mut ours, mut theirs) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        ours = ours.min(open_phasetop(&run));
        if let Some((secs, loaded)) = open_tensorboard(&py, &tb) {
            assert_eq!(loaded, n, "EventAccumulator loaded {loaded} of {n} scalars");
            theirs = theirs.min(secs);
        }
    }
    println!("  (a) open, best of 3: phasetop (read_all + Summary + RunView) {ours:.2} s");
    if theirs < f64::MAX {
        println!("      TensorBoard EventAccumulator.Reload(), scalars=0: {theirs:.2} s   ratio {:.1}x", theirs / ours);
    } else {
        println!("      TensorBoard: not measured ({} unusable; run scripts/setup-torch.sh)", py.display());
    }

    let mut best = f64::MAX;
    for i in 0..3 {
        let dest = tmp.path().join(format!("imported-{i}"));
        let t = Instant::now();
        let r = interop::import(&done.path, &dest).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(r.scalars as u64, n);
    }
    println!("  (b) import of the {n}-scalar event file, best of 3: {best:.2} s (target ≤ 2 s)");
}
