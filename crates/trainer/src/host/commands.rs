//! Operator commands between steps, and live plan edits.

use super::*;

impl Host {
    /// Applies one command between steps, records it, and answers the client.
    pub(super) fn apply(&mut self, p: Pending) -> Result<Option<Exit>> {
        let step = self.trainer.step();
        let mut exit = None;
        let mut switch = None;
        let names = self.trainer.config().phase_names();
        let current = self.trainer.phase_index();
        let at = Position { names: &names, current, target: current, step };
        let outcome: std::result::Result<String, String> = match self.session.decide(&p.command, &p.client, at) {
            Err(e) => Err(e),
            Ok(Decision::Done(m)) => Ok(m),
            Ok(Decision::Switch(sw, m)) => {
                switch = Some(sw);
                Ok(m)
            }
            Ok(Decision::Stop) => {
                exit = Some(Exit::Stopped(format!("stopped by {}", p.client)));
                Ok(format!("stopping at step {step} (checkpoint, then stop)"))
            }
            Ok(Decision::Checkpoint) => Ok(format!("checkpoint at step {step}")),
            Ok(Decision::Set { key, value }) => self.trainer.set(&key, value),
            Ok(Decision::Plan(text)) => self.change_plan(&text),
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
            if let Some(resume) = self.session.release(step) {
                self.emit(resume)?;
            }
            if let Some((i, cause, detail)) = switch {
                self.switch(i, cause, detail)?;
            }
            if p.command == Command::Checkpoint {
                self.checkpoint(false)?;
            }
        }
        if let Ok(mut s) = self.status.lock() {
            s.paused = self.session.paused;
        }
        self.sync_suggestions();
        let _ = p.reply.send(Reply { ok: applied, step, message });
        Ok(exit)
    }
}

impl Host {
    /// Applies an edited config's future phases: the task, model and every phase up to
    /// the current one must be unchanged (they have already happened).
    pub(super) fn change_plan(&mut self, text: &str) -> std::result::Result<String, String> {
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
        let _ = crate::rundir::write_atomic(&self.dir.config(), text.as_bytes());
        let step = self.trainer.step();
        let config = serde_json::to_value(self.trainer.config()).map_err(|e| e.to_string())?;
        self.emit(Event::PlanChanged { step, phases: names.clone(), config }).map_err(|e| format!("{e:#}"))?;
        Ok(format!("plan from step {step}: {}", names.join(" → ")))
    }
}
