//! External runs (issue 14): real PyTorch scripts under `phasetop run`, with the client
//! in python/ and the project's venv (torch, torchrun, lightning, transformers: installed
//! by scripts/setup-torch.sh). A missing venv fails these tests unless
//! PHASETOP_SKIP_PYTHON=1.

use phasetop::event::{Command as Cmd, Event, LogLevel, PhaseCause, RunStatus};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Python job at a time: a torchrun job is three interpreters importing torch, and
/// the suite runs on two cores.
static ONE_JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The venv's bin directory, or None (skip) under PHASETOP_SKIP_PYTHON=1; holds
/// `ONE_JOB` for the caller's test.
fn venv() -> Option<(PathBuf, std::sync::MutexGuard<'static, ()>)> {
    let guard = ONE_JOB.lock().unwrap_or_else(|p| p.into_inner());
    venv_bin().map(|b| (b, guard))
}

/// The venv's bin directory, or None (skip) under PHASETOP_SKIP_PYTHON=1.
fn venv_bin() -> Option<PathBuf> {
    let bin = root().join(".venv/bin");
    if !bin.join("python").exists() {
        if std::env::var_os("PHASETOP_SKIP_PYTHON").is_some_and(|v| v == "1") {
            eprintln!("{} not found: skipped (PHASETOP_SKIP_PYTHON=1)", bin.display());
            return None;
        }
        panic!("{} not found: run scripts/setup-torch.sh (or set PHASETOP_SKIP_PYTHON=1 to skip)", bin.display());
    }
    Some(bin)
}

/// `phasetop run --headless` in `cwd`, the client on PYTHONPATH.
fn spawn_run(cwd: &Path, config: Option<&Path>, job: &[&str]) -> Child {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).arg("run").arg("--headless").arg("--run-dir").arg("run");
    if let Some(cfg) = config {
        c.arg(cfg);
    }
    c.arg("--").args(job);
    c.env("PYTHONPATH", root().join("python")).env("OMP_NUM_THREADS", "1");
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.spawn().unwrap()
}

fn events(run: &Path) -> Vec<Event> {
    match phasetop::runlog::read_all(&run.join("events.log")) {
        Ok(c) => c.records.into_iter().map(|r| r.event).collect(),
        Err(_) => Vec::new(),
    }
}

fn last_step(run: &Path) -> u64 {
    events(run)
        .iter()
        .filter_map(|e| if let Event::Step { step, .. } = e { Some(*step) } else { None })
        .max()
        .unwrap_or(0)
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("phasetop run did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ctl(run: &Path, words: &[&str]) -> String {
    let out = Command::new(BIN).arg("ctl").arg(run).args(words).output().unwrap();
    assert!(out.status.success(), "ctl {words:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A rank's record: (step, phase, lr) per step.
fn record(dir: &Path, rank: u32) -> Vec<(u64, String, f64)> {
    let text = std::fs::read_to_string(dir.join(format!("record-rank{rank}.tsv"))).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.parse().ok()?, f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

fn ended(run: &Path) -> Option<(RunStatus, String)> {
    events(run).into_iter().find_map(|e| match e {
        Event::RunEnded { status, message, .. } => Some((status, message)),
        _ => None,
    })
}

/// job.log without torchrun's warnings and blank lines: every rank's own words on a failure.
fn job_log_why(run: &Path) -> String {
    let text = std::fs::read_to_string(run.join("job.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('W') && !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const TWO_PHASES: &str = "[run]\nname='ddp'\n[[phase]]\nname='warm'\nlr=0.1\n[[phase]]\nname='main'\nlr=0.02\n";

fn torchrun_job(bin: &Path, steps: u64) -> Vec<String> {
    [
        bin.join("torchrun").display().to_string(),
        // A free rendezvous port on loopback, so runs never collide.
        "--standalone".into(),
        "--nproc-per-node".into(),
        "2".into(),
        root().join("examples/ddp_train.py").display().to_string(),
        "--steps".into(),
        steps.to_string(),
        "--step-ms".into(),
        "5".into(),
        "--record".into(),
        "rec".into(),
    ]
    .into()
}

/// The issue's main scenario: torchrun with 2 gloo ranks under `phasetop run`; a switch,
/// a `set lr` and a stop from `ctl`, each reaching both ranks at the same step.
#[test]
fn torchrun_ranks_switch_set_and_stop_at_the_same_step() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "ddp.toml", TWO_PHASES);
    let job = torchrun_job(&bin, 1_000_000);
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20);
    // The socket is private, as the built-in host's.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(run.join("control.sock")).unwrap().permissions().mode() & 0o777, 0o600);
    let status: serde_json::Value =
        serde_json::from_str(ctl(&run, &["status"]).split_once(": ").unwrap().1.trim()).unwrap();
    assert_eq!(status["phase"], "warm");

    ctl(&run, &["switch", "main"]);
    wait_until("both ranks in main", 60, || (0..2).all(|r| record(&rec, r).iter().any(|x| x.1 == "main")));
    ctl(&run, &["set", "lr=0.0123"]);
    wait_until("both ranks at lr 0.0123", 60, || (0..2).all(|r| record(&rec, r).iter().any(|x| x.2 == 0.0123)));
    ctl(&run, &["stop"]);
    let exit = wait_exit(&mut child, 60);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(exit.success(), "a stopped run exits 0: {stdout}\njob.log:\n{}", job_log_why(&run));

    let evs = events(&run);
    let manual: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, cause: PhaseCause::Manual, to, .. } if to == "main" => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(manual.len(), 1, "one manual phase change: {manual:?}");
    let (r0, r1) = (record(&rec, 0), record(&rec, 1));
    let first =
        |r: &[(u64, String, f64)], f: &dyn Fn(&(u64, String, f64)) -> bool| r.iter().find(|x| f(x)).map(|x| x.0);
    let in_main = |x: &(u64, String, f64)| x.1 == "main";
    assert_eq!(first(&r0, &in_main), Some(manual[0]), "rank 0 switched at the logged step");
    assert_eq!(first(&r1, &in_main), Some(manual[0]), "rank 1 switched at the same step");
    // The phase's own lr came with the switch, then `set` overrode it, on both ranks.
    let at_main = r0.iter().find(|x| x.0 == manual[0]).unwrap();
    assert_eq!(at_main.2, 0.02);
    let set_lr = |x: &(u64, String, f64)| x.2 == 0.0123;
    assert!(first(&r0, &set_lr).is_some());
    assert_eq!(first(&r0, &set_lr), first(&r1, &set_lr), "set lr reached both ranks at the same step");
    assert!(evs.iter().any(|e| matches!(e, Event::Command { command: Cmd::Set { key, value }, applied: true, .. } if key == "lr" && *value == 0.0123)));
    // Stop: both ranks ended at the same step, cleanly (the job exited 0).
    assert_eq!(r0.last().map(|x| x.0), r1.last().map(|x| x.0), "both ranks stopped at the same step");
    let (status, message) = ended(&run).expect("run_ended");
    assert_eq!(status, RunStatus::Stopped, "{message}");
    // (A rank that aborts in gloo's teardown after the job finished makes torchrun exit 1:
    // the run still ends as the job said, and the message tells the exit.)
    assert!(
        message.contains("the job exited 0") || message.contains("the job finished (completed), then"),
        "{message}"
    );
    // The job's output is in job.log; ranks other than 0 logged nothing of their own.
    assert!(run.join("job.log").exists());
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Step { metrics, .. } if metrics.keys().any(|k| k.starts_with("rank"))))
    );
}

/// Issue 22's invariant: every rank trains with the same settings at every step, from the
/// first: a plan with a per-phase lr and a free setting (`aux_w`), then a `set aux_w`, a
/// pause, a switch and a stop. Both ranks' records (step, phase, lr, aux_w) are the same
/// line for line, start with the first phase's values, and the ranks' weights agree.
#[test]
fn ddp_ranks_hold_the_same_settings_from_init_and_end_with_equal_weights() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "aux.toml",
        "[run]\nname='aux'\n[[phase]]\nname='warm'\nlr=0.1\naux_w=0.5\n[[phase]]\nname='main'\nlr=0.02\naux_w=0.0\n",
    );
    let job = torchrun_job(&bin, 1_000_000);
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    let lines = |r: u32| -> Vec<String> {
        std::fs::read_to_string(rec.join(format!("record-rank{r}.tsv")))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let has = |r: u32, f: &dyn Fn(&str) -> bool| lines(r).iter().any(|l| f(l));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20);
    for r in 0..2 {
        let first = lines(r).first().cloned().unwrap_or_default();
        assert_eq!(first, "1\twarm\t0.1\t0.5", "rank {r} starts with the first phase's lr and aux_w");
    }
    ctl(&run, &["set", "aux_w=0.25"]);
    wait_until("both ranks at aux_w 0.25", 60, || (0..2).all(|r| has(r, &|l| l.ends_with("\t0.25"))));
    ctl(&run, &["pause"]);
    wait_until("paused", 30, || ctl(&run, &["status"]).contains("\"paused\":true"));
    ctl(&run, &["resume"]);
    ctl(&run, &["switch", "main"]);
    wait_until("both ranks in main", 60, || (0..2).all(|r| has(r, &|l| l.contains("\tmain\t"))));
    ctl(&run, &["stop"]);
    let exit = wait_exit(&mut child, 60);
    assert!(exit.success(), "job.log:\n{}", job_log_why(&run));
    let (r0, r1) = (lines(0), lines(1));
    assert!(r0.len() > 20, "{} steps", r0.len());
    if let Some(i) = (0..r0.len().max(r1.len())).find(|&i| r0.get(i) != r1.get(i)) {
        panic!("the ranks' settings differ at line {i}: {:?} vs {:?}", r0.get(i), r1.get(i));
    }
    // A step is labelled with the phase it trained in: the record's line before it says
    // what that step used (the phase change logged at step S: S in the old phase).
    let trained_in: std::collections::HashMap<u64, String> = r0
        .iter()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.parse::<u64>().ok()? + 1, f.next()?.to_string()))
        })
        .collect();
    for e in events(&run) {
        if let Event::Step { step, phase, .. } = e
            && let Some(used) = trained_in.get(&step)
        {
            assert_eq!(&phase, used, "step {step} is labelled {phase} but trained in {used}");
        }
    }
    // The switch brought main's own values (the `set` was for warm only).
    assert!(r0.iter().any(|l| l.contains("\tmain\t0.02\t0.0")), "{:?}", r0.last());
    let sum = |r: u32| -> f64 {
        let text = std::fs::read_to_string(rec.join(format!("checksum-rank{r}"))).unwrap_or_default();
        text.trim().parse().unwrap_or(f64::NAN)
    };
    let (a, b) = (sum(0), sum(1));
    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "weights' checksums differ: {a} vs {b}");
}

