//! The dashboard's model of a run: a pure fold over events. A live run, a re-attached
//! run and a replayed run are the same events, so they draw the same screen.

use super::series::Series;
use crate::event::{Event, RunStatus};
use std::collections::{BTreeMap, VecDeque};

const MAX_LOG_ROWS: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub struct PlanPhase {
    pub name: String,
    pub steps: Option<u64>,
    /// The signal rule that ends it, as text (`jump(val_acc) [suggest]`).
    pub until: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    pub name: String,
    pub start: u64,
    pub end: Option<u64>,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Signal,
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub step: u64,
    pub kind: Mark,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SignalRow {
    pub step: u64,
    pub detector: String,
    pub metric: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SuggestionRow {
    pub step: u64,
    pub id: u64,
    pub to_phase: String,
    pub because: String,
    pub pending: bool,
    /// Still pending when the run ended: nobody can answer it any more.
    pub expired: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub step: u64,
    pub kind: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub run_id: String,
    pub config_name: String,
    pub device: String,
    pub seed: u64,
    pub max_steps: Option<u64>,
    pub started_at: f64,
    pub plan: Vec<PlanPhase>,
    /// The run's resolved config (as JSON), from `run_started` or `plan_changed`.
    pub config: serde_json::Value,
    pub phases: Vec<PhaseSpan>,
    pub step: u64,
    /// `None` while the run has not ended.
    pub ended: Option<RunStatus>,
    pub paused: bool,
    pub last_t: f64,
    pub series: BTreeMap<String, Series>,
    pub probe_layers: Vec<String>,
    pub signals: Vec<SignalRow>,
    pub suggestions: Vec<SuggestionRow>,
    pub markers: Vec<Marker>,
    pub checkpoints: Vec<u64>,
    pub log: VecDeque<LogRow>,
    pub events_seen: u64,
}

impl RunView {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> RunView {
        let mut v = RunView::default();
        for e in events {
            v.apply(e);
        }
        v
    }

    pub fn current_phase(&self) -> Option<&PhaseSpan> {
        self.phases.last()
    }

    pub fn phase_at(&self, step: u64) -> Option<&PhaseSpan> {
        self.phases.iter().rev().find(|p| p.start < step.max(1) || p.start == 0)
    }

    pub fn pending_suggestion(&self) -> Option<&SuggestionRow> {
        self.suggestions.iter().rev().find(|s| s.pending)
    }

    /// The newest suggestion, when it expired with the run (nobody answered it).
    pub fn expired_suggestion(&self) -> Option<&SuggestionRow> {
        self.suggestions.last().filter(|s| s.expired)
    }

    pub fn steps_per_s(&self) -> Option<f64> {
        self.series.get("steps_per_s").and_then(|s| s.last()).map(|(_, v)| v)
    }

    fn log_row(&mut self, step: u64, kind: &'static str, text: String) {
        if self.log.len() == MAX_LOG_ROWS {
            self.log.pop_front();
        }
        self.log.push_back(LogRow { step, kind, text });
    }

    fn push_metrics(&mut self, step: u64, prefix: Option<&str>, metrics: &crate::event::Metrics) {
        for (k, v) in metrics {
            // The key is allocated only for a new series: this runs for every metric of
            // every step (and for every event a replay seek folds).
            if prefix.is_none()
                && let Some(s) = self.series.get_mut(k)
            {
                s.push(step, *v);
                continue;
            }
            let key = match prefix {
                Some(p) => format!("{p}/{k}"),
                None => k.clone(),
            };
            self.series.entry(key).or_default().push(step, *v);
        }
    }

    pub fn apply(&mut self, ev: &Event) {
        self.events_seen += 1;
        match ev {
            Event::RunStarted { run_id, config_name, config, device, seed, started_at, resumed_from_step, .. } => {
                self.run_id = run_id.clone();
                self.config_name = config_name.clone();
                self.device = device.clone();
                self.seed = *seed;
                self.ended = None;
                self.paused = false;
                self.last_t = *started_at;
                if self.started_at == 0.0 {
                    self.started_at = *started_at;
                }
                self.max_steps = config.pointer("/run/max_steps").and_then(|v| v.as_u64()).or(self.max_steps);
                self.plan = plan_from_config(config);
                self.config = config.clone();
                if let Some(s) = resumed_from_step {
                    self.rewind_to(*s);
                    self.log_row(*s, "run", format!("resumed from step {s}"));
                } else {
                    self.log_row(0, "run", format!("started {run_id} on {device}, seed {seed}"));
                }
            }
            Event::Step { step, t, metrics, .. } => {
                self.step = *step;
                self.last_t = *t;
                self.push_metrics(*step, None, metrics);
            }
            Event::Eval { step, metrics, .. } => self.push_metrics(*step, None, metrics),
            Event::Probe { step, layer, metrics } => {
                if !self.probe_layers.contains(layer) {
                    self.probe_layers.push(layer.clone());
                }
                self.push_metrics(*step, Some(layer), metrics);
            }
            Event::Signal { step, detector, metric, message, .. } => {
                self.signals.push(SignalRow {
                    step: *step,
                    detector: detector.clone(),
                    metric: metric.clone(),
                    message: message.clone(),
                });
                self.markers.push(Marker { step: *step, kind: Mark::Signal, label: format!("{detector}({metric})") });
                self.log_row(*step, "signal", format!("{detector} {metric}: {message}"));
            }
            Event::Suggestion { step, id, to_phase, because } => {
                self.suggestions.push(SuggestionRow {
                    step: *step,
                    id: *id,
                    to_phase: to_phase.clone(),
                    because: because.clone(),
                    pending: true,
                    expired: false,
                });
                self.log_row(*step, "suggest", format!("switch → {to_phase}: {because}"));
            }
            Event::Command { step, command, applied, message, client, .. } => {
                use crate::event::Command as C;
                if *applied {
                    match command {
                        C::Pause => self.paused = true,
                        C::Resume => self.paused = false,
                        // The one answered: by id, or the newest pending (as the host picks).
                        C::Accept { id } | C::Dismiss { id } => {
                            let mut pending = self.suggestions.iter_mut().rev().filter(|s| s.pending);
                            let answered = match id {
                                Some(id) => pending.find(|s| s.id == *id),
                                None => pending.next(),
                            };
                            if let Some(s) = answered {
                                s.pending = false;
                            }
                        }
                        _ => {}
                    }
                    self.markers.push(Marker { step: *step, kind: Mark::Command, label: command.to_string() });
                }
                let verdict = if *applied { "" } else { " (refused)" };
                self.log_row(*step, "command", format!("{command}{verdict} by {client}: {message}"));
            }
            Event::PhaseChanged { step, from, to, cause, detail } => {
                // The host drops pending suggestions when the phase changes.
                self.suggestions.iter_mut().for_each(|s| s.pending = false);
                if let Some(last) = self.phases.last_mut() {
                    last.end = Some(*step);
                }
                self.phases.push(PhaseSpan {
                    name: to.clone(),
                    start: *step,
                    end: None,
                    cause: cause.as_str().to_string(),
                });
                let from = from.as_deref().unwrap_or("-");
                let detail = detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                self.log_row(*step, "phase", format!("{from} → {to}: {}{detail}", cause.as_str()));
            }
            Event::PlanChanged { step, phases, config } => {
                self.plan = plan_from_config(config);
                self.config = config.clone();
                self.log_row(*step, "plan", format!("plan changed: {}", phases.join(" → ")));
            }
            Event::Checkpoint { step, path } => {
                self.checkpoints.push(*step);
                self.log_row(*step, "ckpt", path.clone());
            }
            Event::Log { step, level, message } => {
                let kind = match level {
                    crate::event::LogLevel::Info => "info",
                    crate::event::LogLevel::Warn => "warn",
                    crate::event::LogLevel::Error => "error",
                };
                self.log_row(*step, kind, message.clone());
            }
            Event::RunEnded { step, status, message } => {
                self.ended = Some(*status);
                self.paused = false;
                for s in self.suggestions.iter_mut().filter(|s| s.pending) {
                    s.pending = false;
                    s.expired = true;
                }
                if let Some(last) = self.phases.last_mut() {
                    last.end = Some(*step);
                }
                self.log_row(*step, "end", format!("{}: {message}", status.as_str()));
            }
        }
    }

    /// A resume restarts from a checkpoint: what the log holds after it is superseded.
    fn rewind_to(&mut self, step: u64) {
        self.step = step;
        self.phases.retain(|p| p.start <= step);
        if let Some(last) = self.phases.last_mut() {
            last.end = None;
        }
        self.markers.retain(|m| m.step <= step);
        self.checkpoints.retain(|c| *c <= step);
    }
}

fn plan_from_config(config: &serde_json::Value) -> Vec<PlanPhase> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Command, PhaseCause};

    /// The pending suggestion the dashboard offers follows what the host does: `accept`
    /// or `dismiss` answers one (by id, or the newest), a phase change drops the rest.
    #[test]
    fn the_pending_suggestion_follows_answers_and_phase_changes() {
        let suggestion = |step, id| Event::Suggestion { step, id, to_phase: "main".into(), because: "plateau".into() };
        let dismiss = |id| Event::Command {
            step: 5,
            t: 0.0,
            client: "socket#0".into(),
            command: Command::Dismiss { id },
            applied: true,
            message: String::new(),
        };
        let mut v = RunView::default();
        v.apply(&suggestion(1, 1));
        v.apply(&suggestion(2, 2));
        v.apply(&dismiss(Some(1)));
        assert_eq!(v.pending_suggestion().map(|s| s.id), Some(2), "dismissing 1 leaves 2");
        v.apply(&dismiss(None));
        assert_eq!(v.pending_suggestion().map(|s| s.id), None);
        v.apply(&suggestion(3, 3));
        let to = "main".to_string();
        v.apply(&Event::PhaseChanged { step: 4, from: None, to, cause: PhaseCause::Scheduled, detail: None });
        assert!(v.pending_suggestion().is_none(), "a phase change drops it");
    }
}
