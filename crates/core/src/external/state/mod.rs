//! The external run's state, without I/O but the run log: what the job sent (points,
//! probes, checkpoints), the phase plan and its rules (`rules::SignalState`),
//! the operators' commands, and the `control` answer to each `sync`. The server
//! (`external::host`) owns one behind a mutex and calls it per frame.
//!
//! A phase change is recorded at the step at which every rank applies it: `ctl switch`,
//! an accepted suggestion, an `auto` rule and a finished `steps` count all wait for the
//! job's next sync. A protocol-1 client applies an answer at once, so the change is
//! logged at the step of the sync that delivers it. A protocol-2 client (python/phasetop)
//! reads each answer one sync later and applies it at its next meeting of the ranks, so
//! the change is *in flight* until a sync says `applied: STEP`; it is logged then, at
//! that step, and nothing else switches meanwhile (docs/CLIENT.md).

use super::protocol::{self, Control, JobFrame, Point};
use crate::config::external::ExternalConfig;
use crate::control::{Reply, Status};
use crate::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus};
use crate::rules::SignalState;
use crate::rundir::now_unix;
use crate::session::{Decision, Delivery, Effect, Position, Session, SetKeys, Switch};
use std::time::Instant;

// Operators' commands and plan edits; the tests.
mod commands;
#[cfg(test)]
mod tests;
use commands::run_info;

/// Errors kept for the next `sync` (later ones are counted).
const MAX_ERRORS: usize = 64;
/// Rejected frames described in the log one by one (later ones are counted).
const LOGGED_REJECTIONS: u64 = 20;

/// Receives each event as it is written (the headless printer).
pub type Printer = Box<dyn FnMut(&Event) + Send>;

pub struct State {
    log: crate::session::RunLog,
    pub cfg: ExternalConfig,
    run_id: String,
    phase: usize,
    phase_start: u64,
    /// The phase before the last change: steps up to `phase_start` trained in it, and
    /// their points can arrive after the change is logged (they come on another
    /// connection than the sync that applied it), so they are labelled with it.
    prev_phase: Option<String>,
    /// The newest step the job has reported (log or sync).
    pub step: u64,
    /// Commands, the rule and its suggestions, `set` keys: shared with the built-in host.
    session: Session,
    /// Who asked the job to stop, and when.
    pub stop: Option<(String, Instant)>,
    /// Why the plan itself ends the job (`max_steps`, the last phase's `steps`).
    pub plan_done: Option<String>,
    checkpoint_asked: bool,
    pending_switch: Option<Switch>,
    /// A switch delivered to a protocol-2 client and not yet applied (see the module doc).
    in_flight: Option<Switch>,
    /// The newest step each rank's points reported, and the points refused for going back.
    newest: std::collections::HashMap<u32, u64>,
    backwards: u64,
    /// The job's rank 0 speaks protocol 2: phase changes are logged when it says `applied`.
    acks: bool,
    pending_set: serde_json::Map<String, serde_json::Value>,
    errors: Vec<String>,
    errors_lost: u64,
    /// Points the client reported dropped: in all, and not yet noted in the log.
    pub dropped: u64,
    dropped_unlogged: u64,
    pub rejected: u64,
    /// A step's points merge until a point of another step (or rank) arrives.
    open: Option<Point>,
    /// `steps_per_s`, added to rank 0's step events as the built-in host does.
    rate: crate::rate::StepRate,
    /// Metric points ingested (for the bench and the end-of-run line).
    pub points: u64,
    /// The job's tags, notes and group from its `hello`, for the host to put in run.json.
    pub job_info: Option<crate::rundir::JobInfo>,
    /// The run info last recorded (config, tags, notes, group): a `config` frame merges
    /// into it and records the whole again.
    run_info: Option<commands::RunInfo>,
    /// The run's `config.toml`, rewritten on a plan edit so `run --resume` sees the same plan.
    pub plan_file: Option<std::path::PathBuf>,
    /// A `run --resume`: the step it went on from and the job's checkpoint there.
    resumed: Option<(u64, Option<String>)>,
    /// `finish` received: (status asked, message).
    pub finished: Option<(RunStatus, String)>,
    /// The pids that said `hello` (the job's working processes; at most 4096 kept).
    pub job_pids: Vec<u32>,
    /// (last step recorded, step the job ran to): the client lost the host and the job
    /// trained on unrecorded (its `finish` said so).
    pub unrecorded: Option<(u64, u64)>,
    /// Rank 0 said `hello` again after losing the host (`rejoin`): its next sync says,
    /// once, which steps went unrecorded.
    rejoined: bool,
    printer: Option<Printer>,
}

