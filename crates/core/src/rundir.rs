//! The run directory: `config.toml` (the source as given), `run.json` (identity and
//! command-line overrides, so `--resume` rebuilds the same run), `events.log`,
//! `checkpoints/`, and `control.sock` while the host is live.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const META_FILE: &str = "run.json";
pub const LOG_FILE: &str = "events.log";
pub const CHECKPOINT_DIR: &str = "checkpoints";
pub const SOCKET_FILE: &str = "control.sock";
/// stdout/stderr of a host started in the background.
pub const HOST_LOG: &str = "host.log";
/// stdout/stderr of an external run's job (`phasetop run -- CMD`).
pub const JOB_LOG: &str = "job.log";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunMeta {
    pub run_id: String,
    pub config_name: String,
    pub seed: u64,
    pub max_steps: u64,
    pub created_at: f64,
    /// The config file the run was started from, watched by dashboards for plan edits.
    #[serde(default)]
    pub source_path: Option<String>,
    /// The run this one was branched from (`phasetop branch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// A branch's `--switch` still to come (`branch --at` past its checkpoint): kept here
    /// so that a resume or a rollback to a step before it schedules it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_switch: Option<ScheduledSwitch>,
    /// The `[model] init` the run was created with. Absent in a run made before `init`
    /// existed: it was trained under tch's defaults, and a resume or branch of it keeps
    /// them (see `RunMeta::legacy_init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// What an external job said about itself at `init` (its tags, notes, group); the
    /// log's `run_info` has it all, this copy serves tools that read run.json alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobInfo>,
}

/// An external job's tags, notes and group (`phasetop.init(tags=…, notes=…, group=…)`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobInfo {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub notes: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl RunMeta {
    /// For a branch, the step where it leaves its parent's path: a pending or made
    /// `--switch` past the checkpoint (the steps before it repeat the parent's), else
    /// the checkpoint's step. What the child's name, `ls` and `inspect` say.
    pub fn branched_at(&self) -> Option<u64> {
        let p = self.parent.as_ref()?;
        Some(self.scheduled_switch.as_ref().map_or(p.branch_step, |s| s.step.max(p.branch_step)))
    }

    /// Gives a config loaded for a run made before `[model] init` existed the init it
    /// was trained with (`tch`, which also keeps its optimizer's rounding), unless the
    /// config names one: a resumed old run then continues exactly as it would have.
    pub fn legacy_init(&self, cfg: &mut crate::config::Config) {
        if self.init.is_none() && cfg.model.init.is_none() {
            cfg.model.init = Some(toml::Spanned::new(0..0, crate::config::InitKind::Tch));
        }
    }
}

/// A phase switch due at the boundary after `step` (see `RunMeta::scheduled_switch`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduledSwitch {
    pub step: u64,
    pub phase: String,
    /// The phase change's detail when it happens.
    pub detail: String,
}

