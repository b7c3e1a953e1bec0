//! The terminal loop: sets up the terminal, follows or replays the run, feeds keys to
//! the [`App`] and redraws at most every [`FRAME`].

use crate::app::{App, Exit, Link, SocketSink};
use crate::model::{replay_index, state};
use crate::player::compare;
use crate::player::replay;
use crate::rundir::{HostState, RunDir};
use crate::{app, keymap, layout, notify, render, theme};
use anyhow::{Context, Result};
use ratatui::crossterm::event::{self as cevent, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::{execute, terminal};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Redraws at most this often (10 Hz), and only when something changed.
const FRAME: Duration = Duration::from_millis(100);

pub struct Options {
    pub run_dir: PathBuf,
    pub layout: String,
    pub theme: Option<theme::ThemeKind>,
    pub ascii: bool,
    pub keys_file: Option<PathBuf>,
    /// `--notify`; `None`: the run config's `[dashboard] notify`, else `osc`.
    pub notify: Option<crate::config::NotifyMode>,
    /// Replay the recorded run instead of following it live.
    pub replay: Option<ReplayOptions>,
    /// Recorded runs overlaid on a live run's charts, aligned by step (a branch's
    /// parent); a replay takes its runs to compare from `ReplayOptions::compare`.
    pub overlay: Vec<PathBuf>,
    /// A remote run's link (its local mirror is `run_dir`): commands go over it and it
    /// says whether the run is live, instead of the run directory's control socket.
    pub remote: Option<RemoteLink>,
    /// Opened from the workspace: Esc returns to its list.
    pub back_to_list: bool,
}

/// Whether a run's host is live (its socket answers, or a remote run's link says so).
pub type IsLive = Arc<dyn Fn() -> bool + Send + Sync>;

/// Where a mirrored remote run's commands go and how its liveness is known.
pub struct RemoteLink {
    pub sink: Box<dyn app::CommandSink>,
    pub live: IsLive,
}

pub struct ReplayOptions {
    /// Index into `replay::SPEEDS`.
    pub speed: usize,
    pub from: Option<u64>,
    /// Pace by steps (speed × 10 steps a second) instead of by recorded time.
    pub uniform: bool,
    /// More runs to overlay on the same charts, aligned by step.
    pub compare: Vec<PathBuf>,
}

/// Commands have nowhere to go in a replay.
struct ReplaySink;
impl app::CommandSink for ReplaySink {
    fn send(&mut self, c: &crate::event::Command) -> Result<crate::control::Reply, String> {
        Err(format!("replay: \"{c}\" needs a live run (phasetop attach)"))
    }
}

/// Key overrides from a TOML file: `[keys]\nlog_scale = "y"` or `= ["y", "L"]`.
pub fn load_keymap(path: Option<&Path>) -> Result<keymap::Keymap> {
    let mut overrides = BTreeMap::new();
    if let Some(p) = path {
        let src = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Keys {
            One(String),
            Many(Vec<String>),
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            keys: BTreeMap<String, Keys>,
        }
        let f: File = toml::from_str(&src).map_err(|e| {
            crate::error::UsageError(format!("{}: {}", p.display(), e.message().trim().replace('`', "\"")))
        })?;
        for (k, v) in f.keys {
            overrides.insert(
                k,
                match v {
                    Keys::One(s) => vec![s],
                    Keys::Many(v) => v,
                },
            );
        }
    }
    keymap::Keymap::new(&overrides).map_err(|e| {
        let file = path.map(|p| p.display().to_string()).unwrap_or_default();
        crate::error::UsageError(format!("{file}: {e}")).into()
    })
}

/// Takes the terminal: raw mode, the alternate screen, no cursor, cleared. A panic
/// puts it back first (the hook is installed once, however often this is called: the
/// workspace opens one dashboard after another).
pub fn enter_terminal() -> Result<()> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            default_hook(info);
        }));
    });
    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    // Clearing through crossterm rather than `Terminal::clear`, which asks the terminal
    // for the cursor position: some terminals (and emulators in tests) never answer.
    execute!(
        std::io::stdout(),
        terminal::EnterAlternateScreen,
        ratatui::crossterm::cursor::Hide,
        terminal::Clear(terminal::ClearType::All)
    )?;
    Ok(())
}

