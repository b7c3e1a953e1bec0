//! `phasetop run`: the CLI side of external runs; the host is `phasetop_core::external`.

use crate::commands::ViewOptions;
use crate::config::external::{self, LoadedExternal};
use crate::error::UsageError;
use crate::event::RunStatus;
use crate::rundir::{self, RunDir};
use anyhow::Result;
use phasetop_core::external::{self as ext, host};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct RunArgs {
    pub config: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    /// `--resume RUN_DIR`: continue that run.
    pub resume: Option<PathBuf>,
    pub headless: bool,
    pub for_pid: Option<u32>,
    pub command: Vec<String>,
    pub view: ViewOptions,
}

/// `phasetop run`.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if let Some(dir) = args.resume.clone() {
        return resume(args, &dir);
    }
    if args.command.is_empty() && args.for_pid.is_none() {
        return Err(UsageError("run needs the job's command after --: phasetop run [CONFIG] -- CMD…".into()).into());
    }
    if !args.command.is_empty() && args.for_pid.is_some() {
        return Err(UsageError("--for-pid serves a job already running: give no command".into()).into());
    }
    let loaded = match &args.config {
        Some(p) => external::load(p)?,
        None => LoadedExternal { config: external::ExternalConfig::single_phase(), path: None, source: String::new() },
    };
    if let Some(prog) = args.command.first()
        && find_program(prog).is_none()
    {
        return Err(UsageError(format!("{prog}: no such program (not a file, and not on PATH)")).into());
    }
    let run_dir =
        args.run_dir.clone().unwrap_or_else(|| rundir::new_run_path(Path::new("runs"), &loaded.config.run.name));
    RunDir::check_free(&run_dir)?;
    if !args.headless && std::io::stdout().is_terminal() {
        // The host in the background (its own session), the dashboard attached: as `train`.
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("run").arg("--headless").arg("--run-dir").arg(&run_dir);
        if let Some(c) = &args.config {
            cmd.arg(c);
        }
        cmd.arg("--").args(&args.command);
        return crate::commands::spawn_host_and_attach(cmd, &run_dir, args.view, Vec::new());
    }
    eprintln!("phasetop: run directory {}", run_dir.display());
    let status = host::run(
        host::ExternalRun { config: loaded, run_dir, command: args.command, for_pid: args.for_pid },
        Some(ext::printer()),
    )?;
    exit_code(status)
}

/// `phasetop run --resume RUN_DIR [-- CMD]`.
fn resume(args: RunArgs, dir: &Path) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if args.for_pid.is_some() {
        return Err(UsageError("--resume restarts the run's job: --for-pid does not go with it".into()).into());
    }
    RunDir::open(dir)?;
    if let Some(prog) = args.command.first()
        && find_program(prog).is_none()
    {
        return Err(UsageError(format!("{prog}: no such program (not a file, and not on PATH)")).into());
    }
    if !args.headless && std::io::stdout().is_terminal() {
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.arg("run").arg("--headless").arg("--resume").arg(dir).arg("--").args(&args.command);
        return crate::commands::spawn_host_and_attach(cmd, dir, args.view, Vec::new());
    }
    eprintln!("phasetop: resuming {}", dir.display());
    let run = host::ExternalRun {
        config: LoadedExternal { config: external::ExternalConfig::single_phase(), path: None, source: String::new() },
        run_dir: dir.to_path_buf(),
        command: args.command,
        for_pid: None,
    };
    exit_code(host::resume(run, Some(ext::printer()))?)
}

fn exit_code(status: RunStatus) -> Result<ExitCode> {
    Ok(match status {
        RunStatus::Completed | RunStatus::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// `prog` as the OS would find it: a path, or a name on PATH.
fn find_program(prog: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(prog)).find(|p| executable(p))
}