/// Where a branched run came from: `run.json`'s `parent`, and `inspect --json`'s.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParentRef {
    pub run_id: String,
    /// The parent's run directory as given to `branch` (made absolute), so the child
    /// finds it wherever it is opened from.
    pub run_dir: String,
    /// The parent's checkpoint step the branch started from.
    pub branch_step: u64,
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn open(path: &Path) -> Result<RunDir> {
        if !path.join(LOG_FILE).exists() {
            bail!("{}: not a run directory (no {LOG_FILE})", path.display());
        }
        Ok(RunDir { path: path.to_path_buf() })
    }

    /// Checks, without touching anything, that `path` could take a new run: it does not
    /// exist, or holds no `events.log` (a background host's `host.log`, the demo's config
    /// copy, or the `config.toml`/`run.json` of a start that failed before its log may be
    /// there). [`RunDir::create`] checks again under the run's lock.
    pub fn check_free(path: &Path) -> Result<()> {
        if path.join(LOG_FILE).exists() {
            return Err(crate::error::UsageError(format!(
                "{}: already holds a run (use --resume to continue it)",
                path.display()
            ))
            .into());
        }
        Ok(())
    }

    /// Creates `path` (made mode 0700 unless `group_readable`, then 0750) and takes its lock;
    /// refuses when it holds a run already or another process holds the lock. A directory
    /// whose start failed before its log was created (config.toml and run.json, no
    /// events.log) is taken over: only `events.log` makes a run.
    pub fn create(path: &Path, group_readable: bool) -> Result<(RunDir, RunLock)> {
        // The mode is set also when it exists already: the dashboard's `train` makes it
        // (for host.log) before the host starts.
        crate::modes::create_dir(path, crate::modes::dir_mode(group_readable))
            .with_context(|| format!("cannot create {}", path.display()))?;
        let lock = RunLock::acquire(path)?;
        RunDir::check_free(path)?;
        Ok((RunDir { path: path.to_path_buf() }, lock))
    }

    /// A directory left by a start that failed before its log existed: `run.json` or
    /// `config.toml` without `events.log`, and no process holding its lock. `ls` lists it
    /// as failed; `train --run-dir` reuses it.
    pub fn failed_start(path: &Path) -> Option<String> {
        if path.join(LOG_FILE).exists() || !(path.join(META_FILE).exists() || path.join(CONFIG_FILE).exists()) {
            return None;
        }
        // Asked, not taken: a reader must never make a starting host's `acquire` fail.
        if RunLock::is_held(path) != Some(false) {
            return None;
        }
        Some("the start failed or was interrupted before the run log was created; `train --run-dir` reuses it".into())
    }

    pub fn log(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.path.join(CHECKPOINT_DIR)
    }
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET_FILE)
    }

    pub fn read_meta(&self) -> Result<RunMeta> {
        let p = self.path.join(META_FILE);
        let bytes = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{}: invalid run metadata", p.display()))
    }

    /// Writes `run.json` atomically (temporary file, fsync, rename, fsync of the
    /// directory): a failed write names the file and leaves the previous one in place and
    /// no temporary file behind.
    pub fn write_meta(&self, meta: &RunMeta) -> Result<()> {
        write_atomic(&self.path.join(META_FILE), &serde_json::to_vec_pretty(meta)?)
    }

    /// Whether a host answers on the control socket.
    pub fn is_live(&self) -> bool {
        // Bounded: a stopped host with a full backlog would hold a plain connect for ever.
        crate::control::connect_within(&self.socket(), crate::control::CONNECT_DEADLINE).is_ok()
    }

    /// Who is behind the run, for a log without an end: a host answering its socket,
    /// a process holding the run's lock without answering (a host starting or hung, an
    /// import or mirror writing it), or nobody — the host exited without recording the
    /// end (killed, crashed), so the run has failed. Reads only.
    pub fn host_state(&self) -> HostState {
        if self.is_live() {
            return HostState::Answering;
        }
        match RunLock::is_held(&self.path) {
            Some(false) => HostState::Gone,
            // Held, or cannot tell (the directory cannot be opened): not called failed.
            _ => HostState::Silent,
        }
    }
}

/// See [`RunDir::host_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    Answering,
    Silent,
    Gone,
}

/// Why a run without an end whose host is gone is `failed` (`ls`, `inspect`, `ctl`, the
/// dashboard's header).
pub const HOST_GONE: &str = "the host exited without recording an end (killed or crashed?)";