/// `phasetop run --resume RUN_DIR`: a killed external run goes on in the same directory
/// and log, from the job's own last checkpoint, in the phase it was in; refused while
/// another host holds the run.
#[test]
fn run_resume_continues_a_killed_external_run_from_its_checkpoint_in_its_phase() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "plan.toml",
        "[run]\nname='res'\n[[phase]]\nname='warm'\nsteps=30\nlr=0.1\n[[phase]]\nname='main'\nlr=0.01\n",
    );
    let script = write(
        tmp.path(),
        "job.py",
        r#"
import os, time, torch, phasetop
run = phasetop.init()
start = torch.load(run.latest_checkpoint)["step"] if run.latest_checkpoint else 0
with open(f"start-{os.getpid()}", "w") as f:
    f.write(f"{start} {run.phase} {run.settings.get('lr')}")
for step in range(start + 1, 10**6):
    run.log({"train_loss": 1.0 / step}, step=step)
    ctl = run.sync(step)
    if step % 10 == 0:
        run.checkpoint(step, {"step": step})
    if ctl.should_stop:
        break
    time.sleep(0.005)
"#,
    );
    let job = python_job(&bin, &script);
    let mut host = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let run = tmp.path().join("run");
    let checkpoints = |evs: &[Event]| -> Vec<u64> {
        evs.iter().filter_map(|e| if let Event::Checkpoint { step, .. } = e { Some(*step) } else { None }).collect()
    };
    wait_until("a checkpoint in main", 120, || checkpoints(&events(&run)).iter().any(|s| *s >= 50));
    // Refused while this host holds the run.
    let out =
        Command::new(BIN).current_dir(tmp.path()).args(["run", "--headless", "--resume", "run"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another host is live"), "{out:?}");
    // kill -9 the host and the job.
    let job_pid: i32 = events(&run)
        .iter()
        .find_map(|e| match e {
            Event::Log { message, .. } => message.strip_prefix("job started (pid ")?.split(')').next()?.parse().ok(),
            _ => None,
        })
        .expect("the job's pid in the log");
    unsafe {
        libc::kill(host.id() as i32, libc::SIGKILL);
        libc::kill(job_pid, libc::SIGKILL);
    }
    let _ = host.wait();
    let before = events(&run);
    let resumed_at = *checkpoints(&before).last().unwrap();
    let last_before = last_step(&run);
    // The resume: the recorded command, the same directory.
    let mut c = Command::new(BIN);
    c.current_dir(tmp.path()).args(["run", "--headless", "--resume", "run"]);
    c.env("PYTHONPATH", root().join("python")).env("OMP_NUM_THREADS", "1");
    let mut resumed = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("steps after the resume", 120, || {
        events(&run).len() > before.len() && last_step(&run) > last_before + 20
    });
    ctl(&run, &["stop"]);
    let exit = wait_exit(&mut resumed, 60);
    assert!(exit.success(), "{}", job_log_why(&run));
    let evs = events(&run);
    let after = &evs[before.len()..];
    assert!(
        matches!(&after[0], Event::RunStarted { resumed_from_step: Some(s), .. } if *s == resumed_at),
        "{:?}",
        after[0]
    );
    // The job was told where to go on: its checkpoint's step, in main with main's lr.
    let starts: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("start-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(starts.contains(&format!("{resumed_at} main 0.01")), "{starts:?}");
    // Its steps go on from there in main; no phase change is made again.
    let first = after
        .iter()
        .find_map(|e| if let Event::Step { step, phase, .. } = e { Some((*step, phase.clone())) } else { None });
    assert_eq!(first, Some((resumed_at + 1, "main".to_string())));
    assert!(!after.iter().any(|e| matches!(e, Event::PhaseChanged { .. })), "the plan's position is restored");
    assert_eq!(ended(&run).map(|e| e.0), Some(RunStatus::Stopped));
    let summary = phasetop::inspect::Summary::load(&run.join("events.log")).unwrap();
    assert_eq!(summary.phases.last().map(|p| p.name.as_str()), Some("main"));
    assert_eq!(summary.resumes, [resumed_at]);
    assert!(summary.last_step > last_before, "{} vs {last_before}", summary.last_step);
}

/// Issue 27: two nodes × two ranks — two `torchrun` launchers on loopback (static
/// rendezvous: node 0, with global ranks 0 and 1, under `phasetop run`; node 1 plain). A
/// switch, a `set` and a stop reach all four ranks at the same step, and the ranks end
/// with the same weights.
#[test]
fn two_nodes_of_two_ranks_obey_a_switch_a_set_and_a_stop_at_one_step() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "ddp.toml", TWO_PHASES);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let launcher = |node: &str| -> Vec<String> {
        [
            bin.join("torchrun").display().to_string(),
            "--nnodes".into(),
            "2".into(),
            "--nproc-per-node".into(),
            "2".into(),
            "--node-rank".into(),
            node.into(),
            "--master-addr".into(),
            "127.0.0.1".into(),
            "--master-port".into(),
            port.clone(),
            root().join("examples/ddp_train.py").display().to_string(),
            "--steps".into(),
            "1000000".into(),
            "--step-ms".into(),
            "5".into(),
            "--record".into(),
            "rec".into(),
        ]
        .into()
    };
    let node0 = launcher("0");
    let mut host = spawn_run(tmp.path(), Some(&cfg), &node0.iter().map(String::as_str).collect::<Vec<_>>());
    let node1 = launcher("1");
    let mut other = Command::new(&node1[0])
        .args(&node1[1..])
        .current_dir(tmp.path())
        .env("PYTHONPATH", root().join("python"))
        .env("OMP_NUM_THREADS", "1")
        .env_remove("PHASETOP_RUN_DIR")
        .env_remove("PHASETOP_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 180, || last_step(&run) >= 20);
    ctl(&run, &["switch", "main"]);
    wait_until("all four ranks in main", 60, || (0..4).all(|r| record(&rec, r).iter().any(|x| x.1 == "main")));
    ctl(&run, &["set", "lr=0.0123"]);
    wait_until("all four ranks at lr 0.0123", 60, || (0..4).all(|r| record(&rec, r).iter().any(|x| x.2 == 0.0123)));
    ctl(&run, &["stop"]);
    let exit = wait_exit(&mut host, 90);
    let other_exit = wait_exit(&mut other, 90);
    assert!(exit.success() && other_exit.success(), "job.log:\n{}", job_log_why(&run));
    let records: Vec<Vec<(u64, String, f64)>> = (0..4).map(|r| record(&rec, r)).collect();
    let first =
        |r: &[(u64, String, f64)], f: &dyn Fn(&(u64, String, f64)) -> bool| r.iter().find(|x| f(x)).map(|x| x.0);
    for r in 1..4 {
        assert_eq!(first(&records[r], &|x| x.1 == "main"), first(&records[0], &|x| x.1 == "main"), "rank {r}: switch");
        assert_eq!(first(&records[r], &|x| x.2 == 0.0123), first(&records[0], &|x| x.2 == 0.0123), "rank {r}: set");
        assert_eq!(records[r].last().map(|x| x.0), records[0].last().map(|x| x.0), "rank {r}: stop");
    }
    let sum = |r: u32| -> f64 {
        std::fs::read_to_string(rec.join(format!("checksum-rank{r}")))
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };
    for r in 1..4 {
        assert!((sum(r) - sum(0)).abs() <= 1e-6 * sum(0).abs().max(1.0), "rank {r}: {} vs {}", sum(r), sum(0));
    }
}

fn pid(rec: &Path, rank: u32) -> i32 {
    std::fs::read_to_string(rec.join(format!("pid-rank{rank}"))).unwrap().trim().parse().unwrap()
}

/// kill -9 of one rank: torchrun takes the job down, the run ends failed with the exit
/// code and job.log's last lines, and its log reads back whole.
#[test]
fn a_rank_killed_fails_the_run_with_its_log_whole() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let job = torchrun_job(&bin, 1_000_000);
    let mut child = spawn_run(tmp.path(), None, &job.iter().map(String::as_str).collect::<Vec<_>>());
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20 && rec.join("pid-rank1").exists());
    unsafe { libc::kill(pid(&rec, 1), libc::SIGKILL) };
    let exit = wait_exit(&mut child, 120);
    assert_eq!(exit.code(), Some(1), "a failed run exits 1");
    let contents = phasetop::runlog::read_all(&run.join("events.log")).unwrap();
    assert!(contents.problems.is_empty(), "{:?}", contents.problems);
    let (status, message) = ended(&run).expect("run_ended");
    assert_eq!(status, RunStatus::Failed);
    assert!(message.contains("the job exited with code"), "{message}");
    assert!(message.contains("last lines of job.log"), "{message}");
    let inspect = Command::new(BIN).arg("inspect").arg(&run).output().unwrap();
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("failed"));
}

