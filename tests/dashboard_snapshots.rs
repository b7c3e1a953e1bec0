//! Whole-screen snapshots of the dashboard (ratatui TestBackend + insta) at 80×24 and
//! 160×48 for every shipped layout, drawn from a recorded event sequence.

mod common;

use common::screen;
use phasetop::config;
use phasetop::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus};
use phasetop::host::control::Reply;
use phasetop::ui::app::{App, CommandSink, Mode};
use phasetop::ui::layout::SHIPPED;
use phasetop::ui::state::RunView;
use phasetop::ui::theme::ThemeKind;
use std::sync::{Arc, Mutex};

/// A run of 3000 steps: warmup → memorize, a jump signal, a suggestion, an operator
/// switch to compress; probes on two layers.
pub fn recorded_events() -> Vec<Event> {
    let cfg = config::parse("configs/grokking.toml", include_str!("../configs/grokking.toml")).unwrap();
    let mut ev = vec![Event::RunStarted {
        run_id: "grokking-mod59-20261126-120000".into(),
        schema_major: 1,
        schema_minor: 0,
        config_name: "grokking".into(),
        config: serde_json::to_value(&cfg).unwrap(),
        phases: cfg.phase_names(),
        device: "cpu".into(),
        seed: 0,
        started_at: 1_795_000_000.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    }];
    ev.push(Event::PhaseChanged { step: 0, from: None, to: "memorize".into(), cause: PhaseCause::Start, detail: None });
    for step in 1..=3000u64 {
        let s = step as f64;
        let phase = if step <= 2400 { "memorize" } else { "consolidate" };
        let train_loss = 4.0 * (-s / 300.0).exp() + 0.01 + 0.02 * ((s * 0.37).sin());
        let m: Metrics = [
            ("train_loss".to_string(), train_loss),
            ("train_acc".to_string(), 1.0 - (-s / 250.0).exp()),
            ("lr".to_string(), if step < 10 { 0.0001 * s } else { 0.001 }),
            ("grad_norm".to_string(), 1.0 + 0.5 * (-s / 500.0).exp()),
            ("dist_init".to_string(), (s / 100.0).sqrt()),
            ("steps_per_s".to_string(), 412.0),
        ]
        .into();
        ev.push(Event::Step { step, phase: phase.into(), t: 1_795_000_000.0 + s / 412.0, metrics: m });
        if step % 50 == 0 {
            let acc = 1.0 / (1.0 + (-(s - 2000.0) / 80.0).exp());
            let val: Metrics = [("val_loss".to_string(), 4.5 - 4.0 * acc), ("val_acc".to_string(), acc)].into();
            ev.push(Event::Eval { step, split: "val".into(), metrics: val });
        }
        if step % 100 == 0 {
            for (layer, base) in [("embed", 40.0), ("block.0.mlp", 30.0)] {
                let r = base - 20.0 * (1.0 - (-s / 1500.0).exp());
                ev.push(Event::Probe { step, layer: layer.into(), metrics: [("eff_rank".to_string(), r)].into() });
            }
        }
        if step == 1000 {
            ev.push(Event::Checkpoint { step, path: "checkpoints/step-000001000.safetensors".into() });
        }
        if step == 2120 {
            ev.push(Event::Signal {
                step,
                detector: "jump".into(),
                metric: "val_acc".into(),
                score: 0.41,
                message: "+0.41 in 80 steps".into(),
            });
            ev.push(Event::Suggestion { step, id: 1, to_phase: "consolidate".into(), because: "jump(val_acc)".into() });
        }
        if step == 2400 {
            ev.push(Event::Command {
                step,
                t: 0.0,
                client: "socket#3".into(),
                command: Command::Switch { phase: "consolidate".into() },
                applied: true,
                message: "switched memorize → consolidate at step 2400".into(),
            });
            ev.push(Event::PhaseChanged {
                step,
                from: Some("memorize".into()),
                to: "consolidate".into(),
                cause: PhaseCause::Manual,
                detail: Some("by socket#3".into()),
            });
            ev.push(Event::Log { step, level: LogLevel::Info, message: "optimizer state kept".into() });
        }
    }
    ev
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Command>>>);

