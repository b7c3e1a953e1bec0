//! `phasetop import TFEVENTS_PATH -o RUN_DIR`: TensorBoard scalars into a new run
//! directory that `inspect`, `replay` and `export` read like any other.
//!
//! - Scalars are `simple_value`s and one-element float/double tensors (the form TF2 and
//!   newer writers use), from tags whose plugin is `scalars` or unnamed. Other values
//!   (images, histograms, text) are counted and reported, not imported.
//! - A directory is read with its subdirectories (one per run or per `add_scalars`
//!   series); a tag from a file in `sub/dir` is named `sub/dir/<tag>`.
//! - Points are grouped by step; a later point for the same step and tag replaces an
//!   earlier one (a restarted writer), as TensorBoard shows it.
//! - Tags are renamed to phasetop's metric names where the meaning is unambiguous
//!   ([`metric_name`]); when two tags would get the same name, both keep their own.
//! - The default detector bank runs over the series; its firings become `signal` events.
//! - A `phases` text summary (what `export` writes) becomes phase changes again; its
//!   `signals` text summary is dropped, since the detectors find those again.

use super::DataError;
use super::proto;
use super::tfrecord::{FrameError, Records};
use crate::error::UsageError;
use crate::event::{Event, Metrics, PhaseCause, RunStatus, SCHEMA_MAJOR, SCHEMA_MINOR};
use crate::rundir::{RunDir, RunMeta, now_unix};
use crate::runlog::Writer;
use anyhow::{Context, Result};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The phase name of imported steps when the file names none.
pub const IMPORTED_PHASE: &str = "imported";

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub run_dir: PathBuf,
    pub files: usize,
    pub steps: usize,
    pub scalars: usize,
    /// (tag, metric name) for every imported tag, sorted by tag.
    pub tags: Vec<(String, String)>,
    pub signals: usize,
    /// Also printed to stderr as they happen (a truncated last record, skipped values).
    pub warnings: Vec<String>,
}

/// One scalar point: the step, the tag's index, the value, the wall time.
struct Point {
    step: u64,
    tag: u32,
    value: f64,
    wall: f64,
}

#[derive(Default)]
struct Collected {
    tags: Vec<String>,
    tag_ids: HashMap<String, u32>,
    points: Vec<Point>,
    /// (step, text) of `phases` text summaries.
    phases: Vec<(u64, String)>,
    /// Values that are not scalars, by tag.
    skipped: BTreeMap<String, usize>,
    negative_steps: usize,
    first_wall: Option<f64>,
    warnings: Vec<String>,
}

impl Collected {
    fn warn(&mut self, w: String) {
        eprintln!("phasetop: warning: {w}");
        self.warnings.push(w);
    }

    fn tag_id(&mut self, tag: &str) -> u32 {
        if let Some(&id) = self.tag_ids.get(tag) {
            return id;
        }
        let id = self.tags.len() as u32;
        self.tags.push(tag.to_string());
        self.tag_ids.insert(tag.to_string(), id);
        id
    }
}

pub fn import(src: &Path, run_dir: &Path) -> Result<ImportReport> {
    if run_dir.exists() && std::fs::read_dir(run_dir).map_or(true, |mut d| d.next().is_some()) {
        return Err(UsageError(format!(
            "{}: already exists and is not empty (import creates a new run directory)",
            run_dir.display()
        ))
        .into());
    }
    let files = event_files(src)?;
    let mut c = Collected::default();
    for (file, prefix) in &files {
        read_file(file, prefix, &mut c)?;
    }
    if c.points.is_empty() {
        c.warn(format!("{}: no scalars found; the run will hold no steps", src.display()));
    }
    if c.negative_steps > 0 {
        c.warn(format!("skipped {} points with a negative step", c.negative_steps));
    }
    if !c.skipped.is_empty() {
        let tags: Vec<String> = c.skipped.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        c.warn(format!("skipped non-scalar values: {}", tags.join(", ")));
    }
    let names = metric_names(&c.tags);
    let events = build_events(src, run_dir, &c, &names);
    let steps = events.iter().filter(|e| matches!(e, Event::Step { .. })).count();
    let signals = write_run(run_dir, &events)?;
    let mut tags: Vec<(String, String)> = c.tags.iter().cloned().zip(names).collect();
    tags.sort();
    Ok(ImportReport {
        run_dir: run_dir.to_path_buf(),
        files: files.len(),
        steps,
        scalars: c.points.len(),
        tags,
        signals,
        warnings: c.warnings,
    })
}

