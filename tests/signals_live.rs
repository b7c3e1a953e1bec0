//! Signals in a real run: an `auto` rule switches phase, a `suggest` rule waits for the
//! operator (`ctl accept`), and divergence rolls back to a checkpoint with a lower lr.

use phasetop::event::{Event, LogLevel, PhaseCause, RunStatus};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn config(first_phase_extra: &str, second_lr: &str, run_extra: &str) -> String {
    format!(
        "[run]\nname='sig'\nseed=1\nmax_steps=400\nthreads=1\n{run_extra}\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=1\nwidth=16\n\
         [eval]\nevery=10\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='first'\noptimizer='sgd'\nlr=0.01\nbatch_size=32\n{first_phase_extra}\n\
         [[phase]]\nname='second'\noptimizer='sgd'\nlr={second_lr}\nbatch_size=32\n"
    )
}

fn events(run: &Path) -> Vec<Event> {
    phasetop::runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

fn headless(dir: &Path, cfg: &str) -> (std::process::Output, std::path::PathBuf) {
    let path = dir.join("sig.toml");
    std::fs::write(&path, cfg).unwrap();
    let run = dir.join("run");
    let out = Command::new(BIN).args(["train", "--headless", "--run-dir"]).arg(&run).arg(&path).output().unwrap();
    (out, run)
}

const PLATEAU_ON_LR: &str = "detector = 'plateau', metric = 'lr', params = { window = 20, ema_steps = 5 }";

#[test]
fn auto_rule_switches_phase_with_cause_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, run) = headless(
        tmp.path(),
        &config(&format!("until = {{ {PLATEAU_ON_LR}, mode = 'auto', min_steps = 5, confirm_steps = 0 }}"), "0.02", ""),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let signal_step = *fired(&evs, "plateau", "lr").first().expect("plateau(lr) fired");
    let (step, detail) = evs
        .iter()
        .find_map(|e| match e {
            Event::PhaseChanged { to, cause: PhaseCause::Rule, step, detail, .. } if to == "second" => {
                Some((*step, detail.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .expect("rule switch");
    assert_eq!(step, signal_step, "the switch happens at the step boundary after the firing");
    assert!(detail.contains("plateau(lr)"), "{detail}");
    let summary: serde_json::Value =
        serde_json::from_slice(&Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap().stdout)
            .unwrap();
    assert!(summary["signals"].as_array().unwrap().iter().any(|s| s["detector"] == "plateau"));
    assert_eq!(summary["phases"][1]["cause"], "rule");
}

/// An `auto` rule acts only when its condition still holds `confirm_steps` after the
/// firing. On a cyclical lr, a jump in lr fires on every rise and is gone (lr back under
/// the midpoint of the rise) 250 steps later: never confirmed, never switched, each
/// dropped firing logged; with `confirm_steps = 0` the first rise switches. A plateau
/// in a constant lr still holds, and switches `confirm_steps` after it fired.
#[test]
fn confirm_steps_drops_a_transient_firing_and_confirms_a_lasting_one() {
    let cyclical = |confirm: u64| {
        config(
            &format!(
                "until = {{ detector = 'jump', metric = 'lr', mode = 'auto', confirm_steps = {confirm} }}\n\
                 schedule = 'cyclical'\ncycle_steps = 400\nmin_lr = 0.005"
            ),
            "0.02",
            "",
        )
        .replace("lr=0.01\nbatch_size=32\nuntil", "lr=1.0\nbatch_size=32\nuntil")
        .replace("max_steps=400", "max_steps=1000")
    };
    let tmp = tempfile::tempdir().unwrap();
    let (out, run) = headless(tmp.path(), &cyclical(250));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let jumps = fired(&evs, "jump", "lr");
    assert!(jumps.len() >= 2, "a jump on each rise of the lr: {jumps:?}");
    assert_eq!(rule_switch(&evs), None, "never confirmed, never switched");
    let dropped =
        evs.iter().filter(|e| matches!(e, Event::Log { message, .. } if message.contains("not confirmed"))).count();
    let due = jumps.iter().filter(|&&j| j + 250 <= 1000).count();
    assert!(due >= 2, "{jumps:?}");
    assert_eq!(dropped, due, "each dropped firing is logged once due: {jumps:?}");

    let tmp = tempfile::tempdir().unwrap();
    let (out, run) = headless(tmp.path(), &cyclical(0));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    assert_eq!(rule_switch(&evs), fired(&evs, "jump", "lr").first().copied(), "unconfirmed: the first rise switches");

    let tmp = tempfile::tempdir().unwrap();
    let (out, run) = headless(
        tmp.path(),
        &config(&format!("until = {{ {PLATEAU_ON_LR}, mode = 'auto', confirm_steps = 30 }}"), "0.02", ""),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let signal_step = *fired(&evs, "plateau", "lr").first().expect("plateau(lr) fired");
    assert_eq!(rule_switch(&evs), Some(signal_step + 30), "confirmed 30 steps after the firing");
    let detail = evs
        .iter()
        .find_map(|e| match e {
            Event::PhaseChanged { cause: PhaseCause::Rule, detail, .. } => detail.clone(),
            _ => None,
        })
        .unwrap_or_default();
    assert!(detail.contains("confirmed 30 steps later"), "{detail}");
}

/// A rule whose detector fires before `min_steps` ends the phase once the phase is
/// old enough, if the condition still holds (the detector is re-armed then).
#[test]
fn min_steps_defers_a_rule_that_fired_early() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, run) = headless(
        tmp.path(),
        &config(
            &format!("until = {{ {PLATEAU_ON_LR}, mode = 'auto', min_steps = 100, confirm_steps = 0 }}"),
            "0.02",
            "",
        ),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let fired = fired(&evs, "plateau", "lr");
    assert!(fired.first().is_some_and(|&s| s < 100), "the plateau is seen early: {fired:?}");
    let switch = rule_switch(&evs).expect("the rule ends the phase");
    assert_eq!(switch, 100, "at min_steps, the condition still holding: {fired:?}");
    assert!(fired.contains(&100), "re-armed, the detector fires again at min_steps: {fired:?}");
}

/// A rule switch on a probe step must not cost that step's probe (nor its eval).
#[test]
fn probe_and_eval_run_at_a_rule_switch_step() {
    let tmp = tempfile::tempdir().unwrap();
    // Probes and evals at every step: whichever step the rule fires at is one of theirs.
    let cfg = config(&format!("until = {{ {PLATEAU_ON_LR}, mode = 'auto', confirm_steps = 0 }}"), "0.02", "")
        .replace("max_steps=400", "max_steps=80")
        .replace("[eval]\nevery=10", "[eval]\nevery=1\n[probes]\nevery=1\nlayers=['mlp.0']");
    let (out, run) = headless(tmp.path(), &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let switch = evs
        .iter()
        .find_map(|e| match e {
            Event::PhaseChanged { cause: PhaseCause::Rule, step, .. } => Some(*step),
            _ => None,
        })
        .expect("a rule switch");
    assert!(switch > 0 && switch < 80, "{switch}");
    let probes: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Probe { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(probes, (0..=80).collect::<Vec<_>>(), "one probe a step, the switch step {switch} included");
    assert!(evs.iter().any(|e| matches!(e, Event::Eval { step, .. } if *step == switch)), "eval at {switch}");
}

#[test]
fn suggest_rule_waits_for_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sig.toml");
    let cfg = config(&format!("until = {{ {PLATEAU_ON_LR}, mode = 'suggest' }}"), "0.02", "")
        .replace("max_steps=400", "max_steps=100000000");
    std::fs::write(&path, cfg).unwrap();
    let run = tmp.path().join("run");
    let mut child = Command::new(BIN)
        .args(["train", "--headless", "--run-dir"])
        .arg(&run)
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        if run.join("events.log").exists()
            && let Some(id) = events(&run).iter().find_map(|e| match e {
                Event::Suggestion { id, to_phase, .. } if to_phase == "second" => Some(*id),
                _ => None,
            })
        {
            break id;
        }
        assert!(Instant::now() < deadline, "no suggestion");
        std::thread::sleep(Duration::from_millis(50));
    };
    // `ctl status` lists it, with its id.
    let status = Command::new(BIN).arg("ctl").arg(&run).arg("status").output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains(&format!("\"suggestions\":[{{\"id\":{id},\"to_phase\":\"second\"")), "{status}");
    // A suggestion changes nothing by itself.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!events(&run).iter().any(|e| matches!(e, Event::PhaseChanged { to, .. } if to == "second")));
    let bad = Command::new(BIN).arg("ctl").arg(&run).args(["accept", "999"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no pending suggestion 999"));
    let ok = Command::new(BIN).arg("ctl").arg(&run).args(["accept", &id.to_string()]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let again = Command::new(BIN).arg("ctl").arg(&run).arg("dismiss").output().unwrap();
    assert_eq!(again.status.code(), Some(1), "the suggestion is gone once accepted");
    assert!(Command::new(BIN).arg("ctl").arg(&run).arg("stop").status().unwrap().success());
    child.wait().unwrap();
    let evs = events(&run);
    assert!(evs.iter().any(|e| matches!(e,
        Event::PhaseChanged { to, cause: PhaseCause::Suggestion, detail: Some(d), .. }
            if to == "second" && d.contains("accepted") && d.contains("plateau(lr)"))));
    let summary: serde_json::Value =
        serde_json::from_slice(&Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap().stdout)
            .unwrap();
    let answered = summary["suggestions"].as_array().unwrap().iter().find(|g| g["id"] == id).cloned();
    assert_eq!(answered.as_ref().map(|g| g["state"].clone()), Some("accepted".into()), "{summary}");
}

/// Issue 23: a suggestion stays open long enough for a person to act, whatever the step
/// rate. Where the plan would end the phase by itself (`steps`), the run waits for the
/// answer while the suggestion is younger than `open_s`; `hold = true` pauses the run
/// at once until it is answered; unanswered, it expires with a line saying so.
#[test]
fn suggestions_stay_open_for_people_and_hold_pauses_until_answered() {
    let spawn = |dir: &Path, extra: &str| {
        let cfg = config(&format!("until = {{ {PLATEAU_ON_LR}, mode = 'suggest'{extra} }}\nsteps = 60"), "0.02", "");
        let path = dir.join("sig.toml");
        std::fs::write(&path, cfg).unwrap();
        let run = dir.join("run");
        let child = Command::new(BIN)
            .args(["train", "--headless", "--run-dir"])
            .arg(&run)
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        (child, run)
    };
    let wait_for = |run: &Path, what: &str, f: &dyn Fn(&[Event]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(run.join("events.log").exists() && f(&events(run))) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let ctl = |run: &Path, words: &[&str]| {
        let out = Command::new(BIN).arg("ctl").arg(run).args(words).output().unwrap();
        assert!(out.status.success(), "ctl {words:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let logged = |evs: &[Event], words: &str| {
        evs.iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains(words)))
    };

    // The phase's 60 steps end while the suggestion is young: the run waits there.
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, run) = spawn(tmp.path(), "");
    wait_for(&run, "the wait at the phase's end", &|e| logged(e, "stays open"));
    let evs = events(&run);
    assert!(!evs.iter().any(|e| matches!(e, Event::PhaseChanged { to, .. } if to == "second")), "no switch yet");
    let last = evs.iter().filter_map(|e| if let Event::Step { step, .. } = e { Some(*step) } else { None }).max();
    assert_eq!(last, Some(60), "it waits at the plan's step");
    ctl(&run, &["accept"]);
    wait_for(&run, "the accepted switch", &|e| {
        e.iter().any(
            |e| matches!(e, Event::PhaseChanged { to, cause: PhaseCause::Suggestion, step: 60, .. } if to == "second"),
        )
    });
    ctl(&run, &["stop"]);
    child.wait().unwrap();

    // `hold = true`: paused at the suggestion, resumed by the answer; the plan goes on.
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, run) = spawn(tmp.path(), ", hold = true");
    wait_for(&run, "the rule's pause", &|e| {
        e.iter().any(|e| matches!(e, Event::Command { client, command: phasetop::event::Command::Pause, .. } if client == "rule"))
    });
    assert!(ctl(&run, &["status"]).contains("\"paused\":true"));
    ctl(&run, &["dismiss"]);
    wait_for(&run, "the scheduled switch after the answer", &|e| {
        e.iter().any(|e| matches!(e, Event::PhaseChanged { cause: PhaseCause::Scheduled, .. }))
    });
    let evs = events(&run);
    assert!(evs.iter().any(
        |e| matches!(e, Event::Command { client, command: phasetop::event::Command::Resume, .. } if client == "rule")
    ));
    ctl(&run, &["stop"]);
    child.wait().unwrap();

    // Unanswered: after its open_s the plan acts, and the suggestion expires, said in
    // the log and by inspect.
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, run) = spawn(tmp.path(), ", open_s = 1.0");
    wait_for(&run, "the scheduled switch", &|e| {
        e.iter().any(|e| matches!(e, Event::PhaseChanged { cause: PhaseCause::Scheduled, .. }))
    });
    wait_for(&run, "the expiry line", &|e| logged(e, "expired unanswered: the phase changed"));
    ctl(&run, &["stop"]);
    child.wait().unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap().stdout)
            .unwrap();
    assert!(summary["suggestions"].as_array().unwrap().iter().all(|g| g["state"] == "expired"), "{summary}");
}

/// `rollback_on_spike`: a spike (or divergence) signal on a finite loss (here the jump to
/// a far too large lr) rolls back too, and the detectors resume from their state at the
/// checkpoint.
#[test]
fn a_loss_spike_rolls_back_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("steps = 40", "20", "on_divergence = 'rollback_on_spike'\nrollback_lr_factor = 0.1");
    let (out, run) = headless(tmp.path(), &cfg);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let evs = events(&run);
    let losses: Vec<f64> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Log { level: LogLevel::Warn, message, .. } if message.contains("rolled back to step 40") => {
                message.strip_prefix("train_loss ")?.split(':').next()?.parse().ok()
            }
            _ => None,
        })
        .collect();
    assert!(losses.first().is_some_and(|l| l.is_finite()), "a finite spike rolled back: {losses:?}");
    let spikes = fired(&evs, "spike", "train_loss").len() + fired(&evs, "divergence", "train_loss").len();
    assert!(spikes >= losses.len(), "each rollback follows a spike or divergence signal");
}

