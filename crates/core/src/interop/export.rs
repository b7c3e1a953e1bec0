//! `phasetop export RUN_DIR --format csv|jsonl|tfevents -o PATH`.
//!
//! - csv: one row per step, `step`, `phase`, then every metric name seen (sorted); an
//!   empty cell where a metric has no value at that step. Eval and probe metrics join
//!   their step's row (probe metrics as `<layer>/<name>`, as the dashboard names them).
//!   A step logged twice (a resumed run re-running superseded steps) keeps the later
//!   values. An external run's own facts follow on every row, as a runs table has them
//!   (so CSVs of many runs concatenate and group): `tags` (comma-separated), `group`,
//!   `config/<key>` (nested keys joined by `.`) and `summary/<key>` (the last value).
//! - jsonl: every event of the log, one JSON object per line, as the log holds it.
//! - config: the run's plan as it happened, a config that reproduces it ([`super::recipe`]).
//! - tfevents: a TensorBoard event file: step, eval and probe metrics as scalars; phase
//!   changes and signals as text summaries (tags `phases` and `signals`). Events go in
//!   log order, so after a resume the steps go back and TensorBoard discards the
//!   superseded points itself, as it does for a restarted TensorFlow job.

use super::proto;
use super::tfrecord;
use crate::error::UsageError;
use crate::event::{Event, Metrics};
use crate::rundir::RunDir;
use crate::runlog::{self, LogContents};
use anyhow::{Context, Result};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Tfevents,
    Config,
}

impl std::str::FromStr for Format {
    type Err = UsageError;
    fn from_str(s: &str) -> Result<Format, UsageError> {
        match s {
            "csv" => Ok(Format::Csv),
            "jsonl" => Ok(Format::Jsonl),
            "tfevents" => Ok(Format::Tfevents),
            "config" => Ok(Format::Config),
            other => {
                Err(UsageError(format!("unknown export format \"{other}\", expected csv, jsonl, tfevents or config")))
            }
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub path: PathBuf,
    /// Rows (csv), lines (jsonl) or records after the file-version record (tfevents).
    pub items: usize,
    /// Damaged spans of the run log that were skipped (also printed as warnings).
    pub skipped_spans: usize,
}

/// Exports the run at `run_dir`; warnings (damaged log spans) go to stderr.
pub fn export(run_dir: &Path, format: Format, out: &Path) -> Result<Exported> {
    let dir = RunDir::open(run_dir)?;
    let log = dir.log();
    let contents = read_log(&log)?;
    for p in &contents.problems {
        eprintln!(
            "phasetop: warning: {}: skipped damaged span at byte {}: {} — {}",
            log.display(),
            p.offset,
            p.kind,
            p.detail
        );
    }
    // `-o -` is stdout, as the ecosystem expects (not a file named `-`).
    let to_stdout = out == Path::new(STDOUT);
    if to_stdout && format == Format::Tfevents {
        return Err(UsageError("tfevents is a binary event file: give -o FILE or -o DIR/, not stdout".into()).into());
    }
    let path = match format {
        _ if to_stdout => PathBuf::from(STDOUT),
        Format::Tfevents => tfevents_path(out)?,
        _ => file_path(out, run_dir, format)?,
    };
    if format == Format::Config {
        // Built whole before the file is created: a run with no recipe leaves no file.
        let r = super::recipe::recipe(&contents, &run_dir.display().to_string())?;
        for w in &r.warnings {
            eprintln!("phasetop: warning: {w}");
        }
        if to_stdout {
            std::io::stdout().lock().write_all(r.toml.as_bytes()).context("cannot write to stdout")?;
        } else {
            std::fs::write(&path, &r.toml).with_context(|| format!("cannot write {}", path.display()))?;
        }
        return Ok(Exported { path, items: r.phases, skipped_spans: contents.problems.len() });
    }
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?)
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    let items = match format {
        Format::Csv => write_csv(&contents, &mut w)?,
        Format::Jsonl => write_jsonl(&contents, &mut w)?,
        Format::Tfevents => write_tfevents(&contents, &mut w)?,
        Format::Config => unreachable!("written above"),
    };
    w.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Exported { path, items, skipped_spans: contents.problems.len() })
}