/// The event files to read, with the tag prefix of each: `src` itself, or every file
/// under the directory `src` whose name holds `tfevents`, in path order. The prefix is
/// the file's folder below the deepest folder common to all of them, so SummaryWriter's
/// `runs/<date>_<host>/` layout imports its tags as written (`train/loss`), and several
/// runs side by side keep their folder names apart.
fn event_files(src: &Path) -> Result<Vec<(PathBuf, String)>> {
    let meta = std::fs::metadata(src).map_err(|e| UsageError(format!("{}: {e}", src.display())))?;
    if !meta.is_dir() {
        return Ok(vec![(src.to_path_buf(), String::new())]);
    }
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
            let path = e.path();
            // file_type() does not follow symlinks, so a link cycle cannot loop forever.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n.to_string_lossy().contains("tfevents")) {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        return Err(
            UsageError(format!("{}: no TensorBoard event files (events.out.tfevents.*) in it", src.display())).into()
        );
    }
    found.sort();
    let parents: Vec<&Path> = found.iter().filter_map(|p| p.parent()).collect();
    let mut common: PathBuf = parents.first().map(|p| p.to_path_buf()).unwrap_or_default();
    for p in &parents[1..] {
        common = common.components().zip(p.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
    }
    Ok(found
        .iter()
        .map(|p| {
            let rel = p.parent().and_then(|d| d.strip_prefix(&common).ok()).map(Path::to_path_buf).unwrap_or_default();
            let prefix = if rel.as_os_str().is_empty() { String::new() } else { format!("{}/", rel.display()) };
            (p.clone(), prefix)
        })
        .collect())
}

/// The event file version TensorBoard's writers have used since 2016.
const KNOWN_EVENT_VERSION: u32 = 2;

