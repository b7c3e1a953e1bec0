//! The player: a run log fed to the dashboard, with seeking. One abstraction for both
//! ways of watching a run:
//!
//! - a replay ([`Player::open`]) plays a recorded log, paced by the recorded wall-clock
//!   gaps scaled by a speed (or, uniform, by steps: speed × 10 steps a second);
//! - a live attach ([`Player::attach`]) is a player whose log grows: at its *live end*
//!   the view follows the newest step (the log's tail folded as it is written); any
//!   move into history (`:goto`, scrubbing, `[`/`]`, stepping, pausing) leaves the live
//!   end, keeps the live fold aside (the run's controls still act on the live run), and
//!   `G` (or playing on past the newest event) follows the live end again.
//!
//! Events are read from the log as they are played (never all held); a seek restores
//! the index's nearest snapshot and folds forward from there, so it costs at most one
//! snapshot spacing whatever the log's length. A live attach starts its index only when
//! the view first leaves the live end.

mod live;

use super::live_end::{LiveEnd, time_of};
use crate::event::Event;
use crate::model::replay_index::{Index, LiveCheck, LogReader, MarkKind, Source};
use crate::model::state::RunView;
use crate::runlog::Record;
use std::collections::VecDeque;

/// Speeds `<`/`>` step through; `f64::INFINITY` is "as fast as possible".
pub const SPEEDS: &[f64] = &[0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0, f64::INFINITY];

/// Events applied per tick at most, so a fast replay still answers keys at 10 Hz.
const MAX_PER_TICK: usize = 50_000;
/// Records decoded ahead of the playback position.
const AHEAD: usize = 256;
/// Uniform pacing: training steps a second at speed 1×.
pub const UNIFORM_STEPS_PER_S: f64 = 10.0;
/// The scrubber's keys jump by this fraction of the run.
pub const SCRUB_FRACTION: u64 = 20;

pub struct Player {
    source: Source,
    index: Index,
    reader: Option<LogReader>,
    ahead: VecDeque<Record>,
    /// Where to reopen the log when the reader ran dry (the log grew): an offset and how
    /// many records there were already applied.
    resume: (u64, u64),
    /// Events applied so far.
    pub pos: u64,
    /// The largest step applied so far (steps go back after a resume).
    max_step: u64,
    /// Recorded time of the last applied event (carried forward from the last step's `t`).
    t: f64,
    pub playing: bool,
    pub speed: usize,
    /// Where the playback clock is, in recorded seconds.
    clock: f64,
    /// Pace by steps (speed × [`UNIFORM_STEPS_PER_S`] `Step` events a second) instead of
    /// by the recorded wall-clock gaps.
    pub uniform: bool,
    /// Uniform pacing: steps due but not yet played (fractions carry to the next tick).
    credit: f64,
    /// A seek to a step the background index has not reached yet ([`Player::goto_step`]):
    /// `tick` makes it once the index has, so the screen never waits on the log.
    pub pending_seek: Option<u64>,
    /// A jump to the next (`true`) or previous phase change or signal waiting for the
    /// index to reach the log's end (a live attach's index starts on the first move).
    pub pending_mark: Option<(bool, MarkKind)>,
    /// A live run's newest end; `None` for a replay.
    live: Option<LiveEnd>,
}

/// What a jump to a phase change or signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jump {
    Moved,
    /// Waiting for the index (see [`Player::pending_mark`]).
    Pending,
    /// None further in that direction.
    Nothing,
}

impl Player {
    /// A player over events in memory, indexed before it returns.
    pub fn new(events: Vec<Event>) -> Player {
        let p = Player::open(Source::from_events(&events), None);
        p.index.wait_done();
        p
    }

    /// A player over a log; the index is built in the background, and with `live` the
    /// log is followed while it grows.
    pub fn open(source: Source, live: Option<LiveCheck>) -> Player {
        Player::with_budget(source, live, crate::model::replay_index::DEFAULT_BUDGET)
    }

    pub fn with_budget(source: Source, live: Option<LiveCheck>, budget: usize) -> Player {
        let index = Index::start(source.clone(), live, budget);
        Player::over(source, index)
    }

