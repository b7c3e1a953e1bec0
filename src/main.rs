//! `phasetop`: the light CLI (dashboard, replay, ctl, inspect, interop). It parses
//! arguments (clap) and dispatches to `commands`; it links no libtorch: training runs in
//! `phasetop-host`, which `train` and `branch` start.

mod commands;
#[path = "host_args.rs"]
mod host_args;
mod remote;
mod run_external;
mod workspace;

use clap::{Parser, Subcommand};
// The crates' modules under short names, for `commands`.
use phasetop_core::{branch, config, control, error, event, inspect, interop, rundir, runlog, session};
use phasetop_ui as ui;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "phasetop", version, about = "Terminal training monitor and controller for two-phase training")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train from a config (the embedded demo when none is given), or resume a run.
    Train {
        #[command(flatten)]
        opts: host_args::TrainOpts,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Attach the dashboard to a run (the newest live one under runs/ when none is named).
    Attach {
        run_dir: Option<PathBuf>,
        /// Overlay the run's parent (it was made by `branch`) on the same charts.
        #[arg(long)]
        with_parent: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Replay a recorded run in the dashboard (or print its story with --headless).
    Replay {
        /// One run, or several to compare on the same charts (aligned by step).
        #[arg(required = true)]
        run_dirs: Vec<PathBuf>,
        /// Playback speed: 0.25 to 1000 (times the recorded pace), or "max".
        #[arg(long, default_value = "1")]
        speed: String,
        /// Start at this step.
        #[arg(long)]
        from: Option<u64>,
        /// Pace by steps instead of the recorded wall-clock gaps: speed × 10 steps a
        /// second (1× = 10 steps/s, 30× = 300 steps/s; "max" stays as fast as possible),
        /// events between steps shown with the step before them. `u` toggles it while playing.
        #[arg(long)]
        uniform: bool,
        /// Print the run's story as plain text instead of drawing.
        #[arg(long)]
        headless: bool,
        /// Overlay the run's parent (it was made by `branch`) as a second compared run.
        #[arg(long)]
        with_parent: bool,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Start a new run from RUN_DIR's checkpoint at or before STEP, optionally with a
    /// changed plan or an immediate phase switch.
    Branch {
        #[command(flatten)]
        opts: host_args::BranchOpts,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Run your own training script as a phasetop run: `phasetop run [CONFIG] -- torchrun
    /// --nproc-per-node 2 train.py`. The script reports and obeys through the client in
    /// python/ (docs/CLIENT.md); its output goes to RUN_DIR/job.log.
    Run {
        /// Phases (names, steps, until rules, free settings for the script); default: one phase.
        config: Option<PathBuf>,
        /// Run directory to create (default: runs/<name>-<utc time>).
        #[arg(long, conflicts_with = "resume")]
        run_dir: Option<PathBuf>,
        /// Continue the external run in RESUME_DIR (its log, plan and phase); the job (the
        /// command after --, else the one it was started with) resumes from its own checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
        resume: Option<PathBuf>,
        /// Run in the foreground with plain progress lines (no terminal needed).
        #[arg(long)]
        headless: bool,
        /// Serve a job that is already running (the client's standalone mode) instead of a command.
        #[arg(long, hide = true)]
        for_pid: Option<u32>,
        /// The job: everything after `--`.
        #[arg(last = true)]
        command: Vec<String>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Every run under the roots in one list (local, or user@host:ROOT over ssh): filter,
    /// select, compare, open. Plain `phasetop` in a terminal opens it on runs/.
    Workspace {
        /// Directories of runs, or user@host:ROOT (default: runs)
        roots: Vec<String>,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// List runs: id, config, status, phase, step, age.
    Ls {
        /// Where the runs are (default: runs); a ROOT that does not exist is an error.
        root: Option<PathBuf>,
        /// One JSON object a line (run, path, config, status, phase, step, age_s,
        /// branched_from, tags, last_loss, recent_loss) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Validate configs without training.
    Check {
        #[arg(required = true)]
        configs: Vec<PathBuf>,
    },
    /// Send one command to a live run: switch PHASE | pause | resume | stop | checkpoint |
    /// set KEY=VALUE | accept [ID] | dismiss [ID] | plan CONFIG | status.
    Ctl {
        run_dir: PathBuf,
        /// The command and its argument (the grammar, `phasetop_core::grammar`, says
        /// what is too many, in the dashboard's words).
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// Serve a run's events on stdout and take commands on stdin: the far end of a remote
    /// `attach`/`replay` (`phasetop attach user@host:runs/<id>` runs it over ssh).
    Stream {
        run_dir: PathBuf,
        /// Start at this log offset (a record's start; default: the first record).
        #[arg(long)]
        from: Option<u64>,
        /// Keep at most this many step events per second of run time (0: all); every
        /// other event is kept.
        #[arg(long, default_value_t = phasetop_core::remote::proto::DEFAULT_STEPS_PER_SEC)]
        steps_per_sec: f64,
    },
    /// Summarise a run from its log alone.
    Inspect {
        run_dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Export a run: csv (a row per step), jsonl (every event), tfevents (TensorBoard) or
    /// config (the plan as it happened, to reproduce the run headless).
    Export {
        run_dir: PathBuf,
        #[arg(long, value_parser = ["csv", "jsonl", "tfevents", "config"])]
        format: String,
        /// Output file; for tfevents a directory (or a path ending in /) gets
        /// events.out.tfevents.<unix>.phasetop in it.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Import TensorBoard scalars (an event file or a directory of them) into a new run.
    Import {
        tfevents_path: PathBuf,
        /// The run directory to create.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(clap::Args, Clone, Default)]
struct ViewArgs {
    /// Dashboard layout: default, compact, diversity, or layouts/NAME.toml.
    #[arg(long, default_value = "default")]
    layout: String,
    /// Colours: default (colour-blind friendly), ansi16, mono. NO_COLOR forces mono.
    #[arg(long, value_parser = ["default", "ansi16", "mono"])]
    theme: Option<String>,
    /// ASCII glyphs and dot-marker charts, for terminals or fonts without braille.
    #[arg(long)]
    ascii: bool,
    /// Key overrides (TOML: [keys] action = "key").
    #[arg(long)]
    keys: Option<PathBuf>,
    /// On a signal, a suggestion or the run's end: off, bell, or osc (the bell and a
    /// desktop notification by OSC 9/777, through tmux too). Default: the config's
    /// [dashboard] notify, else osc.
    #[arg(long, value_parser = ["off", "bell", "osc"])]
    notify: Option<String>,
}

impl ViewArgs {
    fn into_options(self) -> commands::ViewOptions {
        commands::ViewOptions {
            layout: self.layout,
            theme: self.theme.as_deref().and_then(ui::theme::ThemeKind::parse),
            ascii: self.ascii,
            keys_file: self.keys,
            notify: self.notify.as_deref().and_then(config::NotifyMode::parse),
            back_to_list: false,
        }
    }
}

/// Report commands die quietly on a closed pipe (`phasetop inspect RUN | head`), as
/// Unix tools do, instead of panicking in `println!`. Not for commands that run a host:
/// it writes to sockets whose peers may vanish.
fn die_on_closed_pipe() {
    // SAFETY: restoring the default disposition of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Cmd::Ls { .. } | Cmd::Check { .. } | Cmd::Inspect { .. }) => die_on_closed_pipe(),
        // `stream` sees its link close as EPIPE on stdout (or EOF on stdin) and exits.
        // Without a terminal on stdout, replay prints the headless story (`commands::replay`).
        Some(Cmd::Replay { headless, .. }) if *headless || !std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            die_on_closed_pipe()
        }
        _ => {}
    }
    // Plain `phasetop`: the workspace in a terminal; elsewhere (a script, CI) the
    // headless demo run, as before the workspace existed.
    let default = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        Cmd::Workspace { roots: Vec::new(), view: ViewArgs { layout: "default".into(), ..Default::default() } }
    } else {
        Cmd::Train { opts: Default::default(), view: ViewArgs { layout: "default".into(), ..Default::default() } }
    };
    let result = match cli.command.unwrap_or(default) {
        Cmd::Workspace { roots, view } => workspace::workspace(roots, view.into_options()),
        Cmd::Train { opts, view } => commands::train(commands::TrainArgs {
            config: opts.config,
            headless: opts.headless,
            run_dir: opts.run_dir,
            max_steps: opts.max_steps,
            seed: opts.seed,
            resume: opts.resume,
            view: view.into_options(),
        }),
        Cmd::Run { config, run_dir, resume, headless, for_pid, command, view } => {
            run_external::run(run_external::RunArgs {
                config,
                run_dir,
                resume,
                headless,
                for_pid,
                command,
                view: view.into_options(),
            })
        }
        // `user@host:path` runs are reached over ssh (src/remote.rs).
        Cmd::Attach { run_dir, with_parent, view } => match run_dir.as_deref().and_then(remote::spec_of) {
            Some(spec) => remote::attach(&spec, with_parent, view.into_options()),
            None => commands::attach(run_dir, with_parent, view.into_options()),
        },
        Cmd::Ls { root, json } => match root.as_deref().and_then(remote::spec_of) {
            Some(spec) => remote::ls(&spec, json),
            None => commands::ls(root.as_deref(), json),
        },
        Cmd::Replay { run_dirs, speed, from, uniform, headless, with_parent, view } => {
            remote::fetch_for_replay(&run_dirs).and_then(|(run_dirs, _mirrors)| {
                commands::replay(&run_dirs, &speed, from, uniform, headless, with_parent, view.into_options())
            })
        }
        Cmd::Stream { run_dir, from, steps_per_sec } => remote::stream(&run_dir, from, steps_per_sec),
        Cmd::Branch { opts, view } => {
            let (plan, headless) = opts.into_parts();
            commands::branch(plan, headless, view.into_options())
        }
        Cmd::Check { configs } => commands::check(&configs),
        Cmd::Ctl { run_dir, command } => match remote::spec_of(&run_dir) {
            Some(spec) => remote::ctl(&spec, &command),
            None => commands::ctl(&run_dir, &command),
        },
        Cmd::Inspect { run_dir, json } => commands::inspect(&run_dir, json),
        Cmd::Export { run_dir, format, output } => commands::export(&run_dir, &format, &output),
        Cmd::Import { tfevents_path, output } => commands::import(&tfevents_path, &output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("phasetop: {e:#}");
            ExitCode::from(error::exit_code_for(&e))
        }
    }
}
