//! The host's side of the signals layer: the detector bank fed with every step, eval
//! and probe metric; the current phase's `until` rule; pending suggestions.

use crate::config::{Phase, RuleMode};
use crate::signals::{Bank, DetectorKind, DetectorSpec, Signal};

/// Detectors that watch every run, with their default parameters.
const DEFAULTS: &[(DetectorKind, &str)] = &[
    (DetectorKind::Divergence, "train_loss"),
    (DetectorKind::Spike, "train_loss"),
    (DetectorKind::Plateau, "train_loss"),
    (DetectorKind::Changepoint, "train_loss"),
    (DetectorKind::Jump, "val_acc"),
];

/// The detectors every run gets, with default parameters (also run over imported runs).
pub fn default_bank() -> Bank {
    let mut bank = Bank::new();
    for (kind, metric) in DEFAULTS {
        bank.insert(DetectorSpec::default_for(*kind), metric);
    }
    bank
}

/// What a signal asks of the run loop.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome {
    /// `auto` rule: switch to the next phase now.
    Switch { detail: String },
    /// `suggest` rule: record a suggestion with this id.
    Suggest { id: u64, because: String },
}

/// A rule signal waiting for its `confirm_steps`, as `confirm_due` answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Confirmation {
    /// The condition still holds: act on it.
    Confirmed(RuleOutcome),
    /// It did not persist; the message says so (for the log).
    Dropped(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: u64,
    pub to_phase: String,
    /// The signal behind it, for the phase change's detail when it is accepted.
    pub because: String,
}

pub struct SignalState {
    bank: Bank,
    /// (detector, metric, mode, min_steps) of the current phase's rule.
    rule: Option<(String, String, RuleMode, u64)>,
    /// The rule's `confirm_steps` as set in the config; None: the default, which scales
    /// with the phase (`config::default_auto_confirm` for `auto`, 0 for `suggest`).
    confirm_steps: Option<u64>,
    /// A rule signal waiting for confirmation, and the step it is due at.
    awaiting: Option<(Signal, u64)>,
    pub pending: Vec<Pending>,
    next_id: u64,
    /// The rule's detector fired before the phase was `min_steps` old: it is re-armed
    /// once the phase is, so that a condition that still holds ends the phase then.
    fired_early: bool,
}

impl SignalState {
    pub fn new(phase: &Phase) -> SignalState {
        SignalState::for_rule(phase.until.as_ref())
    }

    /// A run's state whose first phase has `until` as its rule (an external run's phases
    /// are not trainer phases).
    pub fn for_rule(until: Option<&toml::Spanned<crate::config::UntilRule>>) -> SignalState {
        let bank = default_bank();
        let mut s = SignalState {
            bank,
            rule: None,
            confirm_steps: None,
            awaiting: None,
            pending: Vec::new(),
            next_id: 1,
            fired_early: false,
        };
        s.enter_rule(until);
        s
    }

    /// Watches a probed layer's effective rank and feature diversity for collapse.
    pub fn watch_probe_layer(&mut self, layer: &str) {
        for name in ["eff_rank", "diversity"] {
            let metric = format!("{layer}/{name}");
            if !self.bank.contains("collapse", &metric) {
                self.bank.insert(DetectorSpec::default_for(DetectorKind::Collapse), &metric);
            }
        }
    }

    /// Arms the new phase's rule (its parameters replace the default detector of that
    /// kind on that metric) and drops suggestions made for the old phase.
    pub fn enter_phase(&mut self, phase: &Phase) {
        self.enter_rule(phase.until.as_ref())
    }

    /// [`SignalState::enter_phase`] for a phase whose rule is `until`.
    pub fn enter_rule(&mut self, until: Option<&toml::Spanned<crate::config::UntilRule>>) {
        self.pending.clear();
        self.rule = None;
        self.fired_early = false;
        self.awaiting = None;
        self.confirm_steps = Some(0);
        if let Some(rule) = until {
            let r = rule.get_ref();
            self.confirm_steps = r.confirm_steps.or(match r.mode {
                RuleMode::Auto => None,
                RuleMode::Suggest => Some(0),
            });
            // The name the metric is recorded under (`grad_cos/mse~ce` is `grad_cos/ce~mse`).
            let (detector, metric) = (r.detector.get_ref().clone(), crate::event::canonical_metric(r.metric.get_ref()));
            // Validated with the config; a bad spec here would be a bug, so fall back to defaults.
            let spec = DetectorSpec::from_toml(&detector, &r.params)
                .unwrap_or_else(|_| DetectorSpec::default_for(detector.parse().unwrap_or(DetectorKind::Plateau)));
            self.bank.insert(spec, &metric);
            self.bank.reset_metric(&metric);
            self.rule = Some((detector, metric, r.mode, r.min_steps));
        }
    }

    /// Feeds a run's logged history (see `host::logged_history`) to the detectors, as the
    /// run loop fed it: step and eval metrics, probe metrics as `<layer>/<metric>`, and
    /// each phase's rule armed where that phase began (`phases`: the plan, looked up by
    /// name). What fires is dropped: those signals are in the log already. After a
    /// `--resume` or `branch` the detectors then go on from where the run's were (the
    /// collapse baseline is the run's first probes, not the first after the checkpoint).
    pub fn replay(&mut self, history: &[crate::event::Event], phases: &[Phase], current_phase: &Phase) {
        let rule_of = |name: &str| phases.iter().find(|p| p.name() == name).map(|p| p.until.as_ref());
        self.replay_rules(history, &rule_of, current_phase.name());
    }

