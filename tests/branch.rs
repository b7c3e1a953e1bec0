//! `phasetop branch`: a child run from a parent's checkpoint continues it exactly, or
//! switches phase at the branch step; bad requests exit 2 and leave nothing behind.

use phasetop::event::{Event, PhaseCause};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

/// Two phases (warm: Adam for 50 steps, then main: SGD), a checkpoint every 20 steps,
/// all kept.
fn config(width: u32, main_lr: f64) -> String {
    format!(
        "[run]\nname='small'\nseed=3\nmax_steps=120\nthreads=1\n\
         [task]\nkind='gaussian'\ndim=8\nclasses=3\nn_train=512\nn_val=128\n\
         [model]\nkind='mlp'\ndepth=2\nwidth={width}\n\
         [eval]\nevery=10\n[checkpoint]\nevery=20\nkeep=100\n\
         [[phase]]\nname='warm'\nsteps=50\noptimizer='adam'\nlr=0.01\nbatch_size=32\n\
         [[phase]]\nname='main'\noptimizer='sgd'\nlr={main_lr}\nmomentum=0.9\nbatch_size=32\n"
    )
}

/// A finished parent run under `dir/runs/parent`.
fn parent(dir: &Path) -> PathBuf {
    let cfg = dir.join("small.toml");
    std::fs::write(&cfg, config(32, 0.05)).unwrap();
    let run = dir.join("runs/parent");
    let out = Command::new(BIN).args(["train", "--headless", "--run-dir"]).arg(&run).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run
}

fn bin(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn events(run: &Path) -> Vec<Event> {
    phasetop::runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

fn step_metric(evs: &[Event], key: &str) -> Vec<(u64, f64)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Step { step, metrics, .. } => Some((*step, metrics[key])),
            _ => None,
        })
        .collect()
}

