//! Dashboard costs, measured side by side in one run:
//! - render time per frame (160×48, default layout) with 10^3 vs 10^6 points per series;
//! - heap held by the dashboard's model after 10^7 steps of history;
//! - bytes written to the terminal per second in seconds 5–40 of live monitoring (a real
//!   `phasetop attach` in a pseudo-terminal on a fresh live headless demo run), at
//!   160×48 and 80×24, against burn's training TUI in the same window (issue 16:
//!   28.2 KB/s and 6.6 KB/s; target ≤ 0.5× of it).
//!
//! cargo bench --bench dashboard [-- terminal]   (terminal: only the bytes/s figures)

use phasetop::control::Reply;
use phasetop::event::{Event, Metrics, PhaseCause};
use phasetop::ui::app::{App, CommandSink};
use phasetop::ui::keymap::Keymap;
use phasetop::ui::layout::{Layout, SHIPPED};
use phasetop::ui::model::state::RunView;
use phasetop::ui::render;
use phasetop::ui::theme::{Theme, ThemeKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// Counts live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

struct NoSink;
impl CommandSink for NoSink {
    fn send(&mut self, _: &phasetop::event::Command) -> Result<Reply, String> {
        Err("bench".into())
    }
}

fn started() -> Event {
    let cfg = phasetop::config::parse("demo.toml", phasetop::config::DEMO_CONFIG).unwrap();
    Event::RunStarted {
        run_id: "bench".into(),
        schema_major: 1,
        schema_minor: 0,
        config_name: "demo".into(),
        config: serde_json::to_value(&cfg).unwrap(),
        phases: cfg.phase_names(),
        device: "cpu".into(),
        seed: 0,
        started_at: 0.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    }
}

fn step_event(step: u64) -> Event {
    let s = step as f64;
    let m: Metrics = [
        ("train_loss".to_string(), 2.0 / (1.0 + s / 1000.0) + 0.05 * (s * 0.1).sin()),
        ("train_acc".to_string(), 1.0 - 1.0 / (1.0 + s / 500.0)),
        ("lr".to_string(), 0.001),
        ("grad_norm".to_string(), 1.0),
        ("weight_norm".to_string(), 10.0),
        ("dist_init".to_string(), s.sqrt()),
        ("steps_per_s".to_string(), 500.0),
    ]
    .into();
    Event::Step { step, phase: "noisy".into(), t: s / 500.0, metrics: m }
}

fn view_with(points: u64) -> RunView {
    let mut v = RunView::default();
    v.apply(&started());
    v.apply(&Event::PhaseChanged { step: 0, from: None, to: "noisy".into(), cause: PhaseCause::Start, detail: None });
    for step in 1..=points {
        v.apply(&step_event(step));
        if step % 50 == 0 {
            let m: Metrics = [("val_loss".to_string(), 1.0), ("val_acc".to_string(), 0.5)].into();
            v.apply(&Event::Eval { step, split: "val".into(), metrics: m });
        }
    }
    v
}

fn median_frame_ms(view: RunView) -> f64 {
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let layout = Layout::parse("default", "default", SHIPPED[0].1).unwrap();
    let app = App::new(view, keymap, Theme::new(ThemeKind::Default), layout, "layouts".into(), Box::new(NoSink));
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
    let mut times = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        term.draw(|f| render::draw(f, &app)).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Bytes/s the dashboard writes in seconds `from`–`to` after it attaches to a fresh
/// live demo run, in a `cols`×`rows` pseudo-terminal.
fn bytes_per_second_over_pty(cols: u16, rows: u16, from: u64, to: u64) -> Option<f64> {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read;
    let bin = env!("CARGO_BIN_EXE_phasetop");
    let tmp = tempfile::tempdir().ok()?;
    let run = tmp.path().join("run");
    let mut host = std::process::Command::new(bin)
        .args(["train", "--headless", "--max-steps", "100000000", "--run-dir"])
        .arg(&run)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_err() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pair = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).ok()?;
    let mut cmd = CommandBuilder::new(bin);
    cmd.arg("attach");
    cmd.arg(&run);
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).ok()?;
    let mut reader = pair.master.try_clone_reader().ok()?;
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c2 = counted.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            c2.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(from)); // first frames and backfill
    let start = counted.load(Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(to - from));
    let bytes = counted.load(Ordering::Relaxed) - start;
    let rate = bytes as f64 / t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = std::process::Command::new(bin).arg("ctl").arg(&run).arg("stop").output();
    let _ = host.wait();
    drop(pair.master);
    Some(rate)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("dashboard benchmark: run it with `cargo bench --bench dashboard`");
        return;
    }
    let terminal_only = std::env::args().any(|a| a == "terminal");
    if !terminal_only {
        let small = median_frame_ms(view_with(1_000));
        let large = median_frame_ms(view_with(1_000_000));
        println!("render 160x48 default layout, median of 200 frames:");
        println!(
            "  10^3 points/series: {small:.3} ms   10^6 points/series: {large:.3} ms   ratio {:.2}x (target ≤ 1.5x, ≤ 2 ms)",
            large / small
        );

        let before = LIVE.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let v = view_with(10_000_000);
        let held = LIVE.load(Ordering::Relaxed) - before;
        println!(
            "heap held by the model after 10^7 steps ({} series): {:.1} MB (target ≤ 200 MB); folded in {:.1} s",
            v.series.len(),
            held as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        drop(v);
    }
    // Burn's training TUI in the same window (issue 16's measurement): 28.2 KB/s at
    // 160×48, 6.6 KB/s at 80×24.
    for (cols, rows, burn) in [(160u16, 48u16, 28.2), (80, 24, 6.6)] {
        match bytes_per_second_over_pty(cols, rows, 5, 40) {
            Some(r) => println!(
                "terminal output, seconds 5-40 of a live demo run, default layout {cols}x{rows}: {:.1} KB/s = {:.2}x burn's {burn} KB/s (target ≤ 0.5x)",
                r / 1e3,
                r / 1e3 / burn
            ),
            None => println!("terminal output {cols}x{rows}: could not measure (pty or host failed)"),
        }
    }
}
