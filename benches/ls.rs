//! `phasetop ls` over many recorded runs: with each run's `summary.json` (issue 25 #3)
//! against the full fold of every log that `ls` did before, side by side in one run.
//!
//! cargo bench --bench ls [-- STEPS]        (steps per demo-size run, default 90,000)
//!
//! Two sets: 30 demo-size runs (the demo's 64 s at 1 400 steps/s, 7 step metrics, a
//! system sample a second) and 1 000 runs of 2 000 steps. Each run is written by the
//! hosts' own log writer (`session::RunLog`), which keeps `summary.json`. Timed: the
//! `phasetop ls` process with summaries (targets: ≤ 150 ms for 30 runs, ≤ 1 s for
//! 1 000); the workspace's first frame with every row of the list (`phasetop workspace
//! ROOT` in a pseudo-terminal, 160×48, from spawn until its screen shows the run count
//! and the first run); the same `ls` with every summary deleted (old runs: the first `ls`
//! rebuilds and saves them), and then again; and, in-process, the whole-log fold per run
//! (`Summary::load`) that `ls` did before. Without `--bench` (under `cargo test`) it
//! only checks, on three small runs, that `ls` lists them from their summaries.

use phasetop::event::{Event, Metrics, PhaseCause, RunStatus};
use phasetop::inspect::Summary;
use phasetop::session::RunLog;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn write_run(dir: &Path, steps: u64, k: usize) {
    phasetop::rundir::RunDir::create(dir, false).unwrap();
    let mut w = RunLog::create(&dir.join("events.log")).unwrap();
    let names = ["train_loss", "train_acc", "lr", "grad_norm", "weight_norm", "dist_init", "steps_per_s"];
    w.append(&Event::RunStarted {
        run_id: format!("run-{k}"),
        schema_major: 1,
        schema_minor: phasetop::event::SCHEMA_MINOR,
        config_name: if k.is_multiple_of(2) { "demo".into() } else { "sweep".into() },
        config: serde_json::json!({"run": {"max_steps": steps}}),
        phases: vec!["warmup".into(), "main".into()],
        device: "cpu".into(),
        seed: k as u64,
        started_at: 1_765_000_000.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    })
    .unwrap();
    w.append(&Event::PhaseChanged { step: 0, from: None, to: "warmup".into(), cause: PhaseCause::Start, detail: None })
        .unwrap();
    let mut m: Metrics = names.iter().map(|n| (n.to_string(), 0.0)).collect();
    for s in 1..=steps {
        let x = s as f64;
        for (j, v) in m.values_mut().enumerate() {
            *v = (x * 1e-3 + j as f64).sin() / (1.0 + x * 1e-4);
        }
        let phase = if s < steps / 4 { "warmup" } else { "main" };
        if s == steps / 4 {
            w.append(&Event::PhaseChanged {
                step: s,
                from: Some("warmup".into()),
                to: "main".into(),
                cause: PhaseCause::Scheduled,
                detail: None,
            })
            .unwrap();
        }
        w.append(&Event::Step { step: s, phase: phase.into(), t: 1_765_000_000.0 + x / 1400.0, metrics: m.clone() })
            .unwrap();
        if s.is_multiple_of(1400) {
            let sys: Metrics = [("sys/cpu_pct".to_string(), 98.0), ("sys/rss_mb".to_string(), 312.0)].into();
            w.append(&Event::Eval { step: s, split: "system".into(), metrics: sys }).unwrap();
        }
    }
    w.append(&Event::RunEnded { step: steps, status: RunStatus::Completed, message: "done".into() }).unwrap();
    w.sync().unwrap();
}

fn ls(root: &Path) -> (f64, String) {
    let t = Instant::now();
    let out = Command::new(BIN).arg("ls").arg(root).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (secs, String::from_utf8(out.stdout).unwrap())
}

