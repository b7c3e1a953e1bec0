//! The CLI's remote commands (docs/REMOTE.md): `attach`, `replay`, `ls` and `ctl` on
//! `[user@]host:path` through the user's own ssh, and `stream`, the far end of them.

use crate::commands::ViewOptions;
use crate::error::UsageError;
use anyhow::Result;
use phasetop_core::remote::{self, Spec, mirror::Mirror, proto};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `host:path` when `p` names a remote run (see [`Spec::parse`]).
pub fn spec_of(p: &Path) -> Option<Spec> {
    Spec::parse(p.to_str()?)
}

/// `phasetop stream RUN`: serves the run's events on stdout and commands from stdin.
pub fn stream(run: &Path, from: Option<u64>, steps_per_sec: f64) -> Result<ExitCode> {
    let out: Arc<std::sync::Mutex<dyn std::io::Write + Send>> =
        Arc::new(std::sync::Mutex::new(std::io::BufWriter::with_capacity(64 << 10, std::io::stdout())));
    remote::stream::serve(run, from, steps_per_sec, std::io::BufReader::new(std::io::stdin()), out)?;
    Ok(ExitCode::SUCCESS)
}

/// Commands typed in the dashboard, sent over the link.
struct RemoteSink(Arc<Mirror>);

impl crate::ui::app::CommandSink for RemoteSink {
    fn send(&mut self, c: &crate::event::Command) -> Result<crate::control::Reply, String> {
        let body = serde_json::to_value(c).map_err(|e| e.to_string())?;
        self.0.request(&body)
    }
}

fn open(spec: &Spec, steps_per_sec: f64) -> Result<Arc<Mirror>> {
    if spec.path.is_empty() {
        return Err(UsageError(format!("{spec}: name a run on the host, e.g. {}:runs/<id>", spec.host)).into());
    }
    Ok(Arc::new(Mirror::open(spec, &remote::cache_root(), steps_per_sec)?))
}

fn ui_options(dir: PathBuf, view: ViewOptions) -> crate::ui::Options {
    crate::ui::Options {
        run_dir: dir,
        layout: if view.layout.is_empty() { "default".into() } else { view.layout },
        theme: view.theme,
        ascii: view.ascii,
        keys_file: view.keys_file,
        replay: None,
        overlay: Vec::new(),
        remote: None,
    }
}

/// `attach host:run`: the dashboard on a local mirror of the remote run, step events
/// decimated on the far side; commands go back over the link.
pub fn attach(spec: &Spec, with_parent: bool, view: ViewOptions) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if with_parent {
        return Err(UsageError("--with-parent is not available for a remote run".into()).into());
    }
    if !std::io::stdout().is_terminal() {
        return Err(UsageError(
            "attach needs a terminal; use `phasetop ls HOST:` or `ctl HOST:RUN status` instead".into(),
        )
        .into());
    }
    let mirror = open(spec, proto::DEFAULT_STEPS_PER_SEC)?;
    // The first screen shows the run so far (the backfill is decimated, so short).
    mirror.wait_backfill(Duration::from_secs(10));
    let mut opts = ui_options(mirror.dir.clone(), view);
    let m = mirror.clone();
    opts.remote =
        Some(crate::ui::RemoteLink { sink: Box::new(RemoteSink(mirror.clone())), live: Arc::new(move || m.is_live()) });
    let exit = crate::ui::run(opts)?;
    match exit {
        crate::ui::app::Exit::Detach => {
            if mirror.is_live() {
                println!("detached; training goes on. Re-attach with: phasetop attach {spec}");
            }
        }
        crate::ui::app::Exit::Stop => println!("stop sent; the run checkpoints and stops: {spec}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The runs of a `replay`, remote ones fetched whole (every step: a replay is paced by
/// them) into local mirrors kept open for the replay's life.
pub fn fetch_for_replay(run_dirs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<Arc<Mirror>>)> {
    let mut dirs = Vec::new();
    let mut mirrors = Vec::new();
    for d in run_dirs {
        match spec_of(d) {
            None => dirs.push(d.clone()),
            Some(spec) => {
                let m = open(&spec, 0.0)?;
                eprintln!("phasetop: fetching {spec} ({} bytes of log)…", m.hello.len);
                while !m.wait_backfill(Duration::from_secs(1)) {
                    if !m.is_connected()
                        && let Some(p) = m.problem()
                    {
                        eprintln!("phasetop: {spec}: {p}; reconnecting…");
                    }
                }
                dirs.push(m.dir.clone());
                mirrors.push(m);
            }
        }
    }
    Ok((dirs, mirrors))
}

/// `ls host:[path]`: the remote `phasetop ls` (default `runs`), its output and exit code.
pub fn ls(spec: &Spec) -> Result<ExitCode> {
    let root = if spec.path.is_empty() { "runs" } else { spec.path.as_str() };
    run_remote(spec, &["ls", root], None)
}

/// `ctl host:run COMMAND`: checked here (a typo is a usage error before any ssh), then
/// the remote `phasetop ctl`; `plan FILE` sends the local file's text on stdin.
pub fn ctl(spec: &Spec, words: &[String]) -> Result<ExitCode> {
    crate::commands::parse_ctl(words)?;
    if spec.path.is_empty() {
        return Err(UsageError(format!("{spec}: name a run on the host, e.g. {}:runs/<id>", spec.host)).into());
    }
    let mut args = vec!["ctl", spec.path.as_str()];
    let mut input = None;
    if words[0] == "plan" {
        args.extend(["plan", "/dev/stdin"]);
        input = Some(PathBuf::from(&words[1]));
    } else {
        args.extend(words.iter().map(String::as_str));
    }
    run_remote(spec, &args, input.as_deref())
}

fn run_remote(spec: &Spec, args: &[&str], stdin: Option<&Path>) -> Result<ExitCode> {
    let mut cmd = remote::ssh_phasetop(&spec.host, args, false);
    if let Some(p) = stdin {
        let f = std::fs::File::open(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
        cmd.stdin(f);
    } else {
        cmd.stdin(std::process::Stdio::null());
    }
    let status = cmd.status().map_err(|e| anyhow::anyhow!("cannot run ssh ({:?}): {e}", cmd.get_program()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
