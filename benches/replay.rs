//! Replay on a huge log: open → first frame, index build, and seeks to random steps.
//!
//! cargo bench --bench replay [-- N]        (N records, default 10,000,000)
//!
//! The log is N `Step` records (4 metrics each, as a small model writes every step) plus
//! an eval every 50 steps and a signal every 100 000, written with `runlog::Writer` to a
//! temporary directory. Timed: `Player::open` plus drawing the first frame into a
//! ratatui `TestBackend` (160×48, default layout) while the index is still being built;
//! the index build to its end; then seeks to random steps (forward and back), each
//! followed by a frame, as the dashboard does.

use phasetop::event::{Event, Metrics, PhaseCause};
use phasetop::runlog::Writer;
use phasetop::ui::app::App;
use phasetop::ui::keymap::Keymap;
use phasetop::ui::layout::{Layout, SHIPPED};
use phasetop::ui::model::replay_index::Source;
use phasetop::ui::model::state::RunView;
use phasetop::ui::player::replay::Player;
use phasetop::ui::theme::{Theme, ThemeKind};
use rand::{RngExt, SeedableRng};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::Instant;

struct Nowhere;
impl phasetop::ui::app::CommandSink for Nowhere {
    fn send(&mut self, _: &phasetop::event::Command) -> Result<phasetop::control::Reply, String> {
        Err("replay".into())
    }
}

fn write_log(path: &std::path::Path, n: u64) {
    write_log_as(path, n, true)
}

