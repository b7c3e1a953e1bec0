use super::*;

const PLAN: &str = "[run]\nname = \"t\"\nmax_steps = 100\n\n[[phase]]\nname = \"warm\"\nsteps = 10\nlr = 0.1\n\n[[phase]]\nname = \"main\"\nlr = 0.01\n";

fn state(dir: &std::path::Path, protocol: u32) -> State {
    let log = crate::session::RunLog::create(&dir.join("events.log")).unwrap();
    let cfg = crate::config::external::parse("plan.toml", PLAN).unwrap();
    let mut s = State::new(log, cfg, "t".into(), None);
    let hello = serde_json::json!({"type": "hello", "protocol": protocol, "rank": 0, "world_size": 1});
    let welcome = s.job("test", serde_json::from_value(hello).unwrap()).unwrap();
    assert_eq!(welcome["boundary"], 10, "the first phase ends at its steps");
    s
}

fn changes(s: &mut State, dir: &std::path::Path) -> Vec<(u64, String, PhaseCause)> {
    s.flush_log().unwrap();
    let all = crate::runlog::read_all(&dir.join("events.log")).unwrap();
    all.records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::PhaseChanged { step, to, cause, .. } => Some((step, to, cause)),
            _ => None,
        })
        .collect()
}

/// Issue 27: steps go forward; a training point that goes back is refused with a
/// reason in the next sync, a late held-out point is recorded.
#[test]
fn points_that_go_back_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 2);
    let log = |points: serde_json::Value| {
        serde_json::from_value(serde_json::json!({"type": "log", "points": points})).unwrap()
    };
    s.job("test", log(serde_json::json!([{"step": 10, "metrics": {"train_loss": 1.0}}, {"step": 4, "metrics": {"train_loss": 2.0}}, {"step": 5, "metrics": {"val_loss": 3.0}}])));
    let c = s.sync(11, None);
    assert!(c.errors.iter().any(|e| e.contains("step 4 (rank 0) goes back: the run is at step 10")), "{:?}", c.errors);
    s.flush_log().unwrap();
    let all = crate::runlog::read_all(&tmp.path().join("events.log")).unwrap();
    let steps: Vec<u64> = all
        .records
        .iter()
        .filter_map(|r| match &r.event {
            Event::Step { step, .. } | Event::Eval { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [10, 5], "step 4 refused, the late val point kept");
}

/// Issue 27: the recorded rate is the script's (by the `t` of its points), not the
/// rate a batch of points arrives at (a thousand at once).
#[test]
fn steps_per_s_is_the_scripts_rate_by_its_own_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 2);
    let points: Vec<serde_json::Value> = (1..=1000u64)
        .map(|i| serde_json::json!({"step": i, "t": 1000.0 + i as f64 / 100.0, "metrics": {"train_loss": 1.0}}))
        .collect();
    let frame = serde_json::json!({"type": "log", "points": points});
    s.job("test", serde_json::from_value(frame).unwrap());
    s.flush_open();
    s.flush_log().unwrap();
    let all = crate::runlog::read_all(&tmp.path().join("events.log")).unwrap();
    let rate = all.records.iter().rev().find_map(|r| match &r.event {
        Event::Step { metrics, .. } => metrics.get("steps_per_s").copied(),
        _ => None,
    });
    assert!(rate.is_some_and(|r| (r - 100.0).abs() < 1.0), "100 steps/s by the script's clock: {rate:?}");
}

#[test]
fn protocol_1_logs_a_switch_at_the_sync_that_delivers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 1);
    assert!(!s.sync(3, None).phase_changed);
    assert!(s.command(Command::Switch { phase: "main".into() }, "ctl").ok);
    let c = s.sync(4, None);
    assert!(c.phase_changed);
    assert_eq!(c.phase, "main");
    assert_eq!(changes(&mut s, tmp.path()), vec![(4, "main".into(), PhaseCause::Manual)]);
}

