//! Whole-screen snapshots of the dashboard (ratatui TestBackend + insta) at 80×24 and
//! 160×48 for every shipped layout, drawn from a recorded event sequence.

mod common;

use common::screen;
use phasetop::config;
use phasetop::control::Reply;
use phasetop::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus};
use phasetop::ui::app::{App, ChartOpts, CommandSink, Exit, Mode};
use phasetop::ui::layout::{Panel, SHIPPED};
use phasetop::ui::model::state::RunView;
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
        if step % 412 == 0 {
            // The host's system sample, about once a second (no GPU on this machine).
            let sys: Metrics =
                [("sys/cpu_pct".to_string(), 97.0 + (s / 412.0) % 3.0), ("sys/rss_mb".to_string(), 312.4)].into();
            ev.push(Event::Eval { step, split: "system".into(), metrics: sys });
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
                figures: Default::default(),
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
    a.charts.opts.insert(Panel::Loss, ChartOpts { smoothing: 0.6, log_y: true, clip: false });
    a.charts.cursor = Some(1500);
    a.ascii = true;
    let ascii = screen(&a, 160, 48);
    insta::assert_snapshot!("log_cursor_ascii_160x48", ascii);
    // --ascii is ASCII only: borders, axis lines, chart dots, arrows and ellipses too.
    for (w, h) in [(160, 48), (80, 24)] {
        let s = screen(&a, w, h);
        let odd: Vec<char> = s.chars().filter(|c| !c.is_ascii()).collect();
        assert!(odd.is_empty(), "{w}x{h}: non-ASCII {odd:?}\n{s}");
    }
}