/// `compact`: step records as schema 1.4's binary records, else as JSON (older logs).
fn write_log_as(path: &std::path::Path, n: u64, compact: bool) {
    let mut w = Writer::create(path).unwrap();
    w.set_compact_steps(compact);
    w.append(&Event::PhaseChanged { step: 0, from: None, to: "main".into(), cause: PhaseCause::Start, detail: None })
        .unwrap();
    let mut written = 1;
    let mut step = 0u64;
    while written < n {
        step += 1;
        let s = step as f64;
        let m: Metrics = [
            ("train_loss".to_string(), 4.0 * (-s / 1e6).exp() + 0.01 * (s * 0.37).sin()),
            ("train_acc".to_string(), 1.0 - (-s / 1e6).exp()),
            ("lr".to_string(), 0.001),
            ("grad_norm".to_string(), 1.0 + (s * 0.01).cos()),
        ]
        .into();
        w.append(&Event::Step { step, phase: "main".into(), t: s / 1000.0, metrics: m }).unwrap();
        written += 1;
        if step.is_multiple_of(50) && written < n {
            let val: Metrics = [("val_loss".to_string(), 4.0 * (-s / 1e6).exp())].into();
            w.append(&Event::Eval { step, split: "val".into(), metrics: val }).unwrap();
            written += 1;
        }
        if step.is_multiple_of(100_000) && written < n {
            w.append(&Event::Signal {
                step,
                detector: "plateau".into(),
                metric: "train_loss".into(),
                score: 1.0,
                message: "flat".into(),
                figures: Default::default(),
            })
            .unwrap();
            written += 1;
        }
        w.flush_if_due().unwrap();
    }
    w.flush().unwrap();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("replay benchmark: run it with `cargo bench --bench replay`");
        return;
    }
    // The record count is the first argument that is a number: cargo puts its own
    // `--bench` after the arguments given after `--`.
    let n: u64 = std::env::args().skip(1).find_map(|a| a.replace(['_', ','], "").parse().ok()).unwrap_or(10_000_000);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let t = Instant::now();
    write_log(&log, n);
    let bytes = std::fs::metadata(&log).unwrap().len();
    println!("replay bench: {n} records, {:.0} MB, written in {:.1} s", bytes as f64 / 1e6, t.elapsed().as_secs_f64());

    let layout = Layout::parse("default", "default", SHIPPED.iter().find(|(n, _)| *n == "default").unwrap().1).unwrap();
    let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();

    // Open → first frame, as `phasetop replay` without --from.
    let t = Instant::now();
    let mut player = Player::open(Source::File(log.clone()), None);
    let mut view = RunView::default();
    player.speed = 5;
    player.tick(&mut view, 0.1);
    let keymap = Keymap::new(&Default::default()).unwrap();
    let mut app = App::new(view, keymap, Theme::new(ThemeKind::Default), layout, "layouts".into(), Box::new(Nowhere));
    app.player = Some(player);
    term.draw(|f| phasetop::ui::render::draw(f, &app)).unwrap();
    let first = t.elapsed().as_secs_f64();
    println!("  open → first frame            {:>8.1} ms   (target ≤ 1000 ms)", first * 1e3);

    let p = app.player.as_mut().unwrap();
    p.index().wait_done();
    let built = t.elapsed().as_secs_f64();
    let (snaps, every, events, max_step, snap_bytes) = {
        let s = p.index().state();
        let b: usize = s.snapshots.iter().map(|x| x.bytes).sum();
        (s.snapshots.len(), s.every, s.events, s.max_step, b)
    };
    println!(
        "  index built (background)      {built:>8.1} s    = {:.2} M events/s; {snaps} snapshots every {every} events, ~{} MB",
        events as f64 / built / 1e6,
        snap_bytes >> 20
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let seeks: Vec<u64> = (0..30).map(|_| rng.random_range(0..=max_step)).collect();
    let fresh = seek_times(&mut app, &mut term, &seeks);
    report("seek to a random step + frame", &fresh);

    // The index file (`events.idx`) written once the index was complete.
    let t = Instant::now();
    while !app.player.as_ref().unwrap().index().state().settled {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let saved = app.player.as_ref().unwrap().index().state().saved.clone();
    let idx = log.with_file_name(phasetop::ui::model::index_file::FILE);
    let idx_bytes = std::fs::metadata(&idx).map(|m| m.len()).unwrap_or(0);
    println!(
        "  index file written             {saved:?}, {} MB ({:.0} % of the log), waited {:.1} s more after the seeks",
        idx_bytes >> 20,
        idx_bytes as f64 * 100.0 / bytes as f64,
        t.elapsed().as_secs_f64()
    );
    drop(app);

    // Reopened: as `phasetop replay` of the same run again.
    let layout = Layout::parse("default", "default", SHIPPED.iter().find(|(n, _)| *n == "default").unwrap().1).unwrap();
    let t = Instant::now();
    let mut player = Player::open(Source::File(log.clone()), None);
    let mut view = RunView::default();
    player.speed = 5;
    player.tick(&mut view, 0.1);
    let keymap = Keymap::new(&Default::default()).unwrap();
    let mut app = App::new(view, keymap, Theme::new(ThemeKind::Default), layout, "layouts".into(), Box::new(Nowhere));
    app.player = Some(player);
    term.draw(|f| phasetop::ui::render::draw(f, &app)).unwrap();
    let reopened_first = t.elapsed().as_secs_f64();
    let loaded = loop {
        let s = app.player.as_ref().unwrap().index().state();
        if s.file != phasetop::ui::model::replay_index::IndexFile::Absent || s.done {
            break (s.file.clone(), t.elapsed().as_secs_f64(), s.snapshots.len());
        }
        drop(s);
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    // Seeks from the first second on, as the target says.
    if let Some(wait) = std::time::Duration::from_secs(1).checked_sub(t.elapsed()) {
        std::thread::sleep(wait);
    }
    let reopened = seek_times(&mut app, &mut term, &seeks);
    println!("reopened (events.idx next to the log), side by side with the first open:");
    println!(
        "  open → first frame            {:>8.1} ms   (first open {:.1} ms; target ≤ 1000 ms)",
        reopened_first * 1e3,
        first * 1e3
    );
    println!(
        "  index ready                   {:>8.2} s    ({:?}, {} snapshots; first open: {built:.1} s, {:.0}× sooner)",
        loaded.1,
        loaded.0,
        loaded.2,
        built / loaded.1
    );
    report("seek from the first second", &reopened);
    drop(app);
    formats(n.min(2_000_000));
}

/// The same log as JSON step records (schema ≤ 1.3) and as compact ones (1.4), side by
/// side: open → first frame, index build, seeks.
fn formats(n: u64) {
    println!("old (JSON steps) vs new (compact steps), {n} records each:");
    let mut rows = Vec::new();
    for compact in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("events.log");
        write_log_as(&log, n, compact);
        let bytes = std::fs::metadata(&log).unwrap().len();
        let layout =
            Layout::parse("default", "default", SHIPPED.iter().find(|(n, _)| *n == "default").unwrap().1).unwrap();
        let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
        let t = Instant::now();
        let mut player = Player::open(Source::File(log.clone()), None);
        let mut view = RunView::default();
        player.speed = 5;
        player.tick(&mut view, 0.1);
        let keymap = Keymap::new(&Default::default()).unwrap();
        let mut app =
            App::new(view, keymap, Theme::new(ThemeKind::Default), layout, "layouts".into(), Box::new(Nowhere));
        app.player = Some(player);
        term.draw(|f| phasetop::ui::render::draw(f, &app)).unwrap();
        let first = t.elapsed().as_secs_f64() * 1e3;
        app.player.as_mut().unwrap().index().wait_done();
        let built = t.elapsed().as_secs_f64();
        let max_step = app.player.as_ref().unwrap().index().state().max_step;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let seeks: Vec<u64> = (0..30).map(|_| rng.random_range(0..=max_step)).collect();
        let mut times = seek_times(&mut app, &mut term, &seeks);
        times.sort_by(f64::total_cmp);
        rows.push((bytes, first, built, times[times.len() / 2], times[times.len() * 9 / 10]));
    }
    for (name, (bytes, first, built, median, p90)) in ["old", "new"].iter().zip(&rows) {
        println!(
            "  {name}: {:>6.0} MB  open → first frame {first:>6.1} ms  index built {built:>5.2} s  seek median {median:.1} ms, p90 {p90:.1} ms",
            *bytes as f64 / 1e6
        );
    }
    let (o, n) = (&rows[0], &rows[1]);
    println!(
        "  new/old: bytes {:.2}×, first frame {:.2}×, index build {:.2}×, seek median {:.2}×",
        n.0 as f64 / o.0 as f64,
        n.1 / o.1,
        n.2 / o.2,
        n.3 / o.3
    );
}

fn seek_times(app: &mut App, term: &mut Terminal<TestBackend>, steps: &[u64]) -> Vec<f64> {
    let mut times = Vec::new();
    for &step in steps {
        let t = Instant::now();
        let p = app.player.as_mut().unwrap();
        p.seek_step(&mut app.view, step);
        term.draw(|f| phasetop::ui::render::draw(f, app)).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(app.view.step, step, "landed on the step");
    }
    times
}

fn report(what: &str, times: &[f64]) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  {what:<30} median {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} seeks   (target ≤ 50 ms)",
        sorted[sorted.len() / 2],
        sorted[sorted.len() * 9 / 10],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}