#[test]
fn divergence_rolls_back_with_lower_lr_then_gives_up() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("steps = 30", "1e12", "on_divergence = 'rollback'\nrollback_lr_factor = 0.5");
    let (out, run) = headless(tmp.path(), &cfg);
    assert_eq!(out.status.code(), Some(1), "a diverged run exits 1");
    let evs = events(&run);
    let rollbacks: Vec<&String> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Log { level: LogLevel::Warn, message, .. } if message.contains("rolled back to step 30") => {
                Some(message)
            }
            _ => None,
        })
        .collect();
    assert_eq!(rollbacks.len(), 3, "{rollbacks:?}");
    assert!(rollbacks[0].contains("lr 1e12 → 5e11"), "{}", rollbacks[0]);
    assert!(evs.iter().any(|e| matches!(e, Event::Signal { detector, .. } if detector == "divergence")));
    assert!(matches!(evs.last(), Some(Event::RunEnded { status: RunStatus::Diverged, .. })));
    let restarts = evs.iter().filter(|e| matches!(e, Event::RunStarted { resumed_from_step: Some(30), .. })).count();
    assert_eq!(restarts, 3);
}

/// Probes run every `probes.every` steps (and at step 0, the collapse baseline) on the
/// listed layers only; a phase with two loss terms records their gradient cosine at the
/// same steps, and a single-term phase does not.
#[test]
fn probes_and_gradient_alignment_follow_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[run]\nname='probe'\nseed=3\nmax_steps=60\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=2\nwidth=16\n\
         [probes]\nevery=20\nlayers=['mlp.1']\nbatch=32\n[eval]\nevery=0\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='two-terms'\nsteps=40\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n\
         loss=[{kind='l2', weight=0.01}, {kind='ce', weight=1.0}]\n\
         [[phase]]\nname='one-term'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n";
    let (out, run) = headless(dir.path(), cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let evs = events(&run);
    let probes: Vec<(u64, &str, &phasetop::event::Metrics)> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Probe { step, layer, metrics } => Some((*step, layer.as_str(), metrics)),
            _ => None,
        })
        .collect();
    assert_eq!(probes.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 20, 40, 60]);
    for (_, layer, m) in &probes {
        assert_eq!(*layer, "mlp.1");
        for name in phasetop::probes::PROBE_METRICS {
            let v = m.get(name).copied().unwrap_or(f64::NAN);
            assert!(v.is_finite(), "{name} = {v}");
        }
        let rank = m["eff_rank"];
        assert!((1.0..=16.0 + 1e-9).contains(&rank), "effective rank {rank} outside [1, width]");
        assert!((m["diversity"] + m["mean_cos"] - 1.0).abs() < 1e-12);
    }
    let aligned: Vec<(u64, f64)> = evs
        .iter()
        .filter_map(|e| match e {
            // Named with the terms sorted, whatever the phase's order.
            Event::Step { step, metrics, .. } => metrics.get("grad_cos/ce~l2").map(|c| (*step, *c)),
            _ => None,
        })
        .collect();
    assert_eq!(aligned.iter().map(|a| a.0).collect::<Vec<_>>(), vec![20, 40], "only while two terms are on");
    for (_, c) in aligned {
        assert!((-1.0..=1.0).contains(&c), "cosine {c}");
    }
}

