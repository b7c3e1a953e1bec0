//! Remote runs over a real sshd on loopback (scripts/setup-sshd.sh: its own host key, a
//! key made for the test, the current user, a free high port): the stream mirrored
//! locally, a link cut mid-stream (ssh killed) resuming with no gap and no duplicate,
//! decimation keeping every non-step event, `ls host:`, `ctl host:run` and the stream's
//! own command channel on a real training host, `attach host:run` and the workspace of a
//! remote root in a terminal.
//! Skipped, saying why, only where sshd cannot run.

use phasetop::event::{Event, LogLevel, Metrics, RunStatus};
use phasetop::remote::{Spec, mirror::Mirror};
use phasetop::runlog::Writer;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");
const HOST: &str = "phasetop-test";

/// The test sshd, started once for the whole file; None (after saying why) where it
/// cannot run. The script stops it when this test process exits.
fn sshd() -> Option<&'static String> {
    static SSH: OnceLock<Option<(tempfile::TempDir, String)>> = OnceLock::new();
    SSH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-sshd.sh");
        let out =
            std::process::Command::new(script).arg(dir.path()).arg(std::process::id().to_string()).output().unwrap();
        if out.status.code() == Some(77) {
            eprintln!("SKIPPED: no sshd here: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        assert!(out.status.success(), "setup-sshd.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let ssh = text.lines().find_map(|l| l.strip_prefix("PHASETOP_SSH=")).unwrap().to_string();
        // Every remote command of this process goes through the test sshd and runs the
        // binary under test on the far side.
        unsafe {
            std::env::set_var("PHASETOP_SSH", &ssh);
            std::env::set_var("PHASETOP_REMOTE_BIN", BIN);
        }
        Some((dir, ssh))
    })
    .as_ref()
    .map(|(_, s)| s)
}

fn events(log: &Path) -> Vec<Event> {
    phasetop::runlog::read_all(log).unwrap().records.into_iter().map(|r| r.event).collect()
}

fn step(step: u64, t: f64) -> Event {
    let mut metrics = Metrics::new();
    for (k, v) in [("train_loss", 2.0 / (1.0 + step as f64)), ("train_acc", 0.5), ("lr", 0.01), ("grad_norm", 1.5)] {
        metrics.insert(k.into(), v);
    }
    Event::Step { step, phase: "main".into(), t, metrics }
}