/// The suggestion banner shows while the suggestion is pending, and goes with the phase
/// change that drops it on the host.
#[test]
fn the_suggestion_banner_lasts_until_the_phase_changes() {
    let events = recorded_events();
    let before_switch: Vec<Event> = events.iter().filter(|e| e.step().is_none_or(|s| s < 2400)).cloned().collect();
    let pending = screen(&app("default", RunView::from_events(&before_switch)), 80, 24);
    assert!(pending.contains("suggestion: switch → consol"), "{pending}");
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

/// A run whose host died without an end: the header says FAILED (as `ls` does), and a
/// command says why it cannot be sent; a host that only stops answering is STALE.
#[test]
fn a_run_whose_host_is_gone_reads_failed() {
    let rec = Recorder::default();
    let mut a =
        common::app(RunView::from_events(&recorded_events()), "compact", ThemeKind::Default, Box::new(rec.clone()));
    a.link = phasetop::ui::app::Link::Stale;
    assert!(screen(&a, 80, 24).lines().next().unwrap().contains("STALE"));
    a.link = phasetop::ui::app::Link::Gone;
    let s = screen(&a, 80, 24);
    assert!(s.lines().next().unwrap().contains("FAILED"), "{s}");
    ch(&mut a, 'p');
    let (msg, err) = a.status.get().cloned().unwrap();
    assert!(
        err && msg.contains("the run failed at step") && msg.contains("host exited without recording an end"),
        "{msg}"
    );
    assert!(rec.0.lock().unwrap().is_empty(), "nothing was sent");
}

/// Issue 26: a remote run whose link is down says so (docs/REMOTE.md), not that its host
/// is not answering.
#[test]
fn a_remote_run_with_its_link_down_says_the_link_is_down() {
    struct Down;
    impl CommandSink for Down {
        fn send(&mut self, _: &Command) -> Result<Reply, String> {
            Err("not sent".into())
        }
        fn down(&self) -> Option<String> {
            Some("link to gpu-box is down; reconnecting".into())
        }
        fn remote(&self) -> Option<String> {
            Some("me@gpu-box".into())
        }
    }
    let mut a = common::app(RunView::from_events(&recorded_events()), "compact", ThemeKind::Default, Box::new(Down));
    // Issue 26 #1: a remote run says so in the header, at 80 columns too.
    assert!(screen(&a, 80, 24).lines().next().unwrap_or_default().contains("@me@gpu-box"));
    a.link = phasetop::ui::app::Link::Stale;
    ch(&mut a, 'p');
    let (msg, err) = a.status.get().cloned().unwrap();
    assert!(err && msg.contains("link to gpu-box is down") && !msg.contains("not answering"), "{msg}");
}

#[test]
fn replay_seek_equals_folding_the_prefix() {
    use phasetop::ui::player::replay::Player;
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
    p.speed = phasetop::ui::player::replay::SPEEDS.len() - 1;
    while p.tick(&mut view, 0.1) {}
    let full = RunView::from_events(&events);
    let (a, b) = (app("default", view), app("default", full));
    assert_eq!(screen(&a, 160, 48), screen(&b, 160, 48));
}

fn key(app: &mut App, code: ratatui::crossterm::event::KeyCode) {
    use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn ch(app: &mut App, c: char) {
    key(app, ratatui::crossterm::event::KeyCode::Char(c));
}

/// Focuses `panel` among those the last drawn frame showed (draw at the size first).
fn focus(app: &mut App, panel: Panel) {
    app.focus = app.panels().iter().position(|p| *p == panel).unwrap();
}

/// The recorded run with signals whose messages carry long numbers, and an lr in the
/// 1e-4 range (labels that lost their exponent: `9.88e`).
fn numbered_events() -> Vec<Event> {
    let mut ev = recorded_events();
    let at = ev.iter().position(|e| e.step() == Some(2200)).unwrap();
    for (i, (det, metric, msg)) in [
        ("change_point", "train_loss", "change point after step 1099: mean 0.5213 → 0.0312"),
        ("jump", "val_acc", "jump up of 0.4120 over 80 steps, at step 1975"),
        ("plateau", "train_loss", "flat for 500 steps at 0.0123 (rel. change 0.0004 < 0.001)"),
    ]
    .into_iter()
    .enumerate()
    {
        ev.insert(
            at + i,
            Event::Signal {
                step: 2200,
                detector: det.into(),
                metric: metric.into(),
                score: 1.0,
                message: msg.into(),
                figures: Default::default(),
            },
        );
    }
    for e in ev.iter_mut() {
        if let Event::Step { metrics, .. } = e {
            let lr = metrics.get_mut("lr").unwrap();
            *lr *= 0.522;
        }
    }
    ev
}

/// Every number with an exponent keeps it whole, and every step a signal row names
/// is the whole step: `1099`, never `109`.
fn assert_numbers_whole(s: &str, what: &str) {
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == 'e' && i > 0 && chars[i - 1].is_ascii_digit() {
            let next = chars.get(i + 1).copied().unwrap_or(' ');
            let after = chars.get(i + 2).copied().unwrap_or(' ');
            assert!(
                next.is_ascii_digit() || (next == '-' && after.is_ascii_digit()),
                "{what}: cut exponent at {i}\n{s}"
            );
        }
    }
    for line in s.lines() {
        for (pat, whole) in [("after step ", "1099"), ("at step ", "1975"), ("for ", "500")] {
            if let Some(i) = line.find(pat) {
                let rest: String = line[i + pat.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
                assert!(rest.is_empty() || rest == whole, "{what}: {pat}{rest} for {whole}\n{s}");
            }
        }
    }
}

/// Issue 16 item 2: at every width, numbers are whole or absent, axis labels keep their
/// exponent, and the cursor's `@STEP` stays in every chart title that has room for it.
#[test]
fn numbers_are_whole_or_absent_at_every_width() {
    let view = RunView::from_events(&numbered_events());
    for layout in ["default", "compact", "diversity"] {
        let mut a = app(layout, view.clone());
        a.charts.cursor = Some(1500);
        for w in (60..=160).step_by(7) {
            for h in [16, 24, 30] {
                let s = screen(&a, w, h);
                assert_numbers_whole(&s, &format!("{layout} {w}x{h}"));
                let loss_title = s.lines().find(|l| l.contains(" loss ")).unwrap_or("");
                assert!(loss_title.contains("@1 500"), "{layout} {w}x{h}: cursor cut from the title\n{s}");
            }
        }
    }
    let mut a = app("default", view);
    a.charts.cursor = Some(1500);
    insta::assert_snapshot!("numbered_80x24", screen(&a, 80, 24));
}

/// Issue 16 item 2: the signals and events panels scroll, and Enter opens a row's full
/// text.
#[test]
fn list_panels_scroll_and_enter_opens_the_full_row() {
    use ratatui::crossterm::event::KeyCode;
    let mut a = app("default", RunView::from_events(&numbered_events()));
    screen(&a, 80, 24);
    focus(&mut a, Panel::Signals);
    // Newest first: the first `j` selects the plateau row, the second the change point
    // (the two jumps on val_acc in memorize are one row, one episode).
    for _ in 0..2 {
        ch(&mut a, 'j');
    }
    let s = screen(&a, 80, 24);
    assert!(s.contains("2/3"), "the title says where the selection is\n{s}");
    key(&mut a, KeyCode::Enter);
    let Mode::Detail { lines, .. } = &a.mode else { panic!("Enter opens the row: {:?}", a.mode) };
    assert!(lines.iter().any(|l| l == "change point after step 1099: mean 0.5213 → 0.0312"), "{lines:?}");
    let s = screen(&a, 80, 24);
    assert!(s.contains("step 1099: mean 0.5213"), "the full text is on screen\n{s}");
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);
    // The events panel scrolls to its oldest rows (at 160×48: 80×24 shows no events).
    screen(&a, 160, 48);
    focus(&mut a, Panel::Events);
    let s = screen(&a, 160, 48);
    assert!(!s.contains("0 start   grokking"), "{s}");
    key(&mut a, KeyCode::End);
    let s = screen(&a, 160, 48);
    assert!(s.contains("0 start   grokking") && s.contains("11/11"), "scrolled to the oldest row\n{s}");
    key(&mut a, KeyCode::Tab);
    assert_ne!(a.focused_panel(), Some(Panel::Events), "Tab still moves the focus");
}

fn with_max_steps(mut events: Vec<Event>, max: u64, end: u64) -> Vec<Event> {
    if let Event::RunStarted { config, .. } = &mut events[0] {
        config["run"]["max_steps"] = max.into();
    }
    events.retain(|e| e.step().is_none_or(|s| s <= end));
    events.push(Event::RunEnded { step: end, status: RunStatus::Completed, message: "max_steps reached".into() });
    events
}

/// Issue 16 item 3: the header shows the run's real end, and a finished phase has an end.
#[test]
fn header_and_plan_use_the_runs_real_end() {
    let view = RunView::from_events(&with_max_steps(recorded_events(), 3000, 3000));
    let a = app("default", view);
    let s = screen(&a, 160, 48);
    assert!(s.lines().next().unwrap().contains("step 3 000/3 000"), "{s}");
    assert!(s.contains("2 400 → 3 000"), "the last phase ended with the run\n{s}");
    assert!(!s.contains("→ …"), "{s}");
    insta::assert_snapshot!("completed_80x24", screen(&a, 80, 24));
}

/// Issue 16 item 4: accuracy's axis stays in [0, 1]; a flat lr gets a small range and
/// says it is flat; `l`, `o`, `S` change the focused chart only, and lr is never smoothed.
#[test]
fn y_axes_keep_natural_bounds_and_options_are_per_chart() {
    let mut events = recorded_events();
    for e in events.iter_mut() {
        if let Event::Step { metrics, .. } = e {
            metrics.insert("lr".into(), 0.1);
        }
    }
    let mut a = app("default", RunView::from_events(&events));
    let s = screen(&a, 160, 48);
    let acc_rows: Vec<&str> = s.lines().filter(|l| l.contains("│1.0") || l.contains("│1.05")).collect();
    assert!(!s.contains("1.05"), "accuracy above 1\n{s}");
    assert!(!acc_rows.is_empty(), "{s}");
    assert!(s.contains("flat at 0.1000"), "a constant lr says it is flat\n{s}");
    assert!(s.contains("│0.1000│"), "the level is the one label of a flat chart\n{s}");
    let lr_title = s.lines().find(|l| l.contains("learning rate")).unwrap();
    let lr_part = &lr_title[lr_title.find("learning rate").unwrap()..];
    assert!(!lr_part.split('╮').next().unwrap().contains("ema"), "lr is never smoothed: {lr_title}");
    // `l` on the focused loss chart only.
    focus(&mut a, Panel::Loss);
    ch(&mut a, 'l');
    ch(&mut a, 'S');
    assert!(a.opts(Panel::Loss).log_y && !a.opts(Panel::Accuracy).log_y);
    assert_eq!(a.opts(Panel::Loss).smoothing, 0.7);
    assert_eq!(a.opts(Panel::Accuracy).smoothing, 0.6);
    focus(&mut a, Panel::Lr);
    ch(&mut a, 'S');
    assert_eq!(a.opts(Panel::Lr).smoothing, 0.0);
    assert!(a.status.get().unwrap().0.contains("never smoothed"));
    focus(&mut a, Panel::Signals);
    ch(&mut a, 'l');
    assert!(a.status.get().unwrap().0.contains("focused chart"), "{:?}", a.status);
}

/// Issue 16 item 5: the first and last step in view, and the cursor's, on the x axis.
#[test]
fn x_axes_show_the_steps_in_view() {
    let mut a = app("compact", RunView::from_events(&recorded_events()));
    let s = screen(&a, 80, 24);
    let bottom = s.lines().find(|l| l.starts_with('╰')).unwrap();
    assert!(bottom.contains(" 1 ") && bottom.contains(" 3 000 "), "{bottom}");
    a.charts.zoom = 1;
    a.charts.cursor = Some(2500);
    let s = screen(&a, 80, 24);
    let bottom = s.lines().find(|l| l.starts_with('╰')).unwrap();
    assert!(bottom.contains(" 1 501 ") && bottom.contains(" 3 000 ") && bottom.contains("@2 500"), "{bottom}");
}

/// Issue 16 item 6: a completed run has no live controls: `q` quits at once, `p` says
/// the run is not live, and the footer and help list only what works.
#[test]
fn a_run_that_is_not_live_offers_only_what_works() {
    let rec = Recorder::default();
    let view = RunView::from_events(&with_max_steps(recorded_events(), 3000, 3000));
    let mut a = common::app(view, "default", ThemeKind::Default, Box::new(rec.clone()));
    let s = screen(&a, 160, 48);
    let footer = s.lines().last().unwrap();
    assert!(!footer.contains("switch") && !footer.contains("pause") && !footer.contains("checkpoint"), "{footer}");
    for c in ['p', 's', 'c'] {
        ch(&mut a, c);
        let (msg, err) = a.status.get().cloned().unwrap();
        assert!(err && msg.contains("not live") && msg.contains("completed at step 3 000"), "{c}: {msg}");
        assert_eq!(a.mode, Mode::Normal);
    }
    a.run_command_line("pause");
    assert!(a.status.get().unwrap().0.contains("not live"));
    assert!(rec.0.lock().unwrap().is_empty(), "nothing was sent");
    a.mode = Mode::Help;
    let help = screen(&a, 160, 48);
    assert!(!help.contains("pause / resume") && !help.contains("checkpoint now"), "{help}");
    a.mode = Mode::Normal;
    ch(&mut a, 'q');
    assert_eq!(a.exit, Some(Exit::Detach), "q quits at once");
}

/// Issue 16 item 10: the footer says how to answer a pending suggestion, and one still
/// pending when the run ended shows as expired.
#[test]
fn suggestions_say_how_to_answer_and_expire_with_the_run() {
    let events = recorded_events();
    let before: Vec<Event> = events.iter().filter(|e| e.step().is_none_or(|s| s < 2400)).cloned().collect();
    let s = screen(&app("default", RunView::from_events(&before)), 80, 24);
    assert!(s.lines().last().unwrap().contains("a accept  d dismiss"), "{s}");
    // 80×24 has no events panel: the signals panel's legend names both markers.
    assert!(s.contains("▲ signal ▼ command on charts"), "the legend of the chart markers\n{s}");
    let s = screen(&app("default", RunView::from_events(&before)), 160, 48);
    assert!(s.contains("▲ on charts") && s.contains("▼ = command"), "the legend of the chart markers\n{s}");
    let mut ended = before.clone();
    ended.push(Event::RunEnded { step: 2399, status: RunStatus::Stopped, message: "stopped".into() });
    let s = screen(&app("default", RunView::from_events(&ended)), 80, 24);
    assert!(s.contains("suggestion expired"), "{s}");
    assert!(!s.contains("accept"), "{s}");
}

/// Issue 16 item 8: status messages expire; `g` lands on the start with the header
/// filled in; an old "nothing further" goes with the next move.
#[test]
fn replay_start_has_a_header_and_messages_expire() {
    use phasetop::ui::player::replay::Player;
    let mut a = app("default", RunView::default());
    let mut p = Player::new(recorded_events());
    p.playing = false;
    a.player = Some(p);
    ch(&mut a, 'G');
    ch(&mut a, 'g');
    let header = screen(&a, 160, 48).lines().next().unwrap().to_string();
    assert!(header.contains("memorize") && header.contains("grokking-mod59"), "{header}");
    ch(&mut a, '[');
    assert!(a.status.get().unwrap().0.contains("nothing further"));
    ch(&mut a, '.');
    assert!(a.status.get().is_none(), "the next move clears it");
    a.run_command_line("smooth 0.5");
    assert!(a.status.get().is_some());
    assert!(!a.expire_status(std::time::Instant::now()));
    assert!(a.expire_status(std::time::Instant::now() + std::time::Duration::from_secs(6)));
    assert!(a.status.get().is_none());
}

/// Issue 16 item 10: every detector's row says in words what it means and what one
/// might do; markers on the phase band never overwrite a phase's name.
#[test]
fn signal_rows_say_what_they_mean_and_markers_spare_phase_names() {
    let mut events = recorded_events();
    let fired = [
        (20, "plateau", "train_loss", "plateau since step 10: level 3.7, change 0.50% per 500 steps (tolerance 1.00%)"),
        (60, "change_point", "train_loss", "change point after step 55: level -12%"),
        (100, "spike", "train_loss", "spike to 9.1 (5.0× the running level 1.8; burst 1 of the run)"),
        (140, "collapse", "embed/eff_rank", "collapsed to 3.2 (10% of the starting 32)"),
        (
            180,
            "divergence",
            "train_loss",
            "still 4.0× the level 1.8 before step 150, 30 steps on: the loss does not come back",
        ),
    ];
    let at = events.iter().position(|e| matches!(e, Event::Step { step: 200, .. })).unwrap();
    for (i, (step, detector, metric, message)) in fired.iter().enumerate() {
        let e = Event::Signal {
            step: *step,
            detector: detector.to_string(),
            metric: metric.to_string(),
            score: 1.0,
            message: message.to_string(),
            figures: Default::default(),
        };
        events.insert(at + i, e);
    }
    // A plateau in the last phase: no row advises a switch the plan cannot make.
    let late = events.iter().position(|e| matches!(e, Event::Step { step: 2600, .. })).unwrap();
    let message = "plateau since step 2500: level 0.1, change 0.10% per 500 steps (tolerance 1.00%)".to_string();
    let (detector, metric) = ("plateau".to_string(), "train_loss".to_string());
    events
        .insert(late, Event::Signal { step: 2600, detector, metric, score: 1.0, message, figures: Default::default() });
    let view = RunView::from_events(&events);
    let mut a = app("default", view);
    let s = screen(&a, 160, 48);
    for words in [
        "plateau: train_loss flat for 10 steps",
        "change_point: train_loss changed course",
        "spike: train_loss spiked and came back",
        "collapse: embed/eff_rank collapsed",
        "divergence: train_loss blew up and stays up",
        "jump: val_acc jumped",
    ] {
        assert!(s.contains(words), "{words:?} missing:\n{s}");
    }
    // Where the panel is wide enough, the whole advice too (the key only on a live run).
    let wide = screen(&a, 240, 48);
    for words in [
        "plateau: train_loss flat for 10 steps — consider switching to consolidate (s)",
        "plateau: train_loss flat for 100 steps — the plan has no later phase",
        "change_point: train_loss changed course — a new stage may have begun",
        "spike: train_loss spiked and came back — harmless unless it repeats",
        "collapse: embed/eff_rank collapsed — features lost diversity; try a lower lr",
        "divergence: train_loss blew up and stays up — lower the lr or branch from before",
        "jump: val_acc jumped — the stage you waited for? switch to consolidate (s)",
    ] {
        assert!(wide.contains(words), "{words:?} missing:\n{wide}");
    }
    // The band under the loss chart: ▲ at steps 20–180 and ▼ at 2400, where the names
    // start; both names are whole, beside the markers, not split by them.
    let band = s.lines().find(|l| l.contains('▼')).unwrap_or_else(|| panic!("no band:\n{s}"));
    assert!(band.contains("memorize") && band.contains("consolidate"), "{band}");
    // The full text (Enter) keeps the detector's own message and figures.
    let rows = a.list_len(Panel::Signals);
    let jump =
        (0..rows).filter_map(|i| a.row_detail(Panel::Signals, i)).find(|(_, l)| l.iter().any(|x| x.contains("jump")));
    let (_, lines) = jump.expect("the jump's row");
    assert!(lines.iter().any(|l| l.contains("+0.41 in 80 steps")), "{lines:?}");
    a.ascii = true;
    assert!(screen(&a, 240, 48).contains("plateau: train_loss flat for 10 steps - consider switching to consolidate"));
}

/// Issue 16 item 11: at 80×24 the default layout keeps loss, accuracy and the signals
/// readable (the lr is a number in the header, the plan one line); at 160×48 it is the
/// usual arrangement. The help scrolls, lists the dialogs' keys (and replay's when
/// replaying) and closes on `?` or Esc only.
#[test]
fn the_default_layout_reads_at_80x24_and_the_help_scrolls() {
    use ratatui::crossterm::event::KeyCode;
    let view = RunView::from_events(&recorded_events());
    let mut a = app("default", view.clone());
    let s = screen(&a, 80, 24);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines[0].contains("lr 0.0010"), "lr folded into the header: {}", lines[0]);
    // Each chart has at least 8 rows between its borders (3 before).
    let rows_of = |title: &str| {
        let top = lines.iter().position(|l| l.contains(title)).unwrap_or_else(|| panic!("no {title}:\n{s}"));
        let col = lines[top].chars().position(|c| c == '╭').unwrap();
        lines[top + 1..].iter().take_while(|l| l.chars().nth(col) == Some('│')).count()
    };
    assert!(rows_of("╭ loss") >= 8, "{s}");
    assert!(rows_of("╭ accuracy") >= 8, "{s}");
    assert!(!s.contains("learning rate"), "{s}");
    assert!(s.contains("jump: val_acc jumped — the stage you waited for?"), "the signals row in words:\n{s}");
    let plan = lines[lines.len() - 2];
    assert!(plan.contains("plan") && plan.contains("memorize") && plan.contains("consolidate"), "{plan}");
    assert!(screen(&a, 160, 48).contains("learning rate"), "the usual arrangement at 160×48");

    a.mode = Mode::Help;
    let first = screen(&a, 80, 24);
    assert!(first.contains("scroll"), "{first}");
    for _ in 0..100 {
        key(&mut a, KeyCode::Down);
    }
    let last = screen(&a, 80, 24);
    assert_ne!(first, last, "the help scrolled");
    assert!(last.contains("? or Esc closes") && last.contains("Tab completes"), "{last}");
    assert!(seen_help(&mut a).contains("starved (was N)"), "the header's words are explained");
    // PgDn moves a page (the lines on screen), not 10 lines.
    a.help.scroll = 0;
    let title = |a: &App| screen(a, 80, 24).lines().find(|l| l.contains("help ")).unwrap_or_default().to_string();
    let page = |t: &str| -> Option<(usize, usize)> {
        let range = t.split("help").nth(1)?.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        Some((a.parse().ok()?, b.split('/').next()?.parse().ok()?))
    };
    let (from, to) = page(&title(&a)).expect("the help's title says which lines");
    key(&mut a, KeyCode::PageDown);
    let (next, _) = page(&title(&a)).expect("still scrolling");
    assert_eq!(next, to + 1, "a page down starts after the lines shown ({from}-{to})");
    ch(&mut a, 'x');
    assert_eq!(a.mode, Mode::Help, "another key does not close it");
    ch(&mut a, '?');
    assert_eq!(a.mode, Mode::Normal);
    a.mode = Mode::Help;
    key(&mut a, KeyCode::Esc);
    assert_eq!(a.mode, Mode::Normal);

    let mut p = phasetop::ui::player::replay::Player::new(recorded_events());
    p.playing = false;
    a.player = Some(p);
    a.mode = Mode::Help;
    let mut seen = String::new();
    for _ in 0..60 {
        seen.push_str(&screen(&a, 80, 24));
        key(&mut a, KeyCode::Down);
    }
    assert!(
        seen.contains("space  play / pause") && seen.contains("next phase change") && seen.contains("scrubber"),
        "replay's keys:\n{seen}"
    );
}

