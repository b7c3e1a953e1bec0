//! Replay: the index (seeks equal fresh folds on a long log), damaged logs, following a
//! growing log, and comparing runs (snapshots at 80×24 and 160×48).

mod common;

use common::screen;
use phasetop::config;
use phasetop::event::{Event, Metrics, PhaseCause, RunStatus};
use phasetop::runlog::Writer;
use phasetop::ui::app::App;
use phasetop::ui::model::replay_index::{IndexFile, Source};
use phasetop::ui::model::state::RunView;
use phasetop::ui::player::compare::{Compare, Other};
use phasetop::ui::player::replay::{Player, SPEEDS};
use phasetop::ui::theme::ThemeKind;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn started(run_id: &str, resumed_from_step: Option<u64>) -> Event {
    let cfg = config::parse("configs/grokking.toml", include_str!("../configs/grokking.toml")).unwrap();
    Event::RunStarted {
        run_id: run_id.into(),
        schema_major: 1,
        schema_minor: 0,
        config_name: "grokking".into(),
        config: serde_json::to_value(&cfg).unwrap(),
        phases: cfg.phase_names(),
        device: "cpu".into(),
        seed: 0,
        started_at: 1_795_000_000.0,
        resumed_from_step,
        parent_run: None,
        branch_step: None,
    }
}

/// A run of `steps` steps whose loss decays at `rate`; evals, probes, signals and a
/// phase change on the way; with `resume_at`, it is resumed from step `resume_at.0`
/// after reaching `resume_at.1` (the log then holds superseded steps).
fn run_events(run_id: &str, steps: u64, rate: f64, resume_at: Option<(u64, u64)>) -> Vec<Event> {
    let mut ev = vec![started(run_id, None)];
    ev.push(Event::PhaseChanged { step: 0, from: None, to: "memorize".into(), cause: PhaseCause::Start, detail: None });
    let switch = steps * 4 / 5;
    let mut step = 1;
    let mut resumed = false;
    while step <= steps {
        let s = step as f64;
        let m: Metrics = [
            ("train_loss".to_string(), 4.0 * (-s * rate).exp() + 0.01 + 0.02 * (s * 0.37).sin()),
            ("train_acc".to_string(), 1.0 - (-s * rate).exp()),
            ("lr".to_string(), 0.001),
            ("steps_per_s".to_string(), 400.0),
        ]
        .into();
        ev.push(Event::Step { step, phase: "memorize".into(), t: 1_795_000_000.0 + s / 400.0, metrics: m });
        if step % 50 == 0 {
            let acc = 1.0 / (1.0 + (-(s - steps as f64 * 0.6) / 80.0).exp());
            ev.push(Event::Eval {
                step,
                split: "val".into(),
                metrics: [("val_loss".to_string(), 4.5 - 4.0 * acc), ("val_acc".to_string(), acc)].into(),
            });
        }
        if step % 100 == 0 {
            ev.push(Event::Probe {
                step,
                layer: "embed".into(),
                metrics: [("eff_rank".to_string(), 40.0 - s / 1e3)].into(),
            });
        }
        if step % 997 == 0 {
            ev.push(Event::Signal {
                step,
                detector: "plateau".into(),
                metric: "train_loss".into(),
                score: 1.0,
                message: format!("flat at {step}"),
                figures: Default::default(),
            });
        }
        if step == switch {
            ev.push(Event::PhaseChanged {
                step,
                from: Some("memorize".into()),
                to: "consolidate".into(),
                cause: PhaseCause::Manual,
                detail: None,
            });
        }
        if let Some((from, at)) = resume_at
            && step == at
            && !resumed
        {
            resumed = true;
            ev.push(started(run_id, Some(from)));
            step = from;
        }
        step += 1;
    }
    ev.push(Event::RunEnded { step: steps, status: RunStatus::Completed, message: "done".into() });
    ev
}

/// What a seek to `step` must equal: the fold of every event before the first whose
/// step is past it.
fn fold_to_step(events: &[Event], step: u64) -> RunView {
    let end = events.iter().position(|e| e.step().is_some_and(|s| s > step)).unwrap_or(events.len());
    RunView::from_events(&events[..end])
}

fn assert_same(a: &RunView, b: &RunView, what: &str) {
    assert_eq!(a.step, b.step, "{what}");
    assert_eq!(a.events_seen, b.events_seen, "{what}");
    assert_eq!(a.phases, b.phases, "{what}");
    assert_eq!(a.signals, b.signals, "{what}");
    assert_eq!(a.markers, b.markers, "{what}");
    assert_eq!(a.checkpoints, b.checkpoints, "{what}");
    assert_eq!(a.log, b.log, "{what}");
    assert_eq!(a.ended, b.ended, "{what}");
    assert_eq!(a.series.keys().collect::<Vec<_>>(), b.series.keys().collect::<Vec<_>>(), "{what}");
    for (k, s) in &a.series {
        let o = &b.series[k];
        assert_eq!(s.last(), o.last(), "{what}: {k}");
        assert_eq!(s.points_seen(), o.points_seen(), "{what}: {k}");
        let to = a.step.max(2);
        assert_eq!(s.columns(1, to, 97), o.columns(1, to, 97), "{what}: {k} columns");
    }
}

