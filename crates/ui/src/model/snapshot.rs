//! A folded view kept at a point of the log, its series frozen (compact, shared with
//! the snapshot before it), so that a seek starts there instead of at the log's start.

use super::series::{Frozen, Series};
use super::state::RunView;

/// The folded state just before event number `events` (0-based), which starts at `offset`.
pub struct Snapshot {
    pub events: u64,
    pub offset: u64,
    /// The largest step of any event before it: a seek to step S may start here when
    /// `max_step <= S` (steps go back after a resume, so the prefix maximum is the key).
    pub max_step: u64,
    /// The replay clock there (recorded seconds).
    pub t: f64,
    /// The folded view without its series, which are kept frozen (compact, shared).
    pub(crate) view: RunView,
    pub(crate) series: Vec<(String, Frozen)>,
    /// Heap bytes this snapshot adds to the index.
    pub bytes: usize,
}

impl Snapshot {
    pub(crate) fn new(
        events: u64,
        offset: u64,
        max_step: u64,
        t: f64,
        v: &mut RunView,
        prev: Option<&Snapshot>,
    ) -> Snapshot {
        let series: Vec<(String, Frozen)> = v
            .series
            .iter()
            .map(|(k, s)| {
                let before = prev.and_then(|p| p.series.iter().find(|(pk, _)| pk == k)).map(|x| &x.1);
                (k.clone(), s.freeze(before))
            })
            .collect();
        // Cloned without its series (they are frozen above, not copied twice).
        let held = std::mem::take(&mut v.series);
        let view = v.clone();
        v.series = held;
        let bytes = approx_bytes(&view) + series.iter().map(|(k, f)| k.len() + f.own_bytes()).sum::<usize>();
        Snapshot { events, offset, max_step, t, view, series, bytes }
    }

    /// The folded view at this point.
    pub fn view(&self) -> RunView {
        let mut v = self.view.clone();
        v.series = self.series.iter().map(|(k, f)| (k.clone(), Series::thaw(f))).collect();
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    Phase,
    Signal,
}

/// Rough heap size of a folded view: its series dominate.
pub fn approx_bytes(v: &RunView) -> usize {
    v.series.values().map(|s| s.heap_bytes()).sum::<usize>()
        + v.log.len() * 96
        + (v.signals.len() + v.markers.len() + v.suggestions.all.len()) * 96
        + 4096
}