/// Issue 16 item 13: the system panel shows the host's latest sample, says when there is
/// no GPU, and shows the GPU's figures when the host recorded them.
#[test]
fn the_system_panel_shows_cpu_memory_and_the_gpu_or_its_absence() {
    let mut events = recorded_events();
    let s = screen(&app("default", RunView::from_events(&events)), 160, 48);
    let panel: Vec<&str> = s.lines().filter(|l| l.contains("CPU") || l.contains("RSS") || l.contains("GPU")).collect();
    assert!(panel.iter().any(|l| l.contains("CPU   98 % (100 = a core)")), "{s}");
    assert!(panel.iter().any(|l| l.contains("RSS   312 MB")), "{s}");
    assert!(panel.iter().any(|l| l.contains("GPU   none (no NVIDIA GPU)")), "{s}");
    let gpu: Metrics = [
        ("sys/cpu_pct".to_string(), 12.0),
        ("sys/rss_mb".to_string(), 2048.0),
        ("sys/gpu_util_pct".to_string(), 87.0),
        ("sys/gpu_mem_mb".to_string(), 30_500.0),
        ("sys/gpu_mem_total_mb".to_string(), 143_771.0),
        ("sys/gpu_temp_c".to_string(), 61.0),
    ]
    .into();
    events.insert(events.len() - 1, Event::Eval { step: 3000, split: "system".into(), metrics: gpu });
    let app = app("default", RunView::from_events(&events));
    let lines = phasetop::ui::render::system::lines(&app);
    let text: Vec<String> = lines.iter().map(|(l, v)| format!("{l} {v}")).collect();
    assert_eq!(text, ["CPU 12 % (100 = a core)", "RSS 2048 MB", "GPU 87 %", "VRAM 30.5 of 143.8 GB", "temp 61 °C"]);
    let s = screen(&app, 160, 48);
    assert!(s.contains("VRAM  30.5 of 143.8 GB") && s.contains("temp  61 °C"), "{s}");
    // A log from before system samples says so instead of showing nothing.
    let old: Vec<Event> = recorded_events()
        .into_iter()
        .filter(|e| !matches!(e, Event::Eval { split, .. } if split == "system"))
        .collect();
    let s = screen(&app_for(old), 160, 48);
    assert!(s.contains("no samples"), "{s}");
}