/// kill -9 of the host: the job trains on to its end (the client warns once and records
/// nothing more), and the log up to the kill reads back.
#[test]
fn the_host_killed_the_job_trains_on_and_the_log_reads_back() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let job = torchrun_job(&bin, 1200);
    let mut child = spawn_run(tmp.path(), None, &job.iter().map(String::as_str).collect::<Vec<_>>());
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20 && rec.join("pid-rank1").exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = last_step(&run);
    wait_until("both ranks at step 1200", 120, || (0..2).all(|r| record(&rec, r).last().is_some_and(|x| x.0 == 1200)));
    // The ranks exit (the job finished on its own).
    wait_until("the ranks to exit", 30, || (0..2).all(|r| unsafe { libc::kill(pid(&rec, r), 0) } != 0));
    let contents = phasetop::runlog::read_all(&run.join("events.log")).unwrap();
    let steps: Vec<u64> = contents
        .records
        .iter()
        .filter_map(|r| if let Event::Step { step, .. } = r.event { Some(step) } else { None })
        .collect();
    assert!(*steps.last().unwrap() >= killed_at && *steps.last().unwrap() < 1200, "{killed_at} {:?}", steps.last());
    assert!(ended(&run).is_none(), "nobody wrote an end");
    // ... and phasetop reports the run failed, with what was recorded intact (reading
    // only: the log is byte for byte the same after).
    let log_before = std::fs::read(run.join("events.log")).unwrap();
    let ls = Command::new(BIN).arg("ls").arg(tmp.path()).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    let row = ls.lines().find(|l| l.starts_with("run ")).unwrap_or_else(|| panic!("{ls}"));
    assert_eq!(row.split_whitespace().nth(2), Some("failed"), "{ls}");
    assert_eq!(row.split_whitespace().nth(4), Some(steps.last().unwrap().to_string().as_str()), "{ls}");
    let inspect = Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(j["status"], "failed", "{j}");
    assert!(j["end_message"].as_str().unwrap().contains("host exited without recording an end"), "{j}");
    assert!(std::fs::read(run.join("events.log")).unwrap() == log_before, "ls and inspect write nothing");
    let job_log = std::fs::read_to_string(run.join("job.log")).unwrap();
    assert_eq!(job_log.matches("training goes on, nothing is recorded").count(), 1, "{job_log}");
}

fn python_job(bin: &Path, script: &Path) -> Vec<String> {
    vec![bin.join("python").display().to_string(), script.display().to_string()]
}

/// `phasetop run` of a Python script without a plan, to its end; the run succeeded.
fn run_python_to_success(tmp: &Path, bin: &Path, script: &Path) -> PathBuf {
    let mut child = spawn_run(tmp, None, &python_job(bin, script).iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 120);
    let run = tmp.join("run");
    assert!(exit.success(), "{}", job_log_why(&run));
    run
}

/// The SummaryWriter shim in a real run; a bad metric name and value come back to the
/// client in the next sync, and the run goes on.
#[test]
fn summary_writer_shim_logs_and_bad_metrics_come_back_to_the_client() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "tb.py",
        r#"
import phasetop, torch
run = phasetop.init()
w = phasetop.SummaryWriter()
for step in range(1, 51):
    w.add_scalar("Loss/train", 1.0 / step, step)
    w.add_scalars("grad", {"norm": float(step), "max": 2.0 * step}, global_step=step)
    w.add_histogram("weights", torch.zeros(3), step)   # not a scalar: a no-op
w.add_scalar("bad name", 1.0, 51)                 # a tag with a space: recorded as bad_name
w.add_text("samples", "the quick fox", 50)        # an event at its step
w.add_hparams({"lr": 0.01, "opt": "sgd"}, {"hparam/accuracy": 0.9})  # config and summary
# What cannot be recorded fails at the call, saying which metric (issue 27).
def refused(f, words):
    try:
        f()
    except (TypeError, ValueError) as e:
        assert words in str(e), e
        return
    raise SystemExit(f"not refused: {words}")
refused(lambda: w.add_scalar("quality", "high", 51), "'quality' at step 51: str 'high' is not a number")
refused(lambda: run.log({"nested": {"a": 1}}, step=52), "'nested'")
refused(lambda: run.log({"flag": True}, step=52), "bool")
refused(lambda: run.log({"x": 1.0}, step=1.5), "not a whole number")
refused(lambda: run.log({"two words": 1.0}, step=52), "no spaces")
# strict=False: warned once per name, left out, the rest recorded.
run.strict = False
run.log({"two words": 1.0, "ok_metric": 2.0}, step=52)
run.log({"two words": 1.0, "ok_metric": 3.0}, step=53)
w.flush()
w.close()
"#,
    );
    let run = run_python_to_success(tmp.path(), &bin, &script);
    let evs = events(&run);
    let step = |n: u64, key: &str| {
        evs.iter().find_map(|e| match e {
            Event::Step { step, metrics, .. } if *step == n => metrics.get(key).copied(),
            _ => None,
        })
    };
    // TensorBoard's tags map to phasetop's names where the meaning is clear (docs/INTEROP.md).
    assert_eq!(step(10, "train_loss"), Some(0.1));
    assert_eq!(step(51, "bad_name"), Some(1.0), "a tag's space becomes _");
    assert_eq!(step(53, "ok_metric"), Some(3.0));
    let job_log = std::fs::read_to_string(run.join("job.log")).unwrap_or_default();
    assert_eq!(job_log.matches("'two words'").count(), 1, "warned once per name: {job_log}");
    assert_eq!(job_log.matches("add_histogram is not recorded").count(), 1, "{job_log}");
    assert_eq!(step(10, "grad/norm"), Some(10.0));
    assert_eq!(step(10, "grad/max"), Some(20.0));
    // add_text and add_hparams are kept (issue 27): a text event, the config, the summary.
    let text = evs.iter().find_map(|e| match e {
        Event::Log { step, message, .. } if message.contains("the quick fox") => Some((*step, message.clone())),
        _ => None,
    });
    assert_eq!(text, Some((50, "[samples] the quick fox".to_string())));
    let out = Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(s["job_config"], serde_json::json!({"lr": 0.01, "opt": "sgd"}), "{s}");
    assert_eq!(s["summary"]["hparam/accuracy"], serde_json::json!(0.9), "{s}");
    assert!(!job_log.contains("add_text is not") && !job_log.contains("add_hparams is not"), "{job_log}");
    assert_eq!(ended(&run).unwrap().0, RunStatus::Completed);
}

/// Frames a host must survive: not JSON, not UTF-8, unknown type, oversized, bad points;
/// each is answered or reported with a reason and counted, and the run goes on.
#[test]
fn malformed_frames_are_refused_with_reasons_and_never_crash_the_host() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "wait.py",
        "import phasetop, time\nrun = phasetop.init()\nwhile not run.sync(1).should_stop:\n    time.sleep(0.02)\n",
    );
    let mut child =
        spawn_run(tmp.path(), None, &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let run = tmp.path().join("run");
    wait_until("the job's hello", 60, || {
        events(&run).iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("job connected")))
    });
    let mut s = UnixStream::connect(run.join("control.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut ask = |bytes: &[u8]| -> serde_json::Value {
        s.write_all(bytes).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let reason = |v: serde_json::Value| v["message"].as_str().unwrap_or_default().to_string();
    assert!(reason(ask(b"{not json\n")).starts_with("malformed frame"));
    assert!(reason(ask(b"\xff\xfe\n")).contains("not UTF-8"));
    assert!(reason(ask(b"{\"type\":\"explode\"}\n")).contains("unknown variant"));
    let mut big = vec![b'x'; (1 << 20) + 10];
    big.push(b'\n');
    assert!(reason(ask(&big)).contains("longer than"));
    // A log frame gets no reply; its bad points come back in the next sync.
    let ctl = ask(b"{\"type\":\"log\",\"points\":[{\"step\":3,\"metrics\":{\"x\":1}},{\"step\":-1},{\"step\":4,\"metrics\":{\"y\":[1]}}]}\n{\"type\":\"sync\",\"step\":4}\n");
    let errors = ctl["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains("\"y\": [1] is not a number")), "{errors:?}");
    assert!(errors.iter().any(|e| e.as_str().unwrap().contains("without a whole, non-negative step")), "{errors:?}");
    // The host is fine: ctl still works, and stops the job.
    ctl_ok(&run);
    let exit = wait_exit(&mut child, 60);
    assert!(exit.success());
    let evs = events(&run);
    assert!(evs.iter().any(|e| matches!(e, Event::Step { step: 3, metrics, .. } if metrics["x"] == 1.0)));
    let rejected = evs.iter().filter(|e| matches!(e, Event::Log { level: LogLevel::Warn, message, .. } if message.starts_with("rejected a frame"))).count();
    assert_eq!(rejected, 4);
}

