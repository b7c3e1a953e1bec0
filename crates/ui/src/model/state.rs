//! The dashboard's model of a run: a pure fold over events. A live run, a re-attached
//! run and a replayed run are the same events, so they draw the same screen.

use super::series::Series;
use crate::event::{Event, SignalFigures};
use crate::history::{self, Suggestion, SuggestionState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

const MAX_LOG_ROWS: usize = 2000;

pub use phasetop_core::timeline::{PhaseSpan, PlanPhase, Timeline};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Mark {
    Signal,
    Command,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub step: u64,
    pub kind: Mark,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRow {
    pub step: u64,
    pub detector: String,
    pub metric: String,
    pub message: String,
    /// Firings folded into this row: the same detector on the same metric again within
    /// the same phase is one episode (one row, a count and a span), not a row each.
    #[serde(default = "one")]
    pub count: u32,
    /// The step of the latest firing folded in.
    #[serde(default)]
    pub last_step: u64,
    /// The first firing's figures (none from a log written before they were recorded).
    #[serde(default)]
    pub figures: SignalFigures,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRow {
    pub step: u64,
    pub kind: &'static str,
    pub text: String,
}

/// A [`LogRow`] read back (the replay index file): its kind becomes one of
/// [`crate::history::KINDS`] again.
#[derive(Deserialize)]
struct LogRowData {
    step: u64,
    kind: String,
    text: String,
}

impl<'de> Deserialize<'de> for LogRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<LogRow, D::Error> {
        let r = LogRowData::deserialize(d)?;
        Ok(LogRow { step: r.step, kind: crate::history::kind(&r.kind), text: r.text })
    }
}

/// Serialised without its series (the replay index file keeps those compactly itself).
/// The run's timeline (identity, plan, phases, checkpoints, suggestions, status) is the
/// core's one fold, shared with `inspect`; this view adds what the screen draws.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunView {
    #[serde(flatten)]
    pub timeline: Timeline,
    pub step: u64,
    pub last_t: f64,
    #[serde(skip)]
    pub series: BTreeMap<String, Series>,
    pub probe_layers: Vec<String>,
    pub signals: Vec<SignalRow>,
    pub markers: Vec<Marker>,
    pub log: VecDeque<LogRow>,
    pub events_seen: u64,
    /// Whether the trainer runs far below its own recent rate (`starved`).
    pub rate: super::starved::RateWatch,
}

/// The timeline's fields read as the view's own (`view.phases`, `view.ended`, …).
impl std::ops::Deref for RunView {
    type Target = Timeline;
    fn deref(&self) -> &Timeline {
        &self.timeline
    }
}

impl RunView {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> RunView {
        let mut v = RunView::default();
        for e in events {
            v.apply(e);
        }
        v
    }

    pub fn pending_suggestion(&self) -> Option<&Suggestion> {
        self.suggestions.pending().filter(|_| self.ended.is_none())
    }

    /// The newest suggestion, when it was still pending as the run ended (nobody can
    /// answer it any more): expired at the run's last step.
    pub fn expired_suggestion(&self) -> Option<&Suggestion> {
        let end = self.phases.last().and_then(|p| p.end);
        self.suggestions.all.last().filter(|s| {
            self.ended.is_some()
                && s.state == SuggestionState::Expired
                && s.resolved_step.is_some()
                && s.resolved_step == end
        })
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
        self.timeline.apply(ev);
        if let Event::CheckpointPruned { step } = ev {
            // A deleted checkpoint is no longer offered: its row goes.
            self.log.retain(|r| !(r.kind == "ckpt" && r.step == *step));
            return;
        }
        if let Some(line) = history::describe(ev) {
            self.log_row(line.step, line.kind, line.text);
        }
        match ev {
            Event::RunStarted { started_at, resumed_from_step, .. } => {
                self.last_t = *started_at;
                if let Some(s) = resumed_from_step {
                    // What the log holds after the resume step is superseded.
                    self.step = *s;
                    self.rate.reset();
                    self.markers.retain(|m| m.step <= *s);
                }
            }
            Event::Step { step, t, metrics, .. } => {
                self.step = *step;
                self.last_t = *t;
                if let Some(r) = metrics.get("steps_per_s") {
                    self.rate.push(*r);
                }
                self.push_metrics(*step, None, metrics);
            }
            Event::Eval { step, metrics, .. } => self.push_metrics(*step, None, metrics),
            Event::Probe { step, layer, metrics } => {
                if !self.probe_layers.contains(layer) {
                    self.probe_layers.push(layer.clone());
                }
                self.push_metrics(*step, Some(layer), metrics);
            }
            Event::Signal { step, detector, metric, message, figures, .. } => {
                // A repeat in the same phase folds into the episode's row (its first
                // message and step stay; the count and span grow).
                let phase_start = self.timeline.phase_at(*step).map(|p| p.start);
                let same = self.signals.iter().rposition(|r| &r.detector == detector && &r.metric == metric);
                match same {
                    Some(i)
                        if self.timeline.phase_at(self.signals[i].step).map(|p| p.start) == phase_start
                            && self.signals[i].step <= *step =>
                    {
                        let row = &mut self.signals[i];
                        row.count += 1;
                        row.last_step = *step;
                    }
                    _ => self.signals.push(SignalRow {
                        step: *step,
                        detector: detector.clone(),
                        metric: metric.clone(),
                        message: message.clone(),
                        count: 1,
                        last_step: *step,
                        figures: figures.clone(),
                    }),
                }
                self.markers.push(Marker { step: *step, kind: Mark::Signal, label: format!("{detector}({metric})") });
            }
            Event::Command { step, command, applied: true, .. } => {
                if *command == crate::event::Command::Pause {
                    self.rate.reset();
                }
                self.markers.push(Marker { step: *step, kind: Mark::Command, label: command.to_string() });
            }
            _ => {}
        }
    }
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

    /// After `--resume` the dashboard drops the suggestions the host dropped: it offered
    /// one the restarted host no longer had (issue 13). The dashboard's live fold agrees
    /// with `inspect`'s, which knows the resume points in advance.
    #[test]
    fn a_resume_expires_pending_suggestions_as_inspect_and_the_host_do() {
        let started = |resumed| Event::RunStarted {
            run_id: "r".into(),
            schema_major: 1,
            schema_minor: 0,
            config_name: "c".into(),
            config: serde_json::json!({}),
            phases: vec![],
            device: "cpu".into(),
            seed: 1,
            started_at: 1.0,
            resumed_from_step: resumed,
            parent_run: None,
            branch_step: None,
        };
        let suggestion = |step, id| Event::Suggestion { step, id, to_phase: "main".into(), because: "plateau".into() };
        let step = |step| Event::Step { step, phase: "warm".into(), t: 1.0, metrics: Default::default() };
        // Killed at 30 with two suggestions pending, resumed from the checkpoint at 20.
        let events = vec![
            started(None),
            step(10),
            suggestion(10, 1),
            step(25),
            suggestion(25, 2),
            step(30),
            started(Some(20)),
            step(21),
        ];
        let v = RunView::from_events(&events);
        assert!(v.pending_suggestion().is_none(), "offered {:?} after the resume", v.pending_suggestion());
        let got: Vec<(u64, &str, Option<u64>)> =
            v.suggestions.all.iter().map(|g| (g.id, g.state.as_str(), g.resolved_step)).collect();
        assert_eq!(got, [(1, "expired", Some(20))], "the one made at 25 was superseded");
        let records = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| crate::runlog::Record { offset: i as u64, event })
            .collect();
        let contents = crate::runlog::LogContents { schema_major: 1, schema_minor: 0, records, problems: vec![] };
        let summary = phasetop_core::inspect::Summary::from_contents(&contents);
        assert_eq!(summary.suggestions, v.suggestions.all, "inspect and the dashboard agree");
    }
}