/// Two copies of the same loss term have identical gradients: cosine exactly 1.
#[test]
fn gradient_alignment_of_identical_terms_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[run]\nname='align'\nseed=3\nmax_steps=20\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=2\nwidth=16\n\
         [probes]\nevery=10\n[eval]\nevery=0\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='p'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n\
         loss=[{kind='ce', weight=1.0}, {kind='ce', weight=0.25}]\n";
    let (out, run) = headless(dir.path(), cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cos: Vec<f64> = events(&run)
        .iter()
        .filter_map(|e| match e {
            Event::Step { metrics, .. } => metrics.get("grad_cos/ce~ce").copied(),
            _ => None,
        })
        .collect();
    assert_eq!(cos.len(), 2);
    for c in cos {
        assert!((c - 1.0).abs() < 1e-9, "cosine {c}");
    }
}

/// With probes off, a phase with two loss terms still records their gradient cosine,
/// every evaluation interval.
#[test]
fn gradient_alignment_rides_on_the_eval_schedule_when_probes_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = "[run]\nname='align'\nseed=3\nmax_steps=30\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=2\nwidth=16\n\
         [eval]\nevery=10\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='p'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n\
         loss=[{kind='ce', weight=1.0}, {kind='mse', weight=0.5}]\n";
    let (out, run) = headless(dir.path(), cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<u64> = events(&run)
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, metrics, .. } => metrics.get("grad_cos/ce~mse").map(|_| *step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, vec![10, 20, 30]);
}