/// Issue 24 #5: a step beyond 2^53 in any frame is refused with a reason, like other bad
/// frames; the run's step, phase and end are untouched.
#[test]
fn steps_beyond_2_pow_53_are_refused_in_every_frame() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "wait.py",
        "import phasetop, time\nrun = phasetop.init()\nwhile not run.sync(1).should_stop:\n    time.sleep(0.02)\n",
    );
    let cfg =
        write(tmp.path(), "plan.toml", "[run]\nname='big'\n[[phase]]\nname='a'\nsteps=100\n[[phase]]\nname='b'\n");
    let mut child =
        spawn_run(tmp.path(), Some(&cfg), &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let run = tmp.path().join("run");
    wait_until("the job's hello", 60, || {
        events(&run).iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("job connected")))
    });
    let mut s = UnixStream::connect(run.join("control.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut ask = |bytes: &str| -> serde_json::Value {
        s.write_all(bytes.as_bytes()).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_default()
    };
    let big = 1u64 << 63;
    for frame in [
        format!("{{\"type\":\"sync\",\"step\":{big}}}"),
        format!("{{\"type\":\"sync\",\"step\":2,\"applied\":{big}}}"),
        format!("{{\"type\":\"probe\",\"step\":{big},\"layer\":\"l\",\"metrics\":{{\"x\":1}}}}"),
        format!("{{\"type\":\"checkpoint\",\"step\":{big},\"path\":\"c.pt\"}}"),
        format!("{{\"type\":\"finish\",\"step\":{big}}}"),
    ] {
        let v = ask(&format!("{frame}\n"));
        assert_eq!(v["type"], "error", "{frame} → {v}");
        let m = v["message"].as_str().unwrap_or_default();
        assert!(m.contains("is larger than the largest step accepted, 2^53"), "{frame} → {m}");
    }
    // A log point's bad step comes back in the next sync's errors.
    let ctl_frame = ask(&format!(
        "{{\"type\":\"log\",\"points\":[{{\"step\":{big},\"metrics\":{{\"x\":1}}}}]}}\n{{\"type\":\"sync\",\"step\":1}}\n"
    ));
    let errors = format!("{}", ctl_frame["errors"]);
    assert!(errors.contains("log point: step 9223372036854775808 is larger"), "{ctl_frame}");
    assert_eq!(ctl_frame["phase"], "a", "{ctl_frame}");
    ctl_ok(&run);
    assert!(wait_exit(&mut child, 60).success());
    let evs = events(&run);
    assert!(evs.iter().all(|e| e.step().is_none_or(|s| s <= 1 << 53)), "a step beyond 2^53 was recorded");
    assert!(!evs.iter().any(|e| matches!(e, Event::PhaseChanged { to, .. } if to == "b")), "the phase switched");
    let (status, _) = ended(&run).unwrap();
    assert_eq!(status, RunStatus::Stopped);
    let export = Command::new(BIN)
        .arg("export")
        .arg(&run)
        .args(["--format", "config", "-o"])
        .arg(tmp.path().join("plan-out.toml"))
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
}

/// Issue 24 #5: idle connections beyond the limit never lock the operator out: the
/// longest-idle one that is not the job's is closed to make room, and the job trains on.
#[test]
fn idle_connections_never_lock_ctl_out() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "wait.py",
        "import phasetop, time\nrun = phasetop.init()\nstep = 0\nwhile True:\n    step += 1\n    run.log({'loss': 1.0}, step=step)\n    if run.sync(step).should_stop:\n        break\n    time.sleep(0.01)\n",
    );
    let mut child =
        spawn_run(tmp.path(), None, &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let run = tmp.path().join("run");
    wait_until("the job's hello", 60, || {
        events(&run).iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("job connected")))
    });
    let idle: Vec<UnixStream> = (0..300).map(|_| UnixStream::connect(run.join("control.sock")).unwrap()).collect();
    let status = ctl(&run, &["status"]);
    assert!(status.contains("step"), "{status}");
    ctl(&run, &["pause"]);
    ctl(&run, &["resume"]);
    let before = last_step(&run);
    wait_until("the job to train on", 60, || last_step(&run) > before);
    ctl(&run, &["stop"]);
    assert!(wait_exit(&mut child, 60).success());
    assert_eq!(ended(&run).unwrap().0, RunStatus::Stopped);
    drop(idle);
}

/// Whether `pid` runs `word` (a pid reused by another process does not count).
fn runs(pid: u32, word: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat.rfind(')').is_some_and(|i| stat[i + 1..].trim_start().starts_with('Z'));
    !zombie && String::from_utf8_lossy(&cmdline).contains(word)
}

/// Issue 24 #4: CMD's main process exits at once (`python job.py & exit 0`) while the job
/// trains: the run ends when the job's work does, at its last step; a background process
/// and a `setsid` daemon the job left are reaped when the run ends, and the log says so.
#[test]
fn the_run_ends_with_the_jobs_work_and_reaps_what_it_left() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "job.py",
        "import phasetop\nrun = phasetop.init()\nfor s in range(1, 21):\n    run.log({'loss': 1.0 / s}, step=s)\n    run.sync(s)\nrun.finish()\n",
    );
    let py = bin.join("python").display().to_string();
    let cmd = format!(
        "sleep 317 & echo $! > bg.pid; setsid sleep 318 & echo $! > daemon.pid; {py} {} & exit 0",
        script.display()
    );
    let mut child = spawn_run(tmp.path(), None, &["sh", "-c", &cmd]);
    let exit = wait_exit(&mut child, 120);
    let run = tmp.path().join("run");
    assert!(exit.success(), "{}", job_log_why(&run));
    let evs = events(&run);
    let end_step = evs.iter().find_map(|e| if let Event::RunEnded { step, .. } = e { Some(*step) } else { None });
    assert_eq!(end_step, Some(20), "the run ended at the job's last step");
    assert_eq!(ended(&run).unwrap().0, RunStatus::Completed);
    assert_eq!(last_step(&run), 20);
    let pid = |f: &str| -> u32 { std::fs::read_to_string(tmp.path().join(f)).unwrap().trim().parse().unwrap() };
    let (bg, daemon) = (pid("bg.pid"), pid("daemon.pid"));
    wait_until("the job's leftovers to be gone", 10, || !runs(bg, "317") && !runs(daemon, "318"));
    let reaped = evs.iter().any(|e| matches!(e, Event::Log { level: LogLevel::Warn, message, .. } if message.contains("SIGTERM to") && message.contains(&bg.to_string()) && message.contains(&daemon.to_string())));
    assert!(reaped, "the log names what was killed");
}

/// Sends `sig` (`STOP`, `CONT`) to `pid` with kill(1).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

/// Issue 24 #5: a host stopped past the client's timeout: the job trains on unrecorded,
/// and the run's end says truthfully how far it ran and how far it was recorded.
#[test]
fn a_stopped_host_ends_the_run_at_the_step_the_job_ran_to() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "job.py",
        "import phasetop, time\nrun = phasetop.init()\nfor s in range(1, 401):\n    run.log({'loss': 1.0 / s}, step=s)\n    run.sync(s)\n    time.sleep(0.02)\nopen('trained.txt', 'w').write('400')\nrun.finish()\n",
    );
    let cmd = format!("PHASETOP_HOST_TIMEOUT_S=2 exec {} {}", bin.join("python").display(), script.display());
    let mut child = spawn_run(tmp.path(), None, &["sh", "-c", &cmd]);
    let host = child.id();
    struct Cont(u32);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).stderr(Stdio::null()).status();
        }
    }
    let _cont = Cont(host);
    let run = tmp.path().join("run");
    wait_until("step 5 recorded", 60, || last_step(&run) >= 5);
    signal(host, "STOP");
    wait_until("the job to train on to its end", 60, || tmp.path().join("trained.txt").exists());
    signal(host, "CONT");
    assert!(wait_exit(&mut child, 60).success());
    let evs = events(&run);
    let end_step = evs.iter().find_map(|e| if let Event::RunEnded { step, .. } = e { Some(*step) } else { None });
    assert_eq!(end_step, Some(400), "the run ends at the step the job ran to");
    let (status, message) = ended(&run).unwrap();
    assert_eq!(status, RunStatus::Completed);
    assert!(message.contains("the job ran to step 400; recorded up to step"), "{message}");
}

/// A host stopped past the client's timeout and then continued while the job still
/// trains: rank 0 reaches it again on its own (off the training path), recording goes on
/// from there, the log says once which steps went unrecorded, and the run ends at the
/// job's last step with no gap claimed at its end.
#[test]
fn a_host_that_answers_again_gets_the_rest_of_the_run() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The job trains until the test says stop (stop.txt), so it outlives the pause on a
    // machine of any speed; its last step is written to trained.txt.
    let script = write(
        tmp.path(),
        "job.py",
        "import os, phasetop, time\nrun = phasetop.init()\ns = 0\nwhile not os.path.exists('stop.txt'):\n    s += 1\n    \
         run.log({'loss': 1.0 / s}, step=s)\n    run.sync(s)\n    time.sleep(0.01)\nopen('trained.txt', 'w').write(str(s))\n\
         run.finish()\n",
    );
    let cmd = format!("PHASETOP_HOST_TIMEOUT_S=2 exec {} {}", bin.join("python").display(), script.display());
    let mut child = spawn_run(tmp.path(), None, &["sh", "-c", &cmd]);
    let host = child.id();
    struct Cont(u32, PathBuf);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).stderr(Stdio::null()).status();
            let _ = std::fs::write(self.1.join("stop.txt"), "");
        }
    }
    let _cont = Cont(host, tmp.path().to_path_buf());
    let run = tmp.path().join("run");
    let job_log = || std::fs::read_to_string(run.join("job.log")).unwrap_or_default();
    wait_until("step 5 recorded", 60, || last_step(&run) >= 5);
    signal(host, "STOP");
    wait_until("the job to lose the stopped host", 60, || job_log().contains("until the host answers again"));
    signal(host, "CONT");
    wait_until("the job to reach the host again", 60, || job_log().contains("reached the run's host again"));
    let resumed = last_step(&run);
    wait_until("steps recorded after the rejoin", 60, || last_step(&run) > resumed + 20);
    std::fs::write(tmp.path().join("stop.txt"), "").unwrap();
    assert!(wait_exit(&mut child, 60).success());
    let trained: u64 = std::fs::read_to_string(tmp.path().join("trained.txt")).unwrap().parse().unwrap();
    let evs = events(&run);
    let gaps: Vec<&String> = evs
        .iter()
        .filter_map(|e| if let Event::Log { message, .. } = e { Some(message) } else { None })
        .filter(|m| m.contains("went unrecorded"))
        .collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(last_step(&run), trained, "recorded to the job's last step");
    let (status, message) = ended(&run).unwrap();
    assert_eq!(status, RunStatus::Completed);
    assert!(!message.contains("recorded up to"), "{message}");
}

