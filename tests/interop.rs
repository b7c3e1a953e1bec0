//! `phasetop export` / `import` end to end with the real binary, checked against
//! TensorBoard's own reader (`EventAccumulator`) and PyTorch's own writer
//! (`torch.utils.tensorboard.SummaryWriter`) from the project's venv
//! (scripts/setup-torch.sh installs both). A missing venv fails those tests unless
//! PHASETOP_SKIP_PYTHON=1.

use phasetop::event::{Event, LogLevel, Metrics, PhaseCause, RunStatus};
use phasetop::interop::tfrecord;
use phasetop::runlog::{self, Writer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_phasetop");

/// The project's venv python. Its absence fails the test (scripts/test and CI install
/// it), unless PHASETOP_SKIP_PYTHON=1 asks to skip the checks that need it.
fn python() -> Option<PathBuf> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if !py.exists() {
        if std::env::var_os("PHASETOP_SKIP_PYTHON").is_some_and(|v| v == "1") {
            eprintln!("{} not found: skipped (PHASETOP_SKIP_PYTHON=1)", py.display());
            return None;
        }
        panic!("{} not found: run scripts/setup-torch.sh (or set PHASETOP_SKIP_PYTHON=1 to skip)", py.display());
    }
    Some(py)
}

fn run_py(py: &Path, script: &str, args: &[&Path]) -> String {
    let out = Command::new(py).arg("-c").arg(script).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn phasetop(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "phasetop {args:?} panicked: {stderr}");
    out
}

