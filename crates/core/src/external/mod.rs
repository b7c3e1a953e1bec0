//! External runs: `phasetop run [CONFIG] -- CMD…` watches and steers a training script
//! phasetop does not run itself (PyTorch, torchrun/DDP), through the Python client in
//! `python/phasetop` or anything speaking the job protocol (docs/CLIENT.md). No libtorch
//! here: the host is the run log, the detectors and phase rules, and a tokio server on
//! the run's socket.

pub mod host;
mod job;
pub mod protocol;
mod server;
pub mod state;

/// The run directory, in the job's environment.
pub const ENV_RUN_DIR: &str = "PHASETOP_RUN_DIR";
/// The run's socket, in the job's environment.
pub const ENV_SOCKET: &str = "PHASETOP_SOCKET";

use crate::event::Event;

/// Headless lines: phase changes, commands, warnings, the end, and a progress line
/// about once a second. Printing stops at the first failed write (a closed stdout).
pub fn printer() -> state::Printer {
    let mut closed = false;
    let mut last = std::time::Instant::now();
    Box::new(move |ev: &Event| {
        use std::io::Write;
        let line = match ev {
            Event::PhaseChanged { step, from, to, cause, detail } => {
                let d = detail.as_deref().map(|d| format!(", {d}")).unwrap_or_default();
                format!("phase {} -> {to} at step {step} ({}{d})", from.as_deref().unwrap_or("-"), cause.as_str())
            }
            Event::Command { step, command, applied, message, .. } => {
                format!("command {command} {} at step {step}: {message}", if *applied { "applied" } else { "refused" })
            }
            Event::Log { step, level, message } => {
                format!("{} at step {step}: {message}", format!("{level:?}").to_lowercase())
            }
            Event::RunEnded { step, status, message } => format!("run {} at step {step}: {message}", status.as_str()),
            Event::Step { step, phase, metrics, .. } if last.elapsed().as_secs() >= 1 => {
                last = std::time::Instant::now();
                let m: Vec<String> = metrics.iter().take(4).map(|(k, v)| format!("{k} {v:.4}")).collect();
                format!("step {step} phase {phase} {}", m.join(" "))
            }
            _ => return,
        };
        if closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            closed = true;
        }
    })
}
