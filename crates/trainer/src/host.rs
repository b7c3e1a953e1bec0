//! The host owns a run: it builds the trainer, writes every event to the run log, serves
//! the control socket, and runs the loop that applies commands between steps.

use crate::config::{self, Config};
use crate::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus, SCHEMA_MAJOR, SCHEMA_MINOR};
use crate::rundir::{RunDir, RunLock, RunMeta, ScheduledSwitch, now_unix};
use crate::runlog;
use crate::trainer::{Trainer, checkpoint, device_name};
use crate::{control, rules};
use anyhow::{Context, Result};
use control::{ControlServer, Pending, Reply, Status};
pub use phasetop_core::branch::BranchRun;
pub use phasetop_core::headless::{Observer, Progress, stop_on_signals};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start a run.
pub struct NewRun {
    pub config: config::LoadedConfig,
    pub run_dir: PathBuf,
    pub seed: Option<u64>,
    pub max_steps: Option<u64>,
}

pub struct Host {
    dir: RunDir,
    /// The run's lock, held for the host's life (`RunLock`).
    _lock: RunLock,
    meta: RunMeta,
    trainer: Trainer,
    log: runlog::Writer,
    stop_flag: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    paused: bool,
    last_val: Metrics,
    /// A branch's `--switch` for a step past its checkpoint: (step, phase index, detail).
    scheduled_switch: Option<(u64, usize, String)>,
    last_metrics: Metrics,
    observer: Option<Box<dyn Observer>>,
    /// A switch accepted by `apply`, carried out after the command is recorded.
    pending_switch: Option<(usize, PhaseCause, Option<String>)>,
    signals: rules::SignalState,
    rollbacks: u32,
    /// Events emitted before an observer was attached (run start, resume warnings).
    early: Vec<Event>,
    costs: MonitorCosts,
}

/// Where the run loop's time goes, measured as it runs (a few `Instant::now` calls a
/// step): training steps, and each kind of monitoring on top of them. Reported in the
/// log when the run ends, so every run states what watching it cost.
#[derive(Debug, Default, Clone, Copy)]
struct MonitorCosts {
    /// `train_step`, including the per-step metrics it computes.
    steps: Duration,
    eval: Duration,
    probes: Duration,
    detectors: Duration,
    /// Appending to the run log and handing events to the observer (printer, dashboard).
    log: Duration,
}

impl MonitorCosts {
    /// The one-line summary, given the per-step metrics' share of `steps`.
    fn summary(&self, metrics: Duration) -> Option<String> {
        let busy = self.steps + self.eval + self.probes + self.detectors + self.log;
        if busy.is_zero() {
            return None;
        }
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / busy.as_secs_f64();
        let total = metrics + self.eval + self.probes + self.detectors + self.log;
        Some(format!(
            "monitoring took {:.1} % of the run's busy time: per-step metrics {:.1} %, evaluation {:.1} %, \
             probes {:.1} %, detectors {:.1} %, run log and display {:.1} %",
            pct(total),
            pct(metrics),
            pct(self.eval),
            pct(self.probes),
            pct(self.detectors),
            pct(self.log)
        ))
    }
}

/// Creates the run directory, writes its config and metadata, and starts the log. The
/// trainer is built first (data read, model allocated), so a config that fails there
/// leaves nothing behind; the directory is then locked before anything is written in it.
pub fn create(run: NewRun, stop_flag: Arc<AtomicBool>) -> Result<Host> {
    let cfg = &run.config.config;
    RunDir::check_free(&run.run_dir)?;
    let seed = run.seed.unwrap_or(cfg.run.seed);
    let trainer = Trainer::new(cfg, seed)?;
    let (dir, lock) = RunDir::create(&run.run_dir, cfg.run.group_readable)?;
    crate::rundir::write_atomic(&dir.config(), run.config.source.as_bytes())?;
    let run_id = run.run_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = RunMeta {
        run_id,
        config_name: run.config.name(),
        seed,
        max_steps: run.max_steps.unwrap_or(cfg.max_steps()),
        created_at: now_unix(),
        source_path: run.config.path.canonicalize().ok().map(|p| p.display().to_string()),
        parent: None,
        scheduled_switch: None,
        init: Some(cfg.model.init().as_str().to_string()),
    };
    dir.write_meta(&meta)?;
    let log = runlog::Writer::create(&dir.log()).with_context(|| format!("cannot create {}", dir.log().display()))?;
    let mut host = Host::assemble(dir, lock, meta, trainer, log, stop_flag);
    host.emit_started(None)?;
    let first = host.trainer.phase().name().to_string();
    host.emit(Event::PhaseChanged { step: 0, from: None, to: first, cause: PhaseCause::Start, detail: None })?;
    host.log.flush()?;
    Ok(host)
}