fn ok(args: &[&str]) -> String {
    let out = phasetop(args);
    assert!(out.status.success(), "phasetop {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// (exit code, stderr) of a failing command.
fn fails(args: &[&str]) -> (i32, String) {
    let out = phasetop(args);
    assert!(!out.status.success(), "phasetop {args:?} should fail");
    (out.status.code().unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn m(pairs: &[(&str, f64)]) -> Metrics {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// A two-phase run: step metrics every step, evals and probes every 10 steps, a signal
/// and a NaN.
fn sample_events() -> Vec<Event> {
    let mut evs = vec![
        Event::RunStarted {
            run_id: "interop-1".into(),
            schema_major: 1,
            schema_minor: 1,
            config_name: "small".into(),
            config: serde_json::json!({"run": {"max_steps": 120}}),
            phases: vec!["warm".into(), "main".into()],
            device: "cpu".into(),
            seed: 7,
            started_at: 1_700_000_000.0,
            resumed_from_step: None,
            parent_run: None,
            branch_step: None,
        },
        Event::PhaseChanged { step: 0, from: None, to: "warm".into(), cause: PhaseCause::Start, detail: None },
    ];
    for step in 1..=120u64 {
        if step == 61 {
            evs.push(Event::PhaseChanged {
                step: 60,
                from: Some("warm".into()),
                to: "main".into(),
                cause: PhaseCause::Scheduled,
                detail: None,
            });
        }
        let phase = if step <= 60 { "warm" } else { "main" };
        let loss = 2.0 / (1.0 + step as f64 * 0.05) + 0.001 * (step % 3) as f64;
        let grad = if step == 33 { f64::NAN } else { 0.5 + step as f64 * 1e-3 };
        evs.push(Event::Step {
            step,
            phase: phase.into(),
            t: 1_700_000_000.0 + step as f64 * 0.25,
            metrics: m(&[("train_loss", loss), ("lr", 0.01), ("grad_norm", grad)]),
        });
        if step % 10 == 0 {
            evs.push(Event::Eval {
                step,
                split: "val".into(),
                metrics: m(&[("val_loss", loss * 1.1), ("val_acc", (step as f64 / 130.0).min(1.0))]),
            });
            evs.push(Event::Probe { step, layer: "h1".into(), metrics: m(&[("eff_rank", 30.0 - step as f64 / 10.0)]) });
        }
    }
    evs.push(Event::Signal {
        step: 90,
        detector: "plateau".into(),
        metric: "train_loss".into(),
        score: 0.5,
        message: "flat".into(),
        figures: Default::default(),
    });
    evs.push(Event::Log { step: 120, level: LogLevel::Info, message: "bye".into() });
    evs.push(Event::RunEnded { step: 120, status: RunStatus::Completed, message: "done".into() });
    evs
}

fn write_run(dir: &Path, events: &[Event]) -> PathBuf {
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut w = Writer::create(&run.join("events.log")).unwrap();
    for e in events {
        w.append(e).unwrap();
    }
    w.flush().unwrap();
    run
}

/// metric → step → value over Step, Eval and Probe events (probe metrics as layer/name).
fn scalars(events: &[Event]) -> BTreeMap<String, BTreeMap<u64, f64>> {
    let mut out: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for e in events {
        let (step, named): (u64, Vec<(String, f64)>) = match e {
            Event::Step { step, metrics, .. } | Event::Eval { step, metrics, .. } => {
                (*step, metrics.iter().map(|(k, v)| (k.clone(), *v)).collect())
            }
            Event::Probe { step, layer, metrics } => {
                (*step, metrics.iter().map(|(k, v)| (format!("{layer}/{k}"), *v)).collect())
            }
            _ => continue,
        };
        for (k, v) in named {
            out.entry(k).or_default().insert(step, v);
        }
    }
    out
}

fn log_events(run: &Path) -> Vec<Event> {
    let c = runlog::read_all(&run.join("events.log")).unwrap();
    assert!(c.problems.is_empty(), "{:?}", c.problems);
    c.records.into_iter().map(|r| r.event).collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Equal but for the last bits serde_json's default (fast, not correctly rounded) float
/// parser may get wrong; far tighter than float32 rounding (~1e-7).
fn close(a: f64, b: f64) -> bool {
    same(a, b) || (a - b).abs() <= 1e-12 * b.abs()
}

fn tfevents_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
    assert!(files[0].to_str().unwrap().ends_with(".phasetop"));
    files[0].clone()
}

#[test]
fn tfevents_round_trip_keeps_every_scalar_and_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let events = sample_events();
    let run = write_run(tmp.path(), &events);
    let out = tmp.path().join("tb/");
    ok(&["export", s(&run), "--format", "tfevents", "-o", s(&out)]);
    tfevents_file(&out);
    let back = tmp.path().join("back");
    let stdout = ok(&["import", s(&out), "-o", s(&back)]);
    assert!(stdout.contains("imported"), "{stdout}");

    let imported = log_events(&back);
    let (want, got) = (scalars(&events), scalars(&imported));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (metric, points) in &want {
        assert_eq!(points.len(), got[metric].len(), "{metric}");
        for (step, v) in points {
            // simple_value is a float32: the round trip is exact up to that rounding.
            let g = got[metric][step];
            assert!(same(g, *v as f32 as f64), "{metric} at {step}: {g} vs {v}");
        }
    }
    let phases: Vec<(u64, String)> = imported
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { step, to, .. } => Some((*step, to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(phases, vec![(0, "warm".to_string()), (60, "main".to_string())]);
    assert!(imported.iter().any(|e| matches!(e, Event::Step { step: 61, phase, .. } if phase == "main")));

    // The imported run is a run like any other: inspect, replay --headless, export.
    let j: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&back), "--json"])).unwrap();
    assert_eq!(j["last_step"], 120);
    assert_eq!(j["status"], "completed");
    let story = ok(&["replay", s(&back), "--headless"]);
    assert!(story.contains("main"), "{story}");
    ok(&["export", s(&back), "--format", "csv", "-o", s(&tmp.path().join("again.csv"))]);
}

#[test]
fn tensorboard_event_accumulator_reads_the_export() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let events = sample_events();
    let run = write_run(tmp.path(), &events);
    let out = tmp.path().join("tb");
    std::fs::create_dir(&out).unwrap();
    ok(&["export", s(&run), "--format", "tfevents", "-o", s(&out)]);
    let script = r#"
import json, math, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {}, "text": {}}
for t in tags["scalars"]:
    out["scalars"][t] = [[e.step, None if math.isnan(e.value) else e.value, e.wall_time] for e in acc.Scalars(t)]
for t in tags["tensors"]:
    out["text"][t] = [[e.step, [s.decode() for s in e.tensor_proto.string_val]] for e in acc.Tensors(t)]
print(json.dumps(out))
"#;
    let got: serde_json::Value = serde_json::from_str(&run_py(&py, script, &[&out])).unwrap();
    let want = scalars(&events);
    let tags: Vec<&String> = got["scalars"].as_object().unwrap().keys().collect();
    assert_eq!(tags, want.keys().collect::<Vec<_>>());
    for (metric, points) in &want {
        let rows = got["scalars"][metric].as_array().unwrap();
        assert_eq!(rows.len(), points.len(), "{metric}");
        for (row, (step, v)) in rows.iter().zip(points) {
            assert_eq!(row[0].as_u64(), Some(*step), "{metric}");
            let value = row[1].as_f64().unwrap_or(f64::NAN);
            assert!(close(value, *v as f32 as f64), "{metric} at {step}: {value} vs {v}");
        }
    }
    // Wall times are the steps' own.
    assert_eq!(got["scalars"]["train_loss"][3][2].as_f64(), Some(1_700_000_001.0));
    let phases = got["text"]["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    assert_eq!(phases[1][0], 60);
    assert!(phases[1][1][0].as_str().unwrap().starts_with("main (from warm, scheduled"), "{phases:?}");
    let signals = got["text"]["signals"].as_array().unwrap();
    assert_eq!(signals[0][0], 90);
    assert!(signals[0][1][0].as_str().unwrap().contains("plateau(train_loss)"), "{signals:?}");
}

#[test]
fn imports_pytorch_summary_writer_and_finds_the_change() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let logdir = tmp.path().join("tb");
    // SummaryWriter's default layout: one folder per run under the folder imported.
    let writer_dir = logdir.join("Nov27_05-00-00_host");
    // A loss that plateaus then drops at step 400, a second tag, and a tag written in
    // the tensor form newer writers use (float tensor_content; metadata only at first).
    let script = r#"
import sys, struct
from torch.utils.tensorboard import SummaryWriter
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
w = SummaryWriter(sys.argv[1])
for s in range(1, 801):
    loss = 1.5 + 0.01 * ((s * 7919) % 13) / 13 if s < 400 else 0.2 + 0.01 * ((s * 7919) % 13) / 13
    w.add_scalar("Loss/train", loss, s)
    w.add_scalar("lr", 0.1 if s < 400 else 0.01, s)
    if s % 50 == 0:
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")) if s == 50 else None
        t = TensorProto(dtype=1, tensor_content=struct.pack("<f", s / 1000))
        v = Summary.Value(tag="tensor_metric", tensor=t, metadata=meta)
        w._get_file_writer().add_summary(Summary(value=[v]), s)
        d = TensorProto(dtype=2, double_val=[s / 100])
        w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag="double_metric", tensor=d)]), s)
