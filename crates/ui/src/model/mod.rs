//! What a run log says: the [`state::RunView`] folded from its events, the bounded
//! [`series`] behind the charts, and the replay index of snapshots (kept in memory and
//! in the index file), and the run's own output for the console pane ([`console`]).
//! Depends on nothing else in the ui crate.

pub mod codec;
pub mod console;
pub mod follow;
pub mod index_file;
pub mod replay_index;
pub mod series;
pub mod snapshot;
pub mod starved;
pub mod state;
