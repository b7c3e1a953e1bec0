//! The documented Python reader (scripts/read_runlog.py, quoted in docs/RUNLOG.md) reads
//! what the Rust writer writes, damaged spans included. Skipped when python3 is missing.

use phasetop::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus};
use phasetop::runlog::{self, Writer};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<&'static str> {
    let ok = Process::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("python3 not found: skipping");
    }
    ok.then_some("python3")
}

/// Runs the script; returns (stdout, stderr).
fn run_script(log: &Path, extra: &[&str]) -> Option<(String, String)> {
    let py = python()?;
    let out = Process::new(py).arg(root().join("scripts/read_runlog.py")).arg(log).args(extra).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "read_runlog.py failed: {stderr}");
    Some((String::from_utf8(out.stdout).unwrap(), stderr))
}

fn events() -> Vec<Event> {
    let m = |pairs: &[(&str, f64)]| -> Metrics { pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
    let mut evs = vec![
        Event::RunStarted {
            run_id: "py-1".into(),
            schema_major: 1,
            schema_minor: 0,
            config_name: "demo".into(),
            config: serde_json::json!({"run": {"seed": 3}, "phases": ["a", "b"]}),
            phases: vec!["a".into(), "b".into()],
            device: "cpu".into(),
            seed: 3,
            started_at: 1_700_000_000.5,
            resumed_from_step: Some(0),
            parent_run: None,
            branch_step: None,
        },
        Event::PhaseChanged { step: 0, from: None, to: "a".into(), cause: PhaseCause::Start, detail: None },
    ];
    for s in 1..=200u64 {
        evs.push(Event::Step {
            step: s,
            phase: "a".into(),
            t: 1_700_000_000.0 + s as f64 / 3.0,
            metrics: m(&[
                ("train_loss", 1.0 / s as f64),
                ("lr", 1e-3),
                ("grad_norm", if s == 100 { f64::NAN } else { 0.1 }),
            ]),
        });
        if s % 50 == 0 {
            evs.push(Event::Eval { step: s, split: "val".into(), metrics: m(&[("val_loss", 0.5), ("val_acc", 0.75)]) });
            evs.push(Event::Probe { step: s, layer: "h1".into(), metrics: m(&[("eff_rank", 12.25)]) });
        }
    }
    evs.extend([
        Event::Signal {
            step: 200,
            detector: "plateau".into(),
            metric: "val_loss".into(),
            score: 0.9,
            message: "flat".into(),
            figures: Default::default(),
        },
        Event::Suggestion { step: 200, id: 1, to_phase: "b".into(), because: "plateau on \"val_loss\"".into() },
        Event::Command {
            step: 201,
            t: 5.0,
            client: "tui".into(),
            command: Command::Accept { id: Some(1) },
            applied: true,
            message: "switching".into(),
        },
        Event::PhaseChanged {
            step: 201,
            from: Some("a".into()),
            to: "b".into(),
            cause: PhaseCause::Suggestion,
            detail: None,
        },
        Event::Checkpoint { step: 201, path: "checkpoints/step-201.safetensors".into() },
        Event::Log { step: 201, level: LogLevel::Warn, message: "ünïcödé and \"quotes\"\n".into() },
        Event::RunEnded { step: 201, status: RunStatus::Completed, message: "done".into() },
    ]);
    evs
}

fn write(path: &Path, evs: &[Event]) {
    let mut w = Writer::create(path).unwrap();
    for e in evs {
        w.append(e).unwrap();
    }
}

fn type_of(e: &Event) -> String {
    serde_json::to_value(e).unwrap()["type"].as_str().unwrap().to_string()
}

/// JSON values equal, floats within a few ULP (both sides' float parsers are involved).
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w))),
        _ => a == b,
    }
}

