//! Waiting for a growing run log: a `notify` watch (inotify on Linux) wakes the reader
//! as soon as the writer flushes; where a watch cannot be set up (no inotify instances
//! left, a network file system that never reports changes) the file's size and mtime
//! are polled instead. Each wait is bounded either way, so a missed notification only
//! delays, never stalls.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const POLL: Duration = Duration::from_millis(250);

pub struct Watch {
    path: PathBuf,
    /// Kept alive for its events; `None` means polling.
    watcher: Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)>,
    seen: (u64, Option<SystemTime>),
}

impl Watch {
    pub fn new(path: &Path) -> Watch {
        Watch { path: path.to_path_buf(), watcher: notify_watch(path), seen: stat(path) }
    }

    /// Polling only (tests of the fallback).
    pub fn polling(path: &Path) -> Watch {
        Watch { path: path.to_path_buf(), watcher: None, seen: stat(path) }
    }

    pub fn uses_notify(&self) -> bool {
        self.watcher.is_some()
    }

    /// Returns when the file may have changed, after `max` at the latest, or soon after
    /// `stop` is set.
    pub fn wait(&mut self, max: Duration, stop: &AtomicBool) {
        let until = Instant::now() + max;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            let slice = POLL.min(until.saturating_duration_since(Instant::now()));
            if let Some((_, rx)) = &self.watcher {
                if rx.recv_timeout(slice).is_ok() {
                    while rx.try_recv().is_ok() {}
                    return;
                }
            } else {
                std::thread::sleep(slice);
            }
            // Checked with a watch too: a change it missed is caught within one slice.
            let now = stat(&self.path);
            if now != self.seen {
                self.seen = now;
                return;
            }
        }
    }
}

fn stat(p: &Path) -> (u64, Option<SystemTime>) {
    std::fs::metadata(p).map(|m| (m.len(), m.modified().ok())).unwrap_or((0, None))
}

fn notify_watch(path: &Path) -> Option<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel();
    let mut w = notify::recommended_watcher(move |r: notify::Result<notify::Event>| {
        if r.is_ok_and(|e| e.kind.is_modify() || e.kind.is_create()) {
            let _ = tx.send(());
        }
    })
    .ok()?;
    w.watch(path, notify::RecursiveMode::NonRecursive).ok()?;
    Some((w, rx))
}