impl State {
    pub fn new(log: crate::session::RunLog, cfg: ExternalConfig, run_id: String, printer: Option<Printer>) -> State {
        let mut signals = SignalState::for_rule(cfg.phases[0].until.as_ref());
        for layer in &cfg.probes.layers {
            signals.watch_probe_layer(layer);
        }
        let keys = SetKeys::of_run_config(&external_run_config(&cfg));
        let first_rule = cfg.phases[0].until.as_ref().map(|r| r.get_ref().clone());
        State {
            log,
            cfg,
            run_id,
            phase: 0,
            phase_start: 0,
            prev_phase: None,
            step: 0,
            session: Session::new(signals, keys, Delivery::NextSync, first_rule.as_ref()),
            stop: None,
            plan_done: None,
            checkpoint_asked: false,
            pending_switch: None,
            in_flight: None,
            acks: false,
            newest: Default::default(),
            backwards: 0,
            pending_set: Default::default(),
            errors: Vec::new(),
            errors_lost: 0,
            dropped: 0,
            dropped_unlogged: 0,
            rejected: 0,
            open: None,
            rate: crate::rate::StepRate::new(0),
            points: 0,
            finished: None,
            job_pids: Vec::new(),
            unrecorded: None,
            rejoined: false,
            resumed: None,
            plan_file: None,
            job_info: None,
            run_info: None,
            printer,
        }
    }

    /// Puts a resumed run where it was (`run --resume`): the phase and its start, the
    /// step, the job's checkpoint (told to the job in `welcome`), and the detectors fed
    /// the run's history up to the step, so its signals go on as the uninterrupted run's.
    pub fn resume_at(
        &mut self,
        phase: usize,
        phase_start: u64,
        step: u64,
        checkpoint: Option<String>,
        history: &[Event],
    ) {
        self.phase = phase;
        self.phase_start = phase_start;
        self.step = step;
        self.rate = crate::rate::StepRate::new(step);
        self.newest.insert(0, step);
        self.resumed = Some((step, checkpoint));
        let cfg = &self.cfg;
        let rule_of = |name: &str| cfg.phase_index(name).map(|i| cfg.phases[i].until.as_ref());
        self.session.signals.replay_rules(history, &rule_of, cfg.phases[phase].name());
    }

    pub fn phase_name(&self) -> &str {
        self.cfg.phases[self.phase].name()
    }

    pub fn emit(&mut self, ev: Event) -> std::io::Result<()> {
        self.log.append(&ev)?;
        self.log.flush_if_due()?;
        if let Some(p) = &mut self.printer {
            p(&ev);
        }
        Ok(())
    }

    /// Writes an event; a log that cannot be written is reported once on stderr (the job
    /// goes on; the run will end failed when it tries to write its end).
    fn record(&mut self, ev: Event) {
        if let Err(e) = self.emit(ev) {
            eprintln!("phasetop: cannot write the run log: {e}");
        }
    }

    pub fn note(&mut self, level: LogLevel, message: String) {
        let step = self.step;
        self.record(Event::Log { step, level, message });
    }

    pub fn flush_log(&mut self) -> std::io::Result<()> {
        self.log.flush()
    }

    pub fn sync_log(&mut self) -> std::io::Result<()> {
        self.log.sync()
    }