/// An external job on several GPUs (`sys/gpu_*` for cuda:0, `sys/gpu<k>_*` for the
/// others): the panel shows their mean and max utilisation, memory summed, the hottest.
#[test]
fn the_system_panel_sums_up_several_gpus() {
    let mut events = recorded_events();
    let mut m: Metrics = [("sys/cpu_pct".to_string(), 310.0), ("sys/rss_mb".to_string(), 9_000.0)].into();
    for (k, util, used, temp) in [(0, 90.0, 40_000.0, 60.0), (1, 50.0, 30_000.0, 71.0), (2, 10.0, 20_000.0, 55.0)] {
        for (first, v) in [
            ("sys/gpu_util_pct", util),
            ("sys/gpu_mem_mb", used),
            ("sys/gpu_mem_total_mb", 80_000.0),
            ("sys/gpu_temp_c", temp),
        ] {
            m.insert(phasetop::sysmon::gpu_metric(k, first), v);
        }
    }
    events.insert(events.len() - 1, Event::Eval { step: 3000, split: "system".into(), metrics: m });
    let app = app_for(events);
    let text: Vec<String> = phasetop::ui::render::system::lines(&app).iter().map(|(l, v)| format!("{l} {v}")).collect();
    assert_eq!(
        text,
        [
            "CPU 310 % (100 = a core)",
            "RSS 9000 MB",
            "GPU 3× mean 50 %, max 90 %",
            "VRAM 90.0 of 240.0 GB",
            "temp max 71 °C"
        ]
    );
    let s = screen(&app, 160, 48);
    assert!(s.contains("GPU   3× mean 50 %, max 90 %") && s.contains("VRAM  90.0 of 240.0 GB"), "{s}");
}

