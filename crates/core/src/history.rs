//! What a run's log means over its restarts, computed once for every reader: `inspect`
//! ([`crate::inspect`]), the dashboard's `RunView`, the host's `logged_history` and the
//! story/headless printers.
//!
//! - **Supersession.** A `run_started` with `resumed_from_step: s` (a `--resume`, or a
//!   divergence rollback) supersedes what the earlier incarnations logged after step `s`.
//!   A reader that has the whole log ([`Supersession`]) skips those events; a live fold
//!   (the dashboard) rewinds when the resume arrives ([`Suggestions::apply`] does its part).
//! - **Suggestions.** A suggestion is pending until an applied `accept`/`dismiss` answers
//!   it (by id, or the newest pending one, as the host picks), or it expires: the host
//!   drops pending suggestions when the phase changes and when the run restarts.
//! - **Descriptions.** [`describe`]: the one line an event is told as (the replay story,
//!   the headless printer, the dashboard's events panel).

use crate::event::{Command, Event, LogLevel};
use serde::{Deserialize, Serialize};

/// What later resumes supersede: for the events after the k-th `RunStarted` (k = 0: before
/// the first), the last step still current — the smallest resume step of the
/// `RunStarted` events that follow them; `None` when no later resume supersedes any.
pub fn superseded_after<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<Option<u64>> {
    cutoffs(
        events
            .filter_map(|e| match e {
                Event::RunStarted { resumed_from_step, .. } => Some(*resumed_from_step),
                _ => None,
            })
            .collect(),
    )
}

/// [`superseded_after`] from each start's `resumed_from_step`, in log order.
pub fn cutoffs(resumes: Vec<Option<u64>>) -> Vec<Option<u64>> {
    let mut cutoff = vec![None; resumes.len() + 1];
    for i in (0..resumes.len()).rev() {
        cutoff[i] = match (resumes[i], cutoff[i + 1]) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    cutoff
}

/// Walks a log's events in order and says which are still current (not superseded by a
/// later resume), given the cutoffs known from a first pass ([`superseded_after`]).
#[derive(Clone, Debug)]
pub struct Supersession {
    cutoff: Vec<Option<u64>>,
    segment: usize,
    /// Events past this step are dropped too (a branch's parent history ends there).
    upto: Option<u64>,
}

impl Supersession {
    pub fn new(cutoff: Vec<Option<u64>>) -> Supersession {
        Supersession { cutoff, segment: 0, upto: None }
    }

    /// For a log held in memory.
    pub fn of<'a>(events: impl Iterator<Item = &'a Event>) -> Supersession {
        Supersession::new(superseded_after(events))
    }

    /// Also drops every event after step `upto`.
    pub fn upto(mut self, upto: u64) -> Supersession {
        self.upto = Some(upto);
        self
    }

    /// Whether `event`, the next in log order, is current. Every event must pass here once.
    pub fn keeps(&mut self, event: &Event) -> bool {
        if matches!(event, Event::RunStarted { .. }) {
            self.segment += 1;
            return true;
        }
        let Some(step) = event.step() else { return true };
        let limit = self.cutoff.get(self.segment).copied().flatten();
        !(limit.is_some_and(|l| step > l) || self.upto.is_some_and(|u| step > u))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuggestionState {
    Pending,
    Accepted,
    Dismissed,
    /// The phase changed, or the run restarted, before an answer.
    Expired,
}

impl SuggestionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionState::Pending => "pending",
            SuggestionState::Accepted => "accepted",
            SuggestionState::Dismissed => "dismissed",
            SuggestionState::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub step: u64,
    pub id: u64,
    pub to_phase: String,
    pub because: String,
    pub state: SuggestionState,
    /// The step it was answered or dropped at.
    pub resolved_step: Option<u64>,
}

/// Every suggestion of a run and what became of it, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Suggestions {
    pub all: Vec<Suggestion>,
}

impl Suggestions {
    pub fn apply(&mut self, ev: &Event) {
        match ev {
            Event::Suggestion { step, id, to_phase, because } => self.all.push(Suggestion {
                step: *step,
                id: *id,
                to_phase: to_phase.clone(),
                because: because.clone(),
                state: SuggestionState::Pending,
                resolved_step: None,
            }),
            Event::Command { step, command: Command::Accept { id }, applied: true, .. } => {
                self.resolve(*id, SuggestionState::Accepted, *step)
            }
            Event::Command { step, command: Command::Dismiss { id }, applied: true, .. } => {
                self.resolve(*id, SuggestionState::Dismissed, *step)
            }
            // The host drops what is pending when the phase changes or the run ends.
            Event::PhaseChanged { step, .. } | Event::RunEnded { step, .. } => self.expire(*step),
            Event::RunStarted { resumed_from_step: Some(s), .. } => {
                // A live fold still holds what the resume supersedes: the suggestions
                // made after `s` never were, and answers after `s` were not given.
                self.all.retain(|g| g.step <= *s);
                for g in &mut self.all {
                    if g.resolved_step.is_some_and(|r| r > *s) {
                        (g.state, g.resolved_step) = (SuggestionState::Pending, None);
                    }
                }
                self.expire(*s);
            }
            _ => {}
        }
    }