fn app_with(view: RunView, layout: &str, theme: ThemeKind) -> App {
    struct Nowhere;
    impl phasetop::ui::app::CommandSink for Nowhere {
        fn send(&mut self, _: &phasetop::event::Command) -> Result<phasetop::control::Reply, String> {
            Err("replay".into())
        }
    }
    common::app(view, layout, theme, Box::new(Nowhere))
}

#[test]
fn index_seeks_to_random_steps_equal_fresh_folds() {
    // 20 000 steps with a resume in the middle (steps go back), indexed with a budget
    // small enough that the snapshots are thinned several times.
    let events = run_events("long", 20_000, 1.0 / 3000.0, Some((9_000, 12_000)));
    let mut p = Player::with_budget(Source::from_events(&events), None, 3 << 20);
    p.index().wait_done();
    {
        let s = p.index().state();
        assert_eq!(s.events, events.len() as u64);
        assert!(s.every > 4096, "budget forces thinning, every = {}", s.every);
        assert!(s.snapshots.len() >= 2, "{}", s.snapshots.len());
    }
    let mut view = RunView::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut steps: Vec<u64> = (0..14).map(|_| rng.random_range(0..=20_000u64)).collect();
    steps.extend([20_000, 0, 11_999, 9_000, 9_001, 12_000, 1]);
    for step in steps {
        p.seek_step(&mut view, step);
        assert_same(&view, &fold_to_step(&events, step), &format!("seek_step {step}"));
    }
    for _ in 0..6 {
        let i = rng.random_range(0..=events.len());
        p.seek(&mut view, i as u64);
        assert_same(&view, &RunView::from_events(&events[..i]), &format!("seek {i}"));
    }
    // Played to the end at full speed: the same as folding everything.
    p.seek(&mut view, 0);
    p.speed = SPEEDS.len() - 1;
    p.playing = true;
    while p.tick(&mut view, 0.1) {}
    assert_same(&view, &RunView::from_events(&events), "played to the end");
    assert!(!p.playing, "a finished log ends the playback");
}

