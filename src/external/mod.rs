//! External runs: `phasetop run [CONFIG] -- CMD…` watches and steers a training script
//! phasetop does not run itself (PyTorch, torchrun/DDP), through the Python client in
//! `python/phasetop` or anything speaking the job protocol (docs/CLIENT.md). No libtorch
//! here: the host is the run log, the detectors and phase rules, and a tokio server on
//! the run's socket.

pub mod cli;
pub mod host;
pub mod protocol;
pub mod state;

/// The run directory, in the job's environment.
pub const ENV_RUN_DIR: &str = "PHASETOP_RUN_DIR";
/// The run's socket, in the job's environment.
pub const ENV_SOCKET: &str = "PHASETOP_SOCKET";

