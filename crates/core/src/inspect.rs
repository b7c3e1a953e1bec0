//! `phasetop inspect`: a run summarised from its log. [`Summary::from_contents`] is a pure
//! fold over the records; its JSON (`inspect --json`) is a contract scripts rely on:
//! `run_id`, `config_name`, `device`, `seed`, `status`, `end_message`, `last_step`,
//! `records`, `corrupt_records`, `metrics`, `final_metrics`, `phases`, `commands`,
//! `checkpoints`, `signals`, `suggestions`, `resumes`, `problems`, `parent`
//! (`{run_id, run_dir, branch_step}` for a run made by `phasetop branch`, else null).
//! Each suggestion has `step, id, to_phase, because, state, resolved_step`: `state` is
//! `pending`, `accepted`, `dismissed` (an applied `ctl accept`/`dismiss`, by id or the
//! newest pending), or `expired` (a phase change or a restart before an answer: the host
//! drops pending suggestions then).
//!
//! Rules:
//! - `status` is the status of the last `RunEnded` when it comes after the last
//!   `RunStarted`, else `unknown`; [`Summary::with_host`] turns that into `running`
//!   when the host answers, and `failed` (with `end_message` saying so) when no process
//!   holds the run any more: its host exited without recording an end.
//! - A resume (`RunStarted` with `resumed_from_step: s`) supersedes what the earlier
//!   incarnation logged after step `s`: its events with a step after `s` are ignored
//!   (phases that started after `s`, commands, checkpoints, signals, suggestions, metric
//!   values), and the phase containing `s` is reopened.
//! - `last_step` is the latest step of any event after the last `RunStarted`; when there
//!   is none yet, the latest before it (no later than `s` for a resume).
//! - A phase ends where the next begins, or at the `RunEnded` step; the open phase of a
//!   run that has not ended has `end_step: null`.

