//! What `phasetop-host` does: the built-in trainer's runs in the foreground (`train`,
//! `train --resume`, `branch`), and `check` with the trainer's own preflight (device,
//! data files, memory). The light `phasetop` binary starts this one for those commands.

use crate::config::{self, LoadedConfig};
use crate::event::RunStatus;
use crate::host;
use crate::rundir::{self, RunDir};
use anyhow::Result;
use phasetop_core::headless::{HeadlessPrinter, stop_on_signals};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub max_steps: Option<u64>,
    pub seed: Option<u64>,
    pub resume: Option<PathBuf>,
}

/// A run (new or resumed) in the foreground with plain progress lines.
pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let stop = stop_on_signals()?;
    let host = match &args.resume {
        Some(dir) => host::resume(dir, stop, args.max_steps)?,
        None => {
            let (config, run_dir) = new_run_config(&args)?;
            host::create(host::NewRun { config, run_dir, seed: args.seed, max_steps: args.max_steps }, stop)?
        }
    };
    run_headless(host)
}

/// A branch (`crate::branch` plans it) in the foreground.
pub fn branch(args: crate::branch::BranchArgs) -> Result<ExitCode> {
    let planned = crate::branch::plan(&args)?;
    for n in &planned.notes {
        eprintln!("phasetop: {n}");
    }
    let host = host::branch(planned.run, stop_on_signals()?)?;
    run_headless(host)
}

/// `check`: each config validated, then preflighted as `train` would (no config: the
/// embedded demo). One line per config on stdout; errors on stderr.
pub fn check(paths: &[PathBuf]) -> Result<ExitCode> {
    if paths.is_empty() {
        crate::trainer::memory::preflight(&demo_config()?)?;
        println!("{}: ok", config::DEMO_NAME);
        return Ok(ExitCode::SUCCESS);
    }
    Ok(config::check_each(paths, |c| {
        crate::trainer::memory::preflight(c)?;
        // A TorchScript module's probe-able layers are its own: name them.
        Ok(crate::trainer::memory::module_layers(c)
            .map_or(String::new(), |l| format!("; module layers: {}", l.join(", "))))
    }))
}

/// Runs a host in the foreground with plain progress lines (`--headless`).
fn run_headless(host: host::Host) -> Result<ExitCode> {
    eprintln!("phasetop: run directory {}", host.run_dir().display());
    let status = host.run(Box::new(HeadlessPrinter::default()))?;
    Ok(match status {
        RunStatus::Completed | RunStatus::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

fn demo_config() -> Result<LoadedConfig> {
    Ok(LoadedConfig {
        config: config::parse(&format!("<embedded {}>", config::DEMO_NAME), config::DEMO_CONFIG)?,
        path: PathBuf::from(config::DEMO_NAME),
        source: config::DEMO_CONFIG.to_string(),
    })
}

/// Loads the config (or the embedded demo) for a new run and picks its directory.
fn new_run_config(args: &TrainArgs) -> Result<(LoadedConfig, PathBuf)> {
    let loaded = match &args.config {
        Some(p) => config::load(p)?,
        None => demo_config()?,
    };
    // The device, a csv file and the memory the run needs: refused here, before any
    // directory exists, with the config's location (exit code 2).
    crate::trainer::memory::preflight(&loaded)?;
    let dir = args.run_dir.clone().unwrap_or_else(|| rundir::new_run_path(Path::new("runs"), &loaded.config.run.name));
    RunDir::check_free(&dir)?;
    Ok((loaded, dir))
}