    pub fn status(&self) -> Status {
        Status {
            run_id: self.run_id.clone(),
            step: self.step,
            phase: self.phase_name().to_string(),
            paused: self.session.paused,
            suggestions: self.session.suggestions(),
        }
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        } else {
            self.errors_lost += 1;
        }
    }

    /// A frame that could not be read: counted, described in the log (the first few)
    /// and in the next sync.
    pub fn reject(&mut self, client: &str, reason: &str) {
        self.rejected += 1;
        if self.rejected <= LOGGED_REJECTIONS {
            self.note(LogLevel::Warn, format!("rejected a frame from {client}: {reason}"));
        } else if self.rejected == LOGGED_REJECTIONS + 1 {
            self.note(LogLevel::Warn, "more frames rejected; counted, not logged".into());
        }
        self.error(reason.to_string());
    }

    /// Handles one job frame; `Some` is the reply line's JSON.
    pub fn job(&mut self, client: &str, frame: JobFrame) -> Option<serde_json::Value> {
        match frame {
            JobFrame::Hello {
                protocol: version,
                rank,
                world_size,
                pid,
                config,
                client: who,
                tags,
                notes,
                group,
                rejoin,
            } => {
                if version > protocol::PROTOCOL {
                    return Some(serde_json::json!({"type": "error", "message": format!(
                        "the client speaks protocol {version}; this host speaks {}: upgrade phasetop", protocol::PROTOCOL)}));
                }
                let mut line = format!("job connected on {client}: rank {rank} of {world_size}, pid {pid}");
                if !who.is_empty() {
                    line += &format!(", {who}");
                }
                // A hello sent while this host was stopped may be read after the job
                // finished (its connection queued): that one starts nothing.
                if let Some(lost) = rejoin
                    && rank == 0
                    && self.finished.is_none()
                {
                    line += &format!(", again after losing this host at step {lost}");
                    self.rejoined = true;
                }
                self.note(LogLevel::Info, line);
                if pid != 0 && !self.job_pids.contains(&pid) && self.job_pids.len() < 4096 {
                    self.job_pids.push(pid);
                }
                // The job's own config, tags, notes and group: recorded once, as given.
                if rank == 0 && (!config.is_null() || !tags.is_empty() || !notes.is_empty() || group.is_some()) {
                    let step = self.step;
                    match run_info(config, tags, notes, group) {
                        Ok((job_config, tags, notes, group)) => {
                            let info = crate::rundir::JobInfo {
                                tags: tags.clone(),
                                notes: notes.clone(),
                                group: group.clone(),
                            };
                            self.job_info = Some(info);
                            self.run_info = Some((job_config.clone(), tags.clone(), notes.clone(), group.clone()));
                            self.record(Event::RunInfo { step, job_config, tags, notes, group })
                        }
                        Err(e) => self.error(e),
                    }
                }
                if rank == 0 {
                    self.acks = version >= 2;
                }
                let boundary = self.boundary();
                let phase = &self.cfg.phases[self.phase];
                Some(serde_json::json!({
                    "type": "welcome", "protocol": protocol::PROTOCOL, "run_id": self.run_id,
                    "step": self.step, "phase": phase.name(), "phases": self.cfg.phase_names(),
                    "settings": phase.settings_json(), "paused": self.session.paused, "should_stop": self.should_stop(),
                    "boundary": boundary,
                    "resumed_from": self.resumed.as_ref().map(|r| r.0),
                    "checkpoint": self.resumed.as_ref().and_then(|r| r.1.clone()),
                }))
            }
            JobFrame::Log { points, dropped } => {
                let mut errors = Vec::new();
                for v in &points {
                    if let Some(p) = protocol::point(v, &mut errors) {
                        self.ingest(p);
                    }
                }
                for e in errors {
                    self.error(e);
                }
                if dropped > 0 {
                    self.dropped += dropped;
                    self.dropped_unlogged += dropped;
                }
                None
            }
            JobFrame::Probe { step, layer, metrics } => {
                let mut errors = Vec::new();
                match protocol::check_metric_name(&layer) {
                    Err(e) => errors.push(format!("probe at step {step}: layer {e}")),
                    Ok(()) => {
                        let m = protocol::metrics(&metrics, &format!("probe {layer} at step {step}"), &mut errors);
                        self.flush_open();
                        self.step = self.step.max(step);
                        let all: Metrics = m.iter().map(|(k, v)| (format!("{layer}/{k}"), *v)).collect();
                        self.points += m.len() as u64;
                        self.record(Event::Probe { step, layer, metrics: m });
                        let fired = self.session.signals.push(step, step.saturating_sub(self.phase_start), &all);
                        self.handle_signals(fired);
                    }
                }
                for e in errors {
                    self.error(e);
                }
                None
            }
            JobFrame::Checkpoint { step, path } => {
                let p = std::path::Path::new(&path);
                let inside = !path.is_empty()
                    && p.is_relative()
                    && p.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if inside {
                    self.flush_open();
                    self.step = self.step.max(step);
                    self.record(Event::Checkpoint { step, path });
                } else {
                    self.error(format!("checkpoint at step {step}: path \"{path}\" must be relative to the run directory, without \"..\""));
                }
                None
            }
            JobFrame::Config { values } => {
                self.flush_open();
                let (config, tags, notes, group) = self.run_info.clone().unwrap_or_default();
                let mut merged = match config {
                    serde_json::Value::Object(m) => m,
                    serde_json::Value::Null => serde_json::Map::new(),
                    other => {
                        self.error(format!("config update: the job's config is {other}, not a mapping; not recorded"));
                        return None;
                    }
                };
                merged.extend(values);
                match run_info(serde_json::Value::Object(merged), tags, notes, group) {
                    Ok((job_config, tags, notes, group)) => {
                        let step = self.step;
                        self.run_info = Some((job_config.clone(), tags.clone(), notes.clone(), group.clone()));
                        self.record(Event::RunInfo { step, job_config, tags, notes, group })
                    }
                    Err(e) => self.error(e.replace("init(config=…)", "the config with this update")),
                }
                None
            }
            JobFrame::Text { step, tag, text } => {
                self.flush_open();
                let step = step.unwrap_or(self.step);
                if tag.is_empty() || tag.len() > protocol::MAX_NAME {
                    self.error(format!("text at step {step}: its tag must be 1 to {} bytes", protocol::MAX_NAME));
                } else {
                    self.record(Event::Log { step, level: LogLevel::Info, message: text_line(&tag, &text) });
                }
                None
            }
            JobFrame::Summary { step, values } => {
                self.flush_open();
                let step = step.unwrap_or(self.step);
                let mut good = serde_json::Map::new();
                for (k, v) in values {
                    if let Err(e) = protocol::check_metric_name(&k) {
                        self.error(format!("summary: {e}"));
                    } else if matches!(v, serde_json::Value::Array(_) | serde_json::Value::Object(_)) {
                        self.error(format!("summary \"{k}\": {v} is not a number, a string or a boolean"));
                    } else {
                        good.insert(k, v);
                    }
                }
                if !good.is_empty() {
                    self.record(Event::Summary { step, values: good });
                }
                None
            }
            JobFrame::Sync { step, applied } => {
                Some(serde_json::to_value(self.sync(step, applied)).unwrap_or_default())
            }
            JobFrame::Finish { step, status, message, lost_at } => {
                self.flush_open();
                if let (Some(s), Some(_)) = (step, lost_at)
                    && s > self.step
                {
                    self.unrecorded = Some((self.step, s));
                }
                if let Some(s) = step {
                    self.step = self.step.max(s);
                }
                let status = match status.as_deref() {
                    None | Some("completed") => RunStatus::Completed,
                    Some("stopped") => RunStatus::Stopped,
                    Some("failed") => RunStatus::Failed,
                    Some(other) => {
                        return Some(serde_json::json!({"type": "error", "message": format!(
                            "finish: unknown status \"{other}\", expected completed, stopped or failed")}));
                    }
                };
                let m = if message.is_empty() { String::new() } else { format!(": {message}") };
                self.note(LogLevel::Info, format!("the job finished ({}){m}", status.as_str()));
                self.finished = Some((status, message));
                Some(serde_json::json!({"type": "ok"}))
            }
        }
    }

    fn ingest(&mut self, mut p: Point) {
        // Steps go forward: a training point behind the newest step its rank reported is
        // refused with a reason (a restarted job continues with `phasetop run --resume`).
        // Held-out (`val_*`) points may come late, for a step already passed.
        let newest = self.newest.entry(p.rank).or_insert(0);
        if p.step < *newest && !p.metrics.keys().all(|k| k.starts_with("val_")) {
            let (rank, step, newest) = (p.rank, p.step, *newest);
            self.error(format!(
                "log point at step {step} (rank {rank}) goes back: the run is at step {newest}; steps only go \
                 forward (a job restarted from a checkpoint: phasetop run --resume)"
            ));
            self.backwards += 1;
            if self.backwards == 1 {
                self.note(
                    LogLevel::Warn,
                    format!("refused points that go back in steps (first: step {step} after {newest})"),
                );
            }
            return;
        }
        *newest = (*newest).max(p.step);
        self.points += p.metrics.len() as u64;
        if p.rank != 0 {
            // Other ranks' series beside rank 0's, never mixed into them (nor watched).
            p.metrics =
                std::mem::take(&mut p.metrics).into_iter().map(|(k, v)| (format!("rank{}/{k}", p.rank), v)).collect();
        }
        match &mut self.open {
            Some(o) if o.step == p.step && o.rank == p.rank => o.metrics.extend(p.metrics),
            _ => {
                self.flush_open();
                self.open = Some(p);
            }
        }
    }

    /// Writes the step being merged: a `step` event, and an `eval` event for `val_*`
    /// metrics (the dashboard's held-out series), fed to the detectors.
    pub fn flush_open(&mut self) {
        let Some(p) = self.open.take() else { return };
        self.step = self.step.max(p.step);
        let (eval, train): (Metrics, Metrics) = p.metrics.into_iter().partition(|(k, _)| k.starts_with("val_"));
        // A change logged at step S: steps up to S trained in the old phase, later ones in the new.
        let phase = match &self.prev_phase {
            Some(prev) if p.step <= self.phase_start => prev.clone(),
            _ => self.phase_name().to_string(),
        };
        let in_phase = p.step.saturating_sub(self.phase_start);
        let mut fired = Vec::new();
        if p.rank == 0 {
            fired.extend(self.session.signals.push(p.step, in_phase, &train));
        }
        if !train.is_empty() {
            let mut train = train;
            if p.rank == 0 {
                // The job's own `steps_per_s`, if it logs one, wins.
                let rate = match p.t {
                    Some(t) => self.rate.tick_at(p.step, t),
                    None => self.rate.tick(p.step),
                };
                train.entry(crate::rate::STEPS_PER_S.into()).or_insert(rate);
            }
            self.record(Event::Step { step: p.step, phase, t: now_unix(), metrics: train });
        }
        if !eval.is_empty() {
            if p.rank == 0 {
                fired.extend(self.session.signals.push(p.step, in_phase, &eval));
            }
            self.record(Event::Eval { step: p.step, split: "val".into(), metrics: eval });
        }
        self.handle_signals(fired);
    }

    /// Records signals and acts on the current phase's rule (one switch pending at a time).
    fn handle_signals(&mut self, fired: Vec<crate::signals::Signal>) {
        let next = self.cfg.phases.get(self.phase + 1).map(|p| p.name().to_string());
        let in_phase = self.step.saturating_sub(self.phase_start);
        let blocked = self.pending_switch.is_some() || self.in_flight.is_some();
        let was_paused = self.session.paused;
        for effect in self.session.judge(fired, self.step, in_phase, next.as_deref(), blocked) {
            match effect {
                Effect::Record(ev) => self.record(ev),
                Effect::Switch(detail) => self.pending_switch = Some((self.phase + 1, PhaseCause::Rule, Some(detail))),
                Effect::Note(m) => self.note(LogLevel::Info, m),
            }
        }
        if self.session.paused && !was_paused {
            self.rate.pause();
        }
    }

    /// Drops the suggestions still pending as the run ends, with a line each.
    pub fn expire_at_end(&mut self) {
        for line in self.session.expire("the run ended") {
            self.note(LogLevel::Info, line);
        }
    }

    pub fn should_stop(&self) -> bool {
        self.stop.is_some() || self.plan_done.is_some()
    }

    /// The step at which the plan next acts without an operator: the current phase's
    /// `steps` count ends, or `max_steps`. A protocol-2 client asks and waits there, so a
    /// scheduled switch or stop lands on its step.
    fn boundary(&self) -> Option<u64> {
        let phase = &self.cfg.phases[self.phase];
        let end = phase.steps.as_ref().map(|n| self.phase_start + *n.get_ref());
        match (end, self.cfg.run.max_steps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes a phase change happen at `step`: the log's `phase_changed`, the new rule.
    fn commit(&mut self, (i, cause, detail): Switch, step: u64) {
        let from = self.phase_name().to_string();
        self.prev_phase = Some(from.clone());
        self.phase = i;
        self.phase_start = step;
        let expired = self.session.enter_rule(self.cfg.phases[i].until.as_ref(), "the phase changed");
        let to = self.phase_name().to_string();
        self.record(Event::PhaseChanged { step, from: Some(from), to, cause, detail });
        for line in expired {
            self.note(LogLevel::Info, line);
        }
    }

    /// The answer to the job's `sync` at `step` (`applied`: the step at which a
    /// protocol-2 job applied the switch it was last given).
    pub fn sync(&mut self, step: u64, applied: Option<u64>) -> Control {
        self.flush_open();
        if std::mem::take(&mut self.rejoined) && step > self.step + 1 {
            self.note(
                LogLevel::Warn,
                format!(
                    "the job reached this host again at step {step}: steps {} to {} went unrecorded (the host did \
                     not answer within the client's timeout: stopped or starved)",
                    self.step + 1,
                    step - 1
                ),
            );
        }
        self.step = self.step.max(step);
        if let Some(at) = applied
            && let Some(sw) = self.in_flight.take()
        {
            self.commit(sw, at);
        }
        let phase = &self.cfg.phases[self.phase];
        let phase_done = phase.steps.as_ref().is_some_and(|n| step.saturating_sub(self.phase_start) >= *n.get_ref());
        let max_done = self.cfg.run.max_steps.is_some_and(|max| step >= max);
        // Where the plan acts by itself, a young suggestion is kept open: the job is held
        // (answered as paused) until it is answered or its `open_s` has passed.
        let mut waiting = false;
        if (phase_done || max_done)
            && self.plan_done.is_none()
            && self.pending_switch.is_none()
            && self.in_flight.is_none()
            && let Some((id, left)) = self.session.keeps_open(Instant::now())
        {
            waiting = true;
            if let Some(line) = self.session.waiting_note(id, left, step) {
                self.note(LogLevel::Info, line);
            }
        }
        let phase = &self.cfg.phases[self.phase];
        if !waiting
            && self.pending_switch.is_none()
            && self.in_flight.is_none()
            && let Some(n) = &phase.steps
            && step.saturating_sub(self.phase_start) >= *n.get_ref()
        {
            if self.phase + 1 < self.cfg.phases.len() {
                self.pending_switch = Some((self.phase + 1, PhaseCause::Scheduled, None));
            } else if self.plan_done.is_none() {
                let why = format!("phase plan finished (last phase \"{}\")", phase.name());
                self.note(LogLevel::Info, format!("{why}: the job is told to stop"));
                self.plan_done = Some(why);
            }
        }
        if let Some(max) = self.cfg.run.max_steps
            && step >= max
            && self.plan_done.is_none()
            && !waiting
        {
            let why = format!("reached max_steps = {max}");
            self.note(LogLevel::Info, format!("{why}: the job is told to stop"));
            self.plan_done = Some(why);
        }
        let mut phase_changed = false;
        if self.in_flight.is_none()
            && let Some(sw) = self.pending_switch.take()
        {
            phase_changed = true;
            if self.acks {
                self.in_flight = Some(sw);
            } else {
                self.commit(sw, step);
            }
        }
        let mut errors = std::mem::take(&mut self.errors);
        if self.errors_lost > 0 {
            errors.push(format!("… and {} more", std::mem::take(&mut self.errors_lost)));
        }
        // The phase the job is in once it has applied this answer.
        let phase = self.in_flight.as_ref().map_or(self.phase, |sw| sw.0);
        Control {
            kind: "control",
            step,
            phase: self.cfg.phases[phase].name().to_string(),
            phase_changed,
            settings: self.cfg.phases[phase].settings_json(),
            set: std::mem::take(&mut self.pending_set),
            should_stop: self.should_stop(),
            paused: self.session.paused || waiting,
            checkpoint: std::mem::take(&mut self.checkpoint_asked),
            errors,
            dropped: self.dropped,
            boundary: if self.in_flight.is_some() { None } else { self.boundary() },
        }
    }

    /// A system sample of the job (`host`'s sampler task, about once a second): an
    /// `eval` event with split `system` at the newest step, like the built-in host's. The
    /// step being merged stays open (a sample never splits a step's points), and the
    /// detectors never see it.
    pub fn system_sample(&mut self, metrics: Metrics) {
        if !metrics.is_empty() {
            let step = self.step;
            self.record(Event::Eval { step, split: crate::sysmon::SPLIT.into(), metrics });
        }
    }

    /// Notes in the log the points dropped since the last note (called about once a second).
    pub fn note_dropped(&mut self) {
        if self.dropped_unlogged > 0 {
            let n = std::mem::take(&mut self.dropped_unlogged);
            self.note(
                LogLevel::Warn,
                format!("dropped: the client dropped {n} metric points (its buffer was full; {} in all)", self.dropped),
            );
        }
    }
}

/// An external run's config as `run_started` records it (the `external` key marks it).
pub fn external_run_config(cfg: &ExternalConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.entry("external").or_insert(serde_json::json!({}));
    }
    v
}

/// The `log` line of a job's `text` frame: `[tag] text`, at most 4 KiB of text (cut at a
/// character boundary, with how much was left out).
fn text_line(tag: &str, text: &str) -> String {
    const MAX_TEXT: usize = 4096;
    if text.len() <= MAX_TEXT {
        return format!("[{tag}] {text}");
    }
    let mut cut = MAX_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("[{tag}] {}… ({} bytes more not recorded)", &text[..cut], text.len() - cut)
}
