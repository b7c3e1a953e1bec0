//! The local side of a remote run: an `ssh … phasetop stream` link whose events are
//! appended to a local mirror run directory (`events.log` by the ordinary
//! [`runlog::Writer`], `run.json` and `config.toml` copied), so every local reader — the
//! dashboard above all — works on a remote run unchanged. Commands go back on the same
//! link, and the run's console files come the same way (`job.log`, `host.log`:
//! [`super::console`]). A link that drops (ssh exits, or nothing arrives for
//! [`LINK_TIMEOUT`]) is re-made with `--from` the offset after the last event mirrored:
//! no gap, no duplicate.

use super::console::{self, ConsoleMirror};
use super::proto::{CommandRequest, Frame, Hello, LINK_TIMEOUT, MAX_FRAME};
use super::{Spec, ssh_phasetop};
use crate::control::Reply;
use crate::rundir::{self, RunLock};
use crate::runlog::{HEADER_LEN, Writer};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a command waits for its reply over the link.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// Counts the bytes read from the ssh process (what crossed the link).
struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Lines = BufReader<Counted<ChildStdout>>;

struct Shared {
    spec: Spec,
    steps_per_sec: f64,
    child: Mutex<Option<Child>>,
    stdin: Mutex<Option<ChildStdin>>,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Reply>>>,
    next_id: AtomicU64,
    connected: AtomicBool,
    remote_live: AtomicBool,
    stop: AtomicBool,
    /// The remote offset after the last event mirrored (or skipped by decimation).
    at: AtomicU64,
    bytes: Arc<AtomicU64>,
    events: AtomicU64,
    connects: AtomicU64,
    last_frame: Mutex<Instant>,
    /// Why the link is down, for the viewer.
    problem: Mutex<Option<String>>,
}

/// A remote run mirrored into a local run directory while it lives.
pub struct Mirror {
    shared: Arc<Shared>,
    /// The local mirror run directory.
    pub dir: PathBuf,
    /// The first hello: the remote log's length when the link was made.
    pub hello: Hello,
    threads: Vec<std::thread::JoinHandle<()>>,
    _lock: RunLock,
}

impl Mirror {
    /// Connects (the user's ssh; its prompts and errors happen here, before any screen),
    /// prepares the mirror directory under `cache` (`<host>/<run-id>`, or
    /// `<run-id>.<pid>` when another viewer holds that one) and starts mirroring.
    pub fn open(spec: &Spec, cache: &Path, steps_per_sec: f64) -> Result<Mirror> {
        let (mut child, stdin, lines) = connect(spec, HEADER_LEN as u64, steps_per_sec, false)?;
        let (hello, lines) = match first_hello(lines, super::first_frame_timeout(), None) {
            Ok(h) => h,
            Err(FirstHello::Failed(e)) => return Err(link_error(&mut child, e, spec)),
            Err(FirstHello::TimedOut(waited)) => {
                let _ = child.kill();
                let said = super::stderr_tail(child.stderr.take(), Duration::from_millis(500), 2000);
                let _ = child.try_wait();
                bail!("{}", super::no_answer(&spec.host, waited, &said));
            }
        };
        let (dir, lock) = mirror_dir(cache, spec)?;
        let log = dir.join(rundir::LOG_FILE);
        for f in [rundir::LOG_FILE, rundir::META_FILE, rundir::CONFIG_FILE] {
            let _ = std::fs::remove_file(dir.join(f));
        }
        if let Some(mut meta) = hello.meta.clone() {
            // The source config path is the remote machine's: a local file by that name
            // is another file, and the dashboard watches it for plan edits.
            if let Some(m) = meta.as_object_mut() {
                m.remove("source_path");
            }
            rundir::write_atomic(&dir.join(rundir::META_FILE), &serde_json::to_vec_pretty(&meta)?)?;
        }
        if let Some(cfg) = &hello.config {
            rundir::write_atomic(&dir.join(rundir::CONFIG_FILE), cfg.as_bytes())?;
        }
        let writer = Writer::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let bytes = lines.get_ref().bytes.clone();
        let shared = Arc::new(Shared {
            spec: spec.clone(),
            steps_per_sec,
            child: Mutex::new(Some(child)),
            stdin: Mutex::new(Some(stdin)),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            connected: AtomicBool::new(true),
            remote_live: AtomicBool::new(hello.live),
            stop: AtomicBool::new(false),
            at: AtomicU64::new(hello.from),
            bytes,
            events: AtomicU64::new(0),
            connects: AtomicU64::new(1),
            last_frame: Mutex::new(Instant::now()),
            problem: Mutex::new(None),
        });
        let s = shared.clone();
        let run_id = hello.meta.as_ref().and_then(|m| m.get("run_id").cloned());
        let console = ConsoleMirror::new(&dir);
        let pump = std::thread::Builder::new()
            .name("remote-mirror".into())
            .spawn(move || pump(&s, writer, lines, run_id, console))?;
        let s = shared.clone();
        let watchdog = std::thread::Builder::new().name("remote-watchdog".into()).spawn(move || watchdog(&s))?;
        Ok(Mirror { shared, dir, hello, threads: vec![pump, watchdog], _lock: lock })
    }

