//! `phasetop-host`: the built-in trainer's process, the only binary that links libtorch.
//! `phasetop train`, `train --resume` and `branch` start it (in the background for the
//! dashboard, in the foreground with `--headless`); `phasetop check` asks it for the
//! trainer's preflight. Its arguments are those commands' own.

use clap::{Parser, Subcommand};
use phasetop_trainer::cli;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "phasetop-host",
    version,
    about = "phasetop's training host (started by `phasetop train` and `branch`)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train from a config (the embedded demo when none is given), or resume a run.
    Train {
        config: Option<PathBuf>,
        /// Accepted for symmetry with `phasetop train`; the host always runs in the foreground.
        #[arg(long)]
        headless: bool,
        #[arg(long)]
        run_dir: Option<PathBuf>,
        #[arg(long)]
        max_steps: Option<u64>,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "run_dir", "seed"])]
        resume: Option<PathBuf>,
    },
    /// A new run from a checkpoint of another (`phasetop branch`).
    Branch {
        run_dir: PathBuf,
        #[arg(long, value_name = "STEP")]
        at: u64,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "PHASE")]
        switch: Option<String>,
        #[arg(long, value_name = "STEP")]
        from_checkpoint: Option<u64>,
        #[arg(long = "run-dir", value_name = "DIR")]
        run_dir_out: Option<PathBuf>,
        #[arg(long)]
        headless: bool,
        #[arg(long)]
        max_steps: Option<u64>,
    },
    /// Validate configs and preflight them as `train` would (none: the embedded demo).
    Check { configs: Vec<PathBuf> },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Train { config, headless: _, run_dir, max_steps, seed, resume } => {
            cli::train(cli::TrainArgs { config, run_dir, max_steps, seed, resume })
        }
        Cmd::Branch { run_dir, at, config, switch, from_checkpoint, run_dir_out, headless: _, max_steps } => {
            cli::branch(phasetop_core::branch::BranchArgs {
                parent: run_dir,
                at,
                config,
                switch,
                run_dir: run_dir_out,
                max_steps,
                from_checkpoint,
            })
        }
        Cmd::Check { configs } => {
            // `phasetop check … | head` dies quietly, as Unix tools do.
            // SAFETY: restoring the default disposition of one signal, before any thread starts.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            cli::check(&configs)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phasetop: {e:#}");
            ExitCode::from(phasetop_core::error::exit_code_for(&e))
        }
    }
}
