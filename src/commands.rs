//! The CLI's commands, callable from tests. Exit codes: 0 success, 1 runtime failure
//! (or a command the run refused), 2 usage or config errors.

use crate::config;
use crate::control;
use crate::error::UsageError;
use crate::event::Command;
use crate::event::RunStatus;
use crate::inspect::Summary;
use crate::rundir::{self, RunDir};
use crate::session::RunSummary;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub headless: bool,
    pub run_dir: Option<PathBuf>,
    pub max_steps: Option<u64>,
    pub seed: Option<u64>,
    pub resume: Option<PathBuf>,
    pub view: ViewOptions,
}

/// How the dashboard looks.
#[derive(Clone, Default)]
pub struct ViewOptions {
    pub layout: String,
    pub theme: Option<crate::ui::theme::ThemeKind>,
    pub ascii: bool,
    pub keys_file: Option<PathBuf>,
    /// `--notify`: off, bell or osc (`None`: the config's `[dashboard] notify`, else osc).
    pub notify: Option<crate::config::NotifyMode>,
    /// Opened from the workspace: Esc goes back to its list.
    pub back_to_list: bool,
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    use std::io::IsTerminal;
    // Without a terminal (CI, pipes, nohup) never draw: run headless instead.
    if !args.headless && std::io::stdout().is_terminal() {
        return train_in_background(args);
    }
    exec_host(host_train_args(&args))
}

/// The training host's arguments for `args` (`phasetop-host train …`).
fn host_train_args(args: &TrainArgs) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["train".into(), "--headless".into()];
    if let Some(dir) = &args.resume {
        a.extend(["--resume".into(), dir.into()]);
    }
    if let Some(c) = &args.config {
        a.push(c.into());
    }
    if let Some(d) = &args.run_dir {
        a.extend(["--run-dir".into(), d.into()]);
    }
    if let Some(s) = args.seed {
        a.extend(["--seed".into(), s.to_string().into()]);
    }
    if let Some(m) = args.max_steps {
        a.extend(["--max-steps".into(), m.to_string().into()]);
    }
    a
}

/// Where the training host is: `$PHASETOP_HOST`, else `phasetop-host` next to this
/// binary (how cargo builds and installs them), else on `PATH`.
fn host_exe() -> Result<PathBuf> {
    // Set but empty counts as unset (`PHASETOP_HOST= phasetop …`).
    if let Some(p) = std::env::var_os("PHASETOP_HOST").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let sibling = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("phasetop-host")));
    if let Some(p) = sibling.filter(|p| p.is_file()) {
        return Ok(p);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("phasetop-host"))
        .find(|p| p.is_file());
    on_path.ok_or_else(|| {
        anyhow::anyhow!(
            "the trainer is not installed: this phasetop is the viewer/controller alone (built with \
             --no-default-features), and training needs `phasetop-host`. Install it with PyTorch \
             present: ./scripts/setup-torch.sh && cargo install --path . (or set PHASETOP_HOST)"
        )
    })
}

/// Runs the training host in this process's place (`--headless`, `check`): its output,
/// signals and exit code are the command's own.
fn exec_host(args: Vec<OsString>) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let exe = host_exe()?;
    let err = std::process::Command::new(&exe).args(args).exec();
    bail!("cannot start the training host {}: {err}", exe.display())
}

/// `check`: validation and the trainer's preflight (device, data, memory) by the
/// training host; without one, validation alone, saying so.
pub fn check(paths: &[PathBuf]) -> Result<ExitCode> {
    if host_exe().is_ok() {
        let mut args: Vec<OsString> = vec!["check".into()];
        args.extend(paths.iter().map(|p| p.into()));
        return exec_host(args);
    }
    Ok(config::check_each(paths, |_| Ok(" (preflight skipped: the trainer is not installed)".into())))
}