/// Reopens a run from its latest checkpoint and appends to the same log; `max_steps`
/// (`train --resume RUN --max-steps N`) moves the run's end. The run's lock is taken and
/// a live host ruled out before anything in the directory is written, and the trainer is
/// restored before `run.json` or the log change, so a refused resume leaves the run as
/// it was.
pub fn resume(path: &Path, stop_flag: Arc<AtomicBool>, max_steps: Option<u64>) -> Result<Host> {
    let dir = RunDir::open(path)?;
    let lock = RunLock::acquire(path)?;
    if dir.is_live() {
        anyhow::bail!("{}: another host is live on this run; nothing was changed", path.display());
    }
    let mut meta = dir.read_meta()?;
    let mut loaded = config::load(&dir.config())?;
    meta.legacy_init(&mut loaded.config);
    let latest = checkpoint::latest(&dir.checkpoints());
    let at = latest.as_ref().map_or(0, |m| m.step);
    if let Some(m) = max_steps
        && m < at
    {
        return Err(crate::error::UsageError(format!(
            "--max-steps {m} is below the step the run resumes from ({at}); give a later end"
        ))
        .into());
    }
    let mut trainer = Trainer::new(&loaded.config, meta.seed)?;
    let mut warnings = Vec::new();
    let from = match &latest {
        Some(m) => {
            warnings.extend(checkpoint::restore(&mut trainer, &dir.checkpoints(), m)?);
            Some(m.step)
        }
        None => {
            warnings.push("no checkpoint found: the run restarts from step 0".into());
            Some(0)
        }
    };
    // Nothing above wrote into the directory; from here on the resume goes ahead.
    if let Some(m) = max_steps {
        meta.max_steps = m;
        dir.write_meta(&meta)?;
    }
    let (log, dropped) =
        runlog::Writer::open_append(&dir.log()).with_context(|| format!("cannot reopen {}", dir.log().display()))?;
    if let Some(d) = dropped {
        warnings
            .insert(0, format!("dropped {} bytes of a torn record at offset {} before resuming", d.bytes, d.offset));
    }
    let mut host = Host::assemble(dir, lock, meta, trainer, log, stop_flag);
    // Read before this start is appended: it supersedes everything after `from`.
    let history = logged_history(&host.dir, from.unwrap_or(0));
    host.emit_started(from)?;
    host.replay_history(history)?;
    for w in warnings {
        host.log_line(LogLevel::Warn, w)?;
    }
    host.rearm_scheduled_switch()?;
    Ok(host)
}

/// The events of `dir`'s run up to step `upto` that no resume superseded, oldest first;
/// for a branch, its parent's up to the branch step come first (recursively).
pub fn logged_history(dir: &RunDir, upto: u64) -> Result<Vec<Event>> {
    let mut chain = vec![(dir.path.clone(), upto)];
    let mut meta = dir.read_meta()?;
    while let Some(p) = meta.parent.take() {
        anyhow::ensure!(chain.len() < 64, "{}: branch ancestry too deep (a cycle?)", dir.path.display());
        let parent = RunDir::open(Path::new(&p.run_dir))?;
        meta = parent.read_meta()?;
        chain.push((parent.path, p.branch_step));
    }
    let mut out = Vec::new();
    for (path, upto) in chain.into_iter().rev() {
        let log = RunDir::open(&path)?.log();
        let contents = runlog::read_all(&log).with_context(|| format!("cannot read {}", log.display()))?;
        let events: Vec<Event> = contents.records.into_iter().map(|r| r.event).collect();
        let mut current = phasetop_core::history::Supersession::of(events.iter()).upto(upto);
        out.extend(events.into_iter().filter(|ev| current.keeps(ev)));
    }
    Ok(out)
}