/// A goto past what the background index has reached waits for it (the screen keeps
/// drawing) and then lands where a fresh fold does.
#[test]
fn a_goto_past_the_index_waits_for_it_then_lands_exactly() {
    let events = run_events("long", 60_000, 1.0 / 3000.0, None);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("events.log");
    write_log(&log, &events);
    let mut p = Player::open(Source::File(log), None);
    let mut view = RunView::default();
    let target = 59_000;
    let now = p.goto_step(&mut view, target);
    assert_eq!(p.pending_seek.is_some(), !now);
    if !now {
        assert!(view.step < target, "nothing folded while waiting");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while p.pending_seek.is_some() {
        assert!(std::time::Instant::now() < deadline, "the index never reached step {target}");
        p.tick(&mut view, 0.1);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_same(&view, &fold_to_step(&events, target), "goto after indexing");
    // `G` on a fresh player over the same log: the end of the log, not of what was indexed.
    let tmp_log = tmp.path().join("events.log");
    let mut p = Player::open(Source::File(tmp_log), None);
    let mut view = RunView::default();
    p.playing = false;
    p.goto_end(&mut view);
    while p.pending_seek.is_some() {
        assert!(std::time::Instant::now() < deadline, "the index never finished");
        p.tick(&mut view, 0.1);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_same(&view, &RunView::from_events(&events), "G");
}

/// A real training run, followed while it writes the way the live dashboard follows it
/// (`Tail` polls folded into a `RunView`), then replayed from its log by the player: the
/// two end in the same state and draw the same screen.
/// Needs the trainer (a real headless run); the rest of this file runs in the viewer flavour.
#[cfg(feature = "trainer")]
#[test]
fn replaying_a_real_run_ends_where_its_live_dashboard_did() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("real.toml");
    std::fs::write(
        &cfg,
        "[run]\nname='real'\nseed=5\nmax_steps=300\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=512\nn_val=128\n[model]\nkind='mlp'\ndepth=2\nwidth=32\n\
         [probes]\nevery=50\nlayers=['mlp.1']\nbatch=64\n[eval]\nevery=20\n[checkpoint]\nevery=100\n\
         [[phase]]\nname='warm'\nsteps=120\noptimizer='adam'\nlr=0.01\nbatch_size=32\n\
         [[phase]]\nname='main'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n",
    )
    .unwrap();
    let run = tmp.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phasetop"))
        .args(["train", "--headless", "--run-dir"])
        .arg(&run)
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = run.join("events.log");
    let mut live = RunView::default();
    let mut tail = phasetop::runlog::Tail::new(&log);
    let mut polls = 0;
    loop {
        let done = child.try_wait().unwrap().is_some();
        for r in tail.poll().unwrap() {
            live.apply(&r.event);
        }
        polls += 1;
        if done {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(live.ended, Some(RunStatus::Completed), "followed to the end over {polls} polls");
    assert_eq!(live.phases.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["warm", "main"]);

    let mut p = Player::open(Source::File(log), None);
    p.index().wait_done();
    p.speed = SPEEDS.len() - 1;
    p.playing = true;
    let mut replayed = RunView::default();
    while p.tick(&mut replayed, 0.1) {}
    assert_same(&replayed, &live, "replay vs live");
    for (w, h) in [(160, 48), (80, 24)] {
        let a = screen(&app_with(replayed.clone(), "default", ThemeKind::Default), w, h);
        let b = screen(&app_with(live.clone(), "default", ThemeKind::Default), w, h);
        assert_eq!(a, b, "{w}x{h}");
    }
}

#[test]
fn phase_and_signal_jumps_use_the_index() {
    use phasetop::ui::model::replay_index::MarkKind;
    let events = run_events("marks", 3000, 1e-3, None);
    let mut p = Player::new(events.clone());
    let mut view = RunView::default();
    let i = p.find(true, MarkKind::Phase).unwrap();
    p.seek(&mut view, i);
    assert!(matches!(events[i as usize - 1], Event::PhaseChanged { step: 0, .. }));
    let i = p.find(true, MarkKind::Phase).unwrap();
    p.seek(&mut view, i);
    assert_eq!(view.current_phase().unwrap().name, "consolidate");
    let back = p.find(false, MarkKind::Signal).unwrap();
    p.seek(&mut view, back);
    assert_eq!(view.signals.last().unwrap().last_step, 1994, "the newest firing (folded into its episode's row)");
}

fn write_log(path: &std::path::Path, events: &[Event]) {
    let mut w = Writer::create(path).unwrap();
    for e in events {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn a_damaged_log_replays_up_to_the_damage_and_says_what_was_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let events = run_events("crashed", 2000, 1e-3, None);
    let events = &events[..events.len() - 1]; // it never ended
    write_log(&log, events);
    let mut bytes = std::fs::read(&log).unwrap();
    let good_len = bytes.len() as u64;
    // A flipped byte in the middle (one record lost), and a torn record at the end.
    let records = phasetop::runlog::read_bytes(&bytes).unwrap().records;
    let victim = records[1000].offset as usize + 20;
    bytes[victim] ^= 0x55;
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']);
    std::fs::write(&log, &bytes).unwrap();

    let mut p = Player::open(Source::File(log.clone()), None);
    p.index().wait_done();
    let notice = p.damage_notice().expect("damage is reported");
    assert!(notice.contains("offset") && notice.contains(&records[1000].offset.to_string()), "{notice}");
    assert!(notice.contains(&format!("10 unreadable bytes at offset {good_len}")), "{notice}");
    let kept: Vec<Event> =
        records.iter().enumerate().filter(|(i, _)| *i != 1000).map(|(_, r)| r.event.clone()).collect();
    let mut view = RunView::default();
    p.seek(&mut view, u64::MAX);
    assert_same(&view, &RunView::from_events(&kept), "to the damage");
    p.seek_step(&mut view, 500);
    assert_same(&view, &fold_to_step(&kept, 500), "seek before the damage");

    let mut app = app_with(view, "compact", ThemeKind::Default);
    app.player = Some(p);
    let s = screen(&app, 160, 48);
    let header = s.lines().next().unwrap();
    assert!(header.contains("⚠") && header.contains("torn tail 10 B"), "{header}");
}

#[test]
fn a_live_log_is_followed_and_the_player_waits_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let events = run_events("live", 600, 1e-3, None);
    let (first, rest) = events.split_at(300);
    let mut w = Writer::create(&log).unwrap();
    for e in first {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    let live = Arc::new(AtomicBool::new(true));
    let l = live.clone();
    let mut p = Player::open(Source::File(log.clone()), Some(Box::new(move || l.load(Ordering::Relaxed))));
    p.speed = SPEEDS.len() - 1;
    let mut view = RunView::default();
    let wait_for = |p: &mut Player, view: &mut RunView, n: usize| {
        let t0 = Instant::now();
        while view.events_seen < n as u64 {
            p.tick(view, 0.1);
            assert!(t0.elapsed() < Duration::from_secs(10), "stuck at {} of {n}", view.events_seen);
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(&mut p, &mut view, first.len());
    let t0 = Instant::now();
    while !p.following() {
        assert!(t0.elapsed() < Duration::from_secs(10), "the index never reached the live end");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..5 {
        p.tick(&mut view, 0.1);
    }
    assert!(
        p.playing && p.following(),
        "at the end of a live log the player waits: playing {} following {} done {}",
        p.playing,
        p.following(),
        p.index().state().done
    );
    let mut app = app_with(view.clone(), "compact", ThemeKind::Default);
    app.player = Some(p);
    assert!(screen(&app, 80, 24).lines().next().unwrap().contains("+live"));
    let mut p = app.player.take().unwrap();
    for e in rest {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    live.store(false, Ordering::Relaxed);
    wait_for(&mut p, &mut view, events.len());
    assert_same(&view, &RunView::from_events(&events), "followed to the end");
    let t0 = Instant::now();
    while p.following() || p.tick(&mut view, 0.1) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    p.tick(&mut view, 0.1);
    assert!(!p.playing, "an ended log ends the playback");
}

/// Events up to and including the last one at or before training step `step` (what a
/// live run has written when it reached `step`).
fn up_to(events: &[Event], step: u64) -> usize {
    events.iter().position(|e| e.step().is_some_and(|s| s > step)).unwrap_or(events.len())
}

/// Ticks until `done`, failing after 10 s.
fn tick_until(p: &mut Player, view: &mut RunView, what: &str, done: impl Fn(&Player, &RunView) -> bool) {
    let t0 = Instant::now();
    while !done(p, view) {
        p.tick(view, 0.1);
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: stuck at step {}", view.step);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_live_attach_is_a_player_whose_log_grows_and_its_history_can_be_visited() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut events = run_events("growing", 3000, 1.0 / 300.0, None);
    events.pop(); // still running: no run_ended
    // The run has reached step 2600 (past its phase change at 2400) when the dashboard attaches.
    let mut written = up_to(&events, 2600);
    let mut w = Writer::create(&log).unwrap();
    let write_to = |w: &mut Writer, written: &mut usize, step: u64| {
        let end = up_to(&events, step);
        for e in &events[*written..end] {
            w.append(e).unwrap();
        }
        w.flush().unwrap();
        *written = end;
    };
    write_to(&mut w, &mut 0, 2600);
    let mut view = RunView::default();
    let mut p = Player::attach(&log, Box::new(|| true), &mut view).unwrap();
    assert_same(&view, &RunView::from_events(&events[..written]), "attached: the whole log folded");
    assert!(p.at_live_end() && p.is_live());
    assert!(!p.index().started(), "no index (a second fold, snapshots) until the view leaves the live end");

    // Following: what the run appends is folded into the view.
    write_to(&mut w, &mut written, 2800);
    let new = p.poll_live(&mut view).unwrap();
    assert_eq!(new.len(), written - up_to(&events, 2600));
    assert_eq!(view.step, 2800);
    assert!(!p.tick(&mut view, 0.1), "at the live end the view moves only with the log");

    // `:goto 1000`: into history, once the index (started now) reaches it; the live fold
    // is kept aside and goes on growing.
    p.goto_step(&mut view, 1000);
    assert!(p.index().started() && !p.at_live_end());
    tick_until(&mut p, &mut view, "goto 1000", |p, _| p.pending_seek.is_none());
    assert_same(&view, &fold_to_step(&events, 1000), "history at 1000");
    write_to(&mut w, &mut written, 2900);
    assert!(!p.poll_live(&mut view).unwrap().is_empty());
    assert_eq!(view.step, 1000, "the history view stays where it was put");
    assert_same(p.live_view().unwrap(), &RunView::from_events(&events[..written]), "the live fold, aside");
    assert_eq!(p.live_step(&view), Some(2900));

    // `]` then `[`: the phase change at 2400, from either side.
    use phasetop::ui::model::replay_index::MarkKind;
    use phasetop::ui::player::replay::Jump;
    tick_until(&mut p, &mut view, "index to the live end", |p, _| p.following());
    assert_eq!(p.jump(&mut view, true, MarkKind::Phase), Jump::Moved);
    assert_eq!((view.step, view.current_phase().unwrap().name.as_str()), (2400, "consolidate"));
    p.goto_step(&mut view, 2700);
    tick_until(&mut p, &mut view, "goto 2700", |p, _| p.pending_seek.is_none());
    assert_eq!(p.jump(&mut view, false, MarkKind::Phase), Jump::Moved);
    assert_eq!((view.step, view.current_phase().unwrap().name.as_str()), (2400, "consolidate"));
    assert_eq!(p.jump(&mut view, false, MarkKind::Phase), Jump::Moved);
    assert_eq!((view.step, view.current_phase().unwrap().name.as_str()), (0, "memorize"));

    // `G`: the live end again, at once (the live fold was kept, not refolded).
    p.follow_live(&mut view);
    assert!(p.at_live_end() && p.live_view().is_none());
    assert_same(&view, &RunView::from_events(&events[..written]), "back at the live end");

    // `[` from the live end finds the last phase change before it; playing history on
    // catches up with the live end and follows it.
    assert_eq!(p.jump(&mut view, false, MarkKind::Phase), Jump::Moved);
    assert_eq!(view.step, 2400);
    p.goto_step(&mut view, 2880);
    tick_until(&mut p, &mut view, "goto 2880", |p, _| p.pending_seek.is_none());
    write_to(&mut w, &mut written, 2950);
    p.poll_live(&mut view).unwrap();
    p.speed = SPEEDS.len() - 1;
    p.playing = true;
    tick_until(&mut p, &mut view, "play to the live end", |p, _| p.at_live_end());
    p.poll_live(&mut view).unwrap();
    assert_same(&view, &RunView::from_events(&events[..written]), "played back to the live end");
    // A `:goto` past the newest step follows the live end.
    p.goto_step(&mut view, 2000);
    assert!(p.goto_step(&mut view, 10_000) && p.at_live_end());
    assert_eq!(view.step, 2950);
}

#[test]
fn live_controls_act_on_the_live_run_while_the_view_is_in_its_history() {
    use phasetop::event::Command;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};
    use std::sync::Mutex;
    struct Record(Arc<Mutex<Vec<Command>>>);
    impl phasetop::ui::app::CommandSink for Record {
        fn send(&mut self, c: &Command) -> Result<phasetop::control::Reply, String> {
            self.0.lock().unwrap().push(c.clone());
            Ok(phasetop::control::Reply { ok: true, step: 2900, message: "ok".into() })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let mut events = run_events("growing", 3000, 1.0 / 300.0, None);
    events.pop();
    write_log(&log, &events[..up_to(&events, 2900)]);
    let mut view = RunView::default();
    let p = Player::attach(&log, Box::new(|| true), &mut view).unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut app = common::app(view, "default", ThemeKind::Default, Box::new(Record(sent.clone())));
    app.player = Some(p);
    let header = |app: &App| screen(app, 160, 48).lines().next().unwrap().to_string();
    assert!(header(&app).contains("LIVE") && !header(&app).contains("HISTORY"), "{}", header(&app));

    app.run_command_line("goto 1200");
    let t0 = Instant::now();
    while app.player.as_ref().unwrap().pending_seek.is_some() {
        app.player.as_mut().unwrap().tick(&mut app.view, 0.1);
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(app.view.step, 1200);
    let h = header(&app);
    assert!(h.contains("HISTORY") && h.contains("live at step 2 900") && h.contains("G back to live"), "{h}");
    assert!(h.contains("step 1 200"), "the header's step is the view's: {h}");
    assert!(h.contains("memorize"), "the view's phase, not the live run's: {h}");
    // The run's controls still act on the live run (its phase, its suggestion).
    assert!(app.is_live());
    app.on_key(KeyEvent::from(KeyCode::Char('p')));
    assert_eq!(sent.lock().unwrap().last(), Some(&Command::Pause));
    app.on_key(KeyEvent::from(KeyCode::Char('s')));
    let phase_mode = format!("{:?}", app.mode);
    assert!(phase_mode.contains("PhasePicker"), "{phase_mode}");
    app.on_key(KeyEvent::from(KeyCode::Esc));
    // The transport keys are in the help of a live run, from the keymap.
    app.on_key(KeyEvent::from(KeyCode::Char('?')));
    let help = screen(&app, 160, 48);
    assert!(help.contains("transport: replay, a live run's history") && help.contains("previous phase change"));
    app.on_key(KeyEvent::from(KeyCode::Esc));
    // `G`: following again.
    app.on_key(KeyEvent::from(KeyCode::Char('G')));
    assert!(app.player.as_ref().unwrap().at_live_end());
    assert_eq!(app.view.step, 2900);
    assert!(!header(&app).contains("HISTORY"));
}

#[test]
fn the_watch_wakes_on_appends_with_notify_and_by_polling() {
    use phasetop::ui::model::follow::Watch;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"a").unwrap();
    let stop = AtomicBool::new(false);
    for mut w in [Watch::new(&path), Watch::polling(&path)] {
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            use std::io::Write;
            std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(b"more").unwrap();
        });
        let t0 = Instant::now();
        // Woken by the append, long before the wait's own limit (however busy the machine).
        w.wait(Duration::from_secs(60), &stop);
        assert!(t0.elapsed() < Duration::from_secs(30), "notify={} took {:?}", w.uses_notify(), t0.elapsed());
        writer.join().unwrap();
    }
}

/// Two runs compared at step 2600: the second learns faster and is still in its first phase.
fn comparison(theme: ThemeKind) -> App {
    let a = run_events("grokking-a", 3000, 1.0 / 300.0, None);
    let b = run_events("grokking-b", 3400, 1.0 / 150.0, None);
    let mut p = Player::new(a);
    let mut view = RunView::default();
    p.seek_step(&mut view, 2600);
    let other = Other { name: "run-b".into(), view: RunView::default(), player: Player::new(b) };
    let mut app = app_with(view, "default", theme);
    app.player = Some(p);
    app.player.as_mut().unwrap().playing = false;
    app.compare = Some(Compare::new("run-a".into(), vec![other]));
    app.sync_compare();
    app
}

#[test]
fn comparing_two_runs_at_two_sizes() {
    let app = comparison(ThemeKind::Default);
    assert_eq!(app.compare.as_ref().unwrap().others[0].view.step, 2600, "aligned by step");
    for (w, h) in [(80, 24), (160, 48)] {
        insta::assert_snapshot!(format!("compare_{w}x{h}"), screen(&app, w, h));
    }
}

#[test]
fn the_legend_names_every_run_and_bands_toggle() {
    for theme in [ThemeKind::Default, ThemeKind::Mono] {
        let mut app = comparison(theme);
        let s = screen(&app, 160, 48);
        let loss_title = s.lines().find(|l| l.contains("loss")).unwrap();
        assert!(loss_title.contains("run-a") && loss_title.contains("run-b"), "{theme:?}: {loss_title}");
        if theme == ThemeKind::Mono {
            // Without colour the runs differ by their legend glyph (and chart marker).
            assert!(loss_title.contains("━ run-a") && loss_title.contains("• run-b"), "{loss_title}");
        }
        // `b` cycles: run-a only, run-b only, none, all.
        let key = |c| ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(c));
        let bands_of = |app: &App| app.compare.as_ref().unwrap().bands.clone();
        assert_eq!(bands_of(&app), vec![true, true]);
        for want in [vec![true, false], vec![false, true], vec![false, false], vec![true, true]] {
            app.on_key(key('b'));
            assert_eq!(bands_of(&app), want);
        }
    }
    // The help overlay lists the key (one table drives dispatch and help).
    let mut app = comparison(ThemeKind::Default);
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('?')));
    assert!(screen(&app, 160, 48).contains("phase bands"));
}

#[test]
fn the_transport_moves_every_compared_run() {
    let mut app = comparison(ThemeKind::Default);
    let key = |c| ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(c));
    app.on_key(key('g'));
    assert_eq!(app.compare.as_ref().unwrap().others[0].view.step, 0);
    app.run_command_line("goto 1500");
    let b = run_events("grokking-b", 3400, 1.0 / 150.0, None);
    assert_same(&app.compare.as_ref().unwrap().others[0].view, &fold_to_step(&b, 1500), "other run at 1500");
    let table = phasetop::ui::player::compare::comparison_table(
        &["run-a".into(), "run-b".into()],
        &[&app.view, &app.compare.as_ref().unwrap().others[0].view],
    );
    assert!(table.lines().next().unwrap().contains("run-b") && table.contains("train_loss"), "{table}");
}

/// A single-run replay paused at `step`, in ascii glyphs (and mono theme) when asked.
fn single(step: u64, ascii: bool, theme: ThemeKind) -> App {
    let mut p = Player::new(run_events("grokking-a", 3000, 1.0 / 300.0, None));
    let mut view = RunView::default();
    p.seek_step(&mut view, step);
    p.playing = false;
    let mut app = app_with(view, "default", theme);
    app.player = Some(p);
    app.ascii = ascii;
    app
}

/// The scrubber's cells: the first half of the footer line.
fn bar(app: &App, w: u16, h: u16) -> Vec<char> {
    let s = screen(app, w, h);
    let footer = s.lines().last().unwrap().to_string();
    footer.chars().take(w as usize / 2).collect()
}

#[test]
fn the_scrubber_marker_moves_with_seeks_and_ticks_mark_phases_and_signals() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    for (ascii, theme) in [(true, ThemeKind::Mono), (false, ThemeKind::Default)] {
        let here = phasetop::ui::render::scrubber_glyphs(ascii)[4];
        let mut app = single(1500, ascii, theme);
        app.on_key(KeyEvent::from(KeyCode::Char('g')));
        let b = bar(&app, 80, 24);
        assert_eq!(b.len(), 40);
        assert_eq!(b.iter().position(|&c| c == here), Some(0), "at 0 %: {b:?}");
        app.on_key(KeyEvent::from(KeyCode::Char('G')));
        let b = bar(&app, 80, 24);
        assert_eq!(b.iter().position(|&c| c == here), Some(39), "at the end: {b:?}");
        assert_eq!(b.iter().filter(|&&c| c == here).count(), 1);
        // Phase-change ticks (step 0 is under the marker at the start; 2400 shows) and
        // signal ticks (every 997 steps).
        let [_, _, phase, signal, _] = phasetop::ui::render::scrubber_glyphs(ascii);
        assert!(b.contains(&phase) && b.contains(&signal), "{b:?}");
        // `(` jumps back 1/20 of the run (3000 steps: 150), ctrl+left the same.
        app.on_key(KeyEvent::from(KeyCode::Char('(')));
        assert_eq!(app.view.step, 2850);
        app.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::CONTROL));
        assert_eq!(app.view.step, 2700);
        app.on_key(KeyEvent::from(KeyCode::Char(')')));
        assert_eq!(app.view.step, 2850);
        let b = bar(&app, 80, 24);
        assert_eq!(b.iter().position(|&c| c == here), Some(37), "{b:?}");
    }
    // A view without a log has no scrubber: its footer is the key hints.
    let mut live = single(1500, true, ThemeKind::Mono);
    live.player = None;
    let s = screen(&live, 80, 24);
    assert!(s.lines().last().unwrap().starts_with(" ? help"), "{s}");
    live.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(')')));
    assert!(live.status.get().is_some_and(|s| s.1), "scrubbing needs a log");
}

