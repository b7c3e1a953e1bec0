//! phasetop's built-in trainer (tch/libtorch), its probes, and the host that runs it:
//! the only crate that links libtorch. See docs/ARCHITECTURE.md.

// On a tch `Tensor`, `a += b` is an in-place add (`add_`): in a forward pass it breaks
// autograd, so `a = a + b` stays as written.
#![allow(clippy::assign_op_pattern)]

pub mod cli;
pub mod host;
pub mod probes;
pub mod trainer;

// The tch this crate is built with, for tests that make tensors of their own.
pub use tch;

// The core's modules under their old names, so `crate::config::…` reads the same here.
pub(crate) use phasetop_core::{branch, config, control, error, event, rules, rundir, signals};