/// A rule may name a gradient-cosine pair in either order; it watches the recorded name.
#[test]
fn grad_cos_rule_watches_the_sorted_pair() {
    use phasetop::rules::{RuleOutcome, SignalState};
    let cfg = phasetop::config::parse(
        "rule.toml",
        "[run]\nname='r'\nmax_steps=10\n[task]\nkind='gaussian'\n[model]\nkind='mlp'\n[probes]\nevery=5\n\
         [[phase]]\nname='a'\noptimizer='sgd'\nlr=0.1\nbatch_size=8\nloss=[{kind='mse'}, {kind='ce'}]\n\
         until={detector='divergence', metric='grad_cos/mse~ce', mode='auto', confirm_steps=0}\n\
         [[phase]]\nname='b'\noptimizer='sgd'\nlr=0.1\nbatch_size=8\n",
    )
    .unwrap();
    let mut state = SignalState::new(&cfg.phases[0]);
    let name = phasetop::event::grad_cos_metric("mse", "ce");
    assert_eq!(name, "grad_cos/ce~mse");
    let fired = state.push(5, 5, &[(name, f64::NAN)].into());
    let sig = fired.iter().find(|s| s.detector == "divergence").expect("the rule's detector watches grad_cos/ce~mse");
    assert!(matches!(state.judge(sig, 5, Some("b")), Some(RuleOutcome::Switch { .. })));
}