w.close()
"#;
    run_py(&py, script, &[&writer_dir]);
    let run = tmp.path().join("imported");
    let stdout = ok(&["import", s(&logdir), "-o", s(&run)]);
    assert!(stdout.contains("Loss/train → train_loss"), "{stdout}");
    let j: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&run), "--json"])).unwrap();
    assert_eq!(j["last_step"], 800);
    assert_eq!(j["status"], "completed");
    let metrics: Vec<&str> = j["metrics"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(metrics, ["double_metric", "lr", "tensor_metric", "train_loss"]);
    assert!(close(j["final_metrics"]["tensor_metric"].as_f64().unwrap(), 0.8f32 as f64));
    assert_eq!(j["final_metrics"]["double_metric"].as_f64(), Some(8.0));
    assert!(close(j["final_metrics"]["lr"].as_f64().unwrap(), 0.01f32 as f64));
    let signals = j["signals"].as_array().unwrap();
    let change = signals.iter().find(|g| g["detector"] == "changepoint" && g["metric"] == "train_loss");
    let change = change.unwrap_or_else(|| panic!("no change point found: {signals:?}"));
    let at = change["step"].as_u64().unwrap();
    assert!((400..=450).contains(&at), "change point at {at}");
}

/// A folder holding several runs' event files keeps each run's folder in its tags; one
/// run's folder (SummaryWriter's `runs/<date>_<host>/`) adds nothing.
#[test]
fn a_folder_of_runs_keeps_each_runs_folder_in_its_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), &sample_events());
    let tb = tmp.path().join("tb");
    for sub in ["runs/a", "runs/b"] {
        std::fs::create_dir_all(tb.join(sub)).unwrap();
        ok(&["export", s(&run), "--format", "tfevents", "-o", s(&tb.join(sub).join("events.out.tfevents.1.x"))]);
    }
    let metrics = |dir: &Path, name: &str| -> Vec<String> {
        let out = tmp.path().join(name);
        ok(&["import", s(dir), "-o", s(&out)]);
        let j: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&out), "--json"])).unwrap();
        j["metrics"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let both = metrics(&tb, "both");
    assert!(both.contains(&"a/train_loss".to_string()) && both.contains(&"b/train_loss".to_string()), "{both:?}");
    let one = metrics(&tb.join("runs/a"), "one");
    assert!(one.contains(&"train_loss".to_string()), "{one:?}");
    std::fs::remove_dir_all(tb.join("runs/b")).unwrap();
    assert_eq!(metrics(&tb, "nested"), one, "one run folder below the one imported adds no prefix");
}

