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

    fn down(&self) -> Option<String> {
        (!self.0.is_connected()).then(|| format!("link to {} is down; reconnecting", self.0.host()))
    }

    fn remote(&self) -> Option<String> {
        Some(self.0.host().to_string())
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
        notify: view.notify,
        back_to_list: view.back_to_list,
    }
}

/// A word while the first link is made (before any screen: ssh may prompt here, and
/// Ctrl-C ends phasetop with the terminal as it was, in its ordinary mode).
fn connecting(spec: &Spec) {
    let limit = match remote::first_frame_timeout() {
        Some(t) => format!("up to {} s", t.as_secs_f64().round()),
        None => "no time limit".into(),
    };
    eprintln!("phasetop: connecting to {}… ({limit}; Ctrl-C to give up)", spec.host);
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
    connecting(spec);
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
                connecting(&spec);
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
pub fn ls(spec: &Spec, json: bool) -> Result<ExitCode> {
    let root = if spec.path.is_empty() { "runs" } else { spec.path.as_str() };
    let args: &[&str] = if json { &["ls", "--json", root] } else { &["ls", root] };
    run_remote(spec, args, None)
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

/// Runs the remote `phasetop ARGS…` and passes on its output, sanitized (never raw bytes
/// from the link on the user's terminal), and its exit code. Nothing on stdout or stderr
/// and no exit within [`remote::first_frame_timeout`] ends it with a message naming the
/// host (issue 24 #6).
fn run_remote(spec: &Spec, args: &[&str], stdin: Option<&Path>) -> Result<ExitCode> {
    use std::io::{BufRead, Read, Write};
    use std::sync::mpsc;
    let mut cmd = remote::ssh_phasetop(&spec.host, args, false);
    if let Some(p) = stdin {
        let f = std::fs::File::open(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))?;
        cmd.stdin(f);
    } else {
        cmd.stdin(std::process::Stdio::null());
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("cannot run ssh ({:?}): {e}", cmd.get_program()))?;
    // Two readers, line by line (a line is at most 64 KiB): each line sanitized and
    // written on. The first line on stdout (or its end) says the remote side answered:
    // stderr carries ssh's own words too (warnings, a bastion's banner).
    let (first_tx, first_rx) = mpsc::channel::<()>();
    let tail = Arc::new(std::sync::Mutex::new(String::new()));
    let mut readers = Vec::new();
    let pipes: [(Option<Box<dyn Read + Send>>, bool); 2] = [
        (child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>), true),
        (child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>), false),
    ];
    for (pipe, is_out) in pipes {
        let Some(pipe) = pipe else { continue };
        let first = first_tx.clone();
        let tail = tail.clone();
        readers.push(std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(pipe);
            let mut state = remote::Sanitize::default();
            let mut line = Vec::new();
            let mut answered = false;
            loop {
                line.clear();
                let n = r.by_ref().take(64 << 10).read_until(b'\n', &mut line).unwrap_or(0);
                if is_out && !answered {
                    answered = true;
                    let _ = first.send(());
                }
                if n == 0 {
                    return;
                }
                let text = remote::sanitize(&line, &mut state);
                if is_out {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(text.as_bytes()).and_then(|_| o.flush());
                } else {
                    let _ = std::io::stderr().lock().write_all(text.as_bytes());
                    if let Ok(mut t) = tail.lock() {
                        t.push_str(&text);
                        if t.len() > 4000 {
                            let cut = t.len() - 2000;
                            let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(t.len());
                            t.drain(..cut);
                        }
                    }
                }
            }
        }));
    }
    drop(first_tx);
    if let Some(limit) = remote::first_frame_timeout() {
        // Disconnected (stdout closed before a line) counts as an answer too.
        if let Err(mpsc::RecvTimeoutError::Timeout) = first_rx.recv_timeout(limit) {
            let _ = child.kill();
            let _ = child.try_wait();
            let said = tail.lock().map(|t| t.trim().to_string()).unwrap_or_default();
            eprintln!("phasetop: {}", remote::no_answer(&spec.host, limit, &said));
            return Ok(ExitCode::FAILURE);
        }
    }
    let status = child.wait().map_err(|e| anyhow::anyhow!("ssh: {e}"))?;
    for r in readers {
        let _ = r.join();
    }
    if let Some(hint) =
        remote::missing_bin_hint(&spec.host, status.code(), &tail.lock().map(|t| t.clone()).unwrap_or_default())
    {
        eprintln!("phasetop: {hint}");
    }
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(c.clamp(1, 255) as u8),
        None => ExitCode::FAILURE,
    })
}
