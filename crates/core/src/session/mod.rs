//! The session both hosts share: what an operator's command means for the run, the
//! current phase's rule and its suggestions, and the keys `set` accepts. The built-in
//! trainer's host (`crates/trainer/src/host/`) and the external-job host
//! ([`crate::external`]) are drivers around it: they differ only in *when* a decision
//! is delivered (between steps, or at the job's next sync) and what applying it means
//! (the trainer's settings, or an answer to the job's ranks).

pub mod keys;
pub mod resume;
pub mod summary;

use crate::config::UntilRule;
use crate::event::{Command, Event, PhaseCause};
use crate::rules::{Confirmation, RuleOutcome, SignalState};
use crate::signals::Signal;
pub use keys::SetKeys;
use std::time::{Duration, Instant};
pub use summary::{RunLog, RunSummary};

/// A phase change to carry out: target phase index, cause, detail.
pub type Switch = (usize, PhaseCause, Option<String>);

/// When a decision reaches the training: it words the answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The built-in trainer: between two steps, before the reply is sent.
    BetweenSteps,
    /// An external job: at its next `sync`.
    NextSync,
}

/// Where the plan stands when a command arrives.
pub struct Position<'a> {
    /// The plan's phase names, in order.
    pub names: &'a [String],
    /// The phase being trained.
    pub current: usize,
    /// The phase the run is headed for: `current`, or a switch already decided and not yet
    /// applied (an external job's next sync).
    pub target: usize,
    pub step: u64,
}

/// What a command asks of the driver, once the session has accepted it.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Answered here (pause, resume, dismiss): nothing more to do but the message.
    Done(String),
    /// A phase change (switch, accepted suggestion): the driver carries it out.
    Switch(Switch, String),
    Stop,
    Checkpoint,
    /// A `set` of one of the run's keys (checked against [`SetKeys`]).
    Set {
        key: String,
        value: f64,
    },
    /// An edited plan's text (each driver validates it against what it runs).
    Plan(String),
}

/// What the run's rule makes of fired signals, for the driver to carry out in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Write this event (the signal itself, a suggestion).
    Record(Event),
    /// An `auto` rule ends the phase: switch to the next one.
    Switch(String),
    /// An info line for the log (a rule signal that was not confirmed).
    Note(String),
}

pub struct Session {
    pub paused: bool,
    /// The detector bank and the current phase's rule with its pending suggestions.
    pub signals: SignalState,
    pub keys: SetKeys,
    delivery: Delivery,
    /// The current rule's `hold` and `open_s` (its suggestions' patience).
    hold: bool,
    open: Duration,
    /// When each pending suggestion was made (wall clock).
    opened: Vec<(u64, Instant)>,
    /// A `hold` rule paused the run for this suggestion: answering it resumes the run.
    held_for: Option<u64>,
    /// Suggestions already told the operator the run waits for them (one line each).
    told_waiting: Vec<u64>,
}

impl Session {
    /// `first_rule`: the first phase's `until` rule (the bank already has it armed).
    pub fn new(signals: SignalState, keys: SetKeys, delivery: Delivery, first_rule: Option<&UntilRule>) -> Session {
        let mut s = Session {
            paused: false,
            signals,
            keys,
            delivery,
            hold: false,
            open: Duration::from_secs_f64(crate::config::SUGGESTION_OPEN_S),
            opened: Vec::new(),
            held_for: None,
            told_waiting: Vec::new(),
        };
        s.rule_knobs(first_rule);
        s
    }

    fn rule_knobs(&mut self, rule: Option<&UntilRule>) {
        self.hold = rule.is_some_and(|r| r.hold);
        self.open = rule.map_or(Duration::from_secs_f64(crate::config::SUGGESTION_OPEN_S), |r| r.open());
    }

    /// A new phase begins: its rule is armed, and the suggestions still pending expire (one
    /// line each for the log, saying why).
    pub fn enter_rule(&mut self, until: Option<&toml::Spanned<UntilRule>>, why: &str) -> Vec<String> {
        let notes = self.expire(why);
        self.signals.enter_rule(until);
        self.rule_knobs(until.map(|r| r.get_ref()));
        notes
    }

    /// Drops the pending suggestions (the phase changed, the run ended); their lines.
    pub fn expire(&mut self, why: &str) -> Vec<String> {
        let notes = self
            .signals
            .pending
            .drain(..)
            .map(|p| format!("suggestion {} (switch to {}) expired unanswered: {why}", p.id, p.to_phase))
            .collect();
        self.opened.clear();
        notes
    }