/// A run directory whose log a thread writes "live": `steps` steps at `per_sec` of
/// recorded time (written as fast as the test needs), an eval and a log line every 50,
/// never past `allowed` (the test lets it on, so a reader can never run out of steps to
/// wait for however slow the machine is).
fn write_run(
    dir: &Path,
    steps: u64,
    per_sec: f64,
    pace: Duration,
    allowed: Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::fs::create_dir_all(dir).unwrap();
    let meta = serde_json::json!({
        "run_id": "r1", "config_name": "synthetic", "seed": 1, "max_steps": steps,
        "created_at": 0.0, "source_path": "/nowhere/synthetic.toml"
    });
    std::fs::write(dir.join("run.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    std::fs::write(dir.join("config.toml"), "[run]\nname='synthetic'\n").unwrap();
    let mut w = Writer::create(&dir.join("events.log")).unwrap();
    w.append(&Event::RunStarted {
        run_id: "r1".into(),
        schema_major: 1,
        schema_minor: 2,
        config_name: "synthetic".into(),
        config: serde_json::json!({}),
        phases: vec!["main".into()],
        device: "cpu".into(),
        seed: 1,
        started_at: 1000.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    })
    .unwrap();
    w.flush().unwrap();
    std::thread::spawn(move || {
        for i in 1..=steps {
            while i > allowed.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            w.append(&step(i, 1000.0 + i as f64 / per_sec)).unwrap();
            if i % 50 == 0 {
                w.append(&Event::Eval { step: i, split: "val".into(), metrics: Metrics::new() }).unwrap();
                w.append(&Event::Log { step: i, level: LogLevel::Info, message: format!("at {i}") }).unwrap();
            }
            if i % 20 == 0 {
                w.flush().unwrap();
                std::thread::sleep(pace);
            }
        }
        w.append(&Event::RunEnded { step: steps, status: RunStatus::Completed, message: "done".into() }).unwrap();
        w.flush().unwrap();
    })
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_mirror_follows_a_live_run_and_resumes_after_a_cut_link_with_no_gap_or_duplicate() {
    if sshd().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("runs/r1");
    let cache = tmp.path().join("cache");
    // 3000 steps over ~3 s of wall time, recorded at 1000 steps/s.
    let allowed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = write_run(&run, 3000, 1000.0, Duration::from_millis(20), allowed.clone());
    let spec = Spec { host: HOST.into(), path: run.display().to_string() };
    let full = Mirror::open(&spec, &cache, 0.0).unwrap();
    let thin = Mirror::open(&spec, &cache, 4.0).unwrap();
    assert_ne!(full.dir, thin.dir, "two viewers of one run get two mirrors");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(full.dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["run_id"], "r1");
    assert!(meta.get("source_path").is_none(), "the remote machine's config path is not watched here");

    // Cut the link mid-stream, twice: SIGKILL of the ssh process.
    for _ in 0..2 {
        let before = full.events();
        // A thousand more steps to come: the link is cut while they flow.
        allowed.fetch_add(1000, std::sync::atomic::Ordering::SeqCst);
        wait_until("events to flow", 20, || full.events() > before + 100);
        let pid = full.ssh_pid().expect("a link is up");
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        wait_until("the reconnect", 20, || full.ssh_pid().is_some_and(|p| p != pid) && full.is_connected());
    }
    allowed.store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    let ended = |m: &Mirror| matches!(events(&m.dir.join("events.log")).last(), Some(Event::RunEnded { .. }));
    wait_until("the full mirror's end", 30, || ended(&full));
    wait_until("the thin mirror's end", 30, || ended(&thin));
    assert!(full.connects() >= 3, "the link was re-made: {}", full.connects());

    // The full mirror is the log, event for event: no gap, no duplicate.
    let source = events(&run.join("events.log"));
    let mirrored = events(&full.dir.join("events.log"));
    assert_eq!(mirrored.len(), source.len());
    if let Some((a, b)) = mirrored.iter().zip(&source).find(|(a, b)| a != b) {
        panic!("the mirror differs from the source log:\n{a:?}\n{b:?}");
    }
    // Byte for byte, even, where the log holds JSON: payloads travel as the log holds
    // them (compact step records, schema 1.4, travel as their events' JSON, compared
    // event for event above; the source's `keys` records are its own).
    let json_records = |p: &Path| -> Vec<Vec<u8>> {
        let b = std::fs::read(p).unwrap();
        let mut out = Vec::new();
        let mut at = 16;
        while at + 8 <= b.len() {
            let len = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let payload = &b[at + 8..at + 8 + len];
            if payload[0] == b'{'
                && !payload.starts_with(br#"{"type":"keys""#)
                && !payload.starts_with(br#"{"type":"step""#)
            {
                out.push(payload.to_vec());
            }
            at += 8 + len;
        }
        out
    };
    assert!(json_records(&full.dir.join("events.log")) == json_records(&run.join("events.log")));

    // The thin one: every non-step event, in order; steps a subset, increasing, ending
    // on the run's last step; ~4 a second of recorded time (3 s here).
    let non_step = |evs: &[Event]| evs.iter().filter(|e| !matches!(e, Event::Step { .. })).cloned().collect::<Vec<_>>();
    let thin_evs = events(&thin.dir.join("events.log"));
    assert!(non_step(&thin_evs) == non_step(&source), "decimation kept every non-step event");
    let steps: Vec<u64> =
        thin_evs.iter().filter_map(|e| if let Event::Step { step, .. } = e { Some(*step) } else { None }).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps in order, none twice");
    assert_eq!(steps.last(), Some(&3000), "the last step is the run's");
    // About 4 steps per recorded second (12), plus the step held back each time the log
    // stops growing for a moment (a busy machine's stalls): a few, never thousands.
    assert!((10..=40).contains(&steps.len()), "about 4 steps per recorded second: {} kept", steps.len());
    assert!(
        thin.bytes_received() * 5 < full.bytes_received(),
        "{} vs {}",
        thin.bytes_received(),
        full.bytes_received()
    );
}

#[test]
fn a_bad_remote_run_is_a_clear_error() {
    if sshd().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = Spec { host: HOST.into(), path: tmp.path().join("nope").display().to_string() };
    let err = Mirror::open(&spec, tmp.path(), 4.0).err().expect("no such run");
    let msg = format!("{err:#}");
    assert!(msg.contains("not a run directory") && msg.contains(HOST), "{msg}");
    // The same through the CLI: a usage error, exit 2.
    let out =
        std::process::Command::new(BIN).args(["ctl", &format!("{HOST}:{}", spec.path), "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        std::process::Command::new(BIN).args(["ctl", &format!("{HOST}:{}", spec.path), "frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad command is refused before any ssh");
    let out = std::process::Command::new(BIN)
        .args(["ls", "no-such-host.invalid:runs"])
        .env("PHASETOP_SSH", "ssh -o BatchMode=yes -o ConnectTimeout=2")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unreachable host fails");
}

struct Tty {
    screen: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Tty {
    fn spawn(args: &[&str], cwd: &Path, cache: &Path) -> Tty {
        Tty::spawn_with(args, cwd, cache, &[])
    }

    fn spawn_with(args: &[&str], cwd: &Path, cache: &Path, env: &[(&str, &str)]) -> Tty {
        let pty = native_pty_system();
        let pair = pty.openpty(PtySize { rows: 48, cols: 160, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.cwd(cwd);
        cmd.env("TERM", "xterm-256color");
        cmd.env("XDG_CACHE_HOME", cache);
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
        std::thread::spawn(move || {
            let _keep_master = pair.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock().unwrap().process(&buf[..n]);
            }
        });
        Tty { screen, writer, child }
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

struct StopOnDrop(PathBuf);
impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN).arg("ctl").arg(&self.0).arg("stop").output();
    }
}

fn applied(run: &Path, name: &str) -> bool {
    events(&run.join("events.log")).iter().any(|e| {
        matches!(e, Event::Command { command, applied: true, .. }
            if serde_json::to_value(command).unwrap()["cmd"] == name)
    })
}

#[test]
fn a_training_host_over_ssh_ls_ctl_the_link_and_the_dashboard() {
    if sshd().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("small.toml"),
        "[run]\nname='small'\nmax_steps=100000000\nthreads=1\n[task]\nkind='gaussian'\nn_train=512\nn_val=128\n\
         [model]\nkind='mlp'\ndepth=2\nwidth=32\n[eval]\nevery=50\n[checkpoint]\nevery=0\n\
         [[phase]]\nname='warm'\noptimizer='adam'\nlr=0.01\nbatch_size=32\n\
         [[phase]]\nname='main'\noptimizer='sgd'\nlr=0.05\nbatch_size=32\n",
    )
    .unwrap();
    let runs = tmp.path().join("runs");
    let run = runs.join("small-1");
    let _stop = StopOnDrop(run.clone());
    let mut host = std::process::Command::new(BIN)
        .args(["train", "small.toml", "--headless", "--run-dir", "runs/small-1"])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the host to go live", 60, || std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_ok());
    let remote = format!("{HOST}:{}", run.display());

    // ls host:DIR lists the run as the remote `phasetop ls` does.
    let out = std::process::Command::new(BIN).args(["ls", &format!("{HOST}:{}", runs.display())]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("small-1") && text.contains("running"), "{text}");
    // `ls --json` over ssh: what the workspace reads of a remote root, one run a line.
    let out =
        std::process::Command::new(BIN).args(["ls", "--json", &format!("{HOST}:{}", runs.display())]).output().unwrap();
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        rows.iter().any(|r| r["run"] == "small-1" && r["status"] == "running" && r["step"].as_u64().is_some()),
        "{rows:?}"
    );

    // ctl host:run: the command reaches the host and is applied.
    let out = std::process::Command::new(BIN).args(["ctl", &remote, "pause"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the pause in the log", 10, || applied(&run, "pause"));
    let out = std::process::Command::new(BIN).args(["ctl", &remote, "status"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused"), "{}", String::from_utf8_lossy(&out.stdout));

    // The stream's own channel carries commands both ways.
    let cache = tmp.path().join("cache");
    let spec = Spec { host: HOST.into(), path: run.display().to_string() };
    let m = Mirror::open(&spec, &cache, 4.0).unwrap();
    let reply = m.request(&serde_json::json!({"cmd": "resume"})).unwrap();
    assert!(reply.ok, "{reply:?}");
    wait_until("the resume in the log", 10, || applied(&run, "resume"));
    let reply = m.request(&serde_json::json!({"cmd": "switch", "phase": "nowhere"})).unwrap();
    assert!(!reply.ok && reply.message.contains("nowhere"), "{reply:?}");
    assert!(m.is_live());
    drop(m);

    // attach host:run: the dashboard, live, driving the remote run with its keys.
    let host_log = run.join("host.log");
    let say = |line: &str| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&host_log).unwrap();
        writeln!(f, "{line}").unwrap();
    };
    say("printed on the far side before the attach");
    let mut t = Tty::spawn(&["attach", &remote], tmp.path(), &cache);
    let header = |t: &Tty| t.contents().lines().next().unwrap_or("").to_string();
    wait_until("LIVE in the header", 30, || header(&t).contains("LIVE"));
    t.wait_for("warm", 10);
    // The console pane (O) shows the remote run's host.log, copied over the link, and
    // follows it as it grows there.
    t.keys("O");
    t.wait_for("printed on the far side before the attach", 15);
    say("and this one while attached ✓");
    t.wait_for("and this one while attached ✓", 15);
    t.keys("O");
    t.keys(":switch main\r");
    wait_until("the switch over ssh", 15, || {
        events(&run.join("events.log")).iter().any(|e| matches!(e, Event::PhaseChanged { to, .. } if to == "main"))
    });
    wait_until("● main in the header", 15, || header(&t).contains("● main"));
    t.keys("q");
    t.wait_for("detach (training goes on)", 5);
    t.keys("d");
    t.wait_exit(10);
    assert!(std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_ok(), "detach leaves the run going");

    // The workspace of a remote root: its runs listed by `ls --json` over ssh, the live
    // one opened (attach over ssh) by enter, Esc back to the list, q out.
    let mut w = Tty::spawn(&["workspace", &format!("{HOST}:{}", runs.display())], tmp.path(), &cache);
    w.wait_for("phasetop workspace", 30);
    w.wait_for("1 run ", 30);
    w.wait_for("phasetop-test:small-1", 30);
    w.wait_for("live", 30);
    w.keys("\r");
    wait_until("the opened run LIVE", 30, || header(&w).contains("LIVE"));
    w.wait_for("● main", 15);
    w.keys("\x1b");
    w.wait_for("phasetop workspace", 30);
    w.keys("q");
    w.wait_exit(10);
    assert!(std::os::unix::net::UnixStream::connect(run.join("control.sock")).is_ok(), "the workspace leaves it going");

    let out = std::process::Command::new(BIN).args(["ctl", &remote, "stop"]).output().unwrap();
    assert!(out.status.success());
    let status = host.wait().unwrap();
    assert!(status.success());

    // Compare from the workspace takes remote runs too: the run under its local root and
    // the same run over ssh, both selected, `c` replays them together (the remote one
    // fetched into a mirror first), q back to the list.
    let mut w = Tty::spawn(&["workspace", "runs", &format!("{HOST}:{}", runs.display())], tmp.path(), &cache);
    w.wait_for("2 runs", 30);
    w.wait_for("phasetop-test:small-1", 30);
    w.keys(" ");
    w.keys("j");
    w.keys(" ");
    w.wait_for("2 selected", 10);
    w.keys("c");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !header(&w).contains("REPLAY") {
        assert!(Instant::now() < deadline, "no compare REPLAY:\n{}", w.contents());
        std::thread::sleep(Duration::from_millis(50));
    }
    let legend = w.contents().lines().nth(1).unwrap_or_default().to_string();
    // The same run twice (local and fetched), told apart in the legend.
    assert!(legend.contains("small-1 ━ small-1#2"), "both runs in the legend: {legend}");
    w.keys("q");
    w.wait_for("phasetop workspace", 30);
    w.keys("q");
    w.wait_exit(10);
}

/// A fake `ssh` (a shell script given as PHASETOP_SSH) whose body is `body`; it ignores
/// its arguments. No sshd needed.
fn fake_ssh(dir: &Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fake-ssh");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// Runs the binary with `args` under a fake ssh and a remote deadline of `remote_timeout`
/// seconds, killed (and the test failed) after `secs`: (exit code, stdout, stderr).
fn run_with_ssh(ssh: &str, args: &[&str], remote_timeout: u64, secs: u64) -> (Option<i32>, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .env("PHASETOP_SSH", ssh)
        .env("PHASETOP_REMOTE_TIMEOUT_S", remote_timeout.to_string())
        .env("PHASETOP_REMOTE_BIN", "phasetop")
        .env("XDG_CACHE_HOME", tmp.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let take = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            s
        })
    };
    let out = take(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = take(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("phasetop {args:?} still waiting after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The fake ssh's own `sleep` may hold the pipes: the outputs are what came by now.
    let text = |h: std::thread::JoinHandle<Vec<u8>>| {
        let t = Instant::now() + Duration::from_secs(5);
        while !h.is_finished() && Instant::now() < t {
            std::thread::sleep(Duration::from_millis(20));
        }
        if h.is_finished() {
            String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned()
        } else {
            String::new()
        }
    };
    (status.code(), text(out), text(err))
}

/// Issue 24 #6: a hanging ssh ends `ls`, `ctl` and `replay` within the deadline, saying
/// which host and what to check, with ssh's last words; exit non-zero.
#[test]
fn a_hanging_ssh_ends_within_the_deadline_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    // exec: the script becomes the sleep, so killing "ssh" ends it and its pipes.
    let ssh = fake_ssh(tmp.path(), "echo 'connecting through the bastion' >&2\nexec sleep 600");
    for args in [
        &["ls", "user@stuck-host:runs"][..],
        &["ctl", "user@stuck-host:runs/a", "status"],
        &["replay", "user@stuck-host:runs/a"],
    ] {
        let started = Instant::now();
        let (code, _out, err) = run_with_ssh(&ssh, args, 2, 30);
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", started.elapsed());
        assert!(code.is_some_and(|c| c != 0), "{args:?} exit {code:?}: {err}");
        assert!(
            err.contains("stuck-host")
                && err.contains("no answer within 2 s")
                && err.contains("PHASETOP_REMOTE_TIMEOUT_S"),
            "{args:?}: {err}"
        );
        assert!(err.contains("connecting through the bastion"), "ssh's stderr is in the message: {err}");
    }
}

/// Issue 24 #6: what the remote side prints reaches the terminal as text only.
#[test]
fn ls_and_ctl_over_ssh_never_copy_escape_sequences() {
    let tmp = tempfile::tempdir().unwrap();
    let ssh = fake_ssh(
        tmp.path(),
        r"printf 'run-1  completed\033[2J\033]0;owned\007\033[31m red\033[0m\r\n\302\233Kx\n'
printf 'warn \033]52;c;aGk=\033\\ done\n' >&2",
    );
    for args in [&["ls", "box:runs"][..], &["ctl", "box:runs/a", "status"]] {
        let (code, out, err) = run_with_ssh(&ssh, args, 20, 60);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert_eq!(out, "run-1  completed red\nx\n", "{args:?}");
        assert!(!err.contains('\u{1b}') && err.contains("warn  done"), "{args:?}: {err:?}");
    }
}

/// Issue 26: no phasetop on the remote side says what is missing and how to fix it.
#[test]
fn a_missing_remote_phasetop_says_how_to_fix_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ssh = fake_ssh(tmp.path(), "echo 'bash: line 1: phasetop: command not found' >&2\nexit 127");
    for args in [&["ls", "box:runs"][..], &["replay", "box:runs/a"]] {
        let (code, _out, err) = run_with_ssh(&ssh, args, 20, 60);
        assert!(code.is_some_and(|c| c != 0), "{args:?}");
        assert!(err.contains("PHASETOP_REMOTE_BIN") && err.contains("install phasetop"), "{args:?}: {err}");
    }
}

/// Issue 24 #6: `attach` to a host that never answers says it is connecting, Ctrl-C ends
/// it (no screen was opened: the terminal is as it was), and without Ctrl-C the deadline
/// ends it with the message.
#[test]
fn attach_to_a_silent_host_says_connecting_and_ends_on_ctrl_c_or_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let ssh = fake_ssh(tmp.path(), "exec sleep 600");
    let cache = tmp.path().join("cache");
    let args = ["attach", "user@stuck-host:runs/a"];
    let mut tty =
        Tty::spawn_with(&args, tmp.path(), &cache, &[("PHASETOP_SSH", &ssh), ("PHASETOP_REMOTE_TIMEOUT_S", "120")]);
    tty.wait_for("connecting to user@stuck-host", 30);
    tty.keys("\x03");
    tty.wait_exit(15);
    assert!(!tty.screen.lock().unwrap().screen().alternate_screen(), "no screen was opened");

    let mut tty =
        Tty::spawn_with(&args, tmp.path(), &cache, &[("PHASETOP_SSH", &ssh), ("PHASETOP_REMOTE_TIMEOUT_S", "2")]);
    tty.wait_for("no answer within 2 s", 30);
    tty.wait_exit(15);
    assert!(!tty.child.try_wait().unwrap().is_some_and(|s| s.success()), "a silent host is a failure");
}