/// The rejoin with two gloo ranks: after the host was stopped past the client's timeout
/// and continued, a switch and a stop still reach both ranks at one step, and at every
/// step both ranks trained in the same phase at the same lr.
#[test]
fn after_a_rejoin_both_ranks_still_switch_and_stop_at_one_step() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "ddp.toml", TWO_PHASES);
    let mut job = vec!["env".to_string(), "PHASETOP_HOST_TIMEOUT_S=2".to_string()];
    job.extend(torchrun_job(&bin, 1_000_000));
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let host = child.id();
    struct Cont(u32);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg("-CONT").arg(self.0.to_string()).stderr(Stdio::null()).status();
        }
    }
    let _cont = Cont(host);
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    let job_log = || std::fs::read_to_string(run.join("job.log")).unwrap_or_default();
    wait_until("20 logged steps", 120, || last_step(&run) >= 20);
    signal(host, "STOP");
    wait_until("rank 0 to lose the stopped host", 60, || job_log().contains("until the host answers again"));
    signal(host, "CONT");
    wait_until("rank 0 to reach the host again", 60, || job_log().contains("reached the run's host again"));
    ctl(&run, &["switch", "main"]);
    wait_until("both ranks in main", 60, || (0..2).all(|r| record(&rec, r).iter().any(|x| x.1 == "main")));
    ctl(&run, &["stop"]);
    let exit = wait_exit(&mut child, 60);
    assert!(exit.success(), "job.log:\n{}", job_log_why(&run));
    let evs = events(&run);
    let manual: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, cause: PhaseCause::Manual, to, .. } if to == "main" => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(manual.len(), 1, "{manual:?}");
    let (r0, r1) = (record(&rec, 0), record(&rec, 1));
    let first_main = |r: &[(u64, String, f64)]| r.iter().find(|x| x.1 == "main").map(|x| x.0);
    assert_eq!(first_main(&r0), Some(manual[0]), "rank 0 switched at the logged step");
    assert_eq!(first_main(&r1), Some(manual[0]), "rank 1 switched at the same step");
    assert_eq!(r0, r1, "both ranks trained every step in the same phase at the same lr");
    assert_eq!(
        evs.iter().filter(|e| matches!(e, Event::Log { message, .. } if message.contains("went unrecorded"))).count(),
        1
    );
}

fn ctl_ok(run: &Path) {
    ctl(run, &["status"]);
    ctl(run, &["stop"]);
}

/// The client's probe formulas equal the Rust fixtures (tests/fixtures/probes) to 1e-5.
#[test]
fn client_probe_formulas_match_the_fixtures() {
    let Some((bin, _one)) = venv() else { return };
    let out = Command::new(bin.join("python"))
        .env("PYTHONPATH", root().join("python"))
        .arg("-c")
        .arg(
            r#"
import glob, json, math, sys, torch
from phasetop import probes
n = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.json")):
    d = json.load(open(f))
    t = torch.tensor(d["data"], dtype=torch.float64 if d.get("dtype") == "f64" else torch.float32).reshape(d["shape"])
    got = {"attention_entropy": probes.attention_entropy(t)} if d["kind"] == "attention" else probes.metrics(t)
    for k, want in d["expected"].items():
        g = got[k]
        if want is None:
            assert math.isnan(g), (f, k, g)
        else:
            assert abs(g - want) <= 1e-5 * max(1.0, abs(want)), (f, k, g, want)
        n += 1
print("checked", n)
"#,
        )
        .arg(root().join("tests/fixtures/probes"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n: usize = stdout.trim().strip_prefix("checked ").unwrap().parse().unwrap();
    assert!(n >= 40, "{stdout}");
}

/// Without `phasetop run`, `phasetop.init()` starts a host itself; the run directory it
/// writes is read by `replay --headless` and `inspect`.
#[test]
fn a_plain_python_script_writes_a_run_that_replay_reads() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "plain.py",
        "import phasetop\nrun = phasetop.init(config={'lr': 0.1, 'layers': [2, 3]}, tags=['sweep', 'baseline'], notes='first try', group='g1', run_dir='solo')\nfor s in range(1, 31):\n    run.log({'train_loss': 1.0 / s}, step=s)\n    run.sync(s)\nrun.summary['best_loss'] = 1 / 30\nrun.summary['note'] = 'ok'\nrun.summary['best_loss'] = 0.03\nrun.config.update({'seed': 7})\nrun.finish()\n",
    );
    let out = Command::new(bin.join("python"))
        .current_dir(tmp.path())
        .env("PYTHONPATH", root().join("python"))
        .env("PHASETOP_BIN", BIN)
        .env_remove("PHASETOP_RUN_DIR")
        .env_remove("PHASETOP_SOCKET")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = tmp.path().join("solo");
    assert_eq!(last_step(&run), 30);
    // What init and run.summary were given is the run's (issue 27): inspect --json says it.
    let out = Command::new(BIN).args(["inspect", "--json"]).arg(&run).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["job_config"], serde_json::json!({"lr": 0.1, "layers": [2, 3], "seed": 7}), "config.update joins");
    assert_eq!(s["tags"], serde_json::json!(["sweep", "baseline"]), "the update keeps the tags");
    assert_eq!((s["notes"].as_str(), s["group"].as_str()), (Some("first try"), Some("g1")));
    assert_eq!(s["summary"], serde_json::json!({"best_loss": 0.03, "note": "ok"}), "the last write wins");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["job"]["tags"], serde_json::json!(["sweep", "baseline"]), "run.json too: {meta}");
    let ls = Command::new(BIN).arg("ls").arg(tmp.path()).output().unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.lines().any(|l| l.starts_with("solo") && l.ends_with("sweep,baseline")), "{ls}");
    assert_eq!(ended(&run).unwrap().0, RunStatus::Completed);
    // The CSV carries the run's facts on every row, as a runs table would.
    let csv_path = tmp.path().join("solo.csv");
    let out =
        Command::new(BIN).arg("export").arg(&run).args(["--format", "csv", "-o"]).arg(&csv_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut csv = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_string).collect();
    for col in ["tags", "group", "config/lr", "config/layers", "config/seed", "summary/best_loss", "summary/note"] {
        assert!(header.iter().any(|h| h == col), "{col} in {header:?}");
    }
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    // Every row carries the facts; the steps' rows are the 30 steps logged (a system
    // sample may add a row at a step of its own, as it lands).
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.iter().filter(|r| !r[at("train_loss")].is_empty()).count(), 30);
    for r in &rows {
        assert_eq!((&r[at("tags")], &r[at("group")], &r[at("config/lr")]), ("sweep,baseline", "g1", "0.1"));
        assert_eq!((&r[at("config/layers")], &r[at("summary/best_loss")]), ("[2,3]", "0.03"));
    }
    let replay = Command::new(BIN).arg("replay").arg("--headless").arg(&run).output().unwrap();
    assert!(replay.status.success());
    assert!(
        String::from_utf8_lossy(&replay.stdout).contains("completed"),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
}

/// Issue 27: a notebook runs two runs in a row (`init` after `finish` starts a new one),
/// and a `PHASETOP_BIN` that points nowhere warns once and records nothing.
#[test]
fn init_after_finish_starts_a_new_run_and_a_bad_binary_only_warns() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "two.py",
        "import phasetop\nfor name in ('one', 'two'):\n    run = phasetop.init(run_dir=name)\n    for s in range(1, 11):\n        run.log({'train_loss': 1.0 / s}, step=s)\n        run.sync(s)\n    run.finish()\n",
    );
    let python = |script: &Path, phasetop_bin: &str| {
        Command::new(bin.join("python"))
            .current_dir(tmp.path())
            .env("PYTHONPATH", root().join("python"))
            .env("PHASETOP_BIN", phasetop_bin)
            .env_remove("PHASETOP_RUN_DIR")
            .env_remove("PHASETOP_SOCKET")
            .arg(script)
            .output()
            .unwrap()
    };
    let out = python(&script, BIN);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["one", "two"] {
        let run = tmp.path().join(name);
        assert_eq!(last_step(&run), 10, "run {name}");
        assert_eq!(ended(&run).map(|e| e.0), Some(RunStatus::Completed), "run {name}");
    }
    let out = python(&script, "/nonexistent/phasetop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the script goes on: {stderr}");
    assert!(stderr.contains("cannot start the phasetop host") && stderr.contains("not recorded"), "{stderr}");
}

