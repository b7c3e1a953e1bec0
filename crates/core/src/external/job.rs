//! The external run's job: CMD in its own process group (output to `job.log`), whether
//! its work goes on after CMD's own process exits, the run's end from its exit, and
//! reaping every process it leaves behind (the host is their subreaper).

use super::host::{JOB_LOG, Shared, lock};
use crate::event::{LogLevel, RunStatus};
use crate::rundir::RunDir;
use crate::sysmon;
use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// Lines of job.log quoted in a failed run's end.
const TAIL_LINES: usize = 20;

/// The job's process: a child, or a pid we were handed.
pub(super) enum Job {
    Child(tokio::process::Child, i32),
    Pid(i32),
}

/// A process that said `hello` and is still running in the job's tree (the host's
/// descendants, CMD's process group); zombies among the host's children are reaped.
/// With `starting` (no hello yet), any running process of the tree.
pub(super) fn working_pid(pids: &[u32], job: &Job, starting: bool) -> Option<u32> {
    let Job::Child(_, pgid) = job else { return None };
    reap_zombies();
    let tree = sysmon::own_descendants(Some(*pgid as u32));
    if starting {
        return tree.iter().map(|t| t.pid).find(|p| sysmon::is_running(*p));
    }
    pids.iter().copied().find(|p| sysmon::is_running(*p) && tree.iter().any(|t| t.pid == *p))
}

