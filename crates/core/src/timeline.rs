//! A run's timeline: the one fold of its log that every reader shares — `inspect` (and
//! `ls`, through it), the dashboard's `RunView` (which adds only its series, markers and
//! rows) and the hosts' resume. Who the run is, its plan, its phases, checkpoints,
//! suggestions, resumes, and whether it is paused or ended.
//!
//! A live fold sees the events a later `--resume` supersedes before the resume itself; it
//! rewinds when the resume arrives ([`Timeline::apply`]). A reader with the whole log may
//! skip superseded events instead (`history::Supersession`): both give the same timeline.

use crate::event::{Command, Event, RunStatus};
use crate::history::Suggestions;
use serde::{Deserialize, Serialize};

/// A phase of the plan as the run's config gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPhase {
    pub name: String,
    pub steps: Option<u64>,
    /// The signal rule that ends it, as text (`jump(val_acc) [suggest]`).
    pub until: Option<String>,
}

/// A phase as it happened: from `start` to `end` (open while it goes on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub name: String,
    pub start: u64,
    pub end: Option<u64>,
    /// Why it began: start, scheduled, manual, rule, suggestion.
    pub cause: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeline {
    pub run_id: String,
    pub config_name: String,
    pub device: String,
    /// `None` until a `run_started` is seen.
    pub seed: Option<u64>,
    /// When the run first started (unix seconds).
    pub started_at: f64,
    /// The run's end step (`run.max_steps` in its config), when it has one.
    pub max_steps: Option<u64>,
    /// The run's resolved config (as JSON), from `run_started` or `plan_changed`.
    pub config: serde_json::Value,
    pub plan: Vec<PlanPhase>,
    pub phases: Vec<PhaseSpan>,
    pub checkpoints: Vec<u64>,
    /// Every suggestion and what became of it.
    pub suggestions: Suggestions,
    /// The step each resume (or rollback) continued from, in order.
    pub resumes: Vec<u64>,
    pub paused: bool,
    /// `None` while the run has not ended.
    pub ended: Option<RunStatus>,
    pub end_message: Option<String>,
    /// What an external job said about itself at `init` (`run_info`).
    pub job_config: serde_json::Value,
    pub tags: Vec<String>,
    pub notes: String,
    pub group: Option<String>,
    /// The run's final figures (`summary` events; the last value of a key wins).
    pub summary: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Timeline {
    pub fn apply(&mut self, ev: &Event) {
        self.suggestions.apply(ev);
        match ev {
            Event::RunStarted { run_id, config_name, config, device, seed, started_at, resumed_from_step, .. } => {
                self.run_id.clone_from(run_id);
                self.config_name.clone_from(config_name);
                self.device.clone_from(device);
                self.seed = Some(*seed);
                if self.started_at == 0.0 {
                    self.started_at = *started_at;
                }
                self.max_steps = config.pointer("/run/max_steps").and_then(|v| v.as_u64()).or(self.max_steps);
                self.plan = plan_of(config);
                self.config = config.clone();
                self.paused = false;
                self.ended = None;
                self.end_message = None;
                if let Some(s) = *resumed_from_step {
                    self.rewind_to(s);
                    self.resumes.push(s);
                }
            }
            Event::Command { command, applied: true, .. } => match command {
                Command::Pause => self.paused = true,
                Command::Resume => self.paused = false,
                _ => {}
            },
            Event::PhaseChanged { step, to, cause, .. } => {
                self.close_phase(*step);
                self.phases.push(PhaseSpan { name: to.clone(), start: *step, end: None, cause: cause.as_str().into() });
            }
            Event::PlanChanged { config, .. } => {
                self.plan = plan_of(config);
                self.config = config.clone();
            }
            Event::Checkpoint { step, .. } => self.checkpoints.push(*step),
            Event::CheckpointPruned { step } => self.checkpoints.retain(|c| c != step),
            Event::RunInfo { job_config, tags, notes, group, .. } => {
                self.job_config = job_config.clone();
                self.tags = tags.clone();
                self.notes = notes.clone();
                self.group = group.clone();
            }
            Event::Summary { values, .. } => {
                self.summary.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Event::RunEnded { step, status, message } => {
                self.close_phase(*step);
                self.paused = false;
                self.ended = Some(*status);
                self.end_message = Some(message.clone());
            }
            _ => {}
        }
    }

    pub fn current_phase(&self) -> Option<&PhaseSpan> {
        self.phases.last()
    }

    /// The phase a step trained in (a change logged at step S: S is the old phase's).
    pub fn phase_at(&self, step: u64) -> Option<&PhaseSpan> {
        self.phases.iter().rev().find(|p| p.start < step.max(1) || p.start == 0)
    }

    fn close_phase(&mut self, step: u64) {
        if let Some(p) = self.phases.last_mut()
            && p.end.is_none()
        {
            p.end = Some(step.max(p.start));
        }
    }

    /// A resume restarts from `step`: what a live fold holds after it is superseded.
    fn rewind_to(&mut self, step: u64) {
        self.phases.retain(|p| p.start <= step);
        if let Some(last) = self.phases.last_mut() {
            last.end = None;
        }
        self.checkpoints.retain(|c| *c <= step);
    }
}

/// The plan's phases from a run's config (a built-in or an external one: both carry
/// `phase = [{name, steps, until, …}]`).
pub fn plan_of(config: &serde_json::Value) -> Vec<PlanPhase> {
    let Some(phases) = config.get("phase").and_then(|p| p.as_array()) else { return Vec::new() };
    phases
        .iter()
        .map(|p| PlanPhase {
            name: p.get("name").and_then(|n| n.as_str()).unwrap_or("?").to_string(),
            steps: p.get("steps").and_then(|s| s.as_u64()),
            until: p.get("until").filter(|u| !u.is_null()).map(|u| {
                format!(
                    "{}({}) [{}]",
                    u.get("detector").and_then(|d| d.as_str()).unwrap_or("?"),
                    u.get("metric").and_then(|d| d.as_str()).unwrap_or("?"),
                    u.get("mode").and_then(|d| d.as_str()).unwrap_or("suggest")
                )
            }),
        })
        .collect()
}
