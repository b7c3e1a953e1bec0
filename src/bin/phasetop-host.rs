//! `phasetop-host`: the built-in trainer's process, the only binary that links libtorch.
//! `phasetop train`, `train --resume` and `branch` start it (in the background for the
//! dashboard, in the foreground with `--headless`); `phasetop check` asks it for the
//! trainer's preflight. Its arguments are those commands' own.

use clap::{Parser, Subcommand};
use phasetop_trainer::cli;
use std::path::PathBuf;

#[path = "../host_args.rs"]
mod host_args;
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
    Train(host_args::TrainOpts),
    /// A new run from a checkpoint of another (`phasetop branch`).
    Branch(host_args::BranchOpts),
    /// Validate configs and preflight them as `train` would (none: the embedded demo).
    Check { configs: Vec<PathBuf> },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        // `--headless` is accepted for symmetry: the host always runs in the foreground.
        Cmd::Train(o) => cli::train(cli::TrainArgs {
            config: o.config,
            run_dir: o.run_dir,
            max_steps: o.max_steps,
            seed: o.seed,
            resume: o.resume,
        }),
        Cmd::Branch(o) => cli::branch(o.into_parts().0),
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