#[test]
fn doc_quotes_the_script_verbatim() {
    let doc = std::fs::read_to_string(root().join("docs/RUNLOG.md")).unwrap();
    let script = std::fs::read_to_string(root().join("scripts/read_runlog.py")).unwrap();
    let start = doc.find("```python\n").expect("docs/RUNLOG.md has a python block") + "```python\n".len();
    let end = start + doc[start..].find("```\n").unwrap();
    assert_eq!(&doc[start..end], script, "docs/RUNLOG.md's Python block differs from scripts/read_runlog.py");
}

#[test]
fn python_reads_what_rust_writes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let evs = events();
    write(&log, &evs);
    let Some((stdout, stderr)) = run_script(&log, &[]) else { return };
    assert!(stderr.is_empty(), "{stderr}");
    let py: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rust = runlog::read_all(&log).unwrap();
    assert_eq!(py.len(), evs.len());
    assert_eq!(rust.records.len(), evs.len());
    for (p, e) in py.iter().zip(&evs) {
        assert_eq!(p["type"].as_str().unwrap(), type_of(e));
        let want = serde_json::to_value(e).unwrap();
        assert!(close(p, &want), "python read {p}\nrust wrote  {want}");
    }
    // NaN was written as null.
    let nan_step = py.iter().find(|p| p["type"] == "step" && p["step"] == 100).unwrap();
    assert!(nan_step["metrics"]["grad_norm"].is_null());

    // --count
    let Some((counts, _)) = run_script(&log, &["--count"]) else { return };
    let mut want = std::collections::BTreeMap::<String, usize>::new();
    for e in &evs {
        *want.entry(type_of(e)).or_default() += 1;
    }
    let want: Vec<String> = want.into_iter().map(|(t, n)| format!("{t} {n}")).collect();
    assert_eq!(counts.lines().collect::<Vec<_>>(), want);
}

#[test]
fn python_skips_damage_like_rust() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let evs = events();
    write(&log, &evs);
    let clean = runlog::read_all(&log).unwrap();
    let mut bytes = std::fs::read(&log).unwrap();
    // A flipped payload byte in record 10, a damaged length word in record 40, garbage
    // between records 80 and 81, and a torn tail.
    let off = |i: usize| clean.records[i].offset as usize;
    bytes[off(10) + 20] ^= 0x04;
    bytes[off(40) + 3] = 0x7f;
    let torn = bytes.len() - 5;
    bytes.truncate(torn);
    bytes.splice(off(81)..off(81), b"some garbage between records".iter().copied());
    std::fs::write(&log, &bytes).unwrap();

    let rust = runlog::read_all(&log).unwrap();
    assert_eq!(rust.records.len(), evs.len() - 3);
    assert_eq!(rust.problems.len(), 4, "{:?}", rust.problems);
    let Some((stdout, stderr)) = run_script(&log, &[]) else { return };
    let py: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(py.len(), rust.records.len());
    for (p, r) in py.iter().zip(&rust.records) {
        assert_eq!(p["type"].as_str().unwrap(), type_of(&r.event));
        assert_eq!(p["step"].as_u64(), r.event.step());
    }
    let problem_offsets: Vec<u64> = stderr
        .lines()
        .map(|l| l.strip_prefix("offset ").unwrap().split(':').next().unwrap().parse().unwrap())
        .collect();
    let rust_offsets: Vec<u64> = rust.problems.iter().map(|p| p.offset).collect();
    assert_eq!(problem_offsets, rust_offsets, "python: {stderr}");
}

#[test]
fn python_refuses_bad_headers() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    write(&log, &events()[..2]);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[8] = 2;
    std::fs::write(&log, &bytes).unwrap();
    let out = Process::new(py).arg(root().join("scripts/read_runlog.py")).arg(&log).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer phasetop (schema 2.x)"));
    bytes[0] = b'X';
    std::fs::write(&log, &bytes).unwrap();
    let out = Process::new(py).arg(root().join("scripts/read_runlog.py")).arg(&log).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad magic at offset 0"));
}
