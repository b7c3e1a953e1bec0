//! Operators' commands on an external run (`ctl`, the dashboard): decided by the session
//! (`session::Session::decide`), recorded at once, delivered at the job's next sync; live
//! plan edits; what `init` records.

use super::*;

impl State {
    /// An operator's command (`ctl`, the dashboard), recorded and answered at once; what
    /// it asks of the job is delivered at the job's next sync.
    pub fn command(&mut self, command: Command, client: &str) -> Reply {
        self.flush_open();
        let step = self.step;
        let target = self.pending_switch.as_ref().or(self.in_flight.as_ref()).map_or(self.phase, |p| p.0);
        let names = self.cfg.phase_names();
        let at = Position { names: &names, current: self.phase, target, step };
        let outcome: Result<String, String> = match self.session.decide(&command, client, at) {
            Err(e) => Err(e),
            Ok(Decision::Done(m)) => {
                match command {
                    Command::Pause => self.rate.pause(),
                    Command::Resume => self.rate.resume(step),
                    _ => {}
                }
                Ok(m)
            }
            Ok(Decision::Switch(sw, m)) => {
                self.pending_switch = Some(sw);
                Ok(m)
            }
            Ok(Decision::Stop) => {
                if self.stop.is_none() {
                    self.stop = Some((client.to_string(), Instant::now()));
                }
                let g = self.cfg.run.stop_grace_s;
                Ok(format!(
                    "stopping: the job is told to stop at its next sync; SIGTERM after {g} s, SIGKILL after {} s",
                    2.0 * g
                ))
            }
            Ok(Decision::Checkpoint) => {
                self.checkpoint_asked = true;
                Ok(format!("checkpoint asked of the job at its next sync (after step {step})"))
            }
            Ok(Decision::Set { key, value }) => {
                self.pending_set.insert(key.clone(), self.session.keys.json_value(&key, value));
                Ok(format!("{key}={value} goes to the job at its next sync"))
            }
            Ok(Decision::Plan(text)) => self.change_plan(&text),
        };
        let (applied, message) = match outcome {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        self.record(Event::Command {
            step,
            t: now_unix(),
            client: client.to_string(),
            command,
            applied,
            message: message.clone(),
        });
        if applied && let Some(resume) = self.session.release(step) {
            self.rate.resume(step);
            self.record(resume);
        }
        Reply { ok: applied, step, message }
    }
}

impl State {
    /// `ctl plan CONFIG` (and a dashboard's plan edit): an edited external config's future
    /// phases, under the built-in host's rule — `[run]`, `[probes]` and every phase up to
    /// the current one unchanged (they have happened or are happening). Recorded as a
    /// `plan_changed` with the new config; the job sees a new phase's settings when it
    /// gets there.
    fn change_plan(&mut self, text: &str) -> Result<String, String> {
        let new = crate::config::external::parse("plan", text).map_err(|e| e.to_string())?;
        use crate::config::as_json as json;
        let current = self.phase;
        // A switch queued or in flight names a phase by its index in the plan it was made in.
        if let Some((i, ..)) = self.pending_switch.as_ref().or(self.in_flight.as_ref()) {
            return Err(format!(
                "a change to phase \"{}\" waits for the job's next sync; edit the plan after it",
                self.cfg.phases[*i].name()
            ));
        }
        if let Some(why) = &self.plan_done {
            return Err(format!("the plan is over ({why}): the job has been told to stop"));
        }
        let same_head =
            new.phases.len() > current && (0..=current).all(|i| json(&new.phases[i]) == json(&self.cfg.phases[i]));
        if !same_head {
            return Err(format!(
                "phases up to the current one (\"{}\") must stay as they are; only later phases can change",
                self.phase_name()
            ));
        }
        for (what, a, b) in
            [("[run]", json(&new.run), json(&self.cfg.run)), ("[probes]", json(&new.probes), json(&self.cfg.probes))]
        {
            if a != b {
                return Err(format!("{what} cannot change in a live run; only future phases can"));
            }
        }
        if new.phases.iter().map(json).eq(self.cfg.phases.iter().map(json)) {
            return Err("the plan is unchanged".into());
        }
        let names = new.phase_names();
        let config = json(&new);
        self.cfg = new;
        if let Some(path) = &self.plan_file
            && let Err(e) = crate::rundir::write_atomic(path, text.as_bytes())
        {
            self.note(LogLevel::Warn, format!("cannot rewrite {}: {e:#}", path.display()));
        }
        self.session.keys = SetKeys::of_run_config(&external_run_config(&self.cfg));
        let step = self.step;
        self.emit(Event::PlanChanged { step, phases: names.clone(), config }).map_err(|e| e.to_string())?;
        Ok(format!("plan from step {step}: {}", names.join(" → ")))
    }
}

/// Bounds on what `init` records: the config as JSON up to 64 KiB, at most 64 tags of
/// 100 bytes, notes up to 4 KiB, a group name up to 200 bytes.
pub(super) type RunInfo = (serde_json::Value, Vec<String>, String, Option<String>);
pub(super) fn run_info(
    config: serde_json::Value,
    tags: Vec<String>,
    notes: String,
    group: Option<String>,
) -> Result<RunInfo, String> {
    if config.to_string().len() > 64 << 10 {
        return Err("init(config=…) is larger than 64 KiB as JSON: not recorded".into());
    }
    if tags.len() > 64 || tags.iter().any(|t| t.is_empty() || t.len() > 100) {
        return Err("init(tags=…): at most 64 tags, each 1 to 100 bytes".into());
    }
    if notes.len() > 4096 || group.as_ref().is_some_and(|g| g.len() > 200) {
        return Err("init(notes=…) up to 4 KiB, group up to 200 bytes".into());
    }
    Ok((config, tags, notes, group))
}