    /// Sends a command body (as `ctl` would put on the socket) and waits for the reply.
    pub fn request(&self, body: &serde_json::Value) -> Result<Reply, String> {
        let s = &self.shared;
        if !s.connected.load(Ordering::Relaxed) {
            return Err(format!("link to {} is down; reconnecting", s.spec.host));
        }
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        s.waiting.lock().map_err(|_| "link state poisoned".to_string())?.insert(id, tx);
        let mut line = serde_json::to_vec(&CommandRequest { id, cmd: body.clone() }).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let written = match s.stdin.lock() {
            Ok(mut g) => g.as_mut().is_some_and(|w| w.write_all(&line).and_then(|_| w.flush()).is_ok()),
            Err(_) => false,
        };
        let result = if written {
            rx.recv_timeout(REPLY_TIMEOUT).map_err(|_| format!("no reply from {} (link lost?)", s.spec.host))
        } else {
            Err(format!("link to {} is down; reconnecting", s.spec.host))
        };
        if let Ok(mut w) = s.waiting.lock() {
            w.remove(&id);
        }
        result
    }

    /// Whether the link is up and the remote host answers on its control socket.
    pub fn is_live(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed) && self.shared.remote_live.load(Ordering::Relaxed)
    }

    /// The host the link goes to (as given to ssh).
    pub fn host(&self) -> &str {
        &self.shared.spec.host
    }

    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// The remote log offset the mirror has reached (`--from` of the next link).
    pub fn remote_offset(&self) -> u64 {
        self.shared.at.load(Ordering::Relaxed)
    }

    /// Bytes read from ssh so far, over all links.
    pub fn bytes_received(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// Events mirrored so far.
    pub fn events(&self) -> u64 {
        self.shared.events.load(Ordering::Relaxed)
    }

    /// Links made so far (1 + reconnects).
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Why the link is down, when it is.
    pub fn problem(&self) -> Option<String> {
        self.shared.problem.lock().ok().and_then(|p| p.clone())
    }

    /// The pid of the current ssh process (tests cut the link by killing it).
    pub fn ssh_pid(&self) -> Option<u32> {
        self.shared.child.lock().ok()?.as_ref().map(Child::id)
    }

    /// Waits until the mirror has reached the remote log's length at connect time (the
    /// backfill), up to `timeout`; true when it has.
    pub fn wait_backfill(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.remote_offset() < self.hello.len {
            if Instant::now() >= deadline || self.shared.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        kill(&self.shared);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn kill(s: &Shared) {
    if let Ok(mut c) = s.child.lock()
        && let Some(c) = c.as_mut()
    {
        let _ = c.kill();
    }
}

/// `again`: a reconnect, made while the dashboard owns the terminal, so ssh must not
/// prompt (BatchMode): the first link, made before the screen opens, may.
fn connect(spec: &Spec, from: u64, steps_per_sec: f64, again: bool) -> Result<(Child, ChildStdin, Lines)> {
    let from = from.to_string();
    let rate = steps_per_sec.to_string();
    let mut cmd = ssh_phasetop(&spec.host, &["stream", &spec.path, "--from", &from, "--steps-per-sec", &rate], again);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("cannot run ssh ({:?})", cmd.get_program()))?;
    let stdin = child.stdin.take().context("ssh stdin")?;
    let stdout = child.stdout.take().context("ssh stdout")?;
    let bytes = Arc::new(AtomicU64::new(0));
    Ok((child, stdin, BufReader::with_capacity(64 << 10, Counted { inner: stdout, bytes })))
}

/// One line from the link, at most [`MAX_FRAME`] bytes; None at end of stream.
fn read_frame(lines: &mut Lines, buf: &mut Vec<u8>) -> Result<Option<Frame>, String> {
    buf.clear();
    let n = lines.by_ref().take(MAX_FRAME as u64).read_until(b'\n', buf).map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n >= MAX_FRAME { "frame too long".into() } else { "link closed mid-frame".into() });
    }
    buf.pop();
    Frame::decode(buf).map(Some)
}