#[test]
fn the_scrubber_in_ascii_and_mono() {
    let app = single(1800, true, ThemeKind::Mono);
    insta::assert_snapshot!("scrubber_ascii_mono_80x24", screen(&app, 80, 24));
}

/// Steps whose recorded times are wildly irregular: bursts a millisecond apart, then
/// gaps of minutes.
fn irregular_events() -> Vec<Event> {
    let mut ev = vec![started("irregular", None)];
    let mut t = 1_795_000_000.0;
    for step in 1..=2000u64 {
        t += match step % 7 {
            0 => 300.0,
            3 => 2.5,
            _ => 0.001,
        };
        let m: Metrics = [("train_loss".to_string(), 1.0 / step as f64)].into();
        ev.push(Event::Step { step, phase: "memorize".into(), t, metrics: m });
        if step % 10 == 0 {
            let m = [("val_loss".to_string(), 1.0)].into();
            ev.push(Event::Eval { step, split: "val".into(), metrics: m });
        }
    }
    ev
}

#[test]
fn uniform_pacing_plays_a_fixed_number_of_steps_per_tick() {
    let speed = |x: f64| SPEEDS.iter().position(|&s| s == x).unwrap();
    for (x, per_tick) in [(1.0, 1), (10.0, 10), (30.0, 30)] {
        let mut p = Player::new(irregular_events());
        let mut view = RunView::default();
        p.speed = speed(x);
        p.set_uniform(true);
        assert_eq!(p.speed_label(), format!("{} steps/s", x * 10.0));
        let mut last = view.step;
        for tick in 0..40 {
            p.tick(&mut view, 0.1);
            assert_eq!(view.step - last, per_tick, "speed {x}× tick {tick}");
            last = view.step;
        }
    }
    // A quarter speed: 2.5 steps a second, the fractions carried from tick to tick.
    let mut p = Player::new(irregular_events());
    let mut view = RunView::default();
    p.speed = speed(0.25);
    p.set_uniform(true);
    for _ in 0..40 {
        p.tick(&mut view, 0.1);
    }
    assert_eq!(view.step, 10);
    // Recorded pacing on the same log is not uniform (the gaps of minutes are skipped to
    // a second each, the bursts play at once); `u` toggles between the two.
    let mut app = app_with(RunView::default(), "default", ThemeKind::Default);
    let mut p = Player::new(irregular_events());
    p.speed = speed(10.0);
    app.player = Some(p);
    let mut steps = Vec::new();
    for _ in 0..20 {
        let before = app.view.step;
        app.player.as_mut().unwrap().tick(&mut app.view, 0.1);
        steps.push(app.view.step - before);
    }
    assert!(steps.iter().any(|&n| n != steps[0]), "{steps:?}");
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('u')));
    assert!(app.player.as_ref().unwrap().uniform);
    let before = app.view.step;
    app.player.as_mut().unwrap().tick(&mut app.view, 0.1);
    assert_eq!(app.view.step - before, 10);
    assert!(screen(&app, 80, 24).lines().next().unwrap().contains("100 steps/s"));
}

