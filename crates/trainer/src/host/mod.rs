//! The host owns a run: it builds the trainer, writes every event to the run log, serves
//! the control socket, and runs the loop that applies commands between steps.

use crate::config::{self, Config};
use crate::event::{Command, Event, LogLevel, Metrics, PhaseCause, RunStatus, SCHEMA_MAJOR, SCHEMA_MINOR};
use crate::rundir::{RunDir, RunLock, RunMeta, ScheduledSwitch, now_unix};
use crate::trainer::{Trainer, checkpoint, device_name};
use crate::{control, rules};
use anyhow::{Context, Result};
use control::{ControlServer, Pending, Reply, Status};
pub use phasetop_core::branch::BranchRun;
pub use phasetop_core::headless::{Observer, Progress, stop_on_signals};
use phasetop_core::session::{Decision, Delivery, Effect, Position, Session, SetKeys};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How to start a run.
pub struct NewRun {
    pub config: config::LoadedConfig,
    pub run_dir: PathBuf,
    pub seed: Option<u64>,
    pub max_steps: Option<u64>,
}

pub struct Host {
    dir: RunDir,
    /// The run's lock, held for the host's life (`RunLock`).
    _lock: RunLock,
    meta: RunMeta,
    trainer: Trainer,
    log: phasetop_core::session::RunLog,
    stop_flag: Arc<AtomicBool>,
    status: Arc<Mutex<Status>>,
    last_val: Metrics,
    /// A branch's `--switch` for a step past its checkpoint: (step, phase index, detail).
    scheduled_switch: Option<(u64, usize, String)>,
    last_metrics: Metrics,
    observer: Option<Box<dyn Observer>>,
    /// Commands, the rule and its suggestions, `set` keys: shared with the external host
    /// (`phasetop_core::session`); this host delivers its decisions between steps.
    session: Session,
    rollbacks: u32,
    /// Events emitted before an observer was attached (run start, resume warnings).
    early: Vec<Event>,
    costs: MonitorCosts,
}

/// Where the run loop's time goes, measured as it runs (a few `Instant::now` calls a
/// step): training steps, and each kind of monitoring on top of them. Reported in the
/// log when the run ends, so every run states what watching it cost.
#[derive(Debug, Default, Clone, Copy)]
struct MonitorCosts {
    /// `train_step`, including the per-step metrics it computes.
    steps: Duration,
    eval: Duration,
    probes: Duration,
    detectors: Duration,
    /// Appending to the run log and handing events to the observer (printer, dashboard).
    log: Duration,
}

impl MonitorCosts {
    /// The one-line summary, given the per-step metrics' share of `steps`.
    fn summary(&self, metrics: Duration) -> Option<String> {
        let busy = self.steps + self.eval + self.probes + self.detectors + self.log;
        if busy.is_zero() {
            return None;
        }
        let pct = |d: Duration| 100.0 * d.as_secs_f64() / busy.as_secs_f64();
        let total = metrics + self.eval + self.probes + self.detectors + self.log;
        Some(format!(
            "monitoring took {:.1} % of the run's busy time: per-step metrics {:.1} %, evaluation {:.1} %, \
             probes {:.1} %, detectors {:.1} %, run log and display {:.1} %",
            pct(total),
            pct(metrics),
            pct(self.eval),
            pct(self.probes),
            pct(self.detectors),
            pct(self.log)
        ))
    }
}

// Split along the host's impl blocks (pure moves): starting a run, the run loop,
// operator commands and plan edits, the rules' outcomes and rollback.
mod commands;
mod rollback;
mod run_loop;
mod start;

use run_loop::Exit;
use start::fresh_signals;
pub use start::{branch, create, logged_history, resume};