    /// Whether the plan's own next act (its phase's `steps`, `max_steps`) must wait: a
    /// pending suggestion younger than its rule's `open_s`. `Some((id, seconds left))`.
    pub fn keeps_open(&self, now: Instant) -> Option<(u64, f64)> {
        self.opened
            .iter()
            .filter(|(id, _)| self.signals.pending.iter().any(|p| p.id == *id))
            .filter_map(|(id, at)| {
                let left = (*at + self.open).checked_duration_since(now)?;
                (!left.is_zero()).then_some((*id, left.as_secs_f64()))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The line saying the run waits for suggestion `id`, once per suggestion.
    pub fn waiting_note(&mut self, id: u64, left: f64, step: u64) -> Option<String> {
        if self.told_waiting.contains(&id) {
            return None;
        }
        self.told_waiting.push(id);
        Some(format!(
            "the plan acts at step {step}, but suggestion {id} stays open {left:.0} s more: the run waits for an answer \
             (accept or dismiss) until then"
        ))
    }

    /// After an applied accept/dismiss: the `resume` to record when it answered the
    /// suggestion a `hold` rule paused the run for.
    pub fn release(&mut self, step: u64) -> Option<Event> {
        let id = self.held_for?;
        if self.signals.pending.iter().any(|p| p.id == id) {
            return None;
        }
        self.held_for = None;
        if !self.paused {
            return None;
        }
        self.paused = false;
        Some(Event::Command {
            step,
            t: crate::rundir::now_unix(),
            client: "rule".into(),
            command: Command::Resume,
            applied: true,
            message: format!("suggestion {id} answered: the run goes on"),
        })
    }

    /// Decides an operator's command. `Err` is the refusal's text (recorded as a command
    /// not applied); the caller records the command with the answer either way.
    pub fn decide(&mut self, command: &Command, client: &str, at: Position) -> Result<Decision, String> {
        let step = at.step;
        let when = match self.delivery {
            Delivery::BetweenSteps => format!("at step {step}"),
            Delivery::NextSync => format!("at the job's next sync (after step {step})"),
        };
        let index = |phase: &str| at.names.iter().position(|n| n == phase);
        match command {
            Command::Switch { phase } => match index(phase) {
                Some(i) if i == at.target => Err(format!("already in phase \"{phase}\"")),
                Some(i) => {
                    let from = &at.names[at.current];
                    let verb = if self.delivery == Delivery::BetweenSteps { "switched" } else { "switching" };
                    Ok(Decision::Switch(
                        (i, PhaseCause::Manual, Some(format!("by {client}"))),
                        format!("{verb} {from} → {phase} {when}"),
                    ))
                }
                None => Err(format!("unknown phase \"{phase}\", expected one of {}", at.names.join(", "))),
            },
            Command::Pause if self.paused => Err("already paused".into()),
            Command::Pause => {
                self.paused = true;
                Ok(Decision::Done(match self.delivery {
                    Delivery::BetweenSteps => format!("paused at step {step}"),
                    Delivery::NextSync => format!("pausing {when}"),
                }))
            }
            Command::Resume if !self.paused => Err("not paused".into()),
            Command::Resume => {
                self.paused = false;
                Ok(Decision::Done(format!("resumed at step {step}")))
            }
            Command::Stop => Ok(Decision::Stop),
            Command::Checkpoint => Ok(Decision::Checkpoint),
            Command::Set { key, value } => {
                if !value.is_finite() {
                    return Err(format!("set {key}: the value must be a finite number"));
                }
                self.keys.check(key, *value)?;
                Ok(Decision::Set { key: key.clone(), value: *value })
            }
            Command::Accept { id } => {
                let s = self.signals.take(*id).ok_or_else(|| no_suggestion(*id))?;
                let i = index(&s.to_phase)
                    .ok_or_else(|| format!("suggested phase \"{}\" is not in the plan", s.to_phase))?;
                let detail = format!("suggestion {} accepted by {client}: {}", s.id, s.because);
                Ok(Decision::Switch(
                    (i, PhaseCause::Suggestion, Some(detail)),
                    format!("accepted suggestion {}: switching to {} {when}", s.id, s.to_phase),
                ))
            }
            Command::Dismiss { id } => {
                let s = self.signals.take(*id).ok_or_else(|| no_suggestion(*id))?;
                Ok(Decision::Done(format!("dismissed suggestion {} (switch to {})", s.id, s.to_phase)))
            }
            Command::Plan { config } => Ok(Decision::Plan(config.clone())),
        }
    }

    /// Judges signals that fired at `step` (`in_phase` steps into the phase) against the
    /// current phase's rule: each is recorded; an `auto` rule switches to `next`, a
    /// `suggest` rule records a suggestion. `blocked`: a phase change already happens at
    /// this step (or waits for the job), so signals are only recorded. At most one
    /// switch comes out.
    pub fn judge(
        &mut self,
        fired: Vec<Signal>,
        step: u64,
        in_phase: u64,
        next: Option<&str>,
        blocked: bool,
    ) -> Vec<Effect> {
        let mut blocked = blocked;
        let mut out = Vec::new();
        for sig in fired {
            out.push(Effect::Record(sig.to_event()));
            if blocked {
                continue;
            }
            if let Some(outcome) = self.signals.judge(&sig, in_phase, next) {
                blocked |= self.outcome(outcome, step, next, &mut out);
            }
        }
        if !blocked {
            match self.signals.confirm_due(step, next) {
                Some(Confirmation::Confirmed(outcome)) => {
                    self.outcome(outcome, step, next, &mut out);
                }
                Some(Confirmation::Dropped(m)) => out.push(Effect::Note(m)),
                None => {}
            }
        }
        out
    }

    /// Adds a rule's outcome to `out`; whether it switches.
    fn outcome(&mut self, outcome: RuleOutcome, step: u64, next: Option<&str>, out: &mut Vec<Effect>) -> bool {
        match outcome {
            RuleOutcome::Switch { detail } => {
                out.push(Effect::Switch(detail));
                true
            }
            RuleOutcome::Suggest { id, because } => {
                let to_phase = next.unwrap_or_default().to_string();
                out.push(Effect::Record(Event::Suggestion { step, id, to_phase, because }));
                self.opened.push((id, Instant::now()));
                if self.hold && !self.paused {
                    self.paused = true;
                    self.held_for = Some(id);
                    out.push(Effect::Record(Event::Command {
                        step,
                        t: crate::rundir::now_unix(),
                        client: "rule".into(),
                        command: Command::Pause,
                        applied: true,
                        message: format!("paused for suggestion {id}: the run waits for an answer (accept or dismiss)"),
                    }));
                }
                false
            }
        }
    }

    /// The pending suggestions, as `status` reports them.
    pub fn suggestions(&self) -> Vec<crate::control::PendingSuggestion> {
        self.signals
            .pending
            .iter()
            .map(|p| crate::control::PendingSuggestion {
                id: p.id,
                to_phase: p.to_phase.clone(),
                because: p.because.clone(),
            })
            .collect()
    }
}

fn no_suggestion(id: Option<u64>) -> String {
    match id {
        Some(id) => format!("no pending suggestion {id}"),
        None => "no pending suggestion".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(delivery: Delivery) -> Session {
        Session::new(SignalState::for_rule(None), SetKeys::Trainer, delivery, None)
    }

    #[test]
    fn both_deliveries_decide_the_same_and_word_when() {
        let names: Vec<String> = ["warm", "main"].map(String::from).into();
        for delivery in [Delivery::BetweenSteps, Delivery::NextSync] {
            let mut s = session(delivery);
            let at = |target| Position { names: &names, current: 0, target, step: 7 };
            let sw = s.decide(&Command::Switch { phase: "main".into() }, "ctl", at(0)).unwrap();
            let Decision::Switch((1, PhaseCause::Manual, Some(by)), msg) = sw else { panic!("{sw:?}") };
            assert_eq!(by, "by ctl");
            assert!(msg.contains("warm → main"), "{msg}");
            assert_eq!(delivery == Delivery::NextSync, msg.contains("next sync"), "{msg}");
            // A switch already on its way counts as the phase the run is in.
            assert_eq!(
                s.decide(&Command::Switch { phase: "main".into() }, "ctl", at(1)),
                Err("already in phase \"main\"".into())
            );
            assert!(s.decide(&Command::Switch { phase: "x".into() }, "ctl", at(0)).unwrap_err().contains("warm, main"));
            assert!(matches!(s.decide(&Command::Pause, "ctl", at(0)), Ok(Decision::Done(_))));
            assert!(s.paused);
            assert_eq!(s.decide(&Command::Pause, "ctl", at(0)), Err("already paused".into()));
            assert!(s.decide(&Command::Resume, "ctl", at(0)).is_ok());
            assert_eq!(s.decide(&Command::Resume, "ctl", at(0)), Err("not paused".into()));
            assert!(s.decide(&Command::Set { key: "aux_w".into(), value: 1.0 }, "ctl", at(0)).is_err());
            assert_eq!(
                s.decide(&Command::Set { key: "lr".into(), value: 0.5 }, "ctl", at(0)),
                Ok(Decision::Set { key: "lr".into(), value: 0.5 })
            );
            assert_eq!(s.decide(&Command::Accept { id: None }, "ctl", at(0)), Err("no pending suggestion".into()));
            assert_eq!(
                s.decide(&Command::Dismiss { id: Some(4) }, "ctl", at(0)),
                Err("no pending suggestion 4".into())
            );
        }
    }
}
