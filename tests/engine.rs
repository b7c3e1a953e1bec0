//! The engine end to end with real libtorch: determinism, checkpoints, phase switches,
//! live control over the socket, kill -9 then inspect and resume.

use phasetop::config;
use phasetop::event::{Event, PhaseCause, RunStatus};
use phasetop::runlog;
use phasetop::tch;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

/// A small, fast config: two phases, the first ending after `switch_at` steps.
fn small_config(max_steps: u64, switch_at: u64, extra_first: &str) -> String {
    format!(
        r#"[run]
name = "small"
seed = 3
max_steps = {max_steps}
threads = 1

[task]
kind = "gaussian"
dim = 8
classes = 3
n_train = 512
n_val = 128

[model]
kind = "mlp"
depth = 2
width = 32

[eval]
every = 10

[checkpoint]
every = 20

[[phase]]
name = "warm"
steps = {switch_at}
optimizer = "adam"
lr = 0.01
batch_size = 32
{extra_first}

[[phase]]
name = "main"
optimizer = "sgd"
lr = 0.05
momentum = 0.9
batch_size = 32
"#
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("small.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn events(run: &Path) -> Vec<Event> {
    runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

fn losses(evs: &[Event]) -> Vec<(u64, f64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Step { step, metrics, .. } => Some((*step, metrics["train_loss"])),
            _ => None,
        })
        .collect()
}

fn train_headless(cfg: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["train", cfg.to_str().unwrap(), "--headless", "--run-dir", run.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn same_seed_same_losses_and_phase_switch_between_steps() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &small_config(60, 25, ""));
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for run in [&a, &b] {
        let out = train_headless(&cfg, run, &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (ea, eb) = (events(&a), events(&b));
    let (la, lb) = (losses(&ea), losses(&eb));
    assert_eq!(la.len(), 60);
    assert_eq!(la, lb, "same config and seed must give the same loss sequence");
    assert!(la.iter().all(|(_, l)| l.is_finite()));

    // A different seed gives a different sequence (the test could fail).
    let c = tmp.path().join("c");
    assert!(train_headless(&cfg, &c, &["--seed", "4"]).status.success());
    assert_ne!(losses(&events(&c)), la);

    // The switch sits exactly between step 25 and step 26, and every step after it
    // belongs to the new phase.
    let pos =
        ea.iter().position(|e| matches!(e, Event::PhaseChanged { to, .. } if to == "main")).expect("phase change");
    let Event::PhaseChanged { step, cause, from, .. } = &ea[pos] else { unreachable!() };
    assert_eq!((*step, *cause, from.as_deref()), (25, PhaseCause::Scheduled, Some("warm")));
    for e in &ea {
        if let Event::Step { step, phase, .. } = e {
            assert_eq!(phase, if *step <= 25 { "warm" } else { "main" }, "step {step}");
        }
    }
    assert!(matches!(ea.last(), Some(Event::RunEnded { status: RunStatus::Completed, step: 60, .. })));
    // The run states what monitoring it cost: a total and its parts, as shares.
    let cost = ea
        .iter()
        .find_map(|e| match e {
            Event::Log { message, .. } if message.starts_with("monitoring took") => Some(message.clone()),
            _ => None,
        })
        .expect("a monitoring cost line");
    let words: Vec<&str> = cost.split_whitespace().collect();
    let shares: Vec<f64> =
        words.windows(2).filter(|w| w[1].starts_with('%')).map(|w| w[0].parse::<f64>().expect("a share")).collect();
    assert_eq!(shares.len(), 6, "{cost}");
    let parts: f64 = shares[1..].iter().sum();
    assert!((shares[0] - parts).abs() < 0.35 && shares[0] > 0.0 && shares[0] < 100.0, "{cost}");
    assert!(shares[1] > 0.0 && shares[2] > 0.0, "metrics and evaluation both ran: {cost}");
    let story = Command::new(BIN).args(["replay", "--headless"]).arg(&a).output().unwrap();
    assert!(story.status.success());
    let story = String::from_utf8_lossy(&story.stdout);
    assert!(story.contains("       25  phase     warm → main (scheduled)"), "{story}");
    assert!(story.contains("       60  end       completed"), "{story}");
    assert!(story.contains("status       completed at step 60"), "{story}");
    // Two runs: each story, then their final metrics side by side.
    let both = Command::new(BIN).args(["replay", "--headless"]).arg(&a).arg(&c).output().unwrap();
    assert!(both.status.success());
    let both = String::from_utf8_lossy(&both.stdout);
    assert_eq!(both.matches("       60  end       completed").count(), 2, "{both}");
    let table = both.split("== comparison (final values) ==").nth(1).expect("a comparison table");
    let header = table.lines().nth(1).unwrap();
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["metric", "a", "c"], "{table}");
    assert!(table.lines().any(|l| l.starts_with("train_loss")), "{table}");
    let stdout = String::from_utf8_lossy(&train_headless(&cfg, &tmp.path().join("d"), &["--max-steps", "30"]).stdout)
        .to_string();
    assert!(stdout.contains("       25  phase     warm → main (scheduled)"), "{stdout}");
    assert!(stdout.contains("       30  end       completed"), "{stdout}");
}

#[test]
fn checkpoint_round_trip_restores_weights_and_adam_moments() {
    use phasetop::trainer::{Trainer, checkpoint};
    let cfg = config::parse("small.toml", &small_config(100, 100, "")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(&cfg, 3).unwrap();
    for _ in 0..15 {
        a.train_step();
    }
    checkpoint::save(&a, tmp.path(), false).unwrap();
    let meta = checkpoint::list(tmp.path()).pop().unwrap();
    assert_eq!(meta.step, 15);
    let mut b = Trainer::new(&cfg, 3).unwrap();
    let warnings = checkpoint::restore(&mut b, tmp.path(), &meta).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // If Adam's moments had not been restored, the next updates would differ.
    for _ in 0..5 {
        let (ma, mb) = (a.train_step(), b.train_step());
        assert_eq!(ma["train_loss"], mb["train_loss"]);
        assert_eq!(ma["dist_init"], mb["dist_init"]);
    }
    // A cold optimizer diverges from the warm one: the check above can fail.
    let mut c = Trainer::new(&cfg, 3).unwrap();
    checkpoint::restore(&mut c, tmp.path(), &meta).unwrap();
    c.switch_to(0); // same phase, but reset_optimizer is false: state kept
    let mut cold = Trainer::new(&cfg, 3).unwrap();
    checkpoint::restore(&mut cold, tmp.path(), &meta).unwrap();
    cold.reset_optimizer();
    let (mc, mcold) = (c.train_step(), cold.train_step());
    assert_eq!(mc["train_loss"], mcold["train_loss"], "same weights → same loss at the first step");
    let (mc, mcold) = (c.train_step(), cold.train_step());
    assert_ne!(mc["train_loss"], mcold["train_loss"], "cold Adam must move differently");
}

/// A rollback's checkpoint is the newest good one: a checkpoint taken after an update
/// that blew up (NaN in a parameter) is passed over, and with no good one nothing is
/// restored.
#[test]
fn rollback_passes_over_checkpoints_with_non_finite_values() {
    use phasetop::trainer::{Trainer, checkpoint};
    let cfg = config::parse("small.toml", &small_config(100, 100, "")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Trainer::new(&cfg, 3).unwrap();
    for _ in 0..5 {
        a.train_step();
    }
    checkpoint::save(&a, tmp.path(), false).unwrap();
    let next_loss = a.train_step()["train_loss"];
    for _ in 0..4 {
        a.train_step();
    }
    checkpoint::save(&a, tmp.path(), false).unwrap();
    // Step 10's update blew up: one weight of its checkpoint is NaN.
    let path = checkpoint::tensors_path(tmp.path(), 10);
    let mut tensors = tch::Tensor::read_safetensors(&path).unwrap();
    let (_, weight) = tensors.iter_mut().find(|(name, _)| name.starts_with("model.")).unwrap();
    let _ = weight.get(0).fill_(f64::NAN);
    tch::Tensor::write_safetensors(&tensors, &path).unwrap();

    let mut b = Trainer::new(&cfg, 3).unwrap();
    let (restored, passed_over) = checkpoint::restore_last_good(&mut b, tmp.path());
    assert_eq!(restored.map(|(meta, _)| meta.step), Some(5));
    assert_eq!(passed_over.len(), 1, "{passed_over:?}");
    assert!(passed_over[0].contains("step 10") && passed_over[0].contains("non-finite"), "{passed_over:?}");
    assert_eq!(b.train_step()["train_loss"], next_loss, "training goes on from the good state");

    std::fs::remove_file(checkpoint::tensors_path(tmp.path(), 5)).unwrap();
    let mut c = Trainer::new(&cfg, 3).unwrap();
    let (restored, passed_over) = checkpoint::restore_last_good(&mut c, tmp.path());
    assert!(restored.is_none() && passed_over.len() == 1, "{passed_over:?}");
    assert_eq!(c.step(), 0, "nothing restored");
    assert!(c.train_step()["train_loss"].is_finite());
}

struct Live {
    child: Child,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_live(cfg: &Path, run: &Path) -> Live {
    let child = Command::new(BIN)
        .args(["train", cfg.to_str().unwrap(), "--headless", "--run-dir", run.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let live = Live { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "host never opened its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    live
}

fn ctl(run: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("ctl").arg(run).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctl_controls_a_live_run() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &small_config(10_000_000, 10_000_000, ""));
    let run = tmp.path().join("run");
    let mut live = start_live(&cfg, &run);

    // Pause so that the steps around each command can be checked exactly.
    let (code, out, err) = ctl(&run, &["pause"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("paused at step"), "{out}");

    let (code, _, err) = ctl(&run, &["switch", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown phase \"nosuch\", expected one of warm, main"), "{err}");
    // An unknown key is the grammar's refusal (exit 2, nothing sent), with the host's text.
    let (code, _, err) = ctl(&run, &["set", "momentum_x=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown key \"momentum_x\""), "{err}");
    let (code, _, err) = ctl(&run, &["set", "lr=abc"]);
    assert_eq!(code, 2, "{err}");

    let (code, out, _) = ctl(&run, &["set", "lr=0.005"]);
    assert_eq!(code, 0);
    assert!(out.contains("lr = 0.005"), "{out}");
    let (code, out, _) = ctl(&run, &["switch", "main"]);
    assert_eq!(code, 0);
    assert!(out.contains("switched warm → main"), "{out}");
    let switch_step: u64 = out.trim_start_matches("step ").split(':').next().unwrap().parse().unwrap();

    // Malformed requests on the raw socket are refused and the run goes on.
    for junk in ["not json\n", "{\"cmd\":\"explode\"}\n", "{\"cmd\":\"set\",\"key\":\"lr\"}\n", "\u{0}\u{1}\n"] {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(run.join("control.sock")).unwrap();
        s.write_all(junk.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.contains("\"ok\":false"), "{junk:?} → {line}");
    }
    // An edited plan: future phases may change; the past, the task and the model may not.
    let edited = tmp.path().join("edited.toml");
    let base = small_config(10_000_000, 10_000_000, "");
    std::fs::write(
        &edited,
        format!("{base}\n[[phase]]\nname = \"cool\"\noptimizer = \"sgd\"\nlr = 0.001\nbatch_size = 32\n"),
    )
    .unwrap();
    let (code, out, err) = ctl(&run, &["plan", edited.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warm → main → cool"), "{out}");
    std::fs::write(&edited, base.replace("width = 32", "width = 64")).unwrap();
    let (code, _, err) = ctl(&run, &["plan", edited.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("[model] cannot change in a live run"), "{err}");
    std::fs::write(&edited, base.replace("lr = 0.05", "lr = \"fast\"")).unwrap();
    let (code, _, err) = ctl(&run, &["plan", edited.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("config.toml:") && err.contains("invalid type"), "{err}");
    let (code, _, err) = ctl(&run, &["switch", "cool"]);
    assert_eq!(code, 0, "the new phase can be switched to: {err}");

    let (code, out, _) = ctl(&run, &["resume"]);
    assert_eq!(code, 0, "{out}");
    // Wait for a step trained after the switch to be in the log.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events(&run).iter().any(|e| matches!(e, Event::Step { step, .. } if *step > switch_step)) {
        assert!(Instant::now() < deadline, "no step after resuming");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, _) = ctl(&run, &["checkpoint"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = ctl(&run, &["stop"]);
    assert_eq!(code, 0, "{out}");
    assert!(wait_exit(&mut live.child, 60).success());

    let evs = events(&run);
    let mut after_switch = evs.iter().filter_map(|e| match e {
        Event::Step { step, phase, metrics, .. } if *step > switch_step => Some((phase.clone(), metrics["lr"])),
        _ => None,
    });
    let (phase, lr) = after_switch.next().expect("steps after the switch");
    assert_eq!(phase, "cool", "paused through both switches: the first step after them is in cool");
    assert_eq!(lr, 0.001, "an override ends with its phase");
    assert!(evs.iter().any(|e| matches!(e, Event::PlanChanged { phases, .. } if phases.len() == 3)));
    let before: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, phase, .. } if *step <= switch_step => Some(phase.as_str()),
            _ => None,
        })
        .collect();
    assert!(before.iter().all(|p| *p == "warm"));
    let refused = evs.iter().filter(|e| matches!(e, Event::Command { applied: false, .. })).count();
    assert_eq!(refused, 3, "unknown phase and two bad plans are recorded as refused");
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::PhaseChanged { cause: PhaseCause::Manual, step, .. } if *step == switch_step))
    );
    assert!(matches!(evs.last(), Some(Event::RunEnded { status: RunStatus::Stopped, .. })));
    assert!(!run.join("control.sock").exists(), "socket removed at exit");
}

#[test]
fn kill_9_then_inspect_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &small_config(10_000_000, 10_000_000, ""));
    let run = tmp.path().join("run");
    let mut live = start_live(&cfg, &run);
    let mode = std::fs::metadata(run.join("control.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    // Wait past the second periodic checkpoint (every 20 steps). Look for any from step 40
    // on: on a fast machine step 40's is written and deleted (checkpoint.keep) between looks.
    let deadline = Instant::now() + Duration::from_secs(60);
    let has_checkpoint_from_40 =
        || phasetop::trainer::checkpoint::list(&run.join("checkpoints")).iter().any(|m| m.step >= 40);
    while !has_checkpoint_from_40() {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its event flushed to the log (the host flushes at least every 250 ms).
    while !events(&run).iter().any(|e| matches!(e, Event::Checkpoint { step, .. } if *step >= 40)) {
        assert!(Instant::now() < deadline, "no checkpoint event");
        std::thread::sleep(Duration::from_millis(20));
    }
    live.child.kill().unwrap(); // SIGKILL
    live.child.wait().unwrap();

    let out = Command::new(BIN).args(["inspect", run.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Killed host: no run_ended, and nobody holds the run any more.
    assert_eq!(j["status"], "failed", "{j}");
    assert!(j["end_message"].as_str().unwrap().contains("host exited without recording an end"), "{j}");
    let ls = Command::new(BIN).args(["ls", tmp.path().to_str().unwrap()]).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.lines().any(|l| l.starts_with("run ") && l.contains(" failed ")), "{ls}");
    let (code, _, err) = ctl(&run, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("it is failed at step") && err.contains("host exited without recording an end"), "{err}");
    assert!(!err.contains("os error"), "an ended run's socket being gone is not an error to quote: {err}");
    let last_step = j["last_step"].as_u64().unwrap();
    assert!(last_step >= 40, "{j}");
    // The checkpoints it lists are those not deleted (checkpoint.keep): on a busy machine
    // step 40's may be gone by the kill; one from step 40 on is there.
    assert!(j["checkpoints"].as_array().unwrap().iter().any(|s| s.as_u64().is_some_and(|s| s >= 40)), "{j}");
    assert_eq!(j["phases"][0]["name"], "warm");

    let before = events(&run);
    let ckpts: Vec<u64> =
        phasetop::trainer::checkpoint::list(&run.join("checkpoints")).iter().map(|m| m.step).collect();
    let mut resumed = Command::new(BIN)
        .args(["train", "--resume", run.to_str().unwrap(), "--headless"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("resume.err")).unwrap())
        .spawn()
        .unwrap();
    // The killed host's socket file is still there: wait until a host answers on it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_err() {
        assert!(Instant::now() < deadline, "the resumed host never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Wait for a step the resumed host trained to be in the log.
    let trained_since_resume = || {
        let evs = events(&run);
        let started = evs.iter().rposition(|e| matches!(e, Event::RunStarted { resumed_from_step: Some(_), .. }));
        started.is_some_and(|i| evs[i..].iter().any(|e| matches!(e, Event::Step { .. })))
    };
    while !trained_since_resume() {
        assert!(Instant::now() < deadline, "the resumed host trained no step");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ctl(&run, &["stop"]).0, 0);
    assert!(wait_exit(&mut resumed, 60).success());
    let after = events(&run);
    assert!(
        after.len() > before.len(),
        "before {} after {}; resume stderr: {}; log bytes {}",
        before.len(),
        after.len(),
        std::fs::read_to_string(tmp.path().join("resume.err")).unwrap_or_default(),
        std::fs::metadata(run.join("events.log")).unwrap().len()
    );
    assert_eq!(&after[..before.len()], &before[..], "nothing already recorded is lost");
    let restart = after[before.len()..]
        .iter()
        .find_map(|e| match e {
            Event::RunStarted { resumed_from_step, .. } => *resumed_from_step,
            _ => None,
        })
        .expect("a resumed run_started");
    assert!(restart >= 40 && ckpts.last() == Some(&restart), "resumed from {restart}, checkpoints {ckpts:?}");
    // The resumed run continues the uninterrupted loss sequence exactly.
    let first = losses(&before);
    let again = losses(&after[before.len()..]);
    let (s, l) = again[0];
    assert_eq!(s, restart + 1);
    if let Some((_, l0)) = first.iter().find(|(st, _)| *st == s) {
        assert_eq!(*l0, l, "step {s} after resume matches the original run");
    }
}

/// A csv task's class count is only known once the file is read, so the config validator
/// cannot check a mixture against it; a live plan edit must, or `--resume` fails later.
#[test]
fn ctl_plan_checks_class_weights_against_csv_data() {
    let tmp = tempfile::tempdir().unwrap();
    // Three classes; "c" has a single row, which some seeds put in the held-out split.
    let csv = tmp.path().join("data.csv");
    let mut text = String::from("x,y,label\n");
    for i in 0..60 {
        text.push_str(&format!("{},{},{}\n", i % 9, i % 5, if i % 2 == 0 { "a" } else { "b" }));
    }
    text.push_str("4,4,c\n");
    std::fs::write(&csv, &text).unwrap();
    let config = |seed: u64, extra_phase: &str| {
        format!(
            "[run]\nname = \"csv\"\nseed = {seed}\nmax_steps = 10000000\nthreads = 1\n\
             [task]\nkind = \"csv\"\npath = \"{}\"\nlabel = \"label\"\nval_fraction = 0.5\n\
             [model]\nkind = \"mlp\"\ndepth = 1\nwidth = 16\n[eval]\nevery = 10\n[checkpoint]\nevery = 20\n\
             [[phase]]\nname = \"fit\"\noptimizer = \"adam\"\nlr = 0.01\nbatch_size = 16\n{extra_phase}",
            csv.display()
        )
    };
    let seed = (0..64)
        .find(|&s| {
            let c = config::parse("csv.toml", &config(s, "")).unwrap();
            let t = phasetop::trainer::Trainer::new(&c, s).unwrap();
            assert_eq!(t.classes(), 3);
            t.class_counts()[2] == 0
        })
        .expect("a seed that leaves class c out of the training split");
    let cfg = write_config(tmp.path(), &config(seed, ""));
    let run = tmp.path().join("run");
    let mut live = start_live(&cfg, &run);
    assert_eq!(ctl(&run, &["pause"]).0, 0);
    let before = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let edited = tmp.path().join("edited.toml");
    let mixture = |w: &str| {
        format!("\n[[phase]]\nname = \"mix\"\noptimizer = \"sgd\"\nlr = 0.01\nbatch_size = 16\nclass_weights = {w}\n")
    };
    for (weights, expected) in [
        ("[1.0, 2.0]", "phase \"mix\": class_weights has 2 entries, the data has 3 classes"),
        ("[1.0, 1.0, 1.0, 1.0]", "phase \"mix\": class_weights has 4 entries, the data has 3 classes"),
        ("[0.0, 0.0, 1.0]", "phase \"mix\": class_weights weighs only classes with no training examples (class 2)"),
    ] {
        std::fs::write(&edited, config(seed, &mixture(weights))).unwrap();
        let (code, out, err) = ctl(&run, &["plan", edited.to_str().unwrap()]);
        assert_eq!(code, 1, "{weights}: {out}{err}");
        assert!(err.contains(expected), "{weights}: {err}");
        assert_eq!(std::fs::read_to_string(run.join("config.toml")).unwrap(), before, "a refused plan changes nothing");
        // The same check guards a fresh start (or a resume) with that plan.
        let c = config::parse("csv.toml", &config(seed, &mixture(weights))).unwrap();
        let refused = phasetop::trainer::Trainer::new(&c, seed).err().expect("refused at start").to_string();
        assert!(refused.contains(expected), "{weights}: {refused}");
    }
    // A mixture that fits the data is taken, and the run resumes with it.
    std::fs::write(&edited, config(seed, &mixture("[1.0, 3.0, 1.0]"))).unwrap();
    let (code, out, err) = ctl(&run, &["plan", edited.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("fit → mix"), "{out}");
    assert_eq!(ctl(&run, &["stop"]).0, 0);
    assert!(wait_exit(&mut live.child, 60).success());
    let evs = events(&run);
    let refused = evs.iter().filter(|e| matches!(e, Event::Command { applied: false, .. })).count();
    assert_eq!(refused, 3);
    assert_eq!(evs.iter().filter(|e| matches!(e, Event::PlanChanged { .. })).count(), 1);
    let mut resumed = Command::new(BIN)
        .args(["train", "--resume", run.to_str().unwrap(), "--headless"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_err() {
        if let Some(status) = resumed.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(resumed.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("the resume failed ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "the resumed host never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ctl(&run, &["stop"]).0, 0);
    assert!(wait_exit(&mut resumed, 60).success());
}

/// Issue 16 item 13: the host samples its CPU and memory about once a second, off the
/// run loop, and records them in the log (`eval`, split `system`, `sys/*` names), so a
/// replay and `export` see them; no GPU here, so no `sys/gpu_*`.
#[test]
fn the_host_records_system_samples_once_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &small_config(100_000_000, 10, ""));
    let run = tmp.path().join("run");
    let mut child = Command::new(BIN)
        .args(["train", cfg.to_str().unwrap(), "--headless", "--run-dir", run.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let system = |evs: &[Event]| -> Vec<(u64, phasetop::event::Metrics)> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Eval { step, split, metrics } if split == "system" => Some((*step, metrics.clone())),
                _ => None,
            })
            .collect()
    };
    let started = Instant::now();
    while !run.join("events.log").exists() || system(&events(&run)).len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "fewer than 3 system samples in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert!(Command::new(BIN).arg("ctl").arg(&run).arg("stop").status().unwrap().success());
    assert!(child.wait().unwrap().success());
    let samples = system(&events(&run));
    assert!(took >= Duration::from_millis(1500), "3 samples in {took:?}: faster than once a second");
    // The trainer is busy: its host uses a core (threads = 1) or, on a loaded machine,
    // its share of one; never more than the machine has.
    assert!(samples[..3].iter().any(|(_, m)| m["sys/cpu_pct"] > 5.0), "{samples:?}");
    for (step, m) in &samples[..3] {
        assert!(m["sys/cpu_pct"] >= 0.0 && m["sys/cpu_pct"] < 400.0, "step {step}: {m:?}");
        assert!(m["sys/rss_mb"] > 10.0 && m["sys/rss_mb"] < 10_000.0, "step {step}: {m:?}");
        assert!(!m.keys().any(|k| k.starts_with("sys/gpu")) || std::path::Path::new("/dev/nvidia0").exists());
    }
    assert!(samples.windows(2).all(|w| w[0].0 <= w[1].0), "recorded at the trainer's step, in order");
}

/// Issue 16 item 16: `threads = 0` on a small model picks one libtorch thread (two
/// threads on a busy 2-core machine ran the demo at 5–9 steps/s instead of 400), and the
/// log says what was chosen and why.
#[test]
fn unset_threads_pick_one_thread_for_a_small_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &small_config(30, 10, "").replace("threads = 1", "threads = 0"));
    let run = tmp.path().join("run");
    let out = train_headless(&cfg, &run, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = events(&run)
        .into_iter()
        .find_map(|e| match e {
            Event::Log { message, .. } if message.contains("libtorch thread") => Some(message),
            _ => None,
        })
        .expect("the chosen thread count is logged");
    assert!(line.starts_with("1 libtorch thread(s): threads = 0, 1443 parameters × batch 32"), "{line}");
    // A config that sets threads says nothing.
    let cfg1 = write_config(tmp.path(), &small_config(30, 10, ""));
    let run1 = tmp.path().join("run1");
    assert!(train_headless(&cfg1, &run1, &[]).status.success());
    assert!(
        !events(&run1).iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("libtorch thread")))
    );
}

/// Issue 16 item 17: the embedded demo tells its story through the newcomer: its first
/// phase has no step count and ends only by a suggestion (accepted with `a`), made by
/// the plateau rule no earlier than 12 000 steps in (~20 s at its ~600 steps/s), and
/// the run is long enough (2–3 minutes there) for the second phase to show its jump.
#[test]
fn the_demo_reaches_its_second_phase_by_an_accepted_suggestion() {
    let cfg = config::parse("<embedded demo.toml>", phasetop::config::DEMO_CONFIG).unwrap();
    let (first, second) = (&cfg.phases[0], &cfg.phases[1]);
    assert!(first.steps.is_none(), "the first phase waits for the newcomer");
    let rule = first.until.as_ref().expect("a rule ends the first phase").get_ref();
    assert_eq!(rule.mode, config::RuleMode::Suggest);
    assert_eq!((rule.detector.get_ref().as_str(), rule.metric.get_ref().as_str()), ("plateau", "train_loss"));
    assert!(rule.min_steps >= 10_000, "not before ~20 s: {}", rule.min_steps);
    let max = *cfg.run.max_steps.get_ref();
    assert!((72_000..=120_000).contains(&max), "2–3 minutes at 600–800 steps/s: {max}");
    assert!(second.steps.as_ref().is_some_and(|s| rule.min_steps + *s.get_ref() <= max + 10_000));
    // Ends by a suggestion that names the second phase: the first phase's label noise
    // makes train_loss plateau early, so the rule fires as soon as min_steps allows.
    assert_eq!(cfg.phase_names(), ["noisy", "clean"]);
}