#[test]
fn protocol_2_logs_a_switch_at_the_step_the_job_applied_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 2);
    assert!(s.command(Command::Switch { phase: "main".into() }, "ctl").ok);
    let c = s.sync(4, None);
    assert!(c.phase_changed && c.phase == "main" && c.settings["lr"] == 0.01);
    assert_eq!(c.boundary, None, "no boundary while a switch is in flight");
    // Delivered, not applied yet: nothing logged, nothing else switches, and the
    // answers say the phase the job will be in, unchanged.
    assert!(changes(&mut s, tmp.path()).is_empty());
    assert!(!s.command(Command::Switch { phase: "main".into() }, "ctl").ok, "already switching");
    let c = s.sync(5, None);
    assert!(!c.phase_changed && c.phase == "main");
    // The job met its ranks at step 7 and applied it there.
    let c = s.sync(7, Some(7));
    assert!(!c.phase_changed);
    assert_eq!(c.boundary, Some(100), "main has no steps: max_steps is next");
    assert_eq!(changes(&mut s, tmp.path()), vec![(7, "main".into(), PhaseCause::Manual)]);
    // A stray `applied` with nothing in flight changes nothing.
    s.sync(8, Some(8));
    assert_eq!(changes(&mut s, tmp.path()).len(), 1);
}

#[test]
fn protocol_2_scheduled_switch_lands_on_its_boundary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 2);
    for step in 1..10 {
        assert!(!s.sync(step, None).phase_changed);
    }
    // The client asks and waits at the boundary, applies there, says so next sync.
    let c = s.sync(10, None);
    assert!(c.phase_changed && c.phase == "main");
    assert!(!s.sync(10, Some(10)).phase_changed, "the second sync at the boundary only acknowledges");
    assert_eq!(changes(&mut s, tmp.path()), vec![(10, "main".into(), PhaseCause::Scheduled)]);
    assert!(s.sync(100, None).should_stop, "max_steps");
}

/// Rank 0 back after losing the host (`hello` with `rejoin`): its next sync records,
/// once, which steps went unrecorded; a rejoin read after the job finished (a hello
/// queued while the host was stopped) starts nothing.
#[test]
fn a_rejoin_says_once_which_steps_went_unrecorded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = state(tmp.path(), 2);
    let frame = |v: serde_json::Value| serde_json::from_value(v).unwrap();
    s.job("test", frame(serde_json::json!({"type": "log", "points": [{"step": 5, "metrics": {"train_loss": 1.0}}]})));
    s.sync(5, None);
    let hello = serde_json::json!({"type": "hello", "protocol": 2, "rank": 0, "world_size": 1, "rejoin": 5});
    let welcome = s.job("test", frame(hello.clone())).unwrap();
    assert_eq!(welcome["type"], "welcome");
    s.sync(40, None);
    s.sync(41, None);
    s.job("test", frame(serde_json::json!({"type": "finish", "step": 41})));
    s.job("test", frame(hello));
    s.flush_log().unwrap();
    let lines: Vec<String> = crate::runlog::read_all(&tmp.path().join("events.log"))
        .unwrap()
        .records
        .into_iter()
        .filter_map(|r| match r.event {
            Event::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    let gaps: Vec<&String> = lines.iter().filter(|l| l.contains("went unrecorded")).collect();
    assert_eq!(gaps.len(), 1, "{lines:?}");
    assert!(gaps[0].contains("at step 40: steps 6 to 39 went unrecorded"), "{}", gaps[0]);
    assert_eq!(lines.iter().filter(|l| l.contains("again after losing this host at step 5")).count(), 1, "{lines:?}");
    // A rejoin's step is bounded like every step.
    let big = serde_json::json!({"type": "hello", "rank": 0, "rejoin": 1u64 << 60});
    assert!(crate::external::protocol::parse(big.to_string().as_bytes()).is_err());
}