fn read_file(path: &Path, prefix: &str, c: &mut Collected) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() {
        return Err(DataError::new(path, None, "empty file, not a TensorBoard event file").into());
    }
    // Writers send a tag's plugin metadata with its first value only.
    let mut plugins: HashMap<String, String> = HashMap::new();
    for (i, item) in Records::new(&bytes).enumerate() {
        let (offset, data) = match item {
            Ok(r) => r,
            Err(e @ FrameError::Truncated { .. }) if i > 0 => {
                c.warn(format!("{} at byte {}: {e}; imported the {i} records before it", path.display(), e.offset()));
                break;
            }
            Err(e) if i == 0 => {
                return Err(DataError::new(path, Some(e.offset()), format!("not a TensorBoard event file: {e}")).into());
            }
            Err(e) => return Err(DataError::new(path, Some(e.offset()), e.to_string()).into()),
        };
        let ev = proto::Event::decode(data).map_err(|e| {
            let what = if i == 0 { "not a TensorBoard event file: the first record" } else { "the record" };
            DataError::new(path, Some(offset), format!("{what} is not a tensorflow.Event ({e})"))
        })?;
        if i == 0 {
            let version = ev.file_version.as_deref().and_then(|v| v.strip_prefix("brain.Event:"));
            let Some(version) = version.and_then(|v| v.parse::<u32>().ok()) else {
                return Err(DataError::new(
                    path,
                    Some(0),
                    "not a TensorBoard event file: the first record has no file_version \"brain.Event:N\"",
                )
                .into());
            };
            if version > KNOWN_EVENT_VERSION {
                // TensorBoard itself reads on; so do we, saying so.
                c.warn(format!(
                    "{} at byte 0: written as brain.Event:{version}, newer than the version {KNOWN_EVENT_VERSION} \
                     this build knows; imported the scalars it could read",
                    path.display()
                ));
            }
            c.first_wall = Some(c.first_wall.map_or(ev.wall_time, |w: f64| w.min(ev.wall_time)));
            continue;
        }
        let Some(summary) = ev.summary else { continue };
        let Ok(step) = u64::try_from(ev.step) else {
            c.negative_steps += summary.value.len();
            continue;
        };
        for v in summary.value {
            if let Some(p) = v.plugin()
                && !plugins.contains_key(&v.tag)
            {
                plugins.insert(v.tag.clone(), p.to_string());
            }
            let value = match (&v.simple_value, &v.tensor) {
                (Some(x), _) => Some(f64::from(*x)),
                (None, Some(t)) => match plugins.get(&v.tag).map_or("", String::as_str) {
                    "scalars" | "" => t.scalar(),
                    "text" if prefix.is_empty() && v.tag == "phases" => {
                        c.phases.extend(t.strings().into_iter().map(|s| (step, s)));
                        continue;
                    }
                    // An export's own signals: the detectors find them again from the scalars.
                    "text" if prefix.is_empty() && v.tag == "signals" => continue,
                    _ => None,
                },
                (None, None) => None,
            };
            let tag = if prefix.is_empty() { v.tag } else { format!("{prefix}{}", v.tag) };
            match value {
                Some(value) => {
                    let tag = c.tag_id(&tag);
                    c.points.push(Point { step, tag, value, wall: ev.wall_time });
                }
                None => *c.skipped.entry(tag).or_default() += 1,
            }
        }
    }
    Ok(())
}

/// phasetop's name for a TensorBoard tag, where the meaning is clear: the quantity
/// (`loss`, `acc`/`accuracy`, `lr`/`learning_rate`, `grad_norm`) and the split
/// (`train`/`training`, `val`/`valid`/`validation`/`eval`), in either order, separated by
/// `/` or `_`, any case. A bare quantity is the training one: `loss` → `train_loss`,
/// `Loss/train` → `train_loss`, `val/accuracy` → `val_acc`, `learning_rate` → `lr`.
/// `None` for anything else (the tag is kept as it is).
pub fn metric_name(tag: &str) -> Option<&'static str> {
    let t = tag.to_ascii_lowercase();
    let quantity = |w: &str| match w {
        "loss" => Some("loss"),
        "acc" | "accuracy" => Some("acc"),
        "lr" | "learning_rate" | "learning-rate" => Some("lr"),
        "grad_norm" | "gradient_norm" => Some("grad_norm"),
        _ => None,
    };
    let split = |w: &str| match w {
        "train" | "training" => Some("train"),
        "val" | "valid" | "validation" | "eval" => Some("val"),
        _ => None,
    };
    let resolve = |split: &str, q: &str| -> Option<&'static str> {
        Some(match (split, q) {
            ("train", "loss") => "train_loss",
            ("train", "acc") => "train_acc",
            ("val", "loss") => "val_loss",
            ("val", "acc") => "val_acc",
            ("train", "lr") => "lr",
            ("train", "grad_norm") => "grad_norm",
            _ => return None,
        })
    };
    if let Some(q) = quantity(&t) {
        return resolve("train", q);
    }
    let (a, b) = t.split_once('/').or_else(|| t.split_once('_'))?;
    match (split(a), quantity(b), quantity(a), split(b)) {
        (Some(s), Some(q), _, _) | (_, _, Some(q), Some(s)) => resolve(s, q),
        _ => None,
    }
}

/// The metric name of every tag: [`metric_name`] where no other tag maps to the same
/// name (and no tag already has it), else the tag itself.
fn metric_names(tags: &[String]) -> Vec<String> {
    let mapped: Vec<String> = tags.iter().map(|t| metric_name(t).map_or_else(|| t.clone(), str::to_string)).collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for m in &mapped {
        *count.entry(m.as_str()).or_default() += 1;
    }
    tags.iter().zip(&mapped).map(|(t, m)| if count[m.as_str()] > 1 { t.clone() } else { m.clone() }).collect()
}