    /// The newest pending suggestion.
    pub fn pending(&self) -> Option<&Suggestion> {
        self.all.iter().rev().find(|g| g.state == SuggestionState::Pending)
    }

    /// `id`, or the newest pending one (as the host picks).
    fn resolve(&mut self, id: Option<u64>, state: SuggestionState, step: u64) {
        let mut pending = self.all.iter_mut().rev().filter(|g| g.state == SuggestionState::Pending);
        let target = match id {
            Some(id) => pending.find(|g| g.id == id),
            None => pending.next(),
        };
        if let Some(g) = target {
            (g.state, g.resolved_step) = (state, Some(step));
        }
    }

    /// The host drops pending suggestions when the phase changes, the run ends or restarts.
    fn expire(&mut self, step: u64) {
        for g in self.all.iter_mut().filter(|g| g.state == SuggestionState::Pending) {
            (g.state, g.resolved_step) = (SuggestionState::Expired, Some(step));
        }
    }
}

/// One event told in one line: the step it happened at, a short kind (`phase`, `signal`,
/// `command`, …, at most 9 characters) and the text.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub step: u64,
    pub kind: &'static str,
    pub text: String,
}

impl std::fmt::Display for Line {
    /// The story's layout: `      25  phase     warm → main (scheduled)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:>9}  {:<9} {}", self.step, self.kind, self.text)
    }
}

/// The line an event is told as, or `None` for the events nobody tells one by one
/// (steps, evals, probes).
pub fn describe(e: &Event) -> Option<Line> {
    let (step, kind, text) = match e {
        Event::RunStarted { run_id, device, resumed_from_step: None, parent_run: Some(p), branch_step, .. } => {
            let at = branch_step.unwrap_or(0);
            (at, "branch", format!("{run_id} from {p} at step {at} on {device}"))
        }
        Event::RunStarted { run_id, device, seed, resumed_from_step: None, .. } => {
            (0, "start", format!("{run_id} on {device}, seed {seed}"))
        }
        Event::RunStarted { resumed_from_step: Some(f), .. } => (*f, "resume", format!("from step {f}")),
        Event::PhaseChanged { step, from, to, cause, detail } => (
            *step,
            "phase",
            format!(
                "{} → {to} ({}{})",
                from.as_deref().unwrap_or("-"),
                cause.as_str(),
                detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
        ),
        Event::Signal { step, detector, metric, message, .. } => {
            (*step, "signal", format!("{detector}({metric}) {message}"))
        }
        Event::Suggestion { step, id, to_phase, because } => {
            (*step, "suggest", format!("#{id} switch → {to_phase}: {because}"))
        }
        Event::Command { step, command, applied, message, client, .. } => {
            let verdict = if *applied { "applied" } else { "refused" };
            let msg = if message.is_empty() { String::new() } else { format!(": {message}") };
            (*step, "command", format!("{command} ({verdict} by {client}){msg}"))
        }
        Event::PlanChanged { step, phases, .. } => (*step, "plan", phases.join(" → ")),
        Event::Checkpoint { step, path } => (*step, "ckpt", path.clone()),
        Event::CheckpointPruned { step } => {
            (*step, "ckpt", format!("checkpoint at step {step} deleted (checkpoint.keep)"))
        }
        Event::Log { step, level, message } => (*step, level_kind(*level), message.clone()),
        Event::RunInfo { step, tags, group, notes, .. } => {
            let mut parts = Vec::new();
            if !tags.is_empty() {
                parts.push(format!("tags {}", tags.join(", ")));
            }
            if let Some(g) = group {
                parts.push(format!("group {g}"));
            }
            if !notes.is_empty() {
                parts.push(format!("notes: {notes}"));
            }
            if parts.is_empty() {
                parts.push("the job's config recorded".into());
            }
            (*step, "info", parts.join("; "))
        }
        Event::Summary { step, values } => {
            let kv: Vec<String> = values.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            (*step, "summary", kv.join(", "))
        }
        Event::RunEnded { step, status, message } => (*step, "end", format!("{}: {message}", status.as_str())),
        Event::Step { .. } | Event::Eval { .. } | Event::Probe { .. } => return None,
    };
    Some(Line { step, kind, text })
}

/// Every [`Line::kind`] [`describe`] gives.
pub const KINDS: &[&str] = &[
    "branch", "start", "resume", "phase", "signal", "suggest", "command", "plan", "ckpt", "info", "warn", "error",
    "summary", "end",
];

/// A kind read back from a file (the replay index), as the `&'static str` of [`KINDS`]
/// (an unknown one reads as `info`).
pub fn kind(s: &str) -> &'static str {
    KINDS.iter().find(|k| **k == s).copied().unwrap_or("info")
}

