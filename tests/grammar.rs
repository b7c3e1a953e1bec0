//! One command grammar (issue 13): `phasetop ctl RUN …` and the dashboard's `:` line
//! give the same command, or the same error, for the same words. The ctl side is the
//! real binary talking to a real Unix socket in a run directory; the dashboard side is
//! an `App` whose commands are recorded.

#[allow(dead_code)] // this test uses only `common::app`
mod common;

use phasetop::control::Reply;
use phasetop::event::{Command, Event, PhaseCause};
use phasetop::ui::app::{App, CommandSink};
use phasetop::ui::model::state::RunView;
use phasetop::ui::theme::ThemeKind;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::process::Command as Process;
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Command>>>);

impl CommandSink for Recorder {
    fn send(&mut self, c: &Command) -> Result<Reply, String> {
        self.0.lock().unwrap().push(c.clone());
        Ok(Reply { ok: true, step: 1, message: "ok".into() })
    }
}

fn started() -> Event {
    Event::RunStarted {
        run_id: "r".into(),
        schema_major: 1,
        schema_minor: 0,
        config_name: "c".into(),
        config: serde_json::json!({"phase": [{"name": "warm"}, {"name": "main"}]}),
        phases: vec!["warm".into(), "main".into()],
        device: "cpu".into(),
        seed: 1,
        started_at: 1.0,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    }
}

fn dashboard() -> (App, Recorder) {
    let started = started();
    let phase = Event::PhaseChanged { step: 0, from: None, to: "warm".into(), cause: PhaseCause::Start, detail: None };
    let rec = Recorder::default();
    let app =
        common::app(RunView::from_events(&[started, phase]), "default", ThemeKind::Default, Box::new(rec.clone()));
    (app, rec)
}

/// What `phasetop ctl DIR words…` sent on the run's socket (one JSON line, answered
/// `ok`), or its exit code and stderr when it sent nothing.
fn ctl(words: &[&str]) -> Result<Command, (i32, String)> {
    ctl_on(started(), words)
}

/// [`ctl`] on a run whose log starts with `started`.
fn ctl_on(started: Event, words: &[&str]) -> Result<Command, (i32, String)> {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // A built-in run's log: `ctl` checks `set` against the run's own keys from it.
    let mut log = phasetop::runlog::Writer::create(&dir.path().join("events.log")).unwrap();
    log.append(&started).unwrap();
    log.flush().unwrap();
    let listener = UnixListener::bind(dir.path().join("control.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut child = Process::new(BIN)
        .arg("ctl")
        .arg(dir.path())
        .args(words)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while child.try_wait().unwrap().is_none() {
        if let Ok((conn, _)) = listener.accept() {
            conn.set_nonblocking(false).unwrap();
            let mut line = String::new();
            BufReader::new(&conn).read_line(&mut line).unwrap();
            let reply = serde_json::to_string(&Reply { ok: true, step: 1, message: "ok".into() }).unwrap();
            (&conn).write_all(format!("{reply}\n").as_bytes()).unwrap();
            got = Some(serde_json::from_str::<Command>(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
        assert!(Instant::now() < deadline, "ctl hung");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    match got {
        Some(c) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            Ok(c)
        }
        None => Err((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())),
    }
}

#[test]
fn ctl_and_the_colon_line_give_the_same_command_or_the_same_error() {
    let commands = [
        "switch main",
        "pause",
        "resume",
        "stop",
        "checkpoint",
        "set lr=0.001",
        "set batch_size=32",
        "accept",
        "accept 3",
        "dismiss 2",
    ];
    for line in commands {
        let words: Vec<&str> = line.split_whitespace().collect();
        let via_ctl = ctl(&words).unwrap_or_else(|e| panic!("ctl {line}: {e:?}"));
        let (mut app, rec) = dashboard();
        app.run_command_line(line);
        assert_eq!(rec.0.lock().unwrap().as_slice(), std::slice::from_ref(&via_ctl), ":{line} vs ctl {line}");
    }
    let refused = [
        "set momentum_x=1",
        "set lr=abc",
        "set lr=inf",
        "set lr",
        "set",
        "switch",
        "pause now",
        "switch a b",
        "accept x",
    ];
    for line in refused {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (code, stderr) = ctl(&words).expect_err(line);
        assert_eq!(code, 2, "ctl {line}: {stderr}");
        let (mut app, rec) = dashboard();
        app.run_command_line(line);
        let (status, is_error) = app.status.get().cloned().expect("a status message");
        assert!(is_error && rec.0.lock().unwrap().is_empty(), ":{line}: {status}");
        assert!(stderr.contains(&status), ":{line} says {status:?}, ctl says {stderr:?}");
    }
    // An unknown verb: the same words, each naming the verbs it knows (the dashboard
    // knows its view verbs too).
    let (code, stderr) = ctl(&["jump"]).unwrap_err();
    let (mut app, _) = dashboard();
    app.run_command_line("jump");
    assert_eq!(code, 2);
    let status = app.status.get().cloned().unwrap().0;
    assert!(stderr.contains("unknown command \"jump\", expected one of switch, pause"), "{stderr}");
    assert!(status.starts_with("unknown command \"jump\", expected one of switch, pause"), "{status}");
}

/// `set` takes the run's own keys: an external run's plan's (typed by the plan's values),
/// not the built-in trainer's list; the dashboard and `ctl` agree.
#[test]
fn set_takes_an_external_runs_own_plan_keys() {
    let external = |config: serde_json::Value| match started() {
        Event::RunStarted { run_id, schema_major, schema_minor, config_name, phases, seed, started_at, .. } => {
            Event::RunStarted {
                run_id,
                schema_major,
                schema_minor,
                config_name,
                config,
                phases,
                device: "external".into(),
                seed,
                started_at,
                resumed_from_step: None,
                parent_run: None,
                branch_step: None,
            }
        }
        _ => unreachable!(),
    };
    let plan = serde_json::json!({
        "external": {"command": ["python3", "job.py"]},
        "phase": [{"name": "warm", "lr": 0.05, "aux_w": 1.0, "accum": 2}, {"name": "main", "lr": 0.01, "aux_w": 0.0}]
    });
    assert_eq!(
        ctl_on(external(plan.clone()), &["set", "aux_w=0.25"]),
        Ok(Command::Set { key: "aux_w".into(), value: 0.25 })
    );
    let (code, stderr) = ctl_on(external(plan.clone()), &["set", "momentum=0.9"]).unwrap_err();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown key \"momentum\": this run's plan sets accum, aux_w, lr"), "{stderr}");
    let (code, stderr) = ctl_on(external(plan.clone()), &["set", "accum=1.5"]).unwrap_err();
    assert!(code == 2 && stderr.contains("integer"), "{stderr}");
    // The dashboard's `:set` says the same, and completes the plan's keys.
    let rec = Recorder::default();
    let phase = Event::PhaseChanged { step: 0, from: None, to: "warm".into(), cause: PhaseCause::Start, detail: None };
    let mut app = common::app(
        RunView::from_events(&[external(plan), phase]),
        "default",
        ThemeKind::Default,
        Box::new(rec.clone()),
    );
    app.run_command_line("set momentum=0.9");
    let (status, is_error) = app.status.get().cloned().expect("a status");
    assert!(is_error && status.contains("this run's plan sets"), "{status}");
    app.run_command_line("set aux_w=0.5");
    assert_eq!(rec.0.lock().unwrap().as_slice(), [Command::Set { key: "aux_w".into(), value: 0.5 }]);
    assert_eq!(app.complete("set au"), "set aux_w=");
}