/// Splits a `phases` text as `export` writes it, `to (from X, cause[: detail])`.
fn parse_phase(text: &str) -> (String, PhaseCause) {
    let (name, rest) = text.split_once(" (").unwrap_or((text, ""));
    let cause_word = rest.split(", ").nth(1).unwrap_or("").split([':', ')']).next().unwrap_or("");
    let cause = match cause_word {
        "start" => PhaseCause::Start,
        "manual" => PhaseCause::Manual,
        "rule" => PhaseCause::Rule,
        "suggestion" => PhaseCause::Suggestion,
        _ => PhaseCause::Scheduled,
    };
    (name.trim().to_string(), cause)
}

fn build_events(src: &Path, run_dir: &Path, c: &Collected, names: &[String]) -> Vec<Event> {
    let mut points: Vec<&Point> = c.points.iter().collect();
    points.sort_by_key(|p| p.step); // stable: file order within a step
    let mut phases: Vec<(u64, String, PhaseCause)> =
        c.phases.iter().map(|(s, t)| (*s, parse_phase(t))).map(|(s, (n, c))| (s, n, c)).collect();
    phases.sort_by_key(|p| p.0);
    let first_step = points.first().map_or(0, |p| p.step);
    if phases.first().is_none_or(|p| p.0 > first_step) {
        phases.insert(0, (first_step, IMPORTED_PHASE.to_string(), PhaseCause::Start));
    }
    let mut plan: Vec<String> = Vec::new();
    for (_, n, _) in &phases {
        if !plan.contains(n) {
            plan.push(n.clone());
        }
    }
    let last_step = points.last().map_or(first_step, |p| p.step);
    let started_at = c.first_wall.or(points.first().map(|p| p.wall)).unwrap_or_else(now_unix);
    let run_id = run_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let config = serde_json::json!({
        "run": { "name": "tensorboard-import", "max_steps": last_step },
        "phase": plan.iter().map(|n| serde_json::json!({ "name": n })).collect::<Vec<_>>(),
        "imported_from": src.display().to_string(),
    });
    let mut events = vec![Event::RunStarted {
        run_id,
        schema_major: SCHEMA_MAJOR,
        schema_minor: SCHEMA_MINOR,
        config_name: "tensorboard-import".into(),
        config,
        phases: plan,
        device: "-".into(),
        seed: 0,
        started_at,
        resumed_from_step: None,
        parent_run: None,
        branch_step: None,
    }];
    let mut next_phase = phases.into_iter().peekable();
    let mut phase: Option<String> = None;
    let mut i = 0;
    loop {
        let step = points.get(i).map(|p| p.step);
        // Phase changes up to this step (all that remain once the points are done).
        while let Some((s, _, _)) = next_phase.peek()
            && step.is_none_or(|st| *s <= st)
        {
            let (s, to, cause) = next_phase.next().expect("peeked");
            if phase.as_deref() != Some(to.as_str()) {
                events.push(Event::PhaseChanged { step: s, from: phase.take(), to: to.clone(), cause, detail: None });
                phase = Some(to);
            }
        }
        let Some(step) = step else { break };
        let mut metrics = Metrics::new();
        let wall = points[i].wall;
        while let Some(p) = points.get(i).filter(|p| p.step == step) {
            metrics.insert(names[p.tag as usize].clone(), p.value);
            i += 1;
        }
        let phase_name = phase.clone().unwrap_or_else(|| IMPORTED_PHASE.to_string());
        events.push(Event::Step { step, phase: phase_name, t: wall, metrics });
    }
    events.push(Event::RunEnded {
        step: last_step,
        status: RunStatus::Completed,
        message: format!("imported from {}", src.display()),
    });
    events
}

/// Steps per message from the detector thread.
const DETECTOR_BATCH: usize = 1024;

