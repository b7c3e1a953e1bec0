//! The run loop: steps, evals, probes, checkpoints and phase switches between them.

use super::*;

/// What ended the loop.
pub(super) enum Exit {
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
        // CPU, memory and GPU, sampled off the run loop (`sysmon`), recorded between steps.
        let gpu_index = match self.trainer.config().run.device {
            config::DeviceChoice::Cuda(n) => n as u32,
            _ => 0,
        };
        let (system, _) = phasetop_core::sysmon::spawn(Duration::from_secs(1), gpu_index);
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_loop(&commands, &system)))
        {
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
        for line in self.session.expire("the run ended") {
            self.log_line(LogLevel::Info, line)?;
        }
        if let Some(summary) = self.costs.summary(self.trainer.metrics_time()) {
            self.log_line(LogLevel::Info, summary)?;
        }
        self.emit(Event::RunEnded { step, status, message })?;
        self.log.sync()?;
        Ok(status)
    }

    /// Records the system samples that arrived (an `eval` event, split `system`). Not
    /// while paused: a paused run's log stays as it is (nothing trains; the samples are
    /// dropped), so a paused run can be copied or inspected byte-stable.
    fn record_system(&mut self, system: &Receiver<Metrics>) -> Result<()> {
        while let Ok(metrics) = system.try_recv() {
            if !metrics.is_empty() && !self.session.paused {
                let step = self.trainer.step();
                self.emit(Event::Eval { step, split: phasetop_core::sysmon::SPLIT.into(), metrics })?;
            }
        }
        Ok(())
    }

    pub(super) fn run_loop(&mut self, commands: &Receiver<Pending>, system: &Receiver<Metrics>) -> Result<Exit> {
        let max_steps = self.meta.max_steps;
        let cfg = self.trainer.config().clone();
        let eval_every = self.trainer.eval_every();
        let mut rate = phasetop_core::rate::StepRate::new(self.trainer.step());
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
            self.record_system(system)?;
            // Where the plan acts by itself (its phase's `steps`, `max_steps`), a young
            // suggestion is kept open: the run waits (as paused) for its answer.
            let plan_acts = self.trainer.step() >= max_steps || self.trainer.phase_finished();
            let waits = plan_acts && self.wait_for_suggestion()?;
            if self.session.paused || waits {
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
            metrics.insert(phasetop_core::rate::STEPS_PER_S.into(), rate.tick(step));
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
            if eval_every > 0 && step.is_multiple_of(eval_every) {
                self.eval()?;
                let fired = self.push_signals(step, &self.last_val.clone());
                switched = self.handle_signals(fired, switched)?;
            }
            if cfg.probes.every > 0 && step.is_multiple_of(cfg.probes.every) {
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
            if self.trainer.phase_finished() && self.wait_for_suggestion()? {
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
            } else if cfg.checkpoint.every > 0 && step.is_multiple_of(cfg.checkpoint.every) {
                self.checkpoint(false)?;
            }
            if last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                self.report_progress(max_steps, rate.value());
            }
        }
    }

    /// Whether a pending suggestion is still open (its rule's `open_s`), so the plan's own
    /// next act waits; says so in the log once per suggestion.
    fn wait_for_suggestion(&mut self) -> Result<bool> {
        let Some((id, left)) = self.session.keeps_open(Instant::now()) else { return Ok(false) };
        if let Some(line) = self.session.waiting_note(id, left, self.trainer.step()) {
            self.log_line(LogLevel::Info, line)?;
        }
        Ok(true)
    }

    pub(super) fn report_progress(&mut self, max_steps: u64, steps_per_s: f64) {
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
    pub(super) fn push_signals(&mut self, step: u64, metrics: &Metrics) -> Vec<crate::signals::Signal> {
        let started = Instant::now();
        let fired = self.session.signals.push(step, self.trainer.steps_in_phase(), metrics);
        self.costs.detectors += started.elapsed();
        fired
    }

    pub(super) fn eval(&mut self) -> Result<()> {
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
    pub(super) fn probe(&mut self, switched: bool) -> Result<bool> {
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
    pub(super) fn final_eval(&mut self) -> Result<()> {
        let every = self.trainer.eval_every();
        if every == 0 || !self.trainer.step().is_multiple_of(every) {
            self.eval()?;
        }
        Ok(())
    }

    /// Writes a checkpoint. The log is flushed and synced first, up to this step, so a
    /// checkpoint is never ahead of the log: a resume from it never skips logged steps
    /// (`checkpoint::save` then makes it visible atomically: temporary names, fsync,
    /// rename, fsync of the directory).
    pub(super) fn checkpoint(&mut self, pinned: bool) -> Result<()> {
        self.log.sync().context("cannot sync the run log before a checkpoint")?;
        let dir = self.dir.checkpoints();
        let path = checkpoint::save(&self.trainer, &dir, pinned)?;
        let pruned = checkpoint::prune(&dir, self.trainer.config().checkpoint.keep);
        let rel = path.strip_prefix(&self.dir.path).unwrap_or(&path).display().to_string();
        let step = self.trainer.step();
        self.emit(Event::Checkpoint { step, path: rel })?;
        for step in pruned {
            self.emit(Event::CheckpointPruned { step })?;
        }
        Ok(())
    }

    pub(super) fn switch(&mut self, index: usize, cause: PhaseCause, detail: Option<String>) -> Result<()> {
        let from = self.trainer.phase().name().to_string();
        let note = self.trainer.switch_to(index);
        let expired = self.session.enter_rule(self.trainer.phase().until.as_ref(), "the phase changed");
        let to = self.trainer.phase().name().to_string();
        let step = self.trainer.step();
        self.emit(Event::PhaseChanged { step, from: Some(from), to: to.clone(), cause, detail })?;
        for line in expired {
            self.log_line(LogLevel::Info, line)?;
        }
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
}