/// Parses `ctl` words into a request body ([`phasetop_core::grammar`]: the dashboard's
/// `:` line parses the same way).
pub fn parse_ctl(words: &[String]) -> Result<serde_json::Value, UsageError> {
    use phasetop_core::grammar::{self, Request};
    let command = match grammar::parse(words).map_err(|e| UsageError(e.to_string()))? {
        Request::Status => return Ok(serde_json::json!({"cmd": "status"})),
        Request::Plan { path } => {
            // A FIFO or a device named here would hang `ctl`: a regular file, bounded.
            let bytes = phasetop_core::files::read_regular(Path::new(&path), "a config", config::MAX_CONFIG_BYTES)
                .map_err(UsageError)?;
            Command::Plan {
                config: String::from_utf8(bytes).map_err(|e| UsageError(format!("{path}: not UTF-8 text: {e}")))?,
            }
        }
        Request::Command(c) => c,
    };
    Ok(serde_json::to_value(command).expect("command serialises"))
}

pub fn ctl(run_dir: &Path, words: &[String]) -> Result<ExitCode> {
    let body = parse_ctl(words)?;
    let dir = RunDir { path: run_dir.to_path_buf() };
    // `set` names one of the run's own keys (its log says which): refused here, exit 2.
    if let Ok(Command::Set { key, value }) = serde_json::from_value::<Command>(body.clone())
        && let Some(keys) = phasetop_core::session::keys::of_log(&dir.log())
    {
        keys.check(&key, value).map_err(UsageError)?;
    }
    let reply = match control::request(&dir.socket(), &body) {
        // A live host that does not answer: say that, not "no live run".
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => bail!("{}: {e}", run_dir.display()),
        r => r,
    };
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            // A run that ended, or whose host is gone, says so (as `ls` would), and only
            // that: its socket being gone is the expected state, not an error to quote.
            let ended = (dir.host_state() == rundir::HostState::Gone)
                .then(|| Summary::load(&dir.log()).ok())
                .flatten()
                .map(|s| s.with_host(rundir::HostState::Gone));
            match ended {
                Some(s) => bail!(
                    "no live run at {}: it is {} at step {}{}",
                    run_dir.display(),
                    s.status,
                    s.last_step,
                    s.end_message
                        .as_deref()
                        .and_then(|m| m.lines().next())
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                ),
                None => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "no live run at {} (cannot reach {})",
                        run_dir.display(),
                        dir.socket().display()
                    )));
                }
            }
        }
    };
    if reply.ok {
        use std::io::IsTerminal;
        // `status` in a terminal reads as lines; piped, it stays `step N: {json}` for scripts.
        let status = (body.get("cmd").and_then(|c| c.as_str()) == Some("status") && std::io::stdout().is_terminal())
            .then(|| serde_json::from_str::<control::Status>(&reply.message).ok())
            .flatten();
        match status {
            Some(s) => print!("{}", status_text(&s)),
            None => println!("step {}: {}", reply.step, reply.message),
        }
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("refused at step {}: {}", reply.step, reply.message)
    }
}

/// `ctl RUN status` for a person: one fact a line.
fn status_text(s: &control::Status) -> String {
    let mut out = format!(
        "run     {}\nstep    {}\nphase   {}{}\n",
        s.run_id,
        s.step,
        s.phase,
        if s.paused { " (paused)" } else { "" }
    );
    for g in &s.suggestions {
        out += &format!(
            "suggestion {}: switch to {} ({}) — ctl accept {} / dismiss {}\n",
            g.id, g.to_phase, g.because, g.id, g.id
        );
    }
    out
}

