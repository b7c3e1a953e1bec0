//! Starting a run: a new one, a `--resume`, a branch; the history a restart feeds the
//! detectors; the host's assembly and the events it writes.

use super::*;

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
        job: None,
    };
    dir.write_meta(&meta)?;
    let log = phasetop_core::session::RunLog::create(&dir.log())
        .with_context(|| format!("cannot create {}", dir.log().display()))?;
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
    let (log, dropped) = phasetop_core::session::RunLog::open_append(&dir.log())
        .with_context(|| format!("cannot reopen {}", dir.log().display()))?;
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

pub use phasetop_core::session::resume::logged_history;

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
        job: None,
    };
    dir.write_meta(&meta)?;
    let log = phasetop_core::session::RunLog::create(&dir.log())
        .with_context(|| format!("cannot create {}", dir.log().display()))?;
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
    pub(super) fn assemble(
        dir: RunDir,
        lock: RunLock,
        meta: RunMeta,
        trainer: Trainer,
        log: phasetop_core::session::RunLog,
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
        let first_rule = trainer.phase().until.as_ref().map(|r| r.get_ref().clone());
        Host {
            dir,
            _lock: lock,
            meta,
            trainer,
            log,
            stop_flag,
            status,
            last_val: Metrics::new(),
            scheduled_switch: None,
            last_metrics: Metrics::new(),
            observer: None,
            session: Session::new(signals, SetKeys::Trainer, Delivery::BetweenSteps, first_rule.as_ref()),
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

    pub(super) fn emit_started(&mut self, resumed_from_step: Option<u64>) -> Result<()> {
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
        if let Some(n) = self.trainer.auto_threads() {
            let params: usize = self.trainer.parameters().iter().map(|(_, p)| p.numel()).sum();
            let batch = self.trainer.phase().batch_size();
            self.log_line(
                LogLevel::Info,
                format!(
                    "{n} libtorch thread(s): threads = 0, {params} parameters × batch {batch} = {:.1e} multiply-adds \
                     a step (one thread below {:.0e}, else one per core; docs/PERFORMANCE.md)",
                    (params * batch) as f64,
                    crate::trainer::threads::SMALL_WORK
                ),
            )?;
        }
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

    pub(super) fn emit(&mut self, ev: Event) -> Result<()> {
        let started = Instant::now();
        let result = self.emit_untimed(ev);
        self.costs.log += started.elapsed();
        result
    }

    pub(super) fn emit_untimed(&mut self, ev: Event) -> Result<()> {
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
    pub(super) fn replay_history(&mut self, history: Result<Vec<Event>>) -> Result<()> {
        match history {
            Ok(events) => {
                self.session.signals.replay(&events, &self.trainer.config().phases, self.trainer.phase());
                Ok(())
            }
            Err(e) => self.log_line(LogLevel::Warn, format!("detectors start afresh: {e:#}")),
        }
    }

    /// Shows the pending suggestions in `ctl status`.
    pub(super) fn sync_suggestions(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.suggestions = self.session.suggestions();
        }
    }

    pub(super) fn log_line(&mut self, level: LogLevel, message: String) -> Result<()> {
        let step = self.trainer.step();
        self.emit(Event::Log { step, level, message })
    }
}

/// The detectors a run starts with: the defaults, the phase's rule, collapse on probes.
pub(super) fn fresh_signals(trainer: &Trainer) -> rules::SignalState {
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