/// (step, detector, metric) of every signal after `after`, in log order.
fn signals_after(evs: &[Event], after: u64) -> Vec<(u64, String, String)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Signal { step, detector, metric, .. } if *step > after => {
                Some((*step, detector.clone(), metric.clone()))
            }
            _ => None,
        })
        .collect()
}

/// Steps at which `detector` fired on `metric`.
fn fired(evs: &[Event], detector: &str, metric: &str) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Signal { detector: d, metric: m, step, .. } if d == detector && m == metric => Some(*step),
            _ => None,
        })
        .collect()
}

fn rule_switch(evs: &[Event]) -> Option<u64> {
    evs.iter().find_map(|e| match e {
        Event::PhaseChanged { cause: PhaseCause::Rule, step, .. } => Some(*step),
        _ => None,
    })
}

/// After `--resume` or `branch` the detectors go on from the run's logged history: a
/// collapse baseline is the run's first points, not the first after the checkpoint, and
/// nothing that fired before the restart is reported again.
#[test]
fn resume_and_branch_keep_the_detectors_history() {
    let tmp = tempfile::tempdir().unwrap();
    // lr falls along a cosine; the rule fires when it is below half its value at the start.
    let cfg = "[run]\nname='hist'\nseed=2\nmax_steps=900\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=1\nwidth=16\n\
         [probes]\nevery=10\nlayers=['mlp.0']\n[eval]\nevery=10\n[checkpoint]\nevery=100\nkeep=100\n\
         [[phase]]\nname='decay'\nsteps=1000\noptimizer='sgd'\nlr=0.05\nschedule='cosine'\nbatch_size=32\n\
         until={detector='collapse', metric='lr', mode='auto', confirm_steps=0, params={fraction=0.5, min_z=0.0}}\n\
         [[phase]]\nname='after'\noptimizer='sgd'\nlr=0.01\nbatch_size=32\n";
    let (out, whole) = headless(tmp.path(), cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = events(&whole);
    let switch = rule_switch(&a).expect("the collapse rule switches the uninterrupted run");
    assert!((480..560).contains(&switch), "lr halves near step 500, switched at {switch}");

    // Ended part-way (at step 300, with a checkpoint there), then resumed to the end: the
    // same run, only run.json's max_steps is raised in between.
    let run = tmp.path().join("resumed");
    let out = Command::new(BIN)
        .args(["train", "--headless", "--max-steps", "300", "--run-dir"])
        .arg(&run)
        .arg(tmp.path().join("sig.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stopped = events(&run);
    let k = 300;
    assert!(matches!(stopped.last(), Some(Event::RunEnded { step: 300, .. })));
    let meta_path = run.join("run.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["max_steps"] = 900.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let out = Command::new(BIN).args(["train", "--resume"]).arg(&run).arg("--headless").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let b = events(&run);
    let after_resume = &b[stopped.len()..];
    assert!(matches!(after_resume[0], Event::RunStarted { resumed_from_step: Some(s), .. } if s == k));
    assert_eq!(rule_switch(after_resume), Some(switch), "resumed from {k}: the baseline is the run's start");
    assert_eq!(signals_after(after_resume, 0), signals_after(&a, k), "the resumed run's signals are the whole run's");

    // A branch from the whole run's checkpoint at 300 continues its detectors too.
    let child_dir = tmp.path().join("child");
    let out = Command::new(BIN)
        .args(["branch"])
        .arg(&whole)
        .args(["--at", "300", "--headless", "--run-dir"])
        .arg(&child_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = events(&child_dir);
    assert_eq!(rule_switch(&c), Some(switch), "the branch's baseline is the parent's start");
    assert_eq!(signals_after(&c, 0), signals_after(&a, 300));
}