pub fn inspect(run_dir: &Path, json: bool) -> Result<ExitCode> {
    let dir = RunDir::open(run_dir)?;
    let summary = Summary::load(&dir.log())
        .map_err(|e| crate::interop::log_error(&dir.log(), e))?
        .with_host(dir.host_state())
        .with_meta(dir.read_meta().ok().as_ref());
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `export`: the run as CSV, JSON lines or a TensorBoard event file (docs/INTEROP.md).
pub fn export(run_dir: &Path, format: &str, output: &Path) -> Result<ExitCode> {
    let format: crate::interop::Format = format.parse()?;
    let done = crate::interop::export(run_dir, format, output)?;
    if done.path == Path::new(crate::interop::export::STDOUT) {
        // stdout carries the data: the report goes to stderr.
        eprintln!("exported {} to stdout", run_dir.display());
    } else {
        println!("exported {} to {}", run_dir.display(), done.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `import`: TensorBoard scalars into a new run directory (docs/INTEROP.md).
pub fn import(src: &Path, output: &Path) -> Result<ExitCode> {
    let r = crate::interop::import(src, output)?;
    println!(
        "imported {} scalars at {} steps from {} file(s) into {}; {} signal(s)",
        r.scalars,
        r.steps,
        r.files,
        r.run_dir.display(),
        r.signals
    );
    for (tag, metric) in r.tags.iter().filter(|(t, m)| t != m) {
        println!("  {tag} → {metric}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `train` in a terminal: the host runs as a detached background process (its own
/// session, so a closed terminal or a dropped SSH connection never stops it) and the
/// dashboard attaches to it.
fn train_in_background(args: TrainArgs) -> Result<ExitCode> {
    let run_dir = match &args.resume {
        Some(dir) => {
            // Refused before host.log is opened in the live run's directory.
            if RunDir::open(dir)?.is_live() {
                bail!("{}: another host is live on this run; nothing was changed", dir.display());
            }
            dir.clone()
        }
        None => {
            // Validated and preflighted by the host before any directory exists (exit 2
            // with the config's location); its `check` prints the error.
            let mut check = std::process::Command::new(host_exe()?);
            check.arg("check").args(args.config.iter()).stdout(std::process::Stdio::null());
            let status = check.status().context("cannot start the training host")?;
            if !status.success() {
                return Ok(ExitCode::from(status.code().unwrap_or(1).clamp(1, 255) as u8));
            }
            let name = match &args.config {
                Some(p) => config::load(p)?.config.run.name,
                None => config::parse(config::DEMO_NAME, config::DEMO_CONFIG)?.run.name,
            };
            let dir = args.run_dir.clone().unwrap_or_else(|| rundir::new_run_path(Path::new("runs"), &name));
            RunDir::check_free(&dir)?;
            dir
        }
    };
    let view = args.view.clone();
    let mut host_args = TrainArgs { run_dir: args.resume.is_none().then(|| run_dir.clone()), ..args };
    if host_args.resume.is_none() && host_args.config.is_none() {
        // The embedded demo: hand the host a file it can read.
        if !run_dir.exists() {
            phasetop_core::modes::create_dir(&run_dir, phasetop_core::modes::dir_mode(false))?;
        }
        let p = run_dir.join(config::DEMO_NAME);
        std::io::Write::write_all(&mut phasetop_core::modes::create_file(&p)?, config::DEMO_CONFIG.as_bytes())?;
        host_args.config = Some(p);
    }
    let mut cmd = std::process::Command::new(host_exe()?);
    cmd.args(host_train_args(&host_args));
    spawn_host_and_attach(cmd, &run_dir, view, Vec::new())
}

/// `branch`: a new run from a checkpoint of another (see `crate::branch`), in the
/// foreground with `--headless`, else as a background host with the dashboard attached.
pub fn branch(args: crate::branch::BranchArgs, headless: bool, view: ViewOptions) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if headless || !std::io::stdout().is_terminal() {
        return exec_host(args.cli_args());
    }
    let planned = crate::branch::plan(&args)?;
    for n in &planned.notes {
        eprintln!("phasetop: {n}");
    }
    // The host plans again from the same arguments, pinned to this plan's checkpoint,
    // directory and end: one code path for both.
    let mut cmd = std::process::Command::new(host_exe()?);
    cmd.args(args.host_args(&planned));
    let run_dir = planned.run.run_dir.clone();
    // A branch is a comparison: its parent is overlaid from the start.
    spawn_host_and_attach(cmd, &run_dir, view, vec![args.parent.clone()])
}

/// Starts `cmd` (a `--headless` host for `run_dir`) as a detached background process,
/// waits until it serves the run, and attaches the dashboard (with `overlay` runs).
pub(crate) fn spawn_host_and_attach(
    mut cmd: std::process::Command,
    run_dir: &Path,
    view: ViewOptions,
    overlay: Vec<PathBuf>,
) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let run_dir = run_dir.to_path_buf();
    // Private until the host sets the run's mode (0750 with group_readable); an existing
    // directory (a resume) keeps its own.
    if !run_dir.exists() {
        phasetop_core::modes::create_dir(&run_dir, phasetop_core::modes::dir_mode(false))?;
    }
    let host_log = phasetop_core::modes::append_file(&run_dir.join(rundir::HOST_LOG))?;
    cmd.stdin(std::process::Stdio::null()).stdout(host_log.try_clone()?).stderr(host_log);
    // setsid: a new session without a controlling terminal, immune to the terminal's SIGHUP.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the training host")?;
    let dir = RunDir { path: run_dir.clone() };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !(dir.log().exists() && dir.is_live()) {
        if let Some(status) = child.try_wait()? {
            // A short run can start and finish before the first look: show it, ended.
            if status.success() && dir.log().exists() {
                return attach_dir(&run_dir, view, None, overlay);
            }
            let log = std::fs::read_to_string(run_dir.join(rundir::HOST_LOG)).unwrap_or_default();
            bail!("the training host exited ({status}) before starting:\n{}", log.trim());
        }
        if std::time::Instant::now() > deadline {
            bail!("the training host did not start within 120 s (see {})", run_dir.join(rundir::HOST_LOG).display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Reap the host when it ends while the dashboard is still open, so it does not
    // linger as a zombie; if the dashboard leaves first, init adopts the host.
    std::thread::spawn(move || child.wait());
    attach_dir(&run_dir, view, None, overlay)
}

/// `attach`; `with_parent` overlays the run's parent (it must be a branch).
pub fn attach(run_dir: Option<PathBuf>, with_parent: bool, view: ViewOptions) -> Result<ExitCode> {
    let dir = match run_dir {
        Some(d) => d,
        None => crate::ui::newest_live_run(Path::new("runs"))
            .ok_or_else(|| UsageError("no live run under runs/ (name one: phasetop attach RUN_DIR)".into()))?,
    };
    let overlay = if with_parent { vec![parent_dir(&dir)?] } else { Vec::new() };
    attach_dir(&dir, view, None, overlay)
}

/// `replay`: the recorded run in the dashboard, or its story as text with `--headless`.
/// Several runs: overlaid on the same charts, or their stories and a final-metrics table.
/// `with_parent`: the first run's parent (it must be a branch) is compared as the second run.
pub fn replay(
    run_dirs: &[PathBuf],
    speed: &str,
    from: Option<u64>,
    uniform: bool,
    headless: bool,
    with_parent: bool,
    view: ViewOptions,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let mut run_dirs = run_dirs.to_vec();
    if with_parent && let Some(first) = run_dirs.first() {
        let parent = parent_dir(first)?;
        run_dirs.insert(1, parent);
    }
    let run_dirs = &run_dirs[..];
    let Some((run_dir, rest)) = run_dirs.split_first() else {
        return Err(UsageError("replay needs a run directory".into()).into());
    };
    // Checked with or without a screen, so that a script's typo is not silently ignored.
    let speeds = crate::ui::player::replay::SPEEDS;
    let speed = if speed == "max" {
        speeds.len() - 1
    } else {
        let x: f64 = speed
            .trim_end_matches('x')
            .parse()
            .map_err(|_| UsageError(format!("--speed: \"{speed}\" is not a number or \"max\"")))?;
        // The replay's speeds are steps of its `<`/`>` keys: a speed between two is refused
        // with the list, never silently changed (50 used to become 30×).
        match (0..speeds.len() - 1).find(|&i| (speeds[i] - x).abs() < 1e-9) {
            Some(i) => i,
            None => {
                let list: Vec<String> = speeds[..speeds.len() - 1].iter().map(|s| s.to_string()).collect();
                return Err(UsageError(format!("--speed {speed}: choose one of {} or max", list.join(", "))).into());
            }
        }
    };
    if headless || !std::io::stdout().is_terminal() {
        let mut views = Vec::new();
        for d in run_dirs {
            let dir = RunDir::open(d)?;
            let log = dir.log();
            let reader = crate::runlog::Reader::open(&log).map_err(|e| crate::interop::log_error(&log, e))?;
            if run_dirs.len() > 1 {
                println!("== {} ==", d.display());
            }
            // Streamed: memory stays bounded however long the log (the view's series are).
            use std::io::Write;
            let mut view = crate::ui::model::state::RunView::default();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for item in reader {
                match item {
                    Ok(r) => {
                        if let Some(line) = crate::ui::player::replay::story_line(&r.event) {
                            out.write_all(line.as_bytes())?;
                        }
                        if run_dirs.len() > 1 {
                            view.apply(&r.event);
                        }
                    }
                    Err(p) => writeln!(
                        out,
                        "(skipped damaged log at offset {}: {} — {})",
                        p.offset,
                        p.kind.as_str(),
                        p.detail
                    )?,
                }
            }
            drop(out);
            println!();
            let summary = Summary::load(&log).map_err(|e| crate::interop::log_error(&log, e))?;
            print!("{}", summary.with_host(dir.host_state()).render_text());
            if run_dirs.len() > 1 {
                println!();
                views.push(view);
            }
        }
        if run_dirs.len() > 1 {
            let names =
                crate::ui::player::compare::run_names(&run_dirs.iter().map(PathBuf::as_path).collect::<Vec<_>>());
            println!("== comparison (final values) ==");
            print!("{}", crate::ui::player::compare::comparison_table(&names, &views.iter().collect::<Vec<_>>()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A log that cannot be read at all is an error here, before the screen opens (the
    // player would show an empty run). A live run's log may not have its header yet.
    for d in run_dirs {
        let dir = RunDir::open(d)?;
        match crate::runlog::Reader::open(&dir.log()) {
            Ok(_) => {}
            Err(crate::runlog::LogError::TooShort { .. }) if dir.is_live() => {}
            Err(e) => return Err(crate::interop::log_error(&dir.log(), e)),
        }
    }
    attach_dir(
        run_dir,
        view,
        Some(crate::ui::ReplayOptions { speed, from, uniform, compare: rest.to_vec() }),
        Vec::new(),
    )
}

/// The run directory a branched run's `run.json` names as its parent (for `--with-parent`).
fn parent_dir(child: &Path) -> Result<PathBuf> {
    let meta = RunDir::open(child)?.read_meta()?;
    let p = meta
        .parent
        .ok_or_else(|| UsageError(format!("--with-parent: {} is not a branch of another run", child.display())))?;
    let dir = PathBuf::from(&p.run_dir);
    if RunDir::open(&dir).is_err() {
        return Err(UsageError(format!("--with-parent: the parent run {} ({}) is gone", p.run_id, p.run_dir)).into());
    }
    Ok(dir)
}

fn attach_dir(
    dir: &Path,
    view: ViewOptions,
    replay: Option<crate::ui::ReplayOptions>,
    overlay: Vec<PathBuf>,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(UsageError("attach needs a terminal; use `phasetop inspect` or `--headless` instead".into()).into());
    }
    let exit = crate::ui::run(crate::ui::Options {
        run_dir: dir.to_path_buf(),
        layout: if view.layout.is_empty() { "default".into() } else { view.layout },
        theme: view.theme,
        ascii: view.ascii,
        keys_file: view.keys_file,
        notify: view.notify,
        replay,
        overlay,
        remote: None,
        back_to_list: view.back_to_list,
    })?;
    match exit {
        crate::ui::app::Exit::Detach => {
            let live = RunDir { path: dir.to_path_buf() }.is_live();
            if live {
                println!("detached; training goes on. Re-attach with: phasetop attach {}", dir.display());
            }
        }
        crate::ui::app::Exit::Stop => println!("stop sent; the run checkpoints and stops: {}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// One run as `ls` lists it (and `ls --json` writes it, one object a line: the
/// workspace reads remote roots that way).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LsRow {
    pub run: String,
    pub path: PathBuf,
    pub config: String,
    /// completed, stopped, failed, diverged, running, paused, stale, …
    pub status: String,
    pub phase: String,
    pub step: u64,
    /// Seconds since the log was last written.
    pub age_s: Option<u64>,
    /// `RUN@STEP` for a branch, else empty.
    pub branched_from: String,
    pub tags: Vec<String>,
    /// The last `train_loss` (or `loss`) recorded.
    pub last_loss: Option<f64>,
    /// Recent values of that loss, oldest first, for a sparkline (may be empty).
    #[serde(default)]
    pub recent_loss: Vec<f64>,
    /// Why a start failed before its log existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

/// The runs under `root`, by name. `Err` only when `root` cannot be read.
pub fn ls_rows(root: &Path) -> std::io::Result<Vec<LsRow>> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(root)?.flatten() {
        let path = e.path();
        let run = e.file_name().to_string_lossy().into_owned();
        if let Some(why) = RunDir::failed_start(&path) {
            let meta = RunDir { path: path.clone() }.read_meta().ok();
            rows.push(LsRow {
                run,
                path,
                config: meta.map(|m| m.config_name).unwrap_or_default(),
                status: "failed".into(),
                phase: String::new(),
                step: 0,
                age_s: None,
                branched_from: String::new(),
                tags: Vec::new(),
                last_loss: None,
                recent_loss: Vec::new(),
                why,
            });
            continue;
        }
        let Ok(dir) = RunDir::open(&path) else { continue };
        let host = dir.host_state();
        let Some(s) = RunSummary::current(&dir, host) else { continue };
        // No end, and no answer though a process still holds the run (a host starting
        // or hung): `stale`. A run nobody holds any more is `failed` (as `with_host`).
        let status = match (s.status.as_str(), host) {
            ("unknown", rundir::HostState::Answering) => RunStatus::Running.as_str().to_string(),
            ("unknown", rundir::HostState::Gone) => RunStatus::Failed.as_str().to_string(),
            ("unknown", rundir::HostState::Silent) => "stale".into(),
            (other, _) => other.to_string(),
        };
        let age_s = std::fs::metadata(dir.log())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .map(|a| a.as_secs());
        let phase = s.phase.clone();
        // A branch names the run and the step it leaves it at (`phasetop branch --at`).
        let meta = dir.read_meta().ok();
        let branched_from = match (meta.as_ref().and_then(|m| m.branched_at().map(|at| (m, at))), s.parent.as_ref()) {
            (Some((m, at)), _) => format!("{}@{at}", m.parent.as_ref().map_or("", |p| p.run_id.as_str())),
            (None, Some(p)) => format!("{}@{}", p.run_id, p.branch_step),
            (None, None) => String::new(),
        };
        let last_loss = ["train_loss", "loss"].iter().find_map(|k| s.metrics.get(*k).copied().flatten());
        rows.push(LsRow {
            run,
            path,
            config: s.config_name.clone(),
            status,
            phase,
            step: s.step,
            age_s,
            branched_from,
            tags: s.tags.clone(),
            last_loss,
            recent_loss: s.loss_trend.clone(),
            why: String::new(),
        });
    }
    rows.sort_by(|a, b| a.run.cmp(&b.run));
    Ok(rows)
}

/// `ls [--json] [ROOT]`: one line per run under `root`. ROOT given and missing is an
/// error (exit 2); the default `runs/` missing just means no runs yet.
pub fn ls(root: Option<&Path>, json: bool) -> Result<ExitCode> {
    use std::io::Write;
    let given = root.is_some();
    let root = root.unwrap_or(Path::new("runs"));
    let rows = match ls_rows(root) {
        Ok(rows) => rows,
        Err(e) if given => return Err(UsageError(format!("{}: {e}", root.display())).into()),
        Err(_) if json => return Ok(ExitCode::SUCCESS),
        Err(_) => {
            println!("no runs under {}", root.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut out = std::io::stdout().lock();
    if json {
        for r in &rows {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<36} {:<22} {:<10} {:<14} {:>9} {:>5}  {:<16} TAGS",
        "RUN", "CONFIG", "STATUS", "PHASE", "STEP", "AGE", "BRANCHED FROM"
    )?;
    for r in rows {
        let age = r.age_s.map_or("-".into(), crate::ui::fmt::age);
        let (phase, from) = if r.why.is_empty() {
            let from = if r.branched_from.is_empty() { "-".to_string() } else { r.branched_from };
            // An external run's tags (`init(tags=…)`) beside where it came from.
            let from = if r.tags.is_empty() { from } else { format!("{from:<16} {}", r.tags.join(",")) };
            (r.phase, from)
        } else {
            ("-".into(), r.why)
        };
        writeln!(
            out,
            "{:<36} {:<22} {:<10} {:<14} {:>9} {:>5}  {from}",
            r.run, r.config, r.status, phase, r.step, age
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