fn app_for(events: Vec<Event>) -> App {
    app("default", RunView::from_events(&events))
}

/// Issue 16 item 16: the header says when the trainer runs far below its own recent rate
/// (three 0.5-s windows under a third of it), not for one slow window, and not once the
/// run is back to speed.
#[test]
fn the_header_says_when_the_trainer_is_starved() {
    let base: Vec<Event> = recorded_events().into_iter().filter(|e| !matches!(e, Event::RunEnded { .. })).collect();
    let with_rates = |rates: &[f64]| -> App {
        let mut ev = base.clone();
        for (step, &r) in (3001..).zip(rates) {
            let m: Metrics = [("train_loss".to_string(), 0.01), ("steps_per_s".to_string(), r)].into();
            ev.push(Event::Step { step, phase: "consolidate".into(), t: 1_795_000_010.0, metrics: m });
        }
        app_for(ev)
    };
    // The recorded run's rate is a steady 412 it/s; varying windows around it first.
    let steady: Vec<f64> = (0..20).map(|i| 400.0 + i as f64).collect();
    let header = |a: &App| screen(a, 160, 48).lines().next().unwrap().to_string();
    let h = header(&with_rates(&[&steady[..], &[7.0, 8.0, 9.0]].concat()));
    assert!(h.contains("9.0 it/s starved (was 394)"), "{h}");
    let h = header(&with_rates(&[&steady[..], &[60.0, 410.0]].concat()));
    assert!(!h.contains("starved"), "one slow window is an evaluation, not starvation: {h}");
    let h = header(&with_rates(&[&steady[..], &[7.0, 8.0, 9.0, 405.0]].concat()));
    assert!(!h.contains("starved"), "{h}");
}