impl CommandSink for Recorder {
    fn send(&mut self, c: &Command) -> Result<Reply, String> {
        self.0.lock().unwrap().push(c.clone());
        Ok(Reply { ok: true, step: 2400, message: format!("{c} applied") })
    }
}

fn app(layout: &str, view: RunView) -> App {
    common::app(view, layout, ThemeKind::Default, Box::new(Recorder::default()))
}

#[test]
fn shipped_layouts_at_two_sizes() {
    let view = RunView::from_events(&recorded_events());
    for (name, _) in SHIPPED {
        for (w, h) in [(80, 24), (160, 48)] {
            let s = screen(&app(name, view.clone()), w, h);
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), s);
        }
    }
}

#[test]
fn overlays_and_modes() {
    let view = RunView::from_events(&recorded_events());
    let mut a = app("default", view);
    a.mode = Mode::Help;
    insta::assert_snapshot!("help_160x48", screen(&a, 160, 48));
    a.mode = Mode::PhasePicker { selected: 0 };
    insta::assert_snapshot!("picker_80x24", screen(&a, 80, 24));
    a.mode = Mode::Normal;
    a.log_y = true;
    a.cursor = Some(1500);
    a.ascii = true;
    insta::assert_snapshot!("log_cursor_ascii_160x48", screen(&a, 160, 48));
}

/// The suggestion banner shows while the suggestion is pending, and goes with the phase
/// change that drops it on the host.
#[test]
fn the_suggestion_banner_lasts_until_the_phase_changes() {
    let events = recorded_events();
    let before_switch: Vec<Event> = events.iter().filter(|e| e.step().is_none_or(|s| s < 2400)).cloned().collect();
    let pending = screen(&app("default", RunView::from_events(&before_switch)), 80, 24);
    assert!(pending.contains("suggestion: switch → consoli"), "{pending}");
    let after = screen(&app("default", RunView::from_events(&events)), 80, 24);
    assert!(!after.contains("suggestion: switch"), "{after}");
}

#[test]
fn too_small_terminal_gets_a_message_not_a_panic() {
    let view = RunView::from_events(&recorded_events());
    for (w, h) in [(10, 3), (59, 30), (120, 15), (1, 1)] {
        let s = screen(&app("default", view.clone()), w, h);
        assert!(s.contains("too") || w < 20, "{w}x{h}: {s}");
    }
}

#[test]
fn ended_run_shows_its_status() {
    let mut events = recorded_events();
    events.push(Event::RunEnded { step: 3000, status: RunStatus::Completed, message: "done".into() });
    let s = screen(&app("compact", RunView::from_events(&events)), 80, 24);
    assert!(s.lines().next().unwrap().contains("COMPLETED"), "{s}");
}

#[test]
fn replay_seek_equals_folding_the_prefix() {
    use phasetop::ui::replay::Player;
    let events = recorded_events();
    let mut player = Player::new(events.clone());
    let mut view = RunView::default();
    // Forward and backward seeks at scattered steps, each checked against a fresh fold.
    for step in [2500u64, 10, 1999, 3000, 0, 2400, 2121, 1] {
        player.seek_step(&mut view, step);
        let prefix: Vec<Event> = events.iter().filter(|e| e.step().is_none_or(|s| s <= step)).cloned().collect();
        let expected = RunView::from_events(&prefix);
        assert_eq!(view.step, expected.step, "step {step}");
        assert_eq!(view.phases, expected.phases, "step {step}");
        assert_eq!(view.signals, expected.signals, "step {step}");
        assert_eq!(view.suggestions, expected.suggestions, "step {step}");
        for key in ["train_loss", "val_acc", "embed/eff_rank"] {
            let a = view.series.get(key).and_then(|s| s.last());
            let b = expected.series.get(key).and_then(|s| s.last());
            assert_eq!(a, b, "{key} at step {step}");
        }
    }
    // Playing to the end gives the same screen as folding everything (state fold equality).
    let mut view = RunView::default();
    let mut p = Player::new(events.clone());
    p.speed = phasetop::ui::replay::SPEEDS.len() - 1;
    while p.tick(&mut view, 0.1) {}
    let full = RunView::from_events(&events);
    let (a, b) = (app("default", view), app("default", full));
    assert_eq!(screen(&a, 160, 48), screen(&b, 160, 48));
}
