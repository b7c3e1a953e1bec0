//! A live attach's end of the player: the log's tail folded as it grows, and the moves
//! between the live end and the run's history.

use super::Player;
use crate::model::replay_index::{Index, LiveCheck, Source};
use crate::model::state::RunView;
use crate::player::live_end::{Front, LiveEnd};
use crate::runlog::{Record, Tail};
use std::path::Path;

impl Player {
    /// A live attach: folds the log as it is now into `view` (streamed, record by record:
    /// a run of 10^6 steps is never held), then follows its end as it grows
    /// ([`Player::poll_live`]). `live` says whether the run's host is still writing it.
    pub fn attach(log: &Path, live: LiveCheck, view: &mut RunView) -> std::io::Result<Player> {
        let (mut tail, mut front) = (Tail::new(log), Front::default());
        tail.poll_each(|r| front.fold(view, &r))?;
        let source = Source::File(log.to_path_buf());
        let index = Index::deferred(source.clone(), Some(live), crate::model::replay_index::LIVE_BUDGET);
        let mut p = Player::over(source, index);
        p.playing = false;
        p.live = Some(LiveEnd { tail, front, aside: None });
        Ok(p)
    }

    /// Whether this player follows a live run (an attach) rather than replaying one.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// A live attach whose view is at the live end, following the newest step.
    pub fn at_live_end(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.aside.is_none())
    }

    /// The live run's own fold while the view shows its history (what the run's
    /// controls act on); `None` at the live end (the view is it) or in a replay.
    pub fn live_view(&self) -> Option<&RunView> {
        self.live.as_ref().and_then(|l| l.aside.as_deref())
    }

    /// The live run's newest step (a replay: `None`).
    pub fn live_step(&self, view: &RunView) -> Option<u64> {
        let l = self.live.as_ref()?;
        Some(l.aside.as_deref().unwrap_or(view).step)
    }

    /// Reads what the live run appended since the last poll into the live fold (the view
    /// at the live end, else the fold kept aside) and returns it (for notifications).
    /// A replay has nothing to poll.
    pub fn poll_live(&mut self, view: &mut RunView) -> std::io::Result<Vec<Record>> {
        let Some(l) = self.live.as_mut() else { return Ok(Vec::new()) };
        let new = l.tail.poll()?;
        let target = l.aside.as_deref_mut().unwrap_or(view);
        for r in &new {
            l.front.fold(target, r);
        }
        Ok(new)
    }

    /// Back to the live end: the view is the live fold again (at once: it was kept
    /// aside, not refolded). A replay: its end.
    pub fn follow_live(&mut self, view: &mut RunView) {
        let Some(l) = self.live.as_mut() else { return self.goto_end(view) };
        if let Some(a) = l.aside.take() {
            *view = *a;
        }
        self.playing = false;
        self.pending_seek = None;
        self.pending_mark = None;
        self.reader = None;
        self.ahead.clear();
    }

    /// Before any move into history: at the live end, the live fold goes aside and the
    /// view starts as a copy of it, with the player's position there (so folding on
    /// reads from the tail's offset and a seek back restores a snapshot); the index
    /// starts if it has not.
    pub fn leave_live(&mut self, view: &mut RunView) {
        self.index.ensure_started();
        let Some(l) = self.live.as_mut() else { return };
        if l.aside.is_some() {
            return;
        }
        l.aside = Some(Box::new(view.clone()));
        self.reader = None;
        self.ahead.clear();
        (self.pos, self.max_step, self.t, self.clock) = (l.front.events, l.front.max_step, l.front.t, l.front.t);
        self.resume = (l.tail.offset(), 0);
        self.playing = false;
    }

    /// Playback in a live run's history caught up with the live end: follow it.
    pub(super) fn caught_up(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.aside.is_some() && self.pos >= l.front.events)
    }
}
