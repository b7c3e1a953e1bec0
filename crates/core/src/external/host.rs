//! The external run's host: the run directory and log (a new run, or `run --resume`),
//! and the loop that serves it on one tokio thread until the job's work ends — the job
//! (`job`), the socket (`server`), system samples, signals and the stop's escalation.
//! Every line goes to `State` under one mutex (never held across an await).

use super::job::{Job, describe, job_ended, reap, shell_words, signal_job, spawn_job, working_pid};
use super::server::{SocketFile, accept_loop, bind};
use super::state::{Printer, State};
use crate::config::external::LoadedExternal;
use crate::event::{Command, Event, LogLevel, PhaseCause, RunStatus, SCHEMA_MAJOR, SCHEMA_MINOR};
use crate::rundir::{RunDir, RunMeta, now_unix};
use crate::sysmon;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::rundir::JOB_LOG;
/// Connections served at once. At the limit the connection idle the longest among
/// those that have not said `hello` (not the job's) is closed to make room, so `ctl`
/// always gets in however many idle connections are held open; only when every
/// connection is the job's is a new one refused, with a message.
pub const MAX_CONNECTIONS: usize = 256;
/// After CMD's process exits before any process said `hello`, how long the run waits for
/// one of its remaining processes to say it (a job still starting).
const HELLO_WAIT: Duration = Duration::from_secs(60);

pub struct ExternalRun {
    pub config: LoadedExternal,
    pub run_dir: PathBuf,
    /// The job to launch; empty with `for_pid` (a client started this host itself).
    pub command: Vec<String>,
    /// Serve a job that is already running (standalone `phasetop.init()`): the run ends
    /// on its `finish`, or as failed when the process is gone without one.
    pub for_pid: Option<u32>,
}

pub(super) type Shared = Arc<Mutex<State>>;

pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates the run and serves it until the job ends; the run's final status.
pub fn run(args: ExternalRun, printer: Option<Printer>) -> Result<RunStatus> {
    let cfg = &args.config.config;
    RunDir::check_free(&args.run_dir)?;
    let (dir, _lock) = RunDir::create(&args.run_dir, cfg.run.group_readable)?;
    crate::rundir::write_atomic(&dir.config(), args.config.source.as_bytes())?;
    let run_id = args.run_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = RunMeta {
        run_id: run_id.clone(),
        config_name: args.config.name(),
        seed: 0,
        max_steps: cfg.run.max_steps.unwrap_or(0),
        created_at: now_unix(),
        source_path: args.config.path.as_ref().and_then(|p| p.canonicalize().ok()).map(|p| p.display().to_string()),
        parent: None,
        scheduled_switch: None,
        init: None,
        job: None,
    };
    dir.write_meta(&meta)?;
    let log =
        crate::session::RunLog::create(&dir.log()).with_context(|| format!("cannot create {}", dir.log().display()))?;
    let mut state = State::new(log, cfg.clone(), run_id.clone(), printer);
    state.plan_file = Some(dir.config());
    state.emit(started(&args, run_id, meta.config_name.clone(), None))?;
    let first = cfg.phases[0].name().to_string();
    state.emit(Event::PhaseChanged { step: 0, from: None, to: first, cause: PhaseCause::Start, detail: None })?;
    state.flush_log()?;
    host(args, dir, state)
}

/// The `run_started` of an external run (its config with the job's command beside it).
fn started(args: &ExternalRun, run_id: String, config_name: String, resumed_from_step: Option<u64>) -> Event {
    let cfg = &args.config.config;
    let mut config = super::state::external_run_config(cfg);
    if let Some(o) = config.as_object_mut() {
        o.insert("external".into(), serde_json::json!({"command": args.command, "for_pid": args.for_pid}));
    }
    Event::RunStarted {
        run_id,
        schema_major: SCHEMA_MAJOR,
        schema_minor: SCHEMA_MINOR,
        config_name,
        config,
        phases: cfg.phase_names(),
        device: "external".into(),
        seed: 0,
        started_at: now_unix(),
        resumed_from_step,
        parent_run: None,
        branch_step: None,
    }
}

