//! Streaming detectors over one metric series: pure Rust over numbers, no tensors, no I/O.
//!
//! Every detector implements [`Detector`]: feed it `(step, value)` points in increasing
//! step order and it returns a [`Firing`] when its condition is met. Each costs O(1)
//! amortised per point (the change-point detector is O(`max_run`), a fixed constant,
//! independent of history length). A [`DetectorSpec`] names a detector and its
//! parameters (as a config does); a [`Bank`] holds detectors per (detector, metric) and
//! feeds them. See docs/SIGNALS.md for definitions, defaults and measured behaviour.
//!
//! Conventions shared by all detectors:
//! - Points whose step is not greater than the previous accepted step are ignored
//!   (a resumed run that restarts its steps should [`Detector::reset`] its detectors).
//!   The divergence detector still reports non-finite values at any step.
//! - Non-finite values are ignored by every detector except divergence.
//! - Windows and smoothing constants called `*_steps` are in training steps and use the
//!   supplied step values (irregular spacing, e.g. evals every N steps, is fine); those
//!   called `*_points` count points.
//! - A detector fires once per event and re-arms only after its condition has clearly
//!   ended (each detector documents its hysteresis).
//! - `Firing::score` is always finite (non-finite values report `f64::MAX`), so it
//!   serialises to JSON.

mod bank;
mod changepoint;
mod collapse;
mod divergence;
mod jump;
mod plateau;
mod stats;

pub use bank::{Bank, DetectorKind, DetectorSpec, Signal, SpecError};
pub use changepoint::{Changepoint, ChangepointParams, Transform, Trend};
pub use collapse::{Collapse, CollapseParams};
pub use divergence::{Divergence, DivergenceParams, Spike};
pub use jump::{Direction, Jump, JumpParams};
pub use plateau::{Plateau, PlateauParams};

/// A detector's report. The detector and metric names are attached by the caller
/// (see [`Signal`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Firing {
    /// The step of the point that triggered the firing.
    pub step: u64,
    /// Detector-specific strength (documented per detector); always finite.
    pub score: f64,
    /// A short human-readable explanation.
    pub message: String,
    /// The figures behind the message, for readers that would otherwise parse it.
    pub figures: crate::event::SignalFigures,
}

/// A streaming detector over one metric series.
pub trait Detector: Send + std::fmt::Debug {
    /// Feeds one point; returns a firing when the detector's condition is met.
    fn push(&mut self, step: u64, value: f64) -> Option<Firing>;
    /// Forgets all history, as if freshly built with the same parameters.
    fn reset(&mut self);
    /// Keeps the history but forgets having fired: a condition that still holds fires
    /// again on the next point (a phase rule's `min_steps` ignores earlier firings and
    /// re-arms its detector when the phase is old enough). The jump detector reports
    /// events, not conditions, and has nothing to re-arm.
    fn rearm(&mut self);
    /// Whether the condition of the last firing still holds at the last point (the
    /// rise has not fallen back, the new level persists, the series is still flat or
    /// still collapsed). A rule with `confirm_steps` asks this that many steps after
    /// the firing before it acts; false before any firing.
    fn holds(&self) -> bool;
    /// The detector's kind.
    fn kind(&self) -> DetectorKind;
}
