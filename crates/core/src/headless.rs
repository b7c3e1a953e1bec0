//! Running a host in the foreground (`--headless`, the built-in trainer's and an
//! external job's): the [`Observer`] a host reports to, the plain progress printer, and
//! a graceful stop on SIGINT, SIGTERM and SIGHUP.

use crate::event::{Event, Metrics};
use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Receives every event as it is written (the headless printer, tests).
pub trait Observer {
    fn event(&mut self, _ev: &Event) {}
    /// Called about once a second with the latest step metrics.
    fn progress(&mut self, _p: &Progress) {}
}

impl Observer for () {}

#[derive(Debug, Clone)]
pub struct Progress {
    pub step: u64,
    pub max_steps: u64,
    pub phase: String,
    pub metrics: Metrics,
    pub val: Metrics,
    pub steps_per_s: f64,
}

/// Raises `flag` on SIGINT, SIGTERM and SIGHUP, so the run loop stops gracefully.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Plain progress lines for `--headless`: one about every second, plus one per phase
/// change, operator command, warning and the end of the run. A closed stdout (`| head`)
/// or a full disk does not stop the run: the first failed write turns printing off and
/// training goes on with its log (SIGPIPE is ignored in Rust programs, so a write to a
/// closed pipe fails with EPIPE instead of killing the process).
#[derive(Default)]
pub struct HeadlessPrinter {
    closed: bool,
}

impl HeadlessPrinter {
    fn line(&mut self, text: std::fmt::Arguments) {
        use std::io::Write;
        if self.closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if out.write_fmt(text).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
            self.closed = true;
        }
    }
}

fn fmt_metric(m: &crate::event::Metrics, key: &str, prec: usize) -> String {
    m.get(key).map_or("-".into(), |v| format!("{v:.prec$}"))
}

impl Observer for HeadlessPrinter {
    /// Phase changes, commands, log lines and the end, as the replay story tells them
    /// ([`crate::history::describe`]).
    fn event(&mut self, ev: &Event) {
        if let Event::PhaseChanged { .. } | Event::Command { .. } | Event::Log { .. } | Event::RunEnded { .. } = ev
            && let Some(line) = crate::history::describe(ev)
        {
            self.line(format_args!("{line}"));
        }
    }

    fn progress(&mut self, p: &Progress) {
        self.line(format_args!(
            "step {}/{} phase {} loss {} acc {} val_acc {} {:.1} steps/s",
            p.step,
            p.max_steps,
            p.phase,
            fmt_metric(&p.metrics, "train_loss", 4),
            fmt_metric(&p.metrics, "train_acc", 3),
            fmt_metric(&p.val, "val_acc", 3),
            p.steps_per_s
        ));
    }
}
