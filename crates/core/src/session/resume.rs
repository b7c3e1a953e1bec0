//! Where a restarted run goes on from, for both hosts' `--resume`: the log's history up
//! to the resume step (the one fold of what no resume superseded, `history::Supersession`),
//! and for an external run the plan's position at that step.

use crate::event::Event;
use crate::rundir::RunDir;
use crate::runlog;
use anyhow::{Context, Result};
use std::path::Path;

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
        let mut current = crate::history::Supersession::of(events.iter()).upto(upto);
        out.extend(events.into_iter().filter(|ev| current.keeps(ev)));
    }
    Ok(out)
}

/// Where an external run resumes: its job restarts from its own latest checkpoint (the
/// last `checkpoint` event still current), or, with none, after the last step it logged.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumption {
    /// The step the run goes on from: later logged events are superseded.
    pub step: u64,
    /// The checkpoint the job resumes from (relative to the run directory), if any.
    pub checkpoint: Option<String>,
    /// The phase at that step, and the step it began at.
    pub phase: String,
    pub phase_start: u64,
    /// The command the run was started with (the latest start's).
    pub command: Vec<String>,
}

/// [`Resumption`] from a run's current history (`logged_history(dir, u64::MAX)`).
pub fn external_resumption(history: &[Event]) -> Result<Resumption> {
    let mut last_step = 0;
    let mut checkpoint = None;
    let mut command = None;
    for ev in history {
        match ev {
            Event::RunStarted { config, .. } => {
                let ext = config.get("external").context("not an external run (use `phasetop train --resume`)")?;
                command = ext.get("command").and_then(|c| serde_json::from_value::<Vec<String>>(c.clone()).ok());
            }
            Event::Checkpoint { step, path } => checkpoint = Some((*step, path.clone())),
            _ => {}
        }
        if let Some(s) = ev.step() {
            last_step = last_step.max(s);
        }
    }
    let command = command.context("the log has no run_started")?;
    let step = checkpoint.as_ref().map_or(last_step, |c| c.0);
    // The phase there, from the one timeline fold every reader uses.
    let mut timeline = crate::timeline::Timeline::default();
    for ev in history.iter().filter(|e| e.step().is_none_or(|s| s <= step)) {
        timeline.apply(ev);
    }
    let span = timeline.current_phase().context("the log has no phase")?;
    let (phase, phase_start) = (span.name.clone(), span.start);
    Ok(Resumption { step, checkpoint: checkpoint.map(|c| c.1), phase, phase_start, command })
}