/// `phasetop run --resume RUN_DIR [-- CMD]`: continues an external run in its directory
/// and log. The job (CMD, or the command the run was started with) restarts from its own
/// latest checkpoint — the last `checkpoint` it recorded, or with none the last step it
/// logged: later events are superseded, as after `train --resume` — in the phase the
/// plan was in there (the plan is the run's `config.toml`, with its live edits). Refused,
/// with nothing changed, while another host holds the run.
pub fn resume(mut args: ExternalRun, printer: Option<Printer>) -> Result<RunStatus> {
    let dir = RunDir::open(&args.run_dir)?;
    // Held for the host's life, as a new run's is.
    let _lock = crate::rundir::RunLock::acquire(&args.run_dir)?;
    if dir.is_live() {
        anyhow::bail!("{}: another host is live on this run; nothing was changed", args.run_dir.display());
    }
    let meta = dir.read_meta()?;
    let history = crate::session::resume::logged_history(&dir, u64::MAX)?;
    let at = crate::session::resume::external_resumption(&history)
        .with_context(|| format!("cannot resume {}", args.run_dir.display()))?;
    args.config = crate::config::external::load(&dir.config())?;
    if args.command.is_empty() {
        args.command = at.command.clone();
    }
    anyhow::ensure!(!args.command.is_empty(), "the run recorded no command to restart: give one after --");
    let cfg = args.config.config.clone();
    let phase = cfg
        .phase_index(&at.phase)
        .with_context(|| format!("the run was in phase \"{}\", which its config.toml no longer has", at.phase))?;
    let (log, dropped) = crate::session::RunLog::open_append(&dir.log())
        .with_context(|| format!("cannot reopen {}", dir.log().display()))?;
    let mut state = State::new(log, cfg.clone(), meta.run_id.clone(), printer);
    state.plan_file = Some(dir.config());
    state.emit(started(&args, meta.run_id.clone(), meta.config_name.clone(), Some(at.step)))?;
    if let Some(d) = dropped {
        state.note(
            LogLevel::Warn,
            format!("dropped {} bytes of a torn record at offset {} before resuming", d.bytes, d.offset),
        );
    }
    let upto: Vec<Event> = history.into_iter().filter(|e| e.step().is_none_or(|s| s <= at.step)).collect();
    state.resume_at(phase, at.phase_start, at.step, at.checkpoint.clone(), &upto);
    let from = match &at.checkpoint {
        Some(c) => format!("its checkpoint {c}"),
        None => "its last logged step (no checkpoint recorded)".into(),
    };
    state.note(LogLevel::Info, format!("resumed at step {} from {from}, in phase \"{}\"", at.step, at.phase));
    state.flush_log()?;
    host(args, dir, state)
}

/// What the job said about itself at `init` (tags, notes, group), kept in run.json too.
fn keep_job_info(st: &mut State, dir: &RunDir) {
    if let Some(info) = st.job_info.take()
        && let Ok(mut meta) = dir.read_meta()
    {
        meta.job = Some(info);
        if let Err(e) = dir.write_meta(&meta) {
            st.note(LogLevel::Warn, format!("cannot write run.json: {e:#}"));
        }
    }
}

/// Serves a created or resumed run until its job ends; writes its end.
fn host(args: ExternalRun, dir: RunDir, state: State) -> Result<RunStatus> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let shared: Shared = Arc::new(Mutex::new(state));
    let result = rt.block_on(serve(args, RunDir { path: dir.path.clone() }, shared.clone()));
    let mut state = lock(&shared);
    let (status, mut message) = match result {
        Ok(end) => end,
        Err(e) => (RunStatus::Failed, format!("{e:#}")),
    };
    if let Some((recorded, ran)) = state.unrecorded {
        message += &format!(
            " (the job ran to step {ran}; recorded up to step {recorded}: the job lost the host, \
             which did not answer in time, and trained on unrecorded)"
        );
    }
    keep_job_info(&mut state, &dir);
    state.flush_open();
    state.expire_at_end();
    state.note_dropped();
    let mut summary = format!("the host took {} metric points", state.points);
    if state.rejected > 0 {
        summary += &format!(", rejected {} frames", state.rejected);
    }
    if state.dropped > 0 {
        summary += &format!("; the client dropped {}", state.dropped);
    }
    state.note(LogLevel::Info, summary);
    let step = state.step;
    state.emit(Event::RunEnded { step, status, message })?;
    state.sync_log()?;
    Ok(status)
}