/// A bad CONFIG or a missing command: usage errors (exit 2), nothing created.
#[test]
fn run_refuses_bad_configs_and_commands_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "bad.toml", "[[phase]]\nname='a'\nlr=nan\n");
    let out = Command::new(BIN)
        .current_dir(tmp.path())
        .args(["run", "bad.toml", "--headless", "--run-dir", "r", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:4: phase \"a\" setting \"lr\": NaN is not a finite number"), "{err}");
    let out = Command::new(BIN)
        .current_dir(tmp.path())
        .args(["run", "--headless", "--run-dir", "r", "--", "no-such-program-here"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-program-here: no such program"));
    let out = Command::new(BIN).current_dir(tmp.path()).args(["run", "--headless"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!tmp.path().join("r").exists());
    drop(cfg);
}

/// Ranks meet (broadcast) only every K-th sync, K chosen from the step time: at 2 ms
/// steps they meet rarely, yet the plan's scheduled switch and its `max_steps` stop land
/// on their exact steps on both ranks, and the log's switch carries that step.
#[test]
fn ranks_meet_rarely_yet_scheduled_switch_and_stop_land_on_their_steps() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(
        tmp.path(),
        "plan.toml",
        "[run]\nname='meet'\nmax_steps=300\n[[phase]]\nname='warm'\nsteps=137\n[[phase]]\nname='main'\n",
    );
    let script = write(
        tmp.path(),
        "meet.py",
        r#"
import os, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
import phasetop
run = phasetop.init()
rank = dist.get_rank()
x = torch.ones(8)
with open(f"rec/record-rank{rank}.tsv", "w") as rec:
    for step in range(1, 100000):
        dist.all_reduce(x)      # the job's own collective, as DDP's
        time.sleep(0.002)
        run.log({"train_loss": 1.0 / step}, step=step)
        ctl = run.sync(step)
        rec.write(f"{step}\t{ctl.phase}\t0\n")
        if ctl.should_stop:
            break
if rank == 0:
    with open("rec/meetings", "w") as f:
        f.write(f"{run._meetings} {run._calls} {run._meet_cost} {run._interval}")
run.finish()
dist.destroy_process_group()
"#,
    );
    std::fs::create_dir_all(tmp.path().join("rec")).unwrap();
    let job = [
        bin.join("torchrun").display().to_string(),
        "--standalone".into(),
        "--nproc-per-node".into(),
        "2".into(),
        script.display().to_string(),
    ];
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 180);
    let run = tmp.path().join("run");
    assert!(exit.success(), "{}", job_log_why(&run));
    let rec = tmp.path().join("rec");
    let switched = |r| record(&rec, r).iter().find(|x| x.1 == "main").map(|x| x.0);
    assert_eq!(switched(0), Some(137), "rank 0 switched where warm's 137 steps end");
    assert_eq!(switched(1), Some(137), "rank 1 too");
    assert_eq!(record(&rec, 0).last().map(|x| x.0), Some(300), "rank 0 stopped at max_steps");
    assert_eq!(record(&rec, 1).last().map(|x| x.0), Some(300), "rank 1 too");
    let logged: Vec<u64> = events(&run)
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, cause: PhaseCause::Scheduled, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(logged, vec![137], "the log's switch is at the step the ranks applied it");
    let meet = std::fs::read_to_string(rec.join("meetings")).unwrap();
    let fields: Vec<f64> = meet.split_whitespace().map(|x| x.parse().unwrap_or(f64::NAN)).collect();
    let [met, calls, cost, interval] = fields[..] else { panic!("meetings: {meet:?}") };
    assert_eq!(calls, 300.0);
    // Rank 0 meets every k-th call, k chosen so meetings cost ≤ 0.5 % of the step time:
    // rare where a meeting costs much (a slow machine), frequent only where it is cheap.
    // Allow for k's start at 1 and its drift, and the plan's two boundaries.
    let k = (cost / (0.005 * interval)).ceil().clamp(1.0, 1000.0);
    assert!(
        met <= (calls / k * 3.0).ceil() + 12.0,
        "the ranks met at {met} of {calls} syncs, a meeting costing {cost} s of {interval} s steps (k {k})"
    );
    if k >= 4.0 {
        assert!(met < calls / 2.0, "the ranks met at {met} of {calls} syncs with k {k}: meetings should be rare");
    }
}

/// `ctl pause` holds every rank inside `sync` at the same step (the ranks' records stop
/// growing); `ctl resume` lets them go on.
#[test]
fn pause_holds_both_ranks_and_resume_releases_them() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "ddp.toml", TWO_PHASES);
    let job = torchrun_job(&bin, 1_000_000);
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20);
    ctl(&run, &["pause"]);
    let last = |r| record(&rec, r).last().map_or(0, |x| x.0);
    // The host's own clock: its system samples come about once a second, paused or not.
    let samples =
        || events(&run).iter().filter(|e| matches!(e, Event::Eval { split, .. } if split == "system")).count();
    // Held at a meeting: both ranks at the same step, unchanged over a sample interval.
    let (mut seen, mut since) = ((0, 0), 0);
    wait_until("both ranks held at one step", 120, || {
        let (now, n) = ((last(0), last(1)), samples());
        if now != seen {
            (seen, since) = (now, n);
            return false;
        }
        now.0 == now.1 && n > since
    });
    let held = seen;
    // Then nothing moves over two more samples.
    let before = samples();
    wait_until("two more system samples", 60, || samples() >= before + 2);
    assert_eq!((last(0), last(1)), held, "paused ranks take no step");
    ctl(&run, &["resume"]);
    wait_until("steps after resume", 60, || last(0) > held.0 + 5 && last(1) > held.1 + 5);
    ctl(&run, &["stop"]);
    assert!(wait_exit(&mut child, 60).success());
}

/// A job that ignores `should_stop` and SIGTERM, whose worker runs in a new session (as
/// torchrun starts its workers): the stop's SIGKILL reaches the worker too, none is left.
#[test]
fn stop_escalation_kills_workers_in_new_sessions_too() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "plan.toml", "[run]\nname='stubborn'\nstop_grace_s=0.5\n[[phase]]\nname='only'\n");
    let script = write(
        tmp.path(),
        "stubborn.py",
        r#"
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('worker.tmp', 'w').write(str(os.getpid())); os.replace('worker.tmp', 'worker.pid'); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
import phasetop
run = phasetop.init()
step = 0
while True:                       # never looks at should_stop
    step += 1
    run.log({"train_loss": 1.0}, step=step)
    time.sleep(0.05)
"#,
    );
    let mut child =
        spawn_run(tmp.path(), Some(&cfg), &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let pid_file = tmp.path().join("worker.pid");
    wait_until("the worker started", 60, || pid_file.exists());
    let worker: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let run = tmp.path().join("run");
    wait_until("a logged step", 60, || last_step(&run) >= 1);
    ctl(&run, &["stop"]);
    wait_exit(&mut child, 60);
    // Gone, or a zombie nobody reaps in this container: either way not running.
    let running = || {
        std::fs::read_to_string(format!("/proc/{worker}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    wait_until("the worker is gone", 10, || !running());
    let evs = events(&run);
    assert!(
        evs.iter().any(|e| matches!(e, Event::Log { message, .. } if message.contains("SIGKILL"))),
        "the log says the job was killed"
    );
}

const ADAPTER_PLAN: &str =
    "[run]\nname='adapter'\nmax_steps=60\n[[phase]]\nname='warm'\nsteps=20\nlr=0.1\n[[phase]]\nname='main'\nlr=0.01\n";

/// An adapter's run: the plan's lr reached the optimizer (0.1, then 0.01 from the
/// scheduled switch at step 20), the run stopped at the plan's max_steps (the script asked
/// for 1000), and the loss (and a held-out metric) reached the log.
fn check_adapter_run(tmp: &Path, exit: std::process::ExitStatus, eval_metric: &str) {
    let run = tmp.join("run");
    assert!(exit.success(), "{}", job_log_why(&run));
    let lrs: Vec<(u64, f64)> = std::fs::read_to_string(tmp.join("lrs.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (a, b) = l.split_once('\t').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    let show = |v: &[(u64, f64)]| format!("{:?} … {:?}", &v[..v.len().min(3)], &v[v.len().saturating_sub(3)..]);
    // A schedule goes on from the phase's lr (its base is moved), so within a phase the
    // lr is the phase's or a little under it.
    let near = |lr: f64, base: f64| lr <= base * (1.0 + 1e-12) && lr > 0.9 * base;
    assert_eq!(lrs.first().map(|x| x.1), Some(0.1), "the first phase's lr, not the script's: {}", show(&lrs));
    let last = lrs.last().unwrap().0;
    assert!((59..=62).contains(&last), "stopped at the plan's max_steps (60), not the script's 1000: {}", show(&lrs));
    let evs = events(&run);
    let switch = evs.iter().find_map(|e| match e {
        Event::PhaseChanged { step, cause: PhaseCause::Scheduled, to, .. } if to == "main" => Some(*step),
        _ => None,
    });
    assert_eq!(switch, Some(20));
    // Steps after the switch train at the new lr, steps before it at the old.
    assert!(lrs.iter().filter(|x| x.0 > 21).all(|x| near(x.1, 0.01)), "{}", show(&lrs));
    assert!(lrs.iter().filter(|x| x.0 < 20).all(|x| near(x.1, 0.1)), "{}", show(&lrs));
    assert!(
        evs.iter().filter(|e| matches!(e, Event::Step { metrics, .. } if metrics.contains_key("train_loss"))).count()
            >= 50
    );
    // The host adds the rate the dashboard's header shows, as the built-in host does.
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Step { metrics, .. } if metrics.get("steps_per_s").is_some_and(|r| *r > 0.0))),
        "step events carry steps_per_s"
    );
    assert!(
        evs.iter().any(|e| matches!(e, Event::Eval { metrics, .. } if metrics.contains_key(eval_metric))),
        "{eval_metric}"
    );
    let (status, message) = ended(&run).unwrap();
    assert_eq!(status, RunStatus::Completed, "{message}");
    assert!(message.contains("reached max_steps = 60"), "{message}");
}

/// The Lightning callback in a real `lightning.Trainer` run.
#[test]
fn lightning_callback_logs_syncs_applies_lr_and_stops() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "plan.toml", ADAPTER_PLAN);
    let script = write(
        tmp.path(),
        "pl.py",
        r#"
import torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
from phasetop.lightning import PhasetopCallback
torch.set_num_threads(1)
torch.manual_seed(0)
lrs = open("lrs.tsv", "w", buffering=1)
class M(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
    def training_step(self, batch, i):
        x, y = batch
        lrs.write(f"{self.global_step}\t{self.trainer.optimizers[0].param_groups[0]['lr']!r}\n")
        return torch.nn.functional.cross_entropy(self.net(x), y)
    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)
x = torch.randn(256, 8)
y = (x[:, 0] > 0).long()
dl = DataLoader(TensorDataset(x, y), batch_size=16)
trainer = L.Trainer(max_steps=1000, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, limit_val_batches=2,
                    callbacks=[PhasetopCallback()])
trainer.fit(M(), dl, dl)
"#,
    );
    let mut child =
        spawn_run(tmp.path(), Some(&cfg), &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 300);
    check_adapter_run(tmp.path(), exit, "val_loss");
}