/// The output path that means standard output.
pub const STDOUT: &str = "-";

/// Where a csv/jsonl/config export goes: `out`, or `out/<run id>.<ext>` when `out` is a
/// directory (or ends in `/`, created if needed), as `cp` does.
fn file_path(out: &Path, run_dir: &Path, format: Format) -> Result<PathBuf> {
    let as_dir = out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/');
    if !as_dir {
        return Ok(out.to_path_buf());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let ext = match format {
        Format::Csv => "csv",
        Format::Jsonl => "jsonl",
        _ => "toml",
    };
    let id = std::path::absolute(run_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".into());
    Ok(out.join(format!("{id}.{ext}")))
}

/// Reads a run log, turning "cannot read at all" into a [`DataError`] with the offset.
pub fn read_log(log: &Path) -> Result<LogContents> {
    runlog::read_all(log).map_err(|e| super::log_error(log, e))
}

/// `PATH/events.out.tfevents.<unix>.phasetop` when PATH is a directory or ends in `/`
/// (created if needed); otherwise PATH.
fn tfevents_path(out: &Path) -> Result<PathBuf> {
    let as_dir = out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/');
    if !as_dir {
        return Ok(out.to_path_buf());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let unix = crate::rundir::now_unix() as u64;
    Ok(out.join(format!("events.out.tfevents.{unix}.phasetop")))
}

/// Step, eval and probe metrics of one event under their global names.
fn metrics_of(ev: &Event) -> Option<(u64, Vec<(String, f64)>)> {
    let named = |m: &Metrics| m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
    match ev {
        Event::Step { step, metrics, .. } | Event::Eval { step, metrics, .. } => Some((*step, named(metrics))),
        Event::Probe { step, layer, metrics } => {
            Some((*step, metrics.iter().map(|(k, v)| (format!("{layer}/{k}"), *v)).collect()))
        }
        _ => None,
    }
}

fn write_csv(contents: &LogContents, out: &mut impl Write) -> Result<usize> {
    let mut names = BTreeSet::new();
    let mut rows: BTreeMap<u64, (String, BTreeMap<String, f64>)> = BTreeMap::new();
    let mut phase = String::new();
    for r in &contents.records {
        match &r.event {
            Event::PhaseChanged { to, .. } => phase.clone_from(to),
            Event::Step { phase: p, .. } => phase.clone_from(p),
            _ => {}
        }
        if let Some((step, metrics)) = metrics_of(&r.event) {
            let row = rows.entry(step).or_insert_with(|| (phase.clone(), BTreeMap::new()));
            if matches!(r.event, Event::Step { .. }) {
                row.0.clone_from(&phase);
            }
            for (k, v) in metrics {
                if !names.contains(&k) {
                    names.insert(k.clone());
                }
                row.1.insert(k, v);
            }
        }
    }
    let facts = run_facts(contents);
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["step".to_string(), "phase".to_string()];
    header.extend(names.iter().cloned());
    header.extend(facts.iter().map(|(k, _)| k.clone()));
    w.write_record(&header)?;
    let mut cells: Vec<String> = Vec::with_capacity(header.len());
    for (step, (phase, values)) in &rows {
        cells.clear();
        cells.push(step.to_string());
        cells.push(phase.clone());
        // `{:?}` is the shortest text that parses back to the same f64 ("NaN", "inf" too).
        cells.extend(names.iter().map(|n| values.get(n).map_or(String::new(), |v| format!("{v:?}"))));
        cells.extend(facts.iter().map(|(_, v)| v.clone()));
        w.write_record(&cells)?;
    }
    w.flush()?;
    Ok(rows.len())
}

/// An external run's tags, group, config and summary as (column, cell) pairs, in that
/// order; none for a run without them (a built-in run's CSV is steps and metrics only).
fn run_facts(contents: &LogContents) -> Vec<(String, String)> {
    let mut info = None;
    let mut summary = serde_json::Map::new();
    for r in &contents.records {
        match &r.event {
            Event::RunInfo { job_config, tags, group, .. } => info = Some((job_config, tags, group)),
            Event::Summary { values, .. } => summary.extend(values.iter().map(|(k, v)| (k.clone(), v.clone()))),
            _ => {}
        }
    }
    let mut facts = Vec::new();
    if let Some((config, tags, group)) = info {
        if !tags.is_empty() {
            facts.push(("tags".to_string(), tags.join(",")));
        }
        if let Some(g) = group {
            facts.push(("group".to_string(), g.clone()));
        }
        flatten("config/", config, &mut facts);
    }
    let mut keys: Vec<_> = summary.into_iter().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in keys {
        facts.push((format!("summary/{k}"), cell(&v)));
    }
    facts
}

/// `config` as `prefix+key` columns, nested mappings' keys joined by `.` (sorted, as
/// JSON maps are); a list or a scalar at the top is one `config` column.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let name = format!("{prefix}{k}");
                if matches!(v, serde_json::Value::Object(_)) {
                    flatten(&format!("{name}."), v, out);
                } else {
                    out.push((name, cell(v)));
                }
            }
        }
        serde_json::Value::Null => {}
        other => out.push((prefix.trim_end_matches(['/', '.']).to_string(), cell(other))),
    }
}