/// Issue 16 item 7 (part): comparing, the signals, events and plan panels say whose
/// rows they show, and `r` cycles the run.
#[test]
fn list_panels_say_whose_rows_and_cycle_runs() {
    let mut app = comparison(ThemeKind::Default);
    let s = screen(&app, 160, 48);
    assert!(s.contains("signals · run-a") && s.contains("events · run-a") && s.contains("plan · run-a"), "{s}");
    assert!(s.contains("● consolidate"), "run-a is in its second phase\n{s}");
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('r')));
    let s = screen(&app, 160, 48);
    assert!(s.contains("signals · run-b") && s.contains("events · run-b") && s.contains("plan · run-b"), "{s}");
    // The header stays the transport's (run-a); the plan below it is run-b's.
    let below: String = s.lines().skip(1).collect();
    assert!(below.contains("● memorize") && !below.contains("● consolidate"), "run-b: still in its first phase\n{s}");
    app.on_key(ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('r')));
    assert!(screen(&app, 160, 48).contains("signals · run-a"));
}

/// Indexes the log at `log` to its end and waits until the index file is written (or
/// found unnecessary); returns the player and what became of the file.
fn index_log(log: &std::path::Path) -> (Player, IndexFile) {
    let p = Player::with_budget(Source::File(log.to_path_buf()), None, 3 << 20);
    p.index().wait_done();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.index().state().settled {
        assert!(Instant::now() < deadline, "the index file was never written");
        std::thread::sleep(Duration::from_millis(5));
    }
    let file = p.index().state().file.clone();
    (p, file)
}