fn read_hello(lines: &mut Lines) -> Result<Hello, String> {
    let mut buf = Vec::new();
    match read_frame(lines, &mut buf)? {
        Some(Frame::Hello(h)) if h.proto == super::proto::PROTO => Ok(h),
        Some(Frame::Hello(h)) => {
            Err(format!("the remote phasetop speaks stream protocol {}, this one {}", h.proto, super::proto::PROTO))
        }
        Some(Frame::Error(e)) => Err(format!("remote: {}", super::sanitize(e.as_bytes(), &mut Default::default()))),
        Some(other) => Err(format!("expected a hello from the remote stream, got {other:?}")),
        None => Err("the link closed before the remote stream said hello".into()),
    }
}

enum FirstHello {
    Failed(String),
    TimedOut(Duration),
}

/// The first link's hello, read on a thread so that a hanging ssh (a dead host, a stuck
/// login) ends in `timeout` instead of never (issue 24 #6).
fn first_hello(
    mut lines: Lines,
    timeout: Option<Duration>,
    stop: Option<&AtomicBool>,
) -> Result<(Hello, Lines), FirstHello> {
    let Some(timeout) = timeout else {
        return read_hello(&mut lines).map(|h| (h, lines)).map_err(FirstHello::Failed);
    };
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("remote-hello".into())
        .spawn(move || {
            let r = read_hello(&mut lines);
            let _ = tx.send((r, lines));
        })
        .map_err(|e| FirstHello::Failed(format!("cannot start a thread: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok((Ok(h), lines)) => return Ok((h, lines)),
            Ok((Err(e), _)) => return Err(FirstHello::Failed(e)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(FirstHello::Failed("hello reader lost".into())),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if left.is_zero() || stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
                    return Err(FirstHello::TimedOut(timeout));
                }
            }
        }
    }
}

/// The error of a link that failed before its hello, with what ssh said on stderr.
fn link_error(child: &mut Child, e: String, spec: &Spec) -> anyhow::Error {
    let _ = child.kill();
    // Bounded: a process that inherited ssh's stderr could hold it open for ever.
    let stderr = super::stderr_tail(child.stderr.take(), Duration::from_secs(2), 2000);
    let status = child.wait().ok().and_then(|s| s.code());
    let stderr = stderr.trim();
    let mut msg = if e.starts_with("remote: ") || stderr.is_empty() { e } else { format!("{e}: {stderr}") };
    if let Some(hint) = super::missing_bin_hint(&spec.host, status, stderr) {
        msg = format!("{msg}\n{hint}");
    }
    let msg = format!("{spec}: {msg}");
    // ssh exits 255 on its own failures; the remote phasetop exits 2 on a bad run path.
    if status == Some(2) || msg.contains("not a run directory") {
        crate::error::UsageError(msg).into()
    } else {
        anyhow::anyhow!(msg)
    }
}

fn mirror_dir(cache: &Path, spec: &Spec) -> Result<(PathBuf, RunLock)> {
    let host: String =
        spec.host.chars().map(|c| if c.is_ascii_alphanumeric() || "@.-_".contains(c) { c } else { '_' }).collect();
    let base = cache.join(host);
    let id = spec.run_id();
    for name in [id.clone(), format!("{id}.{}", std::process::id())] {
        let dir = base.join(&name);
        // Private, like the cache it is in: 0700, its files 0600 (they follow the directory).
        crate::modes::create_dir_under(&dir, 0o700, 0o700)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if let Ok(lock) = RunLock::acquire(&dir) {
            return Ok((dir, lock));
        }
    }
    bail!("cannot lock a mirror directory under {}", base.display())
}

/// Asks the stream for the run's console output from where `console`'s copy is (a
/// stream too old to know the request passes it to the host, which refuses it; no
/// reply is waited for).
fn subscribe(s: &Shared, console: &ConsoleMirror) {
    let req = CommandRequest { id: console::REQUEST_ID, cmd: console.subscription() };
    let Ok(mut line) = serde_json::to_vec(&req) else { return };
    line.push(b'\n');
    if let Ok(mut g) = s.stdin.lock()
        && let Some(w) = g.as_mut()
    {
        let _ = w.write_all(&line).and_then(|_| w.flush());
    }
}

