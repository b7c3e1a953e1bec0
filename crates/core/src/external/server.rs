//! The external run's socket: bound private, served with tokio — any number of
//! connections (rank 0's, other ranks', dashboards, `ctl`) without a thread each, every
//! line handed to `State` under its mutex; at the connection limit the longest-idle
//! connection that is not the job's makes room.

use super::host::{MAX_CONNECTIONS, Shared, lock};
use super::protocol::{self, Frame, MAX_FRAME};
use crate::control::Reply;
use crate::event::Command;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// A connection that has not said `hello` and sends nothing for this long is closed
/// (`ctl` and dashboards send a request at once; the job's connections never time out).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply must be written within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket mode 0600 (umask while binding, so it is never wider), replacing a
/// stale one.
pub(super) fn bind(path: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if crate::control::connect_within(path, crate::control::CONNECT_DEADLINE).is_ok() {
            anyhow::bail!("{}: another host is live on this run", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let old = unsafe { libc::umask(0o077) };
    let bound = std::os::unix::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("cannot serve {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

/// Removes the socket when the run ends, so `is_live` is false at once.
pub(super) struct SocketFile(pub(super) PathBuf);
impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A connection being served: when it was last heard from, whether it is the job's
/// (said `hello` or sent a job frame), and how to close it to make room.
pub(super) struct Conn {
    last_active: Instant,
    job: bool,
    close: Arc<tokio::sync::Notify>,
}

pub(super) type Registry = Arc<Mutex<std::collections::HashMap<u64, Conn>>>;

/// Registers connection `id`, closing the longest-idle connection that is not the job's
/// when `MAX_CONNECTIONS` are served; None (refuse it) when every one is the job's.
pub(super) fn admit(registry: &Registry, id: u64) -> Option<Arc<tokio::sync::Notify>> {
    let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
    if r.len() >= MAX_CONNECTIONS {
        let idlest = r.iter().filter(|(_, c)| !c.job).min_by_key(|(_, c)| c.last_active).map(|(k, _)| *k)?;
        if let Some(old) = r.remove(&idlest) {
            // Its task stops reading and closes the connection.
            old.close.notify_one();
        }
    }
    let close = Arc::new(tokio::sync::Notify::new());
    r.insert(id, Conn { last_active: Instant::now(), job: false, close: close.clone() });
    Some(close)
}

pub(super) fn touch(registry: &Registry, id: u64, job: bool) {
    let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = r.get_mut(&id) {
        c.last_active = Instant::now();
        c.job |= job;
    }
}

pub(super) async fn accept_loop(
    listener: tokio::net::UnixListener,
    state: Shared,
    conns: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let registry: Registry = Arc::default();
    let mut n: u64 = 0;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        n += 1;
        let Some(close) = admit(&registry, n) else {
            let step = lock(&state).step;
            let message = format!("too many connections: all {MAX_CONNECTIONS} are the job's; try again");
            let r = Reply { ok: false, step, message };
            let mut line = serde_json::to_vec(&r).unwrap_or_default();
            line.push(b'\n');
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&line)).await;
            continue;
        };
        conns.fetch_add(1, Ordering::Relaxed);
        let (state, conns, registry) = (state.clone(), conns.clone(), registry.clone());
        tokio::spawn(async move {
            let id = n;
            let served = connection(stream, format!("socket#{n}"), state, &registry, id);
            tokio::select! {
                _ = served => {}
                _ = close.notified() => {}
            }
            registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

pub(super) enum Line {
    Complete,
    Closed,
    /// Longer than `MAX_FRAME`: discarded up to its newline.
    TooLong(usize),
}

/// Reads one line into `buf` (without its newline), never holding more than MAX_FRAME.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let mut dropped = 0usize;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if dropped > 0 {
                Line::TooLong(dropped)
            } else if buf.is_empty() {
                Line::Closed
            } else {
                Line::Complete
            });
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if dropped == 0 && buf.len() + chunk.len() <= MAX_FRAME {
            buf.extend_from_slice(chunk);
        } else {
            dropped += buf.len() + chunk.len();
            buf.clear();
        }
        let used = done.unwrap_or(avail.len());
        r.consume(used);
        if done.is_some() {
            return Ok(if dropped > 0 { Line::TooLong(dropped) } else { Line::Complete });
        }
    }
}

pub(super) async fn connection(
    stream: UnixStream,
    client: String,
    state: Shared,
    registry: &Registry,
    id: u64,
) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::with_capacity(256 << 10, r);
    let mut buf = Vec::with_capacity(4096);
    let mut job = false;
    loop {
        let read = if job {
            read_line(&mut reader, &mut buf).await?
        } else {
            match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut reader, &mut buf)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            }
        };
        touch(registry, id, false);
        let reply: Option<serde_json::Value> = match read {
            Line::Closed => return Ok(()),
            Line::TooLong(n) => {
                let reason = format!("frame of {n} bytes is longer than the {MAX_FRAME}-byte limit");
                lock(&state).reject(&client, &reason);
                Some(serde_json::json!({"type": "error", "message": reason}))
            }
            Line::Complete if buf.iter().all(|b| b.is_ascii_whitespace()) => None,
            Line::Complete => match protocol::parse(&buf) {
                Err(reason) => {
                    lock(&state).reject(&client, &reason);
                    Some(serde_json::json!({"type": "error", "message": reason}))
                }
                Ok(Frame::Control(v)) => Some(control_request(&state, v, &client)),
                Ok(Frame::Job(f)) => {
                    if !job {
                        job = true;
                        touch(registry, id, true);
                    }
                    lock(&state).job(&client, *f)
                }
            },
        };
        if let Some(v) = reply {
            let mut line = serde_json::to_vec(&v).unwrap_or_default();
            line.push(b'\n');
            match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&line)).await {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            }
        }
    }
}

/// A `ctl` request: answered like the built-in host's (`control::Reply`).
pub(super) fn control_request(state: &Shared, v: serde_json::Value, client: &str) -> serde_json::Value {
    let mut st = lock(state);
    let reply = if v.get("cmd").and_then(|c| c.as_str()) == Some("status") {
        let s = st.status();
        Reply { ok: true, step: s.step, message: serde_json::to_string(&s).unwrap_or_default() }
    } else {
        match serde_json::from_value::<Command>(v) {
            Ok(c) => st.command(c, client),
            Err(e) => Reply { ok: false, step: st.step, message: format!("invalid command: {e}") },
        }
    };
    serde_json::to_value(reply).unwrap_or_default()
}