/// Issue 26 #1: the header says only what is true. Paused: no rate, no ETA. Failed: the
/// reason, at 120 columns too, and no rate. A plan whose phases all end by a step count:
/// the ETA counts to the plan's end, not to max_steps.
#[test]
fn the_header_never_shows_stale_numbers() {
    let header = |events: &[Event], w: u16| -> String {
        let s = screen(&app("default", RunView::from_events(events)), w, 40);
        s.lines().next().unwrap_or_default().to_string()
    };
    let live = recorded_events();
    assert!(header(&live, 160).contains("it/s"), "a live run shows its rate");
    let mut paused = live.clone();
    paused.push(Event::Command {
        step: 3000,
        t: 1_795_000_010.0,
        client: "ctl".into(),
        command: Command::Pause,
        applied: true,
        message: "paused".into(),
    });
    let h = header(&paused, 160);
    assert!(h.contains("PAUSED") && !h.contains("it/s") && !h.contains("ETA"), "{h}");
    let mut failed = live.clone();
    failed.push(Event::RunEnded {
        step: 3000,
        status: phasetop::event::RunStatus::Failed,
        message: "the trainer failed: CUDA out of memory\ndetails".into(),
    });
    let h = header(&failed, 120);
    assert!(h.contains("FAILED") && h.contains("out of memory"), "{h}");
    assert!(!h.contains("it/s") && !h.contains("ETA"), "{h}");
    // Every phase with a step count: the plan ends before max_steps, and the ETA says so.
    let mut planned = live.clone();
    if let Some(Event::RunStarted { config, .. }) = planned.first_mut() {
        config["phase"] =
            serde_json::json!([{"name": "memorize", "steps": 2400}, {"name": "consolidate", "steps": 1600}]);
        config["run"]["max_steps"] = serde_json::json!(5000);
    }
    // 1 000 steps left to the plan's end (2 400 + 1 600), not 2 000 to max_steps.
    let h = header(&planned, 160);
    assert!(h.contains("ETA 00:00:02") && !h.contains("ETA ≤"), "the plan's end is known exactly: {h}");
}