/// Waits for every exited child of the host (CMD has been waited for already), so an
/// orphan that has ended is not counted as running.
pub(super) fn reap_zombies() {
    // SAFETY: waitpid with WNOHANG and a valid status pointer.
    let mut status = 0;
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// When the run ends: every process left of the job's tree (background processes,
/// `setsid` daemons re-parented to the host, CMD's process group) gets SIGTERM, and
/// SIGKILL if still running 2 s later; the log says which.
pub(super) async fn reap(state: &Shared, pgid: i32) {
    let left = || -> Vec<u32> {
        reap_zombies();
        sysmon::own_descendants(Some(pgid as u32))
            .into_iter()
            .map(|p| p.pid)
            .filter(|p| sysmon::is_running(*p))
            .collect()
    };
    let pids = left();
    if pids.is_empty() {
        return;
    }
    let names: Vec<String> = pids.iter().map(|p| describe(*p)).collect();
    lock(state).note(
        LogLevel::Warn,
        format!("the run ended with {} of the job's processes running: SIGTERM to {}", pids.len(), names.join(", ")),
    );
    for p in &pids {
        // SAFETY: plain kill(2); a pid that has ended meanwhile gets ESRCH.
        unsafe { libc::kill(*p as i32, libc::SIGTERM) };
    }
    unsafe { libc::killpg(pgid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut still = left();
    while !still.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        still = left();
    }
    if still.is_empty() {
        return;
    }
    let names: Vec<String> = still.iter().map(|p| describe(*p)).collect();
    lock(state).note(LogLevel::Warn, format!("still running 2 s after SIGTERM: SIGKILL to {}", names.join(", ")));
    for p in &still {
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    reap_zombies();
}

/// `PID (COMMAND)` from /proc, or the pid alone.
pub(super) fn describe(pid: u32) -> String {
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(c) => format!("{pid} ({})", c.trim()),
        Err(_) => pid.to_string(),
    }
}

/// The run's end from the job's exit.
pub(super) fn job_ended(state: &Shared, dir: &RunDir, status: std::process::ExitStatus) -> (RunStatus, String) {
    use std::os::unix::process::ExitStatusExt;
    let st = lock(state);
    let asked = st.stop.as_ref().map(|(who, _)| who.clone());
    if status.success() {
        return match (asked, &st.plan_done) {
            (Some(who), _) => (RunStatus::Stopped, format!("stopped by {who}; the job exited 0")),
            (None, Some(why)) => (RunStatus::Completed, format!("{why}; the job exited 0")),
            (None, None) => (RunStatus::Completed, "the job exited 0".into()),
        };
    }
    let what = match (status.code(), status.signal()) {
        (Some(c), _) => format!("the job exited with code {c}"),
        (None, Some(s)) => format!("the job was killed by signal {s}"),
        _ => format!("the job ended: {status}"),
    };
    // Killed by our own escalation after a stop: the operator asked for it.
    if let Some(who) = &asked
        && status.signal().is_some()
    {
        return (RunStatus::Stopped, format!("stopped by {who}; {what}"));
    }
    let tail = tail_lines(&dir.path.join(JOB_LOG), TAIL_LINES);
    // The job said its work was done (`finish()`), then its process failed on the way
    // out (a rank aborting in its teardown, torchrun then exiting 1): the run ends as the
    // job said, and the exit is told with the log's last lines.
    if let Some((said, _)) = &st.finished
        && *said != RunStatus::Failed
    {
        let (end, by) = match &asked {
            Some(who) => (RunStatus::Stopped, format!("stopped by {who}; ")),
            None => (*said, String::new()),
        };
        return (
            end,
            format!(
                "{by}the job finished ({}), then {what} on its way out; last lines of {JOB_LOG}:\n{tail}",
                said.as_str()
            ),
        );
    }
    let message = if tail.is_empty() { what } else { format!("{what}; last lines of {JOB_LOG}:\n{tail}") };
    (RunStatus::Failed, message)
}

pub(super) fn tail_lines(path: &std::path::Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let start = bytes.len().saturating_sub(16 << 10);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn shell_words(cmd: &[String]) -> String {
    cmd.iter()
        .map(|w| {
            if w.is_empty() || w.contains(|c: char| c.is_whitespace() || "'\"\\$".contains(c)) {
                format!("{w:?}")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Signals the job: its process group, and every process descended from CMD (whose pid
/// is the group's id), because launchers such as torchrun start their workers in new
/// sessions, out of the group: a SIGKILL to the group alone would orphan them. The tree
/// is walked before the group is signalled, while the workers still have their parent.
pub(super) fn signal_job(pgid: i32, sig: i32) {
    let tree = crate::sysmon::own_descendants(Some(pgid as u32));
    // SAFETY: plain kill(2) calls; a pid that has ended meanwhile gets ESRCH.
    unsafe { libc::killpg(pgid, sig) };
    for p in tree {
        unsafe { libc::kill(p.pid as i32, sig) };
    }
}

/// The job in its own process group (so a stop's SIGTERM reaches torchrun and all its
/// workers), output appended to job.log, the run's whereabouts in its environment.
pub(super) fn spawn_job(command: &[String], dir: &RunDir) -> Result<tokio::process::Child> {
    let out = crate::modes::append_file(&dir.path.join(JOB_LOG))
        .with_context(|| format!("cannot open {}", dir.path.join(JOB_LOG).display()))?;
    let abs = std::path::absolute(&dir.path)?;
    let mut cmd = tokio::process::Command::new(&command[0]);
    cmd.args(&command[1..])
        .env(super::ENV_RUN_DIR, &abs)
        .env(super::ENV_SOCKET, abs.join(crate::rundir::SOCKET_FILE))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn().with_context(|| format!("cannot start the job {}", shell_words(command)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::external::state::State;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::{Arc, Mutex};

    /// A job whose rank 0 said `finish()` and whose launcher then exits 1 (a rank aborting
    /// in gloo's teardown): the run ends as the job said, the exit told; without
    /// `finish()`, the same exit is a failure.
    #[test]
    fn a_job_that_finished_then_failed_on_its_way_out_ends_as_it_said() {
        let tmp = tempfile::tempdir().unwrap();
        let log = crate::session::RunLog::create(&tmp.path().join("events.log")).unwrap();
        let cfg = crate::config::external::parse("p.toml", "[[phase]]\nname = \"a\"\n").unwrap();
        let mut st = State::new(log, cfg, "r".into(), None);
        st.finished = Some((RunStatus::Completed, String::new()));
        st.stop = Some(("ctl".into(), Instant::now()));
        let shared = Arc::new(Mutex::new(st));
        let dir = RunDir { path: tmp.path().to_path_buf() };
        std::fs::write(tmp.path().join(JOB_LOG), "terminate called without an active exception\n").unwrap();
        let exit_1 = std::process::ExitStatus::from_raw(1 << 8);
        let (status, message) = job_ended(&shared, &dir, exit_1);
        assert_eq!(status, RunStatus::Stopped);
        assert!(message.contains("the job finished (completed), then the job exited with code 1"), "{message}");
        assert!(message.contains("terminate called"), "{message}");
        shared.lock().unwrap().finished = None;
        assert_eq!(job_ended(&shared, &dir, exit_1).0, RunStatus::Failed);
    }
}
