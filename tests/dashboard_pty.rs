//! The real binary in a pseudo-terminal, its screen parsed by a terminal emulator
//! (vt100): start a run, switch phase by keys and by `:switch`, detach, re-attach and
//! see the history, survive SIGKILL and SIGHUP of the dashboard, quit with stop.

use phasetop::event::{Event, PhaseCause, RunStatus};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

struct Tty {
    screen: Arc<Mutex<vt100::Parser>>,
    /// Every byte the dashboard wrote (what the emulator does not keep: bells, OSCs).
    raw: Arc<Mutex<Vec<u8>>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Tty {
    fn spawn(args: &[&str], cwd: &Path) -> Tty {
        Tty::spawn_env(args, cwd, &[])
    }

    fn spawn_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Tty {
        let pty = native_pty_system();
        let pair = pty.openpty(PtySize { rows: 48, cols: 160, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("TMUX");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(48).unwrap(),
            std::num::NonZeroU16::new(160).unwrap(),
            0,
        )));
        let s2 = screen.clone();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let r2 = raw.clone();
        std::thread::spawn(move || {
            let _keep_master = pair.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                // Raw bytes first: whatever the screen shows, `raw` already holds every
                // byte written before it (a notification sent before a frame included).
                r2.lock().unwrap().extend_from_slice(&buf[..n]);
                s2.lock().unwrap().process(&buf[..n]);
            }
        });
        Tty { screen, raw, writer, child }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    fn wait_for(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.contents().contains(what) {
            assert!(Instant::now() < deadline, "screen never showed {what:?}:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn header(&self) -> String {
        self.contents().lines().next().unwrap_or("").to_string()
    }

    fn wait_header(&self, what: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !self.header().contains(what) {
            assert!(Instant::now() < deadline, "header never showed {what:?}:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }

    fn wait_exit(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "dashboard did not exit:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn events(run: &Path) -> Vec<Event> {
    phasetop::runlog::read_all(&run.join("events.log")).unwrap().records.into_iter().map(|r| r.event).collect()
}

fn live(run: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_ok()
}

struct StopOnDrop(PathBuf);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN).arg("ctl").arg(&self.0).arg("stop").output();
    }
}

/// Writes `small.toml` in `dir`: a tiny gaussian MLP run with the given run length,
/// checkpoint section body and `[[phase]]` tables.
fn write_small_config(dir: &Path, max_steps: u64, checkpoint: &str, phases: &str) {
    std::fs::write(
        dir.join("small.toml"),
        format!(
            "[run]\nname='small'\nmax_steps={max_steps}\nthreads=1\n[task]\nkind='gaussian'\nn_train=512\nn_val=128\n\
             [model]\nkind='mlp'\ndepth=2\nwidth=32\n[eval]\nevery=10\n[checkpoint]\n{checkpoint}\n{phases}"
        ),
    )
    .unwrap();
}

const WARM: &str = "[[phase]]\nname='warm'\noptimizer='adam'\nlr=0.01\nbatch_size=32\n";
const MAIN: &str = "[[phase]]\nname='main'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n";

#[test]
fn dashboard_drives_a_run_and_detach_never_stops_training() {
    let tmp = tempfile::tempdir().unwrap();
    write_small_config(tmp.path(), 100_000_000, "every=0", &format!("{WARM}{MAIN}"));
    let cfg = tmp.path().join("small.toml");
    let run = tmp.path().join("run");
    let _cleanup = StopOnDrop(run.clone());

    let mut t = Tty::spawn(&["train", "small.toml", "--run-dir", "run"], tmp.path());
    t.wait_header("LIVE", 60);
    t.wait_header("● warm", 10);
    t.wait_for("loss", 5);

    // Switch by keys: s → picker → Enter → confirm → y.
    t.keys("s");
    t.wait_for("switch phase", 5);
    t.keys("\r");
    t.wait_for("confirm", 5);
    t.keys("y");
    t.wait_header("● main", 10);
    let manual = |evs: &[Event], to: &str| {
        evs.iter().any(|e| matches!(e, Event::PhaseChanged { to: t, cause: PhaseCause::Manual, .. } if t == to))
    };
    assert!(manual(&events(&run), "main"), "the switch is in the log with cause manual");

    // Switch by the command line.
    t.keys(":switch warm\r");
    t.wait_header("● warm", 10);
    assert!(manual(&events(&run), "warm"));
    t.wait_for("main → warm (manual", 5);

    // A bad command changes nothing and says why.
    t.keys(":switch nowhere\r");
    t.wait_for("unknown phase \"nowhere\"", 5);

    // Editing the config the run came from offers its new future phases; an invalid
    // edit shows where it is wrong and changes nothing.
    let original = std::fs::read_to_string(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // a distinct mtime
    std::fs::write(&cfg, original.replace("lr=0.05", "lr=[")).unwrap();
    t.wait_for("config edit not applied", 10);
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&cfg, format!("{original}[[phase]]\nname='cool'\noptimizer='sgd'\nlr=0.001\nbatch_size=32\n"))
        .unwrap();
    t.wait_for("config edited", 10);
    t.keys("y");
    t.wait_for("○ cool", 10);
    assert!(events(&run).iter().any(|e| matches!(e, Event::PlanChanged { phases, .. } if phases.len() == 3)));

    // Quit → detach: the dashboard exits, training goes on.
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    let step_then = events(&run).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(&run).len() <= step_then {
        assert!(Instant::now() < deadline, "training goes on after detach");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(live(&run), "detaching never stops the run");

    // Re-attach: the whole history is there (both manual switches).
    let mut a = Tty::spawn(&["attach", "run"], tmp.path());
    a.wait_header("LIVE", 30);
    // The plan panel can only know that main ran (and ended) from the backfilled history.
    a.wait_for("✓ main", 10);
    a.wait_for("○ cool", 10);
    a.child.kill().unwrap(); // SIGKILL the dashboard
    a.wait_exit(10);
    std::thread::sleep(Duration::from_millis(300));
    assert!(live(&run), "SIGKILL of a dashboard leaves training running");

    let mut h = Tty::spawn(&["attach", "run"], tmp.path());
    h.wait_header("LIVE", 30);
    let pid = h.child.process_id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGHUP) };
    h.wait_exit(10);
    std::thread::sleep(Duration::from_millis(300));
    assert!(live(&run), "SIGHUP of a dashboard leaves training running");

    // A last dashboard quits with stop: checkpoint, then the run ends as stopped.
    let mut s = Tty::spawn(&["attach", "run"], tmp.path());
    s.wait_header("LIVE", 30);
    s.keys("q");
    s.wait_for("stop the run", 5);
    s.keys("s");
    s.wait_exit(10);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(events(&run).last(), Some(Event::RunEnded { .. })) {
        assert!(Instant::now() < deadline, "the run did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let evs = events(&run);
    assert!(matches!(evs.last(), Some(Event::RunEnded { status: RunStatus::Stopped, .. })));
    assert!(evs.iter().rev().take(4).any(|e| matches!(e, Event::Checkpoint { .. })), "stop checkpoints first");
}

/// A step as the header writes it (thin grouping: `12 500`).
fn grouped(step: u64) -> String {
    let d = step.to_string();
    d.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
        out
    })
}

/// The run's newest step so far (0 before its log exists).
fn max_step(run: &Path) -> u64 {
    let Ok(log) = phasetop::runlog::read_all(&run.join("events.log")) else { return 0 };
    log.records.iter().filter_map(|r| r.event.step()).max().unwrap_or(0)
}

fn wait_step(run: &Path, step: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while max_step(run) < step {
        assert!(Instant::now() < deadline, "the run never reached step {step} (at {})", max_step(run));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Attach to a live run, go back in its history with `:goto` and `[`, while its controls
/// still act on the live run, then follow the live end again with `G`.
#[test]
fn attach_visits_a_live_runs_history_and_follows_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    write_small_config(tmp.path(), 100_000_000, "every=0", &format!("{WARM}{MAIN}"));
    let run = tmp.path().join("run");
    let _cleanup = StopOnDrop(run.clone());
    // A real headless run (threads=1), in the background.
    let mut host = std::process::Command::new(BIN)
        .args(["train", "small.toml", "--run-dir", "run", "--headless"])
        .current_dir(tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_step(&run, 300, 60);
    let ctl = |args: &[&str]| {
        let o = std::process::Command::new(BIN).arg("ctl").arg(&run).args(args).output().unwrap();
        assert!(o.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    ctl(&["switch", "main"]);
    let switched = || {
        events(&run).iter().find_map(|e| match e {
            Event::PhaseChanged { step, to, cause: PhaseCause::Manual, .. } if to == "main" => Some(*step),
            _ => None,
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while switched().is_none() {
        assert!(Instant::now() < deadline, "the switch never reached the log");
        std::thread::sleep(Duration::from_millis(100));
    }
    let at = switched().unwrap();
    // `ctl status` in a terminal reads as lines, not raw JSON (piped, it stays JSON).
    let mut status = Tty::spawn(&["ctl", "run", "status"], tmp.path());
    status.wait_for("phase   main", 20);
    status.wait_exit(20);
    assert!(!status.contents().contains('{'), "{}", status.contents());
    wait_step(&run, at + 300, 60);

    let mut t = Tty::spawn(&["attach", "run"], tmp.path());
    t.wait_header("LIVE", 30);
    t.wait_header("● main", 10);
    assert!(!t.header().contains("HISTORY"));

    // `:goto` a step after the switch: the view is there, and the header says it is not
    // the live end (and where the live run is).
    let target = at + 100;
    t.keys(&format!(":goto {target}\r"));
    t.wait_header("HISTORY", 20);
    t.wait_header(&format!("step {}/", grouped(target)), 20);
    assert!(t.header().contains("live at step") && t.header().contains("G back to live"), "{}", t.header());
    // `[`: the previous phase change, the switch to main.
    t.keys("[");
    t.wait_header(&format!("step {}/", grouped(at)), 20);
    assert!(t.header().contains("● main") && t.header().contains("HISTORY"), "{}", t.header());
    // Again: the run's start, in warm; the live run is still in main.
    t.keys("[");
    t.wait_header("step 0/", 20);
    t.wait_header("● warm", 5);
    std::thread::sleep(Duration::from_millis(500));
    assert!(t.header().contains("step 0/"), "the history view does not move with the run: {}", t.header());

    // The run's controls act on the live run from its history: pause it.
    t.keys("p");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events(&run).iter().any(|e| matches!(e, Event::Command { command: phasetop::event::Command::Pause, .. })) {
        assert!(Instant::now() < deadline, "p never paused the live run:\n{}", t.contents());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Resumed by ctl: a second `p` could reach the dashboard before it has read the
    // pause's record, and would pause again.
    let out = std::process::Command::new(BIN).arg("ctl").arg(&run).arg("resume").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // `G`: following the live end again, past where the view had been.
    t.keys("G");
    t.wait_header("LIVE", 20);
    assert!(!t.header().contains("HISTORY"), "{}", t.header());
    t.wait_header("● main", 5);
    let shown = |h: &str| -> u64 {
        let s = h.split("step ").nth(1).unwrap_or("").split('/').next().unwrap_or("");
        s.replace(' ', "").parse().unwrap_or(0)
    };
    let before = shown(&t.header());
    assert!(before >= at + 300, "the live end, not history: {}", t.header());
    let deadline = Instant::now() + Duration::from_secs(20);
    while shown(&t.header()) <= before {
        assert!(Instant::now() < deadline, "the view does not follow the run:\n{}", t.header());
        std::thread::sleep(Duration::from_millis(100));
    }
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    ctl(&["stop"]);
    let _ = host.wait();
}

#[test]
fn train_without_a_terminal_runs_headless() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["train", "--max-steps", "30", "--run-dir"])
        .arg(tmp.path().join("run"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("       30  end       completed"), "{stdout}");
    assert!(!stdout.contains("\u{1b}["), "no escape sequences when stdout is not a terminal");
}

/// A finished 200-step parent run `origin-run` (checkpoints every 20 steps, a 50-step
/// warm phase) in a fresh directory, to branch from.
fn origin_run() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let warm_50 = WARM.replace("name='warm'\n", "name='warm'\nsteps=50\n");
    write_small_config(tmp.path(), 200, "every=20\nkeep=100", &format!("{warm_50}{MAIN}"));
    let out = std::process::Command::new(BIN)
        .args(["train", "small.toml", "--headless", "--run-dir", "origin-run"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmp
}

#[test]
fn a_branch_dashboard_overlays_its_parent_and_attach_can_too() {
    let tmp = origin_run();
    let child = tmp.path().join("what-if");
    let _cleanup = StopOnDrop(child.clone());
    // A long branch, so that it is still live while the dashboard shows it.
    let mut t = Tty::spawn(
        &["branch", "origin-run", "--at", "40", "--switch", "main", "--run-dir", "what-if", "--max-steps", "100000000"],
        tmp.path(),
    );
    t.wait_header("LIVE", 60);
    // The legend names both runs: the parent is overlaid from the start.
    t.wait_for("origin-run", 10);
    t.wait_for("what-if", 5);
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    assert!(live(&child), "detaching leaves the branch training");

    // Re-attached with --with-parent, the overlay is back; without it, only the branch.
    let mut t = Tty::spawn(&["attach", "what-if", "--with-parent"], tmp.path());
    t.wait_header("LIVE", 30);
    t.wait_for("origin-run", 10);
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    let mut t = Tty::spawn(&["attach", "what-if"], tmp.path());
    t.wait_header("LIVE", 30);
    t.wait_for("loss", 10);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!t.contents().contains("origin-run"), "no overlay unless asked:\n{}", t.contents());
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    // A run that is not a branch has no parent to overlay: a usage error.
    let out = std::process::Command::new(BIN)
        .args(["attach", "origin-run", "--with-parent"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a branch of another run"), "{err}");
}

/// Python's pty module drives this one: the terminal must hang up for real (every
/// master descriptor closed) while the dashboard sits idle on an ended run, which the
/// in-process emulator above cannot do (its reader thread holds a descriptor). On the
/// way it checks that the ended host was reaped by the dashboard.
const HANG_UP_WHILE_IDLE: &str = r#"
import os, pty, select, subprocess, sys, time
bin, cwd = sys.argv[1], sys.argv[2]
os.chdir(cwd)
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm-256color"
    os.execv(bin, [bin, "train", "small.toml", "--run-dir", "run"])
def drain(secs):
    end = time.time() + secs
    while time.time() < end:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                return
deadline = time.time() + 60
while not os.path.exists(os.path.join(cwd, "run", "events.log")) and time.time() < deadline:
    drain(0.2)
drain(2)
subprocess.run([bin, "ctl", "run", "stop"], capture_output=True)
drain(3)  # the run ends; the dashboard shows it and idles in its input wait
# The ended host (the dashboard's child) has been reaped, not left a zombie.
kids = subprocess.run(["ps", "--ppid", str(pid), "-o", "stat="], capture_output=True, text=True).stdout.split()
if any(k.startswith("Z") for k in kids):
    os.kill(pid, 9)
    print("the ended host is a zombie of the dashboard")
    sys.exit(0)
os.close(fd)
end = time.time() + 10
while time.time() < end:
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done:
        print("exited")
        sys.exit(0)
    time.sleep(0.1)
os.kill(pid, 9)
print("still running 10 s after the hang-up")
"#;

#[test]
fn a_terminal_that_hangs_up_while_the_dashboard_idles_ends_it() {
    if !std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("python3 not found: skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    write_small_config(tmp.path(), 100_000_000, "every=0", WARM);
    let _cleanup = StopOnDrop(tmp.path().join("run"));
    let out =
        std::process::Command::new("python3").args(["-c", HANG_UP_WHILE_IDLE, BIN]).arg(tmp.path()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), "exited", "{said}{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 16 items 3 and 6: `--max-steps` is the run's end in the header (not the
/// config's 20 000), the finished phase has an end in the plan, and on the ended run
/// `p` says the run is not live and `q` quits at once (no detach/stop question).
#[test]
fn max_steps_is_the_end_and_an_ended_run_quits_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    write_small_config(tmp.path(), 20_000, "every=0", WARM);
    let mut t = Tty::spawn(&["train", "small.toml", "--max-steps", "300", "--run-dir", "run"], tmp.path());
    t.wait_header("COMPLETED", 120);
    t.wait_header("step 300/300", 5);
    t.wait_for("✓ warm         0 → 300", 5);
    let footer = t.contents().lines().last().unwrap_or("").to_string();
    assert!(!footer.contains("pause") && !footer.contains("switch"), "{footer}");
    t.keys("p");
    t.wait_for("the run is not live (completed at step 300)", 5);
    assert!(!t.contents().contains("No such file"), "{}", t.contents());
    t.keys("q");
    t.wait_exit(5);
}

/// Issue 16 item 1: `branch --at STEP --switch` in a terminal (the dashboard path, whose
/// host runs in the background) switches at STEP, not at the checkpoint before it, and
/// the child's name, `ls` and `inspect` say STEP, exactly as `--headless` does.
#[test]
fn a_branch_dashboard_switches_at_the_asked_step_between_checkpoints() {
    let tmp = origin_run();
    let child = tmp.path().join("origin-run-b30");
    let _cleanup = StopOnDrop(child.clone());
    let mut t =
        Tty::spawn(&["branch", "origin-run", "--at", "30", "--switch", "main", "--max-steps", "60"], tmp.path());
    t.wait_header("COMPLETED", 120);
    t.keys("q");
    t.wait_exit(10);
    assert!(child.join("events.log").exists(), "the child is named for step 30");
    assert!(!tmp.path().join("origin-run-b20").exists(), "not for the checkpoint's step");
    let switches: Vec<(u64, String)> = events(&child)
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, to, cause: PhaseCause::Manual, .. } => Some((*step, to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(switches, vec![(30, "main".to_string())]);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN).args(args).current_dir(tmp.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ls = run(&["ls", "."]);
    let row = ls.lines().find(|l| l.starts_with("origin-run-b30")).unwrap_or_else(|| panic!("{ls}"));
    assert!(row.trim_end().ends_with("origin-run@30"), "{ls}");
    let inspect = run(&["inspect", "origin-run-b30"]);
    assert!(inspect.contains("from origin-run at step 30"), "{inspect}");
}

/// Issue 16 item 14: the end of a run the dashboard watches rings the bell and sends OSC 9
/// and OSC 777 (wrapped for tmux's passthrough under `$TMUX`); `--notify bell` only rings;
/// `[dashboard] notify = "off"` in the config is silent, and the flag wins over it.
#[test]
fn notifications_ring_and_send_osc_unless_off() {
    let tmp = tempfile::tempdir().unwrap();
    // A run too long to end by itself: the test ends it once the dashboard watches it live
    // (a short run could end before the dashboard's first look, and an end seen in the
    // backfill is not news).
    write_small_config(tmp.path(), 100_000_000, "every=0", WARM);
    let quiet = std::fs::read_to_string(tmp.path().join("small.toml")).unwrap();
    std::fs::write(tmp.path().join("quiet.toml"), format!("[dashboard]\nnotify = 'off'\n{quiet}")).unwrap();
    // No wait after STOPPED: the dashboard writes a batch's notifications before it
    // draws the frame the batch changed, and the reader keeps raw bytes before it updates
    // the screen, so once the header says STOPPED every notification is in `raw`.
    let run = |cfg: &str, dir: &str, flag: &[&str], env: &[(&str, &str)]| -> Vec<u8> {
        let mut args = vec!["train", cfg, "--run-dir", dir];
        args.extend_from_slice(flag);
        let mut t = Tty::spawn_env(&args, tmp.path(), env);
        t.wait_header("LIVE", 60);
        let out = std::process::Command::new(BIN).args(["ctl", dir, "stop"]).current_dir(tmp.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        t.wait_header("STOPPED", 120);
        t.keys("q");
        t.wait_exit(5);
        t.raw.lock().unwrap().clone()
    };
    let has = |b: &[u8], what: &[u8]| b.windows(what.len()).any(|w| w == what);

    let osc777 = b"\x1bPtmux;\x1b\x1b]777;notify;phasetop: a;run stopped at step ";
    let osc = run("small.toml", "a", &["--notify", "osc"], &[("TMUX", "/tmp/tmux-0/default,1,0")]);
    let text = String::from_utf8_lossy(&osc);
    // 400 characters from the first passthrough, cut on a character boundary (the screen
    // holds multi-byte box drawing: a byte slice could panic in this diagnostic).
    let at: String = text.find("\x1bPtmux;").map_or("none".into(), |i| text[i..].chars().take(400).collect());
    assert!(has(&osc, b"\x07"), "a bell");
    assert!(has(&osc, b"\x1bPtmux;\x1b\x1b]9;phasetop: a: run stopped at step "), "OSC 9 through tmux: {at:?}");
    assert!(has(&osc, osc777), "OSC 777: {at:?}");

    let bell = run("quiet.toml", "b", &["--notify", "bell"], &[]);
    assert!(has(&bell, b"\x07"), "the flag wins over the config's off");
    assert!(!has(&bell, b"\x1b]9;") && !has(&bell, b"\x1b]777;"));

    let off = run("quiet.toml", "c", &[], &[]);
    assert!(!has(&off, b"\x07") && !has(&off, b"\x1b]9;") && !has(&off, b"\x1b]777;"), "[dashboard] notify = off");
}

/// Issue 25: the workspace lists the runs under a root; by keyboard alone the user
/// filters to one config, selects two runs, compares them, comes back to the list with
/// its filter and selection intact, opens one run and comes back again, and quits.
#[test]
fn the_workspace_filters_selects_compares_and_opens_runs_by_keyboard() {
    let tmp = tempfile::tempdir().unwrap();
    write_small_config(tmp.path(), 20, "every=10", &format!("{WARM}{MAIN}"));
    let other = std::fs::read_to_string(tmp.path().join("small.toml")).unwrap().replace("name='small'", "name='other'");
    std::fs::write(tmp.path().join("other.toml"), other).unwrap();
    for (config, run) in [("small.toml", "s-first"), ("small.toml", "s-second"), ("other.toml", "o-only")] {
        let out = std::process::Command::new(BIN)
            .args(["train", config, "--headless", "--run-dir"])
            .arg(format!("root/{run}"))
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut tty = Tty::spawn(&["workspace", "root"], tmp.path());
    tty.wait_for("3 runs", 30);
    for run in ["s-first", "s-second", "o-only"] {
        tty.wait_for(run, 10);
    }
    // Each row's loss over the run as a sparkline (from the run's summary.json).
    let sparks = tty.contents().lines().filter(|l| l.chars().any(|c| ('▁'..='█').contains(&c))).count();
    assert_eq!(sparks, 3, "{}", tty.contents());
    tty.keys("/config:small\r");
    tty.wait_for("2 shown", 10);
    assert!(!tty.contents().contains("o-only"), "filtered out:\n{}", tty.contents());
    tty.keys(" ");
    tty.keys(" ");
    tty.wait_for("2 selected", 10);
    // Compare: both runs on the same charts (a replay), named in the loss chart's legend.
    tty.keys("c");
    tty.wait_header("REPLAY", 30);
    let legend = tty.contents().lines().nth(1).unwrap_or_default().to_string();
    assert!(legend.contains("s-first") && legend.contains("s-second"), "{legend}");
    tty.keys("q");
    tty.wait_for("phasetop workspace", 30);
    tty.wait_for("2 selected", 10);
    assert!(tty.contents().contains("/config:small"), "the filter is kept:\n{}", tty.contents());
    // Enter: the cursor's run alone; Esc back to the list.
    tty.keys("\r");
    tty.wait_header("REPLAY", 30);
    tty.keys("\x1b");
    tty.wait_for("phasetop workspace", 30);
    tty.wait_for("2 selected", 10);
    tty.keys("q");
    tty.wait_exit(10);
}

/// Issue 25: the console pane shows the run's own output — here a real external job's
/// `job.log`, a progress bar's carriage returns resolved to its last redraw — scrolls,
/// and closes, in a replay.
#[test]
fn the_console_pane_shows_the_jobs_own_output() {
    let tmp = tempfile::tempdir().unwrap();
    let job = "for i in $(seq 1 60); do echo \"line $i from the job\"; done; printf '10%%\\r50%%\\r100%% done\\n'";
    let out = std::process::Command::new(BIN)
        .args(["run", "--headless", "--run-dir", "ext", "--", "sh", "-c", job])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tty = Tty::spawn(&["replay", "ext"], tmp.path());
    tty.wait_header("REPLAY", 30);
    tty.keys("O");
    tty.wait_for("console: job.log", 10);
    tty.wait_for("100% done", 10);
    tty.wait_for("line 60 from the job", 10);
    assert!(!tty.contents().contains("50%"), "a redrawn line shows its last state:\n{}", tty.contents());
    // Scrolled back a page: older lines, and the title says how far.
    tty.keys("\x1b[5~");
    tty.wait_for("lines up", 10);
    assert!(!tty.contents().contains("100% done"), "{}", tty.contents());
    tty.keys("G");
    tty.wait_for("following", 10);
    tty.keys("\x1b");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tty.contents().contains("console: job.log") {
        assert!(Instant::now() < deadline, "the console did not close:\n{}", tty.contents());
        std::thread::sleep(Duration::from_millis(50));
    }
    // `i`: the run overview (issue 27), any key closes it.
    tty.keys("i");
    tty.wait_for("run overview", 10);
    tty.wait_for("status  completed at step 0", 10);
    tty.keys("x");
    tty.keys("q");
    tty.wait_exit(10);
}

/// The workspace under a shell in a terminal that goes away (tmux's kill-server, a
/// dropped SSH link): the shell gets the SIGHUP, the list must notice the hang-up itself
/// and end, not spin on the dead terminal (it once kept a core busy for an hour).
const WORKSPACE_HANG_UP: &str = r#"
import os, pty, select, subprocess, sys, time
bin, cwd = sys.argv[1], sys.argv[2]
os.chdir(cwd)
pid, fd = pty.fork()
if pid == 0:
    os.environ["TERM"] = "xterm-256color"
    os.execv("/bin/sh", ["sh", "-c", "'" + bin + "' workspace runs; exit 0"])
import fcntl, struct, termios
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
seen = b""
deadline = time.time() + 30
while b"workspace" not in seen and time.time() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            seen += os.read(fd, 65536)
        except OSError:
            break
if b"workspace" not in seen:
    print("the workspace never drew")
    sys.exit(0)
me = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
os.close(fd)
end = time.time() + 10
while time.time() < end:
    alive = [p for p in me if os.path.exists(f"/proc/{p}") and not open(f"/proc/{p}/stat").read().split()[2] == "Z"]
    if not alive:
        print("exited")
        sys.exit(0)
    time.sleep(0.1)
for p in me:
    os.kill(int(p), 9)
print("still running 10 s after the hang-up")
"#;

#[test]
fn a_workspace_whose_terminal_hangs_up_ends() {
    if !std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("python3 not found: skipping");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("runs")).unwrap();
    let out =
        std::process::Command::new("python3").args(["-c", WORKSPACE_HANG_UP, BIN]).arg(tmp.path()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.trim(), "exited", "{said}{}", String::from_utf8_lossy(&out.stderr));
}