/// Reads frames into the mirror, re-making the link when it drops, until stopped.
fn pump(
    s: &Shared,
    mut writer: Writer,
    mut lines: Lines,
    run_id: Option<serde_json::Value>,
    mut console: ConsoleMirror,
) {
    let mut buf = Vec::new();
    let mut backoff = Duration::from_millis(200);
    let mut unflushed_at: Option<u64> = None;
    loop {
        subscribe(s, &console);
        // One link: frames until it ends.
        let why = loop {
            match read_frame(&mut lines, &mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(mut t) = s.last_frame.lock() {
                        *t = Instant::now();
                    }
                    backoff = Duration::from_millis(200);
                    match frame {
                        Frame::Event { payload, at, .. } => {
                            let event = match writer.append_raw(&payload) {
                                Ok(e) => e,
                                Err(e) => break format!("cannot mirror an event: {e}"),
                            };
                            s.events.fetch_add(1, Ordering::Relaxed);
                            if matches!(event, crate::event::Event::RunEnded { .. }) {
                                s.remote_live.store(false, Ordering::Relaxed);
                            }
                            // `at` moves once the events before it are in the file: a
                            // reader never sees it ahead of the mirror.
                            unflushed_at = Some(at);
                            if lines.buffer().is_empty() {
                                if writer.flush().is_err() {
                                    break "cannot write the local mirror".to_string();
                                }
                                s.at.store(at, Ordering::Relaxed);
                                unflushed_at = None;
                            }
                        }
                        Frame::Heartbeat(h) => {
                            if writer.flush().is_err() {
                                break "cannot write the local mirror".to_string();
                            }
                            // Never back: an event sent after a held step is already past it.
                            s.at.fetch_max(h.at, Ordering::Relaxed);
                            s.remote_live.store(h.live, Ordering::Relaxed);
                        }
                        Frame::Reply { id, reply } => {
                            if let Ok(w) = s.waiting.lock()
                                && let Some(tx) = w.get(&id)
                            {
                                let _ = tx.send(reply);
                            }
                        }
                        // Best effort: the console never costs the run's mirror its link.
                        Frame::Console(c) => {
                            let _ = console.write(&c);
                        }
                        Frame::Error(e) => {
                            break format!("remote: {}", super::sanitize(e.as_bytes(), &mut Default::default()));
                        }
                        Frame::Hello(_) => break "unexpected hello".into(),
                    }
                }
                Ok(None) => break "link closed".into(),
                Err(e) => break e,
            }
        };
        if writer.flush().is_ok()
            && let Some(at) = unflushed_at.take()
        {
            s.at.store(at, Ordering::Relaxed);
        }
        s.connected.store(false, Ordering::Relaxed);
        if let Ok(mut p) = s.problem.lock() {
            *p = Some(why);
        }
        if let Ok(mut c) = s.child.lock()
            && let Some(mut c) = c.take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Re-make the link from where the mirror is.
        loop {
            if s.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let from = s.at.load(Ordering::Relaxed);
            let Ok((mut child, stdin, new_lines)) = connect(&s.spec, from, s.steps_per_sec, true) else { continue };
            // A reconnect that hangs is given up at the deadline (and at once when the
            // mirror stops), then tried again: the viewer's quit never waits on it.
            let limit = super::first_frame_timeout().unwrap_or(LINK_TIMEOUT);
            let hello = first_hello(new_lines, Some(limit), Some(&s.stop)).map_err(|e| match e {
                FirstHello::Failed(e) => e,
                FirstHello::TimedOut(d) => super::no_answer(&s.spec.host, d, ""),
            });
            match hello {
                Ok((h, mut new_lines))
                    if h.meta.as_ref().and_then(|m| m.get("run_id").cloned()) == run_id && h.from == from =>
                {
                    // The byte count goes on across links.
                    new_lines.get_mut().bytes = s.bytes.clone();
                    lines = new_lines;
                    if let Ok(mut c) = s.child.lock() {
                        *c = Some(child);
                    }
                    if let Ok(mut w) = s.stdin.lock() {
                        *w = Some(stdin);
                    }
                    if let Ok(mut t) = s.last_frame.lock() {
                        *t = Instant::now();
                    }
                    s.remote_live.store(h.live, Ordering::Relaxed);
                    s.connects.fetch_add(1, Ordering::Relaxed);
                    s.connected.store(true, Ordering::Relaxed);
                    if let Ok(mut p) = s.problem.lock() {
                        *p = None;
                    }
                    break;
                }
                Ok(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Ok(mut p) = s.problem.lock() {
                        *p = Some("the remote run directory now holds another run".into());
                    }
                    return;
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if let Ok(mut p) = s.problem.lock() {
                        *p = Some(e);
                    }
                }
            }
        }
    }
}

/// Drops a link that has been silent past [`LINK_TIMEOUT`] (the stream heartbeats every
/// few seconds): a half-open TCP connection can otherwise block a read for many minutes.
fn watchdog(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let silent = s.last_frame.lock().map(|t| t.elapsed()).unwrap_or_default();
        if s.connected.load(Ordering::Relaxed) && silent > LINK_TIMEOUT {
            kill(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 24 #3: a mirror's directories are private (0700) from the cache down.
    #[test]
    fn mirror_directories_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("remote");
        let spec = Spec { host: "user@gpu-box".into(), path: "runs/a".into() };
        let (dir, _lock) = mirror_dir(&cache, &spec).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(dir.parent().unwrap()), 0o700);
        crate::rundir::write_atomic(&dir.join("run.json"), b"{}").unwrap();
        assert_eq!(mode(&dir.join("run.json")), 0o600);
    }
}
