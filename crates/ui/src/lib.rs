//! The ratatui dashboard. It reads the run log (backfill, then the live tail) and sends
//! commands over the control socket; it never owns the run, so closing it, or losing
//! the terminal, never stops training.
//!
//! Rooms, each depending only on the ones before it (docs/DASHBOARD.md):
//! the shared leaves (`fmt`, `theme`, `keymap`, `layout`, `notify`) ← [`model`] (what a
//! run log says) ← [`player`] (moving through it) ← [`app`] (keys, modes, the `:` line)
//! ← [`render`] (drawing) ← [`terminal`] (the loop).

pub mod app;
pub mod fmt;
pub mod keymap;
pub mod layout;
pub mod model;
pub mod notify;
pub mod player;
pub mod render;
pub mod terminal;
pub mod theme;
pub mod workspace;

// The core's modules under their old names, so `crate::event::…` reads the same here.
pub(crate) use phasetop_core::{config, control, error, event, grammar, history, rundir, runlog, session, sysmon};

pub use terminal::{
    IsLive, Options, RemoteLink, ReplayOptions, enter_terminal, load_keymap, newest_live_run, on_signal,
    restore_terminal, run, with_terminal,
};