use crate::event::{Event, RunStatus};
use crate::rundir::{HOST_GONE, HostState, ParentRef, RunMeta};
use crate::runlog::{self, LogContents, LogError, Problem};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseRow {
    pub name: String,
    pub start_step: u64,
    pub end_step: Option<u64>,
    /// Why it began: start, scheduled, manual, rule, suggestion.
    pub cause: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CommandRow {
    pub step: u64,
    /// As the operator would type it: `switch main`, `set lr=0.001`.
    pub command: String,
    pub applied: bool,
    pub client: String,
    /// The host's answer (why it was refused, or what it did).
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SignalRow {
    pub step: u64,
    pub detector: String,
    pub metric: String,
    pub score: f64,
}

/// `state` is `pending`, `accepted`, `dismissed`, or `expired` (the phase changed, or
/// the run restarted, before the operator answered: the host drops it then); see
/// [`crate::history`].
pub type SuggestionRow = crate::history::Suggestion;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub config_name: String,
    pub device: String,
    pub seed: Option<u64>,
    /// running, completed, stopped, failed, diverged, or unknown.
    pub status: String,
    /// The last `RunEnded` message, when the run has ended.
    pub end_message: Option<String>,
    pub last_step: u64,
    /// Good records.
    pub records: usize,
    /// Damaged spans (one per span).
    pub corrupt_records: usize,
    /// Metric names seen in Step and Eval events, sorted.
    pub metrics: Vec<String>,
    /// The last value of each metric (null for a non-finite value).
    pub final_metrics: BTreeMap<String, f64>,
    pub phases: Vec<PhaseRow>,
    pub commands: Vec<CommandRow>,
    pub checkpoints: Vec<u64>,
    pub signals: Vec<SignalRow>,
    pub suggestions: Vec<SuggestionRow>,
    /// The step each resume continued from, in order.
    pub resumes: Vec<u64>,
    pub problems: Vec<Problem>,
    /// The run this one branched from. The log names its id and step; `run_dir` comes
    /// from `run.json` ([`Summary::with_meta`]) and is empty without it.
    pub parent: Option<ParentRef>,
    /// A branch's `--at` STEP when it is past the checkpoint it started from (its
    /// `--switch` is there: the steps before repeat the parent's); from `run.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branched_at: Option<u64>,
    /// What an external job said about itself at `init` (null/empty otherwise).
    pub job_config: serde_json::Value,
    pub tags: Vec<String>,
    pub notes: Option<String>,
    pub group: Option<String>,
    /// The run's final figures (`run.summary`), key → value.
    pub summary: BTreeMap<String, serde_json::Value>,
}

pub use crate::history::superseded_after;
use crate::history::{Supersession, cutoffs};

/// The fold over a log's events in order, skipping those a later resume superseded.
struct Folder {
    current: Supersession,
    fold: Fold,
}

impl Folder {
    fn new(cutoff: Vec<Option<u64>>) -> Folder {
        Folder { current: Supersession::new(cutoff), fold: Fold::default() }
    }

    fn push(&mut self, event: &Event) {
        if self.current.keeps(event) {
            self.fold.apply(event);
        }
    }
}

impl Summary {
    /// Reads the log at `path` and summarises it, streaming, so memory is bounded by the
    /// summary, not by the log (a 10⁷-record log would take gigabytes as events). A run
    /// that was resumed is folded a second time, once the resume points are known.
    pub fn load(path: &Path) -> Result<Summary, LogError> {
        let (summary, resumes) = Summary::stream(path, Vec::new())?;
        if resumes.iter().all(Option::is_none) {
            return Ok(summary);
        }
        // A resumed run: fold again, now knowing which events each resume superseded.
        Ok(Summary::stream(path, cutoffs(resumes))?.0)
    }

    /// One streaming fold of the log at `path` with the given cutoffs; also returns
    /// every start's `resumed_from_step`, in order.
    fn stream(path: &Path, cutoff: Vec<Option<u64>>) -> Result<(Summary, Vec<Option<u64>>), LogError> {
        let mut folder = Folder::new(cutoff);
        let (mut records, mut problems, mut resumes) = (0, Vec::new(), Vec::new());
        for item in runlog::Reader::open(path)? {
            match item {
                Ok(r) => {
                    records += 1;
                    if let Event::RunStarted { resumed_from_step, .. } = &r.event {
                        resumes.push(*resumed_from_step);
                    }
                    folder.push(&r.event);
                }
                Err(p) => problems.push(p),
            }
        }
        Ok((folder.fold.finish(records, problems), resumes))
    }

    /// Summarises a log's contents (pure).
    pub fn from_contents(contents: &LogContents) -> Summary {
        let mut folder = Folder::new(superseded_after(contents.records.iter().map(|r| &r.event)));
        for r in &contents.records {
            folder.push(&r.event);
        }
        folder.fold.finish(contents.records.len(), contents.problems.clone())
    }

    /// A run whose log has not ended: `running` when its host answers, `failed` when
    /// no process holds the run any more (the host died before recording an end: what
    /// it recorded stands), else still `unknown`.
    pub fn with_host(mut self, host: HostState) -> Self {
        if self.status == "unknown" {
            match host {
                HostState::Answering => self.status = RunStatus::Running.as_str().to_string(),
                HostState::Gone => {
                    self.status = RunStatus::Failed.as_str().to_string();
                    self.end_message = Some(HOST_GONE.to_string());
                }
                HostState::Silent => {}
            }
        }
        self
    }

    /// Takes the parent's run directory from the run's `run.json`.
    pub fn with_meta(mut self, meta: Option<&RunMeta>) -> Self {
        if let Some(p) = meta.and_then(|m| m.parent.clone()) {
            self.branched_at = meta.and_then(RunMeta::branched_at).filter(|at| *at != p.branch_step);
            self.parent = Some(p);
        }
        self
    }

    /// The summary as `phasetop inspect` prints it.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let or_dash = |v: &str| if v.is_empty() { "-".to_string() } else { v.to_string() };
        let _ = writeln!(s, "run          {}", or_dash(&self.run_id));
        let seed = self.seed.map_or("-".to_string(), |v| v.to_string());
        let _ =
            writeln!(s, "config       {}   device {}   seed {seed}", or_dash(&self.config_name), or_dash(&self.device));
        let mut status = format!("{} at step {}", self.status, self.last_step);
        if let Some(m) = self.end_message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(status, " ({m})");
        }
        let _ = writeln!(s, "status       {status}");
        if let Some(p) = &self.parent {
            let dir = if p.run_dir.is_empty() { String::new() } else { format!(" ({})", p.run_dir) };
            let _ = match self.branched_at {
                Some(at) => writeln!(
                    s,
                    "branched     from {} at step {at}{dir} (from its checkpoint at step {}, switching at {at})",
                    p.run_id, p.branch_step
                ),
                None => writeln!(s, "branched     from {} at step {}{dir}", p.run_id, p.branch_step),
            };
        }
        if !self.resumes.is_empty() {
            let list: Vec<String> = self.resumes.iter().map(u64::to_string).collect();
            let _ = writeln!(s, "resumed from step {}", list.join(", "));
        }
        let _ = writeln!(s, "records      {} good, {} damaged", self.records, self.corrupt_records);
        if !self.tags.is_empty() {
            let _ = writeln!(s, "tags         {}", self.tags.join(", "));
        }
        if let Some(g) = &self.group {
            let _ = writeln!(s, "group        {g}");
        }
        if let Some(n) = &self.notes {
            let _ = writeln!(s, "notes        {n}");
        }
        if !self.job_config.is_null() {
            let _ = writeln!(s, "job config   {}", self.job_config);
        }
        if !self.summary.is_empty() {
            let _ = writeln!(s, "\nsummary");
            let w = self.summary.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, v) in &self.summary {
                let _ = writeln!(s, "  {k:<w$}  {v}");
            }
        }

        if !self.phases.is_empty() {
            let _ = writeln!(s, "\nphases");
            let w = self.phases.iter().map(|p| p.name.chars().count()).max().unwrap_or(0);
            for p in &self.phases {
                let end = p.end_step.map_or("…".to_string(), |e| e.to_string());
                let _ = writeln!(s, "  {:<w$}  {:>8} → {:<8}  {}", p.name, p.start_step, end, p.cause);
            }
        }
        if !self.final_metrics.is_empty() {
            let _ = writeln!(s, "\nfinal metrics");
            let w = self.final_metrics.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (k, v) in &self.final_metrics {
                let _ = writeln!(s, "  {k:<w$}  {}", fmt_value(*v));
            }
        }
        if !self.commands.is_empty() {
            let _ = writeln!(s, "\ncommands");
            for c in &self.commands {
                let verdict = if c.applied { "applied" } else { "refused" };
                let msg = if c.message.is_empty() { String::new() } else { format!(": {}", c.message) };
                let _ = writeln!(s, "  step {:>8}  {:<20} {verdict}{msg}", c.step, c.command);
            }
        }
        if !self.checkpoints.is_empty() {
            let list: Vec<String> = self.checkpoints.iter().map(u64::to_string).collect();
            let _ = writeln!(s, "\ncheckpoints  {}", list.join(", "));
        }
        if !self.suggestions.is_empty() {
            let _ = writeln!(s, "\nsuggestions");
            for g in &self.suggestions {
                let when = g.resolved_step.map(|r| format!(" at step {r}")).unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  step {:>8}  #{} → {} ({}{when}): {}",
                    g.step,
                    g.id,
                    g.to_phase,
                    g.state.as_str(),
                    g.because
                );
            }
        }
        if !self.signals.is_empty() {
            const SHOWN: usize = 10;
            let n = self.signals.len();
            let more = if n > SHOWN { format!(" (last {SHOWN} of {n})") } else { String::new() };
            let _ = writeln!(s, "\nsignals{more}");
            for g in &self.signals[n.saturating_sub(SHOWN)..] {
                let _ =
                    writeln!(s, "  step {:>8}  {} on {}  score {}", g.step, g.detector, g.metric, fmt_value(g.score));
            }
        }
        if !self.problems.is_empty() {
            let _ = writeln!(s, "\nlog damage (records in these spans were skipped)");
            for p in &self.problems {
                let _ = writeln!(s, "  {p}");
            }
        }
        s
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render_text())
    }
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        format!("{v}")
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        format!("{v:.6}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[derive(Default)]
struct Fold {
    /// The run's timeline: the core's one fold, shared with the dashboard's `RunView`.
    timeline: crate::timeline::Timeline,
    /// Latest step since the last RunStarted, and before it (superseded events are
    /// never applied).
    seg_last: Option<u64>,
    prev_last: Option<u64>,
    metrics: BTreeSet<String>,
    final_metrics: BTreeMap<String, f64>,
    commands: Vec<CommandRow>,
    signals: Vec<SignalRow>,
    parent: Option<ParentRef>,
}

impl Fold {
    fn see_metric(&mut self, name: &str, value: f64) {
        if !self.metrics.contains(name) {
            self.metrics.insert(name.to_string());
        }
        match self.final_metrics.get_mut(name) {
            Some(slot) => *slot = value,
            None => {
                self.final_metrics.insert(name.to_string(), value);
            }
        }
    }

    fn apply(&mut self, ev: &Event) {
        self.timeline.apply(ev);
        if let Some(step) = ev.step() {
            self.seg_last = Some(self.seg_last.map_or(step, |s| s.max(step)));
        }
        match ev {
            Event::RunStarted { resumed_from_step, parent_run, branch_step, .. } => {
                if let (None, Some(parent), Some(step)) = (&self.parent, parent_run, branch_step) {
                    self.parent =
                        Some(ParentRef { run_id: parent.clone(), run_dir: String::new(), branch_step: *step });
                }
                if let Some(s) = self.seg_last.take() {
                    self.prev_last = Some(s);
                }
                if let Some(s) = *resumed_from_step {
                    self.prev_last = Some(self.prev_last.map_or(s, |p| p.min(s)));
                }
            }
            Event::Step { metrics, .. } | Event::Eval { metrics, .. } => {
                for (k, v) in metrics {
                    self.see_metric(k, *v);
                }
            }
            Event::Probe { layer, metrics, .. } => {
                for (k, v) in metrics {
                    self.see_metric(&format!("{layer}/{k}"), *v);
                }
            }
            Event::Signal { step, detector, metric, score, .. } => self.signals.push(SignalRow {
                step: *step,
                detector: detector.clone(),
                metric: metric.clone(),
                score: *score,
            }),
            Event::Command { step, client, command, applied, message, .. } => self.commands.push(CommandRow {
                step: *step,
                command: command.to_string(),
                applied: *applied,
                client: client.clone(),
                message: message.clone(),
            }),
            _ => {}
        }
    }

    fn finish(self, records: usize, problems: Vec<Problem>) -> Summary {
        let t = self.timeline;
        let (status, end_message) = match t.ended {
            Some(st) => (st.as_str().to_string(), t.end_message),
            None => ("unknown".to_string(), None),
        };
        let phases = t
            .phases
            .into_iter()
            .map(|p| PhaseRow { name: p.name, start_step: p.start, end_step: p.end, cause: p.cause })
            .collect();
        Summary {
            run_id: t.run_id,
            config_name: t.config_name,
            device: t.device,
            seed: t.seed,
            status,
            end_message,
            last_step: self.seg_last.or(self.prev_last).unwrap_or(0),
            records,
            corrupt_records: problems.len(),
            metrics: self.metrics.into_iter().collect(),
            final_metrics: self.final_metrics,
            phases,
            commands: self.commands,
            checkpoints: t.checkpoints,
            signals: self.signals,
            suggestions: t.suggestions.all,
            resumes: t.resumes,
            problems,
            parent: self.parent,
            branched_at: None,
            job_config: t.job_config,
            tags: t.tags,
            notes: Some(t.notes).filter(|n| !n.is_empty()),
            group: t.group,
            summary: t.summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Command, LogLevel, Metrics, PhaseCause};
    use crate::runlog::{ProblemKind, Record};

    fn started(resumed: Option<u64>) -> Event {
        Event::RunStarted {
            run_id: "r1".into(),
            schema_major: 1,
            schema_minor: 0,
            config_name: "demo".into(),
            config: serde_json::json!({}),
            phases: vec!["warmup".into(), "main".into(), "cool".into()],
            device: "cpu".into(),
            seed: 7,
            started_at: 0.0,
            resumed_from_step: resumed,
            parent_run: None,
            branch_step: None,
        }
    }

    fn step(step: u64, loss: f64) -> Event {
        let metrics: Metrics = [("train_loss".to_string(), loss), ("lr".to_string(), 0.1)].into();
        Event::Step { step, phase: "x".into(), t: 0.0, metrics }
    }

    fn phase(step: u64, to: &str, cause: PhaseCause) -> Event {
        Event::PhaseChanged { step, from: None, to: to.into(), cause, detail: None }
    }

    fn ended(step: u64, status: RunStatus) -> Event {
        Event::RunEnded { step, status, message: "done".into() }
    }

    fn cmd(step: u64, command: Command, applied: bool) -> Event {
        Event::Command { step, t: 0.0, client: "ctl".into(), command, applied, message: String::new() }
    }

    fn summarize(events: Vec<Event>) -> Summary {
        let records = events.into_iter().enumerate().map(|(i, event)| Record { offset: i as u64, event }).collect();
        Summary::from_contents(&LogContents { schema_major: 1, schema_minor: 0, records, problems: vec![] })
    }

    fn phase_tuples(s: &Summary) -> Vec<(&str, u64, Option<u64>, &str)> {
        s.phases.iter().map(|p| (p.name.as_str(), p.start_step, p.end_step, p.cause.as_str())).collect()
    }

    #[test]
    fn a_branch_names_its_parent_and_a_resume_keeps_it() {
        let mut first = started(None);
        if let Event::RunStarted { parent_run, branch_step, .. } = &mut first {
            (*parent_run, *branch_step) = (Some("p".into()), Some(40));
        }
        let s = summarize(vec![first, step(41, 1.0), started(Some(41)), step(42, 0.5)]);
        let want = ParentRef { run_id: "p".into(), run_dir: String::new(), branch_step: 40 };
        assert_eq!(s.parent, Some(want.clone()));
        assert!(s.render_text().contains("branched     from p at step 40\n"));
        let meta = RunMeta {
            run_id: "c".into(),
            config_name: "x".into(),
            seed: 1,
            max_steps: 9,
            created_at: 0.0,
            source_path: None,
            parent: Some(ParentRef { run_dir: "/runs/p".into(), ..want }),
            scheduled_switch: None,
            init: None,
            job: None,
        };
        assert_eq!(s.with_meta(Some(&meta)).parent.unwrap().run_dir, "/runs/p");
        assert_eq!(serde_json::to_value(summarize(vec![started(None)])).unwrap()["parent"], serde_json::Value::Null);
    }

    #[test]
    fn empty_log_is_unknown() {
        let s = summarize(vec![]);
        assert_eq!(s.status, "unknown");
        assert_eq!(s.last_step, 0);
        assert_eq!(s.seed, None);
        assert!(s.phases.is_empty());
        assert_eq!(s.clone().with_host(HostState::Answering).status, "running");
    }

    #[test]
    fn completed_run() {
        let s = summarize(vec![
            started(None),
            phase(0, "warmup", PhaseCause::Start),
            step(1, 2.0),
            step(2, 1.5),
            phase(2, "main", PhaseCause::Scheduled),
            Event::Checkpoint { step: 2, path: "c/2".into() },
            step(3, 1.0),
            Event::Eval { step: 3, split: "val".into(), metrics: [("val_loss".to_string(), 1.2)].into() },
            ended(3, RunStatus::Completed),
        ]);
        assert_eq!(s.status, "completed");
        assert_eq!(s.end_message.as_deref(), Some("done"));
        assert_eq!(s.run_id, "r1");
        assert_eq!(s.config_name, "demo");
        assert_eq!(s.device, "cpu");
        assert_eq!(s.seed, Some(7));
        assert_eq!(s.last_step, 3);
        assert_eq!(s.records, 9);
        assert_eq!(s.metrics, vec!["lr", "train_loss", "val_loss"]);
        assert_eq!(s.final_metrics["train_loss"], 1.0);
        assert_eq!(s.final_metrics["val_loss"], 1.2);
        assert_eq!(s.checkpoints, vec![2]);
        assert_eq!(phase_tuples(&s), vec![("warmup", 0, Some(2), "start"), ("main", 2, Some(3), "scheduled")]);
        // with_host never overrides a known status.
        assert_eq!(s.clone().with_host(HostState::Answering).status, "completed");
        let gone = s.with_host(HostState::Gone);
        assert_eq!((gone.status.as_str(), gone.end_message.as_deref()), ("completed", Some("done")));
    }

    #[test]
    fn status_rules() {
        // No RunEnded: unknown, open phase.
        let s = summarize(vec![started(None), phase(0, "warmup", PhaseCause::Start), step(5, 1.0)]);
        assert_eq!(s.status, "unknown");
        assert_eq!(s.phases[0].end_step, None);
        assert_eq!(s.clone().with_host(HostState::Silent).status, "unknown");
        assert_eq!(s.clone().with_host(HostState::Answering).status, "running");
        // Nobody holds the run: its host died without an end; what it logged stands.
        let gone = s.with_host(HostState::Gone);
        assert_eq!((gone.status.as_str(), gone.end_message.as_deref()), ("failed", Some(HOST_GONE)));
        assert_eq!((gone.last_step, gone.phases.len()), (5, 1));
        // A RunEnded before the last RunStarted does not count.
        let s =
            summarize(vec![started(None), step(5, 1.0), ended(5, RunStatus::Stopped), started(Some(5)), step(6, 1.0)]);
        assert_eq!(s.status, "unknown");
        assert_eq!(s.end_message, None);
        // The last RunEnded wins.
        let s = summarize(vec![
            started(None),
            ended(5, RunStatus::Stopped),
            started(Some(5)),
            ended(9, RunStatus::Diverged),
        ]);
        assert_eq!(s.status, "diverged");
        for (st, name) in [(RunStatus::Failed, "failed"), (RunStatus::Completed, "completed")] {
            assert_eq!(summarize(vec![started(None), ended(1, st)]).status, name);
        }
    }

    #[test]
    fn resume_supersedes_later_steps() {
        let s = summarize(vec![
            started(None),
            phase(0, "warmup", PhaseCause::Start),
            step(100, 3.0),
            Event::Checkpoint { step: 100, path: "c".into() },
            phase(150, "main", PhaseCause::Scheduled),
            Event::Checkpoint { step: 150, path: "c".into() },
            cmd(160, Command::Switch { phase: "cool".into() }, true),
            phase(160, "cool", PhaseCause::Manual),
            step(180, 9.0),
            // Killed at 180 without RunEnded; resumed from the checkpoint at 150.
            started(Some(150)),
        ]);
        assert_eq!(s.resumes, vec![150]);
        assert_eq!(phase_tuples(&s), vec![("warmup", 0, Some(150), "start"), ("main", 150, None, "scheduled")]);
        assert!(s.commands.is_empty());
        assert_eq!(s.checkpoints, vec![100, 150]);
        assert_eq!(s.final_metrics["train_loss"], 3.0);
        // No step logged since the resume: the resume point, not the superseded 180.
        assert_eq!(s.last_step, 150);
        assert_eq!(s.status, "unknown");
    }

    #[test]
    fn resume_reopens_the_phase_containing_the_resume_step() {
        let s = summarize(vec![
            started(None),
            phase(0, "warmup", PhaseCause::Start),
            phase(100, "main", PhaseCause::Scheduled),
            step(250, 1.0),
            phase(300, "cool", PhaseCause::Scheduled),
            step(400, 0.5),
            ended(400, RunStatus::Stopped),
            started(Some(200)),
            step(201, 0.9),
            step(202, 0.8),
            phase(260, "cool", PhaseCause::Manual),
            step(261, 0.7),
        ]);
        assert_eq!(
            phase_tuples(&s),
            vec![
                ("warmup", 0, Some(100), "start"),
                ("main", 100, Some(260), "scheduled"),
                ("cool", 260, None, "manual")
            ]
        );
        assert_eq!(s.last_step, 261);
        assert_eq!(s.final_metrics["train_loss"], 0.7);
        assert_eq!(s.status, "unknown");
    }

    /// A run resumed from 150, then (its checkpoints lost) from 120.
    fn two_resumes() -> Vec<Event> {
        vec![
            started(None),
            phase(0, "warmup", PhaseCause::Start),
            phase(100, "main", PhaseCause::Scheduled),
            step(180, 9.0),
            started(Some(150)),
            step(160, 5.0),
            phase(170, "cool", PhaseCause::Manual),
            // The second incarnation's checkpoints were lost: back to 120.
            started(Some(120)),
            step(121, 4.0),
        ]
    }

    #[test]
    fn two_resumes_use_the_earliest_later_resume_point() {
        let s = summarize(two_resumes());
        assert_eq!(s.resumes, vec![150, 120]);
        assert_eq!(phase_tuples(&s), vec![("warmup", 0, Some(100), "start"), ("main", 100, None, "scheduled")]);
        assert_eq!(s.last_step, 121);
        assert_eq!(s.final_metrics["train_loss"], 4.0);
    }

    #[test]
    fn streaming_load_equals_the_in_memory_fold_on_a_resumed_damaged_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.log");
        let mut w = runlog::Writer::create(&path).unwrap();
        w.set_compact_steps(false); // JSON, so that the damage below finds its step's text
        let mut events = two_resumes();
        events.push(ended(121, RunStatus::Completed));
        for e in &events {
            w.append(e).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        // Damage one record in the middle (the first resume's step 160).
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(3).position(|w| w == b"160").unwrap();
        bytes[at] = b'7';
        std::fs::write(&path, &bytes).unwrap();
        let streamed = Summary::load(&path).unwrap();
        let folded = Summary::from_contents(&runlog::read_all(&path).unwrap());
        assert_eq!(streamed.corrupt_records, 1);
        assert_eq!(streamed.records, events.len() - 1);
        assert_eq!(serde_json::to_value(&streamed).unwrap(), serde_json::to_value(&folded).unwrap());
        assert_eq!(streamed.last_step, 121);
        assert_eq!(streamed.resumes, vec![150, 120]);
    }

    #[test]
    fn resume_after_a_completed_run_reopens_the_last_phase() {
        let s = summarize(vec![
            started(None),
            phase(0, "main", PhaseCause::Start),
            step(10, 1.0),
            ended(10, RunStatus::Completed),
            started(Some(10)),
            Event::Log { step: 10, level: LogLevel::Info, message: "resumed".into() },
        ]);
        assert_eq!(phase_tuples(&s), vec![("main", 0, None, "start")]);
        assert_eq!(s.status, "unknown");
        assert_eq!(s.last_step, 10);
    }

    #[test]
    fn commands_keep_display_and_applied() {
        let s = summarize(vec![
            started(None),
            cmd(3, Command::Set { key: "lr".into(), value: 0.001 }, true),
            cmd(4, Command::Switch { phase: "nope".into() }, false),
            cmd(5, Command::Accept { id: Some(2) }, true),
            cmd(6, Command::Pause, true),
        ]);
        let got: Vec<(u64, &str, bool)> = s.commands.iter().map(|c| (c.step, c.command.as_str(), c.applied)).collect();
        assert_eq!(
            got,
            vec![(3, "set lr=0.001", true), (4, "switch nope", false), (5, "accept 2", true), (6, "pause", true)]
        );
        assert_eq!(s.last_step, 6);
    }

    #[test]
    fn signals_suggestions_and_problems() {
        let mut contents = LogContents {
            schema_major: 1,
            schema_minor: 0,
            records: vec![
                Record { offset: 16, event: started(None) },
                Record {
                    offset: 100,
                    event: Event::Signal {
                        step: 40,
                        detector: "plateau".into(),
                        metric: "train_loss".into(),
                        score: 0.9,
                        message: "flat".into(),
                        figures: Default::default(),
                    },
                },
                Record {
                    offset: 200,
                    event: Event::Suggestion { step: 41, id: 1, to_phase: "main".into(), because: "plateau".into() },
                },
            ],
            problems: vec![],
        };
        contents.problems.push(Problem { offset: 300, kind: ProblemKind::TornTail, detail: "cut".into() });
        let s = Summary::from_contents(&contents);
        assert_eq!(s.corrupt_records, 1);
        assert_eq!(s.records, 3);
        assert_eq!(
            s.signals,
            vec![SignalRow { step: 40, detector: "plateau".into(), metric: "train_loss".into(), score: 0.9 }]
        );
        assert_eq!(s.suggestions[0].to_phase, "main");
        assert_eq!((s.suggestions[0].state.as_str(), s.suggestions[0].resolved_step), ("pending", None));
        let text = s.render_text();
        assert!(text.contains("torn_tail"), "{text}");
        assert!(text.contains("plateau"), "{text}");
    }

    #[test]
    fn suggestions_record_what_became_of_them() {
        use crate::event::Command;
        let suggestion = |step, id| Event::Suggestion { step, id, to_phase: "main".into(), because: "plateau".into() };
        let command = |step, command| Event::Command {
            step,
            t: 0.0,
            client: "socket#0".into(),
            command,
            applied: true,
            message: String::new(),
        };
        let events = [
            started(None),
            suggestion(10, 1),
            command(12, Command::Dismiss { id: Some(1) }),
            suggestion(20, 2),
            Event::PhaseChanged {
                step: 25,
                from: Some("warm".into()),
                to: "mid".into(),
                cause: PhaseCause::Scheduled,
                detail: None,
            },
            suggestion(30, 3),
            command(31, Command::Accept { id: None }),
            suggestion(40, 4),
        ];
        let contents = LogContents {
            schema_major: 1,
            schema_minor: 0,
            records: events.into_iter().enumerate().map(|(i, event)| Record { offset: 16 + i as u64, event }).collect(),
            problems: vec![],
        };
        let s = Summary::from_contents(&contents);
        let states: Vec<(u64, &str, Option<u64>)> =
            s.suggestions.iter().map(|g| (g.id, g.state.as_str(), g.resolved_step)).collect();
        assert_eq!(
            states,
            [(1, "dismissed", Some(12)), (2, "expired", Some(25)), (3, "accepted", Some(31)), (4, "pending", None)]
        );
        assert!(s.render_text().contains("#1 → main (dismissed at step 12)"), "{}", s.render_text());
    }

    #[test]
    fn json_contract_keys() {
        let s = summarize(vec![
            started(None),
            phase(0, "warmup", PhaseCause::Start),
            step(1, f64::NAN),
            cmd(1, Command::Stop, true),
            ended(1, RunStatus::Stopped),
        ]);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "run_id",
            "status",
            "last_step",
            "records",
            "corrupt_records",
            "metrics",
            "phases",
            "commands",
            "checkpoints",
            "config_name",
            "device",
            "seed",
            "problems",
            "final_metrics",
            "signals",
            "suggestions",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["status"], "stopped");
        assert_eq!(
            v["phases"][0],
            serde_json::json!({"name": "warmup", "start_step": 0, "end_step": 1, "cause": "start"})
        );
        assert_eq!(
            v["commands"][0],
            serde_json::json!({"step": 1, "command": "stop", "applied": true, "client": "ctl", "message": ""})
        );
        assert!(v["final_metrics"]["train_loss"].is_null());
        let text = s.render_text();
        assert!(text.contains("stopped at step 1"), "{text}");
        assert!(text.contains("warmup"), "{text}");
    }

    #[test]
    fn open_phase_has_null_end_in_json() {
        let s = summarize(vec![started(None), phase(0, "warmup", PhaseCause::Start)]);
        let v = serde_json::to_value(&s).unwrap();
        assert!(v["phases"][0]["end_step"].is_null());
    }
}