async fn serve(args: ExternalRun, dir: RunDir, state: Shared) -> Result<(RunStatus, String)> {
    let listener = bind(&dir.socket())?;
    let socket = SocketFile(dir.socket());
    let grace = Duration::from_secs_f64(args.config.config.run.stop_grace_s);
    let mut job = match args.for_pid {
        Some(pid) => Job::Pid(pid as i32),
        None => {
            // The job's orphans (a `setsid` daemon, a `&` child of a shell that exited)
            // become the host's children, so they can be found and reaped (`reap`).
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            let child = spawn_job(&args.command, &dir)?;
            let pid = child.id().unwrap_or(0) as i32;
            lock(&state).note(LogLevel::Info, format!("job started (pid {pid}): {}", shell_words(&args.command)));
            Job::Child(child, pid)
        }
    };
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accept = tokio::spawn(accept_loop(listener, state.clone(), conns.clone()));
    let system = tokio::spawn(system_samples(&state, &job));
    let mut sigs = Vec::new();
    for k in [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::hangup(),
    ] {
        sigs.push(tokio::signal::unix::signal(k)?);
    }
    let [s1, s2, s3] = &mut sigs[..] else { unreachable!() };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_second = Instant::now();
    // (SIGTERM sent, SIGKILL sent)
    let mut escalated = (false, false);
    // CMD's exit, while a process of its tree that said `hello` works on.
    let mut cmd_exit: Option<std::process::ExitStatus> = None;
    let mut finished_at: Option<Instant> = None;
    let mut cmd_exit_at: Option<Instant> = None;
    let end = loop {
        let exit = match &mut job {
            Job::Child(child, _) if cmd_exit.is_none() => tokio::select! {
                status = child.wait() => Some(status?),
                _ = tick.tick() => None,
                _ = s1.recv() => { stop_by_signal(&state); None }
                _ = s2.recv() => { stop_by_signal(&state); None }
                _ = s3.recv() => { stop_by_signal(&state); None }
            },
            _ => tokio::select! {
                _ = tick.tick() => None,
                _ = s1.recv() => { stop_by_signal(&state); None }
                _ = s2.recv() => { stop_by_signal(&state); None }
                _ = s3.recv() => { stop_by_signal(&state); None }
            },
        };
        if let Some(status) = exit.or(cmd_exit) {
            // The run ends when the job's work ends: CMD's exit, unless a process of its
            // tree that said `hello` is still running (`sh -c 'python job.py & exit 0'`).
            let (working, finished) = {
                let st = lock(&state);
                // Before any hello the job may still be starting (`python job.py & exit 0`
                // exits before Python has imported torch): any process of the tree counts,
                // for up to HELLO_WAIT after CMD's exit.
                let starting =
                    st.job_pids.is_empty() && cmd_exit_at.get_or_insert_with(Instant::now).elapsed() < HELLO_WAIT;
                (working_pid(&st.job_pids, &job, starting), st.finished.is_some())
            };
            // After `finish`, the process that sent it gets 2 s to exit by itself.
            let grace_over =
                finished && finished_at.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(2);
            match working.filter(|_| !grace_over) {
                Some(pid) => {
                    if cmd_exit.is_none() {
                        cmd_exit = Some(status);
                        lock(&state).note(
                            LogLevel::Info,
                            format!(
                                "CMD's process exited ({status}) while the job's process {} runs on: \
                                 the run ends when the job's work does",
                                describe(pid)
                            ),
                        );
                    }
                }
                None => {
                    // What the job sent before it exited is still being read: its connections
                    // end at their data's end (bounded, for a connection someone else holds).
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while conns.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    break job_ended(&state, &dir, status);
                }
            }
        }
        let mut st = lock(&state);
        st.flush_open();
        if last_second.elapsed() >= Duration::from_secs(1) {
            last_second = Instant::now();
            st.note_dropped();
        }
        keep_job_info(&mut st, &dir);
        let _ = st.flush_log();
        if let Job::Pid(pid) = job {
            if let Some((status, message)) = st.finished.clone() {
                let m = if message.is_empty() { "the job called finish()".to_string() } else { message };
                break (
                    if st.stop.is_some() && status == RunStatus::Completed { RunStatus::Stopped } else { status },
                    m,
                );
            }
            if unsafe { libc::kill(pid, 0) } != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            {
                break (RunStatus::Failed, format!("the job (pid {pid}) ended without finish()"));
            }
        }
        // Stop escalation: the job was asked at its syncs; then SIGTERM, then SIGKILL.
        if let (Some((_, at)), Job::Child(_, pgid)) = (&st.stop, &job) {
            let waited = at.elapsed();
            if !escalated.0 && waited >= grace {
                escalated.0 = true;
                st.note(LogLevel::Warn, format!("the job did not stop within {} s: SIGTERM", grace.as_secs_f64()));
                signal_job(*pgid, libc::SIGTERM);
            } else if !escalated.1 && waited >= 2 * grace {
                escalated.1 = true;
                st.note(
                    LogLevel::Warn,
                    format!("the job did not stop within {} s: SIGKILL", 2.0 * grace.as_secs_f64()),
                );
                signal_job(*pgid, libc::SIGKILL);
            }
        }
    };
    accept.abort();
    system.abort(); // never polled again: no sample after the run's end
    drop(socket);
    if let Job::Child(_, pgid) = job {
        reap(&state, pgid).await;
    }
    Ok(end)
}

