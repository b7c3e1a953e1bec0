//! The transport and the compare timeline: a replay's (or a live run's history's)
//! keys, and the step every compared run is moved to, past the first run's end too.

use super::App;
use crate::keymap::{Action, Section};
use ratatui::crossterm::event::KeyEvent;

impl App {
    /// The step range the charts show.
    pub fn x_range(&self) -> (u64, u64) {
        let last = self.timeline_step().max(1);
        let first = self.view.series.get("train_loss").and_then(|s| s.first_step()).unwrap_or(1).min(last);
        self.charts.x_range(first, last)
    }

    /// Where the view is, for the status line after a move.
    pub(super) fn position_status(&self) -> String {
        match &self.player {
            Some(p) if p.at_live_end() => "following the live run".to_string(),
            Some(p) if p.is_live() => format!("history at step {}", crate::fmt::step(self.view.step)),
            _ => format!("replay at step {}", crate::fmt::step(self.view.step)),
        }
    }

    /// Transport keys (a replay's, and a live run's history); returns whether the key was
    /// one of them.
    pub(super) fn on_transport_key(&mut self, key: KeyEvent) -> bool {
        if self.player.is_none() {
            return false;
        }
        let Some(action) = self.keymap.action_in(Section::Transport, &key) else { return false };
        // An old message ("nothing further …") does not outlive the next move.
        self.status.clear();
        // Past the first run's end (or stepping off it) the compared runs carry the
        // timeline; the marks ([ ] { }) and the start (g) are the first run's.
        let end = self.first_end();
        let p = self.player.as_mut().expect("checked");
        let v = &mut self.view;
        if let Some(c) = self.compare.as_mut() {
            // A key of the transport is the operator's: no pending play-through.
            c.play_through = false;
        }
        if let (Some(c), Some(end)) = (self.compare.as_mut(), end) {
            match action {
                Action::PlayPause if c.beyond.is_some() => {
                    c.playing_on = !c.playing_on;
                    return true;
                }
                Action::StepForward if c.beyond.is_some() || v.step >= end => {
                    p.playing = false;
                    c.playing_on = false;
                    p.seek(v, p.len());
                    c.step_on(c.beyond.unwrap_or(v.step));
                    self.sync_compare();
                    return true;
                }
                Action::StepBack if c.beyond.is_some() => {
                    c.playing_on = false;
                    let to = c.beyond.unwrap_or(end).saturating_sub(1);
                    self.seek_timeline(to);
                    return true;
                }
                Action::GotoEnd => {
                    p.playing = false;
                    c.playing_on = false;
                    let last = c.last_step();
                    self.seek_timeline(last);
                    return true;
                }
                Action::GotoStart
                | Action::PrevPhaseChange
                | Action::NextPhaseChange
                | Action::PrevSignal
                | Action::NextSignal => {
                    c.beyond = None;
                    c.playing_on = false;
                }
                _ => {}
            }
        }
        match action {
            // At a live run's end: hold the view here (history, paused).
            Action::PlayPause if p.at_live_end() => p.leave_live(v),
            Action::PlayPause => p.playing = !p.playing,
            Action::Slower => p.speed = p.speed.saturating_sub(1),
            Action::Faster => p.speed = (p.speed + 1).min(crate::player::replay::SPEEDS.len() - 1),
            Action::StepForward => {
                p.playing = false;
                p.step_forward(v);
            }
            Action::StepBack => {
                p.playing = false;
                p.step_back(v);
            }
            // The start: the run's first events (its start and first phase) applied, so
            // the header is never empty.
            Action::GotoStart => p.seek_step(v, 0),
            Action::GotoEnd => p.goto_end(v),
            a @ (Action::PrevPhaseChange | Action::NextPhaseChange | Action::PrevSignal | Action::NextSignal) => {
                use crate::model::replay_index::MarkKind::{Phase, Signal};
                use crate::player::replay::Jump;
                let (forward, kind) = match a {
                    Action::PrevPhaseChange => (false, Phase),
                    Action::NextPhaseChange => (true, Phase),
                    Action::PrevSignal => (false, Signal),
                    _ => (true, Signal),
                };
                match p.jump(v, forward, kind) {
                    Jump::Moved => {}
                    Jump::Pending => self.set_status("going there once the log is indexed", false),
                    Jump::Nothing => self.set_status("nothing further in that direction", true),
                }
            }
            _ => return false,
        }
        self.sync_compare();
        true
    }

    /// Moves the compared runs to the first run's step; true when they moved.
    pub fn sync_compare(&mut self) -> bool {
        let step = self.timeline_step();
        self.compare.as_mut().is_some_and(|c| c.sync(step))
    }

    /// The replay timeline's step: the first run's, or past its end (comparing a longer
    /// run) the step the others are at.
    pub fn timeline_step(&self) -> u64 {
        self.compare.as_ref().and_then(|c| c.beyond).unwrap_or(self.view.step).max(self.view.step)
    }

    /// The timeline's end: the largest step any compared run's index knows.
    pub fn timeline_last(&self) -> u64 {
        let first = self.player.as_ref().map_or(self.view.step, |p| p.last_step().max(self.view.step));
        first.max(self.compare.as_ref().map_or(0, |c| c.last_step()))
    }

    /// The first run's last step, once its whole log is indexed and not followed (a
    /// growing log has no end yet); `None` when no compared run goes further.
    pub(super) fn first_end(&self) -> Option<u64> {
        let p = self.player.as_ref()?;
        let end = p.last_step();
        // (`state()` holds the index's lock: not across `last_step`, which takes it too.)
        let whole = {
            let s = p.index().state();
            s.done && !s.following
        };
        (whole && self.compare.as_ref().is_some_and(|c| c.last_step() > end)).then_some(end)
    }

    /// Moves the timeline to `step`: the first run there, or, past its end, the first run
    /// at its end and the others at `step`.
    pub fn seek_timeline(&mut self, step: u64) {
        let end = self.first_end();
        let last = self.timeline_last();
        let (Some(p), Some(c)) = (self.player.as_mut(), self.compare.as_mut()) else { return };
        match end {
            Some(end) if step > end => {
                if self.view.step < end {
                    p.seek_step(&mut self.view, end);
                }
                p.seek(&mut self.view, p.len());
                c.beyond = Some(step.min(last));
            }
            _ => {
                c.beyond = None;
                c.playing_on = false;
                p.seek_step(&mut self.view, step);
            }
        }
        self.sync_compare();
    }

    /// Replay playback past the first run's end: when the first run's player stopped at
    /// its end while playing (`was_playing`), the longest run plays on. Called after the
    /// first run's tick; returns whether anything moved.
    pub fn tick_timeline(&mut self, was_playing: bool, dt: f64) -> bool {
        let at_end = self.first_end().is_some();
        let (Some(p), Some(c)) = (self.player.as_mut(), self.compare.as_mut()) else { return false };
        if was_playing && !p.playing {
            c.play_through = true;
        }
        if c.play_through && at_end && !c.playing_on {
            c.play_through = false;
            c.playing_on = true;
            c.beyond = Some(c.beyond.unwrap_or(self.view.step).max(self.view.step));
        }
        c.play_on(p.speed, p.uniform, dt)
    }
}