fn level_kind(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PhaseCause;

    fn started(resumed: Option<u64>) -> Event {
        Event::RunStarted {
            run_id: "r".into(),
            schema_major: 1,
            schema_minor: 0,
            config_name: "c".into(),
            config: serde_json::json!({}),
            phases: vec![],
            device: "cpu".into(),
            seed: 1,
            started_at: 0.0,
            resumed_from_step: resumed,
            parent_run: None,
            branch_step: None,
        }
    }
    fn suggestion(step: u64, id: u64) -> Event {
        Event::Suggestion { step, id, to_phase: "main".into(), because: "plateau".into() }
    }
    fn answer(step: u64, command: Command) -> Event {
        Event::Command { step, t: 0.0, client: "ctl".into(), command, applied: true, message: String::new() }
    }
    fn states(s: &Suggestions) -> Vec<(u64, &'static str, Option<u64>)> {
        s.all.iter().map(|g| (g.id, g.state.as_str(), g.resolved_step)).collect()
    }

    #[test]
    fn a_live_fold_of_a_resume_equals_the_fold_that_skips_what_it_superseded() {
        let log = [
            started(None),
            suggestion(10, 1),
            suggestion(20, 2),
            answer(30, Command::Accept { id: Some(1) }),
            suggestion(40, 3),
            // Killed; resumed from the checkpoint at 25.
            started(Some(25)),
            suggestion(26, 4),
        ];
        let mut live = Suggestions::default();
        log.iter().for_each(|e| live.apply(e));
        let mut skipping = Suggestions::default();
        let mut sup = Supersession::of(log.iter());
        log.iter().filter(|e| sup.keeps(e)).for_each(|e| skipping.apply(e));
        assert_eq!(live, skipping);
        assert_eq!(states(&live), [(1, "expired", Some(25)), (2, "expired", Some(25)), (4, "pending", None)]);
        assert_eq!(live.pending().map(|g| g.id), Some(4));
    }

    #[test]
    fn answers_by_id_or_newest_and_phase_changes_expire() {
        let mut s = Suggestions::default();
        for e in [
            suggestion(1, 1),
            suggestion(2, 2),
            answer(3, Command::Dismiss { id: Some(1) }),
            answer(4, Command::Accept { id: None }),
            suggestion(5, 3),
            Event::PhaseChanged { step: 6, from: None, to: "x".into(), cause: PhaseCause::Manual, detail: None },
        ] {
            s.apply(&e);
        }
        assert_eq!(states(&s), [(1, "dismissed", Some(3)), (2, "accepted", Some(4)), (3, "expired", Some(6))]);
    }

    #[test]
    fn supersession_keeps_starts_and_drops_later_steps_and_past_upto() {
        let log = [started(None), suggestion(10, 1), suggestion(30, 2), started(Some(20)), suggestion(25, 3)];
        let mut sup = Supersession::of(log.iter());
        let kept: Vec<bool> = log.iter().map(|e| sup.keeps(e)).collect();
        assert_eq!(kept, [true, true, false, true, true]);
        let mut sup = Supersession::of(log.iter()).upto(22);
        let kept: Vec<bool> = log.iter().map(|e| sup.keeps(e)).collect();
        assert_eq!(kept, [true, true, false, true, false]);
    }

    #[test]
    fn describe_tells_each_event_once() {
        let e = Event::PhaseChanged {
            step: 25,
            from: Some("warm".into()),
            to: "main".into(),
            cause: PhaseCause::Scheduled,
            detail: None,
        };
        assert_eq!(describe(&e).unwrap().to_string(), "       25  phase     warm → main (scheduled)");
        assert!(describe(&Event::Step { step: 1, phase: "x".into(), t: 0.0, metrics: Default::default() }).is_none());
        assert_eq!(describe(&started(Some(7))).unwrap().to_string(), "        7  resume    from step 7");
        assert!(KINDS.contains(&describe(&started(None)).unwrap().kind));
    }
}
