//! `phasetop workspace [ROOT|user@host:ROOT …]` (and plain `phasetop` in a terminal):
//! the runs of every root in one list (`ui::workspace`), listed in the background (a
//! thread per root) — local roots about once a second (`commands::ls_rows`), remote ones every few seconds
//! by `phasetop ls --json` over the user's ssh — and what the user picks opened with
//! the commands that already do it: `attach` for a live run, `replay` (at its end) for
//! a finished one, `replay A B …` to compare. Leaving a run comes back to the list, its
//! filter, cursor and selection as they were.

use crate::commands::{self, LsRow, ViewOptions};
use crate::ui::workspace::{Choice, RunRow, Workspace, term};
use anyhow::Result;
use phasetop_core::remote::{self, Spec};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a remote root is listed (each listing is an ssh round trip).
const REMOTE_EVERY: Duration = Duration::from_secs(5);
const LOCAL_EVERY: Duration = Duration::from_secs(1);

enum Root {
    Local(PathBuf),
    Remote(Spec),
}

impl Root {
    fn parse(s: &str) -> Root {
        match Spec::parse(s) {
            Some(spec) => Root::Remote(spec),
            None => Root::Local(PathBuf::from(s)),
        }
    }
}

/// The latest listing of each root: rows, or why there are none (None: not listed yet).
type Listings = Arc<Mutex<Vec<Option<Result<Vec<RunRow>, String>>>>>;

