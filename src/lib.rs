//! The crates of the house under one name, for the integration tests, benches and
//! examples (`phasetop::config`, `phasetop::trainer`, …). The `phasetop` binary does not
//! use this facade, so that it never links the trainer; see docs/ARCHITECTURE.md.

pub use phasetop_core::{
    branch, checkpoints, config, control, error, event, external, grammar, headless, history, inspect, interop, remote,
    rules, rundir, runlog, session, settings, signals, sysmon,
};
#[cfg(feature = "trainer")]
pub use phasetop_trainer::{host, probes, tch, trainer};
pub use phasetop_ui as ui;