/// Starts a branched run. The trainer is restored before the directory is created, so a
/// checkpoint that does not fit leaves nothing behind.
pub fn branch(b: BranchRun, stop_flag: Arc<AtomicBool>) -> Result<Host> {
    let mut trainer = Trainer::new(&b.config.config, b.seed)?;
    let warnings = checkpoint::restore(&mut trainer, &b.parent_checkpoints, &b.checkpoint)?;
    RunDir::check_free(&b.run_dir)?;
    let (dir, lock) = RunDir::create(&b.run_dir, b.config.config.run.group_readable)?;
    crate::rundir::write_atomic(&dir.config(), b.config.source.as_bytes())?;
    let meta = RunMeta {
        run_id: b.run_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
        config_name: b.config_name,
        seed: b.seed,
        max_steps: b.max_steps,
        created_at: now_unix(),
        source_path: b.source_path,
        parent: Some(b.parent.clone()),
        scheduled_switch: None,
        init: Some(b.config.config.model.init().as_str().to_string()),
    };
    dir.write_meta(&meta)?;
    let log = runlog::Writer::create(&dir.log()).with_context(|| format!("cannot create {}", dir.log().display()))?;
    let mut host = Host::assemble(dir, lock, meta, trainer, log, stop_flag);
    host.emit_started(None)?;
    let history = RunDir::open(Path::new(&b.parent.run_dir)).and_then(|p| logged_history(&p, b.checkpoint.step));
    host.replay_history(history)?;
    let step = host.trainer.step();
    let origin = format!("branched from {} at step {step}", b.parent.run_id);
    match b.switch {
        // The switch makes its own pinned checkpoint.
        Some(i) if b.switch_at <= step => host.switch(i, PhaseCause::Manual, Some(format!("--switch, {origin}")))?,
        switch => {
            let to = host.trainer.phase().name().to_string();
            host.emit(Event::PhaseChanged {
                step,
                from: None,
                to,
                cause: PhaseCause::Start,
                detail: Some(origin.clone()),
            })?;
            // The child's own branch point: `--resume` and further branches need one.
            host.checkpoint(true)?;
            if let Some(i) = switch {
                let at = b.switch_at;
                let to = host.trainer.config().phases[i].name().to_string();
                let detail = format!("--switch at step {at}, {origin}");
                host.meta.scheduled_switch = Some(ScheduledSwitch { step: at, phase: to.clone(), detail });
                host.dir.write_meta(&host.meta)?;
                host.rearm_scheduled_switch()?;
                let line =
                    format!("training on from step {step} with the parent's plan; switching to \"{to}\" at step {at}");
                host.log_line(LogLevel::Info, line)?;
            }
        }
    }
    for w in warnings {
        host.log_line(LogLevel::Warn, w)?;
    }
    Ok(host)
}

impl Host {
    fn assemble(
        dir: RunDir,
        lock: RunLock,
        meta: RunMeta,
        trainer: Trainer,
        log: runlog::Writer,
        stop_flag: Arc<AtomicBool>,
    ) -> Host {
        let status = Arc::new(Mutex::new(Status {
            run_id: meta.run_id.clone(),
            step: trainer.step(),
            phase: trainer.phase().name().to_string(),
            paused: false,
            suggestions: Vec::new(),
        }));
        let signals = fresh_signals(&trainer);
        Host {
            dir,
            _lock: lock,
            meta,
            trainer,
            log,
            stop_flag,
            status,
            paused: false,
            last_val: Metrics::new(),
            scheduled_switch: None,
            last_metrics: Metrics::new(),
            observer: None,
            pending_switch: None,
            signals,
            rollbacks: 0,
            early: Vec::new(),
            costs: MonitorCosts::default(),
        }
    }

    pub fn run_dir(&self) -> &Path {
        &self.dir.path
    }

    pub fn config(&self) -> &Config {
        self.trainer.config()
    }

    fn emit_started(&mut self, resumed_from_step: Option<u64>) -> Result<()> {
        let cfg = self.trainer.config();
        let mut config = serde_json::to_value(cfg)?;
        // The run's real end (`--max-steps`), so readers of the log (the dashboard's
        // header, ETA and plan) need not know run.json.
        if let Some(run) = config.get_mut("run").and_then(|r| r.as_object_mut()) {
            run.insert("max_steps".into(), self.meta.max_steps.into());
        }
        let ev = Event::RunStarted {
            run_id: self.meta.run_id.clone(),
            schema_major: SCHEMA_MAJOR,
            schema_minor: SCHEMA_MINOR,
            config_name: self.meta.config_name.clone(),
            config,
            phases: cfg.phase_names(),
            device: device_name(self.trainer.device()),
            seed: self.meta.seed,
            started_at: now_unix(),
            resumed_from_step,
            // Only a branch's first start names its parent; resumes and rollbacks continue it.
            parent_run: self.meta.parent.as_ref().filter(|_| resumed_from_step.is_none()).map(|p| p.run_id.clone()),
            branch_step: self.meta.parent.as_ref().filter(|_| resumed_from_step.is_none()).map(|p| p.branch_step),
        };
        let auto_eval = cfg.eval.every == crate::config::EvalEvery::Auto;
        self.emit(ev)?;
        if auto_eval {
            let every = self.trainer.eval_every();
            self.log_line(
                LogLevel::Info,
                format!(
                    "held-out evaluation every {every} steps (eval.every = \"auto\": about 1 % of the training compute)"
                ),
            )?;
        }
        Ok(())
    }

    fn emit(&mut self, ev: Event) -> Result<()> {
        let started = Instant::now();
        let result = self.emit_untimed(ev);
        self.costs.log += started.elapsed();
        result
    }