/// `events.idx` (issue 13): a reopened run has its index at once, and seeks through it
/// equal fresh folds; a log that grew is read on from the index's end; an index that is
/// damaged, or no longer the log's, is ignored and rebuilt — never trusted over the log.
#[test]
fn the_index_file_is_used_when_sound_and_rebuilt_when_stale_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let idx = dir.path().join(phasetop::ui::model::index_file::FILE);
    let events = run_events("long", 20_000, 1.0 / 3000.0, Some((9_000, 12_000)));
    let (first, head) = events.split_at(events.len() - 300);
    write_log(&log, first);

    // First open: no file, indexed from the start, then written.
    let (p, file) = index_log(&log);
    assert_eq!(file, IndexFile::Absent);
    assert_eq!(p.index().state().saved, Some(Ok(())));
    let built = p.index().state().snapshots.len();
    drop(p);
    assert!(idx.exists());

    // Reopened: loaded whole before any record is read; seeks equal fresh folds.
    let (mut p, file) = index_log(&log);
    assert_eq!(file, IndexFile::Loaded);
    assert_eq!(p.index().state().snapshots.len(), built);
    assert_eq!(p.index().state().saved, None, "nothing new to write");
    let mut view = RunView::default();
    for step in [0, 1, 5_000, 9_000, 9_001, 11_999, 12_000, 15_000] {
        p.seek_step(&mut view, step);
        assert_same(&view, &fold_to_step(first, step), &format!("loaded index, seek_step {step}"));
    }
    drop(p);

    // The log grew (a resumed or live run): the index is used and the rest read on.
    {
        let mut w = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let mut tail_bytes = Vec::new();
        let tmp = dir.path().join("tail.log");
        write_log(&tmp, head);
        let all = std::fs::read(&tmp).unwrap();
        tail_bytes.extend_from_slice(&all[phasetop::runlog::header_bytes().len()..]);
        std::io::Write::write_all(&mut w, &tail_bytes).unwrap();
    }
    let (mut p, file) = index_log(&log);
    assert_eq!(file, IndexFile::Loaded);
    assert_eq!(p.index().state().events, events.len() as u64);
    assert_eq!(p.index().state().saved, Some(Ok(())), "the longer index is written");
    p.seek_step(&mut view, 20_000);
    assert_same(&view, &fold_to_step(&events, 20_000), "grown log, end");
    p.seek_step(&mut view, 10_000);
    assert_same(&view, &fold_to_step(&events, 10_000), "grown log, 10 000");
    drop(p);

    // Damaged: one flipped byte in the index file.
    let mut b = std::fs::read(&idx).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&idx, &b).unwrap();
    let (mut p, file) = index_log(&log);
    assert!(matches!(&file, IndexFile::Ignored(why) if why.contains("damaged")), "{file:?}");
    assert_eq!(p.index().state().events, events.len() as u64);
    assert_eq!(p.index().state().saved, Some(Ok(())), "rebuilt and written again");
    p.seek_step(&mut view, 9_500);
    assert_same(&view, &fold_to_step(&events, 9_500), "after a damaged index");
    drop(p);
    let (_, file) = index_log(&log);
    assert_eq!(file, IndexFile::Loaded, "the rewritten index is sound");

    // Stale: another log of the same length where the index looks (a different run
    // written over this one) — its records differ, so the index is not its own.
    let other = run_events("long", 20_000, 1.0 / 2000.0, Some((9_000, 12_000)));
    std::fs::remove_file(&log).unwrap();
    write_log(&log, &other);
    let (mut p, file) = index_log(&log);
    assert!(matches!(&file, IndexFile::Ignored(why) if why.contains("stale")), "{file:?}");
    assert_eq!(p.index().state().events, other.len() as u64);
    p.seek_step(&mut view, 15_000);
    assert_same(&view, &fold_to_step(&other, 15_000), "after a stale index");
    drop(p);

    // A shorter log than the index covers is stale too.
    std::fs::remove_file(&log).unwrap();
    write_log(&log, &other[..5_000]);
    let (_, file) = index_log(&log);
    assert!(matches!(&file, IndexFile::Ignored(why) if why.contains("stale")), "{file:?}");
}