#[test]
fn branch_continues_the_parent_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let p = parent.to_str().unwrap();
    // No checkpoint at 45: the one at 40 is used, and stderr says so.
    let out = bin(&["branch", p, "--at", "45", "--headless", "--max-steps", "60"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no checkpoint at step 45: branching from the nearest before it, step 40"));
    let child = tmp.path().join("runs/parent-b40");

    let evs = events(&child);
    match &evs[0] {
        Event::RunStarted { parent_run, branch_step, resumed_from_step, .. } => {
            assert_eq!((parent_run.as_deref(), *branch_step, *resumed_from_step), (Some("parent"), Some(40), None));
        }
        e => panic!("first event {e:?}"),
    }
    assert!(
        matches!(&evs[1], Event::PhaseChanged { step: 40, from: None, to, cause: PhaseCause::Start, .. } if to == "warm"),
        "{:?}",
        evs[1]
    );

    // Steps 41..=60 (including the scheduled warm → main switch at 50) match the parent.
    let mine = step_metric(&evs, "train_loss");
    let theirs = step_metric(&events(&parent), "train_loss");
    assert_eq!(mine.iter().map(|m| m.0).collect::<Vec<_>>(), (41..=60).collect::<Vec<_>>());
    for (s, l) in &mine {
        let (_, l0) = theirs.iter().find(|(t, _)| t == s).unwrap();
        assert!((l - l0).abs() <= 1e-6 * l0.abs(), "step {s}: child {l}, parent {l0}");
    }

    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(child.join("run.json")).unwrap()).unwrap();
    let parent_abs = parent.canonicalize().unwrap().display().to_string();
    assert_eq!(meta["parent"], serde_json::json!({"run_id": "parent", "run_dir": parent_abs, "branch_step": 40}));
    let out = bin(&["inspect", child.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["parent"], meta["parent"]);
    assert!(j["checkpoints"].as_array().unwrap().contains(&40.into()), "the child's own branch point: {j}");
    let out = bin(&["inspect", p, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["parent"].is_null());

    let out = bin(&["replay", child.to_str().unwrap(), "--headless"]);
    assert!(text(&out.stdout).contains("branch    parent-b40 from parent at step 40"), "{}", text(&out.stdout));
    let out = bin(&["replay", child.to_str().unwrap(), "--headless", "--with-parent"]);
    let story = text(&out.stdout);
    assert!(story.contains(&format!("== {parent_abs} ==")) && story.contains("== comparison"), "{story}");
    let out = bin(&["replay", p, "--headless", "--with-parent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a branch of another run"));

    // `ls` names the run and step a branch continues.
    let out = bin(&["ls", tmp.path().join("runs").to_str().unwrap()]);
    let listing = text(&out.stdout);
    let row = listing.lines().find(|l| l.starts_with("parent-b40")).unwrap_or_else(|| panic!("{listing}"));
    assert!(row.trim_end().ends_with("parent@40"), "{listing}");
    let row = listing.lines().find(|l| l.starts_with("parent ")).unwrap_or_else(|| panic!("{listing}"));
    assert!(row.trim_end().ends_with('-'), "{listing}");
}

#[test]
fn switch_at_the_branch_step_uses_the_new_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let child = tmp.path().join("child");
    let out = Command::new(BIN)
        .args(["branch", parent.to_str().unwrap(), "--at", "20", "--switch", "main", "--headless", "--max-steps", "30"])
        .arg("--run-dir")
        .arg(&child)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evs = events(&child);
    assert!(matches!(evs[0], Event::RunStarted { branch_step: Some(20), .. }));
    match &evs[1] {
        Event::PhaseChanged { step, from, to, cause, .. } => {
            assert_eq!((*step, from.as_deref(), to.as_str(), *cause), (20, Some("warm"), "main", PhaseCause::Manual))
        }
        e => panic!("{e:?}"),
    }
    let lrs = step_metric(&evs, "lr");
    assert_eq!(lrs.first(), Some(&(21, 0.05)), "main's lr from the first step (warm's is 0.01)");
    assert!(evs.iter().all(|e| !matches!(e, Event::Step { phase, .. } if phase != "main")));
}

/// "What if I had switched at step 30?" with checkpoints only at 20 and 40: the child
/// trains on from 20 repeating the parent, and switches at 30 exactly.
#[test]
fn a_switch_between_checkpoints_happens_at_the_asked_step() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let child = tmp.path().join("child");
    let p = parent.to_str().unwrap();
    let out = bin(&["branch", p, "--at", "30", "--switch", "main", "--headless", "--max-steps", "40", "--run-dir"]
        .into_iter()
        .chain([child.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("to switch at step 30"), "{}", text(&out.stderr));
    let evs = events(&child);
    let switch = evs
        .iter()
        .find_map(|e| match e {
            Event::PhaseChanged { step, to, cause: PhaseCause::Manual, .. } => Some((*step, to.clone())),
            _ => None,
        })
        .expect("the switch");
    assert_eq!(switch, (30, "main".to_string()));
    let parent_loss = step_metric(&events(&parent), "train_loss");
    let child_loss = step_metric(&evs, "train_loss");
    let (before, after): (Vec<_>, Vec<_>) = child_loss.iter().partition(|(s, _)| *s <= 30);
    assert_eq!(before.iter().map(|(s, _)| *s).collect::<Vec<_>>(), (21..=30).collect::<Vec<_>>());
    for (s, v) in &before {
        let p = parent_loss.iter().find(|(ps, _)| ps == s).map(|(_, pv)| *pv).unwrap();
        assert!((v - p).abs() <= 1e-6 * p.abs(), "step {s} repeats the parent: {v} vs {p}");
    }
    let lrs = step_metric(&evs, "lr");
    assert_eq!(lrs.iter().find(|(s, _)| *s == 31), Some(&(31, 0.05)), "main's lr from step 31");
    assert!(!after.is_empty());
}

/// Without --run-dir, a switch past the checkpoint names the child for STEP (`-b30`,
/// not the checkpoint's `-b20`), and `ls` says `parent@30`.
#[test]
fn a_switch_between_checkpoints_names_the_child_for_the_asked_step() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let out =
        bin(&["branch", parent.to_str().unwrap(), "--at", "30", "--switch", "main", "--headless", "--max-steps", "40"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tmp.path().join("runs/parent-b30/events.log").exists());
    assert!(!tmp.path().join("runs/parent-b20").exists());
    let ls = bin(&["ls", tmp.path().join("runs").to_str().unwrap()]);
    let ls = text(&ls.stdout);
    let row = ls.lines().find(|l| l.starts_with("parent-b30")).unwrap_or_else(|| panic!("{ls}"));
    assert!(row.trim_end().ends_with("parent@30"), "{ls}");
}

/// A resume from a checkpoint before a branch's scheduled switch still switches at the
/// asked step: the switch is kept in run.json, not only in the first process's memory.
#[test]
fn a_scheduled_switch_survives_a_resume_from_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let child = tmp.path().join("child");
    let c = child.to_str().unwrap();
    let out = bin(&[
        "branch",
        parent.to_str().unwrap(),
        "--at",
        "30",
        "--switch",
        "main",
        "--headless",
        "--max-steps",
        "40",
        "--run-dir",
        c,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(child.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        (meta["scheduled_switch"]["step"].clone(), meta["scheduled_switch"]["phase"].clone()),
        (30.into(), "main".into())
    );
    // Only the branch point (step 20) is left to resume from: as if the child had been
    // killed between it and the switch.
    for entry in std::fs::read_dir(child.join("checkpoints")).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().starts_with("step-000000020.") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let out = bin(&["train", "--resume", c, "--headless", "--max-steps", "45"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let evs = events(&child);
    let resumed_at = evs.iter().rposition(|e| matches!(e, Event::RunStarted { resumed_from_step: Some(20), .. }));
    let after_resume = &evs[resumed_at.expect("resumed from the branch point")..];
    let switches: Vec<(u64, String)> = after_resume
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, to, cause: PhaseCause::Manual, .. } => Some((*step, to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(switches, vec![(30, "main".to_string())]);
    let lrs = step_metric(after_resume, "lr");
    assert_eq!(lrs.iter().find(|(s, _)| *s == 31), Some(&(31, 0.05)), "main's lr from step 31");
    assert_eq!(lrs.last().map(|(s, _)| *s), Some(45), "--max-steps on a resume moves the run's end");
}

#[test]
fn a_changed_plan_applies_from_the_branch_step() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let cfg = tmp.path().join("slower.toml");
    std::fs::write(&cfg, config(32, 0.02)).unwrap();
    let out = bin(&["branch", parent.to_str().unwrap(), "--at", "60", "--config", cfg.to_str().unwrap(), "--headless"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let child = tmp.path().join("runs/parent-b60");
    let evs = events(&child);
    assert_eq!(step_metric(&evs, "lr").first(), Some(&(61, 0.02)));
    let last = step_metric(&evs, "lr").last().unwrap().0;
    assert_eq!(last, 120, "max_steps from the --config file");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(child.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["config_name"], "slower");
}

#[test]
fn bad_requests_exit_2_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let parent = parent(tmp.path());
    let p = parent.to_str().unwrap();
    let wide = tmp.path().join("wide.toml");
    std::fs::write(&wide, config(64, 0.05)).unwrap();
    let cases: [(Vec<&str>, &str); 4] = [
        (vec!["--at", "10"], "no checkpoint at or before step 10; the earliest is at step 20"),
        (vec!["--at", "40", "--switch", "nope"], "unknown phase \"nope\", expected one of warm, main"),
        (vec!["--at", "40", "--switch", "warm"], "already in phase \"warm\""),
        (vec!["--at", "40", "--config", wide.to_str().unwrap()], "[model] differs from the parent run's"),
    ];
    for (extra, msg) in cases {
        let mut args = vec!["branch", p, "--headless"];
        args.extend(extra.iter().copied());
        let out = bin(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(msg), "{extra:?}: {err}");
    }
    // The config error is located: file:line:col of the [model] table's kind.
    let err = text(&bin(&["branch", p, "--at", "40", "--headless", "--config", wide.to_str().unwrap()]).stderr);
    assert!(err.contains("wide.toml:13:6:"), "{err}");
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(runs, vec!["parent"]);
}

/// Issue 26 #3: checkpoints deleted by `checkpoint.keep` are recorded, so no reader offers
/// them: inspect lists exactly the checkpoints on disk, and the dashboard's events list
/// keeps no row for a deleted one.
#[test]
fn pruned_checkpoints_are_recorded_and_never_offered() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("keep.toml");
    std::fs::write(&cfg, config(16, 0.05).replace("keep=100", "keep=2")).unwrap();
    let run = tmp.path().join("run");
    let out = Command::new(BIN).args(["train", "--headless", "--run-dir"]).arg(&run).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let on_disk: std::collections::BTreeSet<u64> =
        phasetop::checkpoints::list(&run.join("checkpoints")).into_iter().map(|m| m.step).collect();
    let summary = phasetop::inspect::Summary::load(&run.join("events.log")).unwrap();
    let listed: std::collections::BTreeSet<u64> = summary.checkpoints.iter().copied().collect();
    assert_eq!(listed, on_disk, "inspect lists the checkpoints that exist");
    let evs = events(&run);
    assert!(evs.iter().any(|e| matches!(e, Event::CheckpointPruned { .. })), "keep = 2 deleted some");
    let view = phasetop::ui::model::state::RunView::from_events(&evs);
    let rows: Vec<u64> = view.log.iter().filter(|r| r.kind == "ckpt").map(|r| r.step).collect();
    assert!(rows.iter().all(|s| on_disk.contains(s)), "rows {rows:?}, on disk {on_disk:?}");
}