    fn emit_untimed(&mut self, ev: Event) -> Result<()> {
        let log = &self.dir.path;
        self.log.append(&ev).with_context(|| format!("cannot write the run log {}/events.log", log.display()))?;
        self.log.flush_if_due().with_context(|| format!("cannot write the run log {}/events.log", log.display()))?;
        match &mut self.observer {
            Some(o) => {
                o.event(&ev);
                // Kept (moved, not cloned) for the once-a-second progress line.
                if let Event::Step { metrics, .. } = ev {
                    self.last_metrics = metrics;
                }
            }
            None => self.early.push(ev),
        }
        Ok(())
    }

    /// Brings the detectors to where the run's were (`logged_history`), so a resumed or
    /// branched run's signals are the uninterrupted run's; replayed history emits no
    /// signals. A history that cannot be read leaves them fresh, with a warning.
    fn replay_history(&mut self, history: Result<Vec<Event>>) -> Result<()> {
        match history {
            Ok(events) => {
                self.signals.replay(&events, &self.trainer.config().phases, self.trainer.phase());
                Ok(())
            }
            Err(e) => self.log_line(LogLevel::Warn, format!("detectors start afresh: {e:#}")),
        }
    }

    /// Shows the pending suggestions in `ctl status`.
    fn sync_suggestions(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.suggestions = self
                .signals
                .pending
                .iter()
                .map(|p| control::PendingSuggestion {
                    id: p.id,
                    to_phase: p.to_phase.clone(),
                    because: p.because.clone(),
                })
                .collect();
        }
    }

    fn log_line(&mut self, level: LogLevel, message: String) -> Result<()> {
        let step = self.trainer.step();
        self.emit(Event::Log { step, level, message })
    }
}

/// The detectors a run starts with: the defaults, the phase's rule, collapse on probes.
fn fresh_signals(trainer: &Trainer) -> rules::SignalState {
    let mut signals = rules::SignalState::new(trainer.phase());
    let cfg = trainer.config();
    if cfg.probes.every > 0 {
        // Attention layers have no effective rank to collapse.
        for layer in cfg.probes.layers.iter().filter(|l| !l.get_ref().ends_with(".attn")) {
            signals.watch_probe_layer(layer.get_ref());
        }
    }
    signals
}

/// What ended the loop.
enum Exit {
    Completed(String),
    Stopped(String),
    Diverged(String),
}

