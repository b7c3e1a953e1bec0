//! The arguments of `train` and `branch` that `phasetop` passes on to `phasetop-host`:
//! one definition for both binaries (each includes this file as a module), so the host
//! accepts exactly what the light CLI forwards and both `--help`s say the same.

use phasetop_core::branch::BranchArgs;
use std::path::PathBuf;

#[derive(clap::Args, Clone, Default)]
pub struct TrainOpts {
    /// Run config (TOML). Omit to run the embedded demo config.
    pub config: Option<PathBuf>,
    /// Run in the foreground with plain progress lines (no terminal needed).
    #[arg(long)]
    pub headless: bool,
    /// Run directory to create (default: runs/<name>-<utc time>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Override run.max_steps (with --resume: where the resumed run now ends).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Override run.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue RUN_DIR from its latest checkpoint, appending to its log.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "run_dir", "seed"])]
    pub resume: Option<PathBuf>,
}

#[derive(clap::Args, Clone)]
pub struct BranchOpts {
    pub run_dir: PathBuf,
    /// Branch at this step (the nearest checkpoint at or before it is used).
    #[arg(long, value_name = "STEP")]
    pub at: u64,
    /// A changed plan: same task and model as the parent.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Switch to this phase at STEP (training on from the checkpoint before it).
    #[arg(long, value_name = "PHASE")]
    pub switch: Option<String>,
    /// Start from the parent's checkpoint at exactly this step (the dashboard pins
    /// the one it planned with for its background host).
    #[arg(long, value_name = "STEP", hide = true)]
    pub from_checkpoint: Option<u64>,
    /// The child's run directory (default: next to the parent, <parent-id>-b<STEP>).
    #[arg(long = "run-dir", value_name = "DIR")]
    pub run_dir_out: Option<PathBuf>,
    /// Run in the foreground with plain progress lines (no terminal needed).
    #[arg(long)]
    pub headless: bool,
    /// Override max_steps (default: the parent's, or the --config file's).
    #[arg(long)]
    pub max_steps: Option<u64>,
}

impl BranchOpts {
    /// The branch's plan, and whether it runs headless.
    pub fn into_parts(self) -> (BranchArgs, bool) {
        let args = BranchArgs {
            parent: self.run_dir,
            at: self.at,
            config: self.config,
            switch: self.switch,
            run_dir: self.run_dir_out,
            max_steps: self.max_steps,
            from_checkpoint: self.from_checkpoint,
        };
        (args, self.headless)
    }
}