/// The job's system samples (`sysmon`): its process tree (its process group with a
/// child job; the pid's descendants with a handed pid) and the GPUs its
/// `CUDA_VISIBLE_DEVICES` lets it use, about once a second until its first process is
/// gone. Reading `/proc` and NVML blocks, so each sample runs on tokio's blocking pool.
fn system_samples(state: &Shared, job: &Job) -> impl Future<Output = ()> + use<> {
    let state = state.clone();
    let (procs, visible) = match *job {
        // The child's environment is ours (`spawn_job` adds only phasetop's variables).
        Job::Child(_, pid) => (
            sysmon::Processes::Job { root: pid as u32, group: Some(pid as u32) },
            std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        ),
        Job::Pid(pid) => (
            sysmon::Processes::Job { root: pid as u32, group: None },
            sysmon::process_env(pid as u32, "CUDA_VISIBLE_DEVICES"),
        ),
    };
    async move {
        let (choice, note) = sysmon::GpuChoice::for_job(visible.as_deref());
        let Ok(mut sampler) = tokio::task::spawn_blocking(move || sysmon::Sampler::with(procs, &choice)).await else {
            return;
        };
        let gpus = match sampler.gpu_absent() {
            Some(why) => format!("no GPU metrics: {why}"),
            None => match sampler.gpu_indices()[..] {
                [one] => format!("GPU metrics from NVML GPU {one}"),
                ref many => {
                    let i: Vec<String> = many.iter().map(u32::to_string).collect();
                    format!("GPU metrics from NVML GPUs {} (sys/gpu_*, sys/gpu1_*, …)", i.join(", "))
                }
            },
        };
        {
            let mut st = lock(&state);
            st.note(LogLevel::Info, format!("system samples of the job's processes; {gpus}"));
            for n in note.iter().chain(sampler.notes()) {
                st.note(LogLevel::Warn, n.clone());
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok((s, m)) = tokio::task::spawn_blocking(move || {
                let m = sampler.sample();
                (sampler, m)
            })
            .await
            else {
                return;
            };
            sampler = s;
            if sampler.job_gone() {
                return;
            }
            lock(&state).system_sample(m);
        }
    }
}

fn stop_by_signal(state: &Shared) {
    let mut st = lock(state);
    if st.stop.is_none() {
        st.command(Command::Stop, "signal");
    }
}
