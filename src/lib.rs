//! phasetop: a terminal training monitor and controller. See docs/ARCHITECTURE.md.

pub mod branch;
pub mod commands;
pub mod config;
pub mod event;
pub mod host;
pub mod inspect;
pub mod interop;
pub mod probes;
pub mod rundir;
pub mod runlog;
pub mod signals;
pub mod sysmon;
pub mod trainer;
pub mod ui;
