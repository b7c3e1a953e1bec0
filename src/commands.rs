//! The CLI's commands, callable from tests. Exit codes: 0 success, 1 runtime failure
//! (or a command the run refused), 2 usage or config errors.

use crate::config::{self, ConfigError, LoadedConfig};
use crate::event::{Command, Event, RunStatus};
use crate::host::{self, Observer, Progress, control};
use crate::inspect::Summary;
use crate::rundir::{self, RunDir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The embedded default config, so the demo runs from a bare binary.
pub const DEMO_CONFIG: &str = include_str!("../configs/demo.toml");

/// A usage error: reported with exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<ConfigError>().is_some() || e.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub headless: bool,
    pub run_dir: Option<PathBuf>,
    pub max_steps: Option<u64>,
    pub seed: Option<u64>,
    pub resume: Option<PathBuf>,
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let stop = host::stop_on_signals()?;
    let host = match &args.resume {
        Some(dir) => host::resume(dir, stop)?,
        None => {
            let loaded = match &args.config {
                Some(p) => config::load(p)?,
                None => LoadedConfig {
                    config: config::parse("<embedded demo.toml>", DEMO_CONFIG)?,
                    path: PathBuf::from("demo.toml"),
                    source: DEMO_CONFIG.to_string(),
                },
            };
            let run_dir = args.run_dir.clone().unwrap_or_else(|| {
                rundir::new_run_path(Path::new("runs"), &loaded.config.run.name)
            });
            host::create(
                host::NewRun {
                    config: loaded,
                    run_dir,
                    seed: args.seed,
                    max_steps: args.max_steps,
                },
                stop,
            )?
        }
    };
    eprintln!("phasetop: run directory {}", host.run_dir().display());
    let status = host.run(Box::new(HeadlessPrinter))?;
    Ok(match status {
        RunStatus::Completed | RunStatus::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// Plain progress lines for `--headless`: one about every second, plus one per phase
/// change, operator command, warning and the end of the run.
struct HeadlessPrinter;

fn fmt_metric(m: &crate::event::Metrics, key: &str, prec: usize) -> String {
    m.get(key).map_or("-".into(), |v| format!("{v:.prec$}"))
}

impl Observer for HeadlessPrinter {
    fn event(&mut self, ev: &Event) {
        match ev {
            Event::PhaseChanged {
                step,
                from,
                to,
                cause,
                detail,
            } => {
                let from = from.as_deref().unwrap_or("-");
                let detail = detail
                    .as_deref()
                    .map(|d| format!(", {d}"))
                    .unwrap_or_default();
                println!(
                    "phase {from} -> {to} at step {step} ({}{detail})",
                    cause.as_str()
                );
            }
            Event::Command {
                step,
                command,
                applied,
                message,
                ..
            } => {
                let verdict = if *applied { "applied" } else { "refused" };
                println!("command {command} {verdict} at step {step}: {message}");
            }
            Event::Log {
                step,
                level,
                message,
            } => println!(
                "{} at step {step}: {message}",
                format!("{level:?}").to_lowercase()
            ),
            Event::RunEnded {
                step,
                status,
                message,
            } => {
                println!("run {} at step {step}: {message}", status.as_str())
            }
            _ => {}
        }
    }

    fn progress(&mut self, p: &Progress) {
        println!(
            "step {}/{} phase {} loss {} acc {} val_acc {} {:.1} steps/s",
            p.step,
            p.max_steps,
            p.phase,
            fmt_metric(&p.metrics, "train_loss", 4),
            fmt_metric(&p.metrics, "train_acc", 3),
            fmt_metric(&p.val, "val_acc", 3),
            p.steps_per_s
        );
    }
}

pub fn check(paths: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = None;
    for p in paths {
        match config::load(p) {
            Ok(c) => println!(
                "{}: ok ({} phases: {})",
                p.display(),
                c.config.phases.len(),
                c.config.phase_names().join(" → ")
            ),
            Err(e) => {
                eprintln!("{e}");
                failed = Some(e);
            }
        }
    }
    match failed {
        Some(e) if paths.len() == 1 => Err(e.into()),
        Some(_) => Err(UsageError(format!("{} config(s) failed", paths.len())).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Parses `ctl` words into a request body.
pub fn parse_ctl(words: &[String]) -> Result<serde_json::Value, UsageError> {
    let arg = words.get(1).map(String::as_str);
    let usage = |m: &str| UsageError(m.to_string());
    let command = match (words[0].as_str(), arg) {
        ("status", None) => return Ok(serde_json::json!({"cmd": "status"})),
        ("switch", Some(phase)) => Command::Switch {
            phase: phase.to_string(),
        },
        ("switch", None) => {
            return Err(usage("switch needs a phase name: ctl RUN_DIR switch PHASE"));
        }
        ("pause", None) => Command::Pause,
        ("resume", None) => Command::Resume,
        ("stop", None) => Command::Stop,
        ("checkpoint", None) => Command::Checkpoint,
        ("set", Some(kv)) => {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| usage("set needs KEY=VALUE, e.g. set lr=0.001"))?;
            let value: f64 = v
                .trim()
                .parse()
                .map_err(|_| UsageError(format!("set {k}: \"{v}\" is not a number")))?;
            Command::Set {
                key: k.trim().to_string(),
                value,
            }
        }
        ("set", None) => return Err(usage("set needs KEY=VALUE, e.g. set lr=0.001")),
        ("accept" | "dismiss", id) => {
            let id = id
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| UsageError(format!("suggestion id \"{s}\" is not a number")))
                })
                .transpose()?;
            if words[0] == "accept" {
                Command::Accept { id }
            } else {
                Command::Dismiss { id }
            }
        }
        (c @ ("pause" | "resume" | "stop" | "checkpoint" | "status"), Some(extra)) => {
            return Err(UsageError(format!(
                "{c} takes no argument (got \"{extra}\")"
            )));
        }
        (other, _) => {
            return Err(UsageError(format!(
                "unknown command \"{other}\", expected one of switch, pause, resume, stop, checkpoint, set, accept, dismiss, status"
            )));
        }
    };
    Ok(serde_json::to_value(command).expect("command serialises"))
}

pub fn ctl(run_dir: &Path, words: &[String]) -> Result<ExitCode> {
    let body = parse_ctl(words)?;
    let dir = RunDir {
        path: run_dir.to_path_buf(),
    };
    let reply = control::request(&dir.socket(), &body).with_context(|| {
        format!(
            "no live run at {} (cannot reach {})",
            run_dir.display(),
            dir.socket().display()
        )
    })?;
    if reply.ok {
        println!("step {}: {}", reply.step, reply.message);
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("refused at step {}: {}", reply.step, reply.message)
    }
}

pub fn inspect(run_dir: &Path, json: bool) -> Result<ExitCode> {
    let dir = RunDir::open(run_dir)?;
    let summary = Summary::load(&dir.log())?.with_live(dir.is_live());
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render_text());
    }
    Ok(ExitCode::SUCCESS)
}