/// Writes `bytes` to `path` atomically: a temporary file next to it, fsync, rename, and
/// fsync of the directory. On failure the temporary file is removed and the error names
/// which write failed; the old contents of `path`, if any, stay.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut f = crate::modes::create_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())));
    }
    if let Some(dir) =
        path.parent().and_then(|d| std::fs::File::open(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// How long [`RunLock::acquire`] waits out a busy lock before it calls it an owner's.
pub const ACQUIRE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The run's lock: an exclusive `flock` on the run directory, held by the process that
/// owns the run (its host, or an import writing it) for as long as it lives. Anything
/// that would write into a run directory takes it first, before touching a file, so a
/// second host on a live run is refused with the run left as it was. The kernel drops
/// it when the process dies, so a killed host leaves no stale lock.
#[derive(Debug)]
pub struct RunLock {
    _dir: std::fs::File,
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<RunLock> {
        RunLock::acquire_within(path, ACQUIRE_PATIENCE, || {})
    }

    /// [`RunLock::acquire`], trying again for up to `patience` while the lock is busy
    /// (`on_busy` after each busy try). A reader asking whether the lock is held
    /// (`is_held`) holds a shared lock for an instant, however loaded the machine: so a
    /// busy lock is only an owner's once it stays busy for `patience`.
    pub fn acquire_within(path: &Path, patience: std::time::Duration, mut on_busy: impl FnMut()) -> Result<RunLock> {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        let try_lock = || unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        let deadline = std::time::Instant::now() + patience;
        let mut pause = std::time::Duration::from_millis(1);
        let locked = loop {
            if try_lock() {
                break true;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EWOULDBLOCK) {
                break false;
            }
            on_busy();
            let now = std::time::Instant::now();
            if now >= deadline {
                break false;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(std::time::Duration::from_millis(20));
        };
        if !locked {
            // Tried once more, for the error of this very attempt.
            if try_lock() {
                return Ok(RunLock { _dir: dir });
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                bail!(
                    "{}: another host is live on this run (it holds the run's lock); nothing was changed",
                    path.display()
                );
            }
            return Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())));
        }
        Ok(RunLock { _dir: dir })
    }

    /// Whether a process holds the lock of the run at `path` (`None`: cannot tell). Asked
    /// with a shared `flock` that the owner's exclusive one refuses, released at once (a
    /// host taking the lock in that instant tries again: `acquire`).
    pub fn is_held(path: &Path) -> Option<bool> {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(path).ok()?;
        // SAFETY: flock on a descriptor we own; closing it releases the shared lock.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            return Some(false);
        }
        (std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)).then_some(true)
    }
}

/// A fresh directory name under `root`: `<name>-<UTC yyyymmdd-hhmmss>`, suffixed when taken.
pub fn new_run_path(root: &Path, name: &str) -> PathBuf {
    let stamp = utc_stamp(now_unix());
    let base = root.join(format!("{name}-{stamp}"));
    if !base.exists() {
        return base;
    }
    (2..).map(|i| root.join(format!("{name}-{stamp}-{i}"))).find(|p| !p.exists()).expect("unbounded")
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `yyyymmdd-hhmmss` in UTC (civil-from-days, H. Hinnant's algorithm).
pub fn utc_stamp(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_held_asks_without_keeping_and_acquire_waits_out_an_asker() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        assert_eq!(RunLock::is_held(&run), Some(false));
        let lock = RunLock::acquire(&run).unwrap();
        assert_eq!(RunLock::is_held(&run), Some(true));
        assert!(RunLock::acquire(&run).is_err(), "a second owner is refused");
        drop(lock);
        assert_eq!(RunLock::is_held(&run), Some(false), "asking left no lock behind");
        assert_eq!(RunLock::is_held(&tmp.path().join("nope")), None);
        // An asker's shared lock, held until the acquirer has found the lock busy (a
        // condition, not a sleep): the acquirer tries again and gets the run.
        use std::os::fd::AsRawFd;
        let asker = std::fs::File::open(&run).unwrap();
        assert_eq!(unsafe { libc::flock(asker.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) }, 0);
        let (busy_tx, busy_rx) = std::sync::mpsc::channel();
        let r = run.clone();
        // A patience far above any scheduling delay: only the asker's release ends the wait.
        let t = std::thread::spawn(move || {
            RunLock::acquire_within(&r, std::time::Duration::from_secs(60), || {
                let _ = busy_tx.send(());
            })
        });
        busy_rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the acquirer found the lock busy");
        drop(asker);
        assert!(t.join().unwrap().is_ok(), "an asker made an acquirer fail");
        // An owner's lock stays busy: refused once the patience is spent.
        let owner = RunLock::acquire(&run).unwrap();
        let started = std::time::Instant::now();
        let patience = std::time::Duration::from_millis(50);
        assert!(RunLock::acquire_within(&run, patience, || {}).is_err());
        assert!(started.elapsed() >= patience);
        drop(owner);
    }

    #[test]
    fn utc_stamp_matches_known_dates() {
        assert_eq!(super::utc_stamp(0.0), "19700101-000000");
        assert_eq!(super::utc_stamp(1_795_000_000.0), "20261118-110640");
        assert_eq!(super::utc_stamp(951_782_400.0), "20000229-000000");
    }
}