    fn over(source: Source, index: Index) -> Player {
        Player {
            source,
            index,
            reader: None,
            ahead: VecDeque::new(),
            resume: (crate::runlog::HEADER_LEN as u64, 0),
            pos: 0,
            max_step: 0,
            t: 0.0,
            playing: true,
            // 1×: the recorded pace (`--speed`, `<`/`>` change it).
            speed: 2,
            clock: 0.0,
            uniform: false,
            credit: 0.0,
            pending_seek: None,
            pending_mark: None,
            live: None,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Events known so far (grows while the log is indexed or followed).
    pub fn len(&self) -> u64 {
        self.index.state().events.max(self.pos).max(self.live.as_ref().map_or(0, |l| l.front.events))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The log is still being written: at its end the player waits for more.
    pub fn following(&self) -> bool {
        self.index.state().following
    }

    /// What was skipped as damaged, for the header.
    pub fn damage_notice(&self) -> Option<String> {
        self.index.state().damage.notice()
    }

    pub fn damage_short(&self) -> Option<String> {
        self.index.state().damage.short()
    }

    pub fn speed_label(&self) -> String {
        let s = SPEEDS[self.speed];
        crate::fmt::speed(s, self.uniform.then_some(s * UNIFORM_STEPS_PER_S))
    }

    /// Switches between uniform (by steps) and recorded (by wall clock) pacing, starting
    /// either from where playback is now.
    pub fn set_uniform(&mut self, on: bool) {
        self.uniform = on;
        self.credit = 0.0;
        self.clock = self.t;
    }

    /// The largest step known so far: the end of the scrubber (grows with the index).
    pub fn last_step(&self) -> u64 {
        self.index.state().max_step.max(self.max_step).max(self.live.as_ref().map_or(0, |l| l.front.max_step))
    }

    /// (step, kind) of every phase change and signal indexed so far, in log order.
    pub fn mark_steps(&self) -> Vec<(u64, MarkKind)> {
        self.index.state().marks.iter().map(|m| (m.2, m.1)).collect()
    }

    /// Jumps 1/[`SCRUB_FRACTION`] of the run (steps 0 to [`Player::last_step`]) back or forward.
    pub fn scrub(&mut self, view: &mut RunView, forward: bool) {
        let last = self.last_step();
        let delta = (last / SCRUB_FRACTION).max(1);
        let target = if forward { view.step.saturating_add(delta).min(last) } else { view.step.saturating_sub(delta) };
        self.move_to_step(view, target);
    }

    /// A replay seeks at once (its index is usually ahead of it); a live run's history
    /// waits for its index (started on the first move), and past the newest step
    /// follows the live end.
    fn move_to_step(&mut self, view: &mut RunView, step: u64) {
        if self.is_live() {
            self.goto_step(view, step);
        } else {
            self.seek_step(view, step);
        }
    }

    /// The next record, decoded but not applied.
    fn peek(&mut self) -> Option<&Record> {
        if self.ahead.is_empty() {
            self.fill();
        }
        self.ahead.front()
    }

    fn fill(&mut self) {
        for _ in 0..2 {
            if self.reader.is_none() {
                let (offset, skip) = self.resume;
                let Ok(mut r) = self.source.reader_at(offset) else { return };
                // Records already applied at the reopen point (damaged spans are skipped
                // by the index too, so good records count the same in both).
                let mut skipped = 0;
                while skipped < skip {
                    match r.next() {
                        Some(Ok(_)) => skipped += 1,
                        Some(Err(_)) => {}
                        None => return,
                    }
                }
                self.reader = Some(r);
            }
            let r = self.reader.as_mut().expect("opened above");
            while self.ahead.len() < AHEAD {
                match r.next() {
                    Some(Ok(rec)) => self.ahead.push_back(rec),
                    // Damage is reported by the index; a torn record at the end of a live
                    // log is read again once the writer has finished it.
                    Some(Err(_)) => {}
                    None => break,
                }
            }
            if !self.ahead.is_empty() {
                return;
            }
            // Ran dry: reopen only when the index knows of more (the log grew).
            self.reader = None;
            if self.index.state().events <= self.pos {
                return;
            }
        }
    }

    fn time_of(&self, e: &Event) -> f64 {
        time_of(self.t, e)
    }

    fn apply_next(&mut self, view: &mut RunView) -> bool {
        if self.peek().is_none() {
            return false;
        }
        let rec = self.ahead.pop_front().expect("peeked");
        self.t = self.time_of(&rec.event);
        self.max_step = self.max_step.max(rec.event.step().unwrap_or(0));
        view.apply(&rec.event);
        self.pos += 1;
        self.resume = (rec.offset, 1);
        // Later records are decoded from this reader; the resume point only matters once
        // it runs dry, so keep it at the record just applied.
        self.clock = self.clock.max(self.t);
        true
    }

    /// Whether the index covers `step` (a snapshot within a bounded fold of it exists).
    fn indexed_to(&self, step: u64) -> bool {
        let s = self.index.state();
        s.done || s.max_step >= step
    }

    /// Seeks to `step` now if the index has reached it, else once it has (see
    /// `pending_seek`): folding forward through an unindexed log would block for as long
    /// as indexing it. Returns whether it seeked now.
    pub fn goto_step(&mut self, view: &mut RunView, step: u64) -> bool {
        if self.live_step(view).is_some_and(|live| step >= live) {
            self.follow_live(view);
            return true;
        }
        self.leave_live(view);
        if self.indexed_to(step) {
            self.pending_seek = None;
            self.seek_step(view, step);
            true
        } else {
            self.pending_seek = Some(step);
            false
        }
    }

    /// Seeks to the end of the log: now when it is indexed (or followed: its end so far),
    /// else once it is (`pending_seek` holds `u64::MAX`, the last step there is).
    pub fn goto_end(&mut self, view: &mut RunView) {
        if self.is_live() {
            return self.follow_live(view);
        }
        let known = {
            let s = self.index.state();
            s.done || s.following
        };
        if known {
            self.pending_seek = None;
            self.seek(view, self.len());
        } else {
            self.pending_seek = Some(u64::MAX);
        }
    }

    /// Advances playback by `dt` real seconds, applying due events to `view`.
    pub fn tick(&mut self, view: &mut RunView, dt: f64) -> bool {
        if self.at_live_end() {
            // The live fold moves with `poll_live`.
            return false;
        }
        if let Some((forward, kind)) = self.pending_mark {
            if !self.index_whole() {
                return false;
            }
            self.pending_mark = None;
            if let Some(i) = self.find(forward, kind) {
                self.seek(view, i);
            }
            return true;
        }
        if let Some(step) = self.pending_seek {
            if !self.indexed_to(step) {
                return false;
            }
            self.pending_seek = None;
            self.seek_step(view, step);
            return true;
        }
        if !self.playing {
            return false;
        }
        let speed = SPEEDS[self.speed];
        let before = self.pos;
        if self.uniform && !speed.is_infinite() {
            self.credit += dt * speed * UNIFORM_STEPS_PER_S;
            let mut n = 0;
            // Events between steps ride along with the step before them; each `Step`
            // spends one credit, whatever the recorded time between them.
            while n < MAX_PER_TICK {
                let is_step = match self.peek() {
                    None => break,
                    Some(r) => matches!(r.event, Event::Step { .. }),
                };
                if is_step && self.credit < 1.0 {
                    break;
                }
                if !self.apply_next(view) {
                    break;
                }
                if is_step {
                    self.credit -= 1.0;
                }
                n += 1;
            }
            // Waiting at the end of a followed log must not bank a burst for later.
            if self.peek().is_none() {
                self.credit = self.credit.min(1.0);
            }
            self.clock = self.t;
        } else if speed.is_infinite() {
            for _ in 0..MAX_PER_TICK {
                if !self.apply_next(view) {
                    break;
                }
            }
        } else if let Some(next) = self.peek().map(|r| r.event.clone()) {
            let next_t = self.time_of(&next);
            if self.clock < next_t {
                // Skip dead time (a pause, a gap before a resume) instead of waiting it out.
                self.clock = self.clock.max(next_t - 1.0);
            }
            self.clock += dt * speed;
            let mut n = 0;
            while n < MAX_PER_TICK {
                let (t, clock) = (self.t, self.clock);
                let due = self.peek().is_some_and(|r| n == 0 || time_of(t, &r.event) <= clock);
                if !due || !self.apply_next(view) {
                    break;
                }
                n += 1;
            }
        }
        // At the end of a log still being indexed or followed, wait for more; a live
        // run's history played up to its newest event follows the live end.
        if self.peek().is_none() && self.caught_up() {
            self.follow_live(view);
            return true;
        }
        if self.peek().is_none() && self.index.state().done {
            self.playing = false;
        }
        self.pos != before
    }

    /// Restores the state just before event `events` from `snap` (or the start).
    fn restore(&mut self, view: &mut RunView, snap: Option<std::sync::Arc<crate::model::replay_index::Snapshot>>) {
        self.reader = None;
        self.ahead.clear();
        match snap {
            Some(s) => {
                *view = s.view();
                self.pos = s.events;
                self.max_step = s.max_step;
                self.t = s.t;
                self.resume = (s.offset, 0);
            }
            None => {
                *view = RunView::default();
                self.pos = 0;
                self.max_step = 0;
                self.t = 0.0;
                self.resume = (crate::runlog::HEADER_LEN as u64, 0);
            }
        }
    }

    /// Moves to just after event index `target` has been applied (`target` events applied).
    pub fn seek(&mut self, view: &mut RunView, target: u64) {
        self.leave_live(view);
        let snap = self.index.snapshot_before_event(target);
        let from_here = target >= self.pos && snap.as_ref().is_none_or(|s| s.events <= self.pos);
        if !from_here {
            self.restore(view, snap);
        }
        while self.pos < target && self.apply_next(view) {}
        self.clock = self.t;
    }

    /// Seeks so that every event up to training step `step` is applied.
    pub fn seek_step(&mut self, view: &mut RunView, step: u64) {
        self.leave_live(view);
        let snap = self.index.snapshot_before_step(step);
        let from_here = self.max_step <= step && snap.as_ref().is_none_or(|s| s.events <= self.pos);
        if !from_here {
            self.restore(view, snap);
        }
        while self.peek().is_some_and(|r| r.event.step().is_none_or(|s| s <= step)) {
            self.apply_next(view);
        }
        self.clock = self.t;
    }

    /// Event count just after the next (or previous) phase change or signal.
    pub fn find(&self, forward: bool, kind: MarkKind) -> Option<u64> {
        // At the live end the view is at the live fold's end, not the player's position.
        let pos = match &self.live {
            Some(l) if l.aside.is_none() => l.front.events,
            _ => self.pos,
        };
        let s = self.index.state();
        let mut marks = s.marks.iter().filter(|m| m.1 == kind).map(|m| m.0);
        if forward { marks.find(|&i| i > pos) } else { marks.rev().find(|&i| i < pos) }
    }

    /// The index has read the whole log (a live one: up to its end so far).
    fn index_whole(&self) -> bool {
        self.index.started() && {
            let s = self.index.state();
            s.done || s.following
        }
    }

    /// Moves to the next (or previous) phase change or signal. A live run's marks are
    /// only known once its index has read up to the live end: until then the jump waits
    /// ([`Player::pending_mark`]), as it does in a replay whose index has not reached one.
    pub fn jump(&mut self, view: &mut RunView, forward: bool, kind: MarkKind) -> Jump {
        let whole = self.index_whole();
        match self.find(forward, kind) {
            Some(i) if whole || !self.is_live() => {
                self.seek(view, i);
                Jump::Moved
            }
            None if whole => Jump::Nothing,
            _ => {
                self.leave_live(view);
                self.pending_mark = Some((forward, kind));
                Jump::Pending
            }
        }
    }

    /// Applies events up to and including the next `Step` (one training step forward).
    pub fn step_forward(&mut self, view: &mut RunView) {
        if self.at_live_end() {
            return;
        }
        while self.peek().is_some() {
            let is_step = matches!(self.ahead.front().map(|r| &r.event), Some(Event::Step { .. }));
            self.apply_next(view);
            if is_step {
                break;
            }
        }
        self.clock = self.t;
        if self.peek().is_none() && self.caught_up() {
            self.follow_live(view);
        }
    }

    pub fn step_back(&mut self, view: &mut RunView) {
        let target = view.step.saturating_sub(1);
        self.move_to_step(view, target);
    }
}

/// The run's story in plain text: every phase change, signal, suggestion and command in
/// order, then the summary (for CI logs and slow links).
pub fn story(events: &[Event]) -> String {
    events.iter().filter_map(story_line).collect()
}

/// One event's line of [`story`] (with its newline), or `None` for the events the story
/// leaves out (steps, evals, probes, checkpoints); the text is [`crate::history::describe`]'s.
pub fn story_line(e: &Event) -> Option<String> {
    crate::history::describe(e).filter(|l| l.kind != "ckpt").map(|l| format!("{l}\n"))
}
