//! `export --format config` (issue 16 item 15): a run steered by a rule, a `set` and a
//! manual switch is exported as a recipe; training the recipe headless changes phase at
//! the same steps and, on the CPU, retraces the run's losses bit for bit.

use phasetop::event::{Event, PhaseCause};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn events(run: &Path) -> Vec<Event> {
    phasetop::runlog::read_all(&run.join("events.log"))
        .map(|c| c.records.into_iter().map(|r| r.event).collect())
        .unwrap_or_default()
}

fn last_step(run: &Path) -> u64 {
    events(run)
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, .. } => Some(*step),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn ctl(run: &Path, args: &[&str]) {
    let out = Command::new(BIN).arg("ctl").arg(run).args(args).output().unwrap();
    assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// (step, phase) of every phase change.
fn changes(evs: &[Event]) -> Vec<(u64, String, PhaseCause)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, to, cause, .. } => Some((*step, to.clone(), *cause)),
            _ => None,
        })
        .collect()
}

/// step → (phase, train_loss bits, lr bits).
fn steps(evs: &[Event]) -> Vec<(u64, String, u64, u64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Step { step, phase, metrics, .. } => {
                Some((*step, phase.clone(), metrics["train_loss"].to_bits(), metrics["lr"].to_bits()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_steered_run_exported_as_a_recipe_retrains_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = "[run]\nname='steer'\nseed=3\nmax_steps=100000000\nthreads=1\n\
         [task]\nkind='gaussian'\nn_train=256\nn_val=64\n[model]\nkind='mlp'\ndepth=1\nwidth=16\ninit='tch'\n\
         [eval]\nevery=50\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='first'\noptimizer='sgd'\nlr=0.01\nbatch_size=32\n\
         until = { detector = 'plateau', metric = 'lr', mode = 'auto', min_steps = 5, confirm_steps = 0, params = { window = 20, ema_steps = 5 } }\n\
         [[phase]]\nname='second'\noptimizer='sgd'\nlr=0.02\nmomentum=0.9\nbatch_size=32\n\
         [[phase]]\nname='third'\noptimizer='adam'\nlr=0.001\nbatch_size=32\n";
    let path = tmp.path().join("steer.toml");
    std::fs::write(&path, cfg).unwrap();
    let run = tmp.path().join("run");
    let mut child = Command::new(BIN)
        .args(["train", "--headless", "--run-dir"])
        .arg(&run)
        .arg(&path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the rule switch", || changes(&events(&run)).iter().any(|c| c.2 == PhaseCause::Rule));
    let switched = changes(&events(&run)).iter().find(|c| c.2 == PhaseCause::Rule).unwrap().0;
    wait_for("steps in the second phase", || last_step(&run) > switched + 50);
    ctl(&run, &["set", "lr=0.05"]);
    let set_at = last_step(&run);
    wait_for("steps after the set", || last_step(&run) > set_at + 50);
    ctl(&run, &["switch", "third"]);
    let third_at = last_step(&run);
    wait_for("steps in the third phase", || last_step(&run) > third_at + 50);
    ctl(&run, &["stop"]);
    assert!(child.wait().unwrap().success());

    let recipe = tmp.path().join("recipe.toml");
    let out =
        Command::new(BIN).arg("export").arg(&run).args(["--format", "config", "-o"]).arg(&recipe).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(!text.contains("until"), "the rule is now a step count:\n{text}");
    assert!(text.contains("(switched by a rule)") && text.contains("(switched by hand)"), "{text}");

    let run2 = tmp.path().join("run2");
    let out = Command::new(BIN).args(["train", "--headless", "--run-dir"]).arg(&run2).arg(&recipe).output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));

    let (a, b) = (events(&run), events(&run2));
    // The run's phase changes, at the same steps, under the same names; the recipe adds
    // one where the `set` split the second phase.
    let set_step = a
        .iter()
        .find_map(|e| match e {
            Event::Command { step, command: phasetop::event::Command::Set { .. }, applied: true, .. } => Some(*step),
            _ => None,
        })
        .expect("the set was applied");
    let expected: Vec<(u64, String)> = {
        let mut v: Vec<(u64, String)> = changes(&a).into_iter().map(|(s, n, _)| (s, n)).collect();
        v.insert(2, (set_step, format!("second.set{set_step}")));
        v
    };
    let got: Vec<(u64, String)> = changes(&b).into_iter().map(|(s, n, _)| (s, n)).collect();
    assert_eq!(got, expected, "{text}");
    assert!(changes(&b)[1..].iter().all(|c| c.2 == PhaseCause::Scheduled));
    // Every step: the same loss and lr, bit for bit (phase names as in the recipe).
    let (sa, sb) = (steps(&a), steps(&b));
    assert_eq!(sa.len(), sb.len());
    for (x, y) in sa.iter().zip(&sb) {
        assert_eq!((x.0, x.2, x.3), (y.0, y.2, y.3), "step {} ({} / {})", x.0, x.1, y.1);
        assert!(y.1.starts_with(x.1.as_str()), "step {}: {} / {}", x.0, x.1, y.1);
    }
}

#[test]
fn a_run_that_trained_nothing_has_no_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("export")
        .arg(tmp.path().join("nope"))
        .args(["--format", "config", "-o"])
        .arg(tmp.path().join("r.toml"))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!tmp.path().join("r.toml").exists());
}