/// Issue 23: one row per episode. The same detector firing again on the same metric in
/// the same phase folds into its row (a count and a span); in another phase it is a new
/// row.
#[test]
fn repeated_signals_in_a_phase_are_one_row() {
    let mut events = recorded_events();
    let plateau = |step: u64| Event::Signal {
        step,
        detector: "plateau".into(),
        metric: "train_loss".into(),
        score: 1.0,
        message: format!("plateau since step {}: level 0.1", step - 100),
        figures: Default::default(),
    };
    // Three firings in consolidate (from 2 400), after one in memorize.
    for step in [2000u64, 2500, 2700, 2900] {
        let at = events.iter().position(|e| matches!(e, Event::Step { step: s, .. } if *s == step)).unwrap();
        events.insert(at, plateau(step));
    }
    let view = RunView::from_events(&events);
    let rows: Vec<(u64, u32, u64)> =
        view.signals.iter().filter(|r| r.detector == "plateau").map(|r| (r.step, r.count, r.last_step)).collect();
    assert_eq!(rows, [(2000, 1, 2000), (2500, 3, 2900)]);
    let a = app("default", view);
    let s = screen(&a, 240, 48);
    assert!(s.contains("plateau: train_loss flat for 100 steps ×3 to 2 900 —"), "{s}");
}