/// Issue 16 item 7: `replay A B` with B longer: the timeline spans both runs, so B's
/// last 400 steps are reachable by `G`, `:goto`, `.`/`,`, the scrubber and by playing on
/// past A's end; A stays at its end meanwhile, and the footer counts the whole timeline.
#[test]
fn the_timeline_spans_every_compared_run() {
    let mut app = comparison(ThemeKind::Default);
    let b = run_events("grokking-b", 3400, 1.0 / 150.0, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(app.player.as_ref().unwrap().index().state().done
        && app.compare.as_ref().unwrap().others[0].player.index().state().done)
    {
        assert!(Instant::now() < deadline, "indexing");
        std::thread::sleep(Duration::from_millis(10));
    }
    let key = |c| ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(c));
    let other = |app: &App| app.compare.as_ref().unwrap().others[0].view.step;
    assert_eq!(app.timeline_last(), 3400);

    app.on_key(key('G'));
    assert_eq!((app.view.step, other(&app), app.timeline_step()), (3000, 3400, 3400), "G: the end of the longest run");
    assert!(screen(&app, 160, 48).lines().last().unwrap().contains("3 400/3 400"));
    app.on_key(key(','));
    assert_eq!((app.view.step, other(&app)), (3000, 3399));
    app.run_command_line("goto 3200");
    assert_same(&app.compare.as_ref().unwrap().others[0].view, &fold_to_step(&b, 3200), "B at 3200");
    assert_eq!(app.view.step, 3000, "A stays at its end");
    app.on_key(key('.'));
    assert_eq!(other(&app), 3201);
    let footer = screen(&app, 160, 48).lines().last().unwrap().to_string();
    assert!(footer.contains("3 201/3 400"), "{footer}");
    // Back before A's end: A moves again, the others follow it.
    app.run_command_line("goto 2500");
    assert_eq!((app.view.step, other(&app), app.timeline_step()), (2500, 2500, 2500));
    // The scrubber runs over the whole timeline: from A's end it goes into B's tail.
    app.run_command_line("goto 3000");
    app.on_key(key(')'));
    assert_eq!((app.view.step, other(&app)), (3000, 3170), "1/20 of 3400 past A's end");
    app.on_key(key('('));
    assert_eq!((app.view.step, other(&app)), (3000, 3000));
    // Playing on: A stops at its end, B plays to its own.
    app.run_command_line("goto 2990");
    app.player.as_mut().unwrap().speed = SPEEDS.len() - 1;
    app.on_key(key(' '));
    for _ in 0..200 {
        let was = app.player.as_ref().unwrap().playing;
        app.player.as_mut().unwrap().tick(&mut app.view, 0.1);
        app.tick_timeline(was, 0.1);
        app.sync_compare();
        if other(&app) == 3400 {
            break;
        }
    }
    assert_eq!((app.view.step, other(&app)), (3000, 3400), "played on past A's end");
    assert_same(&app.compare.as_ref().unwrap().others[0].view, &fold_to_step(&b, 3400), "B at its end");
    app.on_key(key('g'));
    assert_eq!((app.view.step, other(&app), app.timeline_step()), (0, 0, 0));
}