/// `phasetop workspace ROOT` in a pseudo-terminal: seconds from spawn to the first frame
/// that lists the runs (title "N runs" and the first run's row), then `q`.
fn workspace_open(root: &Path, n: usize) -> f64 {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read, Write};
    let (rows, cols) = (48, 160);
    let pair = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
    let mut cmd = CommandBuilder::new(BIN);
    cmd.arg("workspace");
    cmd.arg(root);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("TMUX");
    let t = Instant::now();
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let mut screen =
        vt100::Parser::new(std::num::NonZeroU16::new(rows).unwrap(), std::num::NonZeroU16::new(cols).unwrap(), 0);
    let title = format!("{n} runs");
    let mut buf = [0u8; 65536];
    let secs = loop {
        let got = reader.read(&mut buf).unwrap();
        assert!(got > 0, "the workspace ended before listing the runs:\n{}", screen.screen().contents());
        screen.process(&buf[..got]);
        let text = screen.screen().contents();
        if text.contains(&title) && text.contains("run-0") {
            break t.elapsed().as_secs_f64();
        }
    };
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    // Drain until the workspace has given the terminal back and exited.
    std::thread::spawn(move || while matches!(reader.read(&mut buf), Ok(k) if k > 0) {});
    assert!(child.wait().unwrap().success());
    drop(pair.master);
    secs
}

fn set(n: usize, steps: u64, target_ms: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    let t = Instant::now();
    for k in 0..n {
        write_run(&root.join(format!("run-{k:04}")), steps, k);
    }
    let bytes: u64 =
        (0..n).map(|k| std::fs::metadata(root.join(format!("run-{k:04}/events.log"))).unwrap().len()).sum();
    println!(
        "{n} runs of {steps} steps ({:.0} MB of logs, written in {:.1} s):",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    ls(&root); // warm the page cache, as a user's second look
    let (with, out) = ls(&root);
    assert_eq!(out.lines().count(), n + 1, "{out}");
    let open = workspace_open(&root, n);
    assert!(out.lines().skip(1).all(|l| l.contains("completed") && l.contains(&steps.to_string())), "{out}");
    let t = Instant::now();
    for k in 0..n {
        let dir = phasetop::rundir::RunDir { path: root.join(format!("run-{k:04}")) };
        let s = Summary::load(&dir.log()).unwrap().with_host(dir.host_state());
        std::hint::black_box(s);
    }
    let fold = t.elapsed().as_secs_f64();
    for k in 0..n {
        std::fs::remove_file(root.join(format!("run-{k:04}/summary.json"))).unwrap();
    }
    let (rebuild, out2) = ls(&root);
    assert_eq!(out2.lines().count(), n + 1);
    let (again, out3) = ls(&root);
    // The same rows but for AGE (seconds pass between the two).
    let no_age = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| l.split_whitespace().enumerate().filter(|(i, _)| *i != 5).map(|(_, w)| w.to_string()).collect())
            .collect()
    };
    assert_eq!(no_age(&out), no_age(&out3), "a rebuilt summary lists the same");
    println!("  ls, summaries kept by the host   {:>8.1} ms   (target ≤ {target_ms:.0} ms)", with * 1e3);
    println!("  workspace open (first frame)     {:>8.1} ms   ({:.1}× the ls)", open * 1e3, open / with);
    println!(
        "  full fold of every log (before)  {:>8.1} ms   (in-process Summary::load per run; {:.0}× the summary ls)",
        fold * 1e3,
        fold / with
    );
    println!("  ls with no summaries (rebuilds)  {:>8.1} ms   then again {:.1} ms", rebuild * 1e3, again * 1e3);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // Smoke: three small runs, listed from their summaries.
        let tmp = tempfile::tempdir().unwrap();
        for k in 0..3 {
            write_run(&tmp.path().join(format!("run-{k}")), 50, k);
            assert!(tmp.path().join(format!("run-{k}/summary.json")).exists());
        }
        let (_, out) = ls(tmp.path());
        assert_eq!(out.lines().filter(|l| l.contains("completed") && l.contains(" 50 ")).count(), 3, "{out}");
        let open = workspace_open(tmp.path(), 3);
        assert!(open > 0.0);
        println!("ls benchmark: run it with `cargo bench --bench ls`");
        return;
    }
    let steps: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.replace('_', "").parse().ok())
        .unwrap_or(90_000);
    set(30, steps, 150.0);
    set(1000, 2000, 1000.0);
}