/// `f` with the terminal taken ([`enter_terminal`]), given back after, whatever `f` did.
pub fn with_terminal<T>(
    f: impl FnOnce(&mut ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>) -> Result<T>,
) -> Result<T> {
    enter_terminal()?;
    let result = ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
        .map_err(anyhow::Error::from)
        .and_then(|mut t| f(&mut t));
    restore_terminal();
    result
}

/// Sets `flag` when signal `sig` arrives (SIGINT, SIGTERM, SIGHUP end a screen cleanly).
pub fn on_signal(sig: i32, flag: Arc<AtomicBool>) -> Result<()> {
    signal_hook::flag::register(sig, flag)?;
    Ok(())
}

/// Puts the terminal back: raw mode off, main screen, cursor shown.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
}

/// The runs at `others` as players that follow `first`'s step on the same charts.
fn compare_with(first: &Path, others: &[PathBuf]) -> Result<compare::Compare> {
    let mut players = Vec::new();
    let all: Vec<&Path> = std::iter::once(first).chain(others.iter().map(PathBuf::as_path)).collect();
    let mut names = compare::run_names(&all).into_iter();
    let first_name = names.next().unwrap_or_default();
    for (path, name) in others.iter().zip(names) {
        let d = RunDir::open(path)?;
        let live_dir = RunDir { path: d.path.clone() };
        let live: replay_index::LiveCheck = Box::new(move || live_dir.is_live());
        let player = replay::Player::open(replay_index::Source::File(d.log()), Some(live));
        players.push(compare::Other { name, view: state::RunView::default(), player });
    }
    Ok(compare::Compare::new(first_name, players))
}