    /// [`SignalState::replay`] for any plan: `rule_of` gives a phase's `until` rule by
    /// name (`None`: no such phase), `current` the phase the run goes on in.
    pub fn replay_rules<'a>(
        &mut self,
        history: &[crate::event::Event],
        rule_of: &dyn Fn(&str) -> Option<Option<&'a toml::Spanned<crate::config::UntilRule>>>,
        current_phase: &str,
    ) {
        use crate::event::Event;
        let mut current: Option<&str> = None;
        for ev in history {
            match ev {
                Event::PhaseChanged { to, .. }
                    // A branch's start repeats the parent's phase: no new phase began there.
                    if current != Some(to.as_str()) => {
                        if let Some(rule) = rule_of(to) {
                            self.enter_rule(rule);
                        }
                        current = Some(to.as_str());
                    }
                Event::Step { step, metrics, .. } | Event::Eval { step, metrics, .. } => {
                    self.bank.push_all(*step, metrics);
                }
                Event::Probe { step, layer, metrics } => {
                    for (k, v) in metrics {
                        self.bank.push(*step, &format!("{layer}/{k}"), *v);
                    }
                }
                _ => {}
            }
        }
        // The history should end in the phase the trainer is in; if not, its rule is the one.
        if current != Some(current_phase)
            && let Some(rule) = rule_of(current_phase)
        {
            self.enter_rule(rule);
        }
        // Suggestions are not carried over a restart.
        self.pending.clear();
    }

    /// Feeds metrics of a step `steps_in_phase` steps into the current phase; returns
    /// the signals that fired.
    pub fn push(&mut self, step: u64, steps_in_phase: u64, metrics: &crate::event::Metrics) -> Vec<Signal> {
        if self.fired_early
            && let Some((detector, metric, _, min_steps)) = &self.rule
            && steps_in_phase >= *min_steps
        {
            self.bank.rearm(detector, metric);
            self.fired_early = false;
        }
        self.bank.push_all(step, metrics)
    }

    /// Whether `sig` ends the current phase, and how.
    pub fn judge(&mut self, sig: &Signal, steps_in_phase: u64, next_phase: Option<&str>) -> Option<RuleOutcome> {
        let (detector, metric, _, min_steps) = self.rule.as_ref()?;
        if &sig.detector != detector || &sig.metric != metric {
            return None;
        }
        if steps_in_phase < *min_steps {
            self.fired_early = true;
            return None;
        }
        next_phase?;
        let confirm = self.confirm_steps.unwrap_or_else(|| crate::config::default_auto_confirm(steps_in_phase));
        if confirm > 0 {
            // One at a time: later firings while one waits add nothing to it.
            if self.awaiting.is_none() {
                self.awaiting = Some((sig.clone(), sig.step + confirm));
            }
            return None;
        }
        self.outcome(sig, next_phase, "")
    }

    /// A rule signal whose `confirm_steps` have passed by `step`: confirmed when its
    /// detector's condition still holds, dropped otherwise.
    pub fn confirm_due(&mut self, step: u64, next_phase: Option<&str>) -> Option<Confirmation> {
        let (detector, metric, _, _) = self.rule.as_ref()?;
        if self.awaiting.as_ref().is_none_or(|(_, due)| step < *due) {
            return None;
        }
        let (sig, _) = self.awaiting.take()?;
        let waited = step - sig.step;
        if self.bank.holds(detector, metric) {
            let note = format!(" (confirmed {waited} steps later)");
            self.outcome(&sig, next_phase, &note).map(Confirmation::Confirmed)
        } else {
            Some(Confirmation::Dropped(format!(
                "{detector}({metric}) at step {} not confirmed: its condition no longer held {waited} steps later; the rule waits on",
                sig.step
            )))
        }
    }

    fn outcome(&mut self, sig: &Signal, next_phase: Option<&str>, note: &str) -> Option<RuleOutcome> {
        let (detector, metric, mode, _) = self.rule.as_ref()?;
        let to = next_phase?;
        let because = format!("{detector}({metric}) at step {}: {}{note}", sig.step, sig.message);
        match mode {
            RuleMode::Auto => Some(RuleOutcome::Switch { detail: because }),
            RuleMode::Suggest => {
                if self.pending.iter().any(|p| p.to_phase == to) {
                    return None;
                }
                let id = self.next_id;
                self.next_id += 1;
                self.pending.push(Pending { id, to_phase: to.to_string(), because: because.clone() });
                Some(RuleOutcome::Suggest { id, because })
            }
        }
    }

    /// Takes the pending suggestion `id` (the newest when `None`).
    pub fn take(&mut self, id: Option<u64>) -> Option<Pending> {
        let i = match id {
            Some(id) => self.pending.iter().position(|p| p.id == id)?,
            None => self.pending.len().checked_sub(1)?,
        };
        Some(self.pending.remove(i))
    }
}
