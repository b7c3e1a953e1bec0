//! The signal rules' outcomes (switch, suggest), a scheduled switch, and the
//! divergence rollback.

use super::*;

impl Host {
    /// Records signals, and acts on the current phase's rule: an `auto` rule switches
    /// to the next phase, a `suggest` rule records a suggestion. At most one rule switch
    /// a step: with `switched` (the phase already changed at this step) signals are only
    /// recorded. Returns whether the phase has changed at this step.
    pub(super) fn handle_signals(&mut self, fired: Vec<crate::signals::Signal>, switched: bool) -> Result<bool> {
        let mut switched = switched;
        let next_index = self.trainer.phase_index() + 1;
        let next = self.trainer.config().phases.get(next_index).map(|p| p.name().to_string());
        let (step, in_phase) = (self.trainer.step(), self.trainer.steps_in_phase());
        for effect in self.session.judge(fired, step, in_phase, next.as_deref(), switched) {
            match effect {
                Effect::Record(ev) => {
                    let suggestion = matches!(ev, Event::Suggestion { .. });
                    self.emit(ev)?;
                    if suggestion {
                        self.sync_suggestions();
                    }
                }
                Effect::Switch(detail) => {
                    self.switch(next_index, PhaseCause::Rule, Some(detail))?;
                    switched = true;
                }
                Effect::Note(message) => self.log_line(LogLevel::Info, message)?,
            }
        }
        // A `hold` rule may have paused the run for its suggestion.
        if let Ok(mut s) = self.status.lock() {
            s.paused = self.session.paused;
        }
        Ok(switched)
    }

    /// Schedules the run's pending `--switch` (`RunMeta::scheduled_switch`) when the
    /// trainer has not made it yet, as after a branch, a resume or a rollback: before its
    /// step, or at it in another phase (a checkpoint at that step can precede the switch,
    /// which a rule switch at the same step defers by one).
    pub(super) fn rearm_scheduled_switch(&mut self) -> Result<()> {
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
    pub(super) fn try_rollback(&mut self, loss: f64) -> Result<bool> {
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
        self.session.signals = fresh_signals(&self.trainer);
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