#[test]
fn bad_event_files_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), &sample_events());
    let good = tmp.path().join("good.tfevents");
    ok(&["export", s(&run), "--format", "tfevents", "-o", s(&good)]);
    let bytes = std::fs::read(&good).unwrap();
    let out = |name: &str| tmp.path().join(name);

    // A truncated last record: everything before it is imported, with a warning.
    let cut = out("cut.tfevents");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let o = phasetop(&["import", s(&cut), "-o", s(&out("cut-run"))]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("truncated record") && stderr.contains("cut.tfevents"));
    let j: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&out("cut-run")), "--json"])).unwrap();
    assert_eq!(j["last_step"], 120); // the cut record is the last signal/probe, not the last step

    // A flipped byte in the middle: a CRC mismatch, named with its file and offset.
    let mut flipped = bytes.clone();
    let first = 12 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 4;
    flipped[first + 14] ^= 0x01;
    let bad = out("flipped.tfevents");
    std::fs::write(&bad, &flipped).unwrap();
    let (code, err) = fails(&["import", s(&bad), "-o", s(&out("r1"))]);
    assert_eq!(code, 1);
    assert!(
        err.contains("flipped.tfevents") && err.contains(&format!("at byte {first}")) && err.contains("CRC"),
        "{err}"
    );
    assert!(!out("r1").exists(), "nothing is created on failure");

    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(out("random.bin"), &random).unwrap();
    let (code, err) = fails(&["import", s(&out("random.bin")), "-o", s(&out("r2"))]);
    assert_eq!(code, 1);
    assert!(err.contains("random.bin at byte 0: not a TensorBoard event file"), "{err}");

    std::fs::write(out("empty.tfevents"), b"").unwrap();
    let (code, err) = fails(&["import", s(&out("empty.tfevents")), "-o", s(&out("r3"))]);
    assert_eq!(code, 1);
    assert!(err.contains("empty.tfevents") && err.contains("empty file"), "{err}");

    // Well-framed records that are not event files: not an Event, or no file_version first.
    for (name, record) in [("foreign.tfrecord", &b"\x0a\x03abc"[..]), ("noversion.tfrecord", &b"\x10\x05"[..])] {
        let mut foreign = Vec::new();
        tfrecord::write_record(&mut foreign, record).unwrap();
        std::fs::write(out(name), &foreign).unwrap();
        let (code, err) = fails(&["import", s(&out(name)), "-o", s(&out("r4"))]);
        assert_eq!(code, 1);
        assert!(err.contains(&format!("{name} at byte 0: not a TensorBoard event file")), "{err}");
    }

    // Usage errors: exit code 2.
    let (code, err) = fails(&["import", s(&out("missing")), "-o", s(&out("r5"))]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = fails(&["import", s(&good), "-o", s(&run)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    let (code, _) = fails(&["export", s(&run), "--format", "xml", "-o", s(&out("x"))]);
    assert_eq!(code, 2);
    let empty_dir = out("nothing");
    std::fs::create_dir(&empty_dir).unwrap();
    let (code, err) = fails(&["import", s(&empty_dir), "-o", s(&out("r6"))]);
    assert_eq!(code, 2);
    assert!(err.contains("no TensorBoard event files"), "{err}");

    // A run log of a newer schema cannot be exported.
    let newer = out("newer");
    std::fs::create_dir(&newer).unwrap();
    let mut log = std::fs::read(run.join("events.log")).unwrap();
    log[8..12].copy_from_slice(&2u32.to_le_bytes());
    std::fs::write(newer.join("events.log"), &log).unwrap();
    let (code, err) = fails(&["export", s(&newer), "--format", "jsonl", "-o", s(&out("n.jsonl"))]);
    assert_eq!(code, 1);
    assert!(err.contains("events.log at byte 8") && err.contains("newer phasetop"), "{err}");
    // … nor inspected or replayed: the error names the file and the byte.
    for args in [&["inspect", s(&newer)][..], &["replay", "--headless", s(&newer)], &["replay", s(&newer)]] {
        let (code, err) = fails(args);
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains("events.log at byte 8") && err.contains("newer phasetop"), "{args:?}: {err}");
    }
    let mut garbage = log.clone();
    garbage[..4].copy_from_slice(b"RIFF");
    std::fs::write(newer.join("events.log"), &garbage).unwrap();
    let (code, err) = fails(&["replay", "--headless", s(&newer)]);
    assert_eq!(code, 1);
    assert!(err.contains("events.log at byte 0: not a phasetop run log: bad magic"), "{err}");

    // An event file of a newer version than TensorBoard's writers use: read, with a warning.
    let mut records = tfrecord::Records::new(&bytes);
    let (_, first) = records.next().unwrap().unwrap();
    let at = first.windows(13).position(|w| w == b"brain.Event:2").expect("the file version") + 12;
    let mut first = first.to_vec();
    first[at] = b'9';
    let mut v9 = Vec::new();
    tfrecord::write_record(&mut v9, &first).unwrap();
    for item in records {
        tfrecord::write_record(&mut v9, item.unwrap().1).unwrap();
    }
    std::fs::write(out("v9.tfevents"), &v9).unwrap();
    let o = phasetop(&["import", s(&out("v9.tfevents")), "-o", s(&out("v9-run"))]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("v9.tfevents at byte 0: written as brain.Event:9"), "{stderr}");
}

#[test]
fn csv_and_jsonl_exports_parse_back() {
    let tmp = tempfile::tempdir().unwrap();
    let events = sample_events();
    let run = write_run(tmp.path(), &events);

    let jsonl = tmp.path().join("run.jsonl");
    ok(&["export", s(&run), "--format", "jsonl", "-o", s(&jsonl)]);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), events.len());
    for (line, ev) in lines.iter().zip(&events) {
        assert_eq!(*line, serde_json::to_string(ev).unwrap());
        let back: Event = serde_json::from_str(line).unwrap();
        assert_eq!(back.step(), ev.step());
    }

    let csv_path = tmp.path().join("run.csv");
    ok(&["export", s(&run), "--format", "csv", "-o", s(&csv_path)]);
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, ["step", "phase", "grad_norm", "h1/eff_rank", "lr", "train_loss", "val_acc", "val_loss"]);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 120);
    let want = scalars(&events);
    for row in &rows {
        let step: u64 = row[0].parse().unwrap();
        assert_eq!(&row[1], if step <= 60 { "warm" } else { "main" }, "step {step}");
        for (i, name) in header.iter().enumerate().skip(2) {
            match want[name].get(&step) {
                Some(v) => {
                    let got: f64 = row[i].parse().unwrap();
                    assert!(same(got, *v), "{name} at {step}: {} vs {v}", &row[i]);
                }
                None => assert_eq!(&row[i], "", "{name} at {step}"),
            }
        }
    }
    assert_eq!(&rows[32][2], "NaN");
}