/// Runs the dashboard on a run directory until the user detaches or stops the run.
pub fn run(opts: Options) -> Result<Exit> {
    let dir = RunDir::open(&opts.run_dir)?;
    // A local run's directory, asked whether its host is gone when it stops answering (a
    // remote run's link going down says nothing of its host).
    let local_dir = opts.remote.is_none().then(|| RunDir { path: dir.path.clone() });
    let (remote_sink, is_live): (Option<Box<dyn app::CommandSink>>, IsLive) = match opts.remote {
        Some(r) => (Some(r.sink), r.live),
        None => {
            let d = RunDir { path: dir.path.clone() };
            (None, Arc::new(move || d.is_live()))
        }
    };
    let keymap = load_keymap(opts.keys_file.as_deref())?;
    let layouts_dir = PathBuf::from("layouts");
    let layout = layout::Layout::load(&opts.layout, &layouts_dir).map_err(crate::error::UsageError)?;
    let theme = theme::Theme::new(theme::ThemeKind::resolve(opts.theme));
    let mut view = state::RunView::default();
    // A replay and a live attach are both a player over the run's log: a live one
    // follows the log's end until the view is moved into its history.
    let mut app = if let Some(r) = &opts.replay {
        // The log is indexed in the background: the first frame draws at once, and a
        // run still being written is followed.
        let live_fn = is_live.clone();
        let live: replay_index::LiveCheck = Box::new(move || live_fn());
        let mut player = replay::Player::open(replay_index::Source::File(dir.log()), Some(live));
        player.speed = r.speed;
        player.set_uniform(r.uniform);
        if let Some(from) = r.from {
            player.goto_step(&mut view, from);
        }
        let mut app = App::new(view, keymap, theme, layout, layouts_dir, Box::new(ReplaySink));
        app.player = Some(player);
        app.link = Link::Ended;
        if !r.compare.is_empty() {
            app.compare = Some(compare_with(&opts.run_dir, &r.compare)?);
            app.sync_compare();
        }
        app
    } else {
        // Streamed: a run of 10^6 steps is folded into the view record by record, never
        // held (collected, it took ~700 MB before the first frame).
        let live_fn = is_live.clone();
        let player = replay::Player::attach(&dir.log(), Box::new(move || live_fn()), &mut view)?;
        let sink = remote_sink.unwrap_or_else(|| Box::new(SocketSink(dir.socket())));
        let mut app = App::new(view, keymap, theme, layout, layouts_dir, sink);
        app.player = Some(player);
        if !opts.overlay.is_empty() {
            app.compare = Some(compare_with(&opts.run_dir, &opts.overlay)?);
            app.sync_compare();
        }
        app
    };
    app.ascii = opts.ascii;
    app.back_to_list = opts.back_to_list;
    // A remote run's mirror holds its console files too (copied over the link).
    app.console = Some(app::ConsolePane::new(crate::model::console::Console::for_run(&dir.path)));

    // SIGTERM/SIGHUP/SIGINT end the dashboard cleanly (the run goes on).
    let quit = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, quit.clone())?;
    }
    enter_terminal()?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    // Only what arrives from now on notifies: the history just read does not.
    let mut notifier =
        (!app.is_replay()).then(|| notify::Notifier::new(opts.notify, std::env::var_os("TMUX").is_some()));
    let result = (|| -> Result<Exit> {
        let mut term = ratatui::Terminal::new(backend)?;
        let mut dirty = true;
        let mut last_draw = Instant::now() - FRAME;
        let mut last_liveness = Instant::now() - Duration::from_secs(2);
        let mut last_tick = Instant::now();
        let mut damage_shown = false;
        let mut layout_mtime = layout_file_mtime(&app);
        // The run's config files are watched for plan edits.
        let mut watched: Vec<(PathBuf, Option<std::time::SystemTime>)> = config_files(&dir)
            .into_iter()
            .map(|p| {
                let m = mtime(&p);
                (p, m)
            })
            .collect();
        loop {
            if quit.load(Ordering::Relaxed) {
                return Ok(Exit::Detach);
            }
            if let Some(e) = app.exit {
                return Ok(e);
            }
            // A dropped SSH connection or a closed terminal: detach (training goes on).
            let wait = FRAME.saturating_sub(last_draw.elapsed()).max(Duration::from_millis(10));
            let Input::Events(events) = read_input(wait)? else {
                return Ok(Exit::Detach);
            };
            for ev in events {
                match ev {
                    TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                        app.on_key(k);
                        dirty = true;
                    }
                    TermEvent::Resize(..) => dirty = true,
                    _ => {}
                }
            }
            if let Some(p) = app.player.as_mut() {
                let (was_playing, dt) = (p.playing, last_tick.elapsed().as_secs_f64());
                if p.tick(&mut app.view, dt) {
                    dirty = true;
                }
                // Comparing a longer run: the timeline plays on past the first run's end.
                if app.tick_timeline(was_playing, dt) {
                    dirty = true;
                }
                let p = app.player.as_mut().expect("checked above");
                last_tick = Instant::now();
                // The index finds damage as it reads: say once, in full, what was skipped.
                if !damage_shown && let Some(notice) = p.damage_notice() {
                    damage_shown = true;
                    app.set_status_for(format!("{notice} (see phasetop inspect)"), true, Duration::from_secs(15));
                    dirty = true;
                }
            }
            if app.sync_compare() {
                dirty = true;
            }
            if app.poll_console() {
                dirty = true;
            }
            if app.expire_status(Instant::now()) {
                dirty = true;
            }
            let new = match app.player.as_mut() {
                Some(p) => p.poll_live(&mut app.view)?,
                None => Vec::new(),
            };
            if !new.is_empty() {
                if let Some(n) = notifier.as_mut() {
                    let bytes = n.on_events(
                        &app.live_view().config,
                        &app.live_view().run_id,
                        new.iter().map(|r| &r.event),
                        Instant::now(),
                    );
                    if !bytes.is_empty() {
                        use std::io::Write;
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&bytes).and_then(|()| out.flush());
                    }
                }
                dirty = true;
            }
            if last_liveness.elapsed() >= Duration::from_secs(1) {
                last_liveness = Instant::now();
                let link = if app.is_replay() || app.live_view().ended.is_some() {
                    Link::Ended
                } else if is_live() {
                    Link::Live
                } else if local_dir.as_ref().is_some_and(|d| d.host_state() == HostState::Gone) {
                    Link::Gone
                } else {
                    Link::Stale
                };
                if link != app.link {
                    app.link = link;
                    dirty = true;
                }
                // Layout files are watched: an edit redraws with the new layout.
                for (path, seen) in watched.iter_mut() {
                    let m = mtime(path);
                    if m != *seen {
                        *seen = m;
                        if let Ok(text) = std::fs::read_to_string(&*path)
                            && !app.is_replay()
                            && app.live_view().ended.is_none()
                        {
                            app.on_config_edit(&path.display().to_string(), text);
                            dirty = true;
                        }
                    }
                }
                let m = layout_file_mtime(&app);
                if m != layout_mtime {
                    layout_mtime = m;
                    app.run_command_line(&format!("layout {}", app.layout.name));
                    dirty = true;
                }
            }
            if dirty && last_draw.elapsed() >= FRAME {
                term.draw(|f| render::draw(f, &app))?;
                last_draw = Instant::now();
                dirty = false;
            }
        }
    })();
    restore_terminal();
    result
}

