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

    /// Creates `path`, which must not exist or hold a run already (a background host's
    /// `host.log` and the demo's config copy may be there).
    pub fn create(path: &Path) -> Result<RunDir> {
        if path.join(LOG_FILE).exists() || path.join(CONFIG_FILE).exists() {
            bail!("{}: already holds a run (use --resume to continue it)", path.display());
        }
        std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(RunDir { path: path.to_path_buf() })
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

    pub fn write_meta(&self, meta: &RunMeta) -> Result<()> {
        std::fs::write(self.path.join(META_FILE), serde_json::to_vec_pretty(meta)?)?;
        Ok(())
    }

    /// Whether a host answers on the control socket.
    pub fn is_live(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
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
    #[test]
    fn utc_stamp_matches_known_dates() {
        assert_eq!(super::utc_stamp(0.0), "19700101-000000");
        assert_eq!(super::utc_stamp(1_795_000_000.0), "20261118-110640");
        assert_eq!(super::utc_stamp(951_782_400.0), "20000229-000000");
    }
}