/// A JSON value as a CSV cell: strings as they are, `null` empty, the rest as JSON.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn write_jsonl(contents: &LogContents, out: &mut impl Write) -> Result<usize> {
    for r in &contents.records {
        serde_json::to_writer(&mut *out, &r.event)?;
        out.write_all(b"\n")?;
    }
    Ok(contents.records.len())
}

fn write_tfevents(contents: &LogContents, out: &mut impl Write) -> Result<usize> {
    let mut buf = Vec::with_capacity(256);
    let mut put = |out: &mut dyn Write, ev: &proto::Event| -> std::io::Result<()> {
        buf.clear();
        ev.encode(&mut buf).expect("a Vec grows as needed");
        tfrecord::write_record(out, &buf)
    };
    let mut wall = contents
        .records
        .iter()
        .find_map(|r| match &r.event {
            Event::RunStarted { started_at, .. } => Some(*started_at),
            _ => None,
        })
        .unwrap_or_else(crate::rundir::now_unix);
    put(out, &proto::Event { wall_time: wall, file_version: Some("brain.Event:2".into()), ..Default::default() })?;
    let mut n = 0;
    for r in &contents.records {
        if let Event::Step { t, .. } = &r.event {
            wall = *t;
        }
        let (step, value) = match &r.event {
            Event::PhaseChanged { step, from, to, cause, detail } => {
                let mut text = format!("{to} (from {}, {}", from.as_deref().unwrap_or("-"), cause.as_str());
                if let Some(d) = detail {
                    text.push_str(&format!(": {d}"));
                }
                text.push(')');
                (*step, vec![proto::Value::text("phases", &text)])
            }
            Event::Signal { step, detector, metric, score, message, .. } => {
                (*step, vec![proto::Value::text("signals", &format!("{detector}({metric}) score {score}: {message}"))])
            }
            ev => match metrics_of(ev) {
                Some((step, metrics)) => {
                    (step, metrics.iter().map(|(k, v)| proto::Value::scalar(k, *v as f32)).collect())
                }
                None => continue,
            },
        };
        if value.is_empty() {
            continue;
        }
        let ev = proto::Event {
            wall_time: wall,
            step: step.min(i64::MAX as u64) as i64,
            file_version: None,
            summary: Some(proto::Summary { value }),
        };
        put(out, &ev)?;
        n += 1;
    }
    Ok(n)
}