/// The Hugging Face callback in a real `transformers.Trainer` run (a tiny torch model).
#[test]
fn hf_callback_logs_syncs_applies_lr_and_stops() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "plan.toml", ADAPTER_PLAN);
    let script = write(
        tmp.path(),
        "hf.py",
        r#"
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from phasetop.hf import PhasetopCallback
torch.set_num_threads(1)
torch.manual_seed(0)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}
class DS(torch.utils.data.Dataset):
    def __init__(self):
        self.x = torch.randn(256, 8)
        self.y = (self.x[:, 0] > 0).long()
    def __len__(self):
        return 256
    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}
lrs = open("lrs.tsv", "w", buffering=1)
class Record(TrainerCallback):
    def on_step_begin(self, args, state, control, optimizer=None, **kw):
        lrs.write(f"{state.global_step}\t{optimizer.param_groups[0]['lr']!r}\n")
args = TrainingArguments(output_dir="hf-out", max_steps=1000, per_device_train_batch_size=16, logging_steps=1,
                         eval_strategy="steps", eval_steps=16, report_to=[], save_strategy="no", use_cpu=True,
                         disable_tqdm=True, learning_rate=0.5, lr_scheduler_type="linear", dataloader_num_workers=0)
Trainer(model=M(), args=args, train_dataset=DS(), eval_dataset=DS(), callbacks=[PhasetopCallback(), Record()]).train()
"#,
    );
    let mut child =
        spawn_run(tmp.path(), Some(&cfg), &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 300);
    check_adapter_run(tmp.path(), exit, "val_loss");
    // The Trainer's end-of-training figures are the run's summary, not step metrics.
    let evs = events(&tmp.path().join("run"));
    assert!(!evs.iter().any(|e| matches!(e, Event::Step { metrics, .. } if metrics.contains_key("train_runtime"))));
    let summary = phasetop::inspect::Summary::load(&tmp.path().join("run/events.log")).unwrap();
    assert!(
        summary.summary.contains_key("train_runtime") && summary.summary.contains_key("train_loss"),
        "{:?}",
        summary.summary
    );
}

/// Issue 22 with the adapters: under DDP every rank takes the plan's first lr at the start
/// and the scheduled switch's at its step, so the ranks' weights agree at the end.
/// `lrs-<rank>.tsv` (step, lr) and `sum-<rank>` (the weights' sum) are written by each rank.
fn check_ranks_agree(tmp: &Path, exit: std::process::ExitStatus) {
    let run = tmp.join("run");
    assert!(exit.success(), "{}", job_log_why(&run));
    let read = |name: String| std::fs::read_to_string(tmp.join(name)).unwrap_or_default();
    let (l0, l1) = (read("lrs-0.tsv".into()), read("lrs-1.tsv".into()));
    assert!(l0.lines().count() >= 50, "rank 0 trained: {l0}");
    assert_eq!(l0, l1, "both ranks used the same lr at every step");
    assert!(l0.lines().next().is_some_and(|l| l.ends_with("\t0.1")), "the plan's first lr: {l0}");
    let (a, b): (f64, f64) =
        (read("sum-0".into()).trim().parse().unwrap(), read("sum-1".into()).trim().parse().unwrap());
    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "the ranks' weights differ: {a} vs {b}");
}

#[test]
fn lightning_ddp_ranks_train_with_the_plans_settings_and_agree() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "plan.toml", ADAPTER_PLAN);
    let script = write(
        tmp.path(),
        "pl_ddp.py",
        r#"
import torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
from phasetop.lightning import PhasetopCallback
torch.set_num_threads(1)
torch.manual_seed(0)
class M(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
    def training_step(self, batch, i):
        x, y = batch
        with open(f"lrs-{self.global_rank}.tsv", "a") as f:
            f.write(f"{self.global_step}\t{self.trainer.optimizers[0].param_groups[0]['lr']!r}\n")
        return torch.nn.functional.cross_entropy(self.net(x), y)
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)
    def on_train_end(self):
        with open(f"sum-{self.global_rank}", "w") as f:
            f.write(repr(sum(p.double().sum().item() for p in self.parameters())))
g = torch.Generator().manual_seed(1)
x = torch.randn(1024, 8, generator=g)
y = (x[:, 0] > 0).long()
dl = DataLoader(TensorDataset(x, y), batch_size=16)
trainer = L.Trainer(max_steps=1000, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                    callbacks=[PhasetopCallback()])
trainer.fit(M(), dl)
"#,
    );
    let mut child =
        spawn_run(tmp.path(), Some(&cfg), &python_job(&bin, &script).iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 300);
    check_ranks_agree(tmp.path(), exit);
}

#[test]
fn hf_trainer_under_torchrun_ranks_train_with_the_plans_settings_and_agree() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "plan.toml", ADAPTER_PLAN);
    let script = write(
        tmp.path(),
        "hf_ddp.py",
        r#"
import os, torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from phasetop.hf import PhasetopCallback
torch.set_num_threads(1)
torch.manual_seed(0)
rank = int(os.environ.get("RANK", "0"))
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 2)
    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}
class DS(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(2048, 8, generator=g)
        self.y = (self.x[:, 0] > 0).long()
    def __len__(self):
        return len(self.x)
    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}
class Record(TrainerCallback):
    def on_step_begin(self, args, state, control, optimizer=None, **kw):
        with open(f"lrs-{rank}.tsv", "a") as f:
            f.write(f"{state.global_step}\t{optimizer.param_groups[0]['lr']!r}\n")
    def on_train_end(self, args, state, control, model=None, **kw):
        with open(f"sum-{rank}", "w") as f:
            f.write(repr(sum(p.double().sum().item() for p in model.parameters())))
args = TrainingArguments(output_dir="hf-out", max_steps=1000, per_device_train_batch_size=16, logging_steps=1,
                         report_to=[], save_strategy="no", use_cpu=True, ddp_backend="gloo",
                         disable_tqdm=True, learning_rate=0.5, lr_scheduler_type="constant",
                         dataloader_num_workers=0)
Trainer(model=M(), args=args, train_dataset=DS(), callbacks=[PhasetopCallback(), Record()]).train()
# Leave the process group together (a rank exiting while another still uses it can abort
# that one: gloo's "terminate called without an active exception").
import torch.distributed as dist
if dist.is_initialized():
    dist.barrier()
    dist.destroy_process_group()
"#,
    );
    let job = [
        bin.join("torchrun").display().to_string(),
        "--standalone".into(),
        "--nproc-per-node".into(),
        "2".into(),
        script.display().to_string(),
    ];
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job.iter().map(String::as_str).collect::<Vec<_>>());
    let exit = wait_exit(&mut child, 300);
    check_ranks_agree(tmp.path(), exit);
}

