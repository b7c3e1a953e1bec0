//! Replay: a recorded run fed to the same dashboard, paced by the recorded wall-clock
//! gaps scaled by a speed, with seeking. The view is a fold of events, so seeking
//! forward applies events and seeking backward refolds from the start.

use super::state::RunView;
use crate::event::Event;

/// Speeds `<`/`>` step through; `f64::INFINITY` is "as fast as possible".
pub const SPEEDS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0, f64::INFINITY];

pub struct Player {
    events: Vec<Event>,
    /// Recorded time of each event (carried forward from the last step's `t`).
    times: Vec<f64>,
    /// Events applied so far.
    pub pos: usize,
    pub playing: bool,
    pub speed: usize,
    /// Where the playback clock is, in recorded seconds.
    clock: f64,
}

impl Player {
    pub fn new(events: Vec<Event>) -> Player {
        let mut t = 0.0;
        let times = events
            .iter()
            .map(|e| {
                match e {
                    Event::Step { t: s, .. } => t = *s,
                    Event::RunStarted { started_at, .. } if t == 0.0 => t = *started_at,
                    _ => {}
                }
                t
            })
            .collect();
        Player { events, times, pos: 0, playing: true, speed: 5, clock: 0.0 }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn speed_label(&self) -> String {
        let s = SPEEDS[self.speed];
        if s.is_infinite() { "max".into() } else { format!("{s}×") }
    }

    /// Advances playback by `dt` real seconds, applying due events to `view`.
    pub fn tick(&mut self, view: &mut RunView, dt: f64) -> bool {
        if !self.playing || self.pos >= self.events.len() {
            return false;
        }
        let speed = SPEEDS[self.speed];
        let before = self.pos;
        if speed.is_infinite() {
            let end = (self.pos + 200_000).min(self.events.len());
            self.apply_until(view, end);
        } else {
            if self.clock < self.times[self.pos] {
                // Skip dead time (a pause, a gap before a resume) instead of waiting it out.
                self.clock = self.clock.max(self.times[self.pos] - 1.0);
            }
            self.clock += dt * speed;
            let mut end = self.pos;
            while end < self.events.len() && self.times[end] <= self.clock {
                end += 1;
            }
            self.apply_until(view, end.max(self.pos + 1));
        }
        if self.pos >= self.events.len() {
            self.playing = false;
        }
        self.pos != before
    }

    fn apply_until(&mut self, view: &mut RunView, end: usize) {
        for e in &self.events[self.pos..end] {
            view.apply(e);
        }
        self.pos = end;
        if let Some(t) = self.times.get(end.saturating_sub(1)) {
            self.clock = self.clock.max(*t);
        }
    }

    /// Moves to just after event index `target` has been applied (`target` events applied).
    pub fn seek(&mut self, view: &mut RunView, target: usize) {
        let target = target.min(self.events.len());
        if target < self.pos {
            *view = RunView::default();
            self.pos = 0;
        }
        self.apply_until(view, target);
        self.clock = self.times.get(target.saturating_sub(1)).copied().unwrap_or(0.0);
    }

    /// Seeks so that every event up to training step `step` is applied.
    pub fn seek_step(&mut self, view: &mut RunView, step: u64) {
        let i = self.events.iter().position(|e| e.step().is_some_and(|s| s > step)).unwrap_or(self.events.len());
        self.seek(view, i);
    }

    /// Index just after the next (or previous) event matching `pred`.
    pub fn find(&self, forward: bool, pred: impl Fn(&Event) -> bool) -> Option<usize> {
        if forward {
            (self.pos..self.events.len()).find(|&i| pred(&self.events[i])).map(|i| i + 1)
        } else {
            (0..self.pos.saturating_sub(1)).rev().find(|&i| pred(&self.events[i])).map(|i| i + 1)
        }
    }

    /// Applies events up to and including the next `Step` (one training step forward).
    pub fn step_forward(&mut self, view: &mut RunView) {
        if let Some(i) = self.find(true, |e| matches!(e, Event::Step { .. })) {
            self.seek(view, i);
        }
    }

    pub fn step_back(&mut self, view: &mut RunView) {
        let target = view.step.saturating_sub(1);
        self.seek_step(view, target);
    }
}

/// The run's story in plain text: every phase change, signal, suggestion and command in
/// order, then the summary (for CI logs and slow links).
pub fn story(events: &[Event]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for e in events {
        let _ = match e {
            Event::RunStarted { run_id, device, resumed_from_step: None, .. } => {
                writeln!(s, "{:>9}  start     {run_id} on {device}", 0)
            }
            Event::RunStarted { resumed_from_step: Some(f), .. } => writeln!(s, "{f:>9}  resume    from step {f}"),
            Event::PhaseChanged { step, from, to, cause, detail } => writeln!(
                s,
                "{step:>9}  phase     {} → {to} ({}{})",
                from.as_deref().unwrap_or("-"),
                cause.as_str(),
                detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
            ),
            Event::Signal { step, detector, metric, message, .. } => {
                writeln!(s, "{step:>9}  signal    {detector}({metric}) {message}")
            }
            Event::Suggestion { step, to_phase, because, .. } => {
                writeln!(s, "{step:>9}  suggest   switch → {to_phase}: {because}")
            }
            Event::Command { step, command, applied, message, .. } => {
                writeln!(
                    s,
                    "{step:>9}  command   {command} ({}): {message}",
                    if *applied { "applied" } else { "refused" }
                )
            }
            Event::PlanChanged { step, phases, .. } => writeln!(s, "{step:>9}  plan      {}", phases.join(" → ")),
            Event::Log { step, level, message } => {
                writeln!(s, "{step:>9}  {:<9} {message}", format!("{level:?}").to_lowercase())
            }
            Event::RunEnded { step, status, message } => {
                writeln!(s, "{step:>9}  end       {}: {message}", status.as_str())
            }
            _ => Ok(()),
        };
    }
    s
}