pub fn workspace(roots: Vec<String>, view: ViewOptions) -> Result<ExitCode> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(crate::error::UsageError(
            "workspace needs a terminal; `phasetop ls [--json] ROOT` lists runs as text".into(),
        )
        .into());
    }
    let roots = if roots.is_empty() { vec!["runs".to_string()] } else { roots };
    for r in &roots {
        if let Root::Local(p) = Root::parse(r)
            && !p.is_dir()
            && r != "runs"
        {
            return Err(crate::error::UsageError(format!("{r}: not a directory of runs")).into());
        }
    }
    let listings: Listings = Arc::new(Mutex::new(vec![None; roots.len()]));
    for (i, r) in roots.iter().enumerate() {
        let listings = listings.clone();
        let root = Root::parse(r);
        std::thread::Builder::new().name(format!("workspace-scan-{i}")).spawn(move || {
            loop {
                let (rows, every) = match &root {
                    Root::Local(p) => (local(p), LOCAL_EVERY),
                    Root::Remote(spec) => (remote_rows(spec), REMOTE_EVERY),
                };
                match listings.lock() {
                    Ok(mut l) => l[i] = Some(rows),
                    Err(_) => return,
                }
                std::thread::sleep(every);
            }
        })?;
    }
    let keymap = crate::ui::load_keymap(view.keys_file.as_deref())?;
    let theme = crate::ui::theme::Theme::new(crate::ui::theme::ThemeKind::resolve(view.theme));
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook_consts::SIGTERM, signal_hook_consts::SIGHUP, signal_hook_consts::SIGINT] {
        crate::ui::on_signal(sig, quit.clone())?;
    }
    let label = roots.join(" ");
    let setup = term::Setup { keymap: &keymap, theme: &theme, ascii: view.ascii, roots: &label, quit: &quit };
    let mut ws = Workspace::default();
    // A run opened from the list comes back to it on Esc.
    let view = ViewOptions { back_to_list: true, ..view };
    let mut scan = || {
        let mut listed = term::Listed::default();
        if let Ok(l) = listings.lock() {
            for (root, listing) in roots.iter().zip(l.iter()) {
                match listing {
                    Some(Ok(r)) => listed.rows.extend(r.iter().cloned()),
                    Some(Err(e)) => listed.problems.push(format!("{root}: {e}")),
                    None => listed.pending.push(root.clone()),
                }
            }
        }
        listed
    };
    loop {
        let choice = crate::ui::with_terminal(|term| term::run(term, &mut ws, &mut scan, &setup))?;
        // A run's dashboard takes the terminal itself; its end comes back here.
        let opened = match choice {
            Choice::Quit => return Ok(ExitCode::SUCCESS),
            Choice::Open(row) => open(&row, view.clone()),
            Choice::Compare(rows) => {
                // Remote runs are fetched whole into mirrors first, as `replay` does.
                let keys: Vec<PathBuf> = rows.iter().map(|r| PathBuf::from(&r.key)).collect();
                let end = rows.iter().map(|r| r.step).max();
                crate::remote::fetch_for_replay(&keys)
                    .and_then(|(dirs, _mirrors)| commands::replay(&dirs, "1", end, false, false, false, view.clone()))
            }
        };
        if let Err(e) = opened {
            ws.message = Some(format!("{e:#}"));
        }
        if quit.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Enter on a run: a live one is attached, a finished one replayed from its end (the
/// whole run on screen; the transport goes back through it).
fn open(row: &RunRow, view: ViewOptions) -> Result<ExitCode> {
    match (Spec::parse(&row.key), row.is_live()) {
        (Some(spec), true) => crate::remote::attach(&spec, false, view),
        (Some(_), false) => {
            let (dirs, _mirrors) = crate::remote::fetch_for_replay(&[PathBuf::from(&row.key)])?;
            commands::replay(&dirs, "1", Some(row.step), false, false, false, view)
        }
        (None, true) => commands::attach(Some(PathBuf::from(&row.key)), false, view),
        (None, false) => commands::replay(&[PathBuf::from(&row.key)], "1", Some(row.step), false, false, false, view),
    }
}

fn local(root: &std::path::Path) -> Result<Vec<RunRow>, String> {
    match commands::ls_rows(root) {
        Ok(rows) => Ok(rows.into_iter().map(|r| row_of(r, "", None)).collect()),
        // The default root not made yet is no runs, not a problem.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// `phasetop ls --json ROOT` on the host, bounded by the remote timeout.
fn remote_rows(spec: &Spec) -> Result<Vec<RunRow>, String> {
    let root = if spec.path.is_empty() { "runs" } else { spec.path.as_str() };
    let mut cmd = remote::ssh_phasetop(&spec.host, &["ls", "--json", root], true);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
    let limit = remote::first_frame_timeout().unwrap_or(Duration::from_secs(60));
    let out = wait_output(child, limit)?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        return Err(format!("ls over ssh failed: {}", remote::sanitize(last.as_bytes(), &mut Default::default())));
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: LsRow = serde_json::from_str(line).map_err(|e| format!("unexpected answer from ls --json: {e}"))?;
        rows.push(row_of(r, &spec.host, Some(spec)));
    }
    Ok(rows)
}

/// `child`'s output, or an error (and the child killed) after `limit`.
fn wait_output(mut child: std::process::Child, limit: Duration) -> Result<std::process::Output, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let read = |p: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = p {
                let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut p, 64 << 20), &mut buf);
            }
            buf
        })
    };
    let out = read(stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let err = read(stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>));
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(status)) => Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }),
        Ok(Err(e)) => Err(format!("ssh: {e}")),
        Err(_) => {
            // SAFETY: signalling a child we spawned and have not reaped (its waiter holds it).
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            Err(format!("no answer in {} s", limit.as_secs()))
        }
    }
}

fn row_of(r: LsRow, host: &str, spec: Option<&Spec>) -> RunRow {
    let key = match spec {
        Some(s) => format!("{}:{}", s.host, r.path.display()),
        None => r.path.display().to_string(),
    };
    let status = if r.status == "running" { "live".to_string() } else { r.status };
    RunRow {
        key,
        name: r.run,
        host: host.to_string(),
        config: r.config,
        status,
        phase: r.phase,
        step: r.step,
        age_s: r.age_s,
        last_loss: r.last_loss,
        spark: r.recent_loss,
        tags: r.tags,
    }
}

mod signal_hook_consts {
    pub use libc::{SIGHUP, SIGINT, SIGTERM};
}
