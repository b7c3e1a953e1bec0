//! A live attach's newest end: the log's tail and where its fold is. Plain data, so
//! that the player holds it without the live methods (`replay/live.rs`) being imported.

use crate::event::Event;
use crate::model::state::RunView;
use crate::runlog::{Record, Tail};

/// A live attach's newest end: the log's tail, folded as it grows.
pub(crate) struct LiveEnd {
    pub(crate) tail: Tail,
    pub(crate) front: Front,
    /// The live fold while the view shows history; `None` at the live end, where the
    /// dashboard's view is the live fold itself.
    pub(crate) aside: Option<Box<RunView>>,
}

/// Where the live fold is: records folded from the tail (the log's length in events),
/// the largest step, and the newest event's recorded time.
#[derive(Default)]
pub(crate) struct Front {
    pub(crate) events: u64,
    pub(crate) max_step: u64,
    pub(crate) t: f64,
}

impl Front {
    pub(crate) fn fold(&mut self, view: &mut RunView, r: &Record) {
        self.t = time_of(self.t, &r.event);
        self.max_step = self.max_step.max(r.event.step().unwrap_or(0));
        self.events += 1;
        view.apply(&r.event);
    }
}

/// An event's recorded time: a step's own, else carried from the last one.
pub(crate) fn time_of(carried: f64, e: &Event) -> f64 {
    match e {
        Event::Step { t, .. } => *t,
        Event::RunStarted { started_at, .. } if carried == 0.0 => *started_at,
        _ => carried,
    }
}