/// Everything the help says, scrolled through (for a word that may be below the fold).
fn seen_help(a: &mut App) -> String {
    use ratatui::crossterm::event::KeyCode;
    a.help.scroll = 0;
    let mut seen = String::new();
    for _ in 0..80 {
        seen.push_str(&screen(a, 80, 24));
        key(a, KeyCode::Down);
    }
    seen
}

/// Issue 26 #6: at 80×24 the footer keeps `q quit` (and `? help`) while a suggestion is
/// pending; the hints between them give way.
#[test]
fn the_footer_keeps_quit_with_a_suggestion_pending() {
    let mut events = recorded_events();
    let at = events.iter().position(|e| matches!(e, Event::Step { step: 2600, .. })).unwrap();
    let to_phase = "consolidate".to_string();
    events.insert(at, Event::Suggestion { step: 2600, id: 1, to_phase, because: "plateau(train_loss)".into() });
    let a = app("default", RunView::from_events(&events));
    let s = screen(&a, 80, 24);
    let footer = s.lines().last().unwrap_or_default();
    assert!(footer.contains("accept") && footer.contains("q quit") && footer.contains("? help"), "{footer}");
}

/// Issue 26 #2: without colour (`--ascii`, mono), a chart's series differ by marker and
/// the legend says which: train `*`, val `#`.
#[test]
fn series_are_told_apart_without_colour() {
    let mut a = app("default", RunView::from_events(&recorded_events()));
    a.ascii = true;
    let s = screen(&a, 160, 48);
    let loss = s.lines().find(|l| l.contains(" loss ")).unwrap_or_default();
    assert!(loss.contains("* train") && loss.contains("# val"), "{loss}");
    let plotted = s.lines().skip(1).take(14).collect::<String>();
    assert!(plotted.contains('*') && plotted.contains('#'), "both markers drawn:\n{s}");
}

/// Issue 26 #2: the diversity chart's title always names its metric, whatever `m` chose
/// and however narrow the chart.
#[test]
fn the_diversity_chart_names_its_metric() {
    let mut a = app("diversity", RunView::from_events(&recorded_events()));
    for metric in ["eff_rank", "entropy", "diversity", "participation", "mean_cos"] {
        for (w, h) in [(160, 48), (80, 24)] {
            let s = screen(&a, w, h);
            assert!(s.contains(&format!("diversity: {metric}")), "{metric} at {w}x{h}:\n{s}");
        }
        ch(&mut a, 'm');
    }
}

/// Issue 26 item 6: at 160×48 a decayed learning rate's reading (`2.50e-4`) and a
/// five-digit cursor step left no room beside "learning rate", and the readout lost lr;
/// the chart is then titled "lr" and keeps it, at every size that shows the chart.
#[test]
fn the_cursor_readout_keeps_the_learning_rate() {
    let mut events: Vec<Event> = recorded_events().into_iter().take(2).collect();
    for step in (10..=12_000u64).step_by(10) {
        let s = step as f64;
        let m: Metrics = [
            ("train_loss".to_string(), 2.0 * (-s / 3000.0).exp() + 0.1),
            ("train_acc".to_string(), 1.0 - (-s / 2500.0).exp()),
            ("lr".to_string(), 0.00025),
            ("grad_norm".to_string(), 1.0),
        ]
        .into();
        events.push(Event::Step { step, phase: "memorize".into(), t: 1_795_000_000.0 + s / 400.0, metrics: m });
    }
    for ascii in [false, true] {
        let mut a = app("default", RunView::from_events(&events));
        a.ascii = ascii;
        a.charts.cursor = Some(11_000);
        for (w, h) in [(160, 48), (120, 40)] {
            let s = screen(&a, w, h);
            let title = s.lines().find(|l| l.contains(" learning rate ") || l.contains(" lr @")).unwrap_or("");
            assert!(title.contains("@11 000 lr 2.50e-4"), "{w}x{h} ascii {ascii}: lr left out of the readout\n{s}");
        }
    }
}