/// Writes the run directory; returns the number of signals. The detectors run on their
/// own thread while the log is encoded (the change-point detector, ~15 µs a point, is
/// most of an import's time); each signal goes into the log right after its step.
fn write_run(run_dir: &Path, events: &[Event]) -> Result<usize> {
    let (dir, _lock) = RunDir::create(run_dir, false)?;
    let Some(Event::RunStarted { run_id, started_at, .. }) = events.first() else { unreachable!("built first") };
    let last = events.last().and_then(Event::step).unwrap_or(0);
    dir.write_meta(&RunMeta {
        run_id: run_id.clone(),
        config_name: "tensorboard-import".into(),
        seed: 0,
        max_steps: last,
        created_at: *started_at,
        source_path: None,
        parent: None,
        scheduled_switch: None,
        init: None,
        job: None,
    })?;
    let log = dir.log();
    let mut w = Writer::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let steps: Vec<(u64, &Metrics)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, metrics, .. } => Some((*step, metrics)),
            _ => None,
        })
        .collect();
    let signals = std::thread::scope(|scope| -> Result<usize> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Event>)>(16);
        let steps = &steps;
        scope.spawn(move || {
            let mut bank = crate::rules::default_bank();
            for (i, chunk) in steps.chunks(DETECTOR_BATCH).enumerate() {
                let fired: Vec<Event> =
                    chunk.iter().flat_map(|(step, m)| bank.push_all(*step, m)).map(|s| s.to_event()).collect();
                // The writer hung up (a write failed): stop.
                if tx.send((i * DETECTOR_BATCH + chunk.len(), fired)).is_err() {
                    return;
                }
            }
        });
        let (mut covered, mut pending, mut seen, mut written) = (0usize, std::collections::VecDeque::new(), 0usize, 0);
        for ev in events {
            w.append(ev).with_context(|| format!("cannot write {}", log.display()))?;
            let Event::Step { step, .. } = ev else { continue };
            seen += 1;
            while covered < seen {
                let (upto, fired) = rx.recv().expect("the detector thread covers every step");
                covered = upto;
                pending.extend(fired);
            }
            while let Some(sig) = pending.front().filter(|s| s.step().is_some_and(|s| s <= *step)) {
                w.append(sig).with_context(|| format!("cannot write {}", log.display()))?;
                pending.pop_front();
                written += 1;
            }
        }
        Ok(written)
    })?;
    w.sync().with_context(|| format!("cannot write {}", log.display()))?;
    Ok(signals)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_tags_map_only_when_clear() {
        for (tag, want) in [
            ("loss", Some("train_loss")),
            ("train/loss", Some("train_loss")),
            ("Loss/train", Some("train_loss")),
            ("train_loss", Some("train_loss")),
            ("val/accuracy", Some("val_acc")),
            ("Accuracy/validation", Some("val_acc")),
            ("eval_loss", Some("val_loss")),
            ("learning_rate", Some("lr")),
            ("train/lr", Some("lr")),
            ("test/loss", None),
            ("loss/aux", None),
            ("val/lr", None),
            ("my/deep/loss", None),
        ] {
            assert_eq!(metric_name(tag), want, "{tag}");
        }
        let tags: Vec<String> = ["loss", "train/loss", "val/acc", "other"].map(String::from).to_vec();
        assert_eq!(metric_names(&tags), vec!["loss", "train/loss", "val_acc", "other"]);
    }

    #[test]
    fn phase_texts_from_export_parse_back() {
        assert_eq!(parse_phase("main (from warm, scheduled)"), ("main".into(), PhaseCause::Scheduled));
        assert_eq!(parse_phase("cool (from main, rule: plateau(x))"), ("cool".into(), PhaseCause::Rule));
        assert_eq!(parse_phase("warm (from -, start)"), ("warm".into(), PhaseCause::Start));
        assert_eq!(parse_phase("plain"), ("plain".into(), PhaseCause::Scheduled));
    }
}