/// The dashboard on an external run, in a real pseudo-terminal (the harness of
/// tests/dashboard_pty.rs): live, switched with `s`, and stopped on quit.
#[test]
fn dashboard_shows_an_external_run_live_and_switches_it_with_s() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "plan.toml", TWO_PHASES);
    let pty = native_pty_system();
    let pair = pty.openpty(PtySize { rows: 48, cols: 160, pixel_width: 0, pixel_height: 0 }).unwrap();
    let mut cmd = CommandBuilder::new(BIN);
    let script = root().join("examples/ddp_train.py");
    let py = bin.join("python");
    cmd.args(["run", "plan.toml", "--run-dir", "run", "--"]);
    cmd.args([
        py.to_str().unwrap(),
        script.to_str().unwrap(),
        "--steps",
        "1000000",
        "--step-ms",
        "10",
        "--record",
        "rec",
    ]);
    cmd.cwd(tmp.path());
    cmd.env("TERM", "xterm-256color");
    cmd.env("PYTHONPATH", root().join("python"));
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let screen = Arc::new(Mutex::new(vt100::Parser::new(
        std::num::NonZeroU16::new(48).unwrap(),
        std::num::NonZeroU16::new(160).unwrap(),
        0,
    )));
    let s2 = screen.clone();
    std::thread::spawn(move || {
        let _keep = pair.master;
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock().unwrap().process(&buf[..n]);
        }
    });
    let run = tmp.path().join("run");
    let contents = || screen.lock().unwrap().screen().contents();
    let header = || contents().lines().next().unwrap_or("").to_string();
    let wait = |what: &str, secs: u64, header_only: bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !(if header_only { header() } else { contents() }).contains(what) {
            if Instant::now() > deadline {
                let _ = ctl_quiet(&run, &["stop"]);
                panic!("screen never showed {what:?}:\n{}", contents());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut keys = |s: &str| {
        writer.write_all(s.as_bytes()).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    };
    wait("LIVE", 120, true);
    wait("● warm", 30, true);
    wait_until("logged steps", 60, || last_step(&run) >= 5);
    keys("s");
    wait("switch phase", 10, false);
    keys("\r");
    wait("confirm", 10, false);
    keys("y");
    wait("● main", 30, true);
    let manual = events(&run).into_iter().find_map(|e| match e {
        Event::PhaseChanged { step, cause: PhaseCause::Manual, to, .. } if to == "main" => Some(step),
        _ => None,
    });
    let rec = tmp.path().join("rec");
    wait_until("the script in main", 30, || record(&rec, 0).iter().any(|x| x.1 == "main"));
    assert_eq!(record(&rec, 0).iter().find(|x| x.1 == "main").map(|x| x.0), manual, "switched at the logged step");
    // Quit with stop: the job is told to stop and the run ends stopped.
    keys("q");
    wait("stop the run", 10, false);
    keys("s");
    wait_until("the run's end", 60, || ended(&run).is_some());
    assert_eq!(ended(&run).unwrap().0, RunStatus::Stopped);
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ctl_quiet(run: &Path, words: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(BIN).arg("ctl").arg(run).args(words).output()
}

/// `ctl plan CONFIG` on an external run: the built-in host's rule (phases up to the
/// current one, `[run]` and `[probes]` unchanged), a bad file refused with its location,
/// and an accepted edit's new phase reachable by `switch`, its settings reaching the job.
#[test]
fn ctl_plan_edits_an_external_runs_future_phases() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write(tmp.path(), "two.toml", TWO_PHASES);
    let script = root().join("examples/ddp_train.py").display().to_string();
    let py = bin.join("python").display().to_string();
    let job = [py.as_str(), &script, "--steps", "1000000", "--step-ms", "5", "--record", "rec"];
    let mut child = spawn_run(tmp.path(), Some(&cfg), &job);
    let (run, rec) = (tmp.path().join("run"), tmp.path().join("rec"));
    wait_until("20 logged steps", 120, || last_step(&run) >= 20);
    let refused = |file: &Path| {
        let out = ctl_quiet(&run, &["plan", file.to_str().unwrap()]).unwrap();
        assert_eq!(out.status.code(), Some(1), "a refused plan exits 1");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The current phase cannot change, nor [run].
    let e = refused(&write(tmp.path(), "a.toml", &TWO_PHASES.replace("lr=0.1", "lr=0.5")));
    assert!(e.contains("phases up to the current one (\"warm\") must stay as they are"), "{e}");
    let e = refused(&write(tmp.path(), "b.toml", &TWO_PHASES.replace("name='ddp'", "name='ddp'\nmax_steps=9")));
    assert!(e.contains("[run] cannot change in a live run"), "{e}");
    // An invalid external config: where, and why (line 11 is the third phase's steps).
    let e = refused(&write(tmp.path(), "c.toml", &format!("{TWO_PHASES}[[phase]]\nname='cool'\nsteps=0\n")));
    assert!(e.contains("plan:11:7: steps must be at least 1"), "{e}");
    let e = refused(&cfg);
    assert!(e.contains("the plan is unchanged"), "{e}");

    // Accepted: main's lr changes and a third phase comes after it.
    let edit = TWO_PHASES.replace("lr=0.02", "lr=0.03") + "[[phase]]\nname='cool'\nlr=0.001\n";
    let out = ctl(&run, &["plan", write(tmp.path(), "d.toml", &edit).to_str().unwrap()]);
    assert!(out.contains(": plan from step ") && out.trim_end().ends_with("warm → main → cool"), "{out}");
    ctl(&run, &["switch", "cool"]);
    wait_until("the script in cool", 60, || record(&rec, 0).iter().any(|x| x.1 == "cool"));
    let cool = record(&rec, 0).into_iter().find(|x| x.1 == "cool").unwrap();
    assert_eq!(cool.2, 0.001, "the new phase's settings reach the job");
    ctl(&run, &["stop"]);
    assert!(wait_exit(&mut child, 60).success());
    let evs = events(&run);
    let plans: Vec<&Vec<String>> = evs
        .iter()
        .filter_map(|e| if let Event::PlanChanged { phases, .. } = e { Some(phases) } else { None })
        .collect();
    assert_eq!(plans, [&vec!["warm".to_string(), "main".into(), "cool".into()]], "one plan_changed");
    let changed = evs.iter().find_map(|e| match e {
        Event::PhaseChanged { step, to, .. } if to == "cool" => Some(*step),
        _ => None,
    });
    assert_eq!(changed, Some(cool.0), "switched at the logged step");
    // The recorded plan is what the dashboard's plan panel reads.
    let config = evs.iter().find_map(|e| if let Event::PlanChanged { config, .. } = e { Some(config) } else { None });
    assert_eq!(config.unwrap()["phase"][1]["lr"], 0.03);
}

/// Resident memory of a process, MB (10⁶ bytes), from /proc.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb * 1024.0 / 1e6
}

/// System samples of an external run are the job's: its process tree's CPU (a child
/// process spinning is counted, the idle host is not) and memory, about once a second,
/// none after the end; no GPU here, so no `sys/gpu_*` and a note saying why.
#[test]
fn system_samples_measure_the_jobs_process_tree() {
    let Some((bin, _one)) = venv() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // An idle interpreter: what the job's memory must exceed (it runs two).
    // It says when it is up (imports done), so its memory is measured then.
    let mut idle = Command::new(bin.join("python"))
        .args(["-c", "import time; print('up', flush=True); time.sleep(30)"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = String::new();
    BufReader::new(idle.stdout.take().unwrap()).read_line(&mut up).unwrap();
    assert_eq!(up.trim(), "up");
    let idle_mb = rss_mb(idle.id());
    let _ = idle.kill();
    let _ = idle.wait();
    // The job's main process only waits and logs; its child spins until it has used 1.5 s
    // of CPU (not for a wall time: on a busy machine it gets what share it gets).
    let script = write(
        tmp.path(),
        "spin.py",
        r#"
import os, resource, subprocess, sys, time
import phasetop
run = phasetop.init()
t0 = time.time()
child = subprocess.Popen([sys.executable, "-c",
    "import time\nt = time.time() + 60\nx = 0\nwhile time.process_time() < 1.5 and time.time() < t: x += 1"])
step = 0
while child.poll() is None:
    step += 1
    run.log({"train_loss": 1.0 / step}, step=step)
    run.sync(step)
    time.sleep(0.05)
wall = time.time() - t0
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
me = resource.getrusage(resource.RUSAGE_SELF)
with open("cpu.txt", "w") as f:     # what each side used, as shares of one core
    f.write(f"{100 * (kids.ru_utime + kids.ru_stime) / wall} {100 * (me.ru_utime + me.ru_stime) / wall} {kids.ru_utime + kids.ru_stime}")
time.sleep(1.2)
run.finish()
"#,
    );
    let run = run_python_to_success(tmp.path(), &bin, &script);
    let evs = events(&run);
    let samples: Vec<(usize, &phasetop::event::Metrics)> = evs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Eval { split, metrics, .. } if split == "system" => Some((i, metrics)),
            _ => None,
        })
        .collect();
    assert!(samples.len() >= 2, "about once a second over ~4 s: {samples:?}");
    let max = |name: &str| samples.iter().filter_map(|(_, m)| m.get(name).copied()).fold(f64::NAN, f64::max);
    let cpu = max("sys/cpu_pct");
    // The child's share depends on the machine's load; the tree's peak must show it,
    // well above what the waiting parent used alone.
    let shares = std::fs::read_to_string(tmp.path().join("cpu.txt")).unwrap();
    let nums: Vec<f64> = shares.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let [child, parent, child_cpu_s] = nums[..] else { panic!("cpu.txt: {shares:?}") };
    assert!(child_cpu_s >= 1.4, "the child spun its 1.5 s of CPU: {child_cpu_s} s");
    assert!(
        cpu > 0.5 * child && cpu > parent + 0.25 * child,
        "the spinning child counts: max sys/cpu_pct {cpu}, child {child:.0} %, parent {parent:.0} %; {samples:?}"
    );
    let rss = max("sys/rss_mb");
    assert!(rss > idle_mb, "two interpreters outweigh one idle one ({idle_mb:.1} MB): {rss}");
    // Nothing after the end; the run's own steps are there as usual.
    let end = evs.iter().position(|e| matches!(e, Event::RunEnded { .. })).expect("run_ended");
    assert!(samples.iter().all(|(i, _)| *i < end));
    assert_eq!(ended(&run).unwrap().0, RunStatus::Completed);
    // No NVIDIA driver on this machine: no GPU metric, and the log says why.
    if !Path::new("/dev/nvidiactl").exists() {
        assert!(samples.iter().all(|(_, m)| !m.keys().any(|k| k.starts_with("sys/gpu"))));
        assert!(evs.iter().any(
            |e| matches!(e, Event::Log { message, .. } if message.starts_with("system samples") && message.contains("no GPU metrics"))
        ));
    }
}