/// Issue 26 #4: `replay A B --speed max` plays through to the longest run's end without a
/// key, even when A reaches its end before the timeline past it is indexed; meanwhile the
/// header says playing, not paused.
#[test]
fn max_speed_plays_through_to_the_longest_run_and_says_it_plays() {
    let mut app = comparison(ThemeKind::Default);
    let key = |c| ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char(c));
    let other = |app: &App| app.compare.as_ref().unwrap().others[0].view.step;
    app.player.as_mut().unwrap().speed = SPEEDS.len() - 1;
    app.on_key(key(' '));
    let deadline = Instant::now() + Duration::from_secs(60);
    while other(&app) < 3400 {
        assert!(Instant::now() < deadline, "stopped at {} of 3400 without a key", other(&app));
        let was = app.player.as_ref().unwrap().playing;
        app.player.as_mut().unwrap().tick(&mut app.view, 0.1);
        app.tick_timeline(was, 0.1);
        app.sync_compare();
    }
    assert_eq!((app.view.step, other(&app)), (3000, 3400));
    // While the others play on past A's end, A's own player has stopped: the header
    // says the timeline plays.
    app.player.as_mut().unwrap().playing = false;
    app.compare.as_mut().unwrap().playing_on = true;
    let header = screen(&app, 160, 48).lines().next().unwrap_or_default().to_string();
    assert!(header.contains("REPLAY ▶"), "playing on, not paused: {header}");
}