/// What the terminal gave within `wait`.
pub enum Input {
    /// Keys, resizes, … that arrived (none when the wait ran out).
    Events(Vec<TermEvent>),
    /// The terminal is gone (a dropped SSH link, a closed pty).
    HungUp,
}

/// The terminal's events within `wait`, or that it hung up. Every screen reads input
/// here: the hang-up is checked before every poll, and the wait is our own poll(2),
/// which returns on a hang-up — crossterm's poll spins for ever on a tty that hangs up
/// while it waits (SIGHUP does not always come: a process whose parent shell got it
/// keeps running). Crossterm then only collects what is already there.
pub fn read_input(wait: Duration) -> Result<Input> {
    if terminal_hung_up() {
        return Ok(Input::HungUp);
    }
    let timeout = match wait_for_terminal(wait) {
        TerminalWait::HungUp => return Ok(Input::HungUp),
        TerminalWait::Ready => Duration::ZERO,
        TerminalWait::Unwatched => wait,
    };
    let mut events = Vec::new();
    while cevent::poll(timeout)? {
        events.push(cevent::read()?);
        if timeout > Duration::ZERO || terminal_hung_up() || events.len() >= 256 {
            break;
        }
    }
    Ok(Input::Events(events))
}

/// Whether the terminal on stdin has gone away. crossterm keeps reading EOF from a
/// hung-up terminal without reporting it (and SIGHUP does not always arrive, e.g. when
/// a pty's master is simply closed), so ask the kernel.
enum TerminalWait {
    /// Input may be there (or the wait timed out): crossterm may look without waiting.
    Ready,
    HungUp,
    /// Standard input is not the terminal (crossterm reads /dev/tty): let it wait.
    Unwatched,
}

/// Waits up to `wait` for input on standard input when it is the terminal.
fn wait_for_terminal(wait: Duration) -> TerminalWait {
    if unsafe { libc::isatty(0) } != 1 {
        return TerminalWait::Unwatched;
    }
    let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    let n = unsafe { libc::poll(&mut fds, 1, wait.as_millis().min(i32::MAX as u128) as i32) };
    if n > 0 && fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        TerminalWait::HungUp
    } else {
        TerminalWait::Ready
    }
}

fn terminal_hung_up() -> bool {
    let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The run directory's config copy and the file the run was started from.
fn config_files(dir: &RunDir) -> Vec<PathBuf> {
    let mut files = vec![dir.config()];
    if let Some(src) = dir.read_meta().ok().and_then(|m| m.source_path) {
        let p = PathBuf::from(src);
        if p.exists() && p != dir.config() {
            files.push(p);
        }
    }
    files
}

fn layout_file_mtime(app: &App) -> Option<std::time::SystemTime> {
    std::fs::metadata(layout::Layout::path(&app.layout.name, &app.layouts_dir)).and_then(|m| m.modified()).ok()
}

/// The newest run under `root` whose host is live.
pub fn newest_live_run(root: &Path) -> Option<PathBuf> {
    let mut runs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| RunDir::open(p).is_ok_and(|d| d.is_live()))
        .filter_map(|p| Some((std::fs::metadata(p.join(crate::rundir::LOG_FILE)).ok()?.modified().ok()?, p)))
        .collect();
    runs.sort();
    runs.pop().map(|(_, p)| p)
}