impl Host {
    /// Runs until the plan or `max_steps` completes, a stop command arrives, or the stop
    /// flag (SIGINT/SIGTERM/SIGHUP) is raised. Ends with a checkpoint (unless the run
    /// diverged) and a `RunEnded` event.
    pub fn run(mut self, observer: Box<dyn Observer>) -> Result<RunStatus> {
        let mut observer = observer;
        for ev in self.early.drain(..) {
            observer.event(&ev);
        }
        self.observer = Some(observer);
        let (server, commands) = ControlServer::start(&self.dir.socket(), self.status.clone())
            .with_context(|| format!("cannot serve {}", self.dir.socket().display()))?;
        // A libtorch error (an allocation it could not make, a device error) panics in tch;
        // it ends the run as failed, with a `run_ended` saying why, instead of an abort.
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop(&commands))) {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                Err(anyhow::anyhow!("the trainer failed: {}", what.lines().next().unwrap_or_default()))
            }
        };
        drop(server);
        // Answer commands that arrived while the run was ending.
        while let Ok(p) = commands.try_recv() {
            let _ = p.reply.send(Reply { ok: false, step: self.trainer.step(), message: "the run has ended".into() });
        }
        let exit = match result {
            Ok(exit) => exit,
            Err(e) => {
                let step = self.trainer.step();
                let _ = self.emit(Event::RunEnded { step, status: RunStatus::Failed, message: format!("{e:#}") });
                let _ = self.log.sync();
                return Err(e);
            }
        };
        let step = self.trainer.step();
        let (status, message) = match exit {
            Exit::Completed(m) => (RunStatus::Completed, m),
            Exit::Stopped(m) => (RunStatus::Stopped, m),
            Exit::Diverged(m) => (RunStatus::Diverged, m),
        };
        if status != RunStatus::Diverged {
            self.checkpoint(false)?;
        }
        if let Some(summary) = self.costs.summary(self.trainer.metrics_time()) {
            self.log_line(LogLevel::Info, summary)?;
        }
        self.emit(Event::RunEnded { step, status, message })?;
        self.log.sync()?;
        Ok(status)
    }

    fn run_loop(&mut self, commands: &Receiver<Pending>) -> Result<Exit> {
        let max_steps = self.meta.max_steps;
        let cfg = self.trainer.config().clone();
        let eval_every = self.trainer.eval_every();
        let mut rate = Rate::new(self.trainer.step());
        let mut last_progress = Instant::now();
        if self.trainer.step() == 0 && cfg.probes.every > 0 {
            // The baseline that collapse detection compares against.
            self.probe(false)?;
        }
        loop {
            while let Ok(p) = commands.try_recv() {
                if let Some(exit) = self.apply(p)? {
                    return Ok(exit);
                }
            }
            if self.stop_flag.load(Ordering::Relaxed) {
                return Ok(Exit::Stopped("stopped by signal".into()));
            }
            if self.paused {
                rate.pause();
                match commands.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => {
                        if let Some(exit) = self.apply(p)? {
                            return Ok(exit);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {}
                }
                self.log.flush_if_due()?;
                continue;
            }
            if self.trainer.step() >= max_steps {
                self.final_eval()?;
                return Ok(Exit::Completed(format!("reached max_steps = {max_steps}")));
            }

            let started = Instant::now();
            let mut metrics = self.trainer.train_step();
            self.costs.steps += started.elapsed();
            let step = self.trainer.step();
            metrics.insert("steps_per_s".into(), rate.tick(step));
            let loss = metrics.get("train_loss").copied().unwrap_or(f64::NAN);
            let phase = self.trainer.phase().name().to_string();
            let fired = self.push_signals(step, &metrics);
            self.emit(Event::Step { step, phase: phase.clone(), t: now_unix(), metrics })?;
            if let Ok(mut s) = self.status.lock() {
                s.step = step;
            }
            if !loss.is_finite() {
                for sig in fired.iter().filter(|s| s.detector == "divergence") {
                    self.emit(sig.to_event())?;
                }
                if self.try_rollback(loss)? {
                    continue;
                }
                return Ok(Exit::Diverged(format!("train_loss is {loss} at step {step}")));
            }
            // `rollback_on_spike` acts on the first point of a burst (a spike), not on the
            // divergence that a burst still going `sustain_steps` later becomes.
            let spike =
                fired.iter().any(|s| matches!(s.detector.as_str(), "spike" | "divergence") && s.metric == "train_loss");
            // Evals and probes keep their schedule through a rule switch at this step (the
            // collapse baseline and the gradient alignment ride on the probe schedule).
            let mut switched = self.handle_signals(fired, false)?;
            if spike
                && self.trainer.config().run.on_divergence == config::OnDivergence::RollbackOnSpike
                && self.try_rollback(loss)?
            {
                continue;
            }
            if eval_every > 0 && step % eval_every == 0 {
                self.eval()?;
                let fired = self.push_signals(step, &self.last_val.clone());
                switched = self.handle_signals(fired, switched)?;
            }
            if cfg.probes.every > 0 && step % cfg.probes.every == 0 {
                switched = self.probe(switched)?;
            }
            if !switched && let Some((at, to, detail)) = self.scheduled_switch.take_if(|(at, _, _)| step >= *at) {
                if to == self.trainer.phase_index() {
                    let name = self.trainer.phase().name().to_string();
                    self.log_line(LogLevel::Warn, format!("--switch at step {at}: already in phase \"{name}\""))?;
                } else {
                    self.switch(to, PhaseCause::Manual, Some(detail))?;
                    switched = true;
                }
            }
            if switched {
                continue;
            }
            if self.trainer.phase_finished() {
                let next = self.trainer.phase_index() + 1;
                // The live plan, not the loop's starting copy: `ctl plan` may have changed it.
                if next < self.trainer.config().phases.len() {
                    self.switch(next, PhaseCause::Scheduled, None)?;
                } else {
                    self.final_eval()?;
                    return Ok(Exit::Completed(format!("phase plan finished (last phase \"{phase}\")")));
                }
            } else if cfg.checkpoint.every > 0 && step % cfg.checkpoint.every == 0 {
                self.checkpoint(false)?;
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                self.report_progress(max_steps, rate.value);
            }
        }
    }

    fn report_progress(&mut self, max_steps: u64, steps_per_s: f64) {
        let p = Progress {
            step: self.trainer.step(),
            max_steps,
            phase: self.trainer.phase().name().to_string(),
            metrics: self.last_metrics.clone(),
            val: self.last_val.clone(),
            steps_per_s,
        };
        if let Some(o) = &mut self.observer {
            o.progress(&p);
        }
    }

    /// Feeds metrics to the detectors (timed as monitoring).
    fn push_signals(&mut self, step: u64, metrics: &Metrics) -> Vec<crate::signals::Signal> {
        let started = Instant::now();
        let fired = self.signals.push(step, self.trainer.steps_in_phase(), metrics);
        self.costs.detectors += started.elapsed();
        fired
    }

    fn eval(&mut self) -> Result<()> {
        let started = Instant::now();
        let metrics = self.trainer.evaluate();
        self.costs.eval += started.elapsed();
        self.last_val = metrics.clone();
        let step = self.trainer.step();
        self.emit(Event::Eval { step, split: "val".into(), metrics })
    }

    /// Probe metrics of each listed layer on the fixed probe batch, one `Probe` event per
    /// layer, fed to the detectors as `<layer>/<metric>`. Returns whether the phase has
    /// changed at this step (`switched`: it already had, so no rule switches again).
    fn probe(&mut self, switched: bool) -> Result<bool> {
        let step = self.trainer.step();
        let wanted: Vec<String> = self.trainer.config().probes.layers.iter().map(|l| l.get_ref().clone()).collect();
        let mut all = Metrics::new();
        let started = Instant::now();
        let features = self.trainer.probe_features();
        self.costs.probes += started.elapsed();
        for feature in features {
            if !wanted.contains(&feature.layer) {
                continue;
            }
            let started = Instant::now();
            let metrics = crate::probes::layer_metrics(&feature);
            self.costs.probes += started.elapsed();
            all.extend(metrics.iter().map(|(k, v)| (format!("{}/{k}", feature.layer), *v)));
            self.emit(Event::Probe { step, layer: feature.layer, metrics })?;
        }
        let fired = self.push_signals(step, &all);
        self.handle_signals(fired, switched)
    }

    /// Evaluates at the final step unless that step was just evaluated.
    fn final_eval(&mut self) -> Result<()> {
        let every = self.trainer.eval_every();
        if every == 0 || self.trainer.step() % every != 0 {
            self.eval()?;
        }
        Ok(())
    }

    /// Writes a checkpoint. The log is flushed and synced first, up to this step, so a
    /// checkpoint is never ahead of the log: a resume from it never skips logged steps
    /// (`checkpoint::save` then makes it visible atomically: temporary names, fsync,
    /// rename, fsync of the directory).
    fn checkpoint(&mut self, pinned: bool) -> Result<()> {
        self.log.sync().context("cannot sync the run log before a checkpoint")?;
        let dir = self.dir.checkpoints();
        let path = checkpoint::save(&self.trainer, &dir, pinned)?;
        checkpoint::prune(&dir, self.trainer.config().checkpoint.keep);
        let rel = path.strip_prefix(&self.dir.path).unwrap_or(&path).display().to_string();
        let step = self.trainer.step();
        self.emit(Event::Checkpoint { step, path: rel })
    }

    fn switch(&mut self, index: usize, cause: PhaseCause, detail: Option<String>) -> Result<()> {
        let from = self.trainer.phase().name().to_string();
        let note = self.trainer.switch_to(index);
        self.signals.enter_phase(self.trainer.phase());
        let to = self.trainer.phase().name().to_string();
        let step = self.trainer.step();
        self.emit(Event::PhaseChanged { step, from: Some(from), to: to.clone(), cause, detail })?;
        if let Some(n) = note {
            self.log_line(LogLevel::Info, n)?;
        }
        if let Ok(mut s) = self.status.lock() {
            s.phase = to;
        }
        self.sync_suggestions();
        // A checkpoint at every phase change, kept from pruning: the branch points.
        self.checkpoint(true)
    }

    /// Applies one command between steps, records it, and answers the client.
    fn apply(&mut self, p: Pending) -> Result<Option<Exit>> {
        let step = self.trainer.step();
        let mut exit = None;
        let outcome: std::result::Result<String, String> = match &p.command {
            Command::Switch { phase } => match self.trainer.config().phase_index(phase) {
                Some(i) if i == self.trainer.phase_index() => Err(format!("already in phase \"{phase}\"")),
                Some(i) => Ok(i),
                None => Err(format!(
                    "unknown phase \"{phase}\", expected one of {}",
                    self.trainer.config().phase_names().join(", ")
                )),
            }
            .map(|i| {
                let from = self.trainer.phase().name().to_string();
                (i, format!("switched {from} → {phase} at step {step}"))
            })
            .map(|(i, msg)| {
                self.pending_switch = Some((i, PhaseCause::Manual, Some(format!("by {}", p.client))));
                msg
            }),
            Command::Pause if self.paused => Err("already paused".into()),
            Command::Pause => {
                self.paused = true;
                Ok(format!("paused at step {step}"))
            }
            Command::Resume if !self.paused => Err("not paused".into()),
            Command::Resume => {
                self.paused = false;
                Ok(format!("resumed at step {step}"))
            }
            Command::Stop => {
                exit = Some(Exit::Stopped(format!("stopped by {}", p.client)));
                Ok(format!("stopping at step {step} (checkpoint, then stop)"))
            }
            Command::Checkpoint => Ok(format!("checkpoint at step {step}")),
            Command::Set { key, value } => self.trainer.set(key, *value),
            Command::Accept { id } => match self.signals.take(*id) {
                Some(s) => match self.trainer.config().phase_index(&s.to_phase) {
                    Some(i) => {
                        let detail = format!("suggestion {} accepted by {}: {}", s.id, p.client, s.because);
                        self.pending_switch = Some((i, PhaseCause::Suggestion, Some(detail)));
                        Ok(format!("accepted suggestion {}: switching to {} at step {step}", s.id, s.to_phase))
                    }
                    None => Err(format!("suggested phase \"{}\" is not in the plan", s.to_phase)),
                },
                None => Err(no_suggestion(*id)),
            },
            Command::Plan { config } => self.change_plan(config),
            Command::Dismiss { id } => match self.signals.take(*id) {
                Some(s) => Ok(format!("dismissed suggestion {} (switch to {})", s.id, s.to_phase)),
                None => Err(no_suggestion(*id)),
            },
        };
        let (applied, message) = match outcome {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        self.emit(Event::Command {
            step,
            t: now_unix(),
            client: p.client.clone(),
            command: p.command.clone(),
            applied,
            message: message.clone(),
        })?;
        if applied {
            if let Some((i, cause, detail)) = self.pending_switch.take() {
                self.switch(i, cause, detail)?;
            }
            if p.command == Command::Checkpoint {
                self.checkpoint(false)?;
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.paused = self.paused;
        }
        self.sync_suggestions();
        let _ = p.reply.send(Reply { ok: applied, step, message });
        Ok(exit)
    }
}

impl Host {
    /// Applies an edited config's future phases: the task, model and every phase up to
    /// the current one must be unchanged (they have already happened).
    fn change_plan(&mut self, text: &str) -> std::result::Result<String, String> {
        let new = config::parse(&self.dir.config().display().to_string(), text).map_err(|e| e.to_string())?;
        let old = self.trainer.config();
        use crate::config::as_json as json;
        let current = self.trainer.phase_index();
        let same_head =
            new.phases.len() > current && (0..=current).all(|i| json(&new.phases[i]) == json(&old.phases[i]));
        if !same_head {
            return Err(format!(
                "phases up to the current one (\"{}\") must stay as they are; only later phases can change",
                old.phases[current].name()
            ));
        }
        for (what, a, b) in [
            ("[task]", json(&new.task), json(&old.task)),
            ("[model]", json(&new.model), json(&old.model)),
            ("[probes]", json(&new.probes), json(&old.probes)),
        ] {
            if a != b {
                return Err(format!("{what} cannot change in a live run; only future phases can"));
            }
        }
        if new.phases.iter().map(json).eq(old.phases.iter().map(json)) {
            return Err("the plan is unchanged".into());
        }
        // The validator cannot check a mixture against a csv task's classes (known only
        // once the file is read); `Trainer::new` does, so a plan it would refuse on
        // `--resume` or `branch` must not get in here.
        let counts = self.trainer.class_counts();
        for p in &new.phases[current + 1..] {
            if let Some(w) = &p.class_weights {
                crate::trainer::data::check_mixture(p.name(), w.get_ref(), &counts)?;
            }
        }
        // Larger batches in the new phases must still fit in memory.
        crate::trainer::memory::fits(&new, &self.trainer.data_shape(), None)?;
        let names = new.phase_names();
        self.trainer.replace_future_phases(new.phases.clone());
        let _ = std::fs::write(self.dir.config(), text);
        let step = self.trainer.step();
        let config = serde_json::to_value(self.trainer.config()).map_err(|e| e.to_string())?;
        self.emit(Event::PlanChanged { step, phases: names.clone(), config }).map_err(|e| format!("{e:#}"))?;
        Ok(format!("plan from step {step}: {}", names.join(" → ")))
    }
}

fn no_suggestion(id: Option<u64>) -> String {
    match id {
        Some(id) => format!("no pending suggestion {id}"),
        None => "no pending suggestion".into(),
    }
}

impl Host {
    /// Records signals, and acts on the current phase's rule: an `auto` rule switches
    /// to the next phase, a `suggest` rule records a suggestion. At most one rule switch
    /// a step: with `switched` (the phase already changed at this step) signals are only
    /// recorded. Returns whether the phase has changed at this step.
    fn handle_signals(&mut self, fired: Vec<crate::signals::Signal>, switched: bool) -> Result<bool> {
        let mut switched = switched;
        for sig in fired {
            self.emit(sig.to_event())?;
            if switched {
                continue;
            }
            let next_index = self.trainer.phase_index() + 1;
            let next = self.trainer.config().phases.get(next_index).map(|p| p.name().to_string());
            match self.signals.judge(&sig, self.trainer.steps_in_phase(), next.as_deref()) {
                Some(rules::RuleOutcome::Switch { detail }) => {
                    self.switch(next_index, PhaseCause::Rule, Some(detail))?;
                    switched = true;
                }
                Some(rules::RuleOutcome::Suggest { id, because }) => {
                    let step = self.trainer.step();
                    self.emit(Event::Suggestion { step, id, to_phase: next.unwrap_or_default(), because })?;
                    self.sync_suggestions();
                }
                None => {}
            }
        }
        if !switched {
            let next_index = self.trainer.phase_index() + 1;
            let next = self.trainer.config().phases.get(next_index).map(|p| p.name().to_string());
            match self.signals.confirm_due(self.trainer.step(), next.as_deref()) {
                Some(rules::Confirmation::Confirmed(rules::RuleOutcome::Switch { detail })) => {
                    self.switch(next_index, PhaseCause::Rule, Some(detail))?;
                    switched = true;
                }
                Some(rules::Confirmation::Confirmed(rules::RuleOutcome::Suggest { id, because })) => {
                    let step = self.trainer.step();
                    self.emit(Event::Suggestion { step, id, to_phase: next.unwrap_or_default(), because })?;
                    self.sync_suggestions();
                }
                Some(rules::Confirmation::Dropped(message)) => self.log_line(LogLevel::Info, message)?,
                None => {}
            }
        }
        Ok(switched)
    }

    /// Schedules the run's pending `--switch` (`RunMeta::scheduled_switch`) when the
    /// trainer has not made it yet, as after a branch, a resume or a rollback: before its
    /// step, or at it in another phase (a checkpoint at that step can precede the switch,
    /// which a rule switch at the same step defers by one).
    fn rearm_scheduled_switch(&mut self) -> Result<()> {
        self.scheduled_switch = None;
        let Some(s) = self.meta.scheduled_switch.clone() else { return Ok(()) };
        let step = self.trainer.step();
        if step > s.step || step == s.step && self.trainer.phase().name() == s.phase {
            return Ok(());
        }
        match self.trainer.config().phases.iter().position(|p| p.name() == s.phase) {
            Some(i) => self.scheduled_switch = Some((s.step, i, s.detail)),
            None => self.log_line(
                LogLevel::Warn,
                format!("the switch to \"{}\" at step {} is dropped: the config has no such phase", s.phase, s.step),
            )?,
        }
        Ok(())
    }

    /// With `on_divergence = "rollback"` (a non-finite loss) or `"rollback_on_spike"` (also
    /// a divergence signal on a finite loss): back to the latest good checkpoint (one
    /// whose values are all finite, `checkpoint::restore_last_good`) with the learning
    /// rate scaled down, at most `MAX_ROLLBACKS` times. Returns whether it rolled back.
    fn try_rollback(&mut self, loss: f64) -> Result<bool> {
        const MAX_ROLLBACKS: u32 = 3;
        let run = &self.trainer.config().run;
        if run.on_divergence == config::OnDivergence::Stop || self.rollbacks >= MAX_ROLLBACKS {
            return Ok(false);
        }
        let factor = run.rollback_lr_factor;
        let lr = self.trainer.overrides().lr.unwrap_or(self.trainer.phase().lr());
        let (good, passed_over) = checkpoint::restore_last_good(&mut self.trainer, &self.dir.checkpoints());
        for line in passed_over {
            self.log_line(LogLevel::Warn, format!("rollback: passed over {line}"))?;
        }
        let Some((meta, warnings)) = good else {
            self.log_line(LogLevel::Error, "diverged with no good checkpoint to roll back to".into())?;
            return Ok(false);
        };
        self.rollbacks += 1;
        // A restart from a checkpoint: readers treat later steps as superseded.
        self.emit_started(Some(meta.step))?;
        // The detectors go back to where they were at the checkpoint (as on `--resume`):
        // otherwise they would ignore the steps run again, having seen those numbers.
        self.log.flush()?;
        self.signals = fresh_signals(&self.trainer);
        let history = logged_history(&self.dir, meta.step);
        self.replay_history(history)?;
        self.rearm_scheduled_switch()?;
        let new_lr = lr * factor;
        let _ = self.trainer.set("lr", new_lr);
        self.log_line(
            LogLevel::Warn,
            format!(
                "train_loss {loss}: rolled back to step {} (rollback {}/{MAX_ROLLBACKS}), lr {lr:e} → {new_lr:e}",
                meta.step, self.rollbacks
            ),
        )?;
        for w in warnings {
            self.log_line(LogLevel::Warn, w)?;
        }
        Ok(true)
    }
}

/// Steps per second over a sliding window of about a second, excluding paused time.
struct Rate {
    window_start: Instant,
    window_step: u64,
    value: f64,
}

impl Rate {
    fn new(step: u64) -> Rate {
        Rate { window_start: Instant::now(), window_step: step, value: 0.0 }
    }

    fn tick(&mut self, step: u64) -> f64 {
        let dt = self.window_start.elapsed().as_secs_f64();
        if dt >= 0.5 || self.value == 0.0 && step > self.window_step && dt > 0.0 {
            self.value = (step - self.window_step) as f64 / dt;
            if dt >= 0.5 {
                self.window_start = Instant::now();
                self.window_step = step;
            }
        }
        self.value
    }

    fn pause(&mut self) {
        self.window_start = Instant::now();
        self.value = 0.0;
    }
}
